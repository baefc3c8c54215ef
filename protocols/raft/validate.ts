import { CONF_MEMBERS_MAX, isNodeIdList, isValidNodeId, Membership } from './membership.ts'
import type { ConfState, Entry, EntryType, Message, Snapshot } from './types.ts'

/** Entries in one inbound MsgApp (the sender's own bound is normally far lower). */
export const MESSAGE_ENTRIES_MAX = 65536
/** Bytes of a ReadIndex request context. */
export const READ_CONTEXT_BYTES_MAX = 1024
/**
 * Node ids in each list of a ConfState (a proposal is held to
 * CONF_MEMBERS_MAX members over all lists together, see membership.ts, so
 * every configuration a group reaches passes this check).
 */
export { CONF_MEMBERS_MAX }

export class InvalidMessageError extends Error {
  override name = 'InvalidMessageError'
}

/**
 * What a node is restarted from (RestoredState, from the caller's storage)
 * is malformed or inconsistent: a bug or damage outside the core, which
 * refuses to start from it.
 */
export class RestoredStateError extends RangeError {
  override name = 'RestoredStateError'
}

type Fields = Record<string, unknown>

/**
 * Checks that a decoded value is a well-formed Message and returns a fresh
 * copy holding only the known fields. Use after decoding bytes from the
 * network; step() also calls it, so bad input never reaches the core.
 */
export function validateMessage (value: unknown): Message | InvalidMessageError {
  try {
    return parseMessage(value)
  } catch (err) {
    if (err instanceof InvalidMessageError) { return err }
    throw err
  }
}

function fail (reason: string): never {
  throw new InvalidMessageError(reason)
}

function object (value: unknown, what: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) { fail(`${what} must be an object`) }
  return value as Fields
}

/**
 * Largest term or index a message may carry. Below 2^53 - 1 with room to
 * spare: a node adopting a term must still be able to campaign at term + 1
 * (and a peer sending 2^53 - 1 would otherwise leave a hard state that can
 * no longer be restored).
 */
export const COUNT_MAX = 2 ** 52

/**
 * Highest term a message may make a node jump to. Messages may carry terms
 * up to COUNT_MAX, but a node that adopted COUNT_MAX could never campaign
 * again (term + 1 would fail validation), and the term is durable: one
 * frame would stop the group's elections for good. Past this bound a node
 * still moves up one term at a time (elections go on, 2^32 of them) but
 * ignores a message that would take it further in one step.
 */
export const TERM_ADOPT_MAX = COUNT_MAX - 2 ** 32

function count (fields: Fields, key: string): number {
  const value = fields[key]
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > COUNT_MAX) { fail(`${key} must be an integer in 0..2^52`) }
  return value
}

function flag (fields: Fields, key: string): boolean {
  const value = fields[key]
  if (typeof value !== 'boolean') { fail(`${key} must be a boolean`) }
  return value
}

function bytes (fields: Fields, key: string, max = Number.POSITIVE_INFINITY): Uint8Array {
  const value = fields[key]
  if (!(value instanceof Uint8Array)) { fail(`${key} must be a Uint8Array`) }
  if (value.byteLength > max) { fail(`${key} is longer than ${max} bytes`) }
  return value
}

function nodeId (fields: Fields, key: string): string {
  const value = fields[key]
  if (!isValidNodeId(value)) { fail(`${key} must be a non-empty node id`) }
  return value
}

function parseMessage (value: unknown): Message {
  const m = object(value, 'message')
  const from = nodeId(m, 'from')
  const to = nodeId(m, 'to')
  const term = count(m, 'term')
  const base = { from, to, term }
  const type = m.type
  switch (type) {
    case 'append': {
      const prevIndex = count(m, 'prevIndex')
      const prevTerm = count(m, 'prevTerm')
      if (prevTerm > term) { fail('prevTerm is newer than the message term') }
      if (prevIndex === 0 && prevTerm !== 0) { fail('prevTerm must be 0 at index 0') }
      const entries = parseEntries(m.entries, prevIndex, prevTerm, term)
      return { type, ...base, prevIndex, prevTerm, entries, commit: count(m, 'commit') }
    }
    case 'append-response':
      return { type, ...base, index: count(m, 'index'), reject: flag(m, 'reject'), rejectHint: count(m, 'rejectHint'), hintTerm: count(m, 'hintTerm') }
    case 'vote':
    case 'pre-vote': {
      const lastTerm = count(m, 'lastTerm')
      if (term === 0 || lastTerm > term) { fail('vote term must be positive and not older than lastTerm') }
      return { type, ...base, lastIndex: count(m, 'lastIndex'), lastTerm, transfer: flag(m, 'transfer') }
    }
    case 'vote-response':
    case 'pre-vote-response':
      return { type, ...base, reject: flag(m, 'reject') }
    case 'heartbeat':
      return { type, ...base, commit: count(m, 'commit'), readRound: count(m, 'readRound') }
    case 'heartbeat-response':
      return { type, ...base, readRound: count(m, 'readRound') }
    case 'snapshot':
      return { type, ...base, snapshot: parseSnapshot(m.snapshot, term) }
    case 'timeout-now':
      return { type, ...base }
    case 'read-index':
      return { type, ...base, context: bytes(m, 'context', READ_CONTEXT_BYTES_MAX) }
    case 'read-index-response':
      return { type, ...base, index: count(m, 'index'), context: bytes(m, 'context', READ_CONTEXT_BYTES_MAX) }
    default:
      return fail(`unknown message type ${typeof type === 'string' ? JSON.stringify(type.slice(0, 64)) : typeof type}`)
  }
}

function parseEntries (value: unknown, prevIndex: number, prevTerm: number, messageTerm: number): Entry[] {
  if (!Array.isArray(value)) { fail('entries must be an array') }
  if (value.length > MESSAGE_ENTRIES_MAX) { fail(`more than ${MESSAGE_ENTRIES_MAX} entries`) }
  const entries: Entry[] = []
  let previousTerm = prevTerm
  for (const [i, item] of value.entries()) {
    const entry = parseEntry(item)
    if (entry.index !== prevIndex + 1 + i) { fail('entry indexes must follow prevIndex contiguously') }
    if (entry.term < previousTerm || entry.term > messageTerm) { fail('entry terms must be non-decreasing and not newer than the message') }
    previousTerm = entry.term
    entries.push(entry)
  }
  return entries
}

const ENTRY_TYPES = new Set<EntryType>(['normal', 'conf-change'])

export function parseEntry (value: unknown): Entry {
  const e = object(value, 'entry')
  const type = e.type
  if (typeof type !== 'string' || !ENTRY_TYPES.has(type as EntryType)) { fail('entry type must be "normal" or "conf-change"') }
  const term = count(e, 'term')
  const index = count(e, 'index')
  if (term === 0 || index === 0) { fail('entry term and index must be positive') }
  return { term, index, type: type as EntryType, data: bytes(e, 'data') }
}

export function parseSnapshot (value: unknown, messageTerm: number): Snapshot {
  const s = object(value, 'snapshot')
  const meta = object(s.meta, 'snapshot.meta')
  const index = count(meta, 'index')
  const term = count(meta, 'term')
  if (index === 0 || term === 0 || term > messageTerm) { fail('snapshot index/term out of range') }
  return { meta: { index, term, conf: parseConfState(meta.conf) }, data: bytes(s, 'data') }
}

export function parseConfState (value: unknown): ConfState {
  const c = object(value, 'conf')
  const lists = ['voters', 'votersOutgoing', 'learners', 'learnersNext'] as const
  for (const key of lists) {
    const list = c[key]
    if (!isNodeIdList(list) || list.length > CONF_MEMBERS_MAX) { fail(`conf.${key} must be a list of node ids`) }
  }
  const autoLeave = flag(c, 'autoLeave')
  const [voters, votersOutgoing, learners, learnersNext] = lists.map(key => [...new Set(c[key] as string[])])
  if (voters.length === 0) { fail('conf has no voters') }
  const conf = { voters, votersOutgoing, learners, learnersNext, autoLeave }
  const violation = new Membership(conf).invariantViolation()
  if (violation !== null) { fail(`conf: ${violation}`) }
  return conf
}
