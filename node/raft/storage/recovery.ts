/**
 * Replaying the write-ahead log at start-up (pure: the records come from
 * wal.ts), and the durability rule that decides what a damaged log may
 * lose.
 *
 * Facts the rule rests on. Every group commit is one frame, written with one
 * write() and, unless it holds nothing but a commit index, fdatasync'd
 * before the next frame is written; a segment is synced before the next one
 * is created. So at most the last frame of the log can be incomplete after
 * a crash, and any frame followed by another was synced before that one was
 * written.
 *
 * Repaired (cut off with a logged warning): a bad frame at the end of the
 * last segment followed by nothing but zeros. It is the torn write of the
 * last group commit, whose callers were never told it was durable (or a
 * commit-only frame, whose loss Raft tolerates).
 *
 * Refused (StorageCorruptionError, nothing written): a bad frame followed by
 * more data, damage after the last frame of an earlier segment, a checksummed
 * frame that does not decode, records that do not fit the log (an entry that
 * leaves a gap, a compaction beyond the log), a segment missing from the
 * sequence, entries the log needs whose segment is gone, a missing or damaged
 * snapshot file. A crash cannot cause any of them.
 *
 * What no rule can see: a bit flip in the very last frame, followed by
 * zeros, looks exactly like a torn write and is cut off; so does damage to
 * a frame's length field that points it into the zeros after the log's
 * end (a length beyond the largest frame, or a frame followed by more
 * data, is caught; the checksum covers the payload only); so does a whole
 * synced frame lost at the end of the log (a disk that lies about fsync).
 * The LevelDB store before the WAL could tell the first case apart (its state
 * record named the last index); a WAL cannot without a second write per
 * commit, which is what it exists to avoid (etcd's WAL makes the same call).
 */
import type { LogState, WalRecord } from './records.ts'

export const EMPTY_STATE: LogState = Object.freeze({
  hardState: Object.freeze({ term: 0, vote: null, commit: 0 }),
  snapshotIndex: 0,
  snapshotTerm: 0,
  lastIndex: 0,
  lastTerm: 0
})

/** Where an entry's record lies: segment, byte offset in the segment file, record length. */
export interface EntryLocation {
  seq: number
  offset: number
  bytes: number
  term: number
}

/** The records replay found inconsistent; wal.ts turns it into a StorageCorruptionError. */
export class ReplayError extends Error {
  readonly index: number | null

  constructor (problem: string, index: number | null = null) {
    super(problem)
    this.index = index
  }
}

/**
 * Where every live entry (snapshotIndex+1 ..= lastIndex) lies, in index
 * order; the entries themselves stay on disk. Segments only grow along the
 * log (an overwrite goes to the current segment), so the first location
 * names the oldest segment still needed.
 */
export class LogIndex {
  /** The index of locations[0]. */
  private first = 1
  private locations: EntryLocation[] = []

  get size (): number { return this.locations.length }
  get firstIndex (): number { return this.first }

  get (index: number): EntryLocation | undefined {
    return this.locations[index - this.first]
  }

  /** Makes `index` the last entry (dropping any at or after it). */
  put (index: number, location: EntryLocation): void {
    if (this.locations.length === 0 || index <= this.first) {
      this.first = index
      this.locations = []
    } else {
      this.locations.length = Math.min(this.locations.length, index - this.first)
    }
    if (this.first + this.locations.length !== index) {
      throw new RangeError(`log index: entry ${index} does not follow ${this.first + this.locations.length - 1}`)
    }
    this.locations.push(location)
  }

  /** Drops every entry up to and including `index`. */
  dropThrough (index: number): void {
    const count = Math.min(this.locations.length, Math.max(0, index + 1 - this.first))
    this.locations.splice(0, count)
    this.first += count
    if (this.locations.length === 0) { this.first = index + 1 }
  }

  clear (nextIndex: number): void {
    this.locations = []
    this.first = nextIndex
  }

  /** The oldest segment holding a live entry, or null when there is none. */
  oldestSegment (): number | null {
    return this.locations[0]?.seq ?? null
  }
}

/**
 * Applies records to a log state and index, checking that each fits: the
 * same function replays the log at open and keeps the index current as
 * frames are written.
 */
export class Replay {
  state: LogState
  readonly index: LogIndex
  /**
   * Entries snapshotIndex+1 ..= missingThrough were in segments released
   * before the first one present (a later compaction must cover them).
   */
  private missingThrough: number

  /** Starts from the head of the first segment present. */
  constructor (head: LogState) {
    this.state = { ...head, hardState: { ...head.hardState } }
    this.index = new LogIndex()
    this.index.clear(head.lastIndex + 1)
    this.missingThrough = head.lastIndex
  }

  apply (record: WalRecord, location?: Omit<EntryLocation, 'term'>): void {
    const state = this.state
    switch (record.kind) {
      case 'entry': {
        const { index, term } = record.entry
        if (index <= state.snapshotIndex || index > state.lastIndex + 1) {
          throw new ReplayError(`log entry ${index} does not fit the log (snapshot ${state.snapshotIndex}, last index ${state.lastIndex})`, index)
        }
        if (location === undefined) { throw new RangeError('replay: an entry needs its location') }
        this.index.put(index, { ...location, term })
        state.lastIndex = index
        state.lastTerm = term
        this.missingThrough = Math.min(this.missingThrough, index - 1)
        return
      }
      case 'hard-state':
        state.hardState = record.hardState
        return
      case 'snapshot': {
        const { mode, index, term } = record
        if (index <= state.snapshotIndex) {
          throw new ReplayError(`a snapshot record at index ${index} is not after the snapshot at ${state.snapshotIndex}`, index)
        }
        if (mode === 'install') {
          this.index.clear(index + 1)
          state.lastIndex = index
          state.lastTerm = term
          this.missingThrough = index
        } else {
          const known = index === state.lastIndex ? state.lastTerm : this.index.get(index)?.term
          if (index > state.lastIndex || (known !== undefined && known !== term)) {
            throw new ReplayError(`a compaction at ${index}/${term} does not fit the log (last index ${state.lastIndex}/${state.lastTerm})`, index)
          }
          this.index.dropThrough(index)
        }
        state.snapshotIndex = index
        state.snapshotTerm = term
        return
      }
      default:
        throw new ReplayError(`a segment head (segment ${record.seq}) in the middle of a segment`)
    }
  }

  /** The head of a later segment must describe the state the earlier ones left. */
  checkHead (seq: number, head: LogState): void {
    const s = this.state
    if (head.snapshotIndex !== s.snapshotIndex || head.snapshotTerm !== s.snapshotTerm || head.lastIndex !== s.lastIndex ||
      head.lastTerm !== s.lastTerm || head.hardState.term !== s.hardState.term || head.hardState.vote !== s.hardState.vote) {
      throw new ReplayError(`segment ${seq} starts from another state than the segments before it left ` +
        `(snapshot ${head.snapshotIndex}, last ${head.lastIndex}/${head.lastTerm}, term ${head.hardState.term}; ` +
        `replayed snapshot ${s.snapshotIndex}, last ${s.lastIndex}/${s.lastTerm}, term ${s.hardState.term})`)
    }
    // a commit-only frame at the end of the segment before is not synced on its own
    s.hardState = { ...s.hardState, commit: Math.max(s.hardState.commit, head.hardState.commit) }
  }

  /** Checks what the whole replay left. */
  finish (): LogState {
    const { snapshotIndex, lastIndex, hardState } = this.state
    if (this.missingThrough > snapshotIndex) {
      throw new ReplayError(`log entries ${snapshotIndex + 1}..${this.missingThrough} are missing (their segment was deleted)`, snapshotIndex + 1)
    }
    if (hardState.commit > lastIndex) {
      throw new ReplayError(`the commit index ${hardState.commit} is beyond the last log index ${lastIndex}`, hardState.commit)
    }
    return this.state
  }
}
