/**
 * RGA (replicated growable array) for text: every UTF-16 unit has an id
 * (replica, seq) and a Lamport timestamp; an insert names its origin, the
 * unit it went after. Concurrent inserts after the same origin are ordered
 * by timestamp, larger first (ties: larger replica id first), which is the
 * pre-order walk of the RGA tree, so every replica that integrated the same
 * ops holds the same sequence. Deletes leave tombstones; collectStable()
 * removes the ones no future op can refer to or be placed against.
 *
 * Units live in runs (Item), split on demand, in a chunked list with
 * cached visible lengths (positions) and per-replica buckets (ids). No I/O,
 * no clocks, no randomness: the same calls give the same state.
 */
import { opSize, sliceInsert } from './history.ts'
import { Bucket, CHUNK_ITEMS_FILL, CHUNK_ITEMS_MAX, Chunk, Item, lastAtOrBefore } from './item.ts'
import { validateOp } from './validate.ts'
import type { OpHistory } from './history.ts'
import type { ApplyStatus, DeleteOp, Id, IdRange, InsertOp, Op, Result, VersionVector } from './types.ts'

/** Remote ops waiting for what they depend on; apply() refuses more. */
export const PENDING_OPS_MAX = 4096
/** Units (inserted UTF-16 units, 1 per delete) those ops may hold in all: one op can carry a long text. */
export const PENDING_UNITS_MAX = 4 * 1024 * 1024

/** What a remote op did to the visible text: like `text.slice(0, index) + inserted + text.slice(index + deleted)`. */
export interface RemoteChange {
  index: number
  deleted: number
  inserted: string
}

export interface RgaOptions {
  /** At most this many ops wait in the pending buffer (default PENDING_OPS_MAX). */
  pendingMax?: number
  /** At most this many units in the ops that wait (default PENDING_UNITS_MAX). */
  pendingUnitsMax?: number
  /**
   * Called for each change remote ops make to the visible text, in order (an
   * editor binding mirrors them). Finding the position walks the chunks
   * before it, O(n / 64), so it is only done when this is set.
   */
  onRemoteChange?(change: RemoteChange): void
  /**
   * Keeps every op integrated here (local and remote) in this history, for
   * opsSince(): what another replica lacks, as ops. Costs the text of
   * deleted units too. Pass a new OpHistory for a new replica.
   */
  history?: OpHistory
}

/**
 * What a replica is known by here.
 *
 * @internal
 */
export interface ReplicaState {
  id: string
  /** Its next expected seq: the version vector entry. */
  next: number
  /** Its items, seq-sorted, for id lookups. */
  buckets: Bucket[]
}

export class Rga {
  readonly replica: string
  /** @internal */
  readonly replicas: ReplicaState[] = []
  private readonly repIndex = new Map<string, number>()
  private readonly me: number
  /**
   * The next Lamport timestamp to give a local unit.
   *
   * @internal
   */
  lamport = 0
  /** @internal */
  head = new Chunk()
  /**
   * The chunk the last position lookup ended in and the number of visible
   * units before it: edits are local, so the next lookup starts here.
   */
  private cursor: Chunk
  private cursorStart = 0
  private visible = 0
  private readonly pending: Op[] = []
  private readonly pendingMax: number
  private readonly pendingUnitsMax: number
  /** opSize summed over `pending`. */
  private pendingUnits = 0
  private readonly onRemoteChange: ((change: RemoteChange) => void) | undefined
  /** The ops integrated here, when kept (RgaOptions.history). */
  readonly history: OpHistory | undefined
  /**
   * Set by load: the tombstones of a loaded document do not say which op
   * deleted them, only that it is within this version.
   */
  loadedVersion: VersionVector | null = null
  // results of seek(), kept in fields so that the hot path allocates nothing
  private seekIndex = 0
  private seekOffset = 0

  constructor (replica: string, options: RgaOptions = {}) {
    if (typeof replica !== 'string' || replica.length === 0) { throw new TypeError('replica id must be a non-empty string') }
    this.replica = replica
    this.pendingMax = options.pendingMax ?? PENDING_OPS_MAX
    this.pendingUnitsMax = options.pendingUnitsMax ?? PENDING_UNITS_MAX
    this.onRemoteChange = options.onRemoteChange
    this.history = options.history
    this.me = this.replicaIndex(replica)
    this.cursor = this.head
  }

  /** Visible length in UTF-16 units. */
  get length (): number {
    return this.visible
  }

  /** Units deleted but still held as tombstones (not yet collected): O(items). */
  get tombstoneUnits (): number {
    let units = 0
    for (let c: Chunk | null = this.head; c !== null; c = c.next) {
      for (const item of c.items) {
        if (item.deleted) { units += item.len }
      }
    }
    return units
  }

  get pendingCount (): number {
    return this.pending.length
  }

  toString (): string {
    const parts: string[] = []
    for (let c: Chunk | null = this.head; c !== null; c = c.next) {
      for (const item of c.items) {
        if (!item.deleted) { parts.push(item.text) }
      }
    }
    return parts.join('')
  }

  /** What this replica has integrated: replica id -> next expected seq. */
  version (): VersionVector {
    const vv: VersionVector = new Map()
    for (const r of this.replicas) {
      if (r.next > 0) { vv.set(r.id, r.next) }
    }
    return vv
  }

  /** Inserts `text` before visible position `index`; returns the op to send (null for ''). */
  insert (index: number, text: string): InsertOp | null {
    if (!Number.isInteger(index) || index < 0 || index > this.visible) { throw new RangeError(`insert at ${index} outside 0..${this.visible}`) }
    if (text.length === 0) { return null }
    const me = this.replicas[this.me]
    const seq = me.next
    const lamport = this.lamport
    let origin: Id | null = null
    if (index === 0) {
      this.cursor = this.head
      this.cursorStart = 0
      this.place(this.head, 0, null, false, this.me, seq, lamport, text)
    } else {
      // the origin is the visible unit before the insert: never a tombstone
      // (collectStable relies on that)
      this.seek(index - 1)
      const i = this.seekIndex
      const item = this.cursor.items[i]
      const offset = this.seekOffset
      origin = { replica: this.replicas[item.rep].id, seq: item.seq + offset }
      if (offset < item.len - 1) { this.split(item, offset + 1, i) }
      // a local op's timestamp is the largest yet: it goes right after its origin
      this.place(item.chunk, indexIn(item, i) + 1, item, true, this.me, seq, lamport, text)
    }
    me.next += text.length
    this.lamport += text.length
    const op: InsertOp = { kind: 'insert', replica: this.replica, seq, lamport, origin, text }
    this.history?.record(op)
    return op
  }

  /** Deletes `length` visible units from `index`; returns the op to send (null when length is 0). */
  delete (index: number, length: number): DeleteOp | null {
    if (!Number.isInteger(index) || !Number.isInteger(length) || index < 0 || length < 0 || index + length > this.visible) {
      throw new RangeError(`delete ${length} at ${index} outside 0..${this.visible}`)
    }
    if (length === 0) { return null }
    const me = this.replicas[this.me]
    const seq = me.next
    this.seek(index)
    let chunk = this.cursor
    let i = this.seekIndex
    if (this.seekOffset > 0) {
      const piece = this.split(chunk.items[i], this.seekOffset, i)
      chunk = piece.chunk
      i = indexIn(piece, i + 1)
    }
    const ranges: IdRange[] = []
    let remaining = length
    while (remaining > 0) {
      if (i === chunk.items.length) {
        chunk = chunk.next as Chunk
        i = 0
        continue
      }
      const item = chunk.items[i]
      if (item.deleted) {
        i++
        continue
      }
      if (item.len > remaining) {
        this.split(item, remaining, i)
        chunk = item.chunk
        i = indexIn(item, i)
      }
      this.markDeleted(item, this.me, seq)
      const last = ranges.length > 0 ? ranges[ranges.length - 1] : null
      const id = this.replicas[item.rep].id
      if (last !== null && last.replica === id && last.seq + last.length === item.seq) {
        last.length += item.len
      } else {
        ranges.push({ replica: id, seq: item.seq, length: item.len })
      }
      remaining -= item.len
      // the tombstone may join the one before it (then the next item is at i)
      if (!this.coalesce(chunk, i)) { i++ }
    }
    // and the one after the last may join it (backspacing through a run)
    if (i < chunk.items.length) { this.coalesce(chunk, i) }
    me.next += 1
    // deletes take a timestamp too, so that a replica's timestamps and seqs
    // stay equal while it works alone: the encoding stores their difference
    this.lamport += 1
    const op: DeleteOp = { kind: 'delete', replica: this.replica, seq, ranges }
    this.history?.record(op)
    return op
  }

  /**
   * The op `insert(index, text)` by `author` would make, without integrating
   * it (null for ''): apply() it, here or elsewhere. Throws RangeError on a
   * bad index. The state does not change (only the lookup cursor moves).
   */
  prepareInsert (index: number, text: string, author: string = this.replica): InsertOp | null {
    if (!Number.isInteger(index) || index < 0 || index > this.visible) { throw new RangeError(`insert at ${index} outside 0..${this.visible}`) }
    if (text.length === 0) { return null }
    let origin: Id | null = null
    if (index > 0) {
      this.seek(index - 1)
      const item = this.cursor.items[this.seekIndex]
      origin = { replica: this.replicas[item.rep].id, seq: item.seq + this.seekOffset }
    }
    return { kind: 'insert', replica: author, seq: this.nextOf(author), lamport: this.lamport, origin, text }
  }

  /**
   * The op `delete(index, length)` by `author` would make, without
   * integrating it (null when length is 0). Throws RangeError on a bad range.
   */
  prepareDelete (index: number, length: number, author: string = this.replica): DeleteOp | null {
    if (!Number.isInteger(index) || !Number.isInteger(length) || index < 0 || length < 0 || index + length > this.visible) {
      throw new RangeError(`delete ${length} at ${index} outside 0..${this.visible}`)
    }
    if (length === 0) { return null }
    this.seek(index)
    let chunk: Chunk | null = this.cursor
    let i = this.seekIndex
    let offset = this.seekOffset
    const ranges: IdRange[] = []
    let remaining = length
    while (remaining > 0 && chunk !== null) {
      if (i === chunk.items.length) {
        chunk = chunk.next
        i = 0
        continue
      }
      const item = chunk.items[i++]
      if (item.deleted) { continue }
      const take = Math.min(item.len - offset, remaining)
      const id = this.replicas[item.rep].id
      const seq = item.seq + offset
      const last = ranges.length > 0 ? ranges[ranges.length - 1] : null
      if (last !== null && last.replica === id && last.seq + last.length === seq) {
        last.length += take
      } else {
        ranges.push({ replica: id, seq, length: take })
      }
      remaining -= take
      offset = 0
    }
    return { kind: 'delete', replica: author, seq: this.nextOf(author), ranges }
  }

  /**
   * The ops integrated here that a replica at `version` lacks (inserts it
   * holds a prefix of are cut), in an order it can apply without buffering
   * any: see history.ts. Needs RgaOptions.history; throws otherwise.
   */
  opsSince (version: ReadonlyMap<string, number> = new Map()): Op[] {
    if (this.history === undefined) { throw new TypeError('opsSince needs an Rga made with a history (RgaOptions.history)') }
    return this.history.since(version)
  }

  /** The ops waiting in the pending buffer, sorted by replica and seq. */
  pendingOps (): Op[] {
    return this.pending.slice()
  }

  /** Empties the pending buffer; returns the ops it held (sorted by replica and seq). */
  takePending (): Op[] {
    const ops = this.pending.splice(0)
    this.pendingUnits = 0
    return ops
  }

  /**
   * Integrates a remote op. Ops of one replica integrate in seq order and
   * after the units they name: an op that comes early waits in the pending
   * buffer ('pending') and integrates once its dependencies have; one seen
   * before is a 'duplicate'. Errors (malformed op, full buffer) change nothing.
   */
  apply (op: Op): Result<ApplyStatus> {
    const invalid = validateOp(op)
    if (invalid !== null) { return { ok: false, error: invalid } }
    const known = this.repIndex.get(op.replica)
    const next = known === undefined ? 0 : this.replicas[known].next
    if (op.seq < next) {
      if (op.seq + opSize(op) <= next) { return { ok: true, value: 'duplicate' } }
      // an insert of which a prefix is integrated (a run-length merged op
      // from opsSince, say): the rest is the insert after the prefix
      if (op.kind !== 'insert') { return { ok: false, error: `op ${op.replica}:${op.seq} overlaps ops already integrated` } }
      op = sliceInsert(op, next)
    }
    if (!this.ready(op)) {
      if (this.pending.length >= this.pendingMax) {
        return { ok: false, error: `pending buffer full (${this.pendingMax} ops waiting for their dependencies)` }
      }
      if (this.pendingUnits + opSize(op) > this.pendingUnitsMax) {
        return { ok: false, error: `pending buffer full (${this.pendingUnitsMax} units waiting for their dependencies)` }
      }
      this.addPending(op)
      return { ok: true, value: 'pending' }
    }
    const error = this.integrate(op)
    if (error !== null) { return { ok: false, error } }
    if (this.pending.length > 0) { this.drain() }
    return { ok: true, value: 'applied' }
  }

  /**
   * The version vector every live member has integrated, from their reports
   * (member replica id -> its version vector; this replica's own is added),
   * or null when collecting against it would be unsafe: a member may have
   * made ops before its report, concurrent with deletes the report covers,
   * that have not reached this replica yet (its own entry is ahead of ours).
   */
  stableFrontier (reports: Map<string, VersionVector>): VersionVector | null {
    const all = new Map(reports)
    all.set(this.replica, this.version())
    const mine = this.version()
    const frontier: VersionVector = new Map()
    for (const [member, vv] of all) {
      if ((vv.get(member) ?? 0) > (mine.get(member) ?? 0)) { return null }
    }
    for (const [id, next] of mine) {
      let min = next
      for (const vv of all.values()) { min = Math.min(min, vv.get(id) ?? 0) }
      if (min > 0) { frontier.set(id, min) }
    }
    return frontier
  }

  /**
   * Removes tombstones that are causally stable under `stable` (see
   * stableFrontier: every live member has integrated every op it covers, and
   * no op made before that reached every member is still on its way here).
   * A tombstone goes when its units and its delete are within `stable` and
   * the item after it (after any run of such tombstones) is within `stable`
   * too, or is the end. Why that is enough: future ops are causally after
   * everything in `stable`, so (1) their origins, visible units when they
   * were made, are never collected tombstones, and (2) their timestamps
   * exceed every stable unit's, so the timestamp walk of integration stops
   * at the stable item where it would have stopped at the removed
   * tombstones, and the relative order of all that remains is unchanged.
   * Returns the number of units removed.
   */
  collectStable (stable: VersionVector): number {
    const bound = this.replicas.map(r => stable.get(r.id) ?? 0)
    let loadedStable = true
    if (this.loadedVersion !== null) {
      for (const [id, next] of this.loadedVersion) {
        if ((stable.get(id) ?? 0) < next) { loadedStable = false }
      }
    }
    const kept: Item[] = []
    const run: Item[] = []
    const removed = new Set<Item>()
    let units = 0
    const drop = (): void => {
      for (const item of run) {
        removed.add(item)
        units += item.len
      }
      run.length = 0
    }
    for (let c: Chunk | null = this.head; c !== null; c = c.next) {
      for (const item of c.items) {
        const collectible = item.deleted && item.seq + item.len <= bound[item.rep] &&
          (item.delRep < 0 ? loadedStable : item.delSeq < bound[item.delRep])
        if (collectible) {
          run.push(item)
          continue
        }
        if (run.length > 0) {
          if (item.seq < bound[item.rep]) {
            drop()
          } else {
            kept.push(...run)
            run.length = 0
          }
        }
        kept.push(item)
      }
    }
    drop()
    if (removed.size === 0) { return 0 }
    this.rebuildChunks(kept)
    for (const r of this.replicas) {
      for (const bucket of r.buckets) { bucket.pieces = bucket.pieces.filter(p => !removed.has(p)) }
      r.buckets = r.buckets.filter(b => b.pieces.length > 0)
    }
    return units
  }

  /**
   * Replaces the chunk list with `items` in this order (load, collectStable).
   *
   * @internal
   */
  rebuildChunks (items: Item[]): void {
    this.head = new Chunk()
    let chunk = this.head
    let visible = 0
    for (const item of items) {
      if (chunk.items.length === CHUNK_ITEMS_FILL) {
        const next = new Chunk()
        next.prev = chunk
        chunk.next = next
        chunk = next
      }
      chunk.items.push(item)
      item.chunk = chunk
      if (!item.deleted) {
        chunk.vis += item.len
        visible += item.len
      }
    }
    this.visible = visible
    this.cursor = this.head
    this.cursorStart = 0
  }

  /**
   * The local index of replica `id`, added when new.
   *
   * @internal
   */
  replicaIndex (id: string): number {
    let index = this.repIndex.get(id)
    if (index === undefined) {
      index = this.replicas.length
      this.replicas.push({ id, next: 0, buckets: [] })
      this.repIndex.set(id, index)
    }
    return index
  }

  private ready (op: Op): boolean {
    if (this.nextOf(op.replica) !== op.seq) { return false }
    if (op.kind === 'insert') {
      return op.origin === null || op.origin.seq < this.nextOf(op.origin.replica)
    }
    for (const range of op.ranges) {
      if (range.seq + range.length > this.nextOf(range.replica)) { return false }
    }
    return true
  }

  private nextOf (id: string): number {
    const index = this.repIndex.get(id)
    return index === undefined ? 0 : this.replicas[index].next
  }

  /** Integrates a ready op; returns an error (and changes nothing) when it names something that is not a unit. */
  private integrate (op: Op): string | null {
    const rep = this.replicaIndex(op.replica)
    if (op.kind === 'insert') {
      const error = this.integrateInsert(op, rep)
      if (error !== null) { return error }
      this.replicas[rep].next = op.seq + op.text.length
      this.lamport = Math.max(this.lamport, op.lamport + op.text.length)
    } else {
      // no timestamp from a remote delete (it carries none): the clock is
      // then the largest insert timestamp seen, the same at every replica
      // holding the same ops, which a compacted state's encoding relies on
      this.integrateDelete(op, rep)
      this.replicas[rep].next = op.seq + 1
    }
    this.history?.record(op)
    return null
  }

  private integrateInsert (op: InsertOp, rep: number): string | null {
    let prev: Item | null = null
    let chunk = this.head
    let i = 0
    if (op.origin !== null) {
      const origin = this.find(this.repIndex.get(op.origin.replica) ?? -1, op.origin.seq)
      if (origin === null) { return `origin ${op.origin.replica}:${op.origin.seq} is not a unit here` }
      const offset = op.origin.seq - origin.seq
      const at = origin.chunk.items.indexOf(origin)
      if (offset < origin.len - 1) { this.split(origin, offset + 1, at) }
      prev = origin
      chunk = origin.chunk
      i = indexIn(origin, at) + 1
    }
    const originItem = prev
    // skip the units with larger timestamps: inserts after the same origin
    // made concurrently with or after this one, and their descendants
    const lamport = op.lamport
    for (;;) {
      if (i === chunk.items.length) {
        if (chunk.next === null) { break }
        chunk = chunk.next
        i = 0
        continue
      }
      const e = chunk.items[i]
      if (e.lam > lamport || (e.lam === lamport && this.replicas[e.rep].id > op.replica)) {
        prev = e
        i++
      } else {
        break
      }
    }
    if (chunk !== this.cursor || (prev !== null && prev.chunk !== this.cursor)) { this.resetCursor() }
    // the units go at (chunk, i) whether they extend prev or make an item
    const index = this.onRemoteChange === undefined ? 0 : this.positionAt(chunk, i)
    this.place(chunk, i, prev, prev === originItem, rep, op.seq, lamport, op.text)
    this.onRemoteChange?.({ index, deleted: 0, inserted: op.text })
    return null
  }

  private integrateDelete (op: DeleteOp, deleter: number): void {
    for (const range of op.ranges) {
      const rep = this.repIndex.get(range.replica) ?? -1
      const end = range.seq + range.length
      let seq = range.seq
      while (seq < end) {
        // ids with no item were removed by collectStable (already deleted)
        let item = this.findAtOrAfter(rep, seq)
        if (item === null || item.seq >= end) { break }
        if (item.seq > seq) { seq = item.seq }
        const offset = seq - item.seq
        if (offset > 0) { item = this.split(item, offset, item.chunk.items.indexOf(item)) }
        if (item.len > end - seq) { this.split(item, end - seq, item.chunk.items.indexOf(item)) }
        seq += item.len
        if (!item.deleted) {
          if (item.chunk !== this.cursor) { this.resetCursor() }
          const index = this.onRemoteChange === undefined ? 0 : this.positionAt(item.chunk, item.chunk.items.indexOf(item))
          this.markDeleted(item, deleter, op.seq)
          this.onRemoteChange?.({ index, deleted: item.len, inserted: '' })
          const at = item.chunk.items.indexOf(item)
          if (at + 1 < item.chunk.items.length) { this.coalesce(item.chunk, at + 1) }
          this.coalesce(item.chunk, at)
        }
      }
    }
  }

  /**
   * Keeps the pending ops sorted by (replica, seq), so that one pass of
   * drain() integrates a whole chain of one replica's ops that arrived in
   * reverse, rather than one op a pass.
   */
  private addPending (op: Op): void {
    const pending = this.pending
    // one op per (replica, seq): the longer of two inserts there
    const same = pending.findIndex(p => p.replica === op.replica && p.seq === op.seq)
    if (same >= 0) {
      if (opSize(op) > opSize(pending[same])) {
        this.pendingUnits += opSize(op) - opSize(pending[same])
        pending[same] = op
      }
      return
    }
    let lo = 0
    let hi = pending.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const other = pending[mid]
      if (other.replica < op.replica || (other.replica === op.replica && other.seq <= op.seq)) {
        lo = mid + 1
      } else {
        hi = mid
      }
    }
    pending.splice(lo, 0, op)
    this.pendingUnits += opSize(op)
  }

  /** Integrates the pending ops that have become ready, until none is. */
  private drain (): void {
    let progress = true
    while (progress) {
      progress = false
      let kept = 0
      let units = 0
      for (let op of this.pending) {
        const next = this.nextOf(op.replica)
        if (op.seq < next) {
          if (op.kind !== 'insert' || op.seq + op.text.length <= next) { continue } // a duplicate
          op = sliceInsert(op, next)
        }
        if (this.ready(op)) {
          // an op naming something that is not a unit is dropped, as apply() would have
          this.integrate(op)
          progress = true
        } else {
          this.pending[kept++] = op
          units += opSize(op)
        }
      }
      this.pending.length = kept
      this.pendingUnits = units
    }
  }

  /** The unit before which remote ops may have changed visible lengths: start the next lookup from the head. */
  private resetCursor (): void {
    this.cursor = this.head
    this.cursorStart = 0
  }

  /** The number of visible units before item `i` of `chunk`. */
  private positionAt (chunk: Chunk, i: number): number {
    let position = 0
    for (let c = chunk.prev; c !== null; c = c.prev) { position += c.vis }
    for (let k = 0; k < i; k++) {
      const item = chunk.items[k]
      if (!item.deleted) { position += item.len }
    }
    return position
  }

  /** The item holding unit (rep, seq), or null. */
  private find (rep: number, seq: number): Item | null {
    if (rep < 0) { return null }
    const buckets = this.replicas[rep].buckets
    const b = lastAtOrBefore(buckets, seq)
    if (b < 0) { return null }
    const pieces = buckets[b].pieces
    const p = lastAtOrBefore(pieces, seq)
    if (p < 0) { return null }
    const item = pieces[p]
    return seq < item.seq + item.len ? item : null
  }

  /** The item holding unit (rep, seq), else the first one after it, or null. */
  private findAtOrAfter (rep: number, seq: number): Item | null {
    if (rep < 0) { return null }
    const buckets = this.replicas[rep].buckets
    let b = lastAtOrBefore(buckets, seq)
    if (b >= 0) {
      const pieces = buckets[b].pieces
      const p = lastAtOrBefore(pieces, seq)
      if (p >= 0 && seq < pieces[p].seq + pieces[p].len) { return pieces[p] }
      if (p + 1 < pieces.length) { return pieces[p + 1] }
    }
    for (b++; b < buckets.length; b++) {
      if (buckets[b].pieces.length > 0) { return buckets[b].pieces[0] }
    }
    return null
  }

  /** Points cursor, seekIndex and seekOffset at visible unit `position` (< length). */
  private seek (position: number): void {
    let chunk = this.cursor
    let start = this.cursorStart
    while (position < start) {
      chunk = chunk.prev as Chunk
      start -= chunk.vis
    }
    while (position >= start + chunk.vis) {
      start += chunk.vis
      chunk = chunk.next as Chunk
    }
    this.cursor = chunk
    this.cursorStart = start
    let offset = position - start
    const items = chunk.items
    for (let i = 0; ; i++) {
      const item = items[i]
      if (!item.deleted) {
        if (offset < item.len) {
          this.seekIndex = i
          this.seekOffset = offset
          return
        }
        offset -= item.len
      }
    }
  }

  /** Inserts a run at (chunk, i), after `prev`, or extends `prev` when the run continues it. */
  private place (chunk: Chunk, i: number, prev: Item | null, afterOrigin: boolean, rep: number, seq: number, lam: number, text: string): void {
    const n = text.length
    // the run continues prev when its origin is prev's last unit and its
    // ids and timestamps follow on (then prev is its replica's latest item)
    if (afterOrigin && prev !== null && prev.rep === rep && !prev.deleted && prev.seq + prev.len === seq && prev.lam + prev.len === lam) {
      prev.text += text
      prev.len += n
      prev.chunk.vis += n
    } else {
      const bucket = new Bucket(seq)
      this.replicas[rep].buckets.push(bucket)
      const item = new Item(rep, seq, lam, n, text, chunk, bucket)
      bucket.pieces.push(item)
      chunk.vis += n
      this.insertItem(chunk, i, item)
    }
    this.visible += n
  }

  /** Splits `item` (at index `i` of its chunk) after `k` units; returns the second piece. */
  private split (item: Item, k: number, i: number): Item {
    const piece = new Item(item.rep, item.seq + k, item.lam + k, item.len - k, item.deleted ? '' : item.text.slice(k), item.chunk, item.bucket)
    if (item.deleted) {
      piece.deleted = true
      piece.delRep = item.delRep
      piece.delSeq = item.delSeq
    } else {
      item.text = item.text.slice(0, k)
    }
    item.len = k
    const pieces = item.bucket.pieces
    pieces.splice(lastAtOrBefore(pieces, item.seq) + 1, 0, piece)
    this.insertItem(item.chunk, i + 1, piece)
    return piece
  }

  /** Callers add a live item's length to chunk.vis first, so that a chunk split divides it right. */
  private insertItem (chunk: Chunk, i: number, item: Item): void {
    item.chunk = chunk
    chunk.items.splice(i, 0, item)
    if (chunk.items.length > CHUNK_ITEMS_MAX) { this.splitChunk(chunk) }
  }

  private splitChunk (chunk: Chunk): void {
    const next = new Chunk()
    next.items = chunk.items.splice(chunk.items.length >>> 1)
    let vis = 0
    for (const item of next.items) {
      item.chunk = next
      if (!item.deleted) { vis += item.len }
    }
    next.vis = vis
    chunk.vis -= vis
    next.prev = chunk
    next.next = chunk.next
    if (chunk.next !== null) { chunk.next.prev = next }
    chunk.next = next
  }

  /**
   * Merges the item at `i` into the one before it when both are tombstones
   * of one run (same bucket, ids and timestamps following on) deleted by the
   * same replica: backspacing leaves one tombstone, not one per unit.
   * Returns whether it did.
   */
  private coalesce (chunk: Chunk, i: number): boolean {
    if (i === 0) { return false }
    const items = chunk.items
    const item = items[i]
    const prev = items[i - 1]
    if (!item.deleted || !prev.deleted || prev.bucket !== item.bucket || prev.delRep !== item.delRep ||
      prev.seq + prev.len !== item.seq || prev.lam + prev.len !== item.lam) {
      return false
    }
    prev.len += item.len
    // the later delete: stable only once both are
    prev.delSeq = Math.max(prev.delSeq, item.delSeq)
    items.splice(i, 1)
    const pieces = item.bucket.pieces
    pieces.splice(lastAtOrBefore(pieces, item.seq), 1)
    return true
  }

  private markDeleted (item: Item, deleter: number, seq: number): void {
    item.deleted = true
    item.text = ''
    item.delRep = deleter
    item.delSeq = seq
    item.chunk.vis -= item.len
    this.visible -= item.len
  }
}

/** The index of `item` in its chunk, checking the likely one first. */
function indexIn (item: Item, hint: number): number {
  const items = item.chunk.items
  return items[hint] === item ? hint : items.indexOf(item)
}
