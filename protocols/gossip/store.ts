/**
 * The replicated store: every node's entries, by node and key, with each
 * node's high-water mark (the highest version held, which is what a digest
 * says) and running counts of values, tombstones and bytes.
 *
 * Scuttlebutt's invariant, kept by taking a node's entries only as a
 * prefix, in version order, of everything a peer holds above a version we
 * already hold (NodeDelta.after <= our version): every key whose latest
 * write is at or below our version for its node is held at that write
 * (a floor counts as a write of every key below it). Keys rewritten above
 * it may be held at an older write until the rest arrives.
 *
 * A floor voids every entry at or below its version (an entry at the
 * floor's own version could only come from an owner that signed two
 * entries at one version: it loses).
 *
 * Changes go in two steps: plan() works out what a node's entries would do
 * without touching anything (so that a message can be refused whole, after
 * its signatures are checked), commit() applies a plan.
 */
import { assert } from '../common/assert.ts'
import { AGE_TICKS_MAX } from './config.ts'
import { entryBytes, idBytes, nodeDeltaHeadBytes } from './size.ts'
import type { Entry, NodeDelta, NodeId, WireEntry } from './types.ts'

export interface StoredEntry {
  /** '' for a floor. */
  readonly key: string
  readonly value: Uint8Array | null
  readonly version: number
  readonly signature: Uint8Array
  /** The entry's age when it reached us, and when that was: its age now is ageTicks + (now - receivedTick). */
  readonly ageTicks: number
  readonly receivedTick: number
  /** entryBytes() of it. */
  readonly bytes: number
}

export interface NodeRecord {
  readonly id: NodeId
  /** idBytes(id), kept: pages list hundreds of ids. */
  readonly idBytes: number
  /** Values and tombstones by key (never the floor). */
  readonly entries: Map<string, StoredEntry>
  floor: StoredEntry | null
  /** The highest version held: what our digest says for this node. */
  version: number
  values: number
  tombstones: number
  bytes: number
}

/** What one node's entries would change, worked out by plan(). */
export interface DeltaPlan {
  readonly node: NodeId
  /** undefined: a node new to the store. */
  readonly record: NodeRecord | undefined
  /** A floor above the one held. */
  readonly floor: StoredEntry | null
  /** Entries newer than what is held for their key (and above the floor), in version order. */
  readonly take: StoredEntry[]
  /** Entries held already (at that version or newer, or below the floor). */
  readonly duplicates: number
  readonly lastVersion: number
  /** The node's counts once committed. */
  readonly values: number
  readonly tombstones: number
  readonly bytes: number
}

/** A visible change to the store, for the entry:update event. */
export interface StoreChange {
  node: NodeId
  key: string
  version: number
  deleted: boolean
}

export function storedEntry (e: Pick<WireEntry, 'key' | 'value' | 'version' | 'signature' | 'ageTicks'>, receivedTick: number): StoredEntry {
  return { key: e.key, value: e.value, version: e.version, signature: e.signature, ageTicks: e.ageTicks, receivedTick, bytes: entryBytes(e) }
}

export class Store {
  private readonly records = new Map<NodeId, NodeRecord>()
  /** The records in code-unit order of their ids (digest pages cover ranges of it). */
  private readonly sorted: NodeRecord[] = []
  bytes = 0
  values = 0
  tombstones = 0

  get size (): number {
    return this.records.size
  }

  get (id: NodeId): NodeRecord | undefined {
    return this.records.get(id)
  }

  /** Our version for `id`: 0 for a node we do not hold. */
  versionOf (id: NodeId): number {
    return this.records.get(id)?.version ?? 0
  }

  sortedIds (): NodeId[] {
    return this.sorted.map(r => r.id)
  }

  /** Drops a node and everything of it; returns the keys that held values. */
  remove (id: NodeId): string[] {
    const record = this.records.get(id)
    if (record === undefined) { return [] }
    this.records.delete(id)
    this.sorted.splice(lowerBound(this.sorted, id), 1)
    this.bytes -= record.bytes
    this.values -= record.values
    this.tombstones -= record.tombstones
    return [...record.entries.values()].filter(e => e.value !== null).map(e => e.key)
  }

  /**
   * What `entries` (one node's, in increasing version order, a floor only
   * first) would change. Touches nothing.
   */
  plan (node: NodeId, entries: readonly StoredEntry[]): DeltaPlan {
    const record = this.records.get(node)
    const counts: Counts = { values: record?.values ?? 0, tombstones: record?.tombstones ?? 0, bytes: record?.bytes ?? 0 }
    const first = entries.length > 0 && entries[0].key === '' ? entries[0] : null
    const floor = first === null ? null : planFloor(record, first, counts)
    const rest = first === null ? entries : entries.slice(1)
    const { take, duplicates } = planEntries(record, rest, (floor ?? record?.floor)?.version ?? 0, counts)
    const floorDuplicate = first !== null && floor === null ? 1 : 0
    return { node, record, floor, take, duplicates: duplicates + floorDuplicate, lastVersion: entries.at(-1)?.version ?? 0, ...counts }
  }

  /**
   * Applies a plan made against the current store (nothing may have changed
   * the node since), and reports the keys that changed.
   */
  commit (plan: DeltaPlan): StoreChange[] {
    assert(this.records.get(plan.node) === plan.record, 'gossip: a plan committed after its node changed')
    const record = plan.record ?? this.create(plan.node)
    const changes: StoreChange[] = []
    if (plan.floor !== null) {
      const floor = plan.floor
      for (const [key, held] of record.entries) {
        if (held.version > floor.version) { continue }
        record.entries.delete(key)
        if (held.value !== null) { changes.push({ node: plan.node, key, version: floor.version, deleted: true }) }
      }
      record.floor = floor
    }
    for (const e of plan.take) {
      record.entries.set(e.key, e)
      changes.push({ node: plan.node, key: e.key, version: e.version, deleted: e.value === null })
    }
    this.bytes += plan.bytes - record.bytes
    this.values += plan.values - record.values
    this.tombstones += plan.tombstones - record.tombstones
    record.bytes = plan.bytes
    record.values = plan.values
    record.tombstones = plan.tombstones
    record.version = Math.max(record.version, plan.lastVersion)
    return changes
  }

  /**
   * Every entry of `record` above `after`, in version order (its floor
   * first), as a node delta of at most `budget` bytes: a prefix, so that the
   * receiver never skips a version. null when not even one entry fits.
   */
  deltaOf (record: NodeRecord, after: number, budget: number, now: number): NodeDelta | null {
    const newer: StoredEntry[] = []
    if (record.floor !== null && record.floor.version > after) { newer.push(record.floor) }
    for (const e of record.entries.values()) {
      if (e.version > after) { newer.push(e) }
    }
    newer.sort((a, b) => a.version - b.version)
    let bytes = nodeDeltaHeadBytes(record.id)
    const entries: WireEntry[] = []
    for (const e of newer) {
      if (bytes + e.bytes > budget) { break }
      bytes += e.bytes
      entries.push({ key: e.key, value: e.value, version: e.version, signature: e.signature, ageTicks: Math.min(AGE_TICKS_MAX, e.ageTicks + now - e.receivedTick) })
    }
    return entries.length === 0 ? null : { node: record.id, after, entries }
  }

  /**
   * The records in id order, and the index of the first whose id sorts
   * after `after` (null: 0). Callers stop at the end of their range.
   */
  sortedFrom (after: NodeId | null): { records: readonly NodeRecord[], start: number } {
    return { records: this.sorted, start: after === null ? 0 : upperBound(this.sorted, after) }
  }

  /** Every entry held, floors and tombstones included, by node id then version. */
  entries (): Entry[] {
    const all: Entry[] = []
    for (const record of this.sorted) {
      const id = record.id
      const own = [...record.entries.values()]
      if (record.floor !== null) { own.push(record.floor) }
      own.sort((a, b) => a.version - b.version)
      for (const e of own) { all.push({ node: id, key: e.key, value: e.value, version: e.version, signature: e.signature }) }
    }
    return all
  }

  /** Every invariant, at O(entries) cost. */
  checkInvariants (): void {
    let bytes = 0
    let values = 0
    let tombstones = 0
    assert(this.sorted.length === this.records.size, 'gossip: sorted records and records disagree')
    for (let i = 1; i < this.sorted.length; i++) { assert(this.sorted[i - 1].id < this.sorted[i].id, 'gossip: node ids out of order') }
    for (const listed of this.sorted) {
      const id = listed.id
      const record = this.records.get(id)
      assert(record === listed && record.idBytes === idBytes(id), `gossip: ${id} listed but not stored`)
      const floorVersion = record.floor?.version ?? 0
      let max = floorVersion
      let recordBytes = record.floor?.bytes ?? 0
      let recordValues = 0
      let recordTombstones = 0
      for (const [key, e] of record.entries) {
        assert(key === e.key && key !== '', `gossip: ${id} holds an entry under the wrong key`)
        assert(e.version > floorVersion, `gossip: ${id} holds ${key} below its floor`)
        max = Math.max(max, e.version)
        recordBytes += e.bytes
        if (e.value === null) { recordTombstones++ } else { recordValues++ }
      }
      assert(record.version === max, `gossip: ${id}'s version ${record.version} is not its highest entry's ${max}`)
      assert(record.bytes === recordBytes && record.values === recordValues && record.tombstones === recordTombstones, `gossip: ${id}'s counts are off`)
      bytes += recordBytes
      values += recordValues
      tombstones += recordTombstones
    }
    assert(bytes === this.bytes && values === this.values && tombstones === this.tombstones, 'gossip: store totals are off')
  }

  private create (id: NodeId): NodeRecord {
    const record: NodeRecord = { id, idBytes: idBytes(id), entries: new Map(), floor: null, version: 0, values: 0, tombstones: 0, bytes: 0 }
    this.records.set(id, record)
    this.sorted.splice(lowerBound(this.sorted, id), 0, record)
    return record
  }
}

interface Counts {
  values: number
  tombstones: number
  bytes: number
}

/**
 * A floor's effect: null if it is not above the one held; else it replaces
 * that one and voids every entry at or below it, in `counts`.
 */
function planFloor (record: NodeRecord | undefined, floor: StoredEntry, counts: Counts): StoredEntry | null {
  const held = record?.floor ?? null
  if (held !== null && floor.version <= held.version) { return null }
  counts.bytes += floor.bytes - (held?.bytes ?? 0)
  for (const e of record?.entries.values() ?? []) {
    if (e.version <= floor.version) { uncount(counts, e) }
  }
  return floor
}

/**
 * Which of a node's entries (no floor among them) are newer than what is
 * held for their key and above the floor, with their effect on `counts`.
 */
function planEntries (record: NodeRecord | undefined, entries: readonly StoredEntry[], floorVersion: number, counts: Counts): { take: StoredEntry[], duplicates: number } {
  const take: StoredEntry[] = []
  let duplicates = 0
  for (const e of entries) {
    const held = record?.entries.get(e.key)
    const live = held !== undefined && held.version > floorVersion ? held : undefined
    if (e.version <= floorVersion || (live !== undefined && live.version >= e.version)) {
      duplicates++
      continue
    }
    if (live !== undefined) { uncount(counts, live) }
    counts.bytes += e.bytes
    if (e.value === null) { counts.tombstones++ } else { counts.values++ }
    take.push(e)
  }
  return { take, duplicates }
}

function uncount (counts: Counts, e: StoredEntry): void {
  counts.bytes -= e.bytes
  if (e.value === null) { counts.tombstones-- } else { counts.values-- }
}

/** First index whose id is not below `id`. */
function lowerBound (sorted: readonly NodeRecord[], id: NodeId): number {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (sorted[mid].id < id) { lo = mid + 1 } else { hi = mid }
  }
  return lo
}

/** First index whose id sorts after `after`. */
function upperBound (sorted: readonly NodeRecord[], after: NodeId): number {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (sorted[mid].id <= after) { lo = mid + 1 } else { hi = mid }
  }
  return lo
}
