/**
 * A read-only reader of storage format 1, the LevelDB Raft store of accord
 * before the write-ahead log (commit 6d5f3d9 replaced it), kept only so that
 * migrate.ts can carry such a store over. The key layout, the record
 * encodings and the checks are those of that release (its layout.ts,
 * records.ts and recovery.ts), cut down to reading the live state:
 *
 * | key                                   | value                                                    |
 * |---------------------------------------|----------------------------------------------------------|
 * | `V`                                   | CBOR `{ magic: 'accord-raft-storage', version: 1 }`      |
 * | `H`                                   | CBOR `{ term, vote, commit, snapshotIndex, snapshotTerm, lastIndex, lastTerm }` |
 * | `E` u64be(index)                      | index u64, term u64, type u8, data                       |
 * | `M`                                   | CBOR `{ index, term, conf, dataBytes, chunks }`          |
 * | `S` u64be(snapshotIndex) u32be(chunk) | a chunk of the snapshot's data                           |
 *
 * Every value is `crc32(key ‖ body) u32be ‖ body`. Every write of format 1
 * was one synced LevelDB batch that rewrote `H`, so `H` describes the live
 * state exactly: entries snapshotIndex+1 ..= lastIndex, and the snapshot `M`
 * names. Each of them is protected: missing or damaged, the store is
 * refused (StorageCorruptionError), as format 1 itself refused to start on
 * it. Records outside the live state (an overwritten suffix, entries a
 * compaction covered, chunks of a snapshot that never committed) are not
 * read; format 1 would have deleted them at its next start.
 *
 * Nothing here writes a record. Opening LevelDB is not entirely passive: it
 * replays LevelDB's own log into a table file, exactly as the earlier
 * release did at each start (LevelDB makes that crash-safe).
 */
import { crc32 } from 'node:zlib'
import { decode } from 'cborg'
import { ClassicLevel } from 'classic-level'
import { UserError } from '../../errors.ts'
import { StorageCorruptionError, StorageFormatError } from './errors.ts'
import type { LogState } from './records.ts'
import type { ConfState, Entry, EntryType, Snapshot } from '../../../protocols/raft/index.ts'

const FORMAT1_MAGIC = 'accord-raft-storage'
const FORMAT1_VERSION = 1

const PREFIX_ENTRY = 0x45 // 'E'
const PREFIX_SNAPSHOT_CHUNK = 0x53 // 'S'
const FORMAT_KEY = Uint8Array.of(0x56) // 'V'
const STATE_KEY = Uint8Array.of(0x48) // 'H'
const SNAPSHOT_META_KEY = Uint8Array.of(0x4d) // 'M'

const U32 = 0x1_0000_0000
const CRC_BYTES = 4
/** index u64, term u64, type u8. */
const ENTRY_HEADER_BYTES = 17
const ENTRY_TYPES: readonly EntryType[] = ['normal', 'conf-change']

/**
 * LevelDB's file names (db/filename.cc): a store of format 1 consists of
 * these and nothing else.
 */
export const LEVELDB_FILE_PATTERN = /^(CURRENT|LOCK|LOG|LOG\.old|MANIFEST-\d+|\d+\.(log|ldb|sst|dbtmp))$/

type Db = ClassicLevel<Uint8Array, Uint8Array>

interface SnapshotRecordMeta {
  index: number
  term: number
  conf: ConfState
  dataBytes: number
  chunks: number
}

const viewOf = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
const readU64 = (view: DataView, offset: number): number => view.getUint32(offset) * U32 + view.getUint32(offset + 4)

function writeU64 (view: DataView, offset: number, value: number): void {
  view.setUint32(offset, Math.floor(value / U32))
  view.setUint32(offset + 4, value >>> 0)
}

function entryKey (index: number): Uint8Array {
  const key = new Uint8Array(9)
  key[0] = PREFIX_ENTRY
  writeU64(viewOf(key), 1, index)
  return key
}

function entryKeyIndex (key: Uint8Array): number | null {
  return key.length === 9 && key[0] === PREFIX_ENTRY ? readU64(viewOf(key), 1) : null
}

function chunkKey (snapshotIndex: number, chunk: number): Uint8Array {
  const key = new Uint8Array(13)
  key[0] = PREFIX_SNAPSHOT_CHUNK
  writeU64(viewOf(key), 1, snapshotIndex)
  viewOf(key).setUint32(9, chunk)
  return key
}

function chunkKeyNumber (key: Uint8Array): number | null {
  return key.length === 13 && key[0] === PREFIX_SNAPSHOT_CHUNK ? viewOf(key).getUint32(9) : null
}

/** The body of a record, or null when its checksum does not match. */
function openRecord (key: Uint8Array, value: Uint8Array): Uint8Array | null {
  if (value.length < CRC_BYTES) { return null }
  const body = value.subarray(CRC_BYTES)
  return viewOf(value).getUint32(0) === crc32(body, crc32(key)) ? body : null
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

function decodeEntryValue (key: Uint8Array, value: Uint8Array, index: number): Entry | null {
  const body = openRecord(key, value)
  if (body === null || body.length < ENTRY_HEADER_BYTES) { return null }
  const view = viewOf(body)
  const type = ENTRY_TYPES[body[16]]
  const term = readU64(view, 8)
  if (readU64(view, 0) !== index || type === undefined || term === 0) { return null }
  // a copy: LevelDB's buffers are not ours to keep
  return { index, term, type, data: body.slice(ENTRY_HEADER_BYTES) }
}

function decodeStateValue (value: Uint8Array): LogState | null {
  const m = decodeMap(STATE_KEY, value)
  if (m === null) { return null }
  const { term, vote, commit, snapshotIndex, snapshotTerm, lastIndex, lastTerm } = m
  if (!isCount(term) || !isCount(commit) || !isCount(snapshotIndex) || !isCount(snapshotTerm) ||
    !isCount(lastIndex) || !isCount(lastTerm) || (vote !== null && typeof vote !== 'string')) {
    return null
  }
  return { hardState: { term, vote, commit }, snapshotIndex, snapshotTerm, lastIndex, lastTerm }
}

function decodeSnapshotMetaValue (value: Uint8Array): SnapshotRecordMeta | null {
  const m = decodeMap(SNAPSHOT_META_KEY, value)
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

/** A format-1 store opened for reading; close() it. */
export class Format1Reader {
  readonly dir: string
  private readonly db: Db

  private constructor (dir: string, db: Db) {
    this.dir = dir
    this.db = db
  }

  /**
   * Opens the LevelDB store in `dir` (never creating one) and checks its
   * format record. Throws UserError when LevelDB cannot open it (an earlier
   * accord still running there holds its LOCK), StorageFormatError or
   * StorageCorruptionError.
   */
  static async open (dir: string): Promise<Format1Reader> {
    const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view', createIfMissing: false })
    try {
      await db.open()
    } catch (err) {
      const reason = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message
      throw new UserError(`cannot open the LevelDB raft store (format 1) in ${dir} (is an earlier accord still running there?): ${reason}`, { cause: err })
    }
    const reader = new Format1Reader(dir, db)
    try {
      await reader.checkFormat()
    } catch (err) {
      await reader.close()
      throw err
    }
    return reader
  }

  private corrupt (problem: string, index: number | null = null): StorageCorruptionError {
    return new StorageCorruptionError(this.dir, `its LevelDB store (format 1) cannot be migrated: ${problem}`, index)
  }

  private async checkFormat (): Promise<void> {
    const value = await this.db.get(FORMAT_KEY)
    if (value === undefined) {
      throw new StorageFormatError(this.dir, 'it holds a LevelDB database without the format record of an accord raft store; ' +
        'point accord at another data dir, or move this directory away')
    }
    const m = decodeMap(FORMAT_KEY, value)
    if (m === null || m.magic !== FORMAT1_MAGIC || !isCount(m.version)) { throw this.corrupt('the format record is corrupt (checksum or content)') }
    if (m.version !== FORMAT1_VERSION) {
      throw new StorageFormatError(this.dir, `it holds a LevelDB raft store of format version ${m.version}, but only version ${FORMAT1_VERSION} can be migrated`)
    }
  }

  /** The state record: hard state and the bounds of the live log, checked for consistency. */
  async readState (): Promise<LogState> {
    const value = await this.db.get(STATE_KEY)
    if (value === undefined) { throw this.corrupt('the state record (term, vote, commit, log bounds) is missing') }
    const state = decodeStateValue(value)
    if (state === null) { throw this.corrupt('the state record (term, vote, commit, log bounds) is corrupt') }
    const { hardState, snapshotIndex, snapshotTerm, lastIndex, lastTerm } = state
    if (snapshotIndex > lastIndex || hardState.commit > lastIndex || (lastIndex === snapshotIndex && lastTerm !== snapshotTerm)) {
      throw this.corrupt(`the state record is inconsistent (snapshot ${snapshotIndex}/${snapshotTerm}, ` +
        `last ${lastIndex}/${lastTerm}, commit ${hardState.commit})`)
    }
    return state
  }

  /** The live snapshot, which `state` names (snapshotIndex > 0), every chunk checked. */
  async readSnapshot (state: LogState): Promise<Snapshot> {
    const value = await this.db.get(SNAPSHOT_META_KEY)
    const meta = value === undefined ? null : decodeSnapshotMetaValue(value)
    const index = state.snapshotIndex
    if (meta === null) { throw this.corrupt(`the metadata of the snapshot at index ${index} is missing or corrupt`, index) }
    if (meta.index !== index || meta.term !== state.snapshotTerm) {
      throw this.corrupt(`the snapshot metadata (${meta.index}/${meta.term}) does not match the state record (${index}/${state.snapshotTerm})`, index)
    }
    const data = new Uint8Array(meta.dataBytes)
    let chunk = 0
    let offset = 0
    for await (const [key, value] of this.db.iterator({ gte: chunkKey(index, 0), lt: chunkKey(index + 1, 0) })) {
      const body = openRecord(key, value)
      if (chunkKeyNumber(key) !== chunk || body === null || offset + body.length > data.length) {
        throw this.corrupt(`chunk ${chunk} of the snapshot at index ${index} is missing or corrupt`, index)
      }
      data.set(body, offset)
      offset += body.length
      chunk++
    }
    if (chunk !== meta.chunks || offset !== meta.dataBytes) {
      throw this.corrupt(`the snapshot at index ${index} is incomplete (${chunk} of ${meta.chunks} chunks, ${offset} of ${meta.dataBytes} bytes)`, index)
    }
    return { meta: { index, term: meta.term, conf: meta.conf }, data }
  }

  /**
   * The live entries (snapshotIndex+1 ..= lastIndex of `state`), in order,
   * each checked: present, contiguous, its checksum and its own index, the
   * last one of the state record's term.
   */
  async * entries (state: LogState): AsyncGenerator<Entry> {
    const { snapshotIndex, lastIndex } = state
    if (lastIndex === snapshotIndex) { return }
    const missing = (index: number): StorageCorruptionError =>
      this.corrupt(`log entry ${index} is missing (the log must hold every index from ${snapshotIndex + 1} to ${lastIndex})`, index)
    let expected = snapshotIndex + 1
    for await (const [key, value] of this.db.iterator({ gte: entryKey(expected), lte: entryKey(lastIndex) })) {
      if (entryKeyIndex(key) !== expected) { throw missing(expected) }
      const entry = decodeEntryValue(key, value, expected)
      if (entry === null) { throw this.corrupt(`log entry ${expected} is corrupt (checksum or header mismatch)`, expected) }
      if (expected === lastIndex && entry.term !== state.lastTerm) {
        throw this.corrupt(`log entry ${lastIndex} has term ${entry.term} but the state record says ${state.lastTerm}`, lastIndex)
      }
      yield entry
      expected++
    }
    if (expected !== lastIndex + 1) { throw missing(expected) }
  }

  async close (): Promise<void> {
    await this.db.close()
  }
}
