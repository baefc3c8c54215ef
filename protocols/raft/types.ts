/**
 * Plain-data types of the Raft core. Everything here is JSON-friendly except
 * Uint8Array payloads, so a wire codec (JSON, CBOR, protobuf) can map it 1:1.
 */

/** A libp2p PeerId string in production, any non-empty string in tests. */
export type NodeId = string

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader'

/** What must be durable before any message of the same Ready is sent. */
export interface HardState {
  term: number
  vote: NodeId | null
  commit: number
}

/**
 * Cluster membership. `votersOutgoing` is non-empty only in a joint
 * configuration (C_old,new): then decisions need a majority of `voters` AND a
 * majority of `votersOutgoing`. `learnersNext` holds voters being demoted to
 * learners, which become learners when the joint configuration is left.
 */
export interface ConfState {
  voters: NodeId[]
  votersOutgoing: NodeId[]
  learners: NodeId[]
  learnersNext: NodeId[]
  autoLeave: boolean
}

export type EntryType = 'normal' | 'conf-change'

export interface Entry {
  term: number
  index: number
  type: EntryType
  data: Uint8Array
}

export interface SnapshotMeta {
  index: number
  term: number
  conf: ConfState
}

export interface Snapshot {
  meta: SnapshotMeta
  data: Uint8Array
}

/**
 * One membership step. `promote` is `add-voter` restricted to a current
 * learner (it fails otherwise); `add-learner` on a voter demotes it.
 */
export interface ConfChangeSingle {
  type: 'add-voter' | 'add-learner' | 'promote' | 'remove'
  node: NodeId
}

/**
 * A membership change proposal. A change that alters the voter set by at
 * most one node is applied directly ("one at a time"); a change that alters
 * it by more, or that sets `joint: true`, enters joint consensus and the
 * leader leaves it automatically once the joint configuration is applied.
 * `changes: []` (without `joint`) is the explicit "leave joint" change.
 */
export interface ConfChange {
  changes: ConfChangeSingle[]
  joint?: boolean
}

interface MessageBase {
  from: NodeId
  to: NodeId
  term: number
}

/** MsgApp: entries following (prevIndex, prevTerm), plus the leader's commit. */
export interface AppendMessage extends MessageBase {
  type: 'append'
  prevIndex: number
  prevTerm: number
  entries: Entry[]
  commit: number
}

/**
 * MsgAppResp. Accepted: `index` is the follower's last index known to match
 * the leader. Rejected: `index` is the rejected prevIndex and
 * (`rejectHint`, `hintTerm`) is the follower's last entry that may match,
 * found as etcd's findConflictByTerm does, so the leader skips whole terms.
 */
export interface AppendResponseMessage extends MessageBase {
  type: 'append-response'
  index: number
  reject: boolean
  rejectHint: number
  hintTerm: number
}

/**
 * MsgVote / MsgPreVote. A pre-vote carries term + 1 without the sender having
 * moved to it. `transfer` marks a campaign started by leadership transfer,
 * which voters grant even while they still hear from a leader.
 */
export interface VoteMessage extends MessageBase {
  type: 'vote' | 'pre-vote'
  lastIndex: number
  lastTerm: number
  transfer: boolean
}

export interface VoteResponseMessage extends MessageBase {
  type: 'vote-response' | 'pre-vote-response'
  reject: boolean
}

/**
 * Heartbeats carry the commit index (capped at what the follower matched)
 * and the leader's latest ReadIndex round; the response echoes the round.
 */
export interface HeartbeatMessage extends MessageBase {
  type: 'heartbeat'
  commit: number
  readRound: number
}

export interface HeartbeatResponseMessage extends MessageBase {
  type: 'heartbeat-response'
  readRound: number
}

/**
 * MsgSnap. The core always sends the whole Snapshot object; the service
 * layer chunks it on the wire and reassembles it before calling step().
 */
export interface SnapshotMessage extends MessageBase {
  type: 'snapshot'
  snapshot: Snapshot
}

/** Sent by a leader to the transfer target: campaign now. */
export interface TimeoutNowMessage extends MessageBase {
  type: 'timeout-now'
}

/** A follower forwards a linearizable read to its leader. */
export interface ReadIndexMessage extends MessageBase {
  type: 'read-index'
  context: Uint8Array
}

export interface ReadIndexResponseMessage extends MessageBase {
  type: 'read-index-response'
  index: number
  context: Uint8Array
}

export type Message =
  | AppendMessage
  | AppendResponseMessage
  | VoteMessage
  | VoteResponseMessage
  | HeartbeatMessage
  | HeartbeatResponseMessage
  | SnapshotMessage
  | TimeoutNowMessage
  | ReadIndexMessage
  | ReadIndexResponseMessage

export type MessageType = Message['type']

export const MESSAGE_TYPES: readonly MessageType[] = [
  'append', 'append-response', 'vote', 'pre-vote', 'vote-response', 'pre-vote-response',
  'heartbeat', 'heartbeat-response', 'snapshot', 'timeout-now', 'read-index', 'read-index-response'
]

/**
 * A linearizable read is safe to serve once the local state machine has
 * applied at least `index`.
 */
export interface ReadState {
  index: number
  requestCtx: Uint8Array
}

export interface SoftState {
  leader: NodeId | null
  role: Role
}

/**
 * One batch of work for the caller. Order of processing:
 * 1. persist `snapshot` (if any: it replaces the whole log, so discard every
 * persisted entry), then `entries` (discarding any persisted entries with
 * index >= entries[0].index first), then `hardState`; fsync if `mustSync`;
 * 2. send `messages` (only now: they promise what step 1 made durable);
 * 3. apply `snapshot` then `committedEntries` to the state machine, in order;
 * serve `readStates` once applied >= their index;
 * 4. call advance().
 */
export interface Ready {
  softState?: SoftState
  hardState?: HardState
  entries: Entry[]
  snapshot?: Snapshot
  committedEntries: Entry[]
  messages: Message[]
  readStates: ReadState[]
  mustSync: boolean
}

/**
 * What a node restarts from: its persisted hard state, latest snapshot and
 * the entries that follow the snapshot. `applied` (optional) is the index the
 * caller's durable state machine already reflects; committed entries after
 * max(snapshot index, applied) are delivered again in committedEntries.
 */
export interface RestoredState {
  hardState: HardState
  snapshot?: Snapshot
  entries: Entry[]
  applied?: number
}

export type ProgressStateName = 'probe' | 'replicate' | 'snapshot'

export interface PeerStatus {
  match: number
  next: number
  state: ProgressStateName
  recentActive: boolean
  isLearner: boolean
  inflight: number
  pendingSnapshot: number
}

export interface RaftCounters {
  /** step() calls rejected because the message was malformed. */
  invalidMessages: number
  /** step() calls ignored for a protocol reason (stale term, non-member, ...). */
  ignoredMessages: number
  /** Outbound messages dropped because the outbox was full. */
  outboxDropped: number
  /** Read requests dropped (queue full, leadership lost, ...). */
  readsDropped: number
  /** Committed conf-change entries that could not be applied and were skipped. */
  confChangesSkipped: number
  /** Snapshot messages dropped because RaftConfig.checkSnapshot refused their data. */
  snapshotsRejected: number
}

export interface RaftStatus {
  id: NodeId
  role: Role
  term: number
  vote: NodeId | null
  leader: NodeId | null
  commit: number
  applied: number
  firstIndex: number
  lastIndex: number
  conf: ConfState
  leadTransferee: NodeId | null
  pendingReads: number
  /** Only on the leader: replication progress per peer (self included). */
  progress?: Record<NodeId, PeerStatus>
  counters: RaftCounters
}

export type StepRejectReason =
  | 'invalid-message'
  | 'wrong-recipient'
  | 'stale-term'
  | 'in-lease'
  | 'not-a-member'
  | 'not-from-leader'
  | 'unexpected'
  | 'read-queue-full'
  /** RaftConfig.checkSnapshot refused the snapshot's data: the message changed nothing. */
  | 'invalid-snapshot'

export type StepResult = { ok: true } | { ok: false, reason: StepRejectReason, detail?: string }

export type ProposeRejectReason =
  | 'not-leader'
  | 'transferring'
  | 'leaving'
  | 'too-large'
  | 'uncommitted-limit'
  | 'conf-change-pending'
  | 'invalid-conf-change'
  /** The configuration would hold more than CONF_MEMBERS_MAX members. */
  | 'too-many-members'

export type ProposeResult =
  | { ok: true, index: number, term: number }
  | { ok: false, reason: ProposeRejectReason, leader: NodeId | null, detail?: string }

export type ReadIndexResult =
  | { ok: true }
  | { ok: false, reason: 'no-leader' | 'busy', leader: NodeId | null }

export type TransferResult =
  | { ok: true }
  | { ok: false, reason: 'not-leader' | 'unknown-node' | 'learner' | 'self', leader: NodeId | null }
