/**
 * Plain-data types of the PBFT core (Castro and Liskov, OSDI '99 and TOCS
 * 2002, with signatures). Replicas order client requests in batches; a batch
 * is identified by its sequence number and the digest of its requests.
 *
 * Everything that may have to be shown to a third party is signed with the
 * sender's key (pre-prepares, prepares, commits, checkpoints, view changes,
 * new views, client requests). Replies travel only from a replica to the
 * client over an authenticated link (libp2p's Noise channel), so they are
 * not signed.
 *
 * Digests are lowercase hex SHA-256 strings: easy to compare and to key
 * maps by; the binary encoding (encoding.ts) carries them as 32 bytes.
 */
import type { ConfigurationState, PbftConfiguration } from './reconfiguration.ts'
import type { PeerScore } from './suspicion.ts'

/** A libp2p PeerId string in production, any non-empty string in tests. */
export type NodeId = string

/** A hex SHA-256 digest (64 characters). */
export type Digest = string

/** What the core needs of cryptography; synchronous and deterministic. */
export interface PbftCrypto {
  /** Signs `payload` with this replica's (or client's) own key. */
  sign(payload: Uint8Array): Uint8Array
  /** Whether `signature` over `payload` was made with `signer`'s key. */
  verify(signer: NodeId, payload: Uint8Array, signature: Uint8Array): boolean
  /** SHA-256 of `data`, as hex. */
  digest(data: Uint8Array): Digest
}

/**
 * A client's request, signed by the client. `timestamp` is the client's own
 * counter, strictly increasing per client: requests execute at most once
 * per (client, timestamp), which is the KV session (clientId, sequence).
 */
export interface ClientRequest {
  type: 'request'
  client: NodeId
  timestamp: number
  /** For the KV state machine: an encoded KV command (protocols/kv). */
  operation: Uint8Array
  /** Read-only optimisation: replicas answer at once from their state, unordered. */
  readOnly: boolean
  /**
   * Absent: `signature` covers this request alone (signingPayload). Present:
   * the SHA-256 digests (32 bytes each, 2 to REQUEST_BUNDLE_MAX of them) of
   * the requests the client signed together, this one's among them, and
   * `signature` covers the bundle (bundleSigningPayload): one signature,
   * and one verification per replica, for a burst of requests.
   */
  bundle?: Uint8Array
  signature: Uint8Array
}

interface SignedByReplica {
  replica: NodeId
  signature: Uint8Array
}

/**
 * The primary's proposal: `batch` at `seq` in `view`. The signature covers
 * type, view, seq and digest; the digest covers the batch (batchDigest), so
 * a receiver checks the batch against it. An empty batch is the null
 * request a new primary uses to fill a gap (see NewView).
 */
export interface PrePrepare extends SignedByReplica {
  type: 'pre-prepare'
  view: number
  seq: number
  digest: Digest
  batch: ClientRequest[]
}

export interface Prepare extends SignedByReplica {
  type: 'prepare'
  view: number
  seq: number
  digest: Digest
}

export interface Commit extends SignedByReplica {
  type: 'commit'
  view: number
  seq: number
  digest: Digest
}

/** The state after executing every batch through `seq` has digest `stateDigest`. */
export interface Checkpoint extends SignedByReplica {
  type: 'checkpoint'
  seq: number
  stateDigest: Digest
  /**
   * This replica's partial threshold signature (96 bytes, BLS G2) of
   * checkpointGroupPayload(seq, stateDigest) under the DKG group's key, when
   * it holds a share of a group that applies (group.ts). The replica's own
   * signature covers it.
   */
  partial?: Uint8Array
  /**
   * The id (PbftThresholdGroup.id) of the group `partial` was made under,
   * covered by the signature too: a partial that fails under that group's
   * share is then proof of a lie (BadCheckpointPartialEvidence), and one
   * made under another group (before a reshare or a new DKG) is told apart
   * from a lie. Only with a partial; absent in what older nodes signed
   * (encoding version 2), whose bad partials are only suspected.
   */
  groupId?: Digest
}

/**
 * A checkpoint proven by a quorum of matching signed CHECKPOINT messages,
 * or (compact) by one threshold signature of the replica group.
 */
export interface StableCheckpoint {
  seq: number
  stateDigest: Digest
  /**
   * A quorum of Checkpoint messages for (seq, stateDigest) from distinct
   * replicas; empty for the genesis (seq 0) and for a compact certificate.
   */
  proof: Checkpoint[]
  /**
   * Compact: the group's threshold signature (96 bytes) of
   * checkpointGroupPayload(seq, stateDigest), combined from the partials of
   * at least a quorum of the provers (group.ts says when a group may prove
   * a checkpoint). Present only with an empty proof.
   */
  groupSignature?: Uint8Array
}

/**
 * The DKG group's threshold key as the core uses it for compact
 * checkpoint certificates. The functions are injected (BLS in the node, a
 * digest in the simulator), so the core stays I/O-free and deterministic.
 */
export interface PbftThresholdGroup {
  /**
   * Names the group's whole public side: the key, every member's public
   * share, the members in share order. A reshare or a new DKG changes it
   * (a reshare keeps the key but not the shares). Checkpoints name it
   * beside their partial (Checkpoint.groupId).
   */
  id: Digest
  /** The group key (48 bytes in production): what status shows. */
  groupKey: Uint8Array
  /** The group's members (node ids); distinct. */
  members: readonly NodeId[]
  /** Partials needed for a group signature. */
  threshold: number
  /** This replica's partial over `payload`, or null when it holds no share. */
  signPartial(payload: Uint8Array): Uint8Array | null
  /** Whether `signature` is the group's signature of `payload`. */
  verifyGroup(payload: Uint8Array, signature: Uint8Array): boolean
  /** Whether `partial` is `member`'s partial of `payload` under its public share (false for a non-member and for malformed bytes). */
  verifyPartial(member: NodeId, payload: Uint8Array, partial: Uint8Array): boolean
  /**
   * The group signature from members' partials over `payload`: every
   * partial is checked, the members whose partials fail are named in `bad`;
   * fails when fewer than `threshold` are valid.
   */
  combine(partials: ReadonlyMap<NodeId, Uint8Array>, payload: Uint8Array): { ok: true, signature: Uint8Array, bad: NodeId[] } | { ok: false, bad: NodeId[] }
}

/** A pre-prepare and 2f matching prepares from distinct backups: the batch was prepared in that view. */
export interface PreparedCertificate {
  prePrepare: PrePrepare
  prepares: Prepare[]
}

/** A pre-prepare and a quorum of matching commits: the batch is committed, and anyone can check it. */
export interface CommittedCertificate {
  prePrepare: PrePrepare
  commits: Commit[]
}

/**
 * A replica's vote to move to `view`: its last stable checkpoint and every
 * batch it prepared above it (the highest view's certificate per seq).
 */
export interface ViewChange extends SignedByReplica {
  type: 'view-change'
  view: number
  stable: StableCheckpoint
  prepared: PreparedCertificate[]
}

/**
 * The new primary's proof that `view` starts: a quorum of view changes for
 * it, and the pre-prepares (re-signed in the new view) that every receiver
 * recomputes from them and must find identical: for each seq between the
 * highest stable checkpoint among them and the highest prepared seq, the
 * batch prepared in the highest view, or the null request (empty batch).
 */
export interface NewView extends SignedByReplica {
  type: 'new-view'
  view: number
  viewChanges: ViewChange[]
  prePrepares: PrePrepare[]
}

/** Asks a replica for the committed certificates of seq fromSeq.. (catch-up from the log). */
export interface FetchCommitted {
  type: 'fetch-committed'
  replica: NodeId
  fromSeq: number
  /** The asker's latest known configuration epoch: an answerer that knows a later one sends its Configuration too. */
  epoch: number
}

/**
 * A replica's configuration state, sent to a replica that fetches from an
 * earlier epoch or from behind the sender's stable checkpoint (what it
 * will be shown next may be signed by a set it does not know). Only
 * link-authenticated: the receiver believes f+1 matching ones from
 * replicas of the set it knows, up to the least knownThrough among them.
 */
export interface Configuration {
  type: 'configuration'
  replica: NodeId
  state: ConfigurationState
  /** The sender knows which set orders every seq up to this one (and `state` is the latest through it). */
  knownThrough: number
}

/** Committed certificates, answering FetchCommitted; each is checked on its own signatures. */
export interface CommittedBatches {
  type: 'committed-batches'
  replica: NodeId
  certificates: CommittedCertificate[]
}

/** A replica's answer to a client. Link-authenticated, not signed. */
export interface Reply {
  type: 'reply'
  view: number
  replica: NodeId
  client: NodeId
  timestamp: number
  /** Whether it answers a read-only request (tentative, from unordered state). */
  readOnly: boolean
  result: Uint8Array
}

/** Messages between replicas. */
export type ReplicaMessage =
  | PrePrepare
  | Prepare
  | Commit
  | Checkpoint
  | ViewChange
  | NewView
  | FetchCommitted
  | CommittedBatches
  | Configuration

export type PbftMessage = ReplicaMessage | ClientRequest | Reply

/** The messages a replica signs, and that evidence is made of. */
export type SignedMessage = PrePrepare | Prepare | Commit | Checkpoint | ViewChange | NewView

/**
 * Provable misbehaviour: messages signed by `offender` that an honest
 * replica never signs. Anyone holding the replicas' keys (and, for a bad
 * partial, the same threshold group) can check it (checkEvidence), so it
 * can be published and acted on by all.
 */
export type Evidence = EquivocationEvidence | BadCheckpointPartialEvidence

/**
 * Two messages an honest replica never signs both of: two pre-prepares,
 * prepares or commits for the same view and seq with different digests, or
 * two checkpoints for the same seq with different state digests.
 */
export interface EquivocationEvidence {
  kind: 'equivocation'
  offender: NodeId
  first: SignedMessage
  second: SignedMessage
}

/**
 * A checkpoint the offender signed whose partial does not verify under the
 * offender's public share in the group the checkpoint names (groupId).
 * Only a holder of that group can judge it; anyone else refuses it as
 * unjudgeable, and convicts no one.
 */
export interface BadCheckpointPartialEvidence {
  kind: 'bad-checkpoint-partial'
  offender: NodeId
  checkpoint: Checkpoint
}

/**
 * Why a peer was isolated. 'equivocation' and 'bad-checkpoint-partial'
 * come with evidence others can check (the Evidence kinds); the others are
 * what this replica saw on an authenticated link (nobody else can verify
 * them, so they are acted on locally only).
 */
export type IsolationReason = 'equivocation' | 'bad-checkpoint-partial' | 'invalid-signature' | 'watermark-flood' | 'operator'

export interface Isolation {
  peer: NodeId
  reason: IsolationReason
}

/**
 * What must be durable before any message of the same Ready is sent: what
 * this replica signed (so that, restarted, it never signs a conflicting
 * message for the same view and seq), the batches it accepted, and the
 * certificates it holds. Records at or below a stable checkpoint may be
 * dropped once that checkpoint is durable.
 */
export type PersistRecord =
  /** The view this replica is in, and whether it is changing views toward it (sent VIEW-CHANGE, no NEW-VIEW yet). */
  | { kind: 'view', view: number, changing: boolean }
  /** A message this replica signed. */
  | { kind: 'signed', message: SignedMessage }
  /** A pre-prepare (with its batch) this replica accepted. */
  | { kind: 'accepted', prePrepare: PrePrepare }
  | { kind: 'prepared', certificate: PreparedCertificate }
  | { kind: 'committed', certificate: CommittedCertificate }
  /** A new stable checkpoint: the driver keeps the state snapshot at its seq. */
  | { kind: 'stable', checkpoint: StableCheckpoint }

/** What a replica restarts from: its records in the order they were made durable. */
export interface PbftRestored {
  records: PersistRecord[]
}

export interface Outbound {
  to: NodeId
  message: PbftMessage
}

/** A committed batch to execute, in seq order, exactly once. */
export interface ExecutableBatch {
  seq: number
  view: number
  requests: ClientRequest[]
  /**
   * The core's verdict on each reconfiguration request of the batch (by its
   * index in requests). An accepted one: the state machine keeps `state`
   * (under a reserved key, so that snapshots and state transfer carry it).
   */
  reconfigurations?: ReconfigurationOutcome[]
}

export type ReconfigurationOutcome =
  | { index: number, ok: true, state: ConfigurationState }
  | { index: number, ok: false, error: string }

/** A proven checkpoint this replica is behind: fetch its state, check it against stateDigest, install it, then call stateInstalled. */
export interface StateWanted {
  checkpoint: StableCheckpoint
  /** Replicas that signed it (one of them at least is honest and has it). */
  holders: NodeId[]
}

/**
 * The work the core hands its driver, in the Raft Ready style: persist
 * (fsync), then send, then execute; then advance(). Executing a batch may
 * produce replies (the driver sends them to the clients), and executing
 * through a seq listed in checkpointsDue means reporting the state digest
 * there (checkpointTaken).
 */
export interface PbftReady {
  persist: PersistRecord[]
  messages: Outbound[]
  execute: ExecutableBatch[]
  /** Seqs at which the driver reports its state digest once executed through them. */
  checkpointsDue: number[]
  /** Newly stable: the driver may drop snapshots and records below it. */
  stable: StableCheckpoint | null
  stateWanted: StateWanted | null
  /** Produced here, to publish (evidence topic). */
  evidence: Evidence[]
  /** Newly isolated peers (the driver denies their connections and persists the blocklist). */
  isolated: Isolation[]
  /** A new set is in force from here on (the driver talks to its replicas; this node may have become, or ceased to be, one). */
  configuration: PbftConfiguration | null
}

export type StepRejectReason =
  | 'malformed'
  | 'bad-signature'
  | 'not-a-replica'
  | 'isolated'
  | 'wrong-sender'
  | 'stale'
  | 'outside-watermarks'
  | 'buffer-full'
  | 'not-primary'
  | 'conflict'
  | 'client-limit'
  | 'duplicate'
  /** Signed by a replica set this replica does not know yet (it missed a reconfiguration: it catches up), proven by a threshold group it does not know, or evidence only a threshold group it does not hold can judge. */
  | 'unknown-set'

export type StepResult = { ok: true } | { ok: false, reason: StepRejectReason, detail?: string }

export interface PbftStatus {
  id: NodeId
  view: number
  primary: NodeId
  n: number
  f: number
  /** Changing views (VIEW-CHANGE sent, NEW-VIEW awaited). */
  viewChanging: boolean
  stableCheckpoint: number
  lowWatermark: number
  highWatermark: number
  /** Highest seq executed here. */
  executed: number
  isolated: Isolation[]
  /** Suspicion without proof, per other replica: SCORE_MAX (100) trusted, down to 0 (suspicion.ts). */
  scores: PeerScore[]
  /** The epoch of the set in force (0: the genesis set) and its replicas, in primary order. */
  epoch: number
  replicas: NodeId[]
  /** In the set in force (false: a learner, or retired). */
  member: boolean
  /** Decided, in force once its afterSeq is a stable checkpoint. */
  pending: PbftConfiguration | null
  /** A threshold group that applies to the set in force is known: checkpoints carry partials and stable ones are proven compactly. */
  compactCheckpoints: boolean
}
