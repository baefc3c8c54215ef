/**
 * The ops a replica has integrated, kept so that it can hand another
 * replica the ones it lacks (`opsSince(version)`) or ship the whole
 * document as ops (the registry's `rga` state, protocols/crdt/rga-type.ts).
 *
 * Per replica, entries sorted by seq (a replica's ops integrate in seq
 * order, so they are appended). Run-length: an insert that continues the
 * replica's previous insert (its origin is that insert's last unit, its
 * seq and timestamp follow on) is merged into it, so typing a paragraph is
 * one entry, whatever the number of keystrokes or messages it came in.
 * Merging is canonical (it depends on the ops only, not on the order they
 * came in), and a merged insert integrates exactly as its parts do: each
 * unit of an insert is the origin of the next, so the part after a unit u
 * is the insert with origin u (Rga.apply slices an insert it holds a prefix
 * of). Merged inserts stop at OP_TEXT_LENGTH_MAX units.
 *
 * Each entry has a causal rank: 1 + the largest rank of what it depends on
 * (the replica's previous entry, the entry holding its origin, the entries
 * holding the units it deletes). Listing ops by (rank, replica, seq) is a
 * causal order (an op comes after all it depends on, so a replica that
 * applies them in that order never buffers one) and a canonical one (two
 * histories of the same ops list them identically).
 *
 * Compaction (`truncate`): once every live member holds the ops up to a
 * version vector (causal stability), the history drops them and keeps
 * that vector as its `base`; it then holds only the ops after the base,
 * re-ranked as if it had started there, so two histories truncated at the
 * same base still list the same ops identically. A replica at a version
 * below the base cannot be served from the history: it needs the document
 * itself (rga-type.ts ships a snapshot with such a history).
 */
import { OP_TEXT_LENGTH_MAX } from './validate.ts'
import type { InsertOp, Op } from './types.ts'

/** How many seqs an op takes. */
export function opSize (op: Op): number {
  return op.kind === 'insert' ? op.text.length : 1
}

interface Entry {
  readonly op: Op
  readonly rank: number
}

export class OpHistory {
  private byReplica: Map<string, Entry[]>
  private entryCount = 0
  /** Replica id -> seq below which its ops were dropped by `truncate` (absent: none). */
  private baseVersion: Map<string, number>

  constructor (from?: OpHistory) {
    // entries are immutable: a copy shares them
    this.byReplica = new Map()
    this.baseVersion = new Map(from?.baseVersion)
    if (from !== undefined) {
      for (const [id, entries] of from.byReplica) { this.byReplica.set(id, entries.slice()) }
      this.entryCount = from.entryCount
    }
  }

  /** The ops dropped by `truncate`: replica id -> seq below which it holds none (empty: holds every op). */
  get base (): ReadonlyMap<string, number> {
    return this.baseVersion
  }

  /**
   * Drops the ops (and parts of inserts) within `stable`, which must be
   * within what the history's owner has integrated, keeps `stable` joined
   * into the base, and re-ranks what is left. Returns the entries dropped.
   */
  truncate (stable: ReadonlyMap<string, number>): number {
    const base = new Map(this.baseVersion)
    for (const [id, next] of stable) {
      if (next > (base.get(id) ?? 0)) { base.set(id, next) }
    }
    const kept = this.since(base)
    const before = this.entryCount
    this.byReplica = new Map()
    this.entryCount = 0
    this.baseVersion = base
    // kept is in causal order, so each op's dependencies are recorded first
    for (const op of kept) { this.record(op) }
    return before - this.entryCount
  }

  /** Entries held (after merging). */
  get size (): number {
    return this.entryCount
  }

  clone (): OpHistory {
    return new OpHistory(this)
  }

  /** Records an op just integrated (its dependencies are recorded already). */
  record (op: Op): void {
    let entries = this.byReplica.get(op.replica)
    if (entries === undefined) {
      entries = []
      this.byReplica.set(op.replica, entries)
    }
    const last = entries.length > 0 ? entries[entries.length - 1] : undefined
    if (op.kind === 'insert' && last !== undefined && last.op.kind === 'insert' && continues(last.op, op)) {
      entries[entries.length - 1] = { op: { ...last.op, text: last.op.text + op.text }, rank: last.rank }
      return
    }
    let rank = last?.rank ?? 0
    if (op.kind === 'insert') {
      if (op.origin !== null) { rank = Math.max(rank, this.rankOf(op.origin.replica, op.origin.seq, 1)) }
    } else {
      for (const range of op.ranges) { rank = Math.max(rank, this.rankOf(range.replica, range.seq, range.length)) }
    }
    entries.push({ op, rank: rank + 1 })
    this.entryCount++
  }

  /**
   * The ops (inserts cut to the units `version` lacks) not covered by
   * `version`, in causal and canonical order: by rank, replica, seq.
   */
  since (version: ReadonlyMap<string, number> = new Map()): Op[] {
    const out: Entry[] = []
    for (const [id, entries] of this.byReplica) {
      const next = version.get(id) ?? 0
      // the first entry that ends after `next`
      let lo = 0
      let hi = entries.length
      while (lo < hi) {
        const mid = (lo + hi) >>> 1
        const op = entries[mid].op
        if (op.seq + opSize(op) <= next) { lo = mid + 1 } else { hi = mid }
      }
      for (let i = lo; i < entries.length; i++) {
        const entry = entries[i]
        out.push(entry.op.seq < next && entry.op.kind === 'insert' ? { op: sliceInsert(entry.op, next), rank: entry.rank } : entry)
      }
    }
    out.sort(byRank)
    return out.map(e => e.op)
  }

  /** The largest rank of the entries holding units [seq, seq + length) of `replica` (0: none). */
  private rankOf (replica: string, seq: number, length: number): number {
    const entries = this.byReplica.get(replica)
    if (entries === undefined) { return 0 }
    let lo = 0
    let hi = entries.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const op = entries[mid].op
      if (op.seq + opSize(op) <= seq) { lo = mid + 1 } else { hi = mid }
    }
    let rank = 0
    for (let i = lo; i < entries.length && entries[i].op.seq < seq + length; i++) { rank = Math.max(rank, entries[i].rank) }
    return rank
  }
}

function byRank (a: Entry, b: Entry): number {
  if (a.rank !== b.rank) { return a.rank - b.rank }
  if (a.op.replica !== b.op.replica) { return a.op.replica < b.op.replica ? -1 : 1 }
  return a.op.seq - b.op.seq
}

/** Whether `op` continues `prev` (same replica): origin its last unit, seqs and timestamps following on. */
function continues (prev: InsertOp, op: InsertOp): boolean {
  const end = prev.seq + prev.text.length
  return op.seq === end && op.lamport === prev.lamport + prev.text.length && op.origin !== null &&
    op.origin.replica === op.replica && op.origin.seq === end - 1 && prev.text.length + op.text.length <= OP_TEXT_LENGTH_MAX
}

/** The part of `op` from seq `from` on (op.seq < from < its end): the insert after unit from - 1. */
export function sliceInsert (op: InsertOp, from: number): InsertOp {
  const k = from - op.seq
  return { kind: 'insert', replica: op.replica, seq: from, lamport: op.lamport + k, origin: { replica: op.replica, seq: from - 1 }, text: op.text.slice(k) }
}
