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
import { SlotLog, signedKey, signedSeq } from './log.ts'
import { RequestQueue, requestKey } from './requests.ts'
import { replayRecords } from './restore.ts'
import { Suspicion } from './suspicion.ts'
import { checkNewView, planNewView } from './view-change.ts'
import type { PbftLimits } from './config.ts'
import type { Slot } from './log.ts'
import type {
  Checkpoint, ClientRequest, Commit, CommittedBatches, Digest, Evidence, FetchCommitted, Isolation, IsolationReason,
  NewView, NodeId, PbftCrypto, PbftMessage, PbftReady, PbftRestored, PbftStatus, PersistRecord, PrePrepare, Prepare,
  ReplicaMessage, SignedMessage, StableCheckpoint, StepRejectReason, StepResult, ViewChange
} from './types.ts'
import type { NewViewPlan } from './view-change.ts'

export interface PbftConfigInit {
  id: NodeId
  /** Identical on every replica; primary(v) = replicas[v mod n]. */
  replicas: NodeId[]
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

function reject (reason: StepRejectReason, detail?: string): StepResult {
  return detail === undefined ? { ok: false, reason } : { ok: false, reason, detail }
}

function emptyReady (): PbftReady {
  return { persist: [], messages: [], execute: [], checkpointsDue: [], stable: null, stateWanted: null, evidence: [], isolated: [] }
}

function readyIsEmpty (ready: PbftReady): boolean {
  return ready.persist.length === 0 && ready.messages.length === 0 && ready.execute.length === 0 &&
    ready.checkpointsDue.length === 0 && ready.stable === null && ready.stateWanted === null &&
    ready.evidence.length === 0 && ready.isolated.length === 0
}

type Vote = Prepare | Commit

export class PbftReplica {
  readonly id: NodeId
  readonly #replicas: NodeId[]
  readonly #crypto: PbftCrypto
  readonly #limits: PbftLimits
  readonly #f: number
  readonly #quorum: number

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
  readonly #future: FutureBuffer
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
  /** Peers that sent messages of a later view than this replica's (it may have missed a NEW-VIEW). */
  readonly #peersInLaterViews = new Set<NodeId>()
  /** The NEW-VIEW of the current view (sent or installed): shown to replicas still asking for an earlier view. */
  #newView: NewView | null = null
  /** Ticks so far: the age of pending requests is counted in them. */
  #ticks = 0
  readonly #suspicion: Suspicion

  #out: PbftReady = emptyReady()
  #readyOutstanding = false

  constructor (config: PbftConfigInit, restored?: PbftRestored) {
    const { id, replicas, crypto } = config
    if (typeof id !== 'string' || id.length === 0) { throw new RangeError('pbft: id must be a non-empty string') }
    if (!Array.isArray(replicas) || replicas.length === 0 || new Set(replicas).size !== replicas.length) {
      throw new RangeError('pbft: replicas must be a non-empty list of distinct ids')
    }
    if (!replicas.includes(id)) { throw new RangeError(`pbft: ${id} is not among the replicas`) }
    this.id = id
    this.#replicas = [...replicas]
    this.#crypto = crypto
    this.#limits = resolvePbftLimits(config.limits)
    this.#f = faultsTolerated(replicas.length)
    this.#quorum = config.sabotageQuorum ?? quorumSize(replicas.length)
    if (!Number.isSafeInteger(this.#quorum) || this.#quorum < 1 || this.#quorum > replicas.length) { throw new RangeError('pbft: quorum out of range') }
    this.#requests = new RequestQueue(this.#limits)
    this.#future = new FutureBuffer(this.#limits, replicas.length)
    this.#checkpoints = new CheckpointVotes(this.#limits)
    this.#suspicion = new Suspicion(replicas, id)
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
    }
    this.#executeCommitted()
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
      scores: this.#suspicion.list()
    }
  }

  // ------------------------------------------------------------- input

  step (message: ReplicaMessage, link: NodeId): StepResult {
    if (!this.#replicas.includes(link)) { return reject('not-a-replica', `${link} is not a replica`) }
    if (this.#isolated.has(link)) { return reject('isolated') }
    if (link === this.id) { return reject('wrong-sender', 'a message from this replica itself') }
    if (typeof message !== 'object' || message === null || typeof (message as { replica?: unknown }).replica !== 'string') {
      return reject('malformed', 'not a replica message')
    }
    if (message.replica !== link) { return reject('wrong-sender', `claims ${message.replica}, came from ${link}`) }
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
      default: return reject('malformed', `unknown message type ${String((message as { type?: unknown }).type)}`)
    }
  }

  request (request: ClientRequest): StepResult {
    if (request?.type !== 'request' || !(request.operation instanceof Uint8Array)) { return reject('malformed', 'not a request') }
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
    return OK
  }

  tick (): void {
    this.#ticks++
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
    } else if (this.#requests.waiting) {
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
      if (this.#behind()) { this.#broadcast({ type: 'fetch-committed', replica: this.id, fromSeq: this.#executed + 1 }) }
      this.#peerAhead = false
    }
  }

  checkpointTaken (seq: number, stateDigest: Digest): void {
    assert(seq % this.#limits.checkpointInterval === 0, `checkpointTaken(${seq}) for a seq not listed in checkpointsDue`)
    // a report from before a state transfer took this replica back (or past it) is out of date
    if (seq <= this.#durableStable || seq > this.#executed || this.#stateWanted !== null) { return }
    const signed = this.#signed.get(`checkpoint/${seq}`) as Checkpoint | undefined
    if (signed !== undefined && signed.stateDigest !== stateDigest) {
      // executed again after a state transfer, to another state: it cannot sign a second checkpoint there
      return
    }
    const checkpoint = this.#sign<Checkpoint>({ type: 'checkpoint', replica: this.id, seq, stateDigest })
    this.#broadcast(checkpoint)
    this.#checkpoints.add(checkpoint)
    if (seq === this.#low && this.#stateWanted === null) {
      // proven by others before this replica got there: it holds the state now, or holds a wrong one
      if (stateDigest === this.#stable.stateDigest) { this.#persistStable(this.#stable) } else { this.#wantState(this.#stable) }
    } else if (seq > this.#low) {
      this.#checkStable(seq)
    }
  }

  stateInstalled (checkpoint: StableCheckpoint): void {
    assert(checkStableCheckpoint(checkpoint, this.#replicas, this.#crypto) === null, 'stateInstalled: the checkpoint must be proven')
    if (checkpoint.seq <= this.#durableStable) { return }
    if (checkpoint.seq > this.#low) { this.#moveLowWatermark(checkpoint) }
    if (this.#stateWanted !== null && this.#stateWanted.seq <= checkpoint.seq) { this.#stateWanted = null }
    this.#executed = checkpoint.seq
    // the state may hold requests waiting here, which then never execute here: clients retransmit those it does not
    this.#requests.clear()
    this.#persistStable(checkpoint)
    this.#executeCommitted()
  }

  receiveEvidence (evidence: Evidence): StepResult {
    const checked = checkEvidence(evidence, this.#replicas, this.#crypto)
    if (!checked.ok) { return reject('malformed', checked.error) }
    if (this.#isolated.has(evidence.offender)) { return reject('duplicate', 'offender already isolated') }
    // Twins: another process signing with this replica's key; this replica cannot isolate itself
    if (evidence.offender === this.id) { return reject('conflict', 'evidence against this replica') }
    this.isolate(evidence.offender, 'equivocation')
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
    if (peer === this.#primary && !this.#changing) { this.#startViewChange(this.#view + 1) }
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

  // ------------------------------------------------------------- output

  hasReady (): boolean {
    if (this.#readyOutstanding) { return false }
    return !readyIsEmpty(this.#out) || this.#canPropose()
  }

  /** The work to do: persist, then send, then execute. At most one is outstanding: advance() before the next ready(). */
  ready (): PbftReady {
    assert(!this.#readyOutstanding, 'ready() called again before advance()')
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
    return this.#isPrimary && !this.#changing && this.#requests.pendingCount > 0 &&
      this.#nextSeq < this.#high && this.#nextSeq - Math.max(this.#executed, this.#low) < this.#limits.pipelineMax
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
      assert(batch.length > 0, 'a pending request always fits a batch')
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
    if (prePrepare.replica !== primaryOf(prePrepare.view, this.#replicas)) { return reject('not-primary', `not the primary of view ${prePrepare.view}`) }
    const admitted = this.#admit(prePrepare, link)
    if (admitted !== 'now') { return admitted }
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
    for (const request of prePrepare.batch) { this.#requests.markInFlight(request) }
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
    if (vote.type === 'prepare' && vote.replica === primaryOf(vote.view, this.#replicas)) { return reject('malformed', 'the primary does not prepare') }
    const admitted = this.#admit(vote, link)
    if (admitted !== 'now') { return admitted }
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
    if (this.#stateWanted !== null) { return }
    let progressed = false
    for (;;) {
      const slot = this.#log.get(this.#executed + 1)
      if (slot?.committed == null) { break }
      const { prePrepare } = slot.committed
      assert(prePrepare.seq === this.#executed + 1, 'executed seqs are strictly consecutive')
      this.#executed = prePrepare.seq
      this.#out.execute.push({ seq: prePrepare.seq, view: prePrepare.view, requests: prePrepare.batch })
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
    const proven = this.#checkpoints.proven(seq, this.#quorum)
    if (proven === null || proven.seq <= this.#low) { return }
    this.#stableProven(proven)
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
    const mine = this.#signed.get(`checkpoint/${stable.seq}`) as Checkpoint | undefined
    if (mine !== undefined) {
      if (mine.stateDigest === stable.stateDigest) { this.#persistStable(stable) } else { this.#wantState(stable) }
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
    const holders = stable.proof.map(c => c.replica).filter(r => r !== this.id && !this.#isolated.has(r))
    this.#out.stateWanted = { checkpoint: stable, holders }
  }

  // ------------------------------------------------------------- catch-up

  /** Behind: a gap below a committed batch, or another replica checkpointed or sent messages past what this one executed. */
  #behind (): boolean {
    if (this.#stateWanted !== null) { return false }
    if (this.#peerAhead) { return true }
    if (this.#log.get(this.#executed + 1)?.committed != null) { return false }
    for (const slot of this.#log.values()) {
      if (slot.seq > this.#executed + 1 && slot.committed !== null) { return true }
    }
    return this.#checkpoints.anyAbove(Math.max(this.#executed, this.#low))
  }

  #onFetchCommitted (fetch: FetchCommitted, link: NodeId): StepResult {
    if (!Number.isSafeInteger(fetch.fromSeq) || fetch.fromSeq < 1) { return reject('malformed', 'bad fromSeq') }
    if (fetch.fromSeq <= this.#low) {
      // the asker is behind this replica's stable checkpoint: its checkpoint helps it prove one
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
    for (const certificate of answer.certificates) {
      const { seq } = certificate.prePrepare
      if (seq <= Math.max(this.#executed, this.#low) || seq > this.#high) { continue }
      const slot = this.#log.at(seq, this.#view)
      if (slot.committed !== null) { continue }
      const problem = checkCommittedCertificate(certificate, this.#replicas, this.#crypto, this.#limits)
      if (problem !== null) { return reject('bad-signature', `committed certificate for seq ${seq} from ${link}: ${problem}`) }
      slot.committed = certificate
      this.#persist({ kind: 'committed', certificate })
    }
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
    const problem = checkViewChange(viewChange, this.#replicas, this.#crypto, this.#limits)
    if (problem !== null) { return reject('malformed', problem) }
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
    if (!this.#changing || this.#viewChangeTimer !== null) { return }
    // a replica asking for a later view has given up this one too
    let asking = 0
    for (const vc of this.#viewChanges.values()) { if (vc.view >= this.#view) { asking++ } }
    if (asking >= this.#quorum) { this.#viewChangeTimer = this.#viewChangeTimeout() }
  }

  /** f+1 replicas ask for views above this one: at least one honest replica timed out, so join the smallest of them. */
  #maybeJoin (): void {
    const higher = [...this.#viewChanges.values()].filter(vc => vc.view > this.#view)
    if (higher.length < this.#f + 1) { return }
    this.#startViewChange(Math.min(...higher.map(vc => vc.view)))
  }

  #maybeSendNewView (): void {
    if (!this.#changing || !this.#isPrimary || this.#signed.has(`new-view/${this.#view}`)) { return }
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
    const checked = checkNewView(newView, this.#replicas, this.#crypto, this.#limits)
    if (!checked.ok) {
      if (checked.badSignature === true && newView.replica === link) { return this.#forged(link, 'new view') }
      return reject('malformed', checked.error)
    }
    this.#installNewView(newView, checked.plan)
    return OK
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
