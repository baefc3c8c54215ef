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
import { unreachable } from '../../common/assert.ts'
import { ByteReader, ByteWriter, DecodeError, compareBytes, encodeUtf8, bytesEqual } from './codec.ts'
import type { KvLimits } from './command.ts'
import type { KvSavedResult, KvSession } from './results.ts'

const MAGIC = Uint8Array.from([0x41, 0x4b, 0x56, 0x53]) // "AKVS"
export const KV_SNAPSHOT_VERSION = 1
const CHECKSUM_BYTES = 32

export interface KvSnapshotState {
  appliedIndex: number
  limits: KvLimits
  /** [key, value] in strictly increasing UTF-8 byte order of the keys */
  entries: Array<[string, Uint8Array]>
  /** in strictly increasing lastIndex order (least recently used first) */
  sessions: KvSession[]
}

export type DecodedSnapshot = { ok: true, state: KvSnapshotState } | { ok: false, error: string }

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

/** The caller passes entries and sessions already in canonical order. */
export function encodeSnapshot (state: KvSnapshotState): Uint8Array {
  const writer = new ByteWriter().raw(MAGIC).u8(KV_SNAPSHOT_VERSION).varint(state.appliedIndex)
  for (const name of LIMIT_NAMES) { writer.varint(state.limits[name]) }
  writer.varint(state.entries.length)
  for (const [key, value] of state.entries) { writer.utf8(key).bytes(value) }
  writer.varint(state.sessions.length)
  for (const session of state.sessions) {
    writer.utf8(session.clientId).varint(session.sequence).varint(session.lastIndex)
      .u8(resultCode(session.result)).varint(session.result.index)
  }
  const checksum = sha256(writer.view())
  return writer.raw(checksum).finish()
}

/**
 * Decodes and fully validates a snapshot against the limits this replica
 * runs with; never throws.
 */
export function decodeSnapshot (bytes: Uint8Array, limits: KvLimits): DecodedSnapshot {
  if (!(bytes instanceof Uint8Array)) { return { ok: false, error: 'snapshot must be a Uint8Array' } }
  try {
    if (bytes.length < MAGIC.length + 1 + CHECKSUM_BYTES) { throw new DecodeError('too short') }
    const body = bytes.subarray(0, bytes.length - CHECKSUM_BYTES)
    if (!bytesEqual(body.subarray(0, MAGIC.length), MAGIC)) { throw new DecodeError('not a KV snapshot (bad magic)') }
    if (!bytesEqual(sha256(body), bytes.subarray(body.length))) { throw new DecodeError('checksum mismatch') }
    return { ok: true, state: decodeBody(new ByteReader(body.subarray(MAGIC.length)), limits) }
  } catch (err) {
    if (err instanceof DecodeError) { return { ok: false, error: `malformed snapshot: ${err.message}` } }
    throw err
  }
}

function decodeBody (reader: ByteReader, limits: KvLimits): KvSnapshotState {
  const version = reader.u8('version')
  if (version !== KV_SNAPSHOT_VERSION) { throw new DecodeError(`unsupported snapshot version ${version}`) }
  const appliedIndex = reader.varint('appliedIndex')
  for (const name of LIMIT_NAMES) {
    const value = reader.varint(name)
    if (value !== limits[name]) { throw new DecodeError(`taken with ${name} = ${value}, this replica runs with ${limits[name]}`) }
  }

  const keyCount = reader.varint('key count')
  const entries: Array<[string, Uint8Array]> = []
  let dataBytes = 0
  let previousKey: Uint8Array | undefined
  for (let i = 0; i < keyCount; i++) {
    const keyStart = reader.offset
    const key = reader.utf8('key', limits.keyBytesMax)
    const keyBytes = encodeUtf8(key)
    if (keyBytes.length === 0) { throw new DecodeError('empty key') }
    if (previousKey !== undefined && compareBytes(previousKey, keyBytes) >= 0) {
      throw new DecodeError(`keys out of order or repeated at byte ${keyStart}`)
    }
    previousKey = keyBytes
    const value = reader.bytes('value', limits.valueBytesMax).slice()
    dataBytes += keyBytes.length + value.length
    if (dataBytes > limits.dataBytesMax) { throw new DecodeError(`data exceeds dataBytesMax ${limits.dataBytesMax}`) }
    entries.push([key, value])
  }

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
  return { appliedIndex, limits, entries, sessions }
}
