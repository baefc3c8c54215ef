import { assert } from '../common/assert.ts'
import { RestoredStateError } from './validate.ts'
import type { Entry, Snapshot } from './types.ts'

/**
 * The in-memory Raft log: the latest snapshot's position plus every entry
 * after it. Indexes:
 *
 * snapshotIndex <= applied <= committed <= lastIndex
 * stabled: entries up to here are durable (reported by advance()).
 *
 * The caller persists what the core hands out in Ready, so the core keeps
 * the whole post-snapshot log in memory; compact() bounds it.
 */
export class RaftLog {
  snapshotIndex = 0
  snapshotTerm = 0
  /** The latest snapshot (sent to followers that are too far behind). */
  snapshot: Snapshot | undefined
  /** A snapshot received from the leader that is not yet durable. */
  pendingSnapshot: Snapshot | undefined
  private entries: Entry[] = []
  committed = 0
  applied = 0
  stabled = 0
  /**
   * The lowest index overwritten (or dropped by a restored snapshot) since
   * the last unstableEntries(): entries from here on that the outstanding
   * Ready persists are no longer in the log, so advance() must not count
   * them as stable. Infinity when nothing was overwritten.
   */
  private overwrittenFrom = Infinity

  constructor (snapshot: Snapshot | undefined, entries: Entry[]) {
    if (snapshot !== undefined) {
      this.snapshot = snapshot
      this.snapshotIndex = snapshot.meta.index
      this.snapshotTerm = snapshot.meta.term
      this.committed = this.applied = this.stabled = snapshot.meta.index
    }
    for (const entry of entries) {
      if (entry.index !== this.lastIndex() + 1 || entry.term < this.lastTerm()) {
        throw new RestoredStateError(`raft log: restored entries are not contiguous at index ${entry.index}`)
      }
      this.entries.push(copyEntry(entry))
    }
    this.stabled = this.lastIndex()
  }

  firstIndex (): number {
    return this.snapshotIndex + 1
  }

  lastIndex (): number {
    return this.snapshotIndex + this.entries.length
  }

  lastTerm (): number {
    return this.entries.length === 0 ? this.snapshotTerm : this.entries[this.entries.length - 1].term
  }

  /** The term of the entry at `index`, or undefined if compacted away or not yet written. */
  term (index: number): number | undefined {
    if (index === this.snapshotIndex) { return this.snapshotTerm }
    if (index < this.snapshotIndex || index > this.lastIndex()) { return undefined }
    return this.entries[index - this.snapshotIndex - 1].term
  }

  entryAt (index: number): Entry | undefined {
    if (index <= this.snapshotIndex || index > this.lastIndex()) { return undefined }
    return this.entries[index - this.snapshotIndex - 1]
  }

  matchTerm (index: number, term: number): boolean {
    return this.term(index) === term
  }

  /** Raft §5.4.1: is a log ending at (lastIndex, lastTerm) at least as up to date as ours? */
  isUpToDate (lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm()
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex())
  }

  /**
   * Entries from `lo` on, at most `countMax` of them and at most `bytesMax`
   * bytes of data (but always at least one). Undefined if `lo` is compacted.
   */
  entriesFrom (lo: number, bytesMax: number, countMax: number): Entry[] | undefined {
    if (lo <= this.snapshotIndex) { return undefined }
    const result: Entry[] = []
    let bytes = 0
    for (let index = lo; index <= this.lastIndex() && result.length < countMax; index++) {
      const entry = this.entries[index - this.snapshotIndex - 1]
      bytes += entry.data.byteLength
      if (result.length > 0 && bytes > bytesMax) { break }
      result.push(entry)
    }
    return result
  }

  /**
   * etcd's findConflictByTerm: the largest index <= `index` whose term is <=
   * `term`, with that term. Lets a follower tell the leader where its log may
   * still match in one round trip instead of one per entry.
   */
  findConflictByTerm (index: number, term: number): { index: number, term: number } {
    let i = Math.min(index, this.lastIndex())
    for (; i >= this.snapshotIndex; i--) {
      const ourTerm = this.term(i)
      assert(ourTerm !== undefined, 'log: term must be known above the snapshot')
      if (ourTerm <= term) { return { index: i, term: ourTerm } }
    }
    // Below our snapshot the terms are unknown: answer "somewhere before here".
    return { index: Math.max(0, i), term: 0 }
  }

  /**
   * The follower side of AppendEntries: if our log matches (prevIndex,
   * prevTerm), append `entries` (truncating a conflicting suffix), advance
   * commit to min(commit, last new index), and return the last new index;
   * 'mismatch' when the log does not match. The caller ensures prevIndex >=
   * committed, so committed entries are never rewritten.
   */
  maybeAppend (prevIndex: number, prevTerm: number, commit: number, entries: Entry[]): number | 'mismatch' {
    assert(prevIndex >= this.committed, 'log: append below the commit index')
    if (!this.matchTerm(prevIndex, prevTerm)) { return 'mismatch' }
    const lastNewIndex = prevIndex + entries.length
    const conflict = this.findConflict(entries)
    if (conflict !== 0) { this.append(entries.slice(conflict - entries[0].index)) }
    this.commitTo(Math.min(commit, lastNewIndex))
    return lastNewIndex
  }

  /** The index of the first entry that is new or disagrees with our log, or 0. */
  private findConflict (entries: Entry[]): number {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) { return entry.index }
    }
    return 0
  }

  /** Appends entries, replacing any suffix of the log they overlap. */
  append (entries: Entry[]): void {
    if (entries.length === 0) { return }
    const first = entries[0].index
    assert(first > this.committed, `log: append at ${first} would overwrite committed ${this.committed}`)
    assert(first <= this.lastIndex() + 1, `log: append at ${first} leaves a gap after ${this.lastIndex()}`)
    if (first <= this.lastIndex()) {
      this.entries.length = first - this.snapshotIndex - 1
      this.stabled = Math.min(this.stabled, first - 1)
      this.overwrittenFrom = Math.min(this.overwrittenFrom, first)
    }
    let previousTerm = this.lastTerm()
    for (const entry of entries) {
      assert(entry.index === this.lastIndex() + 1 && entry.term >= previousTerm, 'log: appended entries must be contiguous')
      previousTerm = entry.term
      this.entries.push(copyEntry(entry))
    }
  }

  commitTo (index: number): boolean {
    if (index <= this.committed) { return false }
    assert(index <= this.lastIndex(), `log: commit ${index} beyond last index ${this.lastIndex()}`)
    this.committed = index
    return true
  }

  /**
   * ready(): the entries to persist now. Starts tracking overwrites, so
   * that stableTo() knows which of them are still in the log.
   */
  unstableEntries (): Entry[] {
    this.overwrittenFrom = Infinity
    return this.entries.slice(this.stabled - this.snapshotIndex)
  }

  /** Committed entries not yet applied, bounded by bytes; none while a snapshot awaits persistence. */
  nextCommittedEntries (bytesMax: number): Entry[] {
    if (this.pendingSnapshot !== undefined) { return [] }
    const from = Math.max(this.applied, this.snapshotIndex) + 1
    if (from > this.committed) { return [] }
    return this.entriesFrom(from, bytesMax, this.committed - from + 1) ?? []
  }

  hasNextCommittedEntries (): boolean {
    return this.pendingSnapshot === undefined && this.committed > Math.max(this.applied, this.snapshotIndex)
  }

  /**
   * Replaces the log with a snapshot received from the leader. The caller
   * checked that it is newer than our commit index.
   */
  restore (snapshot: Snapshot): void {
    assert(snapshot.meta.index > this.committed, 'log: restoring an old snapshot')
    this.entries = []
    this.snapshotIndex = snapshot.meta.index
    this.snapshotTerm = snapshot.meta.term
    this.snapshot = snapshot
    this.pendingSnapshot = snapshot
    this.committed = snapshot.meta.index
    this.stabled = snapshot.meta.index
    this.overwrittenFrom = Math.min(this.overwrittenFrom, snapshot.meta.index + 1)
  }

  /** Drops entries up to `snapshot.meta.index` (the application's own snapshot). */
  compact (snapshot: Snapshot): void {
    const index = snapshot.meta.index
    assert(index > this.snapshotIndex && index <= this.applied, 'log: compaction index out of range')
    assert(index <= this.stabled, 'log: compacting entries that are not durable')
    assert(this.term(index) === snapshot.meta.term, 'log: snapshot term mismatch')
    this.entries = this.entries.slice(index - this.snapshotIndex)
    this.snapshotIndex = index
    this.snapshotTerm = snapshot.meta.term
    this.snapshot = snapshot
  }

  /**
   * advance(): the Ready persisted the entries from stabled + 1 up to
   * (index, term). Those overwritten since ready() are not in the log any
   * more; the prefix before the first overwritten index still is, and is
   * now durable (the next Ready carries the replacements from there on).
   */
  stableTo (index: number, term: number): void {
    const last = Math.min(index, this.overwrittenFrom - 1)
    this.overwrittenFrom = Infinity
    if (last <= this.stabled) { return }
    assert(last < index || this.matchTerm(index, term), 'log: persisted entries changed without being overwritten')
    this.stabled = last
  }

  /** advance(): the pending snapshot is durable and applied. */
  stableSnapshot (snapshot: Snapshot): void {
    if (this.pendingSnapshot === snapshot) { this.pendingSnapshot = undefined }
    this.appliedTo(snapshot.meta.index)
  }

  appliedTo (index: number): void {
    if (index <= this.applied) { return }
    assert(index <= this.committed, `log: applied ${index} beyond commit ${this.committed}`)
    this.applied = index
  }
}

function copyEntry (entry: Entry): Entry {
  return { term: entry.term, index: entry.index, type: entry.type, data: entry.data }
}
