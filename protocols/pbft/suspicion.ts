/**
 * Suspicion without proof. Slowness and silence prove nothing (the network
 * may be to blame), so they never isolate anyone: they lower a replica's
 * score, from SCORE_MAX down to 0, and good behaviour raises it again. A
 * primary whose score falls to the limit `suspicionViewChangeScore` is
 * replaced by a view change, which catches what the request timer alone
 * does not: a primary that keeps ordering some requests (so the timer is
 * reset on every execution) while it starves or delays others. Operators
 * see the scores (status, metrics) before anything is proven.
 *
 * One score per replica of the set (bounded by n); kept in memory only.
 */
import type { NodeId } from './types.ts'

export const SCORE_MAX = 100

/** What lowers a score. */
export type SuspicionReason =
  /** A request this backup holds waited slowPrimaryTicks without being pre-prepared: per tick, while it lasts. */
  | 'slow-primary'
  /** The request timer expired under this primary: nothing it held executed for requestTimeoutTicks. */
  | 'request-timeout'
  /** No pre-prepare, prepare or commit from it in a whole checkpoint interval this replica took part in. */
  | 'silent'
  /** A message from its authenticated link that fails checks without proving anything (a malformed certificate, say). */
  | 'invalid-message'

export const SUSPICION_POINTS: Readonly<Record<SuspicionReason, number>> = Object.freeze({
  'slow-primary': 2,
  'request-timeout': 20,
  silent: 10,
  'invalid-message': 5
})

/** Raised per checkpoint interval in which a replica took part (and, for the primary, nothing waited too long). */
export const SCORE_RECOVERY_POINTS = 10

export interface PeerScore {
  peer: NodeId
  score: number
}

export class Suspicion {
  readonly #scores = new Map<NodeId, number>()

  constructor (replicas: NodeId[], self: NodeId) {
    for (const replica of replicas) {
      if (replica !== self) { this.#scores.set(replica, SCORE_MAX) }
    }
  }

  /** Lowers `peer`'s score for `reason`; returns the new score (SCORE_MAX for a peer outside the set). */
  lower (peer: NodeId, reason: SuspicionReason): number {
    const score = this.#scores.get(peer)
    if (score === undefined) { return SCORE_MAX }
    const lowered = Math.max(0, score - SUSPICION_POINTS[reason])
    this.#scores.set(peer, lowered)
    return lowered
  }

  raise (peer: NodeId, points = SCORE_RECOVERY_POINTS): void {
    const score = this.#scores.get(peer)
    if (score !== undefined) { this.#scores.set(peer, Math.min(SCORE_MAX, score + points)) }
  }

  score (peer: NodeId): number {
    return this.#scores.get(peer) ?? SCORE_MAX
  }

  /** Every other replica's score, in replica order. */
  list (): PeerScore[] {
    return [...this.#scores].map(([peer, score]) => ({ peer, score }))
  }
}
