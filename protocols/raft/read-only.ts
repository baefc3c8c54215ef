import { assert } from '../common/assert.ts'
import { EchoedRounds } from './echoed-rounds.ts'
import type { NodeId } from './types.ts'

export interface ReadRequest {
  context: Uint8Array
  /** Who asked: the leader itself or a follower that forwarded the read. */
  from: NodeId
}

interface PendingRead extends ReadRequest {
  /** The leader's commit index when the read arrived: the read's index. */
  index: number
  /** The heartbeat round that must be acknowledged by a quorum. */
  round: number
}

/**
 * Linearizable reads waiting on a leader (etcd's readOnly, ReadIndex in
 * thesis §6.4). Instead of tracking an ack set per request context, every
 * read is tagged with a heartbeat round number; followers echo the round,
 * and a read is confirmed once a quorum acknowledged a round >= its own, so
 * the bookkeeping is one number per peer however many reads are queued.
 *
 * Reads arriving before the leader committed an entry of its own term wait
 * in `deferred` (its commit index might still be stale until then).
 */
export class ReadOnlyQueue {
  private deferred: ReadRequest[] = []
  private pending: PendingRead[] = []
  private readonly acks = new EchoedRounds()
  /** The newest round handed to a read; monotonic over the node's lifetime. */
  private round = 0
  /** The newest round's heartbeats are still in the outbox, so new reads can join it. */
  private roundUnsent = false
  private readonly max: number

  constructor (max: number) {
    this.max = max
  }

  get size (): number {
    return this.deferred.length + this.pending.length
  }

  isFull (): boolean {
    return this.size >= this.max
  }

  defer (request: ReadRequest): void {
    assert(!this.isFull(), 'read-only: queue overflow')
    this.deferred.push(request)
  }

  takeDeferred (): ReadRequest[] {
    const deferred = this.deferred
    this.deferred = []
    return deferred
  }

  /**
   * Queues a read at `index`. Returns the round whose heartbeat must be
   * broadcast, or null when the read joins a round that is not sent yet.
   */
  add (request: ReadRequest, index: number): number | null {
    assert(!this.isFull(), 'read-only: queue overflow')
    const joinsUnsentRound = this.roundUnsent
    if (!joinsUnsentRound) {
      this.round++
      this.roundUnsent = true
    }
    this.pending.push({ ...request, index, round: this.round })
    return joinsUnsentRound ? null : this.round
  }

  /**
   * Lease mode: queues a read at `index` that waits for the lease, or for a
   * quorum to acknowledge a heartbeat stamped `stamp` or later (sent after
   * the read arrived, so ReadIndex-safe on its own). Stamps only grow.
   */
  addStamped (request: ReadRequest, index: number, stamp: number): void {
    assert(!this.isFull(), 'read-only: queue overflow')
    assert(this.pending.length === 0 || this.pending[this.pending.length - 1].round <= stamp, 'read-only: stamps must not go back')
    this.pending.push({ ...request, index, round: stamp })
  }

  /** The outbox was handed to the caller: later reads need a fresh round. */
  markRoundSent (): void {
    this.roundUnsent = false
  }

  /** The round regular heartbeats carry: the newest one if any read is waiting, else 0. */
  heartbeatRound (): number {
    return this.pending.length > 0 ? this.round : 0
  }

  /** The newest round this node handed out (what the leader itself has "acknowledged"). */
  currentRound (): number {
    return this.round
  }

  /** Records a follower's echo; ignores rounds never issued. */
  recordAck (from: NodeId, round: number): boolean {
    return this.acks.record(from, round, this.round)
  }

  ackedRound (id: NodeId): number {
    return this.acks.of(id)
  }

  /** Removes and returns the reads whose round is <= `confirmedRound`, in arrival order. */
  release (confirmedRound: number): PendingRead[] {
    let n = 0
    while (n < this.pending.length && this.pending[n].round <= confirmedRound) { n++ }
    return this.pending.splice(0, n)
  }

  /** Leadership changed: forget everything. Returns how many reads were dropped. */
  reset (): number {
    const dropped = this.size
    this.deferred = []
    this.pending = []
    this.acks.clear()
    this.roundUnsent = false
    return dropped
  }
}
