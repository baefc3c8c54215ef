/**
 * KV commands: what a client proposes through the Raft log, their limits,
 * validation and a compact binary encoding.
 *
 * Encoding, version 1 (varint = unsigned LEB128, shortest form only; bytes =
 * varint length + raw bytes; text = bytes of UTF-8):
 *
 * - u8 version (1), u8 type (1 put, 2 delete, 3 cas)
 * - text clientId, varint sequence, text key
 * - put: bytes value
 * - delete: nothing more
 * - cas: u8 hasExpected (0: the key must be absent; 1: bytes expected follows), then bytes value
 *
 * Nothing may follow. Every byte string has exactly one decoding and every
 * decodable byte string is the encoding of what it decodes to.
 */
import { assert, unreachable } from '../common/assert.ts'
import { ByteReader, ByteWriter, DecodeError, utf8ByteLength, varintByteLength } from './codec.ts'

export const KV_COMMAND_VERSION = 1

export interface KvLimits {
  /** UTF-8 bytes of a key (keys are non-empty). */
  keyBytesMax: number
  /** Bytes of a value, and of a cas expected value. */
  valueBytesMax: number
  /** UTF-8 bytes of a session's client id. */
  clientIdBytesMax: number
  /** Client sessions remembered for exactly-once; least recently used are evicted. */
  sessionsMax: number
  /** Sum of key and value bytes over the store; writes beyond it fail with 'quota-exceeded'. */
  dataBytesMax: number
}

export const KV_DEFAULTS: Readonly<KvLimits> = Object.freeze({
  keyBytesMax: 1024,
  valueBytesMax: 1024 * 1024,
  clientIdBytesMax: 128,
  sessionsMax: 10_000,
  dataBytesMax: 256 * 1024 * 1024
})

/** Fills in defaults and checks every limit is a positive safe integer. */
export function resolveKvLimits (init: Partial<KvLimits> = {}): KvLimits {
  const limits = { ...KV_DEFAULTS, ...init }
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) { throw new RangeError(`KV limit ${name} must be a positive integer, got ${value}`) }
  }
  return limits
}

/**
 * Who sent a command. A client numbers its commands 1, 2, 3, ... within a
 * session and retries a command with the same number until it gets an
 * answer; one command in flight per session.
 */
export interface ClientSession {
  clientId: string
  sequence: number
}

export type KvCommand =
  | { type: 'put', session: ClientSession, key: string, value: Uint8Array }
  | { type: 'delete', session: ClientSession, key: string }
  /** expected null: succeed only when the key is absent */
  | { type: 'cas', session: ClientSession, key: string, expected: Uint8Array | null, value: Uint8Array }

export type KvCommandType = KvCommand['type']

export type WithoutSession<C> = C extends unknown ? Omit<C, 'session'> : never

/** A KV command without its session, for a protocol that supplies the session itself (PBFT: the signed request's client and timestamp). */
export type SessionlessKvCommand = WithoutSession<KvCommand>

export type CommandValidation = { ok: true } | { ok: false, message: string }

export type DecodedCommand = { ok: true, command: KvCommand } | { ok: false, error: string }

const TYPE_CODE: Record<KvCommandType, number> = { put: 1, delete: 2, cas: 3 }
/** The command type of each TYPE_CODE. */
const COMMAND_TYPES: Partial<Record<number, KvCommandType>> = { 1: 'put', 2: 'delete', 3: 'cas' }

/**
 * Checks a command against the limits. Run it before proposing; apply runs
 * it again, so a command that slipped through only yields an error result.
 * Defensive about runtime types: the command may come from parsed input.
 */
export function validateCommand (command: KvCommand, limits: KvLimits = KV_DEFAULTS): CommandValidation {
  const fail = (message: string): CommandValidation => ({ ok: false, message })
  if (typeof command !== 'object' || command === null) { return fail('command must be an object') }
  const session: unknown = command.session
  if (typeof session !== 'object' || session === null) { return fail('session is missing') }
  const { clientId, sequence } = session as Partial<ClientSession>
  const clientIdProblem = textProblem(clientId, 'clientId', limits.clientIdBytesMax)
  if (clientIdProblem !== undefined) { return fail(clientIdProblem) }
  if (typeof sequence !== 'number' || !Number.isSafeInteger(sequence) || sequence < 1) {
    return fail(`sequence must be an integer from 1 to 2^53 - 1, got ${String(sequence)}`)
  }
  if (command.type !== 'put' && command.type !== 'delete' && command.type !== 'cas') {
    return fail(`unknown command type ${JSON.stringify(String((command as { type: unknown }).type))}`)
  }
  const keyProblem = textProblem(command.key, 'key', limits.keyBytesMax)
  if (keyProblem !== undefined) { return fail(keyProblem) }
  if (command.type === 'put' || command.type === 'cas') {
    const valueProblem = bytesProblem(command.value, 'value', limits.valueBytesMax)
    if (valueProblem !== undefined) { return fail(valueProblem) }
  }
  if (command.type === 'cas' && command.expected !== null) {
    const expectedProblem = bytesProblem(command.expected, 'expected', limits.valueBytesMax)
    if (expectedProblem !== undefined) { return fail(expectedProblem) }
  }
  return { ok: true }
}

function textProblem (text: unknown, what: string, bytesMax: number): string | undefined {
  if (typeof text !== 'string') { return `${what} must be a string` }
  if (text.length === 0) { return `${what} must not be empty` }
  if (!text.isWellFormed()) { return `${what} contains a lone surrogate (not encodable as UTF-8)` }
  const bytes = utf8ByteLength(text)
  if (bytes > bytesMax) { return `${what} is ${bytes} bytes, more than ${bytesMax}` }
  return undefined
}

function bytesProblem (bytes: unknown, what: string, bytesMax: number): string | undefined {
  if (!(bytes instanceof Uint8Array)) { return `${what} must be a Uint8Array` }
  if (bytes.length > bytesMax) { return `${what} is ${bytes.length} bytes, more than ${bytesMax}` }
  return undefined
}

/**
 * Encodes a command. It must be structurally sound (well-formed strings, an
 * integer sequence); limits are validateCommand's business.
 */
export function encodeCommand (command: KvCommand): Uint8Array {
  const { clientId, sequence } = command.session
  assert(clientId.isWellFormed() && command.key.isWellFormed(), 'encodeCommand: strings must be well-formed UTF-16')
  assert(Number.isSafeInteger(sequence) && sequence >= 0, 'encodeCommand: sequence must be a non-negative safe integer')
  const writer = new ByteWriter()
    .u8(KV_COMMAND_VERSION)
    .u8(TYPE_CODE[command.type])
    .utf8(clientId)
    .varint(sequence)
  return writeSessionlessCommand(writer, command).finish()
}

/**
 * Writes what follows the session in a command's encoding (text key, then
 * the type's fields, see the top of this file), for a protocol that encodes
 * the type and session its own way.
 */
export function writeSessionlessCommand (writer: ByteWriter, command: SessionlessKvCommand): ByteWriter {
  writer.utf8(command.key)
  switch (command.type) {
    case 'put':
      return writer.bytes(command.value)
    case 'delete':
      return writer
    case 'cas':
      if (command.expected === null) { writer.u8(0) } else { writer.u8(1).bytes(command.expected) }
      return writer.bytes(command.value)
    default:
      return unreachable(command)
  }
}

/** Reads what writeSessionlessCommand wrote for a command of `type`; throws DecodeError. Byte strings are views into the reader's bytes. */
export function readSessionlessCommand (reader: ByteReader, type: KvCommandType): SessionlessKvCommand {
  const key = reader.utf8('key')
  switch (type) {
    case 'put':
      return { type, key, value: reader.bytes('value') }
    case 'delete':
      return { type, key }
    case 'cas': {
      const hasExpected = reader.u8('cas expected flag')
      if (hasExpected > 1) { throw new DecodeError(`cas expected flag must be 0 or 1, got ${hasExpected}`) }
      const expected = hasExpected === 1 ? reader.bytes('expected') : null
      return { type, key, expected, value: reader.bytes('value') }
    }
    default:
      return unreachable(type)
  }
}

/**
 * Decodes a command; never throws. Byte strings in the result are views into
 * `bytes` (copy them before keeping them). The result is structurally sound
 * but not checked against limits: call validateCommand for that.
 */
export function decodeCommand (bytes: Uint8Array): DecodedCommand {
  if (!(bytes instanceof Uint8Array)) { return { ok: false, error: 'command must be a Uint8Array' } }
  try {
    const reader = new ByteReader(bytes)
    const version = reader.u8('version')
    if (version !== KV_COMMAND_VERSION) { throw new DecodeError(`unsupported command version ${version}`) }
    const typeCode = reader.u8('type')
    const type = COMMAND_TYPES[typeCode]
    if (type === undefined) { throw new DecodeError(`unknown command type ${typeCode}`) }
    const clientId = reader.utf8('clientId')
    const sequence = reader.varint('sequence')
    const command = { ...readSessionlessCommand(reader, type), session: { clientId, sequence } } as KvCommand
    reader.end('command')
    return { ok: true, command }
  } catch (err) {
    if (err instanceof DecodeError) { return { ok: false, error: `malformed command: ${err.message}` } }
    throw err
  }
}

/** The largest encoding of a command within `limits`: a bound for proposal sizes. */
export function commandBytesMax (limits: KvLimits = KV_DEFAULTS): number {
  const text = (bytesMax: number): number => varintByteLength(bytesMax) + bytesMax
  return 2 + text(limits.clientIdBytesMax) + varintByteLength(Number.MAX_SAFE_INTEGER) +
    text(limits.keyBytesMax) + 1 + 2 * text(limits.valueBytesMax)
}
