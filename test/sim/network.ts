/**
 * The simulated network between Raft nodes. Each message independently may
 * be lost, duplicated, or take a slow path (which reorders it behind later
 * messages); otherwise it arrives after a small random latency. Links can be
 * cut one direction at a time (asymmetric partitions) or both ways; a cut
 * link loses everything that is in flight on it when it arrives.
 */
import { describeMessage } from './trace.ts'
import type { NetworkFaults } from './options.ts'
import type { Scheduler } from './scheduler.ts'
import type { Trace } from './trace.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { Message, NodeId } from '../../protocols/raft/index.ts'

export type DeliveryOutcome = 'delivered' | 'lost'

export interface NetworkCallbacks {
  /** Hands the message to its recipient; 'lost' if the recipient is down. */
  deliver(message: Message): DeliveryOutcome
  /** Told about every message's fate (the service layer reports snapshot transfers). */
  settled(message: Message, outcome: DeliveryOutcome): void
}

export class SimNetwork {
  faults: NetworkFaults
  private readonly rng: Rng
  private readonly scheduler: Scheduler
  private readonly trace: Trace
  private readonly callbacks: NetworkCallbacks
  /** Cut links, as "from>to". */
  private readonly cut = new Set<string>()
  readonly stats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, cutOff: 0 }

  constructor (rng: Rng, faults: NetworkFaults, scheduler: Scheduler, trace: Trace, callbacks: NetworkCallbacks) {
    this.rng = rng
    this.faults = faults
    this.scheduler = scheduler
    this.trace = trace
    this.callbacks = callbacks
  }

  send (message: Message): void {
    this.stats.sent++
    if (this.rng.chance(this.faults.dropRate)) {
      this.stats.dropped++
      this.trace.add(`drop ${describeMessage(message)}`)
      this.callbacks.settled(message, 'lost')
      return
    }
    const copies = this.rng.chance(this.faults.duplicateRate) ? 2 : 1
    if (copies === 2) { this.stats.duplicated++ }
    for (let i = 0; i < copies; i++) {
      this.scheduler.after(this.latencyMs(), () => { this.arrive(message) })
    }
  }

  /** Cuts from -> to (one direction). */
  cutLink (from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`)
  }

  /** Splits the nodes into groups that cannot talk to each other (both directions). */
  partition (groups: NodeId[][]): void {
    for (const a of groups) {
      for (const b of groups) {
        if (a === b) { continue }
        for (const from of a) { for (const to of b) { this.cutLink(from, to) } }
      }
    }
  }

  heal (): void {
    this.cut.clear()
  }

  isCut (from: NodeId, to: NodeId): boolean {
    return this.cut.has(`${from}>${to}`)
  }

  private latencyMs (): number {
    const { latencyMsMin, latencyMsMax, delayRate, delayMsMax } = this.faults
    if (this.rng.chance(delayRate)) { return this.rng.intBetween(latencyMsMax, delayMsMax) }
    return this.rng.intBetween(latencyMsMin, latencyMsMax)
  }

  private arrive (message: Message): void {
    if (this.isCut(message.from, message.to)) {
      this.stats.cutOff++
      this.trace.add(`cut ${describeMessage(message)}`)
      this.callbacks.settled(message, 'lost')
      return
    }
    const outcome = this.callbacks.deliver(message)
    if (outcome === 'delivered') { this.stats.delivered++ }
    this.callbacks.settled(message, outcome)
  }
}
