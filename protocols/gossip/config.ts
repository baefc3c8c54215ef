/**
 * Settings of an anti-entropy node, their defaults and the checks that refuse
 * a configuration that cannot work. Durations are in ticks: the driver calls
 * tick() at a fixed interval (20 ms, as for membership, makes the default
 * round interval 200 ms).
 *
 * Nodes of one cluster must agree on the limits that validate messages
 * (GossipLimits): a message is checked against the receiver's.
 */
import { ID_LENGTH_MAX, isValidMemberId } from '../membership/config.ts'
import { idBytesMax } from '../membership/size.ts'
import { entryBytesMax, headerBytesMax, nodeDeltaHeadBytesMax, pageHeadBytesMax } from './size.ts'
import { GOSSIP_MODES } from './types.ts'
import type { Entry, EntryAuth, GossipMode, NodeId } from './types.ts'

export { ID_LENGTH_MAX }

/** Highest version: well below 2^53, so that counting up stays exact. */
export const VERSION_MAX = 2 ** 52
/**
 * How far above the version we hold for a node its entries, relayed by
 * another member, may be. Only a node mints its versions, one per write, so
 * honest news runs ahead of us by the writes we missed: 2^32 is ~136 years
 * of one write a second. Signatures already stop a relay from forging or
 * bumping another node's entries; this bound is defence in depth should an
 * auth be weaker (each lie could then raise a node by at most 2^32, 2^20
 * lies short of VERSION_MAX). A node's own messages are not bounded, nor
 * nodes we do not hold (we have no reference for them).
 */
export const VERSION_JUMP_MAX = 2 ** 32
/**
 * How far above our own entry that came back (a life we forgot) a raise
 * puts our floor. The entry seen need not be the last of that life: a
 * floor just above it could land on the same version as a later one that
 * peers hold, and their digests would then match ours while the contents
 * differ, for good. 2^16 leaves room for the rest of that life's writes
 * since (a later one above the floor comes back above our counter and
 * raises us again); VERSION_MAX leaves room for 2^36 raises.
 */
export const RAISE_MARGIN = 2 ** 16
/** Longest signature (Ed25519's are 64 bytes). */
export const SIGNATURE_BYTES_MAX = 128
/** Ages saturate here (~1.6 years of 20 ms ticks; 4 bytes on the wire). */
export const AGE_TICKS_MAX = 2 ** 31 - 1
/** Node deltas in one message, checked before looking at them (the byte limit is the real bound). */
export const DELTAS_PER_MESSAGE_MAX = 8192
/**
 * A node's entries held by others may exceed its own limits by this factor:
 * a reply cut short by the message size leaves the receiver with a mix of
 * two of the node's states (newer values for keys written early, older ones
 * for keys rewritten late), which may hold more keys or bytes than either
 * state. The owner itself keeps to keysPerNodeMax and bytesPerNodeMax.
 */
export const RELAY_SLACK = 2

export interface AntiEntropyConfig {
  id: NodeId
  /** Signs our entries and checks everyone's. */
  auth: EntryAuth
  mode: GossipMode
  /** Tune fanout and intervalTicks within their bounds (tuning.ts); false pins them. */
  adaptive: boolean
  /** Peers contacted each round (the starting value when adaptive). */
  fanout: number
  fanoutMin: number
  fanoutMax: number
  /** Ticks between two rounds (the starting value, and the one to return to, when adaptive). */
  intervalTicks: number
  intervalTicksMin: number
  intervalTicksMax: number
  /** push and push-pull: how long an exchange waits for the peer's page. */
  exchangeTimeoutTicks: number
  /** After forget(node), its entries relayed by others are refused this long (so they do not flow back). */
  forgetRetentionTicks: number
  /**
   * The highest version this node may have published in an earlier life
   * (persist a reservation above the counter and pass it here). Above the
   * snapshot's own entries, the node starts with a floor just above it, so
   * whatever it published before and forgot is void. 0: a first start.
   */
  initialVersion: number
  /** Entries to start from (a store the driver kept: snapshot()). Checked like received ones. */
  snapshot: readonly Entry[]

  /** Nodes in the store, self included. */
  nodesMax: number
  /** Live keys of one node (and, separately, its tombstones: more and the node compacts them with a floor). */
  keysPerNodeMax: number
  /** Longest key, in UTF-16 units. */
  keyLengthMax: number
  valueBytesMax: number
  /** Bytes of one node's entries (byte model, tombstones included). */
  bytesPerNodeMax: number
  /** Bytes of the whole store. */
  storeBytesMax: number
  /** Largest message, sent or accepted (byte model of size.ts). */
  messageBytesMax: number
  /** Versions in one digest page. */
  digestEntriesMax: number
  /** Bytes of one digest page (the rest of a message carries entries). */
  digestBytesMax: number
  /** Messages held between two ready() calls; more are dropped (anti-entropy repairs loss). */
  outboxMessagesMax: number
  /** Events held between two ready() calls; more are dropped and counted. */
  eventsMax: number
  /** Ids setPeers() takes. */
  peersMax: number
  /** Digests answered per interval (each answer may be a full message). */
  repliesPerIntervalMax: number
  /** Exchanges waiting for a peer's page (push, push-pull); the oldest is dropped beyond. */
  pendingExchangesMax: number
}

export type AntiEntropyConfigInit = Pick<AntiEntropyConfig, 'id' | 'auth'> & Partial<Omit<AntiEntropyConfig, 'id' | 'auth'>>

/** The limits validate.ts checks a message against (a subset of the config). */
export interface GossipLimits {
  messageBytesMax: number
  keyLengthMax: number
  valueBytesMax: number
  keysPerNodeMax: number
  digestEntriesMax: number
}

export const ANTI_ENTROPY_DEFAULTS = {
  mode: 'push-pull',
  adaptive: true,
  fanout: 3,
  fanoutMin: 1,
  fanoutMax: 8,
  intervalTicks: 10,
  intervalTicksMin: 5,
  intervalTicksMax: 50,
  exchangeTimeoutTicks: 50,
  forgetRetentionTicks: 1500,
  initialVersion: 0,
  snapshot: [],
  nodesMax: 16384,
  keysPerNodeMax: 64,
  keyLengthMax: 128,
  valueBytesMax: 16 * 1024,
  bytesPerNodeMax: 64 * 1024,
  storeBytesMax: 256 * 1024 * 1024,
  messageBytesMax: 64 * 1024,
  digestEntriesMax: 1024,
  digestBytesMax: 32 * 1024,
  outboxMessagesMax: 1024,
  eventsMax: 65536,
  peersMax: 16384,
  repliesPerIntervalMax: 64,
  pendingExchangesMax: 64
} as const satisfies Omit<AntiEntropyConfig, 'id' | 'auth'>

const POSITIVE_INTEGERS = [
  'fanout', 'fanoutMin', 'fanoutMax', 'intervalTicks', 'intervalTicksMin', 'intervalTicksMax', 'exchangeTimeoutTicks',
  'forgetRetentionTicks', 'nodesMax', 'keysPerNodeMax', 'keyLengthMax', 'valueBytesMax', 'bytesPerNodeMax', 'storeBytesMax',
  'messageBytesMax', 'digestEntriesMax', 'digestBytesMax', 'outboxMessagesMax', 'eventsMax', 'peersMax',
  'repliesPerIntervalMax', 'pendingExchangesMax'
] as const

/** Peers one round may contact, at most. */
const FANOUT_CEILING = 64

export function isValidNodeId (value: unknown): value is NodeId {
  return isValidMemberId(value)
}

/** Fills defaults and refuses a configuration that cannot work (a programming error: throws). */
export function resolveConfig (init: AntiEntropyConfigInit): AntiEntropyConfig {
  const config: AntiEntropyConfig = { ...ANTI_ENTROPY_DEFAULTS, ...stripUndefined(init) }
  if (!isValidNodeId(config.id)) { fail(`id must be a string of 1..${ID_LENGTH_MAX} characters`) }
  const auth = config.auth as Partial<EntryAuth> | undefined
  if (typeof auth?.sign !== 'function' || typeof auth.verify !== 'function') { fail('auth must have sign() and verify()') }
  if (!GOSSIP_MODES.includes(config.mode)) { fail(`mode must be one of ${GOSSIP_MODES.join(', ')}`) }
  if (typeof config.adaptive !== 'boolean') { fail('adaptive must be a boolean') }
  if (!Array.isArray(config.snapshot)) { fail('snapshot must be an array of entries') }
  checkNumbers(config)
  checkBytes(config)
  return config
}

export function limitsOf (config: AntiEntropyConfig): GossipLimits {
  const { messageBytesMax, keyLengthMax, valueBytesMax, keysPerNodeMax, digestEntriesMax } = config
  return { messageBytesMax, keyLengthMax, valueBytesMax, keysPerNodeMax, digestEntriesMax }
}

function fail (why: string): never {
  throw new RangeError(`gossip config: ${why}`)
}

function checkNumbers (config: AntiEntropyConfig): void {
  for (const key of POSITIVE_INTEGERS) {
    const value = config[key]
    if (!Number.isSafeInteger(value) || value < 1) { fail(`${key} must be a positive integer, got ${String(value)}`) }
  }
  if (config.fanoutMax > FANOUT_CEILING) { fail(`fanoutMax must be at most ${FANOUT_CEILING}`) }
  if (!(config.fanoutMin <= config.fanout && config.fanout <= config.fanoutMax)) { fail('fanout must lie in [fanoutMin, fanoutMax]') }
  if (!(config.intervalTicksMin <= config.intervalTicks && config.intervalTicks <= config.intervalTicksMax)) {
    fail('intervalTicks must lie in [intervalTicksMin, intervalTicksMax]')
  }
  if (!Number.isSafeInteger(config.initialVersion) || config.initialVersion < 0 || config.initialVersion >= VERSION_MAX) {
    fail('initialVersion must be an integer in 0..2^52-1')
  }
}

/** Every byte limit holds what it must: the largest entry in a node's share, and a full page plus that entry in a message. */
function checkBytes (config: AntiEntropyConfig): void {
  const entryMax = entryBytesMax(config.keyLengthMax, config.valueBytesMax, SIGNATURE_BYTES_MAX)
  if (config.bytesPerNodeMax < entryMax) { fail(`bytesPerNodeMax must hold the largest entry (${entryMax} bytes)`) }
  if (config.storeBytesMax < RELAY_SLACK * config.bytesPerNodeMax) { fail(`storeBytesMax must be at least ${RELAY_SLACK} * bytesPerNodeMax`) }
  const pageMin = pageHeadBytesMax(ID_LENGTH_MAX) + idBytesMax(ID_LENGTH_MAX) + 8
  if (config.digestBytesMax < pageMin) { fail(`digestBytesMax must hold a page of one version (${pageMin} bytes)`) }
  const needed = headerBytesMax(ID_LENGTH_MAX) + config.digestBytesMax + nodeDeltaHeadBytesMax(ID_LENGTH_MAX) + entryMax
  if (config.messageBytesMax < needed) {
    fail(`messageBytesMax must be at least ${needed} (a header, a full digest page and the largest entry)`)
  }
}

function stripUndefined<T extends object> (value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T
}
