/**
 * Every field of an inbound message is checked here, once, before the core
 * looks at it (as protocols/raft/validate.ts does for Raft): types, ranges,
 * list lengths, metadata size, and the whole message against messageBytesMax
 * by the byte model of size.ts. The result is a fresh object holding only the
 * known fields, so nothing the sender added travels further. Bad input is
 * reported as a value, never thrown.
 */
import { INCARNATION_MAX, isValidMemberId, LIST_LENGTH_MAX } from './config.ts'
import { gossipBytes, messageBytes } from './size.ts'
import type { MessageLimits } from './config.ts'
import type { AliveUpdate, Message, Update } from './types.ts'

export class InvalidMessageError extends Error {
  override name = 'InvalidMessageError'
  /** 'too-large' for size limits, 'invalid-message' for everything else. */
  readonly reason: 'invalid-message' | 'too-large'

  constructor (reason: 'invalid-message' | 'too-large', message: string) {
    super(message)
    this.reason = reason
  }
}

type Fields = Record<string, unknown>

function fail (why: string): never {
  throw new InvalidMessageError('invalid-message', why)
}

function tooLarge (why: string): never {
  throw new InvalidMessageError('too-large', why)
}

/**
 * Checks that a decoded value is a well-formed membership message within
 * `limits` and returns a copy with only the known fields, or the reason it
 * is not. MembershipNode.step() calls it; a service may call it first to
 * count or log bad frames.
 */
export function validateMessage (value: unknown, limits: MessageLimits): Message | InvalidMessageError {
  try {
    const m = parseMessage(value, limits)
    const bytes = messageBytes(m)
    if (bytes > limits.messageBytesMax) { tooLarge(`message of ${bytes} bytes is larger than messageBytesMax ${limits.messageBytesMax}`) }
    return m
  } catch (err) {
    if (err instanceof InvalidMessageError) { return err }
    throw err
  }
}

/** A batch of updates broadcast by `from` (receiveGossip), checked as validateMessage checks a message's piggyback. */
export interface GossipBatch {
  from: string
  updates: Update[]
}

/**
 * Checks the author id and every update of a broadcast batch, and the
 * whole against messageBytesMax (gossipBytes of size.ts); returns a copy
 * with only the known fields, or the reason it is not valid.
 */
export function validateGossip (from: unknown, updates: unknown, limits: MessageLimits): GossipBatch | InvalidMessageError {
  try {
    const batch = { from: memberId({ from }, 'from'), updates: updatesOf({ updates }, 'updates', limits) }
    const bytes = gossipBytes(batch.from, batch.updates)
    if (bytes > limits.messageBytesMax) { tooLarge(`batch of ${bytes} bytes is larger than messageBytesMax ${limits.messageBytesMax}`) }
    return batch
  } catch (err) {
    if (err instanceof InvalidMessageError) { return err }
    throw err
  }
}

function object (value: unknown, what: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) { fail(`${what} must be an object`) }
  return value as Fields
}

function memberId (fields: Fields, key: string): string {
  const value = fields[key]
  if (!isValidMemberId(value)) { fail(`${key} must be a member id (a string of 1..256 characters)`) }
  return value
}

function count (fields: Fields, key: string): number {
  const value = fields[key]
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > INCARNATION_MAX) { fail(`${key} must be an integer in 0..2^52`) }
  return value
}

function flag (fields: Fields, key: string): boolean {
  const value = fields[key]
  if (typeof value !== 'boolean') { fail(`${key} must be a boolean`) }
  return value
}

function optionalId (fields: Fields, key: string): string | null {
  return fields[key] === null ? null : memberId(fields, key)
}

function list (fields: Fields, key: string): unknown[] {
  const value = fields[key]
  if (!Array.isArray(value)) { fail(`${key} must be an array`) }
  if (value.length > LIST_LENGTH_MAX) { tooLarge(`${key} has more than ${LIST_LENGTH_MAX} entries`) }
  return value
}

function meta (fields: Fields, limits: MessageLimits): Uint8Array {
  const value = fields.meta
  if (!(value instanceof Uint8Array)) { fail('meta must be a Uint8Array') }
  if (value.byteLength > limits.metaBytesMax) { tooLarge(`meta of ${value.byteLength} bytes is larger than metaBytesMax ${limits.metaBytesMax}`) }
  return value
}

export function parseUpdate (value: unknown, limits: MessageLimits): Update {
  const u = object(value, 'update')
  const id = memberId(u, 'id')
  const incarnation = count(u, 'incarnation')
  switch (u.kind) {
    case 'alive': return { kind: 'alive', id, incarnation, meta: meta(u, limits) }
    case 'suspect': return { kind: 'suspect', id, incarnation, from: memberId(u, 'from') }
    case 'dead': return { kind: 'dead', id, incarnation, from: memberId(u, 'from') }
    case 'left': return { kind: 'left', id, incarnation }
    default: return fail(`unknown update kind ${describe(u.kind)}`)
  }
}

function updatesOf (fields: Fields, key: string, limits: MessageLimits): Update[] {
  return list(fields, key).map(item => parseUpdate(item, limits))
}

function aliveUpdates (fields: Fields, key: string, limits: MessageLimits): AliveUpdate[] {
  const parsed = updatesOf(fields, key, limits)
  for (const u of parsed) {
    if (u.kind !== 'alive') { fail(`${key} may hold alive updates only`) }
  }
  return parsed as AliveUpdate[]
}

function parseMessage (value: unknown, limits: MessageLimits): Message {
  const m = object(value, 'message')
  const type = m.type
  const from = memberId(m, 'from')
  const to = memberId(m, 'to')
  const base = { from, to, updates: updatesOf(m, 'updates', limits) }
  switch (type) {
    case 'ping':
    case 'nack':
      return { type, ...base, seq: count(m, 'seq') }
    case 'ack':
      return { type, ...base, seq: count(m, 'seq'), announce: flag(m, 'announce') }
    case 'ping-req':
      return { type, ...base, seq: count(m, 'seq'), target: memberId(m, 'target'), nack: flag(m, 'nack') }
    case 'join':
      return { type, ...base, after: optionalId(m, 'after') }
    case 'join-ack':
      return { type, ...base, members: aliveUpdates(m, 'members', limits), next: optionalId(m, 'next') }
    default:
      return fail(`unknown message type ${describe(type)}`)
  }
}

function describe (value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value.slice(0, 64)) : typeof value
}
