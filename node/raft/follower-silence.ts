/**
 * Which followers have stopped answering their leader.
 *
 * Every append and heartbeat a leader sends is answered, so a follower
 * that sends no answer for a check-quorum period is either down or cut
 * off, or the streams between the two have stopped carrying data while
 * both ends still think them open. The last was seen after a partition
 * healed: an inbound stream the follower had closed as idle kept its
 * sender writing into it, and the sender never learned of the close. The
 * leader then asks the transport to drop its streams to and from that
 * follower and open new ones (cheap when the follower really is down).
 *
 * Counted in ticks, so it replays in the simulator like the rest of the
 * driver.
 */
export class FollowerSilence {
  readonly #limitTicks: number
  /** Ticks since each follower last answered (or since its streams were last reset). */
  readonly #silentTicks = new Map<string, number>()

  constructor (limitTicks: number) {
    if (!Number.isSafeInteger(limitTicks) || limitTicks < 1) { throw new RangeError(`follower silence: limitTicks must be a positive integer, got ${limitTicks}`) }
    this.#limitTicks = limitTicks
  }

  /** `follower` answered the leader. */
  heard (follower: string): void {
    if (this.#silentTicks.has(follower)) { this.#silentTicks.set(follower, 0) }
  }

  /**
   * One leader tick with these followers: returns those silent for the
   * limit, whose count starts again (so each is reported once per limit).
   * Followers no longer listed are forgotten.
   */
  tick (followers: readonly string[]): string[] {
    const silent: string[] = []
    const listed = new Set(followers)
    for (const follower of this.#silentTicks.keys()) {
      if (!listed.has(follower)) { this.#silentTicks.delete(follower) }
    }
    for (const follower of followers) {
      const ticks = (this.#silentTicks.get(follower) ?? 0) + 1
      if (ticks >= this.#limitTicks) {
        silent.push(follower)
        this.#silentTicks.set(follower, 0)
      } else {
        this.#silentTicks.set(follower, ticks)
      }
    }
    return silent
  }

  /** This node is no longer the leader. */
  clear (): void {
    this.#silentTicks.clear()
  }
}
