/**
 * A hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014):
 * timestamps (wall ms, logical counter, replica) that follow physical time
 * yet never go backwards and always move past every timestamp received.
 * The physical time is a parameter: the caller reads the clock, this module
 * never does. Ties of (wall, logical) are broken by replica id, so two
 * replicas' timestamps are never equal.
 */
import { compareUtf8 } from '../kv/codec.ts'
import type { ReplicaId } from './causal.ts'
import type { Result } from './types.ts'

export interface Timestamp {
  readonly wall: number
  readonly logical: number
  readonly replica: ReplicaId
}

/** How far ahead of our physical time a received timestamp may be. */
export const HLC_MAX_DRIFT_MS_DEFAULT = 60_000

export function compareTimestamps (a: Timestamp, b: Timestamp): number {
  if (a.wall !== b.wall) { return a.wall - b.wall }
  if (a.logical !== b.logical) { return a.logical - b.logical }
  return compareUtf8(a.replica, b.replica)
}

/**
 * The timestamp of a new event at `replica` at physical time `now`, after
 * `last` (the latest timestamp this replica has seen, its own or received).
 */
export function nextTimestamp (last: Timestamp | null, replica: ReplicaId, now: number): Timestamp {
  if (!Number.isSafeInteger(now) || now < 0) { throw new RangeError(`physical time must be a non-negative safe integer: ${now}`) }
  if (last === null || now > last.wall) { return { wall: now, logical: 0, replica } }
  if (last.logical >= Number.MAX_SAFE_INTEGER) { throw new RangeError('hybrid logical clock counter exhausted') }
  return { wall: last.wall, logical: last.logical + 1, replica }
}

export class Hlc {
  readonly replica: ReplicaId
  readonly maxDriftMs: number
  private last: Timestamp | null = null

  constructor (replica: ReplicaId, maxDriftMs = HLC_MAX_DRIFT_MS_DEFAULT) {
    this.replica = replica
    this.maxDriftMs = maxDriftMs
  }

  /** The latest timestamp issued or received, if any. */
  get latest (): Timestamp | null {
    return this.last
  }

  /** A timestamp for a local event. */
  tick (now: number): Timestamp {
    this.last = nextTimestamp(this.last, this.replica, now)
    return this.last
  }

  /**
   * Takes in a remote timestamp and returns one for the receive event.
   * A remote wall time more than maxDriftMs ahead of `now` is refused, so
   * one replica with a wild clock cannot drag everyone's clock forward.
   */
  receive (remote: Timestamp, now: number): Result<Timestamp> {
    if (!Number.isSafeInteger(remote.wall) || remote.wall < 0 || !Number.isSafeInteger(remote.logical) || remote.logical < 0) {
      return { ok: false, error: 'malformed remote timestamp' }
    }
    if (remote.wall > now + this.maxDriftMs) {
      return { ok: false, error: `remote timestamp is ${remote.wall - now} ms ahead, more than ${this.maxDriftMs}` }
    }
    const seen = this.last === null || compareTimestamps(remote, this.last) > 0 ? remote : this.last
    this.last = nextTimestamp(seen, this.replica, now)
    return { ok: true, value: this.last }
  }
}
