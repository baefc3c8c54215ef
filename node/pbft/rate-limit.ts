/**
 * Per-peer, per-message-type rate limits of the PBFT transport: a token
 * bucket for each (peer, type), refilled at `ratePerSecond` up to `burst`.
 * Pure: the caller passes the time (ms), so tests inject a clock.
 */
import type { PbftMessage } from '../../protocols/pbft/types.ts'

export class TokenBucket {
  readonly #ratePerMs: number
  readonly #burst: number
  #tokens: number
  #lastMs: number

  constructor (ratePerSecond: number, burst: number, nowMs: number) {
    if (!(ratePerSecond > 0) || !(burst >= 1)) { throw new RangeError(`token bucket: rate must be > 0 and burst >= 1, got ${ratePerSecond} and ${burst}`) }
    this.#ratePerMs = ratePerSecond / 1000
    this.#burst = burst
    this.#tokens = burst
    this.#lastMs = nowMs
  }

  /** Takes one token if there is one; false when the rate is exceeded. */
  take (nowMs: number): boolean {
    // a clock that went back refills nothing
    const elapsed = Math.max(0, nowMs - this.#lastMs)
    this.#lastMs = Math.max(this.#lastMs, nowMs)
    this.#tokens = Math.min(this.#burst, this.#tokens + elapsed * this.#ratePerMs)
    if (this.#tokens < 1) { return false }
    this.#tokens -= 1
    return true
  }
}

export type PbftMessageType = PbftMessage['type']

export interface RateLimit {
  ratePerSecond: number
  burst: number
}

/**
 * Messages per second (and burst) one peer may send of each type. Sized for
 * the benchmark's load with room to spare: agreement messages go one per
 * batch per replica, checkpoints one per checkpointInterval batches, view
 * changes rarely; a client peer may relay many clients' requests, and a
 * client receives a reply from each replica per request.
 */
export const PBFT_RATE_LIMITS_DEFAULTS: Readonly<Record<PbftMessageType, RateLimit>> = Object.freeze({
  request: { ratePerSecond: 20_000, burst: 40_000 },
  'pre-prepare': { ratePerSecond: 10_000, burst: 20_000 },
  prepare: { ratePerSecond: 10_000, burst: 20_000 },
  commit: { ratePerSecond: 10_000, burst: 20_000 },
  checkpoint: { ratePerSecond: 500, burst: 1000 },
  'view-change': { ratePerSecond: 20, burst: 50 },
  'new-view': { ratePerSecond: 20, burst: 50 },
  'fetch-committed': { ratePerSecond: 50, burst: 100 },
  'committed-batches': { ratePerSecond: 100, burst: 200 },
  reply: { ratePerSecond: 20_000, burst: 40_000 },
  configuration: { ratePerSecond: 50, burst: 100 }
})

/** Peers whose buckets are kept; beyond it the longest-unused peer's are forgotten. */
export const RATE_LIMITED_PEERS_MAX = 1024

export class PeerRateLimiter {
  readonly #limits: Readonly<Record<PbftMessageType, RateLimit>>
  readonly #peersMax: number
  /** Buckets by peer, least recently used first (a Map keeps insertion order). */
  readonly #peers = new Map<string, Map<PbftMessageType, TokenBucket>>()

  constructor (limits: Partial<Record<PbftMessageType, RateLimit>> = {}, peersMax = RATE_LIMITED_PEERS_MAX) {
    this.#limits = { ...PBFT_RATE_LIMITS_DEFAULTS, ...limits }
    this.#peersMax = peersMax
  }

  /** Whether `peer` may send one more message of `type` now. */
  allow (peer: string, type: PbftMessageType, nowMs: number): boolean {
    let buckets = this.#peers.get(peer)
    if (buckets === undefined) {
      if (this.#peers.size >= this.#peersMax) { this.#peers.delete(this.#peers.keys().next().value as string) }
      buckets = new Map()
    } else {
      this.#peers.delete(peer)
    }
    this.#peers.set(peer, buckets)
    let bucket = buckets.get(type)
    if (bucket === undefined) {
      const limit = this.#limits[type]
      bucket = new TokenBucket(limit.ratePerSecond, limit.burst, nowMs)
      buckets.set(type, bucket)
    }
    return bucket.take(nowMs)
  }

  get trackedPeers (): number { return this.#peers.size }
}
