/**
 * The records inside the Raft write-ahead log's frames (framing and
 * checksum: node/storage-frames.ts; files: layout.ts). A frame is one group
 * commit: the concatenation of the records below, applied in order on
 * replay. Every record starts with a one-byte type; numbers are big-endian,
 * u64 as two u32 (indexes and terms stay below 2^53).
 *
 * | type       | body                                                                    |
 * |------------|-------------------------------------------------------------------------|
 * | `G` head   | magic, version u8, segment seq u64, the log state (below) at the start of the segment |
 * | `E` entry  | index u64, term u64, entry type u8, data length u32, data               |
 * | `H` hard   | term u64, commit u64, vote length u16 (0xffff: no vote), vote UTF-8     |
 * | `S` snap   | mode u8 (0: install, replaces the log; 1: compact, drops entries up to it), index u64, term u64 |
 *
 * The log state (in a head): snapshotIndex, snapshotTerm, lastIndex,
 * lastTerm (u64 each), then a hard state's body.
 */
import type { Entry, EntryType, HardState } from '../../../protocols/raft/index.ts'

/**
 * The hard state and the bounds of the live log (entries snapshotIndex+1
 * ..= lastIndex), as replay leaves them after each frame.
 */
export interface LogState {
  hardState: HardState
  snapshotIndex: number
  snapshotTerm: number
  lastIndex: number
  lastTerm: number
}

export type SnapshotMode = 'install' | 'compact'

export type WalRecord =
  | { kind: 'head', version: number, seq: number, state: LogState }
  | { kind: 'entry', entry: Entry }
  | { kind: 'hard-state', hardState: HardState }
  | { kind: 'snapshot', mode: SnapshotMode, index: number, term: number }

const TYPE_HEAD = 0x47 // 'G'
const TYPE_ENTRY = 0x45 // 'E'
const TYPE_HARD_STATE = 0x48 // 'H'
const TYPE_SNAPSHOT = 0x53 // 'S'

const HEAD_MAGIC = new TextEncoder().encode('accord-raft-wal')
const NO_VOTE = 0xffff
const U32 = 0x1_0000_0000

/** type u8, index u64, term u64, entry type u8, data length u32. */
export const ENTRY_RECORD_OVERHEAD_BYTES = 22

const ENTRY_TYPE_CODES: Record<EntryType, number> = { normal: 0, 'conf-change': 1 }
const ENTRY_TYPES: readonly EntryType[] = ['normal', 'conf-change']
const SNAPSHOT_MODES: readonly SnapshotMode[] = ['install', 'compact']

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

function writeU64 (view: DataView, offset: number, value: number): void {
  view.setUint32(offset, Math.floor(value / U32))
  view.setUint32(offset + 4, value >>> 0)
}

function readU64 (view: DataView, offset: number): number {
  return view.getUint32(offset) * U32 + view.getUint32(offset + 4)
}

function viewOf (bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

export function encodeEntryRecord (entry: Entry): Uint8Array {
  const record = new Uint8Array(ENTRY_RECORD_OVERHEAD_BYTES + entry.data.length)
  const view = viewOf(record)
  record[0] = TYPE_ENTRY
  writeU64(view, 1, entry.index)
  writeU64(view, 9, entry.term)
  record[17] = ENTRY_TYPE_CODES[entry.type]
  view.setUint32(18, entry.data.length)
  record.set(entry.data, ENTRY_RECORD_OVERHEAD_BYTES)
  return record
}

function hardStateBytes (hardState: HardState): number {
  return 18 + (hardState.vote === null ? 0 : encoder.encode(hardState.vote).length)
}

function writeHardState (record: Uint8Array, offset: number, hardState: HardState): void {
  const view = viewOf(record)
  writeU64(view, offset, hardState.term)
  writeU64(view, offset + 8, hardState.commit)
  if (hardState.vote === null) {
    view.setUint16(offset + 16, NO_VOTE)
  } else {
    const vote = encoder.encode(hardState.vote)
    view.setUint16(offset + 16, vote.length)
    record.set(vote, offset + 18)
  }
}

/** Vote strings are peer ids; this bounds them well above any real one. */
export const VOTE_BYTES_MAX = 1024

export function encodeHardStateRecord (hardState: HardState): Uint8Array {
  const record = new Uint8Array(1 + hardStateBytes(hardState))
  record[0] = TYPE_HARD_STATE
  writeHardState(record, 1, hardState)
  return record
}

/** Bytes of a snapshot record. */
export const SNAPSHOT_RECORD_BYTES = 18

export function encodeSnapshotRecord (mode: SnapshotMode, index: number, term: number): Uint8Array {
  const record = new Uint8Array(SNAPSHOT_RECORD_BYTES)
  record[0] = TYPE_SNAPSHOT
  record[1] = SNAPSHOT_MODES.indexOf(mode)
  writeU64(viewOf(record), 2, index)
  writeU64(viewOf(record), 10, term)
  return record
}

const HEAD_FIXED_BYTES = 1 + HEAD_MAGIC.length + 1 + 8 + 32

export function encodeHeadRecord (version: number, seq: number, state: LogState): Uint8Array {
  const record = new Uint8Array(HEAD_FIXED_BYTES + hardStateBytes(state.hardState))
  const view = viewOf(record)
  record[0] = TYPE_HEAD
  record.set(HEAD_MAGIC, 1)
  let offset = 1 + HEAD_MAGIC.length
  record[offset++] = version
  writeU64(view, offset, seq)
  writeU64(view, offset + 8, state.snapshotIndex)
  writeU64(view, offset + 16, state.snapshotTerm)
  writeU64(view, offset + 24, state.lastIndex)
  writeU64(view, offset + 32, state.lastTerm)
  writeHardState(record, offset + 40, state.hardState)
  return record
}

/** Thrown by the decoders on a record a correct writer cannot have produced (its frame's checksum held). */
export class MalformedRecordError extends Error {}

function need (bytes: Uint8Array, offset: number, count: number): void {
  if (offset + count > bytes.length) { throw new MalformedRecordError(`record cut short at byte ${offset}`) }
}

function readHardState (bytes: Uint8Array, offset: number): { hardState: HardState, end: number } {
  need(bytes, offset, 18)
  const view = viewOf(bytes)
  const term = readU64(view, offset)
  const commit = readU64(view, offset + 8)
  const voteBytes = view.getUint16(offset + 16)
  if (voteBytes === NO_VOTE) { return { hardState: { term, vote: null, commit }, end: offset + 18 } }
  if (voteBytes === 0 || voteBytes > VOTE_BYTES_MAX) { throw new MalformedRecordError(`a vote of ${voteBytes} bytes`) }
  need(bytes, offset + 18, voteBytes)
  let vote: string
  try {
    vote = decoder.decode(bytes.subarray(offset + 18, offset + 18 + voteBytes))
  } catch {
    throw new MalformedRecordError('a vote that is not UTF-8')
  }
  return { hardState: { term, vote, commit }, end: offset + 18 + voteBytes }
}

/**
 * The record at `offset` of `bytes` and where it ends; entry data is a view
 * into `bytes`. Throws MalformedRecordError.
 */
export function decodeRecord (bytes: Uint8Array, offset: number): { record: WalRecord, end: number } {
  need(bytes, offset, 1)
  const view = viewOf(bytes)
  switch (bytes[offset]) {
    case TYPE_ENTRY: {
      need(bytes, offset, ENTRY_RECORD_OVERHEAD_BYTES)
      const index = readU64(view, offset + 1)
      const term = readU64(view, offset + 9)
      const type = ENTRY_TYPES[bytes[offset + 17]]
      const length = view.getUint32(offset + 18)
      if (type === undefined || index === 0 || term === 0) { throw new MalformedRecordError(`a bad entry header at byte ${offset}`) }
      const start = offset + ENTRY_RECORD_OVERHEAD_BYTES
      need(bytes, start, length)
      return { record: { kind: 'entry', entry: { index, term, type, data: bytes.subarray(start, start + length) } }, end: start + length }
    }
    case TYPE_HARD_STATE: {
      const { hardState, end } = readHardState(bytes, offset + 1)
      return { record: { kind: 'hard-state', hardState }, end }
    }
    case TYPE_SNAPSHOT: {
      need(bytes, offset, 18)
      const mode = SNAPSHOT_MODES[bytes[offset + 1]]
      const index = readU64(view, offset + 2)
      const term = readU64(view, offset + 10)
      if (mode === undefined || index === 0 || term === 0) { throw new MalformedRecordError(`a bad snapshot record at byte ${offset}`) }
      return { record: { kind: 'snapshot', mode, index, term }, end: offset + 18 }
    }
    case TYPE_HEAD: {
      need(bytes, offset, HEAD_FIXED_BYTES)
      if (HEAD_MAGIC.some((b, i) => bytes[offset + 1 + i] !== b)) { throw new MalformedRecordError('a segment head without the accord-raft-wal magic') }
      let at = offset + 1 + HEAD_MAGIC.length
      const version = bytes[at++]
      const seq = readU64(view, at)
      const state = {
        snapshotIndex: readU64(view, at + 8),
        snapshotTerm: readU64(view, at + 16),
        lastIndex: readU64(view, at + 24),
        lastTerm: readU64(view, at + 32)
      }
      const { hardState, end } = readHardState(bytes, at + 40)
      return { record: { kind: 'head', version, seq, state: { hardState, ...state } }, end }
    }
    default:
      throw new MalformedRecordError(`an unknown record type 0x${bytes[offset].toString(16)} at byte ${offset}`)
  }
}
