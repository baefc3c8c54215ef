/**
 * SWIM's randomized round-robin probe order (§4.3): every member is probed
 * once per round, in a fresh random order each round, so the time until a
 * failed member is first probed is bounded (at most two rounds) instead of
 * only expected, as with uniform random picks.
 *
 * The shuffle is lazy (an incremental Fisher-Yates): each draw swaps a
 * uniformly chosen not-yet-probed member into the next position. That is
 * the same distribution as memberlist's shuffle at the start of each round,
 * spread over the round, and it lets a node start from a shared roster
 * without copying it: while the order is borrowed, writes go to a small
 * patch map, and the array is copied only once the patches grow past an
 * eighth of it.
 *
 * A member added mid-round goes to a uniformly random position, as in
 * memberlist: into the part already probed (so it is first probed next
 * round), or among those still to come. Unlike memberlist's swap, no member
 * is probed twice in a round because of it.
 */
import { assert } from '../common/assert.ts'
import type { MemberId } from './types.ts'
import type { Rng } from '../common/rng.ts'

const PATCHES_MIN = 64

export class ProbeOrder {
  private slots: MemberId[] | readonly MemberId[]
  private owned: boolean
  private readonly patches = new Map<number, MemberId>()
  private length: number
  /** Positions before it were drawn this round. */
  private cursor: number

  /** `initial` is borrowed, not copied (it must not change while in use). */
  constructor (initial: readonly MemberId[]) {
    this.slots = initial
    this.owned = false
    this.length = initial.length
    // The first draw starts a round.
    this.cursor = this.length
  }

  get size (): number {
    return this.length
  }

  /** Whether the round is over (every member was drawn). */
  get roundOver (): boolean {
    return this.cursor >= this.length
  }

  at (i: number): MemberId {
    assert(i >= 0 && i < this.length, 'probe order: index out of range')
    const id = this.owned ? this.slots[i] : (this.patches.get(i) ?? this.slots[i])
    assert(id !== undefined, 'probe order: hole')
    return id
  }

  /** The next member of this round, or undefined when the round is over. */
  draw (rng: Rng): MemberId | undefined {
    if (this.cursor >= this.length) { return undefined }
    const j = rng.intBetween(this.cursor, this.length - 1)
    const chosen = this.at(j)
    if (j !== this.cursor) {
      this.put(j, this.at(this.cursor))
      this.put(this.cursor, chosen)
    }
    this.cursor++
    return chosen
  }

  /** Starts a new round, keeping only the members `keep` accepts (all, without it). */
  startRound (keep?: (id: MemberId) => boolean): void {
    if (keep !== undefined) { this.filter(keep) }
    this.cursor = 0
  }

  /**
   * Removes the members `keep` refuses, now (mid-round too): O(size), and
   * `keep` is called once per member. Copies only if one is removed.
   */
  filter (keep: (id: MemberId) => boolean): void {
    let i = 0
    while (i < this.length && keep(this.at(i))) { i++ }
    if (i === this.length) { return }
    const kept: MemberId[] = []
    let cursor = 0
    for (let j = 0; j < i; j++) {
      kept.push(this.at(j))
      if (j < this.cursor) { cursor++ }
    }
    for (i++; i < this.length; i++) {
      const id = this.at(i)
      if (!keep(id)) { continue }
      kept.push(id)
      if (i < this.cursor) { cursor++ }
    }
    this.slots = kept
    this.owned = true
    this.patches.clear()
    this.length = kept.length
    this.cursor = Math.min(cursor, this.length)
  }

  /** Adds a member at a uniformly random position (see the module comment). */
  insert (id: MemberId, rng: Rng): void {
    const r = rng.intBetween(0, this.length)
    if (r < this.cursor) {
      // Among those drawn this round: it becomes the last of them, and the
      // member it displaces from the pool moves to the pool's end.
      if (this.cursor < this.length) {
        this.put(this.length, this.at(this.cursor))
        this.put(this.cursor, id)
      } else {
        this.put(this.length, id)
      }
      this.cursor++
    } else {
      // In the pool: every position there is drawn with the same chance.
      this.put(this.length, id)
    }
    this.length++
  }

  /** For tests: the members in order. */
  toArray (): MemberId[] {
    return Array.from({ length: this.length }, (_, i) => this.at(i))
  }

  private put (i: number, id: MemberId): void {
    if (this.owned) {
      (this.slots as MemberId[])[i] = id
      return
    }
    this.patches.set(i, id)
    if (this.patches.size > PATCHES_MIN && this.patches.size * 8 > this.length) { this.own() }
  }

  private own (): void {
    let size = this.slots.length
    for (const i of this.patches.keys()) { size = Math.max(size, i + 1) }
    const copy = new Array<MemberId>(size)
    for (let i = 0; i < this.slots.length; i++) { copy[i] = this.slots[i] }
    for (const [i, id] of this.patches) { copy[i] = id }
    this.slots = copy
    this.owned = true
    this.patches.clear()
  }
}
