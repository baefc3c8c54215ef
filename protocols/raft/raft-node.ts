import { assert, unreachable } from '../common/assert.ts'
import { resolveConfig } from './config.ts'
import { LeaderLease } from './lease.ts'
import { RaftLog } from './log.ts'
import { applyConfChange, checkConfChange, CONF_MEMBERS_MAX, decodeConfChange, encodeConfChange, isTooManyMembers, isValidNodeId, Membership } from './membership.ts'
import { Inflights, Progress } from './progress.ts'
import { jointValue, jointVoteResult } from './quorum.ts'
import { ReadOnlyQueue } from './read-only.ts'
import { InvalidMessageError, parseConfState, parseEntry, parseSnapshot, READ_CONTEXT_BYTES_MAX, RestoredStateError, TERM_ADOPT_MAX, validateMessage } from './validate.ts'
import type { RaftConfig, RaftConfigInit } from './config.ts'
import type { ReadRequest } from './read-only.ts'
import type {
  AppendMessage, AppendResponseMessage, ConfChange, ConfState, Entry, EntryType, HardState, HeartbeatMessage,
  HeartbeatResponseMessage, Message, NodeId, ProposeResult, RaftCounters, RaftStatus, ReadIndexResult, ReadState,
  Ready, RestoredState, Role, Snapshot, SnapshotMessage, SnapshotMeta, SoftState, StepRejectReason, StepResult, TransferResult,
  VoteMessage, VoteResponseMessage
} from './types.ts'

/** What advance() needs to know about the Ready it acknowledges. */
interface ReadyMark {
  lastEntry: { index: number, term: number } | null
  snapshot: Snapshot | undefined
  committedEntries: Entry[]
}

const OK: StepResult = { ok: true }
/** Campaigns after forgetLeader() that come within a few ticks (split votes retry quickly). */
const QUICK_CAMPAIGNS_MAX = 3

/**
 * One Raft participant, with no I/O (the shape of etcd-io/raft's RawNode):
 * feed it messages with step(), time with tick(), requests with propose() /
 * proposeConfChange() / readIndex() / transferLeadership(); drain its output
 * with ready() and acknowledge with advance().
 *
 * Decisions that differ from etcd and matter to callers:
 * - Proposals are never forwarded: a follower answers 'not-leader' with the
 * leader's id and the service layer forwards the request (it owns the
 * reply channel). There is no MsgProp on the wire.
 * - Membership changes take effect when the caller acknowledges (advance())
 * the Ready that delivered the committed conf-change entry: the core
 * applies them itself; the caller only sees them in committedEntries.
 * - Local events are methods, not messages: tick(), campaign(),
 * reportSnapshot(), reportUnreachable().
 * - Proposals made between two ready() calls go to each follower in one
 * MsgApp (batched when ready() is built).
 */
export class RaftNode {
  readonly id: NodeId
  private readonly config: RaftConfig
  private term = 0
  private vote: NodeId | null = null
  private lead: NodeId | null = null
  private role: Role = 'follower'
  private readonly log: RaftLog
  private membership: Membership
  /** Index of the entry (or snapshot) the current membership comes from. */
  private confIndex: number
  /** Membership as of the snapshot, and after each conf change applied since (for compact()). */
  private baseConf: ConfState
  private confHistory: Array<{ index: number, conf: ConfState }> = []
  /** Leader only: one Progress per member, self included. */
  private readonly progress = new Map<NodeId, Progress>()
  private readonly votes = new Map<NodeId, boolean>()
  private electionElapsed = 0
  /** Leader: ticks since check-quorum last looked (checkQuorumTicks). */
  private quorumElapsed = 0
  /** Quick campaigns left after forgetLeader() (see campaignSoon). */
  private quickCampaignsLeft = 0
  private heartbeatElapsed = 0
  private randomizedElectionTimeout = 0
  /** 0 = healthy; see setLocalHealth. */
  private localHealthScore = 0
  private leadTransferee: NodeId | null = null
  /** Leader only: no new conf change is proposed until this index is applied. */
  private pendingConfIndex = 0
  /** Leader only: bytes of entries appended in this term and not yet committed. */
  private uncommittedBytes = 0
  /** Leader only: a conf change removing us is in the log; no proposals after it. */
  private leavingSelf = false
  /** Leader only: new entries await a broadcast, done when the next Ready is built. */
  private appendPending = false
  private readonly reads: ReadOnlyQueue
  private readonly lease: LeaderLease
  /**
   * Lease reads: after a restart, ticks during which we still refuse votes as
   * if we had heard from a leader (we may have acknowledged a lease before
   * the crash and forgotten it).
   */
  private restartLeaseTicks = 0
  /** Leader only: we sent MsgTimeoutNow this term, so a successor may be elected without waiting out any lease. */
  private leaseRevoked = false
  private outbox: Message[] = []
  private readStates: ReadState[] = []
  private lastSoftState: SoftState = { leader: null, role: 'follower' }
  private lastHardState: HardState
  private outstandingReady: ReadyMark | null = null
  private readonly counters: RaftCounters = {
    invalidMessages: 0, ignoredMessages: 0, outboxDropped: 0, readsDropped: 0, confChangesSkipped: 0, snapshotsRejected: 0
  }

  /**
   * @param config - the node's id and rng, plus any settings that differ from RAFT_DEFAULTS
   * @param restored - what the node persisted before (all empty for a new node)
   * @param bootstrapConf - the initial membership of a brand-new cluster; used
   * only when `restored` is empty (no snapshot, entries or term), so the
   * caller may pass it on every start. It becomes one committed conf-change
   * entry per member at term 1, identical on every founding node. Nodes
   * that join later start empty, without it, and learn the log from the leader.
   */
  constructor (config: RaftConfigInit, restored: RestoredState, bootstrapConf?: ConfState) {
    this.config = resolveConfig(config)
    this.id = this.config.id
    this.reads = new ReadOnlyQueue(this.config.readIndexQueueMax)
    this.lease = new LeaderLease(this.config.electionTimeoutTicks, this.config.leaseSafetyMarginTicks)
    const { hardState, snapshot, entries } = checkRestored(restored)
    this.log = new RaftLog(snapshot, entries)
    this.baseConf = snapshot?.meta.conf ?? Membership.empty().toConfState()
    this.membership = new Membership(this.baseConf)
    this.confIndex = this.log.snapshotIndex
    if (hardState.commit > this.log.lastIndex()) {
      throw new RestoredStateError(`raft: restored commit ${hardState.commit} is beyond the last restored entry ${this.log.lastIndex()}`)
    }
    this.log.commitTo(hardState.commit)
    this.term = hardState.term
    this.vote = hardState.vote
    this.lastHardState = { term: this.term, vote: this.vote, commit: this.log.committed }

    const applied = Math.min(Math.max(restored.applied ?? 0, this.log.snapshotIndex), this.log.committed)
    for (let index = this.log.firstIndex(); index <= applied; index++) {
      const entry = this.log.entryAt(index)
      assert(entry !== undefined, 'raft: restored entry missing')
      if (entry.type === 'conf-change') { this.applyConfEntry(entry) }
    }
    this.log.appliedTo(applied)

    const isNew = snapshot === undefined && entries.length === 0 && hardState.term === 0
    if (bootstrapConf !== undefined && isNew) { this.bootstrap(bootstrapConf) }
    this.becomeFollower(this.term, null)
    if (this.config.readOnlyMode === 'lease' && !isNew) { this.restartLeaseTicks = this.config.electionTimeoutTicks }
    this.checkInvariants()
  }

  private bootstrap (conf: ConfState): void {
    let checked: ConfState
    try {
      checked = parseConfState(conf)
    } catch (err) {
      throw new RangeError(`raft: invalid bootstrap conf: ${(err as Error).message}`)
    }
    if (checked.votersOutgoing.length > 0) { throw new RangeError('raft: a cluster cannot bootstrap into a joint configuration') }
    const members = new Membership(checked).memberCount
    if (members > CONF_MEMBERS_MAX) { throw new RangeError(`raft: invalid bootstrap conf: ${members} members, more than CONF_MEMBERS_MAX (${CONF_MEMBERS_MAX})`) }
    const changes = [
      ...[...checked.voters].sort().map(node => ({ type: 'add-voter' as const, node })),
      ...[...checked.learners].sort().map(node => ({ type: 'add-learner' as const, node }))
    ]
    const entries = changes.map((change, i): Entry => ({
      term: 1, index: i + 1, type: 'conf-change', data: encodeConfChange({ changes: [change] })
    }))
    this.log.append(entries)
    this.log.commitTo(entries.length)
    this.term = 1
    // The membership is needed right away; the entries are still handed out
    // as committed entries (applyConfEntry skips them then: index <= confIndex).
    for (const entry of entries) { this.applyConfEntry(entry) }
  }

  // ---------------------------------------------------------------- inputs

  /**
   * Feeds one message from the network. Never throws on bad input: malformed
   * messages are rejected with 'invalid-message', snapshots whose data
   * config.checkSnapshot refuses with 'invalid-snapshot'; well-formed
   * messages that the protocol ignores (stale term, non-member, ...) come
   * back with a reason too, so the service layer can count them. All of
   * them leave the state untouched.
   */
  step (input: Message): StepResult {
    const m = validateMessage(input)
    if (m instanceof InvalidMessageError) {
      this.counters.invalidMessages++
      return { ok: false, reason: 'invalid-message', detail: m.message }
    }
    const result = this.stepValid(m)
    this.checkInvariants()
    return result
  }

  private stepValid (m: Message): StepResult {
    if (m.to !== this.id) { return this.ignored('wrong-recipient') }
    if (m.from === this.id) { return this.ignored('unexpected', 'message from self') }
    if (m.term < this.term) { return this.answerStaleTerm(m) }
    if (m.term > this.term + 1 && m.term > TERM_ADOPT_MAX) { return this.ignored('unexpected', `a jump to term ${m.term}, beyond TERM_ADOPT_MAX`) }
    if (m.type === 'snapshot') {
      const refusal = this.snapshotRefusal(m)
      if (refusal !== null) { return refusal }
    }
    if (m.term > this.term) {
      const refusal = this.observeNewerTerm(m)
      if (refusal !== null) { return refusal }
    }
    if (m.type === 'vote' || m.type === 'pre-vote') { return this.handleVoteRequest(m) }
    switch (this.role) {
      case 'leader': return this.stepLeader(m)
      case 'candidate':
      case 'pre-candidate': return this.stepCandidate(m)
      case 'follower': return this.stepFollower(m)
      default: return unreachable(this.role)
    }
  }

  /**
   * A message from a newer term usually makes us a follower of that term.
   * Vote requests are NOT filtered by membership: our configuration may be
   * stale (we may not have the entry adding the candidate yet), and refusing
   * could leave a new configuration unable to elect anyone. A removed node is
   * kept from disrupting by pre-vote and the lease check (thesis §4.2.3), as
   * in etcd.
   */
  private observeNewerTerm (m: Message): StepResult | null {
    if ((m.type === 'vote' || m.type === 'pre-vote') && !m.transfer && this.inLease()) {
      // We heard from a leader within the election timeout: a partitioned
      // node coming back must not depose it (check-quorum leases, §9.6).
      return this.ignored('in-lease')
    }
    if (m.type === 'pre-vote' || (m.type === 'pre-vote-response' && !m.reject)) {
      // A pre-vote never changes our term; a granted pre-vote carries the
      // term we would campaign at.
      return null
    }
    const leader = m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot' ? m.from : null
    this.becomeFollower(m.term, leader)
    return null
  }

  /**
   * A snapshot this node would install goes past config.checkSnapshot
   * first, before anything else happens, the move to the message's term
   * included. Dropping the message keeps Raft safe, as the loss of any
   * message does (a leader whose snapshot is refused sends it again; a
   * group does not wait on one follower). Adopting the newer term without
   * the snapshot would be safe as well, but one malformed frame with a
   * made-up term would then depose a healthy leader: this node would refuse
   * the leader's appends as stale, and the leader would step down on
   * hearing the newer term. So the refusal changes nothing at all.
   */
  private snapshotRefusal (m: SnapshotMessage): StepResult | null {
    if (this.config.checkSnapshot === undefined || !this.wouldInstall(m.snapshot.meta)) { return null }
    const problem = this.config.checkSnapshot(m.snapshot)
    if (problem === null) { return null }
    this.counters.snapshotsRejected++
    return { ok: false, reason: 'invalid-snapshot', detail: problem }
  }

  /** Whether handleSnapshot would replace the log with a snapshot of `meta` (its tests, which no term change affects). */
  private wouldInstall (meta: SnapshotMeta): boolean {
    return meta.index > this.log.committed && !this.log.matchTerm(meta.index, meta.term)
  }

  private answerStaleTerm (m: Message): StepResult {
    if (m.type === 'append' || m.type === 'heartbeat') {
      // A leader cut off while we moved on: tell it our term so it steps
      // down (with pre-vote or check-quorum no vote request would tell it;
      // etcd answers only then, we always do, as the Raft paper does).
      this.send({ type: 'append-response', from: this.id, to: m.from, term: this.term, index: 0, reject: false, rejectHint: 0, hintTerm: 0 })
    } else if (m.type === 'pre-vote') {
      this.send({ type: 'pre-vote-response', from: this.id, to: m.from, term: this.term, reject: true })
    }
    return this.ignored('stale-term')
  }

  /** One logical clock tick. */
  tick (): void {
    this.lease.tick()
    if (this.restartLeaseTicks > 0) { this.restartLeaseTicks-- }
    if (this.role === 'leader') { this.tickHeartbeat() } else { this.tickElection() }
    this.checkInvariants()
  }

  /**
   * Bootstraps a brand-new node after construction, exactly as the
   * constructor's bootstrapConf would have: for a founder that waits until
   * its initial cluster is connected before it fixes the configuration.
   * Refused (false) once the node holds any state (a term, an entry, a
   * snapshot) or while a Ready is outstanding: a node that heard of a group
   * meanwhile follows that group instead.
   */
  bootstrapNew (conf: ConfState): boolean {
    if (this.term !== 0 || this.log.lastIndex() !== 0 || this.outstandingReady !== null) { return false }
    this.bootstrap(conf)
    this.becomeFollower(this.term, null)
    this.checkInvariants()
    return true
  }

  /**
   * Starts an election now (still subject to pre-vote when enabled). For
   * tests and operators' tools: with lease reads, an election forced while
   * the leader's lease runs can let it serve a stale read; move leadership
   * with transferLeadership() instead, which revokes the lease first.
   */
  campaign (): void {
    this.hup(false)
    this.checkInvariants()
  }

  /**
   * The caller has strong evidence that `leader` is gone: its connection
   * closed (the OS of a crashed process resets it). As etcd's ForgetLeader,
   * a follower of `leader` forgets it, so it grants pre-votes at once rather
   * than refusing them for the rest of its lease (§9.6); and it campaigns
   * within forgottenLeaderCampaignTicksMax ticks instead of a whole election
   * timeout. Safety never rests on the evidence: if the leader is alive, the
   * followers that still hear it refuse the pre-vote, and its next
   * heartbeat makes this node its follower again. Ignored in lease mode,
   * whose reads rely on every follower waiting out the election timeout.
   * Returns whether the leader was forgotten.
   */
  forgetLeader (leader: NodeId): boolean {
    if (this.config.readOnlyMode === 'lease' || this.role !== 'follower' || this.lead !== leader) { return false }
    this.lead = null
    this.quickCampaignsLeft = QUICK_CAMPAIGNS_MAX
    this.campaignSoon()
    this.checkInvariants()
    return true
  }

  /**
   * Lifeguard's local health (Dadgar et al., "Lifeguard: Local Health
   * Awareness for More Accurate Failure Detection", 2018), for elections.
   * The caller measures how late this node's own ticks come (its event loop
   * lags: CPU starved, a long GC pause) and reports a score from 0
   * (healthy) to config.localHealthScoreMax. A node that is slow itself
   * likely missed heartbeats its leader sent on time, so it waits (1 +
   * score) times its randomized election timeout before it campaigns
   * (after forgetLeader() too), and leaves the election to healthy
   * followers. It still grants votes and pre-votes as before. Safety never
   * rests on the score, and neither does liveness: the wait is bounded.
   */
  setLocalHealth (score: number): void {
    if (!Number.isSafeInteger(score) || score < 0 || score > this.config.localHealthScoreMax) {
      throw new RangeError(`raft: local health score must be an integer in 0..${this.config.localHealthScoreMax}, got ${String(score)}`)
    }
    this.localHealthScore = score
  }

  /**
   * After forgetLeader(): campaign within a few ticks. Two followers told at
   * once may still split the vote; the quick retry keeps that from costing
   * a whole election timeout, a bounded number of times.
   */
  private campaignSoon (): void {
    if (this.quickCampaignsLeft === 0 || !this.promotable()) { return }
    const campaignInTicks = this.config.rng.intBetween(1, this.config.forgottenLeaderCampaignTicksMax)
    this.electionElapsed = Math.max(this.electionElapsed, this.randomizedElectionTimeout - campaignInTicks)
  }

  /** Appends `data` as a normal entry if this node is the leader. */
  propose (data: Uint8Array): ProposeResult {
    if (!(data instanceof Uint8Array)) { throw new TypeError('propose: data must be a Uint8Array') }
    const refusal = this.proposalRefusal(data.byteLength)
    if (refusal !== null) { return refusal }
    const index = this.appendEntries([{ type: 'normal', data }])
    this.checkInvariants()
    return { ok: true, index, term: this.term }
  }

  /**
   * Proposes a membership change (see ConfChange). Refused while another
   * conf change is proposed but not yet applied, when it is invalid for
   * the current configuration, and ('too-many-members') when the
   * configuration would hold more than CONF_MEMBERS_MAX members.
   */
  proposeConfChange (change: ConfChange): ProposeResult {
    const checked = checkConfChange(change)
    if (typeof checked === 'string') { return this.refuse('invalid-conf-change', checked) }
    const data = encodeConfChange(checked)
    const refusal = this.proposalRefusal(data.byteLength)
    if (refusal !== null) { return refusal }
    if (this.pendingConfIndex > this.log.applied) {
      return this.refuse('conf-change-pending', `conf change at index ${this.pendingConfIndex} is not applied yet`)
    }
    const next = applyConfChange(this.membership, checked)
    if (typeof next === 'string') { return this.refuse(isTooManyMembers(next) ? 'too-many-members' : 'invalid-conf-change', next) }
    const index = this.appendEntries([{ type: 'conf-change', data }])
    this.pendingConfIndex = index
    if (!next.voters.has(this.id)) { this.leavingSelf = true }
    this.checkInvariants()
    return { ok: true, index, term: this.term }
  }

  private proposalRefusal (bytes: number): ProposeResult | null {
    if (this.role !== 'leader') { return this.refuse('not-leader') }
    if (this.leadTransferee !== null) { return this.refuse('transferring', `transferring leadership to ${this.leadTransferee}`) }
    // Once a change removing us is in the log, nothing may follow it: voters
    // still using an older configuration must be able to elect a successor,
    // which needs a log as long as ours.
    if (this.leavingSelf || !this.membership.voters.has(this.id)) { return this.refuse('leaving', 'this leader is being removed') }
    if (bytes > this.config.proposalBytesMax) { return this.refuse('too-large', `${bytes} > proposalBytesMax ${this.config.proposalBytesMax}`) }
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > this.config.uncommittedEntriesBytesMax) {
      return this.refuse('uncommitted-limit', `${this.uncommittedBytes} bytes uncommitted`)
    }
    return null
  }

  private refuse (reason: Extract<ProposeResult, { ok: false }>['reason'], detail?: string): ProposeResult {
    return detail === undefined ? { ok: false, reason, leader: this.lead } : { ok: false, reason, leader: this.lead, detail }
  }

  /**
   * Requests a linearizable read. The answer arrives as a ReadState with the
   * same `requestCtx` in a later Ready: serve the read once the state machine
   * has applied that index. On a follower the request is forwarded to the
   * leader; a request lost on the way (leader change, message loss, full
   * queue on the leader) never answers, so the caller needs a timeout.
   */
  readIndex (requestCtx: Uint8Array): ReadIndexResult {
    if (!(requestCtx instanceof Uint8Array)) { throw new TypeError('readIndex: requestCtx must be a Uint8Array') }
    if (requestCtx.byteLength > READ_CONTEXT_BYTES_MAX) { throw new RangeError(`readIndex: requestCtx is longer than ${READ_CONTEXT_BYTES_MAX} bytes`) }
    if (this.lead === null) { return { ok: false, reason: 'no-leader', leader: null } }
    if (this.role !== 'leader') {
      this.send({ type: 'read-index', from: this.id, to: this.lead, term: this.term, context: requestCtx })
      return { ok: true }
    }
    const accepted = this.handleReadRequest({ context: requestCtx, from: this.id })
    this.checkInvariants()
    return accepted ? { ok: true } : { ok: false, reason: 'busy', leader: this.lead }
  }

  /**
   * Hands leadership to `to` (thesis §3.10): it is caught up first, then told
   * to campaign at once (MsgTimeoutNow). Proposals are refused meanwhile; the
   * transfer is abandoned after an election timeout.
   */
  transferLeadership (to: NodeId): TransferResult {
    if (this.role !== 'leader') { return { ok: false, reason: 'not-leader', leader: this.lead } }
    if (to === this.id) { return { ok: false, reason: 'self', leader: this.lead } }
    const pr = this.progress.get(to)
    if (pr === undefined) { return { ok: false, reason: 'unknown-node', leader: this.lead } }
    if (pr.isLearner) { return { ok: false, reason: 'learner', leader: this.lead } }
    if (this.leadTransferee === to) { return { ok: true } }
    this.electionElapsed = 0
    this.leadTransferee = to
    if (pr.match === this.log.lastIndex()) { this.completeTransfer(to) } else { this.sendAppend(to) }
    this.checkInvariants()
    return { ok: true }
  }

  /** The service reports the outcome of sending a snapshot to `to`. */
  reportSnapshot (to: NodeId, outcome: 'success' | 'failure'): void {
    const pr = this.progress.get(to)
    if (this.role !== 'leader' || pr === undefined || pr.state !== 'snapshot') { return }
    if (outcome === 'failure') { pr.pendingSnapshot = 0 }
    pr.becomeProbe()
    // Wait for a heartbeat response before probing again.
    pr.probeSent = true
  }

  /** The service could not reach `to`: stop streaming to it optimistically. */
  reportUnreachable (to: NodeId): void {
    const pr = this.progress.get(to)
    if (this.role === 'leader' && pr !== undefined && pr.state === 'replicate') { pr.becomeProbe() }
  }

  /**
   * The application saved a snapshot of its state machine at `index` (which it
   * has applied): entries up to it leave the log, and the snapshot is what
   * lagging followers receive. Compacting at or below the current snapshot is
   * a no-op (returns null). Returns the Snapshot to persist: the caller
   * stores it (it carries the membership as of `index`) and may then delete
   * its persisted entries up to `index`.
   */
  compact (index: number, snapshotData: Uint8Array): Snapshot | null {
    if (!Number.isSafeInteger(index) || index > this.log.applied) {
      throw new RangeError(`compact: index ${index} is not an applied index (applied ${this.log.applied})`)
    }
    if (!(snapshotData instanceof Uint8Array)) { throw new TypeError('compact: snapshotData must be a Uint8Array') }
    if (index <= this.log.snapshotIndex) { return null }
    const term = this.log.term(index)
    assert(term !== undefined, 'compact: term of an applied entry must be known')
    const conf = this.confAt(index)
    const snapshot: Snapshot = { meta: { index, term, conf }, data: snapshotData }
    this.log.compact(snapshot)
    this.baseConf = conf
    this.confHistory = this.confHistory.filter(h => h.index > index)
    this.checkInvariants()
    return snapshot
  }

  // ---------------------------------------------------------------- output

  hasReady (): boolean {
    if (this.outstandingReady !== null) { return false }
    return this.appendPending ||
      this.outbox.length > 0 ||
      this.readStates.length > 0 ||
      this.log.lastIndex() > this.log.stabled ||
      this.log.pendingSnapshot !== undefined ||
      this.log.hasNextCommittedEntries() ||
      this.lead !== this.lastSoftState.leader || this.role !== this.lastSoftState.role ||
      !sameHardState(this.hardState(), this.lastHardState)
  }

  /**
   * The next batch of work (see Ready for the processing order). At most one
   * Ready is outstanding: call advance() before the next ready(). step(),
   * tick() etc. may be called in between; their output goes to the next Ready.
   */
  ready (): Ready {
    assert(this.outstandingReady === null, 'ready() called again before advance()')
    if (this.appendPending) { this.broadcastNewEntries() }
    const entries = this.log.unstableEntries()
    const snapshot = this.log.pendingSnapshot
    const committedEntries = this.log.nextCommittedEntries(this.config.readyCommittedBytesMax)
    const ready: Ready = {
      entries,
      committedEntries,
      messages: this.outbox,
      readStates: this.readStates,
      mustSync: entries.length > 0 || snapshot !== undefined
    }
    const soft: SoftState = { leader: this.lead, role: this.role }
    if (soft.leader !== this.lastSoftState.leader || soft.role !== this.lastSoftState.role) {
      ready.softState = soft
      this.lastSoftState = soft
    }
    const hard = this.hardState()
    if (!sameHardState(hard, this.lastHardState)) {
      ready.hardState = hard
      if (hard.term !== this.lastHardState.term || hard.vote !== this.lastHardState.vote) { ready.mustSync = true }
      this.lastHardState = hard
    }
    if (snapshot !== undefined) { ready.snapshot = snapshot }
    this.outbox = []
    this.readStates = []
    this.reads.markRoundSent()
    const last = entries.at(-1)
    this.outstandingReady = {
      lastEntry: last === undefined ? null : { index: last.index, term: last.term },
      snapshot,
      committedEntries
    }
    return ready
  }

  /**
   * The caller persisted, sent and applied the last Ready. Conf changes among
   * its committed entries take effect now.
   */
  advance (): void {
    const mark = this.outstandingReady
    assert(mark !== null, 'advance() without an outstanding ready()')
    this.outstandingReady = null
    if (mark.snapshot !== undefined) { this.log.stableSnapshot(mark.snapshot) }
    if (mark.lastEntry !== null) { this.log.stableTo(mark.lastEntry.index, mark.lastEntry.term) }
    for (const entry of mark.committedEntries) {
      // Entries at or below confIndex were superseded by a snapshot restored
      // since (or applied at bootstrap): skip them.
      if (entry.type === 'conf-change' && entry.index > this.confIndex) { this.applyConfEntry(entry) }
    }
    const lastApplied = mark.committedEntries.at(-1)
    if (lastApplied !== undefined) { this.log.appliedTo(lastApplied.index) }
    if (this.role === 'leader') { this.afterApplyAsLeader() }
    this.checkInvariants()
  }

  status (): RaftStatus {
    const status: RaftStatus = {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader: this.lead,
      commit: this.log.committed,
      applied: this.log.applied,
      firstIndex: this.log.firstIndex(),
      lastIndex: this.log.lastIndex(),
      conf: this.membership.toConfState(),
      leadTransferee: this.leadTransferee,
      pendingReads: this.reads.size,
      counters: { ...this.counters }
    }
    if (this.role === 'leader') {
      status.progress = {}
      for (const [id, pr] of this.progress) {
        status.progress[id] = {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          recentActive: pr.recentActive,
          isLearner: pr.isLearner,
          inflight: pr.inflights.length,
          pendingSnapshot: pr.pendingSnapshot
        }
      }
    }
    return status
  }

  /**
   * DANGER: unsafe recovery when a quorum is permanently lost. Never called
   * automatically; an operator decides.
   *
   * Takes one surviving node's persisted state and returns a state to restart
   * it from in which the membership is forced to `conf` (normally the
   * survivors). Uncommitted entries are discarded, and a conf-change entry
   * forcing the new membership is appended at a new term and marked committed
   * without any quorum having agreed to it.
   *
   * Why it is dangerous: entries that the lost majority committed but this
   * node never received are lost for good; and any other survivor still has
   * its old log and may disagree with the rewritten one. Run it on exactly
   * ONE survivor (the one with the most up-to-date log), wipe the storage of
   * every other survivor listed in `conf` before restarting them (they come
   * back empty and catch up from the recovered node by log or snapshot), and
   * make sure the lost nodes never come back with their old state.
   */
  static unsafeForceNewCluster (restored: RestoredState, conf: { voters: NodeId[], learners?: NodeId[] }): RestoredState {
    const { hardState, snapshot, entries } = checkRestored(restored)
    const voters = [...new Set(conf.voters)].sort()
    const learners = [...new Set(conf.learners ?? [])].sort()
    if (voters.length === 0 || !voters.every(isValidNodeId) || !learners.every(isValidNodeId)) {
      throw new RangeError('unsafeForceNewCluster: need at least one voter and valid node ids')
    }
    if (learners.some(id => voters.includes(id))) { throw new RangeError('unsafeForceNewCluster: a node cannot be voter and learner') }
    if (voters.length + learners.length > CONF_MEMBERS_MAX) {
      throw new RangeError(`unsafeForceNewCluster: ${voters.length + learners.length} members, more than CONF_MEMBERS_MAX (${CONF_MEMBERS_MAX})`)
    }
    const commit = Math.max(hardState.commit, snapshot?.meta.index ?? 0)
    const term = hardState.term + 1
    const kept = entries.filter(e => e.index <= commit)
    const forced: Entry = {
      term, index: commit + 1, type: 'conf-change', data: encodeConfChange({ force: { voters, learners } })
    }
    const result: RestoredState = { hardState: { term, vote: null, commit: commit + 1 }, entries: [...kept, forced] }
    if (snapshot !== undefined) { result.snapshot = snapshot }
    if (restored.applied !== undefined) { result.applied = restored.applied }
    return result
  }

  // ---------------------------------------------------------------- roles

  private becomeFollower (term: number, lead: NodeId | null): void {
    this.reset(term)
    this.lead = lead
    this.role = 'follower'
    if (lead !== null) { this.quickCampaignsLeft = 0 } else { this.campaignSoon() }
  }

  private becomePreCandidate (): void {
    assert(this.role !== 'leader', 'a leader cannot become pre-candidate')
    // Neither the term nor the vote changes: that is the point of pre-vote.
    this.votes.clear()
    this.lead = null
    this.role = 'pre-candidate'
  }

  private becomeCandidate (): void {
    assert(this.role !== 'leader', 'a leader cannot become candidate')
    this.reset(this.term + 1)
    this.setVote(this.id)
    this.role = 'candidate'
  }

  private becomeLeader (): void {
    assert(this.role === 'candidate', 'only a candidate becomes leader')
    this.reset(this.term)
    this.lead = this.id
    this.role = 'leader'
    const lastIndex = this.log.lastIndex()
    for (const id of this.membership.members()) {
      this.progress.set(id, this.newProgress(id, lastIndex + 1, false))
    }
    this.quickCampaignsLeft = 0
    const self = this.progress.get(this.id)
    assert(self !== undefined, 'a leader must be a member')
    self.match = lastIndex
    self.becomeReplicate()
    self.recentActive = true
    // Conf changes in our uncommitted tail may be pending: none before they apply.
    this.pendingConfIndex = lastIndex
    // The empty entry lets the leader commit everything before it (§5.4.2:
    // entries are committed by counting only in the leader's own term).
    this.appendEntries([{ type: 'normal', data: new Uint8Array(0) }])
  }

  private newProgress (id: NodeId, next: number, recentActive: boolean): Progress {
    const inflights = new Inflights(this.config.inflightMessagesMax, this.config.inflightBytesMax)
    return new Progress(next, !this.membership.isVoter(id), inflights, recentActive)
  }

  private reset (term: number): void {
    if (term !== this.term) {
      assert(term > this.term, `term must not go back (${this.term} -> ${term})`)
      this.term = term
      this.vote = null
      this.dropStaleAppendResponses()
    }
    this.lead = null
    this.electionElapsed = 0
    this.heartbeatElapsed = 0
    this.quorumElapsed = 0
    this.randomizedElectionTimeout = this.config.rng.intBetween(this.config.electionTimeoutTicks, 2 * this.config.electionTimeoutTicks - 1)
    this.leadTransferee = null
    this.votes.clear()
    this.progress.clear()
    this.pendingConfIndex = 0
    this.uncommittedBytes = 0
    this.appendPending = false
    this.leavingSelf = false
    this.counters.readsDropped += this.reads.reset()
    this.lease.reset()
    this.leaseRevoked = false
  }

  /**
   * The term changed: queued append-responses of older terms are dropped.
   * An acceptance promises that the entries up to its index are durable
   * once the next Ready is persisted, but a leader of the new term may
   * overwrite them before that Ready is built (only a newer term can:
   * within one term the leader never contradicts entries a follower
   * acknowledged to it), so the promise could be false; and the deposed
   * leader it is meant for can make no use of it anyway. Everything else
   * queued stays valid: a heartbeat-response states what was true when it
   * was generated (the read round it confirms was sent before); a
   * (pre-)vote grant for an older term cannot be contradicted, because the
   * next Ready persists the newer term and we never vote in the older one
   * again; a deposed leader's appends carry entries that were legitimately
   * created in its term, and its commit index counts only committed
   * entries, which nothing overwrites; read-index messages and answers are
   * checked by their receivers' terms. Raft tolerates the loss of any message.
   */
  private dropStaleAppendResponses (): void {
    this.outbox = this.outbox.filter(m => m.type !== 'append-response' || m.term >= this.term)
  }

  private setVote (id: NodeId): void {
    assert(this.vote === null || this.vote === id, `at most one vote per term (term ${this.term}: ${this.vote} then ${id})`)
    this.vote = id
  }

  private promotable (): boolean {
    return this.membership.voters.has(this.id) || this.membership.votersOutgoing.has(this.id)
  }

  /** We heard from a leader within the election timeout (or restarted within one, in lease mode): no votes for others. */
  private inLease (): boolean {
    if (!this.config.checkQuorum) { return false }
    return (this.lead !== null && this.electionElapsed < this.config.electionTimeoutTicks) || this.restartLeaseTicks > 0
  }

  // ---------------------------------------------------------------- elections

  private tickElection (): void {
    this.electionElapsed++
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout * (1 + this.localHealthScore)) {
      this.electionElapsed = 0
      this.hup(false)
    }
  }

  private tickHeartbeat (): void {
    this.heartbeatElapsed++
    this.electionElapsed++
    this.quorumElapsed++
    if (this.config.checkQuorum && this.quorumElapsed >= this.config.checkQuorumTicks) {
      this.quorumElapsed = 0
      if (!this.quorumActive()) {
        this.becomeFollower(this.term, null)
        return
      }
    }
    if (this.electionElapsed >= this.config.electionTimeoutTicks) {
      this.electionElapsed = 0
      // A transfer that did not finish within an election timeout is abandoned
      // (a leader that was removed tries again).
      this.leadTransferee = null
      if (!this.promotable()) { this.handOver() }
    }
    if (this.heartbeatElapsed >= this.config.heartbeatIntervalTicks) {
      this.heartbeatElapsed = 0
      this.broadcastHeartbeat(this.heartbeatRound())
    }
  }

  /** Check-quorum: did a quorum talk to us since the last check? Resets the marks. */
  private quorumActive (): boolean {
    const active = new Map<NodeId, boolean>()
    for (const [id, pr] of this.progress) {
      active.set(id, id === this.id || pr.recentActive)
      if (id !== this.id) { pr.recentActive = false }
    }
    return jointVoteResult(this.membership.voters, this.membership.votersOutgoing, active) === 'won'
  }

  private hup (transfer: boolean): void {
    if (this.role === 'leader' || !this.promotable()) { return }
    // Our membership may be stale until committed conf changes are applied.
    if (this.hasUnappliedConfChanges()) { return }
    this.startCampaign(this.config.preVote && !transfer ? 'pre-vote' : 'vote', transfer)
  }

  private hasUnappliedConfChanges (): boolean {
    for (let index = Math.max(this.log.applied, this.confIndex) + 1; index <= this.log.committed; index++) {
      if (this.log.entryAt(index)?.type === 'conf-change') { return true }
    }
    return this.log.pendingSnapshot !== undefined
  }

  private startCampaign (type: 'pre-vote' | 'vote', transfer: boolean): void {
    let voteTerm: number
    if (type === 'pre-vote') {
      this.becomePreCandidate()
      voteTerm = this.term + 1
    } else {
      this.becomeCandidate()
      voteTerm = this.term
    }
    this.votes.set(this.id, true)
    if (this.tally() === 'won') {
      this.wonElection(transfer)
      return
    }
    for (const id of this.membership.voterIds()) {
      if (id === this.id) { continue }
      this.send({ type, from: this.id, to: id, term: voteTerm, lastIndex: this.log.lastIndex(), lastTerm: this.log.lastTerm(), transfer })
    }
    // the retry of a quick round (after forgetLeader) comes quickly too
    if (type === 'pre-vote' || !this.config.preVote) { this.quickCampaignsLeft = Math.max(0, this.quickCampaignsLeft - 1) }
    this.campaignSoon()
  }

  private tally (): 'won' | 'lost' | 'pending' {
    return jointVoteResult(this.membership.voters, this.membership.votersOutgoing, this.votes)
  }

  private wonElection (transfer: boolean): void {
    if (this.role === 'pre-candidate') {
      this.startCampaign('vote', transfer)
    } else {
      this.becomeLeader()
      this.broadcastAppend()
      // Start the lease at once: the appends carry no stamp to measure it by.
      if (this.config.readOnlyMode === 'lease') { this.broadcastHeartbeat(this.heartbeatRound()) }
    }
  }

  /** A message from the leader of our term: it is alive. */
  private followLeader (leader: NodeId): void {
    this.electionElapsed = 0
    this.lead = leader
    this.quickCampaignsLeft = 0
  }

  private handleVoteRequest (m: VoteMessage): StepResult {
    const responseType = m.type === 'vote' ? 'vote-response' : 'pre-vote-response'
    // We may vote for whom we already voted for, or for anyone if we have
    // neither voted nor heard from a leader this term; a pre-vote for a
    // future term is granted on log freshness alone.
    const canVote = this.vote === m.from ||
      (this.vote === null && this.lead === null) ||
      (m.type === 'pre-vote' && m.term > this.term)
    if (canVote && !this.outranksPreCandidate(m) && this.log.isUpToDate(m.lastIndex, m.lastTerm)) {
      this.send({ type: responseType, from: this.id, to: m.from, term: m.term, reject: false })
      if (m.type === 'vote') {
        this.electionElapsed = 0
        this.setVote(m.from)
      }
    } else {
      this.send({ type: responseType, from: this.id, to: m.from, term: this.term, reject: true })
    }
    return OK
  }

  /**
   * Two pre-candidates with the same log would grant each other's pre-vote
   * and then split the real vote (likely when both learn at once that the
   * leader is gone, see forgetLeader): of the two, the smaller id refuses
   * the other. A liveness tie-break only: a pre-vote decides nothing, and
   * a node behind in its log still grants the one ahead.
   */
  private outranksPreCandidate (m: VoteMessage): boolean {
    return m.type === 'pre-vote' && this.role === 'pre-candidate' && this.id < m.from &&
      m.lastTerm === this.log.lastTerm() && m.lastIndex === this.log.lastIndex()
  }

  private stepCandidate (m: Message): StepResult {
    switch (m.type) {
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        // Someone won this term.
        this.becomeFollower(this.term, m.from)
        return this.stepFollower(m)
      case 'vote-response':
      case 'pre-vote-response':
        return this.handleVoteResponse(m)
      default:
        return this.ignored('unexpected', `${m.type} while ${this.role}`)
    }
  }

  private handleVoteResponse (m: VoteResponseMessage): StepResult {
    const expected = this.role === 'pre-candidate' ? 'pre-vote-response' : 'vote-response'
    if (m.type !== expected) { return this.ignored('unexpected', `${m.type} while ${this.role}`) }
    if (!this.membership.isVoter(m.from)) { return this.ignored('not-a-member') }
    this.votes.set(m.from, !m.reject)
    const result = this.tally()
    if (result === 'won') { this.wonElection(false) } else if (result === 'lost') { this.becomeFollower(this.term, null) }
    return OK
  }

  // ---------------------------------------------------------------- follower

  private stepFollower (m: Message): StepResult {
    switch (m.type) {
      case 'append':
        this.followLeader(m.from)
        return this.handleAppend(m)
      case 'heartbeat':
        this.followLeader(m.from)
        return this.handleHeartbeat(m)
      case 'snapshot':
        this.followLeader(m.from)
        return this.handleSnapshot(m)
      case 'timeout-now':
        if (m.from !== this.lead) { return this.ignored('not-from-leader') }
        this.hup(true)
        return OK
      case 'read-index-response':
        this.pushReadState({ index: m.index, requestCtx: m.context })
        return OK
      default:
        return this.ignored('unexpected', `${m.type} while follower`)
    }
  }

  private handleAppend (m: AppendMessage): StepResult {
    const reply = (index: number, reject = false, rejectHint = 0, hintTerm = 0): void => {
      this.send({ type: 'append-response', from: this.id, to: m.from, term: this.term, index, reject, rejectHint, hintTerm })
    }
    if (m.prevIndex < this.log.committed) {
      reply(this.log.committed)
      return OK
    }
    const result = this.log.maybeAppend(m.prevIndex, m.prevTerm, m.commit, m.entries)
    if (result !== 'mismatch') {
      reply(result)
      return OK
    }
    const hint = this.log.findConflictByTerm(Math.min(m.prevIndex, this.log.lastIndex()), m.prevTerm)
    reply(m.prevIndex, true, hint.index, hint.term)
    return OK
  }

  private handleHeartbeat (m: HeartbeatMessage): StepResult {
    // The leader caps commit at what we matched, so it is within our log.
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()))
    this.send({ type: 'heartbeat-response', from: this.id, to: m.from, term: this.term, readRound: m.readRound })
    return OK
  }

  private handleSnapshot (m: SnapshotMessage): StepResult {
    const { meta } = m.snapshot
    // Answer with what we now know is committed (after a restore: the snapshot index).
    const reply = (): void => {
      this.send({ type: 'append-response', from: this.id, to: m.from, term: this.term, index: this.log.committed, reject: false, rejectHint: 0, hintTerm: 0 })
    }
    if (meta.index <= this.log.committed) {
      reply()
      return OK
    }
    // Unlike etcd we accept a snapshot whose configuration does not list us
    // yet: the leader sends its latest compacted snapshot, which may predate
    // our addition; the entries after it add us.
    if (this.log.matchTerm(meta.index, meta.term)) {
      // We already have the snapshot's entries: just learn they are committed.
      this.log.commitTo(meta.index)
      reply()
      return OK
    }
    this.log.restore(m.snapshot)
    this.baseConf = meta.conf
    this.confHistory = []
    this.membership = new Membership(meta.conf)
    this.confIndex = meta.index
    reply()
    return OK
  }

  // ---------------------------------------------------------------- leader

  private stepLeader (m: Message): StepResult {
    if (m.type !== 'append-response' && m.type !== 'heartbeat-response' && m.type !== 'read-index') {
      return this.ignored('unexpected', `${m.type} while leader`)
    }
    const pr = this.progress.get(m.from)
    if (pr === undefined) { return this.ignored('not-a-member') }
    switch (m.type) {
      case 'append-response': return this.handleAppendResponse(m, pr)
      case 'heartbeat-response': return this.handleHeartbeatResponse(m, pr)
      case 'read-index':
        if (!this.handleReadRequest({ context: m.context, from: m.from })) { return this.ignored('read-queue-full') }
        return OK
      default: return unreachable(m)
    }
  }

  private handleAppendResponse (m: AppendResponseMessage, pr: Progress): StepResult {
    if (m.index > this.log.lastIndex()) { return this.ignored('unexpected', 'acknowledges entries we do not have') }
    pr.recentActive = true
    if (m.reject) {
      // The hint lets us skip every entry of a term the follower lacks.
      const nextProbe = m.hintTerm > 0 ? this.log.findConflictByTerm(m.rejectHint, m.hintTerm).index : m.rejectHint
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === 'replicate') { pr.becomeProbe() }
        this.sendAppend(m.from)
      }
      return OK
    }
    const wasPaused = pr.isPaused()
    if (!pr.maybeUpdate(m.index) && !(pr.match === m.index && pr.state === 'probe')) { return OK }
    if (pr.state === 'probe') {
      pr.becomeReplicate()
    } else if (pr.state === 'snapshot' && pr.match + 1 >= this.log.firstIndex()) {
      // The follower caught up through the snapshot (or without it).
      pr.becomeProbe()
      pr.becomeReplicate()
    } else if (pr.state === 'replicate') {
      pr.inflights.freeLE(m.index)
    }
    // A new commit index alone is not worth a message per follower: it rides
    // on the next append or heartbeat (one goes out every heartbeat interval,
    // and before a read answer to a follower). Under load that is the next
    // batch; idle followers learn it within a heartbeat interval. This
    // halves the messages per write (etcd-io/raft sends an empty append).
    if (!this.maybeCommit() && wasPaused) { this.sendAppend(m.from) }
    while (this.maybeSendAppend(m.from, false)) { /* fill the window */ }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) { this.completeTransfer(m.from) }
    return OK
  }

  private handleHeartbeatResponse (m: HeartbeatResponseMessage, pr: Progress): StepResult {
    pr.recentActive = true
    pr.probeSent = false
    // The follower is alive: free a window slot so replication cannot stall on lost acks.
    if (pr.state === 'replicate' && pr.inflights.full()) { pr.inflights.freeFirstOne() }
    if (pr.match < this.log.lastIndex()) { this.sendAppend(m.from) }
    if (this.config.readOnlyMode === 'safe') {
      if (this.reads.recordAck(m.from, m.readRound)) { this.releaseConfirmedReads() }
    } else if (this.lease.recordAck(m.from, m.readRound)) {
      this.releaseLeaseReads()
    }
    return OK
  }

  private sendAppend (to: NodeId): void {
    this.maybeSendAppend(to, true)
  }

  /**
   * Sends `to` the entries it lacks (or a snapshot if they were compacted),
   * unless its progress is paused. With `sendIfEmpty` false, nothing is sent
   * when there is nothing new. True if a message was sent.
   */
  private maybeSendAppend (to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to)
    if (pr === undefined || to === this.id || pr.isPaused()) { return false }
    const prevIndex = pr.next - 1
    const prevTerm = this.log.term(prevIndex)
    const entries = this.log.entriesFrom(pr.next, this.config.messageEntriesBytesMax, this.config.messageEntriesMax)
    if (prevTerm === undefined || entries === undefined) { return this.maybeSendSnapshot(to, pr) }
    if (entries.length === 0 && !sendIfEmpty) { return false }
    this.send({ type: 'append', from: this.id, to, term: this.term, prevIndex, prevTerm, entries, commit: this.log.committed })
    const bytes = entries.reduce((sum, e) => sum + e.data.byteLength, 0)
    pr.sentEntries(entries.length, prevIndex + entries.length, bytes)
    return true
  }

  private maybeSendSnapshot (to: NodeId, pr: Progress): boolean {
    // Snapshots are big: only for followers we recently heard from.
    if (!pr.recentActive) { return false }
    const snapshot = this.log.snapshot
    assert(snapshot !== undefined, 'entries were compacted, so a snapshot exists')
    // The whole Snapshot object: the service layer chunks it on the wire.
    this.send({ type: 'snapshot', from: this.id, to, term: this.term, snapshot })
    pr.becomeSnapshot(snapshot.meta.index)
    return true
  }

  private broadcastAppend (): void {
    for (const id of this.progress.keys()) { this.sendAppend(id) }
  }

  private broadcastNewEntries (): void {
    this.appendPending = false
    for (const id of this.progress.keys()) { this.maybeSendAppend(id, false) }
  }

  private broadcastHeartbeat (readRound: number): void {
    for (const [id, pr] of this.progress) {
      if (id !== this.id) { this.sendHeartbeat(id, pr, readRound) }
    }
  }

  private sendHeartbeat (to: NodeId, pr: Progress, readRound: number): void {
    // Never tell a follower to commit beyond what it is known to hold.
    const commit = Math.min(pr.match, this.log.committed)
    this.send({ type: 'heartbeat', from: this.id, to, term: this.term, commit, readRound })
  }

  private sendTimeoutNow (to: NodeId): void {
    // The target campaigns at once and its voters ignore their leases.
    this.leaseRevoked = true
    this.send({ type: 'timeout-now', from: this.id, to, term: this.term })
  }

  /** Appends entries of the current term on the leader; returns the last index. */
  private appendEntries (entries: Array<{ type: EntryType, data: Uint8Array }>): number {
    assert(this.role === 'leader', 'only the leader appends')
    const first = this.log.lastIndex() + 1
    this.log.append(entries.map((e, i) => ({ term: this.term, index: first + i, type: e.type, data: e.data })))
    for (const e of entries) { this.uncommittedBytes += e.data.byteLength }
    const self = this.progress.get(this.id)
    assert(self !== undefined, 'leader progress')
    self.maybeUpdate(this.log.lastIndex())
    this.appendPending = true
    this.maybeCommit()
    return this.log.lastIndex()
  }

  /** Advances commit to what a (joint) quorum matched, counting only entries of our term (§5.4.2). */
  private maybeCommit (): boolean {
    const quorumMatch = jointValue(this.membership.voters, this.membership.votersOutgoing, id => this.progress.get(id)?.match ?? 0)
    const before = this.log.committed
    if (quorumMatch <= before || this.log.term(quorumMatch) !== this.term) { return false }
    const firstInTerm = this.log.term(before) !== this.term
    this.log.commitTo(quorumMatch)
    for (let index = before + 1; index <= quorumMatch; index++) {
      const entry = this.log.entryAt(index)
      if (entry?.term === this.term) { this.uncommittedBytes -= entry.data.byteLength }
    }
    assert(this.uncommittedBytes >= 0, 'uncommitted bytes went negative')
    if (firstInTerm) {
      for (const request of this.reads.takeDeferred()) { this.serveRead(request) }
    }
    return true
  }

  private afterApplyAsLeader (): void {
    if (!this.promotable()) {
      // Our removal (or demotion) is committed and applied.
      if (this.leadTransferee === null) { this.handOver() }
      return
    }
    if (this.membership.isJoint && this.membership.autoLeave && this.log.applied >= this.pendingConfIndex) {
      this.pendingConfIndex = this.appendEntries([{ type: 'conf-change', data: encodeConfChange({ changes: [] }) }])
    }
  }

  /**
   * A leader that is no longer a voter hands leadership to the most
   * caught-up voter: it replicates to it until it holds the whole log, then
   * sends MsgTimeoutNow and steps down. Stepping down before a voter holds
   * the whole log could leave voters that still use an older configuration
   * (they have not learned the removal is committed) unable to elect anyone.
   * If the target cannot catch up within an election timeout, another try.
   */
  private handOver (): void {
    let best: NodeId | null = null
    let bestMatch = -1
    for (const id of this.membership.voterIds()) {
      const match = this.progress.get(id)?.match ?? -1
      if (match > bestMatch) {
        best = id
        bestMatch = match
      }
    }
    if (best === null) {
      this.becomeFollower(this.term, null)
      return
    }
    this.leadTransferee = best
    if (bestMatch === this.log.lastIndex()) { this.completeTransfer(best) } else { this.sendAppend(best) }
  }

  private completeTransfer (to: NodeId): void {
    this.sendTimeoutNow(to)
    // A removed leader does not wait: its successor holds everything it has.
    if (!this.promotable()) { this.becomeFollower(this.term, null) }
  }

  // ---------------------------------------------------------------- reads

  /** Returns false when the queue is full. */
  private handleReadRequest (request: ReadRequest): boolean {
    if (this.reads.isFull()) {
      this.counters.readsDropped++
      return false
    }
    // Until we commit an entry of our own term our commit index may be stale.
    if (this.log.term(this.log.committed) !== this.term) { this.reads.defer(request) } else { this.serveRead(request) }
    return true
  }

  private serveRead (request: ReadRequest): void {
    const index = this.log.committed
    const alone = jointVoteResult(this.membership.voters, this.membership.votersOutgoing, new Map([[this.id, true]])) === 'won'
    if (alone || (this.config.readOnlyMode === 'lease' && this.leaseHolds())) {
      this.answerRead(request, index)
      return
    }
    if (this.config.readOnlyMode === 'lease') {
      // No lease now: the read waits for a heartbeat round (one goes out
      // every heartbeat interval) to renew it, or to confirm our leadership
      // after the read arrived, whichever comes first. Heartbeats stamped
      // with the current tick may have left before the read arrived, so it
      // waits for the next stamp: that confirmation needs no clock at all
      // (as ReadIndex), which matters once MsgTimeoutNow revoked the lease.
      this.reads.addStamped(request, index, this.lease.stamp() + 1)
      return
    }
    const round = this.reads.add(request, index)
    if (round !== null) { this.broadcastHeartbeat(round) }
  }

  /** The round heartbeats sent now carry: the lease stamp, or the newest read round waiting. */
  private heartbeatRound (): number {
    return this.config.readOnlyMode === 'lease' ? this.lease.stamp() : this.reads.heartbeatRound()
  }

  /** The newest heartbeat stamp a (joint) quorum of voters acknowledged; ours is the current one. */
  private quorumLeaseStamp (): number {
    return jointValue(this.membership.voters, this.membership.votersOutgoing,
      id => id === this.id ? this.lease.stamp() : this.lease.ackedStamp(id))
  }

  private leaseHolds (): boolean {
    return !this.leaseRevoked && this.lease.holds(this.quorumLeaseStamp())
  }

  private releaseLeaseReads (): void {
    const confirmed = this.leaseHolds() ? Number.POSITIVE_INFINITY : this.quorumLeaseStamp()
    for (const read of this.reads.release(confirmed)) { this.answerRead(read, read.index) }
  }

  private releaseConfirmedReads (): void {
    const confirmed = jointValue(this.membership.voters, this.membership.votersOutgoing,
      id => id === this.id ? this.reads.currentRound() : this.reads.ackedRound(id))
    for (const read of this.reads.release(confirmed)) { this.answerRead(read, read.index) }
  }

  private answerRead (request: ReadRequest, index: number): void {
    if (request.from === this.id) {
      this.pushReadState({ index, requestCtx: request.context })
      return
    }
    // The follower serves the read once it applied `index`: tell it the
    // commit index first, since commits are not broadcast on their own.
    const pr = this.progress.get(request.from)
    if (pr !== undefined && pr.match >= index) { this.sendHeartbeat(request.from, pr, this.heartbeatRound()) }
    this.send({ type: 'read-index-response', from: this.id, to: request.from, term: this.term, index, context: request.context })
  }

  private pushReadState (state: ReadState): void {
    if (this.readStates.length >= this.config.readIndexQueueMax) {
      this.counters.readsDropped++
      return
    }
    this.readStates.push(state)
  }

  // ---------------------------------------------------------------- membership

  private applyConfEntry (entry: Entry): void {
    if (entry.index <= this.confIndex) { return }
    const record = decodeConfChange(entry.data)
    const next = typeof record === 'string' ? record : applyConfChange(this.membership, record)
    if (typeof next === 'string') {
      // A conf change that became invalid (e.g. proposed by an old leader
      // against another configuration) is skipped, identically on every node.
      this.counters.confChangesSkipped++
      return
    }
    // applyConfChange refuses to grow a configuration beyond the bound
    assert(next.memberCount <= Math.max(CONF_MEMBERS_MAX, this.membership.memberCount),
      `conf change at index ${entry.index} would make ${next.memberCount} members`)
    this.membership = next
    this.confIndex = entry.index
    this.confHistory.push({ index: entry.index, conf: next.toConfState() })
    if (this.role === 'leader') { this.syncProgressWithMembership() }
  }

  private syncProgressWithMembership (): void {
    for (const id of [...this.progress.keys()]) {
      // Our own progress stays: a removed leader leads until it hands over.
      if (!this.membership.isMember(id) && id !== this.id) { this.progress.delete(id) }
    }
    for (const id of this.membership.members()) {
      const pr = this.progress.get(id)
      // A new member counts as active so that check-quorum does not fire before it could answer.
      if (pr === undefined) { this.progress.set(id, this.newProgress(id, this.log.lastIndex() + 1, true)) } else { pr.isLearner = !this.membership.isVoter(id) }
    }
    if (this.leadTransferee !== null && !this.membership.isVoter(this.leadTransferee)) { this.leadTransferee = null }
    // The quorum changed: maybe more is committed now, and new members need the log.
    if (this.maybeCommit()) { this.broadcastAppend() } else { for (const id of this.progress.keys()) { this.maybeSendAppend(id, false) } }
  }

  private confAt (index: number): ConfState {
    let conf = this.baseConf
    for (const h of this.confHistory) {
      if (h.index <= index) { conf = h.conf }
    }
    return conf
  }

  // ---------------------------------------------------------------- plumbing

  private send (message: Message): void {
    assert(message.to !== this.id, 'never send to self')
    if (this.outbox.length >= this.config.outboxMessagesMax) {
      this.counters.outboxDropped++
      return
    }
    this.outbox.push(message)
  }

  private ignored (reason: StepRejectReason, detail?: string): StepResult {
    this.counters.ignoredMessages++
    return detail === undefined ? { ok: false, reason } : { ok: false, reason, detail }
  }

  private hardState (): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed }
  }

  private checkInvariants (): void {
    const log = this.log
    assert(log.committed <= log.lastIndex(), 'commit <= lastIndex')
    assert(log.applied <= log.committed, 'applied <= commit')
    assert(log.snapshotIndex <= log.committed, 'snapshot <= commit')
    assert(log.stabled <= log.lastIndex(), 'stabled <= lastIndex')
    assert(this.term >= this.lastHardState.term, 'term is monotonic')
    assert(this.lastHardState.term < this.term || this.lastHardState.vote === null || this.lastHardState.vote === this.vote,
      'a persisted vote is never changed within its term')
    if (this.role === 'leader') {
      assert(this.lead === this.id && this.vote === this.id, 'a leader leads and voted for itself')
      assert(this.progress.get(this.id)?.match === log.lastIndex(), 'the leader matches its own log')
      assert(log.lastTerm() === this.term, 'a leader has an entry of its term')
    } else {
      assert(this.progress.size === 0, 'only a leader tracks progress')
    }
  }
}

function sameHardState (a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit
}

/** Validates a RestoredState from the caller's storage (a corrupt one is a caller error: throws RestoredStateError). */
function checkRestored (restored: RestoredState): { hardState: HardState, snapshot: Snapshot | undefined, entries: Entry[] } {
  const { hardState, snapshot, entries } = restored
  const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
  if (typeof hardState !== 'object' || hardState === null || !isCount(hardState.term) || !isCount(hardState.commit) ||
    (hardState.vote !== null && !isValidNodeId(hardState.vote))) {
    throw new RestoredStateError('raft: restored hardState is malformed')
  }
  if (!Array.isArray(entries)) { throw new RestoredStateError('raft: restored entries must be an array') }
  if (restored.applied !== undefined && !isCount(restored.applied)) { throw new RestoredStateError('raft: restored applied is malformed') }
  try {
    const checkedEntries = entries.map(parseEntry)
    // as from a leader whose term is ours: a snapshot's term is never newer than the hard state's
    return { hardState, snapshot: snapshot === undefined ? undefined : parseSnapshot(snapshot, hardState.term), entries: checkedEntries }
  } catch (err) {
    if (err instanceof InvalidMessageError) { throw new RestoredStateError(`raft: restored state is malformed: ${err.message}`) }
    throw err
  }
}
