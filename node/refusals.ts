/**
 * Refusals made visible: every time a node refuses a peer (or an HTTP
 * caller) it says so here. Each refusal is counted in
 * `accord_refusals_total{protocol,reason}` and logged as a warning, but at
 * most once per (peer, protocol, reason) every `logIntervalMs`, so a peer
 * that floods cannot flood the log too.
 *
 * Labels stay bounded: `protocol` is one of accord's own protocol ids (or
 * "http"), `reason` a fixed word chosen by the caller, never remote input.
 */
import { Counter, Registry } from 'prom-client'
import type { Logger } from 'pino'

/** Distinct (peer, protocol, reason) triples whose last log time is remembered. */
export const REFUSAL_LOG_KEYS_MAX = 4096
export const REFUSAL_LOG_INTERVAL_MS = 60_000

export interface RefusalsOptions {
  log: Logger
  /** Where the counter is registered (default: a registry of its own). */
  registry?: Registry
  logIntervalMs?: number
  logKeysMax?: number
  /** The clock, in ms (tests pass their own). */
  now?(): number
}

export class Refusals {
  readonly #log: Logger
  readonly #counter: Counter<'protocol' | 'reason'>
  readonly #intervalMs: number
  readonly #keysMax: number
  readonly #now: () => number
  /** Last log time by "peer protocol reason", oldest first (a Map keeps insertion order). */
  readonly #lastLogged = new Map<string, number>()

  constructor (options: RefusalsOptions) {
    this.#log = options.log
    this.#intervalMs = options.logIntervalMs ?? REFUSAL_LOG_INTERVAL_MS
    this.#keysMax = options.logKeysMax ?? REFUSAL_LOG_KEYS_MAX
    this.#now = options.now ?? Date.now
    this.#counter = new Counter({ name: 'accord_refusals_total', help: 'Requests, streams and messages refused, by protocol and reason', labelNames: ['protocol', 'reason'], registers: [options.registry ?? new Registry()] })
  }

  /** Record one refusal of `peer` on `protocol` for `reason`; `details` go into the log line. */
  refuse (peer: string, protocol: string, reason: string, details: Record<string, unknown> = {}): void {
    this.#counter.inc({ protocol, reason })
    const key = `${peer} ${protocol} ${reason}`
    const now = this.#now()
    const last = this.#lastLogged.get(key)
    if (last !== undefined && now - last < this.#intervalMs) { return }
    this.#lastLogged.delete(key)
    this.#lastLogged.set(key, now)
    if (this.#lastLogged.size > this.#keysMax) {
      const oldest = this.#lastLogged.keys().next().value as string
      this.#lastLogged.delete(oldest)
    }
    this.#log.warn({ peer, protocol, reason, ...details }, 'refused')
  }

  /** How many refusals of `protocol` for `reason` so far (read from the counter). */
  async count (protocol: string, reason: string): Promise<number> {
    const { values } = await this.#counter.get()
    return values.find(v => v.labels.protocol === protocol && v.labels.reason === reason)?.value ?? 0
  }

  /** Entries in the log rate-limit table (bounded by logKeysMax). */
  get trackedKeys (): number { return this.#lastLogged.size }
}
