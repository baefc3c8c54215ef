/**
 * The simulated network between nodes, generic over the message type. Each
 * message independently may be lost, duplicated, or take a slow path (which
 * reorders it behind later messages); otherwise it arrives after a small
 * random latency. Links can be cut one direction at a time (asymmetric
 * partitions) or both ways; a cut link loses everything that is in flight
 * on it when it arrives.
 *
 * The network reads only a message's `from` and `to` (PBFT's simulator
 * sends envelopes {from, to, message}); `describe` renders one for the
 * trace (Raft's describeMessage by default).
 */
import { describeMessage } from './trace.ts'
import type { NetworkFaults } from './options.ts'
import type { Scheduler } from './scheduler.ts'
import type { Trace } from './trace.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { Message } from '../../protocols/raft/index.ts'

type NodeId = string

export type DeliveryOutcome = 'delivered' | 'lost'

/** What the network needs of a message: its endpoints. */
export interface Addressed {
  from: NodeId
  to: NodeId
}

export interface NetworkCallbacks<M extends Addressed = Message> {
  /** Hands the message to its recipient; 'lost' if the recipient is down. */
  deliver(message: M): DeliveryOutcome
  /** Told about every message's fate (the service layer reports snapshot transfers). */
  settled(message: M, outcome: DeliveryOutcome): void
}

export class SimNetwork<M extends Addressed = Message> {
  faults: NetworkFaults
  private readonly rng: Rng
  private readonly scheduler: Scheduler
  private readonly trace: Trace
  private readonly callbacks: NetworkCallbacks<M>
  private readonly describe: (message: M) => string
  /** Cut links, as "from>to". */
  private readonly cut = new Set<string>()
  readonly stats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, cutOff: 0 }

  constructor (rng: Rng, faults: NetworkFaults, scheduler: Scheduler, trace: Trace, callbacks: NetworkCallbacks<M>,
    describe: (message: M) => string = describeMessage as unknown as (message: M) => string) {
    this.rng = rng
    this.faults = faults
    this.scheduler = scheduler
    this.trace = trace
    this.callbacks = callbacks
    this.describe = describe
  }

  send (message: M): void {
    this.stats.sent++
    if (this.rng.chance(this.faults.dropRate)) {
      this.stats.dropped++
      this.trace.add(`drop ${this.describe(message)}`)
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

  /** One message's latency under the current faults (also for traffic the network does not carry itself, e.g. a state fetch). */
  latencyMs (): number {
    const { latencyMsMin, latencyMsMax, delayRate, delayMsMax } = this.faults
    if (this.rng.chance(delayRate)) { return this.rng.intBetween(latencyMsMax, delayMsMax) }
    return this.rng.intBetween(latencyMsMin, latencyMsMax)
  }

  private arrive (message: M): void {
    if (this.isCut(message.from, message.to)) {
      this.stats.cutOff++
      this.trace.add(`cut ${this.describe(message)}`)
      this.callbacks.settled(message, 'lost')
      return
    }
    const outcome = this.callbacks.deliver(message)
    if (outcome === 'delivered') { this.stats.delivered++ }
    this.callbacks.settled(message, outcome)
  }
}
