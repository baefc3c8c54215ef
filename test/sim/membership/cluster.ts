/**
 * N real MembershipNode cores in one process, in virtual time, over the
 * Raft simulator's Scheduler and SimNetwork (loss, duplication, latency,
 * slow paths, partitions): the driver a libp2p service will be, with the
 * clock and the network injected. One seeded Rng drives everything, so a run
 * replays exactly from its seed.
 *
 * Faults beside the network's: a crashed member stops (messages to it are
 * lost, it no longer ticks); a slow member processes every message it
 * receives `slowMs` late, in arrival order (an overloaded or GC-bound
 * process), while its clock keeps ticking.
 *
 * With `topic` set, the updates each core publishes (Ready.publish) also
 * reach every other running member that a partition does not cut off,
 * `topic.latencyMs` later, through receiveGossip(): a model of the
 * gossipsub topic the service uses (a few mesh hops; no loss, since
 * gossipsub retransmits). Its bytes are counted apart (stats.topicBytes),
 * as `topic.fanout` copies per member per message (gossipsub's mesh degree).
 * Publishes before `topic.fromMs` are not modelled (a benchmark's members
 * start from one shared roster, so what each announces at start is known
 * to all already, and 10,000 such broadcasts would cost 10^8 deliveries).
 */
import { unreachable } from '../../../protocols/common/assert.ts'
import { createRng } from '../../../protocols/common/rng.ts'
import { MembershipNode } from '../../../protocols/membership/index.ts'
import { gossipBytes, messageBytes } from '../../../protocols/membership/size.ts'
import { SimNetwork } from '../network.ts'
import { Scheduler } from '../scheduler.ts'
import { Trace } from '../trace.ts'
import type { Rng } from '../../../protocols/common/rng.ts'
import type { MemberId, MembershipConfigInit, MembershipEvent, Message, Update } from '../../../protocols/membership/index.ts'
import type { Message as RaftMessage } from '../../../protocols/raft/index.ts'
import type { NetworkFaults } from '../options.ts'

/** The gossipsub topic, modelled (see the file's comment). */
export interface TopicModel {
  latencyMs: number
  fanout: number
  /** Publishes before this virtual time are not modelled (default 0: all are). */
  fromMs?: number
}

export interface ClusterOptions {
  seed: number
  /** Virtual milliseconds per tick() (20: the default 10-tick period is 200 ms). */
  tickMs: number
  network: NetworkFaults
  /** Settings every core gets (each node's id is added). */
  config?: Omit<MembershipConfigInit, 'id'>
  /** Record every send, delivery and event in the trace (replays). */
  fullTrace?: boolean
  /** Trace lines kept for a failure report. */
  traceLines?: number
  /** Run checkInvariants() (O(members)) on every core after every input. Slow; on for small clusters. */
  deepChecks?: boolean
  /** Model the gossipsub topic (see above); off when absent. Each publish costs O(members) events. */
  topic?: TopicModel
}

export interface SimMember {
  readonly id: MemberId
  core: MembershipNode
  up: boolean
  /** Gone after a graceful leave (leave:done). */
  left: boolean
  /** Every inbound message is processed this late (0: at once). */
  slowMs: number
  /** When the slow member's inbox is next free (FIFO processing). */
  inboxFreeAtMs: number
  bytesSent: number
  messagesSent: number
}

export type EventObserver = (observer: MemberId, event: MembershipEvent, timeMs: number) => void

export class MembershipCluster {
  readonly options: ClusterOptions
  readonly scheduler = new Scheduler()
  readonly rng: Rng
  readonly trace: Trace
  readonly members = new Map<MemberId, SimMember>()
  private readonly network: SimNetwork
  private readonly coreRng: Rng
  private readonly observers: EventObserver[] = []
  private ticking = false
  readonly stats = { messages: 0, bytes: 0, rejected: 0, rejectReasons: new Map<string, number>(), topicBytes: 0 }

  constructor (options: ClusterOptions) {
    this.options = options
    this.rng = createRng(options.seed)
    this.trace = new Trace(() => this.scheduler.now, options.traceLines ?? 200, options.fullTrace === true)
    // SimNetwork is typed for Raft messages but only reads `from` and `to`
    // (and hands the message back): the casts below are the whole adapter.
    // Its own trace would print Raft fields, so it gets one nobody reads;
    // this cluster traces membership messages itself.
    this.network = new SimNetwork(this.rng.fork(), options.network, this.scheduler, new Trace(() => 0, 1, false), {
      deliver: (message) => this.deliver(message as unknown as Message),
      settled: () => {}
    })
    this.coreRng = this.rng.fork()
  }

  get now (): number {
    return this.scheduler.now
  }

  /** Network faults can change mid-run (a calm settle phase). */
  setNetworkFaults (faults: NetworkFaults): void {
    this.network.faults = faults
  }

  onEvent (observer: EventObserver): void {
    this.observers.push(observer)
  }

  /** Starts a member; `seeds`: it joins through them at once. */
  addMember (id: MemberId, init: { config?: Omit<MembershipConfigInit, 'id'>, seeds?: MemberId[] } = {}): SimMember {
    if (this.members.has(id)) { throw new Error(`sim: member ${id} exists`) }
    const core = new MembershipNode({ ...this.options.config, ...init.config, id }, this.coreRng.fork())
    const member: SimMember = { id, core, up: true, left: false, slowMs: 0, inboxFreeAtMs: 0, bytesSent: 0, messagesSent: 0 }
    this.members.set(id, member)
    this.trace.add(`start ${id}`)
    if (init.seeds !== undefined && init.seeds.length > 0) { core.join(init.seeds) }
    this.flush(member)
    this.startTicking()
    return member
  }

  crash (id: MemberId): void {
    const member = this.get(id)
    member.up = false
    this.trace.add(`crash ${id}`)
  }

  setSlow (id: MemberId, slowMs: number): void {
    this.get(id).slowMs = slowMs
    this.trace.add(`slow ${id} ${slowMs}ms`)
  }

  leave (id: MemberId): void {
    const member = this.get(id)
    this.trace.add(`leave ${id}`)
    member.core.leave()
    this.flush(member)
  }

  partition (groups: MemberId[][]): void {
    this.trace.add(`partition ${groups.map(g => `[${g.join(' ')}]`).join(' ')}`)
    this.network.partition(groups)
  }

  heal (): void {
    this.trace.add('heal')
    this.network.heal()
  }

  /** Whether messages from `from` to `to` are cut off now. */
  isCut (from: MemberId, to: MemberId): boolean {
    return this.network.isCut(from, to)
  }

  /** Runs virtual time until `untilMs`, or until `stop()` holds. */
  run (untilMs: number, stop?: () => boolean): void {
    this.scheduler.runUntil(untilMs, stop)
  }

  /** Members still running (up and not left). */
  live (): SimMember[] {
    return [...this.members.values()].filter(m => m.up && !m.left)
  }

  get (id: MemberId): SimMember {
    const member = this.members.get(id)
    if (member === undefined) { throw new Error(`sim: no member ${id}`) }
    return member
  }

  private startTicking (): void {
    if (this.ticking) { return }
    this.ticking = true
    const tick = (): void => {
      for (const member of this.members.values()) {
        if (!member.up || member.left) { continue }
        member.core.tick()
        this.afterInput(member)
      }
      this.scheduler.after(this.options.tickMs, tick)
    }
    this.scheduler.after(this.options.tickMs, tick)
  }

  private deliver (message: Message): 'delivered' | 'lost' {
    const member = this.members.get(message.to)
    if (member === undefined || !member.up || member.left) { return 'lost' }
    this.receive(member, () => { this.process(member, message) })
    return 'delivered'
  }

  /** Runs `input` on a running member now, or, for a slow one, `slowMs` late and in arrival order. */
  private receive (member: SimMember, input: () => void): void {
    if (member.slowMs === 0) {
      input()
      return
    }
    const at = Math.max(this.scheduler.now + member.slowMs, member.inboxFreeAtMs)
    member.inboxFreeAtMs = at
    this.scheduler.at(at, () => {
      if (member.up && !member.left) { input() }
    })
  }

  /**
   * The topic model: `updates` reach every running member not cut off from
   * `author`, latencyMs later (one event for all of them: one per member
   * would hold O(members) closures per publish).
   */
  private broadcast (author: MemberId, updates: Update[], topic: TopicModel): void {
    if (this.now < (topic.fromMs ?? 0)) { return }
    this.stats.topicBytes += gossipBytes(author, updates) * topic.fanout * this.members.size
    this.scheduler.after(topic.latencyMs, () => {
      for (const member of this.members.values()) {
        if (member.id === author || !member.up || member.left || this.network.isCut(author, member.id)) { continue }
        this.receive(member, () => {
          if (this.trace.full !== null) { this.trace.add(`gossip ${author}->${member.id} [${updates.map(u => `${u.kind}(${u.id}@${u.incarnation})`).join(' ')}]`) }
          const result = member.core.receiveGossip(author, updates)
          if (!result.ok) { this.stats.rejected++ }
          this.afterInput(member)
        })
      }
    })
  }

  private process (member: SimMember, message: Message): void {
    if (this.trace.full !== null) { this.trace.add(`recv ${describe(message)}`) }
    const result = member.core.step(message)
    if (!result.ok) {
      this.stats.rejected++
      this.stats.rejectReasons.set(result.reason, (this.stats.rejectReasons.get(result.reason) ?? 0) + 1)
    }
    this.afterInput(member)
  }

  private afterInput (member: SimMember): void {
    if (this.options.deepChecks === true) { member.core.checkInvariants() }
    this.flush(member)
  }

  private flush (member: SimMember): void {
    if (!member.core.hasReady()) { return }
    const { messages, events, publish } = member.core.ready()
    if (this.options.topic !== undefined && publish.length > 0) { this.broadcast(member.id, publish, this.options.topic) }
    for (const message of messages) {
      const bytes = messageBytes(message)
      member.bytesSent += bytes
      member.messagesSent++
      this.stats.messages++
      this.stats.bytes += bytes
      if (this.trace.full !== null) { this.trace.add(`send ${describe(message)}`) }
      this.network.send(message as unknown as RaftMessage)
    }
    for (const event of events) {
      this.trace.add(`${member.id}: ${describeEvent(event)}`)
      for (const observer of this.observers) { observer(member.id, event, this.scheduler.now) }
      if (event.type === 'leave:done') {
        member.left = true
        this.trace.add(`${member.id} stopped after leaving`)
      }
    }
  }
}

export function describe (m: Message): string {
  const updates = m.updates.length === 0 ? '' : ` [${m.updates.map(u => `${u.kind}(${u.id}@${u.incarnation})`).join(' ')}]`
  switch (m.type) {
    case 'ping':
    case 'ack':
    case 'nack': return `${m.type} ${m.from}->${m.to} #${m.seq}${updates}`
    case 'ping-req': return `ping-req ${m.from}->${m.to} #${m.seq} target=${m.target}${updates}`
    case 'join': return `join ${m.from}->${m.to} after=${m.after ?? '-'}${updates}`
    case 'join-ack': return `join-ack ${m.from}->${m.to} members=${m.members.length} next=${m.next ?? '-'}${updates}`
    default: return unreachable(m)
  }
}

export function describeEvent (e: MembershipEvent): string {
  switch (e.type) {
    case 'member:join':
    case 'member:update':
    case 'member:alive':
    case 'member:leave': return `${e.type} ${e.id}@${e.incarnation}`
    case 'member:suspect':
    case 'member:dead': return `${e.type} ${e.id}@${e.incarnation} by ${e.from}`
    case 'join:done': return `join:done via ${e.seed} (${e.pages} pages)`
    case 'join:failed': return `join:failed (${e.seeds.join(' ')})`
    case 'leave:done': return 'leave:done'
    default: return unreachable(e)
  }
}
