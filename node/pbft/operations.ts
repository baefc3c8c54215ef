/**
 * The operations PBFT orders for the replicated KV store, and the results
 * their execution returns, as the bytes of ClientRequest.operation and
 * Reply.result.
 *
 * A KV command travels without its session: the session is the signed
 * request's own (clientId = request.client, sequence = request.timestamp,
 * see sessionCommand), so a client can neither write under another client's
 * session nor pick a sequence other than the timestamp the replicas order.
 *
 * Results are what every honest replica computes alike, whether it executes
 * a request for the first time or answers a retry from the KV session: a
 * cas mismatch therefore carries no current value (a session's saved result
 * has none), and f+1 replies always match.
 *
 * Encoding, version 1 (varint = unsigned LEB128, bytes = varint length +
 * raw bytes, text = bytes of UTF-8), nothing may follow:
 *
 * - operation: u8 version, u8 kind (1 put, 2 delete, 3 cas, 4 get, 5 null),
 * then put: text key, bytes value; delete, get: text key; cas: text key,
 * u8 hasExpected (0: the key must be absent), [bytes expected], bytes value
 * - result: u8 version, u8 kind, then 1 put, 2 cas: varint index;
 * 3 delete: varint index, u8 deleted; 4 cas-mismatch, 5 quota-exceeded:
 * varint index; 6 rejected: varint index, u8 reason (1 invalid-command,
 * 2 stale-sequence, 3 session-expired), text message; 7 value: u8 present,
 * [bytes value]; 8 null; 9 invalid: text message; 10 configured: varint epoch,
 * varint afterSeq
 */
import { assert, unreachable } from '../../protocols/common/assert.ts'
import { ByteReader, ByteWriter, DecodeError } from '../../protocols/kv/codec.ts'
import { readSessionlessCommand, writeSessionlessCommand } from '../../protocols/kv/index.ts'
import type { ClientSession, KvApplyResult, KvCommand, KvCommandType, KvRejection, SessionlessKvCommand } from '../../protocols/kv/index.ts'
import type { ClientRequest } from '../../protocols/pbft/types.ts'

/** A KV command as a PBFT operation carries it: the session comes from the request. */
export type { SessionlessKvCommand, WithoutSession } from '../../protocols/kv/index.ts'

export const PBFT_OPERATION_VERSION = 1

export type PbftOperation =
  /** put, delete or cas; a session given here is not encoded (see sessionCommand). */
  | { type: 'kv', command: SessionlessKvCommand | KvCommand }
  /** A read: ordered, or read-only (the read-only optimisation). */
  | { type: 'get', key: string }
  /** Does nothing (benchmarks measure the protocol alone with it). */
  | { type: 'null' }

/** An operation as decoded: KV commands without a session. */
export type DecodedOperation =
  | { type: 'kv', command: SessionlessKvCommand }
  | { type: 'get', key: string }
  | { type: 'null' }

/** What executing an operation returned. */
export type PbftResult =
  | { type: 'kv', result: PbftKvResult }
  /** A get's value (null: the key is absent). */
  | { type: 'value', value: Uint8Array | null }
  | { type: 'null' }
  /** A reconfiguration (protocols/pbft/reconfiguration.ts) was accepted: the set of `epoch` orders the seqs above afterSeq. */
  | { type: 'configured', epoch: number, afterSeq: number }
  /** The operation could not be executed at all (malformed, or not allowed read-only). */
  | { type: 'invalid', message: string }

/** A KV command's result as every replica reports it (KvApplyResult without a cas mismatch's current value). */
export type PbftKvResult =
  | { ok: true, index: number, type: 'put' | 'cas' }
  | { ok: true, index: number, type: 'delete', deleted: boolean }
  | { ok: false, index: number, reason: 'cas-mismatch' | 'quota-exceeded' }
  | { ok: false, index: number, reason: KvRejection, message: string }

const OPERATION_KIND = { put: 1, delete: 2, cas: 3, get: 4, null: 5 } as const
/** The KV command type of each kind that carries one. */
const KV_COMMAND_KINDS: Partial<Record<number, KvCommandType>> = { [OPERATION_KIND.put]: 'put', [OPERATION_KIND.delete]: 'delete', [OPERATION_KIND.cas]: 'cas' }
const RESULT_KIND = { put: 1, cas: 2, delete: 3, casMismatch: 4, quotaExceeded: 5, rejected: 6, value: 7, null: 8, invalid: 9, configured: 10 } as const
const REJECTIONS: readonly KvRejection[] = ['invalid-command', 'stale-sequence', 'session-expired']

export function encodeOperation (operation: PbftOperation): Uint8Array {
  const writer = new ByteWriter(64).u8(PBFT_OPERATION_VERSION)
  switch (operation.type) {
    case 'null':
      return writer.u8(OPERATION_KIND.null).finish()
    case 'get':
      return writer.u8(OPERATION_KIND.get).utf8(operation.key).finish()
    case 'kv':
      return writeSessionlessCommand(writer.u8(OPERATION_KIND[operation.command.type]), operation.command).finish()
    default:
      return unreachable(operation)
  }
}

/** Decodes an operation; never throws. Byte strings in it are views into `bytes`. */
export function decodeOperation (bytes: Uint8Array): { ok: true, operation: DecodedOperation } | { ok: false, error: string } {
  if (!(bytes instanceof Uint8Array)) { return { ok: false, error: 'operation must be a Uint8Array' } }
  try {
    const reader = new ByteReader(bytes)
    const version = reader.u8('version')
    if (version !== PBFT_OPERATION_VERSION) { throw new DecodeError(`unsupported operation version ${version}`) }
    const kind = reader.u8('kind')
    const commandType = KV_COMMAND_KINDS[kind]
    let operation: DecodedOperation
    if (commandType !== undefined) {
      operation = { type: 'kv', command: readSessionlessCommand(reader, commandType) }
    } else if (kind === OPERATION_KIND.get) {
      operation = { type: 'get', key: reader.utf8('key') }
    } else if (kind === OPERATION_KIND.null) {
      operation = { type: 'null' }
    } else {
      throw new DecodeError(`unknown operation kind ${kind}`)
    }
    reader.end('operation')
    return { ok: true, operation }
  } catch (err) {
    if (err instanceof DecodeError) { return { ok: false, error: `malformed operation: ${err.message}` } }
    throw err
  }
}

/** The KV session of an ordered request: its client, with its timestamp as the sequence. */
export function requestSession (request: Pick<ClientRequest, 'client' | 'timestamp'>): ClientSession {
  return { clientId: request.client, sequence: request.timestamp }
}

/** The KV command a request executes: the operation's command under the request's session. */
export function sessionCommand (command: SessionlessKvCommand, request: Pick<ClientRequest, 'client' | 'timestamp'>): KvCommand {
  return { ...command, session: requestSession(request) } as KvCommand
}

/** A KV apply result as replicas report it (see PbftKvResult). */
export function kvResult (result: KvApplyResult): PbftResult {
  if (result.ok) {
    assert(result.type !== 'noop', 'a PBFT operation is never an empty KV command')
    return { type: 'kv', result: result.type === 'delete' ? { ok: true, index: result.index, type: 'delete', deleted: result.deleted } : { ok: true, index: result.index, type: result.type } }
  }
  if (result.reason === 'cas-mismatch' || result.reason === 'quota-exceeded') {
    return { type: 'kv', result: { ok: false, index: result.index, reason: result.reason } }
  }
  return { type: 'kv', result: { ok: false, index: result.index, reason: result.reason, message: result.message } }
}

export function encodeResult (result: PbftResult): Uint8Array {
  const writer = new ByteWriter(32).u8(PBFT_OPERATION_VERSION)
  switch (result.type) {
    case 'null':
      return writer.u8(RESULT_KIND.null).finish()
    case 'invalid':
      return writer.u8(RESULT_KIND.invalid).utf8(result.message).finish()
    case 'configured':
      return writer.u8(RESULT_KIND.configured).varint(result.epoch).varint(result.afterSeq).finish()
    case 'value':
      writer.u8(RESULT_KIND.value)
      return (result.value === null ? writer.u8(0) : writer.u8(1).bytes(result.value)).finish()
    case 'kv': {
      const kv = result.result
      if (kv.ok) {
        writer.u8(RESULT_KIND[kv.type]).varint(kv.index)
        if (kv.type === 'delete') { writer.u8(kv.deleted ? 1 : 0) }
      } else if ('message' in kv) {
        writer.u8(RESULT_KIND.rejected).varint(kv.index).u8(REJECTIONS.indexOf(kv.reason) + 1).utf8(kv.message)
      } else {
        writer.u8(kv.reason === 'cas-mismatch' ? RESULT_KIND.casMismatch : RESULT_KIND.quotaExceeded).varint(kv.index)
      }
      return writer.finish()
    }
    default:
      return unreachable(result)
  }
}

/** The result kinds that carry no KV result. */
function decodeOtherResult (reader: ByteReader, kind: number): PbftResult {
  if (kind === RESULT_KIND.configured) { return { type: 'configured', epoch: reader.varint('epoch'), afterSeq: reader.varint('afterSeq') } }
  throw new DecodeError(`unknown result kind ${kind}`)
}

/** Decodes a result; never throws (a reply comes from a replica that may lie). */
export function decodeResult (bytes: Uint8Array): { ok: true, result: PbftResult } | { ok: false, error: string } {
  if (!(bytes instanceof Uint8Array)) { return { ok: false, error: 'result must be a Uint8Array' } }
  try {
    const reader = new ByteReader(bytes)
    const version = reader.u8('version')
    if (version !== PBFT_OPERATION_VERSION) { throw new DecodeError(`unsupported result version ${version}`) }
    const kind = reader.u8('kind')
    let result: PbftResult
    switch (kind) {
      case RESULT_KIND.null:
        result = { type: 'null' }
        break
      case RESULT_KIND.invalid:
        result = { type: 'invalid', message: reader.utf8('message') }
        break
      case RESULT_KIND.value: {
        const present = reader.u8('value flag')
        if (present > 1) { throw new DecodeError(`value flag must be 0 or 1, got ${present}`) }
        result = { type: 'value', value: present === 1 ? reader.bytes('value') : null }
        break
      }
      case RESULT_KIND.put:
      case RESULT_KIND.cas:
        result = { type: 'kv', result: { ok: true, index: reader.varint('index'), type: kind === RESULT_KIND.put ? 'put' : 'cas' } }
        break
      case RESULT_KIND.delete: {
        const index = reader.varint('index')
        const deleted = reader.u8('deleted flag')
        if (deleted > 1) { throw new DecodeError(`deleted flag must be 0 or 1, got ${deleted}`) }
        result = { type: 'kv', result: { ok: true, index, type: 'delete', deleted: deleted === 1 } }
        break
      }
      case RESULT_KIND.casMismatch:
      case RESULT_KIND.quotaExceeded:
        result = { type: 'kv', result: { ok: false, index: reader.varint('index'), reason: kind === RESULT_KIND.casMismatch ? 'cas-mismatch' : 'quota-exceeded' } }
        break
      case RESULT_KIND.rejected: {
        const index = reader.varint('index')
        const code = reader.u8('rejection')
        const reason = REJECTIONS[code - 1]
        if (reason === undefined) { throw new DecodeError(`unknown rejection ${code}`) }
        result = { type: 'kv', result: { ok: false, index, reason, message: reader.utf8('message') } }
        break
      }
      default:
        result = decodeOtherResult(reader, kind)
    }
    reader.end('result')
    return { ok: true, result }
  } catch (err) {
    if (err instanceof DecodeError) { return { ok: false, error: `malformed result: ${err.message}` } }
    throw err
  }
}
