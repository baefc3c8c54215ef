/**
 * Every field of an inbound message is checked here, once, before the core
 * looks at it (as protocols/membership/validate.ts does): types, ranges,
 * list lengths and order, key and value sizes, and the whole message against
 * messageBytesMax by the byte model of size.ts. The result is a fresh object
 * holding only the known fields, so nothing the sender added travels
 * further. Bad input is reported as a value, never thrown. Signatures are
 * not checked here: that needs the store (only entries we would take are
 * verified, see anti-entropy-node.ts).
 */
import { InvalidMessageError } from '../membership/validate.ts'
import { AGE_TICKS_MAX, DELTAS_PER_MESSAGE_MAX, isValidNodeId, RELAY_SLACK, SIGNATURE_BYTES_MAX, VERSION_MAX } from './config.ts'
import { gossipMessageBytes } from './size.ts'
import { WANTS } from './types.ts'
import type { GossipLimits } from './config.ts'
import type { DigestEntry, DigestPage, GossipMessage, NodeDelta, NodeId, Want, WireEntry } from './types.ts'

export { InvalidMessageError }

type Fields = Record<string, unknown>

function fail (why: string): never {
  throw new InvalidMessageError('invalid-message', why)
}

function tooLarge (why: string): never {
  throw new InvalidMessageError('too-large', why)
}

/**
 * Checks that a decoded value is a well-formed gossip message within
 * `limits` and returns a copy with only the known fields, or the reason it
 * is not. AntiEntropyNode.step() calls it; a service may call it first to
 * count or log bad frames.
 */
export function validateGossipMessage (value: unknown, limits: GossipLimits): GossipMessage | InvalidMessageError {
  try {
    const m = parseMessage(value, limits)
    const bytes = gossipMessageBytes(m)
    if (bytes > limits.messageBytesMax) { tooLarge(`message of ${bytes} bytes is larger than messageBytesMax ${limits.messageBytesMax}`) }
    return m
  } catch (err) {
    if (err instanceof InvalidMessageError) { return err }
    throw err
  }
}

/** Most entries one node delta may carry: a relay's share of a node (values and tombstones, with slack) and a floor. */
export function entriesPerDeltaMax (keysPerNodeMax: number): number {
  return 2 * RELAY_SLACK * keysPerNodeMax + 1
}

function object (value: unknown, what: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) { fail(`${what} must be an object`) }
  return value as Fields
}

function nodeId (fields: Fields, key: string): NodeId {
  const value = fields[key]
  if (!isValidNodeId(value)) { fail(`${key} must be a node id (a string of 1..256 characters)`) }
  return value
}

function optionalId (fields: Fields, key: string): NodeId | null {
  return fields[key] === null ? null : nodeId(fields, key)
}

function version (fields: Fields, key: string, min: number): number {
  const value = fields[key]
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > VERSION_MAX) { fail(`${key} must be an integer in ${min}..2^52`) }
  return value
}

function list (fields: Fields, key: string, max: number): unknown[] {
  const value = fields[key]
  if (!Array.isArray(value)) { fail(`${key} must be an array`) }
  if (value.length > max) { tooLarge(`${key} has more than ${max} items`) }
  return value
}

function bytes (fields: Fields, key: string, max: number): Uint8Array {
  const value = fields[key]
  if (!(value instanceof Uint8Array)) { fail(`${key} must be a Uint8Array`) }
  if (value.byteLength > max) { tooLarge(`${key} of ${value.byteLength} bytes is larger than ${max}`) }
  return value
}

/** Whether `id` lies in (after, until]. */
export function inRange (id: NodeId, after: NodeId | null, until: NodeId | null): boolean {
  return (after === null || id > after) && (until === null || id <= until)
}

function parsePage (value: unknown, limits: GossipLimits): DigestPage {
  const p = object(value, 'page')
  const after = optionalId(p, 'after')
  const until = optionalId(p, 'until')
  if (after !== null && until !== null && until <= after) { fail('page: until must sort after after') }
  const versions: DigestEntry[] = []
  let previous: NodeId | null = null
  for (const item of list(p, 'versions', limits.digestEntriesMax)) {
    const v = object(item, 'digest entry')
    const node = nodeId(v, 'node')
    if (previous !== null && node <= previous) { fail('page: versions must be in strictly ascending node order') }
    if (!inRange(node, after, until)) { fail('page: a version outside the page\'s range') }
    versions.push({ node, version: version(v, 'version', 1) })
    previous = node
  }
  return { after, until, versions }
}

function parseEntry (value: unknown, limits: GossipLimits, index: number, after: number, previous: number): WireEntry {
  const e = object(value, 'entry')
  const key = e.key
  if (typeof key !== 'string' || key.length > limits.keyLengthMax) { fail(`key must be a string of 0..${limits.keyLengthMax} characters`) }
  const v = e.value === null ? null : bytes(e, 'value', limits.valueBytesMax)
  if (key === '' && (v !== null || index !== 0)) { fail('a floor (key \'\') must have a null value and come first') }
  const entryVersion = version(e, 'version', 1)
  if (entryVersion <= Math.max(after, previous)) { fail('entries must be above the delta\'s after, in strictly increasing version order') }
  const signature = bytes(e, 'signature', SIGNATURE_BYTES_MAX)
  if (signature.byteLength === 0) { fail('signature must not be empty') }
  const ageTicks = e.ageTicks
  if (typeof ageTicks !== 'number' || !Number.isSafeInteger(ageTicks) || ageTicks < 0 || ageTicks > AGE_TICKS_MAX) { fail('ageTicks must be an integer in 0..2^31-1') }
  return { key, value: v, version: entryVersion, signature, ageTicks }
}

function parseDelta (value: unknown, limits: GossipLimits): NodeDelta {
  const d = object(value, 'node delta')
  const node = nodeId(d, 'node')
  const after = version(d, 'after', 0)
  const raw = list(d, 'entries', entriesPerDeltaMax(limits.keysPerNodeMax))
  if (raw.length === 0) { fail('a node delta must carry entries') }
  const entries: WireEntry[] = []
  const keys = new Set<string>()
  for (const [i, item] of raw.entries()) {
    const e = parseEntry(item, limits, i, after, entries.at(-1)?.version ?? 0)
    if (keys.has(e.key)) { fail('a node delta carries each key once') }
    keys.add(e.key)
    entries.push(e)
  }
  return { node, after, entries }
}

/**
 * Checks one node delta on its own (a snapshot's entries of one node are
 * checked as a delta from version 0).
 */
export function validateNodeDelta (value: unknown, limits: GossipLimits): NodeDelta | InvalidMessageError {
  try {
    return parseDelta(value, limits)
  } catch (err) {
    if (err instanceof InvalidMessageError) { return err }
    throw err
  }
}

function want (fields: Fields): Want {
  const value = fields.want
  if (!WANTS.includes(value as Want)) { fail(`want must be one of ${WANTS.join(', ')}`) }
  return value as Want
}

function parseMessage (value: unknown, limits: GossipLimits): GossipMessage {
  const m = object(value, 'message')
  const type = m.type
  const from = nodeId(m, 'from')
  const to = nodeId(m, 'to')
  switch (type) {
    case 'digest':
      return { type, from, to, page: parsePage(m.page, limits), want: want(m) }
    case 'delta': {
      const deltas = list(m, 'deltas', DELTAS_PER_MESSAGE_MAX).map(d => parseDelta(d, limits))
      if (new Set(deltas.map(d => d.node)).size !== deltas.length) { fail('a delta message names each node once') }
      return { type, from, to, deltas, page: m.page === null ? null : parsePage(m.page, limits) }
    }
    default:
      return fail(`unknown message type ${typeof type === 'string' ? JSON.stringify(type.slice(0, 64)) : typeof type}`)
  }
}
