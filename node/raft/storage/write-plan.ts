/**
 * Turning queued writes into one LevelDB batch (pure: no I/O). The storage
 * validates and encodes every write when it is queued; here a group of them
 * becomes the records of a single commit batch, plus the snapshot chunks that
 * have to be staged in batches of their own before it.
 *
 * Snapshot chunks are described, not encoded, until they are written: a
 * ChunkRun names a range of chunks of the snapshot's data, and sealChunks()
 * checksums and copies them just before their batch goes to LevelDB, so a
 * large snapshot is never sealed in one go on the event loop.
 */
import { CHUNK_KEY_BYTES, STATE_KEY, chunkKey } from './layout.ts'
import { CHUNK_OVERHEAD_BYTES, encodeStateValue, sealRecord } from './records.ts'
import type { LogState } from './records.ts'
import type { HardState } from '../../../protocols/raft/index.ts'

export type KeyValue = [key: Uint8Array, value: Uint8Array]

export interface EncodedEntry {
  index: number
  term: number
  record: KeyValue
}

/**
 * Chunks first ..< first + count of the snapshot at `snapshotIndex`: chunk c
 * holds data[c * chunkBytes, (c + 1) * chunkBytes). `data` is the caller's
 * buffer, read when the chunks are sealed.
 */
export interface ChunkRun {
  snapshotIndex: number
  data: Uint8Array
  chunkBytes: number
  first: number
  count: number
}

export interface EncodedSnapshot {
  index: number
  term: number
  /** The `M` record. */
  meta: KeyValue
  /** Chunks that ride in the commit batch (a snapshot that fits in it); null when they are staged. */
  inline: ChunkRun | null
  /**
   * Chunks of a larger snapshot, one run per synced batch, written before
   * the commit batch. They sit under the snapshot's own index, which no live
   * snapshot uses, so they stay invisible until the commit batch writes the
   * `M` and `H` records that point at them. Always empty in a `compact` write:
   * saveSnapshot() stages those chunks itself before it queues the write.
   */
  staged: ChunkRun[]
}

/**
 * One queued write. `ready`: a Ready's snapshot (replaces the whole log),
 * entries (replace the log from their first index on), hard state.
 * `compact`: the application's own snapshot; entries up to its index leave
 * the log, later ones stay.
 */
export type WriteOp =
  | { kind: 'ready', hardState?: HardState, entries: EncodedEntry[], snapshot?: EncodedSnapshot, sync: boolean, bytes: number }
  | { kind: 'compact', snapshot: EncodedSnapshot, sync: true, bytes: number }

export interface BatchPlan {
  /** Chunk runs to write (sealed, synced) before the commit batch. */
  staged: ChunkRun[]
  /** The commit batch; its last record is the new state record. */
  records: KeyValue[]
  state: LogState
  sync: boolean
  entries: number
  bytes: number
  /** The log lost entries at its head or tail, or the snapshot changed: stray records must be cleared. */
  needsCleanup: boolean
}

/** The log state after `op` (the same function validates at enqueue time and plans the batch). */
export function applyOp (state: LogState, op: WriteOp): LogState {
  const next = { ...state }
  if (op.kind === 'compact') {
    next.snapshotIndex = op.snapshot.index
    next.snapshotTerm = op.snapshot.term
    return next
  }
  if (op.snapshot !== undefined) {
    next.snapshotIndex = next.lastIndex = op.snapshot.index
    next.snapshotTerm = next.lastTerm = op.snapshot.term
  }
  const last = op.entries[op.entries.length - 1]
  if (last !== undefined) {
    next.lastIndex = last.index
    next.lastTerm = last.term
  }
  if (op.hardState !== undefined) { next.hardState = op.hardState }
  return next
}

/** Seals the chunks of `ops` that ride in the commit batch, so call it just before writing. */
export function planBatch (durable: LogState, ops: WriteOp[]): BatchPlan {
  const records: KeyValue[] = []
  const staged: ChunkRun[] = []
  let state = durable
  let highestLastIndex = durable.lastIndex
  let entries = 0
  let sync = false
  for (const op of ops) {
    if (op.snapshot !== undefined) {
      staged.push(...op.snapshot.staged)
      if (op.snapshot.inline !== null) { records.push(...sealChunks(op.snapshot.inline)) }
      records.push(op.snapshot.meta)
    }
    if (op.kind === 'ready') {
      for (const entry of op.entries) { records.push(entry.record) }
      entries += op.entries.length
    }
    sync ||= op.sync
    state = applyOp(state, op)
    highestLastIndex = Math.max(highestLastIndex, state.lastIndex)
  }
  records.push([STATE_KEY, encodeStateValue(STATE_KEY, state)])
  return {
    staged,
    records,
    state,
    sync,
    entries,
    bytes: recordBytes(records),
    needsCleanup: highestLastIndex > state.lastIndex || state.snapshotIndex !== durable.snapshotIndex
  }
}

export function recordBytes (records: KeyValue[]): number {
  let bytes = 0
  for (const [key, value] of records) { bytes += key.length + value.length }
  return bytes
}

/** All chunks of a snapshot's data (none for an empty payload). */
export function snapshotChunks (snapshotIndex: number, data: Uint8Array, chunkBytes: number): ChunkRun {
  return { snapshotIndex, data, chunkBytes, first: 0, count: Math.ceil(data.length / chunkBytes) }
}

/** Key and value bytes the records of `run` will take once sealed. */
export function chunkRunBytes (run: ChunkRun): number {
  const start = run.first * run.chunkBytes
  const end = Math.min(run.data.length, (run.first + run.count) * run.chunkBytes)
  return run.count * (CHUNK_KEY_BYTES + CHUNK_OVERHEAD_BYTES) + Math.max(0, end - start)
}

/** `run` cut into runs of consecutive chunks whose records take at most `batchBytes` each (at least one chunk each). */
export function splitChunkRun (run: ChunkRun, batchBytes: number): ChunkRun[] {
  const runs: ChunkRun[] = []
  let first = run.first
  let count = 0
  let bytes = 0
  for (let chunk = run.first; chunk < run.first + run.count; chunk++) {
    const size = chunkRunBytes({ ...run, first: chunk, count: 1 })
    if (count > 0 && bytes + size > batchBytes) {
      runs.push({ ...run, first, count })
      first = chunk
      count = 0
      bytes = 0
    }
    count++
    bytes += size
  }
  if (count > 0) { runs.push({ ...run, first, count }) }
  return runs
}

/** The `S` records of `run`: each chunk checksummed and copied out of the snapshot data. */
export function sealChunks (run: ChunkRun): KeyValue[] {
  const records: KeyValue[] = []
  for (let chunk = run.first; chunk < run.first + run.count; chunk++) {
    const key = chunkKey(run.snapshotIndex, chunk)
    records.push([key, sealRecord(key, run.data.subarray(chunk * run.chunkBytes, (chunk + 1) * run.chunkBytes))])
  }
  return records
}
