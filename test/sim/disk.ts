/**
 * A simulated disk for one node. Writes land in `pending` (the OS page
 * cache) and become `durable` only when an fsync covering them completes;
 * a crash throws the pending writes away. Writes become durable in the
 * order they were made, as with a write-ahead log.
 *
 * WriteAheadDisk is that model for any durable state and kind of write
 * (the PBFT simulator keeps records and snapshots on it); SimDisk is Raft's.
 */
import type { Entry, HardState, RestoredState, Snapshot } from '../../protocols/raft/index.ts'

export class WriteAheadDisk<D, W> {
  /** What survives a crash; `applyWrite` changes it in place as fsyncs complete. */
  readonly durable: D
  private readonly applyWrite: (durable: D, write: W) => void
  private pending: Array<{ sequence: number, write: W }> = []
  private written = 0

  constructor (durable: D, applyWrite: (durable: D, write: W) => void) {
    this.durable = durable
    this.applyWrite = applyWrite
  }

  /** Buffers a write; returns its sequence number (what sync() takes). */
  write (write: W): number {
    this.pending.push({ sequence: ++this.written, write })
    return this.written
  }

  /** The sequence number of the latest write. */
  get lastWrite (): number {
    return this.written
  }

  /** How many writes no fsync covered yet. */
  get unsynced (): number {
    return this.pending.length
  }

  /** An fsync issued after write `sequence` completed: it and every earlier write are durable. */
  syncThrough (sequence: number): void {
    let n = 0
    while (n < this.pending.length && this.pending[n].sequence <= sequence) {
      this.applyWrite(this.durable, this.pending[n].write)
      n++
    }
    this.pending.splice(0, n)
  }

  /** Power loss: whatever was not synced is gone. Returns how many writes were lost. */
  crash (): number {
    const lost = this.pending.length
    this.pending = []
    return lost
  }
}

export type DiskWrite =
  /** What a Ready asks to persist (see Ready in protocols/raft/types.ts). */
  | { kind: 'ready', snapshot?: Snapshot, entries: Entry[], hardState?: HardState }
  /** The application's own snapshot (compaction): entries up to its index go. */
  | { kind: 'compact', snapshot: Snapshot }

export interface DurableState {
  hardState: HardState
  snapshot?: Snapshot
  /** The entries right after the snapshot (or from index 1), contiguous. */
  entries: Entry[]
}

/** Raft's disk: hard state, snapshot and the log after it. */
export class SimDisk extends WriteAheadDisk<DurableState, DiskWrite> {
  constructor () {
    super({ hardState: { term: 0, vote: null, commit: 0 }, entries: [] }, applyWrite)
  }

  /** What the node restarts from. */
  restoredState (): RestoredState {
    const { hardState, snapshot, entries } = this.durable
    return snapshot === undefined
      ? { hardState: { ...hardState }, entries: [...entries] }
      : { hardState: { ...hardState }, snapshot, entries: [...entries] }
  }
}

function applyWrite (disk: DurableState, write: DiskWrite): void {
  if (write.kind === 'compact') {
    const { index } = write.snapshot.meta
    if (index <= (disk.snapshot?.meta.index ?? 0)) { return }
    disk.snapshot = write.snapshot
    disk.entries = disk.entries.filter(e => e.index > index)
    return
  }
  if (write.snapshot !== undefined) {
    // A snapshot from the leader replaces the whole log.
    disk.snapshot = write.snapshot
    disk.entries = []
  }
  if (write.entries.length > 0) {
    const first = write.entries[0].index
    const lastDurable = disk.entries.at(-1)?.index ?? disk.snapshot?.meta.index ?? 0
    if (first > lastDurable + 1) { throw new Error(`disk: write at ${first} would leave a gap after ${lastDurable}`) }
    const firstDurable = disk.entries[0]?.index ?? first
    // Overwrite a conflicting suffix (never below the snapshot: those entries are committed).
    if (first - firstDurable < disk.entries.length) { disk.entries.length = Math.max(0, first - firstDurable) }
    disk.entries.push(...write.entries)
  }
  if (write.hardState !== undefined) { disk.hardState = { ...write.hardState } }
}
