/**
 * Lifeguard's local health awareness (Dadgar et al. 2018, §4.1; memberlist
 * awareness.go). A member that is itself slow (CPU starved, GC pauses, a
 * congested link) misses acks that were sent in time and suspects healthy
 * members. The multiplier counts evidence that the fault is local: a probe
 * with no ack at all, nacks expected from intermediaries that never came
 * (they could reach the target, or at least answer us, so our messages are
 * late), having to refute a suspicion about ourselves. A probe acked in time
 * is evidence of health. Probe interval and probe timeout are stretched by
 * (multiplier + 1), so a sick member probes less and waits longer before it
 * accuses anyone.
 */
import { assert } from '../common/assert.ts'

export class LocalHealth {
  readonly max: number
  private score = 0

  constructor (max: number) {
    assert(Number.isSafeInteger(max) && max >= 0, 'awareness: max must be a non-negative integer')
    this.max = max
  }

  get multiplier (): number {
    return this.score
  }

  /** Moves the multiplier by `delta`, clamped to 0..max. */
  apply (delta: number): void {
    assert(Number.isSafeInteger(delta), 'awareness: delta must be an integer')
    this.score = Math.min(this.max, Math.max(0, this.score + delta))
  }

  /** `ticks` stretched by the multiplier: ticks * (multiplier + 1). */
  scale (ticks: number): number {
    return ticks * (this.score + 1)
  }
}
