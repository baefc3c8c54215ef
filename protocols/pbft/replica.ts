/**
 * A PBFT replica (Castro and Liskov, with signatures): the I/O-free core.
 * The driver feeds it messages (step), client requests (request), ticks,
 * and what it did with the state machine (checkpointTaken, stateInstalled);
 * the core hands back work in Readies: persist, then send, then execute.
 *
 * Durability before signing: a message is signed only through #sign, which
 * puts it in the same Ready's persist list as the send, and refuses (an
 * assertion) to sign a second, different message for a slot it signed
 * before, including before a restart (the signed records are restored).
 */
import { assert } from '../common/assert.ts'
import {
  GENESIS_CHECKPOINT, batchDigest, checkBatch, checkCommittedCertificate, checkStableCheckpoint, checkViewChange, primaryOf, verifyRequest, verifySigned
} from './certificates.ts'
import { CheckpointVotes } from './checkpoints.ts'
import { faultsTolerated, quorumSize, resolvePbftLimits } from './config.ts'
import { signingPayload } from './encoding.ts'
import { checkEvidence, conflicting, equivocation } from './evidence.ts'
import { FutureBuffer } from './future-buffer.ts'
import { checkpointGroupPayload, groupProblem } from './group.ts'
import { SlotLog, signedKey, signedSeq } from './log.ts'
import { checkReconfiguration, decodeReconfiguration, effectiveAfter, encodeConfiguration, genesisConfiguration, isReconfiguration } from './reconfiguration.ts'
import { RequestQueue, requestKey } from './requests.ts'
import { replayRecords } from './restore.ts'
import { Suspicion } from './suspicion.ts'
import { checkNewView, planNewView } from './view-change.ts'
import type { StableChecks } from './certificates.ts'
import type { PbftLimits } from './config.ts'
import type { Slot } from './log.ts'
import type { ConfigurationState, PbftConfiguration } from './reconfiguration.ts'
import type {
  Checkpoint, ClientRequest, Commit, CommittedBatches, Configuration, Digest, Evidence, ExecutableBatch, FetchCommitted, Isolation, IsolationReason,
  NewView, NodeId, PbftCrypto, PbftMessage, PbftThresholdGroup, PbftReady, PbftRestored, PbftStatus, PersistRecord, PrePrepare, Prepare,
  ReconfigurationOutcome, ReplicaMessage, SignedMessage, StableCheckpoint, StepRejectReason, StepResult, ViewChange
} from './types.ts'
import type { NewViewPlan } from './view-change.ts'

export interface PbftConfigInit {
  id: NodeId
  /** The genesis set, identical on every replica; primary(v) = replicas[v mod n]. */
  replicas: NodeId[]
  /**
   * The latest configuration decided and the one before it, as the state
   * machine holds them (the snapshot at the restored stable checkpoint);
   * absent: the genesis set. A node outside the set in force is a learner:
   * it follows by catch-up and votes once a configuration lists it.
   */
  configuration?: ConfigurationState
  crypto: PbftCrypto
  limits?: Partial<PbftLimits>
  /** The persisted blocklist. */
  isolated?: Isolation[]
  /**
   * BROKEN ON PURPOSE when set: replaces quorumSize(n) for this replica's
   * own decisions (prepared, committed, stable, view changes). Only for the
   * simulator's sabotage runs, which must show that a wrong quorum is caught.
   */
  sabotageQuorum?: number
}

const OK: StepResult = { ok: true }
/** States asked for that a driver may still be fetching when a later one is asked. */
const STATES_ASKED_KEPT = 4
/**
 * Fetch rounds (every requestTimeoutTicks / 2) in which a restarted replica
 * asks the others where they are, whatever it sees: 30 s at the defaults,
 * since a restarted node may wait seconds to be admitted again (the answers
 * to it are refused until then).
 */
const RESTART_FETCH_ROUNDS = 60

function reject (reason: StepRejectReason, detail?: string): StepResult {
  return detail === undefined ? { ok: false, reason } : { ok: false, reason, detail }
}

function emptyReady (): PbftReady {
  return { persist: [], messages: [], execute: [], checkpointsDue: [], stable: null, stateWanted: null, evidence: [], isolated: [], configuration: null }
}

function readyIsEmpty (ready: PbftReady): boolean {
  return ready.persist.length === 0 && ready.messages.length === 0 && ready.execute.length === 0 &&
    ready.checkpointsDue.length === 0 && ready.stable === null && ready.stateWanted === null &&
    ready.evidence.length === 0 && ready.isolated.length === 0 && ready.configuration === null
}

type Vote = Prepare | Commit

function sameReplicas (a: readonly NodeId[], b: readonly NodeId[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i])
}

export class PbftReplica {
  readonly id: NodeId
  readonly #crypto: PbftCrypto
  readonly #limits: PbftLimits
  readonly #sabotageQuorum: number | undefined
  /** The configuration in force: its set orders the seqs above configuration.afterSeq. */
  #configuration: PbftConfiguration
  /** The one before it: its replicas proved the checkpoints up to the switch. */
  #previous: PbftConfiguration | null = null
  /** Decided, in force once its afterSeq is a stable checkpoint; nothing above that seq is voted on or executed until then. */
  #pending: PbftConfiguration | null = null
  /** The set in force (#configuration.replicas). */
  #replicas: NodeId[]
  #f: number
  #quorum: number
  /** In the set in force; a node that is not is a learner: it follows by catch-up and signs nothing. */
  #member: boolean
  /** Configuration states announced by replicas of the set in force (encoded), while this replica is behind. */
  readonly #announced = new Map<NodeId, { key: string, knownThrough: number }>()
  /** f+1 replicas of the set in force agree that the latest configuration holds through this seq. */
  #confirmedThrough = 0
  /** The last states asked for (Ready.stateWanted): the driver may still install one of them. */
  readonly #statesAsked: StableCheckpoint[] = []
  /** Learned a configuration more than one epoch ahead: nothing is handed out before a state at or past this seq is installed. */
  #stateNeededThrough = 0
  /**
   * The state digests the driver reported (checkpointTaken) in this
   * incarnation, from the low watermark up: a checkpoint this replica signed
   * before a restart says nothing of the state its driver holds now.
   */
  readonly #digestsTaken = new Map<number, Digest>()

  #view = 0
  /** VIEW-CHANGE sent for #view, NEW-VIEW not yet installed. */
  #changing = false
  /** The latest proven stable checkpoint: the low watermark. */
  #stable: StableCheckpoint = GENESIS_CHECKPOINT
  /** Seq of the latest stable checkpoint whose state this replica holds (persisted as 'stable'). */
  #durableStable = 0
  /** Highest seq handed out for execution. */
  #executed = 0
  /** A proven checkpoint whose state must be fetched (execution waits for it). */
  #stateWanted: StableCheckpoint | null = null
  /** Highest seq the primary has assigned in this view. */
  #nextSeq = 0
  readonly #log = new SlotLog()
  readonly #signed = new Map<string, SignedMessage>()
  readonly #requests: RequestQueue
  #future: FutureBuffer
  readonly #checkpoints: CheckpointVotes
  /** The highest-view valid VIEW-CHANGE from each replica. */
  readonly #viewChanges = new Map<NodeId, ViewChange>()
  readonly #isolated = new Map<NodeId, IsolationReason>()
  /** Messages outside the watermarks per peer since the low watermark last moved. */
  readonly #outside = new Map<NodeId, number>()

  #requestTimer: number | null = null
  #viewChangeTimer: number | null = null
  /** View changes started since a batch last executed: the view-change timeout doubles with each. */
  #viewChangeAttempts = 0
  #fetchTimer = 0
  #viewChangeResendTicks = 0
  /** A peer sent a message above the high watermark since the last fetch: it is ahead. */
  #peerAhead = false
  /**
   * Fetch rounds left in which this replica asks the others where they are
   * whatever it saw: a restarted replica cannot tell whether they moved on
   * while it was down, and an idle cluster sends it nothing that would show
   * it (their checkpoints and view changes went by meanwhile).
   */
  #restartFetches = 0
  /** Peers that sent messages of a later view than this replica's (it may have missed a NEW-VIEW). */
  readonly #peersInLaterViews = new Set<NodeId>()
  /** The NEW-VIEW of the current view (sent or installed): shown to replicas still asking for an earlier view. */
  #newView: NewView | null = null
  /** Ticks so far: the age of pending requests is counted in them. */
  #ticks = 0
  #suspicion: Suspicion

  #out: PbftReady = emptyReady()
  #readyOutstanding = false
  /** The DKG group whose threshold signature proves checkpoints compactly (group.ts), when the driver gave one. */
  #group: PbftThresholdGroup | null = null

  constructor (config: PbftConfigInit, restored?: PbftRestored) {
    const { id, replicas, crypto } = config
    if (typeof id !== 'string' || id.length === 0) { throw new RangeError('pbft: id must be a non-empty string') }
    if (!Array.isArray(replicas) || replicas.length === 0 || new Set(replicas).size !== replicas.length) {
      throw new RangeError('pbft: replicas must be a non-empty list of distinct ids')
    }
    this.id = id
    this.#crypto = crypto
    this.#limits = resolvePbftLimits(config.limits)
    this.#sabotageQuorum = config.sabotageQuorum
    const configurations = config.configuration ?? { latest: genesisConfiguration(replicas), previous: null }
    this.#configuration = configurations.latest
    this.#previous = configurations.previous
    this.#replicas = [...configurations.latest.replicas]
    this.#f = faultsTolerated(this.#replicas.length)
    this.#quorum = this.#quorumOf(this.#replicas)
    this.#member = this.#replicas.includes(id)
    this.#requests = new RequestQueue(this.#limits)
    this.#future = new FutureBuffer(this.#limits, this.#replicas.length)
    this.#checkpoints = new CheckpointVotes(this.#limits)
    this.#suspicion = new Suspicion(this.#replicas, id)
    for (const isolation of config.isolated ?? []) { this.#isolated.set(isolation.peer, isolation.reason) }
    if (restored !== undefined) {
      const state = replayRecords(restored.records, id, this.#log, this.#checkpoints)
      this.#view = state.view
      this.#changing = state.changing
      this.#stable = state.stable
      this.#durableStable = state.stable.seq
      for (const [key, message] of state.signed) { this.#signed.set(key, message) }
      if (state.viewChange !== null) { this.#viewChanges.set(id, state.viewChange) }
      this.#newView = state.newView
      this.#executed = this.#low
      this.#nextSeq = state.nextSeq
      // without records it starts with its cluster: nothing went by while it was down
      if (restored.records.length > 0) { this.#restartFetches = RESTART_FETCH_ROUNDS }
    }
    // the latest configuration is not in force yet where the state is older than its start
    if (configurations.previous !== null && this.#low < configurations.latest.afterSeq) {
      this.#pending = configurations.latest
      this.#applyConfiguration(configurations.previous, null)
    }
    this.#executeCommitted()
  }

  #quorumOf (replicas: readonly NodeId[]): number {
    const quorum = this.#sabotageQuorum ?? quorumSize(replicas.length)
    if (!Number.isSafeInteger(quorum) || quorum < 1 || quorum > replicas.length) { throw new RangeError('pbft: quorum out of range') }
    return quorum
  }

  // ------------------------------------------------------------- properties

  get #low (): number {
    return this.#stable.seq
  }

  get #high (): number {
    return this.#stable.seq + this.#limits.watermarkWindow
  }

  get #primary (): NodeId {
    return primaryOf(this.#view, this.#replicas)
  }

  get #isPrimary (): boolean {
    return this.#primary === this.id
  }

  status (): PbftStatus {
    return {
      id: this.id,
      view: this.#view,
      primary: this.#primary,
      n: this.#replicas.length,
      f: this.#f,
      viewChanging: this.#changing,
      stableCheckpoint: this.#low,
      lowWatermark: this.#low,
      highWatermark: this.#high,
      executed: this.#executed,
      isolated: [...this.#isolated].map(([peer, reason]) => ({ peer, reason })),
      scores: this.#suspicion.list(),
      epoch: this.#configuration.epoch,
      replicas: [...this.#replicas],
      member: this.#member,
      pending: this.#pending,
      compactCheckpoints: groupProblem(this.#group, this.#replicas) === null
    }
  }

  /**
   * The DKG group (this replica's share, the group key, its members and
   * threshold), or null to withdraw it. From here on, this replica's
   * checkpoints carry its partial when the group applies to the set that
   * orders them, stable checkpoints it proves are compact when a quorum's
   * partials combine, and compact ones from others are accepted when the
   * group applies (group.ts). Without it, compact ones are refused.
   */
  setThresholdGroup (group: PbftThresholdGroup | null): void {
    this.#group = group
  }

  /** What a stable checkpoint carried in a view change is checked with: the group, and the stable checkpoint held here as proven. */
  get #stableChecks (): StableChecks {
    return { group: this.#group, proven: this.#stable }
  }

  /** The set in force (primary order), whether this replica is in it, and a pending set: status() without building the rest. */
  replicaSets (): { replicas: readonly NodeId[], member: boolean, pending: PbftConfiguration | null } {
    return { replicas: this.#replicas, member: this.#member, pending: this.#pending }
  }

  // ------------------------------------------------------------- input

  step (message: ReplicaMessage, link: NodeId): StepResult {
    const member = this.#replicas.includes(link)
    if (!member && this.#pending?.replicas.includes(link) !== true) { return this.#fromNonMember(message, link) }
    if (this.#isolated.has(link)) { return reject('isolated') }
    if (link === this.id) { return reject('wrong-sender', 'a message from this replica itself') }
    if (typeof message !== 'object' || message === null || typeof (message as { replica?: unknown }).replica !== 'string') {
      return reject('malformed', 'not a replica message')
    }
    if (message.replica !== link) { return reject('wrong-sender', `claims ${message.replica}, came from ${link}`) }
    // a new set takes over at the next ready(): what comes meanwhile is checked by it
    if (this.#switchDue()) { return this.#buffer(message, link) }
    if (!member || !this.#member) { return this.#outsideTheSet(message, link, member) }
    const result = this.#dispatch(message, link)
    // from a replica's own authenticated link, and yet failing checks: proves nothing a third party could verify, but counts
    if (!result.ok && result.reason === 'malformed') { this.#suspicion.lower(link, 'invalid-message') }
    return result
  }

  #dispatch (message: ReplicaMessage, link: NodeId): StepResult {
    switch (message.type) {
      case 'pre-prepare': return this.#onPrePrepare(message, link)
      case 'prepare': case 'commit': return this.#onVote(message, link)
      case 'checkpoint': return this.#onCheckpoint(message, link)
      case 'view-change': return this.#onViewChange(message, link)
      case 'new-view': return this.#onNewView(message, link)
      case 'fetch-committed': return this.#onFetchCommitted(message, link)
      case 'committed-batches': return this.#onCommittedBatches(message, link)
      case 'configuration': return this.#onConfiguration(message, link)
      default: return reject('malformed', `unknown message type ${String((message as { type?: unknown }).type)}`)
    }
  }

  request (request: ClientRequest): StepResult {
    if (request?.type !== 'request' || !(request.operation instanceof Uint8Array)) { return reject('malformed', 'not a request') }
    if (!this.#member) { return reject('not-a-replica', 'this node is not a replica of the set in force') }
    if (request.readOnly) { return reject('malformed', 'read-only requests are answered by the driver, not ordered') }
    if (request.operation.length > this.#limits.operationBytesMax) { return reject('malformed', 'operation larger than operationBytesMax') }
    const held = this.#requests.has(requestKey(request))
    if (held === 'in-flight') { return reject('duplicate', 'already being ordered') }
    if (held === null) {
      if (!verifyRequest(request, this.#crypto)) { return reject('bad-signature', 'invalid client signature') }
      const added = this.#requests.add(request, this.#ticks)
      if (added !== 'added') { return reject(added) }
    }
    // a backup relays it, again on a retransmission: the primary may have missed it
    if (!this.#isPrimary && !this.#changing && !this.#isolated.has(this.#primary)) { this.#send(this.#primary, request) }
    this.#failoverIfPrimaryLinkDown() // link loss, see linkDown
    return OK
  }

  tick (): void {
    this.#ticks++
    if (!this.#member) {
      this.#tickAsLearner()
      return
    }
    if (this.#changing) {
      if (this.#viewChangeTimer !== null) {
        this.#viewChangeTimer--
        if (this.#viewChangeTimer <= 0) { this.#startViewChange(this.#view + 1) }
      }
      // view changes are not acknowledged: sent again while the view does not start, in case some were lost
      if (this.#changing && ++this.#viewChangeResendTicks >= this.#limits.viewChangeTimeoutTicks) {
        this.#viewChangeResendTicks = 0
        const mine = this.#signed.get(`view-change/${this.#view}`)
        if (mine !== undefined) { this.#broadcast(mine) }
      }
    } else if (this.#requests.waiting || this.#awaitingSwitch()) {
      this.#requestTimer = (this.#requestTimer ?? this.#limits.requestTimeoutTicks) - 1
      if (this.#requestTimer <= 0) {
        this.#suspicion.lower(this.#primary, 'request-timeout')
        this.#startViewChange(this.#view + 1)
      } else {
        this.#watchPrimary()
      }
    } else {
      this.#requestTimer = null
      // f+1 replicas already work in a later view: ask for the next one; a replica there answers with its NEW-VIEW
      if (this.#peersInLaterViews.size >= this.#f + 1) { this.#startViewChange(this.#view + 1) }
    }
    this.#fetchTimer++
    if (this.#fetchTimer >= Math.max(1, Math.floor(this.#limits.requestTimeoutTicks / 2))) {
      this.#fetchTimer = 0
      this.#resendSwitchCheckpoint()
      if (this.#behind()) { this.#broadcast({ type: 'fetch-committed', replica: this.id, fromSeq: this.#executed + 1, epoch: this.#latest.epoch }) }
      this.#peerAhead = false
      if (this.#restartFetches > 0) { this.#restartFetches-- }
    }
  }

  checkpointTaken (seq: number, stateDigest: Digest): void {
    assert(seq % this.#limits.checkpointInterval === 0, `checkpointTaken(${seq}) for a seq not listed in checkpointsDue`)
    // a report from before a state transfer took this replica back (or past it) is out of date
    if (seq <= this.#durableStable || seq > this.#executed || this.#stateWanted !== null) { return }
    this.#digestsTaken.set(seq, stateDigest)
    if (!this.#member) {
      // a learner signs no checkpoint: its digest waits for the checkpoint to be proven (or was)
      if (seq === this.#low) { if (stateDigest === this.#stable.stateDigest) { this.#persistStable(this.#stable) } else { this.#wantState(this.#stable) } }
      if (seq > this.#low) { this.#checkStable(seq) }
      return
    }
    const signed = this.#signed.get(`checkpoint/${seq}`) as Checkpoint | undefined
    if (signed !== undefined && signed.stateDigest !== stateDigest) {
      // executed again after a state transfer, to another state: it cannot sign a second checkpoint there
      return
    }
    const group = groupProblem(this.#group, this.#proversOf(seq)) === null ? this.#group : null
    const partial = group?.signPartial(checkpointGroupPayload(seq, stateDigest))
    // the group's id goes under this replica's signature with the partial: the partial is judged under that group only
    const checkpoint = this.#sign<Checkpoint>({ type: 'checkpoint', replica: this.id, seq, stateDigest, ...(group != null && partial != null ? { partial, groupId: group.id } : {}) })
    this.#broadcast(checkpoint)
    this.#checkpoints.add(checkpoint)
    if (seq === this.#low && this.#stateWanted === null) {
      // proven by others before this replica got there: it holds the state now, or holds a wrong one
      if (stateDigest === this.#stable.stateDigest) { this.#persistStable(this.#stable) } else { this.#wantState(this.#stable) }
    } else if (seq > this.#low) {
      this.#checkStable(seq)
    }
  }

  /**
   * The state at `checkpoint` (proven) is installed; `configuration` is the
   * one that state holds (absent: the genesis set), which may be ahead of
   * what this replica knew.
   */
  stateInstalled (checkpoint: StableCheckpoint, configuration?: ConfigurationState): void {
    if (checkpoint.seq <= this.#durableStable) { return }
    // asked for here (proven then: the sets this replica knows may have changed since), or proven now
    const wanted = this.#statesAsked.some(asked => asked.seq === checkpoint.seq && asked.stateDigest === checkpoint.stateDigest)
    assert(wanted || checkStableCheckpoint(checkpoint, this.#proversOf(checkpoint.seq), this.#crypto, this.#group) === null, 'stateInstalled: the checkpoint must be proven')
    if (configuration !== undefined) { this.#learnConfiguration(configuration) }
    if (checkpoint.seq >= this.#stateNeededThrough) { this.#stateNeededThrough = 0 }
    if (checkpoint.seq > this.#low) { this.#moveLowWatermark(checkpoint) }
    if (this.#stateWanted !== null && this.#stateWanted.seq <= checkpoint.seq) { this.#stateWanted = null }
    this.#executed = checkpoint.seq
    // the state may hold requests waiting here, which then never execute here: clients retransmit those it does not
    this.#requests.clear()
    this.#persistStable(checkpoint)
    // the replicas that held this state may have executed past it: the next fetch asks for what follows
    this.#peerAhead = true
    this.#executeCommitted()
    this.#replayFuture()
  }

  /** Evidence from others (the evidence topic): valid evidence isolates the offender; a bad partial this replica cannot judge (it holds no group, or another one) is refused as 'unknown-set'. */
  receiveEvidence (evidence: Evidence): StepResult {
    const checked = checkEvidence(evidence, this.#replicas, this.#crypto, this.#group)
    if (!checked.ok) { return reject(checked.unjudgeable === true ? 'unknown-set' : 'malformed', checked.error) }
    if (this.#isolated.has(evidence.offender)) { return reject('duplicate', 'offender already isolated') }
    // Twins: another process signing with this replica's key; this replica cannot isolate itself
    if (evidence.offender === this.id) { return reject('conflict', 'evidence against this replica') }
    this.isolate(evidence.offender, evidence.kind)
    return OK
  }

  isolate (peer: NodeId, reason: IsolationReason): void {
    if (this.#isolated.has(peer) || peer === this.id) { return }
    this.#isolated.set(peer, reason)
    this.#out.isolated.push({ peer, reason })
    this.#out.messages = this.#out.messages.filter(m => m.to !== peer)
    this.#future.forget(peer)
    this.#checkpoints.forget(peer)
    this.#viewChanges.delete(peer)
    if (peer === this.#primary && !this.#changing && this.#member) { this.#startViewChange(this.#view + 1) }
  }

  /**
   * An operator takes `peer` off the blocklist: its messages count again.
   * Nothing it sent while isolated was kept, so it catches up like any
   * lagging replica. Returns whether it was isolated.
   */
  readmit (peer: NodeId): boolean {
    if (!this.#isolated.delete(peer)) { return false }
    this.#outside.delete(peer)
    return true
  }

  // ------------------------------------------------------------- link loss (fast failover)
  // (one spot: this state and these methods; the only other line is the
  // #failoverIfPrimaryLinkDown() call at the end of request())

  /** Replicas of the set whose link the driver reports down (connection closed): at most n − 1. */
  readonly #linksDown = new Set<NodeId>()

  /**
   * The driver's word that the link to `peer` is down (its connection
   * closed: a crashed process, a closed socket). When `peer` is the primary
   * and this replica holds requests waiting to execute (now, or when one
   * arrives while the link stays down), the view change starts at once, as
   * if the request timer had expired (and the primary loses the
   * 'request-timeout' points), instead of after requestTimeoutTicks. A link
   * down with nothing waiting starts nothing: a flapping link alone never
   * pushes a replica out of its view. Ids outside the replica set (and this
   * replica's own) are ignored; returns whether the link counts.
   */
  linkDown (peer: NodeId): boolean {
    if (peer === this.id || !this.#replicas.includes(peer)) { return false }
    this.#linksDown.add(peer)
    this.#failoverIfPrimaryLinkDown()
    return true
  }

  /** The link to `peer` is up again (a connection opened). */
  linkUp (peer: NodeId): void {
    this.#linksDown.delete(peer)
  }

  /** Replicas whose link is down, in replica order (tests and status). */
  get linksDown (): NodeId[] {
    return this.#replicas.filter(replica => this.#linksDown.has(replica))
  }

  #failoverIfPrimaryLinkDown (): void {
    if (this.#changing || this.#isPrimary || !this.#linksDown.has(this.#primary) || this.#isolated.has(this.#primary)) { return }
    if (!this.#requests.waiting) { return }
    this.#suspicion.lower(this.#primary, 'request-timeout')
    this.#startViewChange(this.#view + 1)
  }

  // ------------------------------------------------------------- end of link loss

  // ------------------------------------------------------------- output

  hasReady (): boolean {
    if (this.#readyOutstanding) { return false }
    return !readyIsEmpty(this.#out) || this.#canPropose() || this.#switchDue()
  }

  /** The work to do: persist, then send, then execute. At most one is outstanding: advance() before the next ready(). */
  ready (): PbftReady {
    assert(!this.#readyOutstanding, 'ready() called again before advance()')
    if (this.#switchDue()) { this.#switchConfiguration() }
    this.#propose()
    const ready = this.#out
    this.#out = emptyReady()
    this.#readyOutstanding = true
    return ready
  }

  advance (): void {
    assert(this.#readyOutstanding, 'advance() without an outstanding ready()')
    this.#readyOutstanding = false
  }

  // ------------------------------------------------------------- normal case

  #canPropose (): boolean {
    // the set in force proposes nothing past the start of a pending one, and null batches up to it when idle
    const ceiling = Math.min(this.#high, this.#pending?.afterSeq ?? Infinity)
    return this.#member && this.#isPrimary && !this.#changing && (this.#requests.pendingCount > 0 || this.#pending !== null) &&
      this.#nextSeq < ceiling && this.#nextSeq - Math.max(this.#executed, this.#low) < this.#limits.pipelineMax
  }

  /** The primary cuts the pending requests into batches, as far as the pipeline and the watermarks allow. */
  #propose (): void {
    while (this.#canPropose()) {
      const batch: ClientRequest[] = []
      let bytes = 0
      for (const request of this.#requests.pending()) {
        if (batch.length >= this.#limits.batchRequestsMax || bytes + request.operation.length > this.#limits.batchBytesMax) { break }
        batch.push(request)
        bytes += request.operation.length
      }
      assert(batch.length > 0 || this.#pending !== null, 'a pending request always fits a batch')
      const seq = ++this.#nextSeq
      const prePrepare = this.#sign<PrePrepare>({
        type: 'pre-prepare', replica: this.id, view: this.#view, seq, digest: batchDigest(batch, this.#crypto), batch
      })
      const slot = this.#log.at(seq, this.#view)
      assert(slot.prePrepare === null, 'the primary assigns each seq once per view')
      slot.prePrepare = prePrepare
      for (const request of batch) { this.#requests.markInFlight(request) }
      this.#broadcast(prePrepare)
    }
  }

  /**
   * Whether a message for (view, seq) is for now: stale views are refused;
   * later views (or this one while changing) and seqs above the high
   * watermark are buffered (a peer ahead of this replica sends those).
   * Seqs at or below the low watermark are counted against the peer, which
   * is isolated past outsideWatermarksMax: an honest peer sends at most a
   * few messages per slot of its own window, while this one's low watermark
   * stays put (the count restarts when it moves).
   */
  #admit (message: PrePrepare | Vote, link: NodeId): StepResult | 'now' {
    if (message.view < this.#view) {
      // replicas still in an earlier view are ordering past this one: their certificates can be fetched
      if (message.seq > this.#executed) { this.#peerAhead = true }
      return reject('stale', `view ${message.view} < ${this.#view}`)
    }
    if (message.seq <= this.#low) {
      const count = (this.#outside.get(link) ?? 0) + 1
      this.#outside.set(link, count)
      if (count > this.#limits.outsideWatermarksMax) {
        this.isolate(link, 'watermark-flood')
        return reject('outside-watermarks', `isolated: more than ${this.#limits.outsideWatermarksMax} messages below the watermarks`)
      }
      return reject('outside-watermarks', `seq ${message.seq} at or below the low watermark ${this.#low}`)
    }
    // waiting for the state at a checkpoint: what it covers is stale, and above it this replica cannot tell which set orders
    if (this.#stateWanted !== null) {
      if (message.seq <= this.#stateWanted.seq) { return reject('stale', `seq ${message.seq} is covered by the state being fetched`) }
      return this.#buffer(message, link)
    }
    // ordered by the pending set, once it is in force
    if (this.#pending !== null && message.seq > this.#pending.afterSeq) { return this.#buffer(message, link) }
    if (message.seq > this.#high) {
      this.#peerAhead = true
      return this.#buffer(message, link)
    }
    if (message.view > this.#view || this.#changing) { return this.#buffer(message, link) }
    return 'now'
  }

  #buffer (message: ReplicaMessage, link: NodeId): StepResult {
    if ('view' in message && message.view > this.#view) { this.#peersInLaterViews.add(link) }
    return this.#future.add(message, link) ? OK : reject('buffer-full', 'future messages buffer is full for this peer')
  }

  /** A bad signature on a message its sender signed itself: isolate. */
  #forged (link: NodeId, what: string): StepResult {
    this.isolate(link, 'invalid-signature')
    return reject('bad-signature', `invalid signature on ${what}`)
  }

  #onPrePrepare (prePrepare: PrePrepare, link: NodeId): StepResult {
    const admitted = this.#admit(prePrepare, link)
    if (admitted !== 'now') { return admitted }
    if (prePrepare.replica !== primaryOf(prePrepare.view, this.#replicas)) { return reject('not-primary', `not the primary of view ${prePrepare.view}`) }
    if (!verifySigned(prePrepare, this.#crypto)) { return this.#forged(link, 'pre-prepare') }
    const slot = this.#log.at(prePrepare.seq, this.#view)
    if (slot.prePrepare !== null) {
      if (slot.prePrepare.digest === prePrepare.digest) { return reject('duplicate') }
      return this.#equivocated(slot.prePrepare, prePrepare)
    }
    const mine = this.#signed.get(`prepare/${prePrepare.view}/${prePrepare.seq}`) as Prepare | undefined
    if (mine !== undefined && mine.digest !== prePrepare.digest) { return reject('conflict', 'this replica prepared another batch there') }
    const problem = checkBatch(prePrepare, this.#crypto, this.#limits, true)
    if (problem !== null) { return reject('malformed', problem) }
    this.#accept(slot, prePrepare)
    return OK
  }

  /** Takes a pre-prepare (normal case or NEW-VIEW): a backup persists it and prepares it. */
  #accept (slot: Slot, prePrepare: PrePrepare): void {
    assert(slot.view === prePrepare.view && (slot.prePrepare === null || slot.prePrepare.digest === prePrepare.digest),
      'never two different digests accepted for one (view, seq)')
    slot.prePrepare = prePrepare
    // a NEW-VIEW proposes executed seqs again: their requests will not execute here again, so nothing waits for them
    for (const request of prePrepare.batch) {
      if (prePrepare.seq > this.#executed) { this.#requests.markInFlight(request) } else { this.#requests.done(request) }
    }
    if (prePrepare.replica !== this.id) {
      this.#persist({ kind: 'accepted', prePrepare })
      const prepare = this.#sign<Prepare>({ type: 'prepare', replica: this.id, view: prePrepare.view, seq: prePrepare.seq, digest: prePrepare.digest })
      slot.prepares.set(this.id, prepare)
      this.#broadcast(prepare)
    }
    // prepares that arrived first (buffered during the view change) count now
    this.#checkPrepared(slot)
  }

  #onVote (vote: Vote, link: NodeId): StepResult {
    const admitted = this.#admit(vote, link)
    if (admitted !== 'now') { return admitted }
    if (vote.type === 'prepare' && vote.replica === primaryOf(vote.view, this.#replicas)) { return reject('malformed', 'the primary does not prepare') }
    if (!verifySigned(vote, this.#crypto)) { return this.#forged(link, vote.type) }
    const slot = this.#log.at(vote.seq, this.#view)
    const votes: Map<NodeId, Vote> = vote.type === 'prepare' ? slot.prepares : slot.commits
    const held = votes.get(vote.replica)
    if (held !== undefined) {
      if (held.digest === vote.digest) { return reject('duplicate') }
      return this.#equivocated(held, vote)
    }
    votes.set(vote.replica, vote)
    if (vote.type === 'prepare') { this.#checkPrepared(slot) } else { this.#checkCommitted(slot) }
    return OK
  }

  #matching (slot: Slot, votes: Map<NodeId, Vote>): Vote[] {
    const digest = slot.prePrepare?.digest
    return [...votes.values()].filter(vote => vote.digest === digest)
  }

  /** Prepared: the pre-prepare and quorum − 1 matching prepares from distinct backups. Then commit. */
  #checkPrepared (slot: Slot): void {
    if (slot.prePrepare === null || slot.sentCommit) { return }
    const prepares = this.#matching(slot, slot.prepares) as Prepare[]
    if (prepares.length < this.#quorum - 1) { return }
    const certificate = { prePrepare: slot.prePrepare, prepares: prepares.slice(0, this.#quorum - 1) }
    slot.prepared = certificate
    this.#persist({ kind: 'prepared', certificate })
    const commit = this.#sign<Commit>({ type: 'commit', replica: this.id, view: slot.view, seq: slot.seq, digest: slot.prePrepare.digest })
    slot.commits.set(this.id, commit)
    slot.sentCommit = true
    this.#broadcast(commit)
    this.#checkCommitted(slot)
  }

  /** Committed here: prepared, and a quorum of matching commits. Then execute what is contiguous. */
  #checkCommitted (slot: Slot): void {
    if (!slot.sentCommit || slot.committed !== null || slot.prePrepare === null) { return }
    const commits = this.#matching(slot, slot.commits) as Commit[]
    if (commits.length < this.#quorum) { return }
    slot.committed = { prePrepare: slot.prePrepare, commits: commits.slice(0, this.#quorum) }
    this.#persist({ kind: 'committed', certificate: slot.committed })
    this.#executeCommitted()
  }

  /** Hands out committed batches in seq order, never past a gap. */
  #executeCommitted (): void {
    if (this.#stateWanted !== null || this.#executed < this.#stateNeededThrough) { return }
    let progressed = false
    for (;;) {
      // past the start of a pending set, only once it is in force: a reconfiguration there is judged against it
      if (this.#pending !== null && this.#executed >= this.#pending.afterSeq) { break }
      const slot = this.#log.get(this.#executed + 1)
      if (slot?.committed == null) { break }
      const { prePrepare } = slot.committed
      assert(prePrepare.seq === this.#executed + 1, 'executed seqs are strictly consecutive')
      this.#executed = prePrepare.seq
      const batch: ExecutableBatch = { seq: prePrepare.seq, view: prePrepare.view, requests: prePrepare.batch }
      const reconfigurations = this.#judgeReconfigurations(batch)
      if (reconfigurations.length > 0) { batch.reconfigurations = reconfigurations }
      this.#out.execute.push(batch)
      for (const request of prePrepare.batch) { this.#requests.done(request) }
      if (prePrepare.seq % this.#limits.checkpointInterval === 0) { this.#out.checkpointsDue.push(prePrepare.seq) }
      progressed = true
    }
    if (progressed) {
      this.#requestTimer = null
      this.#viewChangeAttempts = 0
    }
  }

  // ------------------------------------------------------------- checkpoints

  #onCheckpoint (checkpoint: Checkpoint, link: NodeId): StepResult {
    if (checkpoint.seq % this.#limits.checkpointInterval !== 0) { return reject('malformed', `checkpoint at ${checkpoint.seq}, not a multiple of ${this.#limits.checkpointInterval}`) }
    if (checkpoint.seq <= this.#low) { return reject('stale', `checkpoint ${checkpoint.seq} at or below the stable ${this.#low}`) }
    if (!verifySigned(checkpoint, this.#crypto)) { return this.#forged(link, 'checkpoint') }
    const added = this.#checkpoints.add(checkpoint)
    if (added.kind === 'conflict') { return this.#equivocated(added.first, checkpoint) }
    if (added.kind !== 'added') { return added.kind === 'duplicate' ? reject('duplicate') : reject('buffer-full', 'older than the checkpoints held for this replica') }
    this.#checkStable(checkpoint.seq)
    return OK
  }

  #checkStable (seq: number): void {
    // signed perhaps by a set this replica missed: it asks (its fetches make replicas send their configuration)
    if (this.#beyondKnowledge(seq)) {
      this.#peerAhead = true
      return
    }
    const provers = this.#proversOf(seq)
    if (provers.length === 0) { return }
    if (seq <= this.#low) { return }
    const proven = this.#checkpoints.proven(seq, provers === this.#replicas ? this.#quorum : this.#quorumOf(provers), provers, this.#group)
    if (proven === null) { return }
    this.#stableProven(proven.stable)
    // after the participation judged at the new watermark, which would give the points back
    for (const vote of proven.badPartials) { this.#badPartial(vote) }
  }

  /**
   * A partial that fails under its sender's public share, in a checkpoint
   * it signed: a lie (counted by the driver's combine). Named under the
   * group held here, it is evidence: published, and the sender isolated,
   * once (isolation drops its votes and refuses its later ones, so there
   * is at most one per replica of the set until an operator readmits it).
   * Evidence others would refuse is not published (a partial of an older
   * node's, naming no group): the sender only loses suspicion points.
   */
  #badPartial (vote: Checkpoint): void {
    const { replica } = vote
    if (!this.#replicas.includes(replica) || replica === this.id || this.#isolated.has(replica)) { return }
    const evidence: Evidence = { kind: 'bad-checkpoint-partial', offender: replica, checkpoint: vote }
    if (!checkEvidence(evidence, this.#replicas, this.#crypto, this.#group).ok) {
      this.#suspicion.lower(replica, 'invalid-message')
      return
    }
    this.#out.evidence.push(evidence)
    this.isolate(replica, evidence.kind)
  }

  /**
   * A proven stable checkpoint above the low watermark: the watermarks move
   * and the log below is dropped. It is made durable once this replica
   * holds the state there: executed and reported with the same digest, or
   * else fetched (stateWanted).
   */
  #stableProven (stable: StableCheckpoint): void {
    this.#executeCommitted()
    this.#moveLowWatermark(stable)
    const mine = this.#digestsTaken.get(stable.seq)
    if (mine !== undefined) {
      if (mine === stable.stateDigest) { this.#persistStable(stable) } else { this.#wantState(stable) }
    } else if (this.#executed < stable.seq) {
      this.#wantState(stable)
    }
    // else: executed through it, its digest comes with checkpointTaken
    this.#replayFuture()
  }

  #moveLowWatermark (stable: StableCheckpoint): void {
    assert(stable.seq > this.#low, 'the low watermark only moves up')
    this.#judgeParticipation(stable.seq)
    this.#stable = stable
    this.#outside.clear()
    for (const seq of this.#digestsTaken.keys()) { if (seq < stable.seq) { this.#digestsTaken.delete(seq) } }
    this.#log.forgetThrough(stable.seq)
    this.#checkpoints.forgetBelow(stable.seq)
    for (const [key, message] of this.#signed) {
      const seq = signedSeq(message)
      // this replica's checkpoint at the low watermark is kept: it answers lagging replicas with it
      if (seq !== null && (seq < stable.seq || (seq === stable.seq && message.type !== 'checkpoint'))) { this.#signed.delete(key) }
    }
    this.#nextSeq = Math.max(this.#nextSeq, stable.seq)
  }

  #persistStable (stable: StableCheckpoint): void {
    if (stable.seq <= this.#durableStable) { return }
    this.#durableStable = stable.seq
    this.#persist({ kind: 'stable', checkpoint: stable })
    this.#out.stable = stable
  }

  #wantState (stable: StableCheckpoint): void {
    if (this.#stateWanted !== null && this.#stateWanted.seq >= stable.seq) { return }
    this.#stateWanted = stable
    this.#statesAsked.push(stable)
    if (this.#statesAsked.length > STATES_ASKED_KEPT) { this.#statesAsked.shift() }
    // a compact certificate names no signers: any of the provers (a quorum of them signed, at least f + 1 honest) may hold it
    const signers = stable.groupSignature !== undefined ? this.#proversOf(stable.seq) : stable.proof.map(c => c.replica)
    const holders = signers.filter(r => r !== this.id && !this.#isolated.has(r))
    this.#out.stateWanted = { checkpoint: stable, holders }
  }

  // ------------------------------------------------------------- catch-up

  /** Behind: a gap below a committed batch, or another replica checkpointed or sent messages past what this one executed. */
  #behind (): boolean {
    // waiting for a state: asking again only helps when what it saw may be signed by a set it missed
    if (this.#stateWanted !== null) { return this.#peerAhead }
    // the others may have reached the start of the pending set (and left this replica out of it)
    if (this.#peerAhead || this.#pending !== null || this.#restartFetches > 0) { return true }
    if (this.#log.get(this.#executed + 1)?.committed != null) { return false }
    for (const slot of this.#log.values()) {
      if (slot.seq > this.#executed + 1 && slot.committed !== null) { return true }
    }
    return this.#checkpoints.anyAbove(Math.max(this.#executed, this.#low))
  }

  #onFetchCommitted (fetch: FetchCommitted, link: NodeId): StepResult {
    if (!Number.isSafeInteger(fetch.fromSeq) || fetch.fromSeq < 1) { return reject('malformed', 'bad fromSeq') }
    if (!Number.isSafeInteger(fetch.epoch) || fetch.epoch < 0) { return reject('malformed', 'bad epoch') }
    // the asker missed a reconfiguration, or will be shown checkpoints past what it knows: it needs to know which set signs them
    if (fetch.epoch < this.#latest.epoch || fetch.fromSeq <= this.#low + 1) {
      this.#send(link, { type: 'configuration', replica: this.id, state: this.#configurationState(), knownThrough: this.#knownThrough })
    }
    if (fetch.fromSeq <= this.#low + 1) {
      // the asker is behind this replica's stable checkpoint, or at it without its proof: this checkpoint helps it prove one
      const mine = this.#signed.get(`checkpoint/${this.#low}`)
      if (mine !== undefined) { this.#send(link, mine) }
    }
    const certificates = []
    const from = Math.max(fetch.fromSeq, this.#low + 1)
    for (let seq = from; seq <= this.#high && certificates.length < this.#limits.certificatesPerFetchMax; seq++) {
      const committed = this.#log.get(seq)?.committed
      if (committed != null) { certificates.push(committed) }
    }
    if (certificates.length > 0) { this.#send(link, { type: 'committed-batches', replica: this.id, certificates }) }
    return OK
  }

  #onCommittedBatches (answer: CommittedBatches, link: NodeId): StepResult {
    if (!Array.isArray(answer.certificates) || answer.certificates.length > this.#limits.certificatesPerFetchMax) {
      return reject('malformed', 'too many certificates')
    }
    // what follows the state being fetched may be signed by a set that state names
    if (this.#stateWanted !== null) { return reject('stale', 'waiting for the state of a stable checkpoint') }
    let taken = 0
    for (const certificate of answer.certificates) {
      const { seq } = certificate.prePrepare
      if (seq <= Math.max(this.#executed, this.#low) || seq > this.#high) { continue }
      // signed by the pending set: fetched again once it is in force
      if (this.#pending !== null && seq > this.#pending.afterSeq) { continue }
      const signers = this.#setFor(seq)
      if (signers === null) { continue }
      const slot = this.#log.at(seq, this.#view)
      if (slot.committed !== null) { continue }
      const problem = checkCommittedCertificate(certificate, signers, this.#crypto, this.#limits)
      if (problem !== null) { return this.#unknownSet(seq) ?? reject('bad-signature', `committed certificate for seq ${seq} from ${link}: ${problem}`) }
      slot.committed = certificate
      this.#persist({ kind: 'committed', certificate })
      taken++
      // a quorum committed in a later view: f+1 honest replicas work there (an idle cluster shows it nothing else)
      if (certificate.prePrepare.view > this.#view && signers === this.#replicas) {
        for (const commit of certificate.commits) { this.#peersInLaterViews.add(commit.replica) }
      }
    }
    // a full answer that brought news: the answerer may hold more past it
    if (taken > 0 && answer.certificates.length === this.#limits.certificatesPerFetchMax) { this.#peerAhead = true }
    this.#executeCommitted()
    return OK
  }

  // ------------------------------------------------------------- view change

  #viewChangeTimeout (): number {
    const doubled = this.#limits.viewChangeTimeoutTicks * 2 ** Math.min(Math.max(this.#viewChangeAttempts - 1, 0), 30)
    return Math.min(doubled, this.#limits.viewChangeTimeoutTicksMax)
  }

  #startViewChange (view: number): void {
    assert(view > this.#view || (view === this.#view && !this.#changing), 'view changes only move forward')
    assert(this.#member, 'a learner takes no part in view changes')
    this.#enterView(view, true)
    const viewChange = this.#sign<ViewChange>({
      type: 'view-change', replica: this.id, view, stable: this.#stable, prepared: this.#log.preparedCertificates()
    })
    this.#viewChanges.set(this.id, viewChange)
    this.#broadcast(viewChange)
    this.#viewChangeTimer = null
    this.#viewChangeResendTicks = 0
    this.#viewChangeAttempts++
    this.#requestTimer = null
    this.#maybeStartViewChangeTimer()
    this.#maybeSendNewView()
  }

  #enterView (view: number, changing: boolean): void {
    this.#view = view
    this.#changing = changing
    this.#peersInLaterViews.clear()
    this.#persist({ kind: 'view', view, changing })
    // nothing is ever signed in an earlier view again: what was signed there need not be remembered
    for (const [key, message] of this.#signed) {
      if (message.type !== 'checkpoint' && message.view < view) { this.#signed.delete(key) }
    }
  }

  #onViewChange (viewChange: ViewChange, link: NodeId): StepResult {
    if (viewChange.view < this.#view || (viewChange.view === this.#view && !this.#changing)) {
      // a replica still asking for a view this one is past missed the NEW-VIEW: the current one brings it here
      if (this.#newView !== null && this.#newView.view >= viewChange.view) { this.#send(link, this.#newView) }
      return reject('stale', `view change for ${viewChange.view}, this replica is in ${this.#view}`)
    }
    const held = this.#viewChanges.get(link)
    if (held !== undefined && held.view >= viewChange.view) { return reject('duplicate') }
    if (!verifySigned(viewChange, this.#crypto)) { return this.#forged(link, 'view change') }
    const adopted = this.#adoptStable([viewChange], viewChange, link)
    if (adopted !== null) { return adopted }
    const problem = checkViewChange(viewChange, this.#replicas, this.#crypto, this.#limits, seq => this.#proversOf(seq), this.#stableChecks)
    if (problem !== null) { return this.#unknownSet(viewChange.stable.seq + 1) ?? reject('malformed', problem) }
    this.#viewChanges.set(link, viewChange)
    this.#maybeJoin()
    this.#maybeStartViewChangeTimer()
    this.#maybeSendNewView()
    return OK
  }

  /**
   * The view-change timer starts only once a quorum asks for this view (as
   * in the paper): a replica alone cannot race through views ahead of the
   * others, which would leave no view with a quorum of view changes.
   */
  #maybeStartViewChangeTimer (): void {
    if (!this.#changing || this.#viewChangeTimer !== null || this.#switchDue()) { return }
    // a replica asking for a later view has given up this one too
    let asking = 0
    for (const vc of this.#viewChanges.values()) { if (vc.view >= this.#view) { asking++ } }
    if (asking >= this.#quorum) { this.#viewChangeTimer = this.#viewChangeTimeout() }
  }

  /** f+1 replicas ask for views above this one: at least one honest replica timed out, so join the smallest of them. */
  #maybeJoin (): void {
    // a set about to take over asks for its own next view
    if (this.#switchDue()) { return }
    const higher = [...this.#viewChanges.values()].filter(vc => vc.view > this.#view)
    if (higher.length < this.#f + 1) { return }
    this.#startViewChange(Math.min(...higher.map(vc => vc.view)))
  }

  #maybeSendNewView (): void {
    if (!this.#changing || !this.#isPrimary || this.#signed.has(`new-view/${this.#view}`) || this.#switchDue()) { return }
    const viewChanges = this.#replicas
      .map(replica => this.#viewChanges.get(replica))
      .filter((vc): vc is ViewChange => vc?.view === this.#view)
      .slice(0, this.#quorum)
    if (viewChanges.length < this.#quorum) { return }
    const plan = planNewView(viewChanges, this.#crypto)
    const prePrepares = plan.entries.map(entry => this.#sign<PrePrepare>({
      type: 'pre-prepare', replica: this.id, view: this.#view, seq: entry.seq, digest: entry.digest, batch: entry.batch
    }))
    const newView = this.#sign<NewView>({ type: 'new-view', replica: this.id, view: this.#view, viewChanges, prePrepares })
    this.#broadcast(newView)
    this.#installNewView(newView, plan)
  }

  #onNewView (newView: NewView, link: NodeId): StepResult {
    if (newView.view < this.#view || (newView.view === this.#view && !this.#changing)) { return reject('stale') }
    if (!Array.isArray(newView.viewChanges)) { return reject('malformed', 'no view changes') }
    const adopted = this.#adoptStable(newView.viewChanges, newView, link)
    if (adopted !== null) { return adopted }
    const checked = checkNewView(newView, this.#replicas, this.#crypto, this.#limits, seq => this.#proversOf(seq), this.#stableChecks)
    if (!checked.ok) {
      if (checked.badSignature === true && newView.replica === link) { return this.#forged(link, 'new view') }
      const top = Math.max(0, ...newView.viewChanges.map(vc => vc.stable.seq))
      return this.#unknownSet(top + 1) ?? reject('malformed', checked.error)
    }
    this.#installNewView(newView, checked.plan)
    return OK
  }

  /**
   * The stable checkpoints that view changes carry, before the view changes
   * themselves are checked (with the set that will be in force there):
   * from before the set in force took over, the message is stale (its
   * sender has not switched); a proven one above the low watermark moves
   * this replica there, and when that brings a new set in force, the
   * message waits in the future buffer to be checked by it. Null: go on.
   */
  #adoptStable (viewChanges: ViewChange[], message: ViewChange | NewView, link: NodeId): StepResult | null {
    const switchedAt = this.#configuration.afterSeq
    let highest: StableCheckpoint | null = null
    for (const { stable } of viewChanges) {
      if (typeof stable?.seq !== 'number') { return reject('malformed', 'a view change without a stable checkpoint') }
      if (stable.seq < switchedAt) { return reject('stale', `a view change from before the set of epoch ${this.#configuration.epoch} took over at seq ${switchedAt}`) }
      // proven by a set older than the one before the set in force (learned from a configuration, not lived through)
      if (stable.seq > 0 && this.#setFor(stable.seq) === null) { return reject('unknown-set', `the replica set that proves seq ${stable.seq} is not kept here`) }
      if (stable.seq > (highest?.seq ?? -1)) { highest = stable }
    }
    if (highest === null) { return null }
    if (highest.seq > this.#low) {
      if (this.#beyondKnowledge(highest.seq)) { return this.#unknownSet(highest.seq) }
      const provers = this.#proversOf(highest.seq)
      // proven by a threshold group this replica does not know (it joined without a share, or its group changed):
      // nothing against the sender; it proves that checkpoint from the CHECKPOINTs its fetches bring
      if (highest.groupSignature !== undefined && groupProblem(this.#group, provers) !== null) {
        this.#peerAhead = true
        return reject('unknown-set', `stable checkpoint ${highest.seq} proven by a threshold group not known here`)
      }
      const problem = checkStableCheckpoint(highest, provers, this.#crypto, this.#group)
      if (problem !== null) { return reject('malformed', `the stable checkpoint of a view change is not proven: ${problem}`) }
      this.#stableProven(highest)
    }
    // the view after that checkpoint may belong to a set this replica learns only with the state there
    const undecided = this.#switchDue() || this.#stateWanted !== null || this.#beyondKnowledge(highest.seq + 1)
    return undecided ? this.#buffer(message, link) : null
  }

  /**
   * A check failed on what may be signed by a set this replica missed (it
   * is past #knownThrough): not proof of anything; it is behind, and
   * catches up (its fetches say its epoch, and replicas that know a later
   * configuration send it). Null: within what it knows, the failure counts.
   */
  #unknownSet (seq: number): StepResult | null {
    if (!this.#beyondKnowledge(seq)) { return null }
    this.#peerAhead = true
    return reject('unknown-set', `past seq ${this.#knownThrough}, whose replica set this replica knows`)
  }

  /** Enters the new view: its stable checkpoint, then its pre-prepares, prepared again in this view. */
  #installNewView (newView: NewView, plan: NewViewPlan): void {
    this.#enterView(newView.view, false)
    this.#newView = newView
    this.#viewChangeTimer = null
    this.#requestTimer = null
    for (const [replica, vc] of this.#viewChanges) {
      if (vc.view <= newView.view) { this.#viewChanges.delete(replica) }
    }
    if (plan.stable.seq > this.#low) { this.#stableProven(plan.stable) }
    this.#requests.requeueInFlight(this.#ticks)
    let top = this.#low
    for (const prePrepare of newView.prePrepares) {
      top = Math.max(top, prePrepare.seq)
      if (prePrepare.seq <= this.#low) { continue }
      this.#accept(this.#log.at(prePrepare.seq, newView.view), prePrepare)
    }
    this.#nextSeq = top
    if (!this.#isPrimary && !this.#isolated.has(this.#primary)) {
      for (const request of this.#requests.pending()) { this.#send(this.#primary, request) }
    }
    this.#replayFuture()
  }

  #replayFuture (): void {
    for (const { message, link } of this.#future.take()) {
      if (this.#isolated.has(link)) { continue }
      this.step(message, link)
    }
  }

  // ------------------------------------------------------------- reconfiguration

  /** The latest configuration decided: pending, or else in force. */
  get #latest (): PbftConfiguration {
    return this.#pending ?? this.#configuration
  }

  #configurationState (): ConfigurationState {
    return this.#pending !== null ? { latest: this.#pending, previous: this.#configuration } : { latest: this.#configuration, previous: this.#previous }
  }

  /**
   * The seqs whose replica set this replica knows: a configuration decided
   * at a seq it has not executed orders only past that seq +
   * watermarkWindow, and the next one is decided only past the start of
   * the latest.
   */
  get #knownThrough (): number {
    return Math.max(Math.max(this.#executed, this.#pending?.afterSeq ?? 0, this.#configuration.afterSeq) + this.#limits.watermarkWindow, this.#confirmedThrough)
  }

  /**
   * The set that orders `seq` (and signs its messages and checkpoints), as
   * far as this replica knows: past #knownThrough a later set may exist
   * that it has not heard of (see #beyondKnowledge). Null: before the sets
   * it keeps.
   */
  #setFor (seq: number): NodeId[] | null {
    if (this.#pending !== null && seq > this.#pending.afterSeq) { return this.#pending.replicas }
    if (seq > this.#configuration.afterSeq || this.#configuration.epoch === 0) { return this.#replicas }
    if (this.#previous !== null && (seq > this.#previous.afterSeq || this.#previous.epoch === 0)) { return this.#previous.replicas }
    return null
  }

  /** Past the seqs whose set this replica knows: what fails its checks there may be signed by a set it missed. */
  #beyondKnowledge (seq: number): boolean {
    return seq > this.#knownThrough
  }

  /** The replicas whose checkpoints prove a stable checkpoint at `seq`: the set that ordered it (none when unknown). */
  #proversOf (seq: number): NodeId[] {
    return this.#setFor(seq) ?? []
  }

  /**
   * Another replica's configuration state, sent because this replica
   * fetched from an earlier epoch: believed once f+1 replicas of the set in
   * force here (one of them honest) sent the same one.
   */
  #onConfiguration (message: Configuration, link: NodeId): StepResult {
    const { latest, previous } = message.state ?? {}
    if (latest === undefined || previous === undefined || !Number.isSafeInteger(message.knownThrough)) { return reject('malformed', 'no configuration state') }
    if (latest.epoch < this.#latest.epoch || message.knownThrough <= this.#knownThrough) { return reject('stale', `epoch ${latest.epoch} through seq ${message.knownThrough}: nothing new`) }
    const key = encodeConfiguration(message.state).join(',')
    this.#announced.set(link, { key, knownThrough: message.knownThrough })
    const matching: number[] = []
    for (const replica of this.#replicas) {
      const announced = this.#announced.get(replica)
      if (announced?.key === key) { matching.push(announced.knownThrough) }
    }
    if (matching.length < this.#f + 1) { return OK }
    // one of them at least is honest: the state is real, and the latest through the least of their knownThrough
    this.#announced.clear()
    this.#learnConfiguration(message.state)
    this.#confirmedThrough = Math.max(this.#confirmedThrough, Math.min(...matching))
    // checkpoint votes past what this replica knew may prove a checkpoint now
    for (const seq of this.#checkpoints.seqsAbove(this.#low)) { this.#checkStable(seq) }
    return OK
  }

  /**
   * The core's verdict on the reconfiguration requests of a batch it hands
   * out: the same on every honest replica, since it depends only on the
   * batches handed out before (one pending set at a time; nothing past its
   * start is handed out before it is in force).
   */
  #judgeReconfigurations (batch: ExecutableBatch): ReconfigurationOutcome[] {
    const outcomes: ReconfigurationOutcome[] = []
    batch.requests.forEach((request, index) => {
      if (!isReconfiguration(request.operation)) { return }
      const decoded = decodeReconfiguration(request.operation)
      // the latest decision again (a retransmission ordered twice): the same answer, so that replies match
      const latest = this.#latest
      const before = this.#pending !== null ? this.#configuration : this.#previous
      if (decoded.ok && decoded.value.epoch === latest.epoch && sameReplicas(decoded.value.replicas, latest.replicas) &&
        before !== null && checkReconfiguration(decoded.value, before, this.#crypto) === null) {
        outcomes.push({ index, ok: true, state: this.#pending !== null ? { latest, previous: this.#configuration } : { latest, previous: this.#previous } })
        return
      }
      if (this.#pending !== null) {
        outcomes.push({ index, ok: false, error: `the reconfiguration to epoch ${this.#pending.epoch} is pending until seq ${this.#pending.afterSeq}` })
        return
      }
      const problem = decoded.ok ? checkReconfiguration(decoded.value, this.#configuration, this.#crypto) : decoded.error
      if (problem !== null || !decoded.ok) {
        outcomes.push({ index, ok: false, error: problem ?? 'malformed' })
        return
      }
      const decided = { epoch: decoded.value.epoch, replicas: decoded.value.replicas, afterSeq: effectiveAfter(batch.seq, this.#limits) }
      this.#pending = decided
      outcomes.push({ index, ok: true, state: { latest: decided, previous: this.#configuration } })
    })
    return outcomes
  }

  /** A configuration from an installed state, possibly ahead of what this replica knew. */
  #learnConfiguration ({ latest, previous }: ConfigurationState): void {
    if (latest.epoch <= this.#latest.epoch) { return }
    if (previous !== null && previous.epoch !== this.#configuration.epoch) {
      // more than one epoch behind: the batches up to the start of `previous` were ordered by sets this replica never knew, so it takes a state from there on
      this.#applyConfiguration(previous, null)
      this.#stateNeededThrough = Math.max(this.#stateNeededThrough, previous.afterSeq)
    }
    this.#pending = latest
  }

  /** A set is pending and the seqs up to its start are not all executed: the primary must get there (with null batches if need be). */
  #awaitingSwitch (): boolean {
    return this.#pending !== null && this.#executed < this.#pending.afterSeq
  }

  /**
   * Executed through the start of the pending set, whose checkpoint is not
   * stable yet: nothing is ordered past it until it is, so no later
   * checkpoint would make up for a lost one. Its own goes again.
   */
  #resendSwitchCheckpoint (): void {
    if (this.#pending === null || this.#low >= this.#pending.afterSeq || this.#executed < this.#pending.afterSeq) { return }
    const mine = this.#signed.get(`checkpoint/${this.#pending.afterSeq}`)
    if (mine !== undefined) { this.#broadcast(mine) }
  }

  /** The low watermark reached the start of the pending set: it takes over at the next ready(). */
  #switchDue (): boolean {
    return this.#pending !== null && this.#low >= this.#pending.afterSeq
  }

  /**
   * The pending set takes over. Its members ask at once for the next view,
   * formed by the new set alone: no view of the old set, and no NEW-VIEW
   * signed by it, is ever shown to the new members. A node that left the
   * set becomes a learner.
   */
  #switchConfiguration (): void {
    const next = this.#pending
    assert(next !== null, 'a switch needs a pending configuration')
    this.#pending = null
    this.#applyConfiguration(next, this.#configuration)
    this.#out.configuration = next
    this.#nextSeq = Math.max(this.#nextSeq, this.#low)
    if (this.#member) { this.#startViewChange(this.#view + 1) }
    this.#replayFuture()
  }

  /** Sets the set in force and rebuilds what depends on it. */
  #applyConfiguration (configuration: PbftConfiguration, previous: PbftConfiguration | null): void {
    this.#configuration = configuration
    this.#previous = previous
    this.#replicas = [...configuration.replicas]
    this.#f = faultsTolerated(this.#replicas.length)
    this.#quorum = this.#quorumOf(this.#replicas)
    this.#member = this.#replicas.includes(this.id)
    const early = this.#future.take()
    this.#future = new FutureBuffer(this.#limits, this.#replicas.length)
    for (const { message, link } of early) { if (this.#replicas.includes(link)) { this.#future.add(message, link) } }
    this.#checkpoints.retain(this.#replicas)
    for (const replica of this.#viewChanges.keys()) { if (!this.#replicas.includes(replica)) { this.#viewChanges.delete(replica) } }
    this.#suspicion = new Suspicion(this.#replicas, this.id)
    this.#peersInLaterViews.clear()
    this.#outside.clear()
    this.#announced.clear()
    for (const peer of this.#linksDown) { if (!this.#replicas.includes(peer)) { this.#linksDown.delete(peer) } }
    if (!this.#member) {
      this.#requests.clear()
      this.#changing = false
      this.#viewChangeTimer = null
      this.#requestTimer = null
    }
  }

  /**
   * A message from a member of the pending set that is not in force yet, or
   * any message while this node is a learner: a fetch from a pending member
   * is answered (it catches up before its set takes over), normal-case
   * messages above the start of a pending set that lists this node are kept
   * for when it takes over, a learner takes committed batches and the
   * checkpoints that come with them; nothing else counts.
   */
  #outsideTheSet (message: ReplicaMessage, link: NodeId, fromMember: boolean): StepResult {
    switch (message.type) {
      case 'fetch-committed':
        return this.#member ? this.#onFetchCommitted(message, link) : reject('not-a-replica', 'a learner serves no fetches')
      case 'committed-batches': case 'configuration':
        if (!this.#member && fromMember) { return this.#dispatch(message, link) }
        break
      case 'checkpoint':
        // a learner proves checkpoints from the answers to its fetches; the pending set's own prove those past its start
        if ((!this.#member && fromMember) || this.#pastPendingStart(message.seq, link)) { return this.#dispatch(message, link) }
        break
      case 'pre-prepare': case 'prepare': case 'commit':
        if (this.#pending?.replicas.includes(this.id) === true && this.#pastPendingStart(message.seq, link)) { return this.#buffer(message, link) }
        break
      default:
        break
    }
    return reject('not-a-replica', this.#member ? `${link} is not a replica of the set in force` : 'this node is a learner')
  }

  /** `link` is in the pending set and `seq` past its start: the pending set orders it. */
  #pastPendingStart (seq: number, link: NodeId): boolean {
    const pending = this.#pending
    return pending !== null && pending.replicas.includes(link) && Number.isSafeInteger(seq) && seq > pending.afterSeq
  }

  /**
   * From a peer in no set this replica works with: refused, unless it is a
   * replica a reconfiguration removed that fetches (it catches up to the
   * switch, where it learns it is out).
   */
  #fromNonMember (message: ReplicaMessage, link: NodeId): StepResult {
    if (message?.type === 'fetch-committed' && message.replica === link && this.#previous?.replicas.includes(link) === true && !this.#isolated.has(link)) {
      return this.#onFetchCommitted(message, link)
    }
    return reject('not-a-replica', `${link} is not a replica`)
  }

  /**
   * A learner has no timers: it asks the replicas for what committed, every
   * half request timeout. Also while it waits for a state: its holders may
   * have moved on and kept only a later one, and the answers (from past the
   * state it waits for) bring their later stable checkpoint, whose state
   * it asks for instead.
   */
  #tickAsLearner (): void {
    this.#fetchTimer++
    if (this.#fetchTimer < Math.max(1, Math.floor(this.#limits.requestTimeoutTicks / 2))) { return }
    this.#fetchTimer = 0
    const fromSeq = Math.max(this.#executed, this.#stateWanted?.seq ?? 0) + 1
    this.#broadcast({ type: 'fetch-committed', replica: this.id, fromSeq, epoch: this.#latest.epoch })
  }

  // ------------------------------------------------------------- byzantine

  /**
   * A backup holding a request that the primary left unordered for
   * slowPrimaryTicks suspects it, tick after tick, and asks for a new view
   * once its score falls to suspicionViewChangeScore (suspicion.ts).
   */
  #watchPrimary (): void {
    if (this.#isPrimary || this.#isolated.has(this.#primary)) { return }
    const since = this.#requests.oldestPendingSince()
    if (since === null || this.#ticks - since < this.#limits.slowPrimaryTicks) { return }
    if (this.#suspicion.lower(this.#primary, 'slow-primary') <= this.#limits.suspicionViewChangeScore) {
      this.#startViewChange(this.#view + 1)
    }
  }

  /**
   * At a stable checkpoint, before its slots are dropped: a replica that
   * took part in none of the slots this one took part in is suspected of
   * silence, one that did regains trust, unless it is the primary and a
   * request here waits too long for it.
   */
  #judgeParticipation (throughSeq: number): void {
    const seen = new Set<NodeId>()
    let slots = 0
    for (const slot of this.#log.values()) {
      if (slot.seq > throughSeq || !slot.commits.has(this.id)) { continue }
      slots++
      if (slot.prePrepare !== null) { seen.add(slot.prePrepare.replica) }
      for (const replica of slot.prepares.keys()) { seen.add(replica) }
      for (const replica of slot.commits.keys()) { seen.add(replica) }
    }
    if (slots === 0) { return }
    const since = this.#requests.oldestPendingSince()
    const primaryOverdue = since !== null && this.#ticks - since >= this.#limits.slowPrimaryTicks
    for (const replica of this.#replicas) {
      if (replica === this.id || this.#isolated.has(replica)) { continue }
      if (!seen.has(replica)) {
        this.#suspicion.lower(replica, 'silent')
      } else if (replica !== this.#primary || !primaryOverdue) {
        this.#suspicion.raise(replica)
      }
    }
  }

  /** Two conflicting messages validly signed by one replica: evidence, and isolation. */
  #equivocated (first: SignedMessage, second: SignedMessage): StepResult {
    assert(conflicting(first, second), 'equivocation needs conflicting messages')
    const evidence = equivocation(first, second)
    this.#out.evidence.push(evidence)
    this.isolate(first.replica, 'equivocation')
    return reject('conflict', `${first.replica} equivocated on ${first.type}`)
  }

  // ------------------------------------------------------------- plumbing

  /** Signs once per slot: the same slot returns what was signed before, never a conflicting message. */
  #sign<T extends SignedMessage> (unsigned: Omit<T, 'signature'>): T {
    const message = { ...unsigned, signature: new Uint8Array(0) } as unknown as T
    const key = signedKey(message)
    const held = this.#signed.get(key) as T | undefined
    if (held !== undefined) {
      assert(!conflicting(held, message), `never sign two different messages for ${key}`)
      return held
    }
    assert(this.#member, 'a learner signs nothing')
    message.signature = this.#crypto.sign(signingPayload(message))
    this.#signed.set(key, message)
    this.#persist({ kind: 'signed', message })
    return message
  }

  #persist (record: PersistRecord): void {
    this.#out.persist.push(record)
  }

  #send (to: NodeId, message: PbftMessage): void {
    this.#out.messages.push({ to, message })
  }

  /** To every other replica that is not isolated. */
  #broadcast (message: PbftMessage): void {
    for (const replica of this.#replicas) {
      if (replica !== this.id && !this.#isolated.has(replica)) { this.#send(replica, message) }
    }
  }
}
