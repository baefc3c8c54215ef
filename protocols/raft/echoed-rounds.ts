import type { NodeId } from './types.ts'

/**
 * The newest heartbeat round each follower echoed back, for ReadIndex
 * rounds (read-only.ts) and lease stamps (lease.ts) alike. Only the leader's
 * members answer heartbeats it counts, so there is one entry per member.
 */
export class EchoedRounds {
  private readonly newest = new Map<NodeId, number>()

  /** Records `from`'s echo of `round`; false for a round never issued (0 or above `issued`) or not newer than its last. */
  record (from: NodeId, round: number, issued: number): boolean {
    if (round === 0 || round > issued) { return false }
    if (this.of(from) >= round) { return false }
    this.newest.set(from, round)
    return true
  }

  /** The newest round `id` echoed, 0 if none. */
  of (id: NodeId): number {
    return this.newest.get(id) ?? 0
  }

  clear (): void {
    this.newest.clear()
  }
}
