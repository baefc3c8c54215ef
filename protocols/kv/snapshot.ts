/**
 * The KV snapshot format. Canonical: one state has exactly one encoding
 * (keys sorted by UTF-8 bytes, sessions by lastIndex), so replicas with the
 * same state produce the same bytes.
 *
 * - "AKVS", u8 version (1), varint appliedIndex
 * - varint keyBytesMax, valueBytesMax, clientIdBytesMax, sessionsMax, dataBytesMax
 * - varint keyCount, then per key (strictly increasing): text key, bytes value
 * - varint sessionCount, then per session (lastIndex strictly increasing): text clientId, varint sequence, varint lastIndex, result
 * - sha256 of everything above (32 bytes)
 *
 * bytes = varint length + raw bytes; text = bytes of UTF-8; result = u8 code,
 * varint index, with code 1 put, 2 delete (absent), 3 delete (deleted), 4 cas,
 * 5 cas-mismatch, 6 quota-exceeded.
 *
 * The limits are recorded because they decide apply results: replicas with
 * different limits would diverge, so a snapshot taken under other limits is
 * refused.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { assert, unreachable } from '../common/assert.ts'
import { ByteReader, ByteWriter, DecodeError, bytesEqual, compareBytes, decodeUtf8, utf8ByteLength, varintByteLength } from './codec.ts'
import { newKvTree } from './tree.ts'
import type { KvLimits } from './command.ts'
import type { KvSavedResult, KvSession } from './results.ts'
import type { KvTree } from './tree.ts'

const MAGIC = Uint8Array.from([0x41, 0x4b, 0x56, 0x53]) // "AKVS"
export const KV_SNAPSHOT_VERSION = 1
const CHECKSUM_BYTES = 32

export interface KvSnapshotState {
  appliedIndex: number
  limits: KvLimits
  /** The data; the encoder reads it over many steps, so pass a clone nobody changes. */
  entries: KvTree
  /** in strictly increasing lastIndex order (least recently used first) */
  sessions: KvSession[]
}

/** An incremental SHA-256, as both `@noble/hashes` and node:crypto provide one. */
export interface Sha256 {
  update(bytes: Uint8Array): unknown
  digest(): Uint8Array
}

/**
 * Where snapshots get their SHA-256. The default, `@noble/hashes`, runs
 * anywhere; a Node host may pass node:crypto's, which is native and about 7×
 * faster over a large state (232 MB: 1 s against 0.14 s).
 */
export type CreateSha256 = () => Sha256

export const nobleSha256: CreateSha256 = () => sha256.create()

/** dataBytes: key + value bytes over all entries (what dataBytesMax bounds). */
export type DecodedSnapshot = { ok: true, state: KvSnapshotState, dataBytes: number } | { ok: false, error: string }

const LIMIT_NAMES = ['keyBytesMax', 'valueBytesMax', 'clientIdBytesMax', 'sessionsMax', 'dataBytesMax'] as const

const RESULT_CODE = {
  put: 1,
  deleteAbsent: 2,
  deleteDeleted: 3,
  cas: 4,
  casMismatch: 5,
  quotaExceeded: 6
} as const

function resultCode (result: KvSavedResult): number {
  if (!result.ok) { return result.reason === 'cas-mismatch' ? RESULT_CODE.casMismatch : RESULT_CODE.quotaExceeded }
  switch (result.type) {
    case 'put': return RESULT_CODE.put
    case 'cas': return RESULT_CODE.cas
    case 'delete': return result.deleted ? RESULT_CODE.deleteDeleted : RESULT_CODE.deleteAbsent
    default: return unreachable(result)
  }
}

function resultFromCode (code: number, index: number): KvSavedResult {
  switch (code) {
    case RESULT_CODE.put: return { ok: true, index, type: 'put' }
    case RESULT_CODE.deleteAbsent: return { ok: true, index, type: 'delete', deleted: false }
    case RESULT_CODE.deleteDeleted: return { ok: true, index, type: 'delete', deleted: true }
    case RESULT_CODE.cas: return { ok: true, index, type: 'cas' }
    case RESULT_CODE.casMismatch: return { ok: false, index, reason: 'cas-mismatch' }
    case RESULT_CODE.quotaExceeded: return { ok: false, index, reason: 'quota-exceeded' }
    default: throw new DecodeError(`unknown session result code ${code}`)
  }
}

/**
 * Work done by one encodeSome()/decodeSome() step counts bytes plus this much
 * per key, since small keys cost more than their bytes.
 */
const KEY_WORK_BYTES = 64
/** The encoder hashes what it wrote every time this much more is written. */
const HASH_STEP_BYTES = 1024 * 1024

/**
 * Encodes a snapshot in steps, so that a caller with an event loop can spread
 * a large state over many turns. Phases: measure the encoding (one pass over
 * the keys, no allocation), then encode and hash into one buffer of exactly
 * that size. One large allocation instead of a growing buffer or pieces keeps
 * copies and garbage collections down.
 */
export class KvSnapshotEncoder {
  readonly appliedIndex: number
  readonly #entries: KvTree
  readonly #header: Uint8Array
  readonly #sessions: Uint8Array
  readonly #hash: Sha256
  /** Room for ByteWriter.utf8's worst-case reservation at the very end. */
  readonly #slackBytes: number
  /** The measuring pass, then the encoding pass (once #writer is set). */
  #keys: Iterator<[string, Uint8Array]>
  #bodyBytes: number
  #writer: ByteWriter | null = null
  #hashed = 0
  #output: Uint8Array | null = null

  constructor (state: KvSnapshotState, createSha256: CreateSha256 = nobleSha256) {
    this.appliedIndex = state.appliedIndex
    this.#entries = state.entries
    this.#hash = createSha256()
    const header = new ByteWriter().raw(MAGIC).u8(KV_SNAPSHOT_VERSION).varint(state.appliedIndex)
    for (const name of LIMIT_NAMES) { header.varint(state.limits[name]) }
    this.#header = header.varint(state.entries.size).finish()
    const sessions = new ByteWriter().varint(state.sessions.length)
    for (const session of state.sessions) {
      sessions.utf8(session.clientId).varint(session.sequence).varint(session.lastIndex)
        .u8(resultCode(session.result)).varint(session.result.index)
    }
    this.#sessions = sessions.finish()
    this.#bodyBytes = this.#header.length + this.#sessions.length
    this.#keys = state.entries.entries()
    this.#slackBytes = 8 + 3 * state.limits.keyBytesMax
  }

  /** Does about `workBytes` of encoding (at least one key); true once the snapshot is complete. */
  encodeSome (workBytes: number): boolean {
    let work = 0
    while (this.#output === null && work < workBytes) {
      const next = this.#keys.next()
      const writer = this.#writer
      if (next.done === true) {
        if (writer === null) { this.#startEncoding() } else { this.#finish(writer) }
        continue
      }
      const [key, value] = next.value
      if (writer === null) {
        const keyBytes = utf8ByteLength(key)
        this.#bodyBytes += varintByteLength(keyBytes) + keyBytes + varintByteLength(value.length) + value.length
        work += KEY_WORK_BYTES / 4
        continue
      }
      const before = writer.length
      writer.utf8(key).bytes(value)
      work += writer.length - before + KEY_WORK_BYTES
      if (writer.length - this.#hashed >= HASH_STEP_BYTES) { this.#hashWritten(writer) }
    }
    return this.#output !== null
  }

  /** The snapshot bytes, once encodeSome() returned true. */
  result (): Uint8Array {
    assert(this.#output !== null, 'the snapshot is not encoded yet')
    return this.#output
  }

  #startEncoding (): void {
    this.#keys = this.#entries.entries()
    this.#writer = new ByteWriter(this.#bodyBytes + CHECKSUM_BYTES + this.#slackBytes).raw(this.#header)
  }

  #finish (writer: ByteWriter): void {
    writer.raw(this.#sessions)
    assert(writer.length === this.#bodyBytes, `snapshot body is ${writer.length} bytes, measured ${this.#bodyBytes}`)
    this.#hashWritten(writer)
    // the exact bytes, without a copy (the buffer only has the slack beyond them)
    this.#output = writer.raw(this.#hash.digest()).view()
  }

  #hashWritten (writer: ByteWriter): void {
    this.#hash.update(writer.view().subarray(this.#hashed))
    this.#hashed = writer.length
  }
}

/**
 * UTF-8 strings of exactly n bytes, by their last code point's length:
 * 128 code points take 1 byte, 1,920 take 2, 61,440 take 3 (U+0800..U+FFFF
 * without the 2,048 surrogates, which no well-formed key holds) and
 * 1,048,576 take 4.
 */
const CODE_POINTS_BY_UTF8_BYTES = [128, 1920, 61_440, 1_048_576] as const

/**
 * How many distinct keys of 1..keyBytesMax UTF-8 bytes fit in `dataBytes`
 * bytes together: the shortest ones first (every shorter key is taken
 * before a longer one, which is the most keys any set of that many bytes
 * can hold).
 */
export function distinctKeysMax (dataBytes: number, keyBytesMax: number): number {
  // stringsOf[n]: strings of exactly n bytes (approximate beyond 2^53, where
  // far fewer of them fit than there are, so only the exact quotient is used)
  const stringsOf = [1]
  let keys = 0
  let left = dataBytes
  for (let n = 1; n <= keyBytesMax && left >= n; n++) {
    stringsOf[n] = CODE_POINTS_BY_UTF8_BYTES.reduce((sum, codePoints, i) => sum + codePoints * (stringsOf[n - 1 - i] ?? 0), 0)
    const taken = Math.min(stringsOf[n], Math.floor(left / n))
    keys += taken
    left -= taken * n
  }
  return keys
}

/**
 * The largest snapshot any state within `limits` encodes to: what a
 * transport or a store that carries this store's snapshots must accept.
 *
 * - header: magic, version, appliedIndex (< 2^53: 8 varint bytes), the five
 * limits, the key count; the session count; the checksum;
 * - keys: a key of k bytes with a value of v bytes takes varint(k) + k +
 * varint(v) + v bytes. The k + v add up to at most dataBytesMax; a varint
 * of x takes at most 1 + x / 128 bytes, so the two length prefixes of all
 * keys take at most 2 * keys + dataBytesMax / 128; and there are at most
 * distinctKeysMax(dataBytesMax, keyBytesMax) keys (each key is distinct
 * and holds at least its own bytes);
 * - sessions: sessionsMax of them, each with a clientId of clientIdBytesMax
 * bytes and three counters below 2^53, plus a result code.
 *
 * With KV_DEFAULTS that is 389 MiB: 256 MiB of data in 67.8 million keys of
 * at most 4 bytes (2 length bytes each) is the worst case, about 1.5 times
 * the data. Keys that long are not what anyone stores, but nothing stops it.
 */
export function kvSnapshotBytesMax (limits: KvLimits): number {
  const counterBytes = varintByteLength(Number.MAX_SAFE_INTEGER)
  const keys = distinctKeysMax(limits.dataBytesMax, limits.keyBytesMax)
  let header = MAGIC.length + 1 + counterBytes + varintByteLength(keys) + varintByteLength(limits.sessionsMax) + CHECKSUM_BYTES
  for (const name of LIMIT_NAMES) { header += varintByteLength(limits[name]) }
  const keysBytes = limits.dataBytesMax + 2 * keys + Math.floor(limits.dataBytesMax / 128)
  const sessionBytes = varintByteLength(limits.clientIdBytesMax) + limits.clientIdBytesMax + 3 * counterBytes + 1
  return header + keysBytes + limits.sessionsMax * sessionBytes
}

/** Encodes in one go (see KvSnapshotEncoder). */
export function encodeSnapshot (state: KvSnapshotState, createSha256: CreateSha256 = nobleSha256): Uint8Array {
  const encoder = new KvSnapshotEncoder(state, createSha256)
  while (!encoder.encodeSome(Infinity)) { /* one call does it all */ }
  return encoder.result()
}

/**
 * Decodes and fully validates a snapshot against the limits this replica
 * runs with, in steps: the checksum over the whole body first, then the keys
 * into a new tree, then the sessions. Never throws on the snapshot's content.
 */
export class KvSnapshotDecoder {
  readonly #bytes: Uint8Array
  readonly #limits: KvLimits
  readonly #hash: Sha256
  #hashed = 0
  #reader: ByteReader | null = null
  #result: DecodedSnapshot | null = null
  // the keys phase
  #appliedIndex = 0
  #keysLeft = 0
  #entries = newKvTree()
  #dataBytes = 0
  #previousKey: Uint8Array | null = null

  constructor (bytes: Uint8Array, limits: KvLimits, createSha256: CreateSha256 = nobleSha256) {
    this.#bytes = bytes
    this.#limits = limits
    this.#hash = createSha256()
    if (!(bytes instanceof Uint8Array)) {
      this.#result = { ok: false, error: 'snapshot must be a Uint8Array' }
    } else if (bytes.length < MAGIC.length + 1 + CHECKSUM_BYTES) {
      this.#result = { ok: false, error: 'malformed snapshot: too short' }
    } else if (!bytesEqual(bytes.subarray(0, MAGIC.length), MAGIC)) {
      this.#result = { ok: false, error: 'malformed snapshot: not a KV snapshot (bad magic)' }
    }
  }

  /** Does about `workBytes` of decoding; true once the result is known. */
  decodeSome (workBytes: number): boolean {
    try {
      let work = 0
      while (this.#result === null && work < workBytes) {
        work += this.#reader === null ? this.#hashSome(workBytes - work) : this.#decodeKey()
      }
    } catch (err) {
      if (!(err instanceof DecodeError)) { throw err }
      this.#result = { ok: false, error: `malformed snapshot: ${err.message}` }
    }
    return this.#result !== null
  }

  /** The decoded state or the reason it was refused, once decodeSome() returned true. */
  result (): DecodedSnapshot {
    assert(this.#result !== null, 'the snapshot is not decoded yet')
    return this.#result
  }

  #hashSome (workBytes: number): number {
    const bodyBytes = this.#bytes.length - CHECKSUM_BYTES
    const end = Math.min(bodyBytes, this.#hashed + Math.max(workBytes, HASH_STEP_BYTES / 16))
    this.#hash.update(this.#bytes.subarray(this.#hashed, end))
    const work = end - this.#hashed
    this.#hashed = end
    if (end === bodyBytes) {
      if (!bytesEqual(this.#hash.digest(), this.#bytes.subarray(bodyBytes))) { throw new DecodeError('checksum mismatch') }
      this.#reader = new ByteReader(this.#bytes.subarray(MAGIC.length, bodyBytes))
      this.#decodeHeader(this.#reader)
    }
    return work
  }

  #decodeHeader (reader: ByteReader): void {
    const version = reader.u8('version')
    if (version !== KV_SNAPSHOT_VERSION) { throw new DecodeError(`unsupported snapshot version ${version}`) }
    this.#appliedIndex = reader.varint('appliedIndex')
    for (const name of LIMIT_NAMES) {
      const value = reader.varint(name)
      if (value !== this.#limits[name]) { throw new DecodeError(`taken with ${name} = ${value}, this replica runs with ${this.#limits[name]}`) }
    }
    this.#keysLeft = reader.varint('key count')
  }

  /** Decodes one key (or, after the last, the sessions); returns the work done. */
  #decodeKey (): number {
    const reader = this.#reader
    assert(reader !== null, 'keys are decoded after the header')
    if (this.#keysLeft === 0) {
      this.#result = { ok: true, state: this.#decodeSessions(reader), dataBytes: this.#dataBytes }
      return KEY_WORK_BYTES
    }
    const keyStart = reader.offset
    const keyBytes = reader.bytes('key', this.#limits.keyBytesMax)
    if (keyBytes.length === 0) { throw new DecodeError('empty key') }
    // compared as bytes, as they were sorted
    if (this.#previousKey !== null && compareBytes(this.#previousKey, keyBytes) >= 0) {
      throw new DecodeError(`keys out of order or repeated at byte ${keyStart}`)
    }
    this.#previousKey = keyBytes
    const key = decodeUtf8(keyBytes, 'key')
    // A view, not a copy: a small ArrayBuffer per value makes every later
    // garbage collection slower (at 900k keys, copies took restores from 1.8
    // to 3.6 s with pauses near 1 s). The snapshot buffer stays alive until
    // its last value is overwritten or the next restore: at most one
    // snapshot's bytes. Nothing changes a stored value in place.
    const value = reader.bytes('value', this.#limits.valueBytesMax)
    this.#dataBytes += keyBytes.length + value.length
    if (this.#dataBytes > this.#limits.dataBytesMax) { throw new DecodeError(`data exceeds dataBytesMax ${this.#limits.dataBytesMax}`) }
    this.#entries.set(key, value)
    this.#keysLeft--
    return keyBytes.length + value.length + KEY_WORK_BYTES
  }

  #decodeSessions (reader: ByteReader): KvSnapshotState {
    const limits = this.#limits
    const appliedIndex = this.#appliedIndex
    const sessionCount = reader.varint('session count')
    if (sessionCount > limits.sessionsMax) { throw new DecodeError(`${sessionCount} sessions, more than sessionsMax ${limits.sessionsMax}`) }
    const sessions: KvSession[] = []
    const clientIds = new Set<string>()
    let previousLastIndex = 0
    for (let i = 0; i < sessionCount; i++) {
      const clientId = reader.utf8('clientId', limits.clientIdBytesMax)
      if (clientId.length === 0) { throw new DecodeError('empty clientId') }
      if (clientIds.has(clientId)) { throw new DecodeError(`session ${JSON.stringify(clientId)} repeated`) }
      clientIds.add(clientId)
      const sequence = reader.varint('sequence')
      if (sequence < 1) { throw new DecodeError('session sequence 0') }
      const lastIndex = reader.varint('lastIndex')
      if (lastIndex <= previousLastIndex || lastIndex > appliedIndex) {
        throw new DecodeError(`session lastIndex ${lastIndex} out of order or beyond appliedIndex ${appliedIndex}`)
      }
      previousLastIndex = lastIndex
      const code = reader.u8('result code')
      const resultIndex = reader.varint('result index')
      if (resultIndex < 1 || resultIndex > lastIndex) { throw new DecodeError(`result index ${resultIndex} outside 1..${lastIndex}`) }
      sessions.push({ clientId, sequence, lastIndex, result: resultFromCode(code, resultIndex) })
    }
    reader.end('snapshot')
    return { appliedIndex, limits, entries: this.#entries, sessions }
  }
}
