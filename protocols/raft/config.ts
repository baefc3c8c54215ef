import { leaseDurationTicks } from './lease.ts'
import type { NodeId, Snapshot } from './types.ts'
import type { Rng } from '../common/rng.ts'

export interface RaftConfig {
  id: NodeId
  rng: Rng
  /** Followers campaign after a random timeout in [e, 2e) ticks (times 1 + the local health score, see RaftNode.setLocalHealth). */
  electionTimeoutTicks: number
  heartbeatIntervalTicks: number
  /** Pre-vote (thesis §9.6): a rejoining partitioned node cannot raise the term. */
  preVote: boolean
  /** A leader steps down when it has not heard from a quorum for checkQuorumTicks. */
  checkQuorum: boolean
  /**
   * How long a leader waits without hearing from a quorum before it steps
   * down (check-quorum); at least electionTimeoutTicks (the default). Longer
   * keeps a leader whose followers were only briefly unscheduled (a busy
   * machine) from stepping down, at the cost of a cut-off leader holding on
   * that much longer. Lease reads do not rest on it (see lease.ts: the
   * followers' side keeps them safe).
   */
  checkQuorumTicks: number
  /**
   * 'safe': ReadIndex with a heartbeat round. 'lease': the leader answers
   * alone while a quorum acknowledged one of its heartbeats recently enough
   * that none of them can have voted for another leader yet (see lease.ts;
   * needs checkQuorum, and every node's clock ticking at about the same rate),
   * else like 'safe'.
   */
  readOnlyMode: 'safe' | 'lease'
  /**
   * Lease reads: the clock-drift allowance. The leader's lease ends this many
   * ticks before the earliest moment a follower that acknowledged it could
   * vote for someone else (electionTimeoutTicks - 1 ticks after the
   * heartbeat), covering followers whose clocks run up to about
   * leaseSafetyMarginTicks / (electionTimeoutTicks - 1) faster than the
   * leader's (20% with the defaults) and leader ticks that come late.
   */
  leaseSafetyMarginTicks: number
  /**
   * forgetLeader(): a follower that lost its leader campaigns within a
   * random 1..forgottenLeaderCampaignTicksMax ticks (randomized, so that two
   * followers told at the same moment rarely split the vote).
   */
  forgottenLeaderCampaignTicksMax: number
  /**
   * The largest local health score setLocalHealth() takes (Lifeguard's
   * local health multiplier, whose paper caps it at 8): a node with score s
   * waits (1 + s) times its randomized election timeout before it campaigns.
   */
  localHealthScoreMax: number
  /** Pipelined MsgApps per follower in replicate state. */
  inflightMessagesMax: number
  /** Bytes of entries in flight per follower. */
  inflightBytesMax: number
  /** Bytes of entry data per MsgApp (a single larger entry is never produced: see proposalBytesMax). */
  messageEntriesBytesMax: number
  /** Entries per MsgApp. */
  messageEntriesMax: number
  /** Largest entry payload propose() accepts. */
  proposalBytesMax: number
  /** The leader refuses proposals while this many bytes are appended but uncommitted. */
  uncommittedEntriesBytesMax: number
  /** Pending ReadIndex requests on a leader, and unconsumed read states on any node. */
  readIndexQueueMax: number
  /** Bytes of committed entries handed out per Ready (at least one entry is always handed out). */
  readyCommittedBytesMax: number
  /** Messages buffered between two ready() calls; more are dropped (Raft tolerates loss). */
  outboxMessagesMax: number
  /**
   * Checks the data of a snapshot from the leader before step() acts on the
   * message, whenever the node would install it: a string is the reason it
   * is refused, and the whole message is dropped, changing nothing, not even
   * the term (see RaftNode.step). Must be deterministic, and cheap: a caller
   * with large snapshots checks them beforehand, in slices, and lets the
   * hook look up the verdict (node/raft/driver.ts does). Default: none, every
   * well-formed snapshot is installed.
   */
  checkSnapshot?(snapshot: Snapshot): string | null
}

export type RaftConfigInit = Pick<RaftConfig, 'id' | 'rng'> & Partial<Omit<RaftConfig, 'id' | 'rng'>>

const MIB = 1024 * 1024

/** Defaults of everything but checkQuorumTicks, which defaults to electionTimeoutTicks. */
export const RAFT_DEFAULTS = {
  electionTimeoutTicks: 10,
  heartbeatIntervalTicks: 1,
  preVote: true,
  checkQuorum: true,
  readOnlyMode: 'safe',
  leaseSafetyMarginTicks: 2,
  forgottenLeaderCampaignTicksMax: 3,
  localHealthScoreMax: 8,
  inflightMessagesMax: 256,
  inflightBytesMax: 32 * MIB,
  messageEntriesBytesMax: MIB,
  messageEntriesMax: 1024,
  proposalBytesMax: MIB,
  uncommittedEntriesBytesMax: 64 * MIB,
  readIndexQueueMax: 4096,
  readyCommittedBytesMax: 16 * MIB,
  outboxMessagesMax: 16384
} as const satisfies Omit<RaftConfig, 'id' | 'rng' | 'checkQuorumTicks'>

/** Longest NodeId accepted anywhere (PeerId strings are ~52 characters). */
export const NODE_ID_LENGTH_MAX = 256

const POSITIVE_INTEGERS = [
  'electionTimeoutTicks', 'heartbeatIntervalTicks', 'forgottenLeaderCampaignTicksMax', 'localHealthScoreMax', 'inflightMessagesMax', 'inflightBytesMax',
  'messageEntriesBytesMax', 'messageEntriesMax', 'proposalBytesMax', 'uncommittedEntriesBytesMax',
  'readIndexQueueMax', 'readyCommittedBytesMax', 'outboxMessagesMax'
] as const

/** Fills defaults and rejects a configuration that cannot work (a programming error: throws). */
export function resolveConfig (init: RaftConfigInit): RaftConfig {
  const merged = { ...RAFT_DEFAULTS, ...stripUndefined(init) }
  const config: RaftConfig = { ...merged, checkQuorumTicks: merged.checkQuorumTicks ?? merged.electionTimeoutTicks }
  if (typeof config.id !== 'string' || config.id.length === 0 || config.id.length > NODE_ID_LENGTH_MAX) {
    throw new RangeError('raft config: id must be a non-empty string')
  }
  for (const key of POSITIVE_INTEGERS) {
    const value = config[key]
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`raft config: ${key} must be a positive integer, got ${String(value)}`)
    }
  }
  if (!Number.isSafeInteger(config.checkQuorumTicks) || config.checkQuorumTicks < config.electionTimeoutTicks) {
    throw new RangeError(`raft config: checkQuorumTicks must be an integer of at least electionTimeoutTicks (${config.electionTimeoutTicks}), got ${String(config.checkQuorumTicks)}`)
  }
  if (config.heartbeatIntervalTicks >= config.electionTimeoutTicks) {
    throw new RangeError('raft config: heartbeatIntervalTicks must be smaller than electionTimeoutTicks')
  }
  if (config.readOnlyMode !== 'safe' && config.readOnlyMode !== 'lease') {
    throw new RangeError('raft config: readOnlyMode must be "safe" or "lease"')
  }
  if (config.readOnlyMode === 'lease' && !config.checkQuorum) {
    throw new RangeError('raft config: readOnlyMode "lease" requires checkQuorum')
  }
  if (!Number.isSafeInteger(config.leaseSafetyMarginTicks) || config.leaseSafetyMarginTicks < 0) {
    throw new RangeError(`raft config: leaseSafetyMarginTicks must be a non-negative integer, got ${String(config.leaseSafetyMarginTicks)}`)
  }
  if (config.readOnlyMode === 'lease' && leaseDurationTicks(config.electionTimeoutTicks, config.leaseSafetyMarginTicks) < 1) {
    throw new RangeError('raft config: lease reads need electionTimeoutTicks > leaseSafetyMarginTicks + 1')
  }
  if (config.checkSnapshot !== undefined && typeof config.checkSnapshot !== 'function') {
    throw new RangeError('raft config: checkSnapshot must be a function')
  }
  if (config.proposalBytesMax > config.messageEntriesBytesMax) {
    throw new RangeError('raft config: proposalBytesMax must not exceed messageEntriesBytesMax')
  }
  return config
}

function stripUndefined<T extends object> (value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T
}
