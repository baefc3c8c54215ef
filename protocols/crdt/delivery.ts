/**
 * Causal delivery for op-based replication: ops stamped with vector clocks
 * are handed to the application only once every op they depend on has
 * been, in an order every replica agrees is causal. Ops that arrive early
 * wait in a buffer that is bounded both in ops and in bytes: an op that
 * would exceed a limit is refused with a reason (the sender retries later or
 * falls back to state anti-entropy), never silently dropped. Duplicates,
 * delivered or still waiting, are dropped.
 *
 * Delivery needs every op eventually: a lost op stalls everything after it
 * from the same origin. Across lossy links, ship delta or full states
 * instead; they need no causal delivery.
 */
import { compareDots, deliveryStatus, dotKey } from './causal.ts'
import { checkReplica } from './codec.ts'
import type { Dot, ReplicaId, VersionVector } from './causal.ts'

export interface DeliveryLimits {
  /** Most ops waiting in the buffer. */
  readonly maxBufferedOps: number
  /** Most payload bytes (as the caller measures them) waiting in the buffer. */
  readonly maxBufferedBytes: number
  /** Most entries in one op's clock. */
  readonly maxClockEntries: number
}

export const DELIVERY_LIMITS_DEFAULT: DeliveryLimits = {
  maxBufferedOps: 1024,
  maxBufferedBytes: 4 * 1024 * 1024,
  maxClockEntries: 1024
}

export interface CausalOp<P> {
  readonly origin: ReplicaId
  /** The origin's vector clock at the op, counting the op itself. */
  readonly clock: VersionVector
  readonly payload: P
  /** The payload's encoded size, charged against maxBufferedBytes. */
  readonly bytes: number
}

export type RefusalReason = 'malformed' | 'too-large' | 'buffer-full'

export type ReceiveOutcome<P> =
  | { status: 'delivered', ops: Array<CausalOp<P>> }
  | { status: 'buffered' }
  | { status: 'duplicate' }
  | { status: 'refused', reason: RefusalReason, message: string }

export class CausalDeliveryBuffer<P> {
  readonly limits: DeliveryLimits
  private readonly delivered = new Map<ReplicaId, number>()
  /** Waiting ops by dotKey of (origin, seq). */
  private readonly waiting = new Map<string, CausalOp<P>>()
  private waitingBytes = 0

  constructor (limits: Partial<DeliveryLimits> = {}) {
    this.limits = { ...DELIVERY_LIMITS_DEFAULT, ...limits }
  }

  /** What has been delivered, as a vector clock (a copy). */
  get clock (): Map<ReplicaId, number> {
    return new Map(this.delivered)
  }

  get bufferedOps (): number {
    return this.waiting.size
  }

  get bufferedBytes (): number {
    return this.waitingBytes
  }

  /** Stamps a local op as the next of `origin` and counts it delivered (it was applied locally). */
  local (origin: ReplicaId, payload: P, bytes: number): CausalOp<P> {
    const clock = new Map(this.delivered)
    clock.set(origin, (clock.get(origin) ?? 0) + 1)
    this.delivered.set(origin, clock.get(origin) as number)
    return { origin, clock, payload, bytes }
  }

  /**
   * Takes in a remote op. Returns the ops now deliverable in causal order
   * (the op itself and any it unblocked), or why it waits or was dropped.
   */
  receive (op: CausalOp<P>): ReceiveOutcome<P> {
    const malformed = this.check(op)
    if (malformed !== undefined) { return { status: 'refused', reason: 'malformed', message: malformed } }
    const status = deliveryStatus(this.delivered, op.origin, op.clock)
    const key = dotKey(this.seqOf(op))
    if (status === 'duplicate' || this.waiting.has(key)) { return { status: 'duplicate' } }
    if (status === 'ready') { return { status: 'delivered', ops: this.deliverFrom(op) } }
    if (op.bytes > this.limits.maxBufferedBytes) {
      return { status: 'refused', reason: 'too-large', message: `op of ${op.bytes} bytes is larger than the whole buffer (${this.limits.maxBufferedBytes})` }
    }
    if (this.waiting.size >= this.limits.maxBufferedOps) {
      return { status: 'refused', reason: 'buffer-full', message: `${this.waiting.size} ops already wait (maxBufferedOps)` }
    }
    if (this.waitingBytes + op.bytes > this.limits.maxBufferedBytes) {
      return { status: 'refused', reason: 'buffer-full', message: `${this.waitingBytes} bytes already wait (maxBufferedBytes ${this.limits.maxBufferedBytes})` }
    }
    this.waiting.set(key, op)
    this.waitingBytes += op.bytes
    return { status: 'buffered' }
  }

  private seqOf (op: CausalOp<P>): Dot {
    return { replica: op.origin, counter: op.clock.get(op.origin) ?? 0 }
  }

  private check (op: CausalOp<P>): string | undefined {
    const origin = checkReplica(op.origin)
    if (!origin.ok) { return origin.error }
    if (!(op.clock instanceof Map)) { return 'clock must be a Map' }
    if (op.clock.size > this.limits.maxClockEntries) { return `clock has ${op.clock.size} entries, more than ${this.limits.maxClockEntries}` }
    for (const [replica, n] of op.clock) {
      const id = checkReplica(replica)
      if (!id.ok) { return `clock: ${id.error}` }
      if (!Number.isSafeInteger(n) || n < 0) { return 'clock entries must be replica -> non-negative safe integer' }
    }
    if ((op.clock.get(op.origin) ?? 0) < 1) { return 'clock must count the op at its origin' }
    if (!Number.isSafeInteger(op.bytes) || op.bytes < 0) { return 'bytes must be a non-negative safe integer' }
    return undefined
  }

  /** Delivers `first`, then whatever waiting ops became ready, smallest (origin, seq) first. */
  private deliverFrom (first: CausalOp<P>): Array<CausalOp<P>> {
    const out: Array<CausalOp<P>> = []
    let next: CausalOp<P> | undefined = first
    while (next !== undefined) {
      this.delivered.set(next.origin, next.clock.get(next.origin) as number)
      out.push(next)
      next = this.nextReady()
    }
    return out
  }

  private nextReady (): CausalOp<P> | undefined {
    let best: CausalOp<P> | undefined
    for (const op of this.waiting.values()) {
      if (deliveryStatus(this.delivered, op.origin, op.clock) !== 'ready') { continue }
      if (best === undefined || compareDots(this.seqOf(op), this.seqOf(best)) < 0) { best = op }
    }
    if (best !== undefined) {
      this.waiting.delete(dotKey(this.seqOf(best)))
      this.waitingBytes -= best.bytes
    }
    return best
  }
}
