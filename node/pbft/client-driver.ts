/**
 * Drives the I/O-free PBFT client (protocols/pbft PbftClient): a tick timer
 * for retransmissions, replies from the transport, and one promise per
 * submitted operation that resolves with its result once f+1 replicas (a
 * quorum for a read-only request) answered alike. The node serving HTTP
 * runs one; so does `accord bft` on a machine that is not a replica, and
 * the simulator (test/sim/pbft) its clients.
 */
import { PbftClient } from '../../protocols/pbft/index.ts'
import { systemRuntime } from '../runtime.ts'
import type { NodeId, PbftCrypto, PbftMessage, Reply, StepResult } from '../../protocols/pbft/types.ts'
import type { DriverRuntime } from '../runtime.ts'

export const PBFT_CLIENT_TICK_INTERVAL_MS = 50
export const PBFT_CLIENT_RETRANSMIT_MS = 500
export const PBFT_CLIENT_OUTSTANDING_MAX = 64

export class PbftClientError extends Error {
  readonly code: 'busy' | 'too-large' | 'stopped' | 'aborted'
  constructor (code: PbftClientError['code'], message: string) {
    super(message)
    this.name = 'PbftClientError'
    this.code = code
  }
}

export interface PbftClientDriverOptions {
  id: NodeId
  replicas: NodeId[]
  crypto: PbftCrypto
  send(to: NodeId, message: PbftMessage): void
  runtime?: DriverRuntime
  tickIntervalMs?: number
  /** Unanswered requests go again, to every replica, after this long. */
  retransmitMs?: number
  /** Operations in flight at once; submit() beyond it fails with 'busy'. */
  outstandingMax?: number
  /**
   * The first request's timestamp (default 1). Timestamps must grow over
   * the client's whole life: a client that restarts under the same id must
   * start above every timestamp it used before, or replicas drop its
   * requests as stale.
   */
  firstTimestamp?: number
}

interface Waiter {
  resolve(result: Uint8Array): void
  reject(err: Error): void
}

export class PbftClientDriver {
  readonly id: NodeId
  readonly #core: PbftClient
  readonly #options: PbftClientDriverOptions
  readonly #runtime: DriverRuntime
  /** By timestamp; bounded by outstandingMax (the core refuses more). */
  readonly #waiters = new Map<number, Waiter>()
  #cancelTick: (() => void) | null = null
  #stopped = false
  /** A flush is queued on a later turn (#flushSoon). */
  #flushQueued = false

  constructor (options: PbftClientDriverOptions) {
    this.id = options.id
    this.#options = options
    this.#runtime = options.runtime ?? systemRuntime
    const tickMs = options.tickIntervalMs ?? PBFT_CLIENT_TICK_INTERVAL_MS
    this.#core = new PbftClient({
      id: options.id,
      replicas: options.replicas,
      crypto: options.crypto,
      retransmitTicks: Math.max(1, Math.ceil((options.retransmitMs ?? PBFT_CLIENT_RETRANSMIT_MS) / tickMs)),
      outstandingMax: options.outstandingMax ?? PBFT_CLIENT_OUTSTANDING_MAX,
      firstTimestamp: options.firstTimestamp ?? 1
    })
  }

  start (): void {
    if (this.#stopped || this.#cancelTick !== null) { return }
    this.#cancelTick = this.#runtime.setInterval(() => {
      this.#core.tick()
      this.#flush()
    }, this.#options.tickIntervalMs ?? PBFT_CLIENT_TICK_INTERVAL_MS)
  }

  /** Stops retransmitting; every operation still waiting fails with 'stopped'. */
  stop (): void {
    this.#stopped = true
    this.#cancelTick?.()
    this.#cancelTick = null
    const err = new PbftClientError('stopped', 'the PBFT client is stopping')
    for (const waiter of this.#waiters.values()) { waiter.reject(err) }
    this.#waiters.clear()
  }

  /**
   * Orders `operation` (operations.ts encodes them) and resolves with its
   * result bytes. `readOnly`: try the read-only optimisation first (the
   * core falls back to an ordered request when the replies disagree). An
   * abort stops the wait, not the request: it may still execute.
   */
  async submit (operation: Uint8Array, options: { readOnly?: boolean, signal?: AbortSignal } = {}): Promise<Uint8Array> {
    if (this.#stopped) { throw new PbftClientError('stopped', 'the PBFT client is stopping') }
    const { signal } = options
    if (signal?.aborted === true) { throw new PbftClientError('aborted', 'the operation was aborted') }
    const submitted = this.#core.submit(operation, options.readOnly === true)
    if (!submitted.ok) {
      throw submitted.reason === 'busy'
        ? new PbftClientError('busy', 'too many operations in flight')
        : new PbftClientError('too-large', 'the operation is too large')
    }
    const { timestamp } = submitted
    const result = new Promise<Uint8Array>((resolve, reject) => { this.#waiters.set(timestamp, { resolve, reject }) })
    this.#flushSoon()
    if (signal === undefined) { return result }
    const onAbort = (): void => {
      const waiter = this.#waiters.get(timestamp)
      this.#waiters.delete(timestamp)
      waiter?.reject(new PbftClientError('aborted', 'the operation was aborted'))
    }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      return await result
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  /** A reply from a replica over the authenticated link `link`. */
  receive (reply: Reply, link: NodeId): StepResult {
    if (this.#stopped) { return { ok: false, reason: 'stale', detail: 'the client is stopped' } }
    const result = this.#core.receiveReply(reply, link)
    this.#flush()
    return result
  }

  /** The connection to a replica closed: when it is the primary, what waits goes to every other replica at once (PbftClient.linkDown). */
  linkDown (peer: NodeId): void {
    if (this.#stopped) { return }
    this.#core.linkDown(peer)
    this.#flush()
  }

  linkUp (peer: NodeId): void {
    this.#core.linkUp(peer)
  }

  /** A new replica set is in force: the client talks to it (PbftClient.setReplicas). */
  setReplicas (replicas: NodeId[]): void {
    if (this.#stopped) { return }
    this.#core.setReplicas(replicas)
    this.#flush()
  }

  /** Operations waiting for their result. */
  get outstanding (): number {
    return this.#waiters.size
  }

  /**
   * After a submit: an operation alone (nothing else waiting for a result)
   * goes at once; under load, those submitted on the same turn wait for the
   * flush queued on a later turn (runtime.defer), which signs them together
   * (one bundle, one signature, see PbftClient.ready).
   */
  #flushSoon (): void {
    if (this.#flushQueued) { return }
    if (this.#waiters.size <= 1) {
      this.#flush()
      return
    }
    this.#flushQueued = true
    this.#runtime.defer(() => {
      this.#flushQueued = false
      this.#flush()
    })
  }

  #flush (): void {
    while (!this.#stopped && this.#core.hasReady()) {
      const ready = this.#core.ready()
      for (const { to, message } of ready.messages) { this.#options.send(to, message) }
      for (const { timestamp, result } of ready.results) {
        const waiter = this.#waiters.get(timestamp)
        this.#waiters.delete(timestamp)
        waiter?.resolve(result)
      }
      this.#core.advance()
    }
  }
}
