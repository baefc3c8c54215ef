/**
 * Suspicion timeouts: how long a suspect member has to refute before it is
 * declared dead.
 *
 * SWIM's timeout grows with log N because news takes O(log N) protocol
 * periods to reach everyone, the suspect included, and its refutation as
 * long to come back (memberlist: suspicionMult * max(1, log10(N)) *
 * probeInterval). Lifeguard's dynamic suspicion (Dadgar et al. 2018, §4.2;
 * memberlist suspicion.go) starts at a maximum of suspicionMaxTimeoutMult
 * times that and shrinks toward it as other members independently suspect
 * the same member: with C confirmations out of K expected, the timeout is
 * `max - (max - min) * log(C + 1) / log(K + 1)`, never below min.
 *
 * A lone, possibly slow, accuser waits long; a member many can't reach is
 * declared dead nearly as fast as plain SWIM would.
 */
import { assert } from '../common/assert.ts'
import type { MemberId } from './types.ts'

/** memberlist's suspicionTimeout in ticks: suspicionMult * max(1, log10(max(1, n))) * probeIntervalTicks. */
export function suspicionTimeoutMinTicks (suspicionMult: number, liveMembers: number, probeIntervalTicks: number): number {
  const nodeScale = Math.max(1, Math.log10(Math.max(1, liveMembers)))
  return suspicionMult * nodeScale * probeIntervalTicks
}

/**
 * The timeout after `confirmations` of `expected` (Lifeguard's formula),
 * rounded up to whole ticks. `expected` < 1: min.
 */
export function suspicionTimeoutTicks (confirmations: number, expected: number, minTicks: number, maxTicks: number): number {
  assert(confirmations >= 0 && minTicks > 0 && maxTicks >= minTicks, 'suspicion: bad timeout parameters')
  if (expected < 1) { return Math.ceil(minTicks) }
  const fraction = Math.log(confirmations + 1) / Math.log(expected + 1)
  const raw = maxTicks - fraction * (maxTicks - minTicks)
  return Math.ceil(Math.max(minTicks, raw))
}

/**
 * Confirmations Lifeguard expects: suspicionMult - 2 ("we hit the nominal
 * timeout two probe intervals short of what the multiplier gives"), or none
 * when there are too few other members to give them (n - 2 excludes us and
 * the suspect).
 */
export function expectedConfirmations (suspicionMult: number, liveMembers: number): number {
  const k = suspicionMult - 2
  return liveMembers - 2 < k ? 0 : Math.max(0, k)
}

/** One running suspicion of a member at one incarnation. */
export class Suspicion {
  /** Who suspected first (this member, when its own probe started the suspicion). */
  readonly accuser: MemberId
  readonly incarnation: number
  readonly startTick: number
  readonly expected: number
  readonly minTicks: number
  readonly maxTicks: number
  /** Accusers heard from, the first one included; at most expected + 1 are kept. */
  private readonly accusers = new Set<MemberId>()
  private confirmationCount = 0
  deadlineTick: number

  constructor (from: MemberId, incarnation: number, startTick: number, expected: number, minTicks: number, maxTicks: number) {
    this.accuser = from
    this.incarnation = incarnation
    this.startTick = startTick
    this.expected = expected
    this.minTicks = minTicks
    this.maxTicks = maxTicks
    this.accusers.add(from)
    this.deadlineTick = startTick + suspicionTimeoutTicks(0, expected, minTicks, maxTicks)
  }

  /** Independent confirmations so far (the first accuser does not count). */
  get confirmations (): number {
    return this.confirmationCount
  }

  /**
   * Counts `from` as a confirmation if it is new and more are expected; the
   * deadline moves earlier. Returns whether it counted (memberlist re-gossips
   * a suspicion only then, so confirmations keep flowing without flooding).
   */
  confirm (from: MemberId): boolean {
    if (this.confirmationCount >= this.expected || this.accusers.has(from)) { return false }
    this.accusers.add(from)
    this.confirmationCount++
    this.deadlineTick = this.startTick + suspicionTimeoutTicks(this.confirmationCount, this.expected, this.minTicks, this.maxTicks)
    assert(this.accusers.size <= this.expected + 1, 'suspicion: more accusers kept than expected + 1')
    return true
  }
}
