/**
 * Turning queued writes into one write-ahead log frame (pure: no I/O). The
 * storage validates and encodes every write when it is queued; here a group
 * of them becomes the records of a single frame, in call order, plus the
 * snapshot files that must be in place before the frame names them.
 */
import { FRAME_HEADER_BYTES, sealFrame } from '../../storage-frames.ts'
import { encodeHardStateRecord, encodeSnapshotRecord } from './records.ts'
import type { LogState, WalRecord } from './records.ts'
import type { Entry, HardState, Snapshot } from '../../../protocols/raft/index.ts'

export interface EncodedEntry {
  entry: Entry
  /** Its `E` record. */
  record: Uint8Array
}

export interface SnapshotWrite {
  snapshot: Snapshot
  /**
   * The temporary file saveSnapshot() already wrote and synced it to (a
   * large snapshot, staged next to the queue); null: the writer writes the
   * file itself before the frame.
   */
  staged: string | null
}

/**
 * One queued write. `ready`: a Ready's snapshot (replaces the whole log),
 * entries (replace the log from their first index on), hard state.
 * `compact`: the application's own snapshot; entries up to its index leave
 * the log, later ones stay. `bytes`: what it adds to the frame.
 */
export type WriteOp =
  | { kind: 'ready', hardState?: HardState, entries: EncodedEntry[], snapshot?: SnapshotWrite, sync: boolean, bytes: number }
  | { kind: 'compact', snapshot: SnapshotWrite, sync: true, bytes: number }

/** A record of the frame and where it lies in the frame's payload. */
export interface PlannedRecord {
  record: WalRecord
  offset: number
  bytes: number
}

export interface BatchPlan {
  /** Snapshot files to put in place (synced) before the frame is written. */
  snapshots: SnapshotWrite[]
  /** The sealed frame. */
  frame: Uint8Array
  records: PlannedRecord[]
  /** The log state once the frame is durable. */
  state: LogState
  sync: boolean
  entries: number
}

/** The log state after `op` (the same function validates at enqueue time and plans the frame). */
export function applyOp (state: LogState, op: WriteOp): LogState {
  const next = { ...state }
  const snapshot = op.snapshot?.snapshot.meta
  if (op.kind === 'compact') {
    next.snapshotIndex = op.snapshot.snapshot.meta.index
    next.snapshotTerm = op.snapshot.snapshot.meta.term
    return next
  }
  if (snapshot !== undefined) {
    next.snapshotIndex = next.lastIndex = snapshot.index
    next.snapshotTerm = next.lastTerm = snapshot.term
  }
  const last = op.entries[op.entries.length - 1]
  if (last !== undefined) {
    next.lastIndex = last.entry.index
    next.lastTerm = last.entry.term
  }
  if (op.hardState !== undefined) { next.hardState = op.hardState }
  return next
}

export function planBatch (durable: LogState, ops: WriteOp[]): BatchPlan {
  const parts: Array<{ record: WalRecord, bytes: Uint8Array }> = []
  const snapshots: SnapshotWrite[] = []
  let state = durable
  let entries = 0
  let sync = false
  for (const op of ops) {
    if (op.snapshot !== undefined) {
      const { index, term } = op.snapshot.snapshot.meta
      const mode = op.kind === 'compact' ? 'compact' : 'install'
      snapshots.push(op.snapshot)
      parts.push({ record: { kind: 'snapshot', mode, index, term }, bytes: encodeSnapshotRecord(mode, index, term) })
    }
    if (op.kind === 'ready') {
      for (const { entry, record } of op.entries) { parts.push({ record: { kind: 'entry', entry }, bytes: record }) }
      entries += op.entries.length
      if (op.hardState !== undefined) { parts.push({ record: { kind: 'hard-state', hardState: op.hardState }, bytes: encodeHardStateRecord(op.hardState) }) }
    }
    sync ||= op.sync
    state = applyOp(state, op)
  }
  let length = 0
  for (const part of parts) { length += part.bytes.length }
  const frame = new Uint8Array(FRAME_HEADER_BYTES + length)
  const records: PlannedRecord[] = []
  let offset = 0
  for (const part of parts) {
    frame.set(part.bytes, FRAME_HEADER_BYTES + offset)
    records.push({ record: part.record, offset, bytes: part.bytes.length })
    offset += part.bytes.length
  }
  return { snapshots, frame: sealFrame(frame), records, state, sync, entries }
}
