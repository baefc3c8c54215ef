import { EchoedRounds } from './echoed-rounds.ts'
import type { NodeId } from './types.ts'

/**
 * The leader side of lease reads (readOnlyMode 'lease').
 *
 * A follower that receives a heartbeat from its leader refuses to vote for
 * anyone else, and does not campaign, until electionTimeoutTicks of its own
 * ticks have passed (check-quorum's "in lease"). Its first tick may come at
 * once, so that promise covers at least (electionTimeoutTicks - 1) tick
 * periods from the moment the heartbeat arrived, hence from the moment it
 * was sent. A leader that knows a quorum of voters received a heartbeat it
 * sent at tick s can therefore serve reads alone for fewer than
 * (electionTimeoutTicks - 1) of its own ticks after s: no other leader can
 * be elected before then. The lease is measured from when the heartbeat was
 * SENT, never from when the answer arrived (an answer may be delayed for
 * longer than the whole lease): heartbeats carry the leader's tick as their
 * round and followers echo it. Append responses carry no such stamp, so they
 * do not extend the lease.
 *
 * leaseSafetyMarginTicks is the clock-drift allowance: the lease is that many
 * ticks shorter still, for followers whose clocks run faster than the
 * leader's (or a leader whose ticks are late).
 */
export class LeaderLease {
  /** Ticks seen by this node; a heartbeat sent now carries clockTicks as its stamp. */
  private clockTicks = 1
  private readonly acks = new EchoedRounds()
  private readonly durationTicks: number

  constructor (electionTimeoutTicks: number, safetyMarginTicks: number) {
    this.durationTicks = leaseDurationTicks(electionTimeoutTicks, safetyMarginTicks)
  }

  tick (): void {
    this.clockTicks++
  }

  /** The round a heartbeat sent now carries. */
  stamp (): number {
    return this.clockTicks
  }

  /** Records a voter's echo of a heartbeat stamp; ignores stamps never issued. */
  recordAck (from: NodeId, stamp: number): boolean {
    return this.acks.record(from, stamp, this.clockTicks)
  }

  ackedStamp (id: NodeId): number {
    return this.acks.of(id)
  }

  /** Is a lease confirmed by a heartbeat stamped `quorumStamp` (acknowledged by a quorum) still running? */
  holds (quorumStamp: number): boolean {
    return quorumStamp > 0 && this.clockTicks - quorumStamp < this.durationTicks
  }

  /** Leadership changed: acknowledgements of an earlier leadership count for nothing. */
  reset (): void {
    this.acks.clear()
  }
}

/** How many ticks after sending a heartbeat its quorum's acknowledgement lets the leader read alone. */
export function leaseDurationTicks (electionTimeoutTicks: number, safetyMarginTicks: number): number {
  return electionTimeoutTicks - 1 - safetyMarginTicks
}
