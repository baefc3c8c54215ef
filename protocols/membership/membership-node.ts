/**
 * One SWIM member with Lifeguard, as an I/O-free core (the shape of the Raft
 * core: inputs are method calls, outputs are data drained with ready()).
 *
 * - Failure detection (SWIM, Das et al. 2002; HashiCorp memberlist): each
 * protocol period probes one member, in randomized round-robin order
 * (probe-order.ts). No ack within the probe timeout: k other members probe
 * it for us (ping-req). No ack by the end of the period: we suspect it.
 * A suspicion that nobody refutes in time (suspicion.ts) makes it dead.
 * - Incarnations: a suspected member refutes by raising its incarnation and
 * announcing itself alive; precedence.ts orders the news.
 * - Lifeguard (Dadgar et al. 2018): local health awareness stretches our own
 * timeouts when we are the slow one (awareness.ts), intermediaries nack
 * when they cannot reach the target, and suspicion timeouts shrink with
 * independent confirmations.
 * - Dissemination: updates piggyback on every message, each a bounded number
 * of times (broadcast-queue.ts). The updates this member originates also
 * come out in Ready.publish, for a driver that broadcasts them (a gossipsub
 * topic), and receiveGossip() takes such broadcasts from others.
 * - join(seeds) transfers a seed's member list, page by page; leave() spreads
 * `left` and reports `leave:done` once it has gone out.
 *
 * Time: the driver calls tick() at a fixed interval; every duration is a
 * whole number of ticks (config.ts). A core that took advance(ms) instead
 * would have to round anyway and would make a run depend on the driver's
 * timer jitter; with ticks the same inputs give the same outputs, as in
 * the Raft core, and the simulator and the service drive it the same way.
 *
 * No I/O, no clock, no Math.random: randomness is the injected Rng.
 */
import { assert, unreachable } from '../common/assert.ts'
import { LocalHealth } from './awareness.ts'
import { BroadcastQueue, retransmitLimit } from './broadcast-queue.ts'
import { INCARNATION_JUMP_MAX, INCARNATION_MAX, isValidMemberId, resolveConfig } from './config.ts'
import { MemberTable } from './member-table.ts'
import { isLive, supersedes } from './precedence.ts'
import { ProbeOrder } from './probe-order.ts'
import { messageBytes, updateBytes } from './size.ts'
import { expectedConfirmations, Suspicion, suspicionTimeoutMinTicks } from './suspicion.ts'
import { InvalidMessageError, validateGossip, validateMessage } from './validate.ts'
import type { MembershipConfig, MembershipConfigInit } from './config.ts'
import type { MemberRecord } from './member-table.ts'
import type {
  AckMessage, AliveUpdate, JoinAckMessage, JoinMessage, MemberId, MemberInfo, MembershipCounters, MembershipEvent,
  MembershipStatus, Message, NackMessage, PingMessage, PingReqMessage, Ready, SetMetaResult, StepRejectReason,
  StepResult, Update
} from './types.ts'
import type { Rng } from '../common/rng.ts'

const OK: StepResult = { ok: true }
const NO_SKIP: readonly MemberId[] = []
/** Suspicions whose suspect we keep notifying each period (bounds the extra pings a partition could cause). */
const SUSPECT_NOTICES_MAX = 8

/** The probe of the current protocol period. */
interface Probe {
  readonly target: MemberId
  readonly seq: number
  /** Direct ack expected by then; then ping-reqs go out. */
  readonly timeoutTick: number
  acked: boolean
  indirectSent: boolean
  /** The members asked to probe indirectly. */
  via: MemberId[]
  /** Intermediaries that nacked. */
  readonly nacks: Set<MemberId>
}

/** An indirect probe this node runs for `origin`. Kept in a Map in deadline order. */
interface Relay {
  readonly origin: MemberId
  readonly originSeq: number
  readonly target: MemberId
  readonly nack: boolean
  readonly deadlineTick: number
}

interface JoinState {
  readonly seeds: MemberId[]
  index: number
  attempts: number
  after: MemberId | null
  pages: number
  deadlineTick: number
}

/** Message without its piggyback, as handed to send(). */
type Outgoing = Omit<PingMessage, 'updates'> | Omit<AckMessage, 'updates'> | Omit<NackMessage, 'updates'> |
Omit<PingReqMessage, 'updates'> | Omit<JoinMessage, 'updates'> | Omit<JoinAckMessage, 'updates'>

export class MembershipNode {
  readonly id: MemberId
  private readonly config: MembershipConfig
  private readonly rng: Rng
  private readonly table: MemberTable
  private readonly order: ProbeOrder
  private readonly queue: BroadcastQueue
  private readonly health: LocalHealth
  /** One per suspect member (and only those), at the record's incarnation. */
  private readonly suspicions = new Map<MemberId, Suspicion>()
  /** No suspicion deadline is earlier (a lower bound: recomputed when reached). */
  private nextSuspicionTick = Number.POSITIVE_INFINITY
  private readonly relays = new Map<number, Relay>()
  /** Suspicions we started (member -> incarnation), whose suspect we keep notifying; the newest SUSPECT_NOTICES_MAX. */
  private readonly notices = new Map<MemberId, number>()
  private probe: Probe | null = null
  private nextProbeTick: number
  private nextSeq = 1
  private now = 0
  /** alive + suspect records, self included while it has not left. */
  private liveCount: number
  private joining: JoinState | null = null
  /** The member a sync page was asked of, and until when we wait for it. */
  private syncing: { peer: MemberId, deadlineTick: number } | null = null
  private nextSyncTick: number
  private joinRepliesLeft: number
  private joinWindowStart = 0
  private leaving = false
  private leftDone = false
  /** The table's ids in sorted order, for join pages (dropped when members come or go). */
  private sortedIds: MemberId[] | null = null
  private outbox: Message[] = []
  private events: MembershipEvent[] = []
  /** Updates we originated since the last ready(), one per member, oldest first (Ready.publish). */
  private publishing = new Map<MemberId, Update>()
  private readonly counters: MembershipCounters = {
    invalidMessages: 0,
    rejectedMessages: 0,
    unmatchedAcks: 0,
    probes: 0,
    probesFailed: 0,
    indirectProbes: 0,
    nacksSent: 0,
    nacksMissed: 0,
    refutations: 0,
    suspicionsStarted: 0,
    deadDeclared: 0,
    membersRefused: 0,
    updatesIgnored: 0,
    updatesImplausible: 0,
    broadcastsDropped: 0,
    outboxDropped: 0,
    eventsDropped: 0,
    reconnectProbes: 0,
    joinRequestsRefused: 0,
    reannouncements: 0,
    introductions: 0,
    suspectNotices: 0,
    syncs: 0,
    updatesPublished: 0,
    publishDropped: 0,
    gossipBatches: 0,
    gossipNews: 0
  }

  /**
   * @param config - this member's id plus any settings that differ from MEMBERSHIP_DEFAULTS
   * @param rng - the only source of randomness (probe order, intermediaries, stagger)
   */
  constructor (config: MembershipConfigInit, rng: Rng) {
    this.config = resolveConfig(config)
    this.id = this.config.id
    this.rng = rng
    const roster = this.config.roster
    if (roster !== undefined && roster.metaBytesMax > this.config.metaBytesMax) {
      throw new RangeError('membership: the roster carries metadata larger than metaBytesMax')
    }
    this.table = new MemberTable(roster)
    this.order = new ProbeOrder(roster?.ids ?? [])
    this.queue = new BroadcastQueue(this.config.broadcastQueueMax)
    this.health = new LocalHealth(this.config.awarenessMax)
    this.liveCount = this.table.size
    this.joinRepliesLeft = this.config.joinRepliesPerPeriodMax

    const listed = this.table.get(this.id)
    const incarnation = Math.max(this.config.incarnation, listed?.incarnation ?? 0)
    const me: MemberRecord = { id: this.id, state: 'alive', incarnation, meta: this.config.meta.slice(), changedTick: 0 }
    this.table.set(me)
    if (listed === undefined) {
      this.order.insert(this.id, this.rng)
      this.liveCount++
    }
    if (listed !== undefined && (listed.incarnation !== incarnation || !bytesEqual(listed.meta, me.meta))) {
      this.queue.enqueue(this.selfAlive())
    }
    this.publish(this.selfAlive())
    // A random phase, so that members started together do not probe (or sync) in lockstep.
    this.nextProbeTick = this.rng.intBetween(1, this.config.probeIntervalTicks)
    this.nextSyncTick = this.config.syncIntervalTicks === 0 ? Number.POSITIVE_INFINITY : this.rng.intBetween(1, this.config.syncIntervalTicks)
    this.assertInvariants()
  }

  // ---------------------------------------------------------------- inputs

  /**
   * Feeds one message from the network. Never throws on bad input: a
   * malformed or oversized message is rejected ('invalid-message',
   * 'too-large'), and so is a well-formed one this node will not act on
   * (see StepRejectReason); a rejected message changes nothing.
   */
  step (input: unknown): StepResult {
    const m = validateMessage(input, this.config)
    if (m instanceof InvalidMessageError) {
      this.counters.invalidMessages++
      return { ok: false, reason: m.reason, detail: m.message }
    }
    const refusal = this.refusal(m)
    if (refusal !== null) {
      this.counters.rejectedMessages++
      return refusal
    }
    for (const u of m.updates) { this.applyUpdate(u, true, m.from) }
    switch (m.type) {
      case 'ping': this.send({ type: 'ack', from: this.id, to: m.from, seq: m.seq, announce: !this.table.has(m.from) }); break
      case 'ack': this.handleAck(m); break
      case 'nack': this.handleNack(m); break
      case 'ping-req': this.handlePingReq(m); break
      case 'join': this.handleJoin(m); break
      case 'join-ack': this.handleJoinAck(m); break
      default: unreachable(m)
    }
    this.assertInvariants()
    return OK
  }

  /**
   * Feeds a batch of updates that `from` broadcast (the service: a
   * gossipsub message whose signature names `from`). The batch passes the
   * checks a message's piggyback does (validate.ts, messageBytesMax, and
   * INCARNATION_JUMP_MAX for news `from` relays about others) and is
   * rejected whole on any bad field; never throws on bad input. Accepted
   * updates are applied as piggybacked ones are and may be piggybacked
   * further, but are never published again: the broadcast channel
   * forwards them itself.
   */
  receiveGossip (from: MemberId, updates: unknown): StepResult {
    const batch = validateGossip(from, updates, this.config)
    if (batch instanceof InvalidMessageError) {
      this.counters.invalidMessages++
      return { ok: false, reason: batch.reason, detail: batch.message }
    }
    if (batch.from === this.id || this.leftDone) {
      this.counters.rejectedMessages++
      return refuse(batch.from === this.id ? 'from-self' : 'left')
    }
    this.counters.gossipBatches++
    for (const u of batch.updates) {
      if (this.applyUpdate(u, true, batch.from)) { this.counters.gossipNews++ }
    }
    this.assertInvariants()
    return OK
  }

  /** One tick of the driver's clock. */
  tick (): void {
    this.now++
    if (this.leftDone) { return }
    if (this.relays.size > 0) { this.expireRelays() }
    if (this.now >= this.nextSuspicionTick) { this.fireSuspicions() }
    if (this.joining !== null && this.now >= this.joining.deadlineTick) { this.joinTimedOut() }
    if (this.syncing !== null && this.now >= this.syncing.deadlineTick) { this.syncing = null }
    if (this.now >= this.nextSyncTick) { this.sync() }
    const probe = this.probe
    if (probe !== null && !probe.acked && !probe.indirectSent && this.now >= probe.timeoutTick) { this.sendIndirectProbes(probe) }
    if (this.now >= this.nextProbeTick) { this.nextPeriod() }
    if (this.leaving) { this.checkLeaveDone() }
    this.assertInvariants()
  }

  /**
   * Joins the cluster through `seedIds`: asks one seed (a random one first,
   * the next on timeout) for its member list, page by page, with our alive
   * update attached so that the seed spreads the news of us. Ends with a
   * `join:done` or `join:failed` event. Returns false when no seed other
   * than this member was given. Ids are checked: bad ones throw (a
   * programming or configuration error), as do more than seedsMax.
   */
  join (seedIds: readonly MemberId[]): boolean {
    if (!Array.isArray(seedIds)) { throw new TypeError('join: seedIds must be an array') }
    if (this.leaving) { throw new Error('join: this member has left') }
    for (const id of seedIds) {
      if (!isValidMemberId(id)) { throw new RangeError(`join: invalid seed id ${JSON.stringify(id)}`) }
    }
    const seeds = [...new Set(seedIds)].filter(id => id !== this.id)
    if (seeds.length > this.config.seedsMax) { throw new RangeError(`join: more than seedsMax (${this.config.seedsMax}) seeds`) }
    if (seeds.length === 0) { return false }
    shuffle(seeds, this.rng)
    this.joining = { seeds, index: 0, attempts: 0, after: null, pages: 0, deadlineTick: 0 }
    this.sendJoinRequest(this.joining)
    this.publish(this.selfAlive())
    this.assertInvariants()
    return true
  }

  /**
   * Leaves the cluster gracefully: we become `left` at our incarnation, and
   * keep probing (without suspecting anyone) only to hand the news out; a
   * `leave:done` event follows once it went out its full retransmit count,
   * after which the driver may stop this node (tick() and step() do nothing
   * then). Idempotent.
   */
  leave (): void {
    if (this.leaving) { return }
    this.leaving = true
    this.joining = null
    this.syncing = null
    this.notices.clear()
    const me = this.self()
    this.table.set({ ...me, state: 'left', changedTick: this.now })
    this.liveCount--
    const left: Update = { kind: 'left', id: this.id, incarnation: me.incarnation }
    this.queue.enqueue(left)
    this.publish(left)
    this.emit({ type: 'member:leave', id: this.id, incarnation: me.incarnation })
    this.checkLeaveDone()
    this.assertInvariants()
  }

  /**
   * Replaces this member's metadata (at most metaBytesMax bytes; copied):
   * the incarnation goes up so that the new alive update supersedes the old
   * one everywhere.
   */
  setMeta (meta: Uint8Array): SetMetaResult {
    if (!(meta instanceof Uint8Array)) { throw new TypeError('setMeta: meta must be a Uint8Array') }
    if (this.leaving) { return { ok: false, reason: 'left' } }
    if (meta.byteLength > this.config.metaBytesMax) {
      return { ok: false, reason: 'too-large', detail: `${meta.byteLength} bytes > metaBytesMax ${this.config.metaBytesMax}` }
    }
    const me = this.self()
    const incarnation = me.incarnation + 1
    assert(incarnation <= INCARNATION_MAX, 'membership: incarnation overflow')
    this.table.set({ ...me, incarnation, meta: meta.slice() })
    this.queue.enqueue(this.selfAlive())
    this.publish(this.selfAlive())
    this.assertInvariants()
    return { ok: true, incarnation }
  }

  // ---------------------------------------------------------------- output

  hasReady (): boolean {
    return this.outbox.length > 0 || this.events.length > 0 || this.publishing.size > 0
  }

  /** Drains the messages to send, the events and the updates to publish since the last call. */
  ready (): Ready {
    const ready = { messages: this.outbox, events: this.events, publish: [...this.publishing.values()] }
    this.outbox = []
    this.events = []
    this.publishing.clear()
    this.counters.updatesPublished += ready.publish.length
    return ready
  }

  // ---------------------------------------------------------------- queries

  /** Every member we know, self and dead/left ones (until forgotten) included. */
  members (): MemberInfo[] {
    const list: MemberInfo[] = []
    for (const r of this.table.records()) { list.push(info(r)) }
    return list
  }

  member (id: MemberId): MemberInfo | undefined {
    const r = this.table.get(id)
    return r === undefined ? undefined : info(r)
  }

  /** The state of `id` in our view (undefined: unknown). Cheaper than member(). */
  stateOf (id: MemberId): MemberInfo['state'] | undefined {
    return this.table.get(id)?.state
  }

  get healthMultiplier (): number {
    return this.health.multiplier
  }

  status (): MembershipStatus {
    return {
      id: this.id,
      incarnation: this.self().incarnation,
      healthMultiplier: this.health.multiplier,
      probeIntervalTicks: this.health.scale(this.config.probeIntervalTicks),
      probeTimeoutTicks: this.health.scale(this.config.probeTimeoutTicks),
      members: this.table.size,
      liveMembers: this.liveCount,
      suspicions: this.suspicions.size,
      broadcastsQueued: this.queue.size,
      pendingRelays: this.relays.size,
      joining: this.joining !== null,
      leaving: this.leaving,
      left: this.leftDone,
      tick: this.now,
      counters: { ...this.counters, broadcastsDropped: this.queue.dropped }
    }
  }

  // ---------------------------------------------------------------- messages

  private refusal (m: Message): StepResult | null {
    if (m.to !== this.id) { return refuse('wrong-recipient') }
    if (m.from === this.id) { return refuse('from-self') }
    if (this.leftDone) { return refuse('left') }
    switch (m.type) {
      case 'ping-req': return this.pingReqRefusal(m)
      case 'join': return this.joinRefusal()
      case 'join-ack':
        if (this.joining?.seeds[this.joining.index] !== m.from && this.syncing?.peer !== m.from) { return refuse('unexpected') }
        return null
      default:
        return null
    }
  }

  private pingReqRefusal (m: PingReqMessage): StepResult | null {
    if (this.leaving) { return refuse('left') }
    const senderKnown = isLive(this.table.get(m.from)?.state) ||
      m.updates.some(u => u.kind === 'alive' && u.id === m.from)
    if (!senderKnown) { return refuse('unknown-sender') }
    if (m.target === this.id || m.target === m.from) { return refuse('unknown-target', 'a ping-req must name a third member') }
    if (!isLive(this.table.get(m.target)?.state)) { return refuse('unknown-target') }
    if (this.relays.size >= this.config.pendingProbesMax) { return refuse('busy', 'pendingProbesMax indirect probes running') }
    return null
  }

  private joinRefusal (): StepResult | null {
    if (this.leaving) { return refuse('left') }
    if (this.now - this.joinWindowStart >= this.config.probeIntervalTicks) {
      this.joinWindowStart = this.now
      this.joinRepliesLeft = this.config.joinRepliesPerPeriodMax
    }
    if (this.joinRepliesLeft <= 0) {
      this.counters.joinRequestsRefused++
      return refuse('busy', 'joinRepliesPerPeriodMax join pages answered this period')
    }
    return null
  }

  private handleAck (m: AckMessage): void {
    if (m.announce && !this.leaving) {
      // The member does not know us: introduce ourselves to it directly
      // (queued news would reach it only by chance, and members that know
      // us would not pass an alive update they already hold).
      this.counters.introductions++
      this.send({ type: 'ping', from: this.id, to: m.from, seq: this.newSeq() }, [this.selfAlive()])
    }
    const probe = this.probe
    if (probe !== null && m.seq === probe.seq && !probe.acked && (m.from === probe.target || probe.via.includes(m.from))) {
      probe.acked = true
      // Lifeguard: only an ack in time, straight from the target, is evidence of our health.
      if (m.from === probe.target && this.now < probe.timeoutTick) { this.health.apply(-1) }
      return
    }
    const relay = this.relays.get(m.seq)
    if (relay !== undefined && m.from === relay.target) {
      this.relays.delete(m.seq)
      this.send({ type: 'ack', from: this.id, to: relay.origin, seq: relay.originSeq, announce: !this.table.has(relay.origin) })
      return
    }
    this.counters.unmatchedAcks++
  }

  private handleNack (m: NackMessage): void {
    const probe = this.probe
    if (probe !== null && m.seq === probe.seq && probe.via.includes(m.from)) { probe.nacks.add(m.from) }
  }

  private handlePingReq (m: PingReqMessage): void {
    const seq = this.newSeq()
    this.relays.set(seq, {
      origin: m.from,
      originSeq: m.seq,
      target: m.target,
      nack: m.nack,
      // Unscaled, as memberlist: the prober's period is what the nack must beat.
      deadlineTick: this.now + this.config.probeTimeoutTicks
    })
    this.send({ type: 'ping', from: this.id, to: m.target, seq })
  }

  private expireRelays (): void {
    for (const [seq, relay] of this.relays) {
      if (relay.deadlineTick > this.now) { break }
      this.relays.delete(seq)
      if (relay.nack) {
        this.counters.nacksSent++
        this.send({ type: 'nack', from: this.id, to: relay.origin, seq: relay.originSeq })
      }
    }
  }

  // ---------------------------------------------------------------- probing

  private nextPeriod (): void {
    const finished = this.probe
    this.probe = null
    if (finished !== null) { this.concludeProbe(finished) }
    this.nextProbeTick = this.now + this.health.scale(this.config.probeIntervalTicks)
    if (this.notices.size > 0) { this.repeatSuspectNotices() }
    this.startProbe()
    this.reconnectProbe()
  }

  private startProbe (): void {
    const target = this.pickProbeTarget()
    if (target === undefined) { return }
    const seq = this.newSeq()
    this.probe = {
      target,
      seq,
      timeoutTick: this.now + this.health.scale(this.config.probeTimeoutTicks),
      acked: false,
      indirectSent: false,
      via: [],
      nacks: new Set()
    }
    this.counters.probes++
    this.send({ type: 'ping', from: this.id, to: target, seq })
  }

  /** The next live member in the round-robin order; rounds restart (and tombstones are reaped) as needed. */
  private pickProbeTarget (): MemberId | undefined {
    let rounds = 0
    for (;;) {
      const id = this.order.draw(this.rng)
      if (id === undefined) {
        // Two full rounds without a live member: there is none to probe.
        if (rounds === 2) { return undefined }
        rounds++
        // Tombstones are reaped here; with none, nothing to scan.
        this.order.startRound(this.table.size > this.liveCount ? member => this.keepOrReap(member) : undefined)
        continue
      }
      if (id !== this.id && isLive(this.table.get(id)?.state)) { return id }
    }
  }

  /** Whether `id` stays in the table, or is a tombstone old enough to forget (it is removed then). */
  private keepOrReap (id: MemberId): boolean {
    const r = this.table.get(id)
    assert(r !== undefined, 'membership: probe order names a member not in the table')
    if (id === this.id || isLive(r.state) || this.now - r.changedTick < this.config.deadRetentionTicks) { return true }
    this.table.delete(id)
    this.sortedIds = null
    return false
  }

  private sendIndirectProbes (probe: Probe): void {
    probe.indirectSent = true
    if (this.leaving) { return }
    probe.via = this.randomAliveMembers(this.config.indirectChecks, probe.target)
    if (probe.via.length > 0) { this.counters.indirectProbes++ }
    for (const via of probe.via) {
      this.send({ type: 'ping-req', from: this.id, to: via, seq: probe.seq, target: probe.target, nack: true })
    }
  }

  /**
   * Up to `k` distinct alive members other than us and `exclude`, at random
   * (memberlist's kRandomNodes: random draws, 3 * size at most), then, if
   * the draws fell short, the first eligible ones from a random position on,
   * so that k are found whenever they exist.
   */
  private randomAliveMembers (k: number, exclude: MemberId): MemberId[] {
    const chosen: MemberId[] = []
    const size = this.order.size
    const eligible = (id: MemberId): boolean =>
      id !== this.id && id !== exclude && !chosen.includes(id) && this.table.get(id)?.state === 'alive'
    for (let i = 0; i < 3 * size && chosen.length < k; i++) {
      const id = this.order.at(this.rng.intBetween(0, size - 1))
      if (eligible(id)) { chosen.push(id) }
    }
    if (chosen.length < k && size > 0) {
      const start = this.rng.intBetween(0, size - 1)
      for (let i = 0; i < size && chosen.length < k; i++) {
        const id = this.order.at((start + i) % size)
        if (eligible(id)) { chosen.push(id) }
      }
    }
    return chosen
  }

  /**
   * The end of a probe's period. No ack: Lifeguard counts the nacks that did
   * not come (or, with nobody to ask, the failure itself) against our own
   * health, and we suspect the target.
   */
  private concludeProbe (probe: Probe): void {
    if (probe.acked || this.leaving) { return }
    this.counters.probesFailed++
    if (probe.via.length > 0) {
      const missed = probe.via.length - probe.nacks.size
      if (missed > 0) {
        this.counters.nacksMissed += missed
        this.health.apply(missed)
      }
    } else {
      this.health.apply(1)
    }
    const r = this.table.get(probe.target)
    if (r === undefined || !isLive(r.state)) { return }
    const suspect: Update = { kind: 'suspect', id: r.id, incarnation: r.incarnation, from: this.id }
    // a new suspicion, or our confirmation of another member's
    if (this.applyUpdate(suspect, true, this.id)) { this.publish(suspect) }
    if (r.state === 'alive' && this.config.notifySuspect) {
      // Tell the suspect now, and again every period while the suspicion
      // lasts, rather than when someone next probes it (Lifeguard's buddy
      // system, sooner and surer): a live but slow member refutes a gossip
      // round earlier, even when a notice is lost. The ping carries the
      // accusation (see send()), its ack the refutation.
      this.notices.delete(r.id)
      this.notices.set(r.id, r.incarnation)
      if (this.notices.size > SUSPECT_NOTICES_MAX) { this.notices.delete(this.notices.keys().next().value as MemberId) }
      this.notifySuspect(r.id)
    }
  }

  private notifySuspect (id: MemberId): void {
    this.counters.suspectNotices++
    this.send({ type: 'ping', from: this.id, to: id, seq: this.newSeq() })
  }

  /** Repeats the notices of the suspicions we started that still stand (see concludeProbe). */
  private repeatSuspectNotices (): void {
    for (const [id, incarnation] of this.notices) {
      const r = this.table.get(id)
      if (r === undefined || r.state !== 'suspect' || r.incarnation !== incarnation) {
        this.notices.delete(id)
        continue
      }
      this.notifySuspect(id)
    }
  }

  /**
   * A dead member is never probed, so a member that was only cut off (a
   * partition) would stay dead to us even after it could hear us again.
   * memberlist keeps gossiping to the recently dead for this; here, once per
   * period, we look at one member at random and ping it if it is dead. The
   * ping carries its death notice (see send()), so a live one refutes, and
   * its ack brings the refutation back.
   */
  private reconnectProbe (): void {
    if (this.leaving || this.order.size === 0) { return }
    const id = this.order.at(this.rng.intBetween(0, this.order.size - 1))
    if (id === this.id || this.table.get(id)?.state !== 'dead') { return }
    this.counters.reconnectProbes++
    this.send({ type: 'ping', from: this.id, to: id, seq: this.newSeq() })
  }

  // ---------------------------------------------------------------- suspicion

  private startSuspicion (id: MemberId, incarnation: number, from: MemberId): void {
    const minTicks = suspicionTimeoutMinTicks(this.config.suspicionMult, this.liveCount, this.config.probeIntervalTicks)
    const maxTicks = this.config.suspicionMaxTimeoutMult * minTicks
    const expected = expectedConfirmations(this.config.suspicionMult, this.liveCount)
    const suspicion = new Suspicion(from, incarnation, this.now, expected, minTicks, maxTicks)
    this.suspicions.set(id, suspicion)
    this.nextSuspicionTick = Math.min(this.nextSuspicionTick, suspicion.deadlineTick)
    this.counters.suspicionsStarted++
  }

  private fireSuspicions (): void {
    const due: MemberId[] = []
    let next = Number.POSITIVE_INFINITY
    for (const [id, suspicion] of this.suspicions) {
      if (suspicion.deadlineTick <= this.now) { due.push(id) } else { next = Math.min(next, suspicion.deadlineTick) }
    }
    this.nextSuspicionTick = next
    for (const id of due) {
      const suspicion = this.suspicions.get(id)
      const r = this.table.get(id)
      assert(suspicion !== undefined && r !== undefined && r.state === 'suspect' && r.incarnation === suspicion.incarnation,
        'membership: a suspicion outlived its suspect state')
      this.counters.deadDeclared++
      const dead: Update = { kind: 'dead', id, incarnation: r.incarnation, from: this.id }
      this.applyUpdate(dead, true, this.id)
      // Only the first accuser publishes the death. A published suspicion
      // reaches every member at once, so every member's timer runs out at
      // about the same moment: N copies of one death, N² deliveries.
      if (suspicion.accuser === this.id) { this.publish(dead) }
    }
  }

  // ---------------------------------------------------------------- updates

  /**
   * Merges one piece of news (precedence.ts), reports what changed as
   * events and, when `rebroadcast`, queues it to spread further. News about
   * ourselves is answered instead (answerAboutSelf).
   *
   * @param u - the update
   * @param rebroadcast - whether to pass it on (piggybacked) when it changed something
   * @param sender - who sent the message that carried it (this member for its own news)
   * @returns whether it changed our view of another member (or confirmed a suspicion)
   */
  private applyUpdate (u: Update, rebroadcast: boolean, sender: MemberId): boolean {
    if (sender !== u.id && u.incarnation > this.heldIncarnation(u.id) + INCARNATION_JUMP_MAX) {
      this.counters.updatesImplausible++
      return false
    }
    if (u.id === this.id) {
      this.answerAboutSelf(u)
      return false
    }
    const held = this.table.get(u.id)
    if (held === undefined) { return this.addMember(u, rebroadcast) }
    if (!supersedes(u.kind, u.incarnation, held.state, held.incarnation)) {
      if (u.kind === 'suspect' && held.state === 'suspect' && u.incarnation === held.incarnation) { return this.confirmSuspicion(u.id, u.from, u, rebroadcast) }
      return false
    }
    const meta = u.kind === 'alive' ? u.meta : held.meta
    this.table.set({ id: u.id, state: u.kind, incarnation: u.incarnation, meta, changedTick: u.kind === held.state ? held.changedTick : this.now })
    if (held.state === 'suspect') { this.suspicions.delete(u.id) }
    const wasLive = isLive(held.state)
    if (wasLive !== isLive(u.kind)) { this.liveCount += wasLive ? -1 : 1 }
    if (u.kind === 'suspect') { this.startSuspicion(u.id, u.incarnation, u.from) }
    this.reportChange(held, u, meta)
    if (rebroadcast) { this.queue.enqueue(u) }
    return true
  }

  /** The incarnation we hold for `id` (our own for ourselves), 0 for a member we do not know. */
  private heldIncarnation (id: MemberId): number {
    return this.table.get(id)?.incarnation ?? 0
  }

  /** The events for a record that `u` just replaced. */
  private reportChange (held: MemberRecord, u: Update, meta: Uint8Array): void {
    const wasLive = isLive(held.state)
    if (!wasLive && isLive(u.kind)) { this.emit({ type: 'member:join', id: u.id, incarnation: u.incarnation, meta }) }
    switch (u.kind) {
      case 'alive':
        if (held.state === 'suspect') { this.emit({ type: 'member:alive', id: u.id, incarnation: u.incarnation }) }
        if (wasLive && !bytesEqual(held.meta, meta)) { this.emit({ type: 'member:update', id: u.id, incarnation: u.incarnation, meta }) }
        break
      case 'suspect':
        this.emit({ type: 'member:suspect', id: u.id, incarnation: u.incarnation, from: u.from })
        break
      case 'dead':
        if (wasLive) { this.emit({ type: 'member:dead', id: u.id, incarnation: u.incarnation, from: u.from }) }
        break
      case 'left':
        if (held.state !== 'left') { this.emit({ type: 'member:leave', id: u.id, incarnation: u.incarnation }) }
        break
      default:
        unreachable(u)
    }
  }

  /** A member we did not know: only an alive update (which carries its metadata) introduces one. */
  private addMember (u: Update, rebroadcast: boolean): boolean {
    if (u.kind !== 'alive') {
      this.counters.updatesIgnored++
      return false
    }
    if (!this.makeRoom()) {
      this.counters.membersRefused++
      return false
    }
    this.table.set({ id: u.id, state: 'alive', incarnation: u.incarnation, meta: u.meta, changedTick: this.now })
    this.order.insert(u.id, this.rng)
    this.liveCount++
    this.sortedIds = null
    this.emit({ type: 'member:join', id: u.id, incarnation: u.incarnation, meta: u.meta })
    if (rebroadcast) { this.queue.enqueue(u) }
    return true
  }

  /** Whether the table can take one more member, forgetting expired tombstones early if it must. */
  private makeRoom (): boolean {
    if (this.table.size < this.config.membersMax) { return true }
    if (this.table.size > this.liveCount) { this.order.filter(member => this.keepOrReap(member)) }
    return this.table.size < this.config.membersMax
  }

  private confirmSuspicion (id: MemberId, from: MemberId, u: Update, rebroadcast: boolean): boolean {
    const suspicion = this.suspicions.get(id)
    assert(suspicion !== undefined, 'membership: suspect member without a suspicion')
    if (!suspicion.confirm(from)) { return false }
    this.nextSuspicionTick = Math.min(this.nextSuspicionTick, suspicion.deadlineTick)
    // Re-gossip new confirmations, so that others' timers shrink too (memberlist does).
    if (rebroadcast) { this.queue.enqueue(u) }
    return true
  }

  /**
   * News about ourselves. A suspicion or death notice at our incarnation or
   * above is refuted; an alive update above it (or at it with other
   * metadata) is someone speaking for us, a past life of ours say, and is
   * out-numbered the same way. A member that has left does not argue. An
   * accusation below our incarnation is stale, but its sender may not have
   * heard our refutation: we queue our alive update again.
   */
  private answerAboutSelf (u: Update): void {
    if (this.leaving) { return }
    const me = this.self()
    if (u.kind === 'alive') {
      if (u.incarnation < me.incarnation || (u.incarnation === me.incarnation && bytesEqual(u.meta, me.meta))) { return }
      this.refute(u.incarnation)
      return
    }
    if (u.incarnation < me.incarnation) {
      this.reannounce()
      return
    }
    this.refute(u.incarnation)
  }

  /** Queues our alive update afresh (unless a fresh one is queued already). */
  private reannounce (): void {
    if (this.leaving || this.queue.transmitsOf(this.id) === 0) { return }
    this.counters.reannouncements++
    this.queue.enqueue(this.selfAlive())
  }

  private refute (accused: number): void {
    if (accused >= INCARNATION_MAX) {
      // Nothing can out-number it; only a forged message carries it.
      this.counters.updatesIgnored++
      return
    }
    const me = this.self()
    const incarnation = Math.max(me.incarnation, accused) + 1
    this.table.set({ ...me, incarnation })
    this.queue.enqueue(this.selfAlive())
    this.publish(this.selfAlive())
    // Lifeguard: being suspected is a hint that we are the slow one.
    this.health.apply(1)
    this.counters.refutations++
    this.emit({ type: 'member:alive', id: this.id, incarnation })
    // The refutation races the suspicion timeouts of everyone who heard the
    // accusation. Piggybacking alone would wait for our next messages (rare
    // if we are slow and our health multiplier stretched our period), so it
    // goes out at once to k random members, as the first of its
    // transmissions (memberlist's gossip burst does this for all news).
    for (const to of this.randomAliveMembers(this.config.indirectChecks, this.id)) {
      this.send({ type: 'ping', from: this.id, to, seq: this.newSeq() })
    }
  }

  // ---------------------------------------------------------------- join and leave

  private sendJoinRequest (joining: JoinState): void {
    joining.deadlineTick = this.now + this.config.joinTimeoutTicks
    this.send({ type: 'join', from: this.id, to: joining.seeds[joining.index], after: joining.after }, [this.selfAlive()])
  }

  private joinTimedOut (): void {
    const joining = this.joining
    assert(joining !== null, 'membership: join timeout without a join')
    joining.attempts++
    if (joining.attempts >= this.config.joinAttemptsMax) {
      this.joining = null
      this.emit({ type: 'join:failed', seeds: joining.seeds })
      return
    }
    joining.index = (joining.index + 1) % joining.seeds.length
    this.sendJoinRequest(joining)
  }

  /** A seed answers one page of its member list (join-ack). */
  private handleJoin (m: JoinMessage): void {
    this.joinRepliesLeft--
    const ids = this.sortedMemberIds()
    let i = m.after === null ? 0 : upperBound(ids, m.after)
    const budget = this.config.joinPageBytesMax
    const members: AliveUpdate[] = []
    let bytes = 0
    for (; i < ids.length; i++) {
      const r = this.table.get(ids[i])
      if (r === undefined || !isLive(r.state)) { continue }
      const u: AliveUpdate = { kind: 'alive', id: r.id, incarnation: r.incarnation, meta: r.meta }
      const size = updateBytes(u)
      if (bytes + size > budget) { break }
      members.push(u)
      bytes += size
    }
    const next = i < ids.length ? (members.at(-1)?.id ?? m.after) : null
    this.send({ type: 'join-ack', from: this.id, to: m.from, members, next })
  }

  private handleJoinAck (m: JoinAckMessage): void {
    const joining = this.joining
    if (joining === null || joining.seeds[joining.index] !== m.from) {
      assert(this.syncing?.peer === m.from, 'membership: join-ack accepted without a join or sync')
      this.syncing = null
      // What a sync teaches us, others probably missed too: pass it on.
      for (const u of m.members) { this.applyUpdate(u, true, m.from) }
      return
    }
    // A joiner's news is old to everyone else: it is not passed on.
    for (const u of m.members) { this.applyUpdate(u, false, m.from) }
    joining.pages++
    // Paging must move forward: a cursor that does not is the seed's bug, and ends the transfer.
    const advances = m.next !== null && m.members.length > 0 && (joining.after === null || m.next > joining.after)
    if (advances && m.next !== null && joining.pages < this.config.membersMax) {
      joining.after = m.next
      this.sendJoinRequest(joining)
      return
    }
    this.joining = null
    this.emit({ type: 'join:done', seed: m.from, pages: joining.pages })
  }

  /** Pulls one page of a random live member's list, from a random point (see config.syncIntervalTicks). */
  private sync (): void {
    this.nextSyncTick = this.now + this.config.syncIntervalTicks
    if (this.leaving || this.joining !== null || this.syncing !== null) { return }
    const [peer] = this.randomAliveMembers(1, this.id)
    if (peer === undefined) { return }
    // A small cluster fits one page: pull it whole. A larger one is pulled a
    // page at a time, half the time from the first id and half after a
    // random one (a page does not wrap around, so the first ids need the
    // extra chance).
    const fitsOnePage = this.table.size * 2 * updateBytes(this.selfAlive()) <= this.config.joinPageBytesMax
    const after = fitsOnePage || this.rng.chance(1 / 2) ? null : this.order.at(this.rng.intBetween(0, this.order.size - 1))
    this.counters.syncs++
    this.syncing = { peer, deadlineTick: this.now + this.config.joinTimeoutTicks }
    this.send({ type: 'join', from: this.id, to: peer, after }, [this.selfAlive()])
  }

  private checkLeaveDone (): void {
    if (this.leftDone) { return }
    const pending = this.queue.get(this.id)
    if (pending?.kind === 'left' && this.liveCount > 0) { return }
    this.leftDone = true
    this.probe = null
    this.relays.clear()
    this.emit({ type: 'leave:done' })
  }

  // ---------------------------------------------------------------- plumbing

  /**
   * Queues a message with as many piggybacked updates as fit (least
   * transmitted first). A message to a member we hold suspect or dead also
   * carries that accusation first, so that a live one can refute it at once
   * (memberlist sends a suspect message along with a probe of a suspect).
   */
  private send (partial: Outgoing, forced: Update[] = []): void {
    const updates = forced
    let skip = NO_SKIP
    const recipient = this.table.get(partial.to)
    if (recipient !== undefined && (recipient.state === 'suspect' || recipient.state === 'dead')) {
      updates.unshift({ kind: recipient.state, id: recipient.id, incarnation: recipient.incarnation, from: this.id })
      skip = [recipient.id]
    }
    if (forced.some(u => u.id === this.id)) { skip = [...skip, this.id] }
    const message = { ...partial, updates } as Message
    const budget = Math.min(this.config.piggybackBytesMax, this.config.messageBytesMax - messageBytes(message))
    const limit = retransmitLimit(this.config.retransmitMult, Math.max(1, this.liveCount))
    for (const u of this.queue.take(budget, limit, skip)) { updates.push(u) }
    assert(messageBytes(message) <= this.config.messageBytesMax, 'membership: built a message over messageBytesMax')
    if (this.outbox.length >= this.config.outboxMessagesMax) {
      this.counters.outboxDropped++
      return
    }
    this.outbox.push(message)
  }

  /** Hands `u`, news we originated, to the next Ready.publish (replacing older news about the same member). */
  private publish (u: Update): void {
    this.publishing.delete(u.id)
    this.publishing.set(u.id, u)
    if (this.publishing.size > this.config.publishUpdatesMax) {
      this.publishing.delete(this.publishing.keys().next().value as MemberId)
      this.counters.publishDropped++
    }
  }

  private newSeq (): number {
    assert(this.nextSeq < INCARNATION_MAX, 'membership: probe sequence numbers exhausted')
    return this.nextSeq++
  }

  private emit (event: MembershipEvent): void {
    if (this.events.length >= this.config.eventsMax) {
      this.counters.eventsDropped++
      return
    }
    this.events.push(event)
  }

  private self (): MemberRecord {
    const me = this.table.get(this.id)
    assert(me !== undefined, 'membership: own record missing')
    return me
  }

  private selfAlive (): AliveUpdate {
    const me = this.self()
    return { kind: 'alive', id: this.id, incarnation: me.incarnation, meta: me.meta }
  }

  private sortedMemberIds (): MemberId[] {
    if (this.sortedIds === null) {
      this.sortedIds = Array.from(this.table.records(), r => r.id).sort(compareIds)
    }
    return this.sortedIds
  }

  /** Cheap invariants, checked after every input. */
  private assertInvariants (): void {
    assert(this.table.size === this.order.size, 'membership: table and probe order disagree on the member count')
    assert(this.table.size <= this.config.membersMax, 'membership: more than membersMax members')
    assert(this.liveCount >= 0 && this.liveCount <= this.table.size, 'membership: live count out of range')
    assert(this.suspicions.size <= this.liveCount, 'membership: more suspicions than live members')
    assert(this.relays.size <= this.config.pendingProbesMax, 'membership: more relays than pendingProbesMax')
    assert(this.outbox.length <= this.config.outboxMessagesMax, 'membership: outbox over its limit')
    assert(this.events.length <= this.config.eventsMax, 'membership: events over their limit')
    assert(this.publishing.size <= this.config.publishUpdatesMax, 'membership: updates to publish over their limit')
    assert(this.self().state === (this.leaving ? 'left' : 'alive'), 'membership: own state must be alive, or left after leave()')
    assert(this.probe === null || this.probe.target !== this.id, 'membership: probing ourselves')
  }

  /**
   * Every invariant, at O(members) cost: for tests and the simulator. Throws
   * an AssertionError naming the first one broken.
   */
  checkInvariants (): void {
    this.assertInvariants()
    this.table.checkInvariants()
    this.queue.checkInvariants()
    const ordered = this.order.toArray()
    assert(new Set(ordered).size === ordered.length, 'membership: a member appears twice in the probe order')
    let live = 0
    for (const r of this.table.records()) {
      if (isLive(r.state)) { live++ }
      const suspicion = this.suspicions.get(r.id)
      if (r.state === 'suspect') {
        assert(suspicion !== undefined && suspicion.incarnation === r.incarnation, `membership: suspect ${r.id} without a matching suspicion`)
        assert(suspicion.deadlineTick >= this.nextSuspicionTick, 'membership: a suspicion deadline before nextSuspicionTick')
      } else {
        assert(suspicion === undefined, `membership: suspicion of ${r.id}, which is ${r.state}`)
      }
    }
    for (const id of ordered) { assert(this.table.has(id), `membership: ${id} in the probe order but not in the table`) }
    assert(live === this.liveCount, 'membership: live count is off')
  }
}

function refuse (reason: StepRejectReason, detail?: string): StepResult {
  return detail === undefined ? { ok: false, reason } : { ok: false, reason, detail }
}

function info (r: MemberRecord): MemberInfo {
  return { id: r.id, state: r.state, incarnation: r.incarnation, meta: r.meta }
}

export function bytesEqual (a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) { return true }
  if (a.byteLength !== b.byteLength) { return false }
  for (let i = 0; i < a.byteLength; i++) {
    if (a[i] !== b[i]) { return false }
  }
  return true
}

function shuffle<T> (items: T[], rng: Rng): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.intBetween(0, i)
    const item = items[i]
    items[i] = items[j]
    items[j] = item
  }
}

/** Code-unit order, the order join pages and their cursors use. */
function compareIds (a: MemberId, b: MemberId): number {
  if (a === b) { return 0 }
  return a < b ? -1 : 1
}

/** First index whose id sorts after `after`. */
function upperBound (sorted: readonly MemberId[], after: MemberId): number {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (sorted[mid] <= after) { lo = mid + 1 } else { hi = mid }
  }
  return lo
}
