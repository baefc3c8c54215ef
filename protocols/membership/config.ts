/**
 * Settings of a membership node, their defaults and the checks that refuse a
 * configuration that cannot work. Durations are in ticks: the driver calls
 * tick() at a fixed interval (20 ms makes the defaults a 200 ms protocol
 * period with a 100 ms probe timeout; 100 ms gives memberlist's LAN profile,
 * 1 s and 500 ms).
 *
 * Members of one cluster must agree on the limits that validate messages
 * (metaBytesMax, messageBytesMax): a message is checked against the
 * receiver's.
 */
import { aliveUpdateBytesMax, headerBytesMax } from './size.ts'
import type { Roster } from './member-table.ts'
import type { MemberId } from './types.ts'

/** Longest member id, in UTF-16 units (a PeerId string is ~52). */
export const ID_LENGTH_MAX = 256
/**
 * Highest incarnation (and probe sequence number) a message may carry. Well
 * below 2^53 so that a refutation (incarnation + 1) stays exact.
 */
export const INCARNATION_MAX = 2 ** 52

/**
 * How far above the incarnation we hold for a member (0 for one we do not
 * know) news relayed about it by another member may be. Only a member
 * raises its own incarnation, one step per refutation or metadata change,
 * so a relayed update can run ahead of our view only by the steps that have
 * not reached us yet. One far beyond is a lie by an admitted member: taken
 * as it stands, an accusation at INCARNATION_MAX would leave its victim no
 * number to refute with. Bounded, each lie can raise the victim's
 * incarnation by at most this much, and reaching INCARNATION_MAX takes
 * 2^36 of them. A member's own announcements (its id as the message's
 * sender, which the service checks against the authenticated peer) are not
 * bounded: after a restart it may rightly jump.
 */
export const INCARNATION_JUMP_MAX = 2 ** 16
/** Metadata every cluster can carry: a configuration may allow more, never less. */
export const META_BYTES_FLOOR = 4096
/** Entries in one message's lists, checked before looking at them (the byte limit is the real bound). */
export const LIST_LENGTH_MAX = 8192

export interface MembershipConfig {
  id: MemberId
  /** This member's metadata at start. */
  meta: Uint8Array
  /**
   * This member's incarnation at start. 0 is fine for a restart too (the
   * member refutes upwards once it hears its old incarnation); a driver that
   * remembers the last one can start above it and save a round.
   */
  incarnation: number
  /**
   * Members known at start, all alive (a static cluster file, a snapshot).
   * One Roster may be shared by many nodes: each keeps only its changes to
   * it (the simulator runs 10,000 nodes over one).
   */
  roster?: Roster

  /** Ticks per protocol period at full health (one probe per period). */
  probeIntervalTicks: number
  /** Ticks to wait for a direct ack before asking for indirect probes. Less than probeIntervalTicks. */
  probeTimeoutTicks: number
  /** Members asked for an indirect probe (SWIM's k). */
  indirectChecks: number
  /**
   * When our probe makes us suspect a member, ping it with the accusation at
   * once and every period while the suspicion stands, so that it can refute
   * (memberlist only attaches it to the next probe of the suspect, whoever
   * sends it). At most 8 suspects are notified per period.
   */
  notifySuspect: boolean
  /** Suspicion timeout at least suspicionMult * max(1, log10(N)) protocol periods. */
  suspicionMult: number
  /** ... and at most suspicionMaxTimeoutMult times that, when nobody confirms the suspicion. */
  suspicionMaxTimeoutMult: number
  /** Each update is piggybacked at most retransmitMult * ceil(log10(N + 1)) times. */
  retransmitMult: number
  /** Largest Lifeguard local health multiplier: timeouts stretch up to (awarenessMax + 1) times. */
  awarenessMax: number
  /**
   * How long a dead or left member is remembered (a tombstone that keeps older
   * alive news from resurrecting it, and lets us ping it in case it is only
   * cut off). It is forgotten at the first probe round start after this.
   */
  deadRetentionTicks: number
  /** join(): ticks to wait for each page before asking the next seed. */
  joinTimeoutTicks: number
  /** join(): page requests that may time out before the join fails. */
  joinAttemptsMax: number
  /** Join pages this node answers per protocol period (a join request is small, its answer large). */
  joinRepliesPerPeriodMax: number
  /** Seeds one join() call accepts. */
  seedsMax: number
  /** Bytes of member records in one join page (answers to joins and syncs). */
  joinPageBytesMax: number
  /**
   * Every this many ticks, pull one page of a random live member's list, from
   * a random point (0: never). Infection-style dissemination misses a member
   * now and then; two members that both missed each other's alive update
   * never probe each other, and only a third can introduce them. This is
   * that safety net, a bounded slice of memberlist's push-pull; full
   * anti-entropy belongs to the service.
   */
  syncIntervalTicks: number

  /** Members in the table, self and tombstones included. */
  membersMax: number
  /** Updates waiting to be piggybacked; the most transmitted are dropped beyond it. */
  broadcastQueueMax: number
  /** Indirect probes this node runs for others at once. */
  pendingProbesMax: number
  /** Messages held between two ready() calls; more are dropped (SWIM tolerates loss). */
  outboxMessagesMax: number
  /** Events held between two ready() calls; more are dropped and counted. */
  eventsMax: number
  /**
   * Updates this member originated (see Ready.publish) held between two
   * ready() calls, one per member; beyond it the oldest are dropped and
   * counted (they still spread by piggybacking).
   */
  publishUpdatesMax: number
  /** Largest message, sent or accepted (byte model of size.ts). */
  messageBytesMax: number
  /** Bytes of piggybacked updates per message. */
  piggybackBytesMax: number
  /**
   * Largest metadata of a member (at least META_BYTES_FLOOR). Raising it
   * raises the defaults of piggybackBytesMax, joinPageBytesMax and
   * messageBytesMax to hold two such updates.
   */
  metaBytesMax: number
}

export type MembershipConfigInit = Pick<MembershipConfig, 'id'> & Partial<Omit<MembershipConfig, 'id'>>

export const MEMBERSHIP_DEFAULTS = {
  meta: new Uint8Array(0),
  incarnation: 0,
  probeIntervalTicks: 10,
  probeTimeoutTicks: 5,
  indirectChecks: 3,
  notifySuspect: true,
  suspicionMult: 4,
  suspicionMaxTimeoutMult: 6,
  retransmitMult: 4,
  awarenessMax: 8,
  deadRetentionTicks: 1500,
  joinTimeoutTicks: 50,
  joinAttemptsMax: 8,
  joinRepliesPerPeriodMax: 64,
  seedsMax: 64,
  joinPageBytesMax: 16 * 1024,
  syncIntervalTicks: 1500,
  membersMax: 16384,
  broadcastQueueMax: 4096,
  pendingProbesMax: 256,
  outboxMessagesMax: 4096,
  eventsMax: 65536,
  publishUpdatesMax: 64,
  messageBytesMax: 64 * 1024,
  piggybackBytesMax: 8 * 1024,
  metaBytesMax: META_BYTES_FLOOR
} as const satisfies Omit<MembershipConfig, 'id' | 'roster'>

const POSITIVE_INTEGERS = [
  'probeIntervalTicks', 'probeTimeoutTicks', 'suspicionMult', 'suspicionMaxTimeoutMult', 'retransmitMult',
  'deadRetentionTicks', 'joinTimeoutTicks', 'joinAttemptsMax', 'joinRepliesPerPeriodMax', 'seedsMax', 'joinPageBytesMax', 'membersMax',
  'broadcastQueueMax', 'pendingProbesMax', 'outboxMessagesMax', 'eventsMax', 'publishUpdatesMax', 'messageBytesMax', 'piggybackBytesMax', 'metaBytesMax'
] as const

/** The limits validate.ts checks a message against (a subset of the config). */
export interface MessageLimits {
  messageBytesMax: number
  metaBytesMax: number
}

export function isValidMemberId (value: unknown): value is MemberId {
  return typeof value === 'string' && value.length > 0 && value.length <= ID_LENGTH_MAX
}

/** Fills defaults and refuses a configuration that cannot work (a programming error: throws). */
export function resolveConfig (init: MembershipConfigInit): MembershipConfig {
  const config: MembershipConfig = { ...MEMBERSHIP_DEFAULTS, ...stripUndefined(init) }
  growByteLimits(init, config)
  checkNumbers(config)
  checkBytes(config)
  if (typeof config.notifySuspect !== 'boolean') { fail('notifySuspect must be a boolean') }
  if (config.roster !== undefined && config.roster.records.size > config.membersMax) { fail('the roster holds more than membersMax members') }
  return config
}

function fail (why: string): never {
  throw new RangeError(`membership config: ${why}`)
}

/**
 * Larger metadata than the default: the byte limits that must hold such an
 * update grow with it (room for two), unless they were set explicitly.
 */
function growByteLimits (init: MembershipConfigInit, config: MembershipConfig): void {
  if (!Number.isSafeInteger(config.metaBytesMax) || config.metaBytesMax <= META_BYTES_FLOOR) { return }
  const updateMax = aliveUpdateBytesMax(ID_LENGTH_MAX, config.metaBytesMax)
  if (init.piggybackBytesMax === undefined) { config.piggybackBytesMax = Math.max(config.piggybackBytesMax, 2 * updateMax) }
  if (init.joinPageBytesMax === undefined) { config.joinPageBytesMax = Math.max(config.joinPageBytesMax, 2 * updateMax) }
  if (init.messageBytesMax === undefined) {
    config.messageBytesMax = Math.max(config.messageBytesMax, headerBytesMax(ID_LENGTH_MAX) + config.piggybackBytesMax + config.joinPageBytesMax)
  }
}

function checkNumbers (config: MembershipConfig): void {
  if (!isValidMemberId(config.id)) { fail(`id must be a string of 1..${ID_LENGTH_MAX} characters`) }
  for (const key of POSITIVE_INTEGERS) {
    const value = config[key]
    if (!Number.isSafeInteger(value) || value < 1) { fail(`${key} must be a positive integer, got ${String(value)}`) }
  }
  for (const key of ['indirectChecks', 'awarenessMax'] as const) {
    const value = config[key]
    if (!Number.isSafeInteger(value) || value < 0 || value > 64) { fail(`${key} must be an integer in 0..64, got ${String(value)}`) }
  }
  if (!Number.isSafeInteger(config.incarnation) || config.incarnation < 0 || config.incarnation >= INCARNATION_MAX) {
    fail('incarnation must be an integer in 0..2^52-1')
  }
  if (config.probeTimeoutTicks >= config.probeIntervalTicks) { fail('probeTimeoutTicks must be smaller than probeIntervalTicks') }
  if (!Number.isSafeInteger(config.syncIntervalTicks) || config.syncIntervalTicks < 0) { fail('syncIntervalTicks must be a non-negative integer') }
}

/** Every byte limit holds what it must: one largest update, a header, a piggyback and a page. */
function checkBytes (config: MembershipConfig): void {
  if (config.metaBytesMax < META_BYTES_FLOOR) { fail(`metaBytesMax must allow at least ${META_BYTES_FLOOR} bytes`) }
  if (!(config.meta instanceof Uint8Array)) { fail('meta must be a Uint8Array') }
  if (config.meta.byteLength > config.metaBytesMax) { fail(`meta is longer than metaBytesMax (${config.metaBytesMax})`) }
  const updateMax = aliveUpdateBytesMax(ID_LENGTH_MAX, config.metaBytesMax)
  if (config.piggybackBytesMax < updateMax) {
    fail(`piggybackBytesMax must hold the largest alive update (${updateMax} bytes with metaBytesMax ${config.metaBytesMax})`)
  }
  if (config.joinPageBytesMax < updateMax) { fail(`joinPageBytesMax must hold the largest alive update (${updateMax} bytes)`) }
  const needed = headerBytesMax(ID_LENGTH_MAX) + config.piggybackBytesMax + config.joinPageBytesMax
  if (config.messageBytesMax < needed) {
    fail(`messageBytesMax must be at least ${needed} (a header, a full piggyback and a join page)`)
  }
}

function stripUndefined<T extends object> (value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T
}
