/**
 * Turning queued writes into one LevelDB batch (pure: no I/O). The storage
 * validates and encodes every write when it is queued; here a group of them
 * becomes the records of a single commit batch, plus the snapshot chunks that
 * had to be staged in batches of their own.
 */
import { STATE_KEY } from './layout.ts'
import { encodeStateValue } from './records.ts'
import type { LogState } from './records.ts'
import type { HardState } from '../../../protocols/raft/index.ts'

export type KeyValue = [key: Uint8Array, value: Uint8Array]

export interface EncodedEntry {
  index: number
  term: number
  record: KeyValue
}

export interface EncodedSnapshot {
  index: number
  term: number
  /** The `M` record. */
  meta: KeyValue
  /** Chunk records that ride in the commit batch (a snapshot that fits in it). */
  inlineChunks: KeyValue[]
  /**
   * Chunk records of a larger snapshot, grouped into synced batches written
   * before the commit batch. They sit under the snapshot's own index, which no
   * live snapshot uses, so they stay invisible until the commit batch writes
   * the `M` and `H` records that point at them.
   */
  stagedBatches: KeyValue[][]
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
  staged: KeyValue[][]
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

export function planBatch (durable: LogState, ops: WriteOp[]): BatchPlan {
  const records: KeyValue[] = []
  const staged: KeyValue[][] = []
  let state = durable
  let highestLastIndex = durable.lastIndex
  let entries = 0
  let sync = false
  for (const op of ops) {
    if (op.snapshot !== undefined) {
      staged.push(...op.snapshot.stagedBatches)
      records.push(...op.snapshot.inlineChunks, op.snapshot.meta)
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
  let bytes = 0
  for (const [key, value] of records) { bytes += key.length + value.length }
  return {
    staged,
    records,
    state,
    sync,
    entries,
    bytes,
    needsCleanup: highestLastIndex > state.lastIndex || state.snapshotIndex !== durable.snapshotIndex
  }
}
