/**
 * Value encodings of the Raft storage records (keys: layout.ts).
 *
 * Every value is `crc32(key ‖ body) u32be ‖ body`. CRC32 (zlib's, native in
 * Node) because it is an error-detecting code made for exactly this job:
 * ~4M checks/s of 256-byte entries and ~2.5 GB/s on 1 MiB chunks here, 10-25x
 * faster than SHA-256 from `@noble/hashes`, and 4 bytes per record. The disk is
 * not an adversary (whoever can rewrite the files can rewrite checksums too),
 * so a cryptographic hash would buy nothing.
 *
 * Entries, the hot path, use a fixed binary header; the small, rarely written
 * records (format, state, snapshot metadata) are CBOR maps.
 */
import { crc32 } from 'node:zlib'
import { decode, encode } from 'cborg'
import { FORMAT_MAGIC, readU64, writeU64 } from './layout.ts'
import type { ConfState, Entry, EntryType, HardState } from '../../../protocols/raft/index.ts'

const CRC_BYTES = 4
/** index u64, term u64, type u8. */
const ENTRY_HEADER_BYTES = 17
/** Bytes an entry record takes beyond its data. */
export const ENTRY_OVERHEAD_BYTES = CRC_BYTES + ENTRY_HEADER_BYTES
/** Bytes a snapshot chunk's value takes beyond its data (sealRecord). */
export const CHUNK_OVERHEAD_BYTES = CRC_BYTES

const ENTRY_TYPE_CODES: Record<EntryType, number> = { normal: 0, 'conf-change': 1 }
const ENTRY_TYPES: readonly EntryType[] = ['normal', 'conf-change']

/**
 * The state record, rewritten by every synced batch: the Raft hard state and
 * the bounds of the live log (entries snapshotIndex+1 ..= lastIndex). Because
 * it is in the same atomic batch as the entries it describes, lastIndex is
 * the last index of the last batch that reached the disk.
 */
export interface LogState {
  hardState: HardState
  snapshotIndex: number
  snapshotTerm: number
  lastIndex: number
  lastTerm: number
}

export interface SnapshotRecordMeta {
  index: number
  term: number
  conf: ConfState
  dataBytes: number
  chunks: number
}

function checksum (key: Uint8Array, body: Uint8Array): number {
  return crc32(body, crc32(key))
}

function viewOf (bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** `body` with its checksum in front. */
export function sealRecord (key: Uint8Array, body: Uint8Array): Uint8Array {
  const value = new Uint8Array(CRC_BYTES + body.length)
  value.set(body, CRC_BYTES)
  viewOf(value).setUint32(0, checksum(key, body))
  return value
}

/** The body of a record, or null when its checksum does not match. */
export function openRecord (key: Uint8Array, value: Uint8Array): Uint8Array | null {
  if (value.length < CRC_BYTES) { return null }
  const body = new Uint8Array(value.buffer, value.byteOffset + CRC_BYTES, value.length - CRC_BYTES)
  return viewOf(value).getUint32(0) === checksum(key, body) ? body : null
}

export function encodeEntryValue (key: Uint8Array, entry: Entry): Uint8Array {
  const value = new Uint8Array(ENTRY_OVERHEAD_BYTES + entry.data.length)
  const view = viewOf(value)
  writeU64(view, CRC_BYTES, entry.index)
  writeU64(view, CRC_BYTES + 8, entry.term)
  value[CRC_BYTES + 16] = ENTRY_TYPE_CODES[entry.type]
  value.set(entry.data, ENTRY_OVERHEAD_BYTES)
  view.setUint32(0, checksum(key, value.subarray(CRC_BYTES)))
  return value
}

/** The entry, or null when the record is corrupt or belongs to another index. */
export function decodeEntryValue (key: Uint8Array, value: Uint8Array, index: number): Entry | null {
  const body = openRecord(key, value)
  if (body === null || body.length < ENTRY_HEADER_BYTES) { return null }
  const view = viewOf(body)
  const type = ENTRY_TYPES[body[16]]
  const term = readU64(view, 8)
  if (readU64(view, 0) !== index || type === undefined || term === 0) { return null }
  const data = new Uint8Array(body.buffer, body.byteOffset + ENTRY_HEADER_BYTES, body.length - ENTRY_HEADER_BYTES)
  return { index, term, type, data }
}

function decodeMap (key: Uint8Array, value: Uint8Array): Record<string, unknown> | null {
  const body = openRecord(key, value)
  if (body === null) { return null }
  try {
    const decoded: unknown = decode(body)
    return typeof decoded === 'object' && decoded !== null && !Array.isArray(decoded) ? decoded as Record<string, unknown> : null
  } catch {
    return null
  }
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(s => typeof s === 'string')

export function encodeFormatValue (key: Uint8Array, version: number): Uint8Array {
  return sealRecord(key, encode({ magic: FORMAT_MAGIC, version }))
}

/** The format version, or null when the record is corrupt or not ours. */
export function decodeFormatValue (key: Uint8Array, value: Uint8Array): number | null {
  const map = decodeMap(key, value)
  return map !== null && map.magic === FORMAT_MAGIC && isCount(map.version) ? map.version : null
}

export function encodeStateValue (key: Uint8Array, state: LogState): Uint8Array {
  const { hardState: { term, vote, commit }, snapshotIndex, snapshotTerm, lastIndex, lastTerm } = state
  return sealRecord(key, encode({ term, vote, commit, snapshotIndex, snapshotTerm, lastIndex, lastTerm }))
}

export function decodeStateValue (key: Uint8Array, value: Uint8Array): LogState | null {
  const m = decodeMap(key, value)
  if (m === null) { return null }
  const { term, vote, commit, snapshotIndex, snapshotTerm, lastIndex, lastTerm } = m
  if (!isCount(term) || !isCount(commit) || !isCount(snapshotIndex) || !isCount(snapshotTerm) ||
    !isCount(lastIndex) || !isCount(lastTerm) || (vote !== null && typeof vote !== 'string')) {
    return null
  }
  return { hardState: { term, vote, commit }, snapshotIndex, snapshotTerm, lastIndex, lastTerm }
}

export function encodeSnapshotMetaValue (key: Uint8Array, meta: SnapshotRecordMeta): Uint8Array {
  const { index, term, conf, dataBytes, chunks } = meta
  const { voters, votersOutgoing, learners, learnersNext, autoLeave } = conf
  return sealRecord(key, encode({ index, term, conf: { voters, votersOutgoing, learners, learnersNext, autoLeave }, dataBytes, chunks }))
}

export function decodeSnapshotMetaValue (key: Uint8Array, value: Uint8Array): SnapshotRecordMeta | null {
  const m = decodeMap(key, value)
  if (m === null) { return null }
  const { index, term, conf, dataBytes, chunks } = m
  if (!isCount(index) || !isCount(term) || !isCount(dataBytes) || !isCount(chunks) || typeof conf !== 'object' || conf === null) {
    return null
  }
  const { voters, votersOutgoing, learners, learnersNext, autoLeave } = conf as Record<string, unknown>
  if (!isStringArray(voters) || !isStringArray(votersOutgoing) || !isStringArray(learners) || !isStringArray(learnersNext) ||
    typeof autoLeave !== 'boolean') {
    return null
  }
  return { index, term, conf: { voters, votersOutgoing, learners, learnersNext, autoLeave }, dataBytes, chunks }
}
