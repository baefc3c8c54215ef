/**
 * Client requests a replica holds until they execute: `pending` ones wait to
 * be ordered (bounded over all clients and per client), `inFlight` ones are
 * in a pre-prepare accepted in the current view. Keyed by (client,
 * timestamp), the unit of exactly-once.
 */
import type { PbftLimits } from './config.ts'
import type { ClientRequest, NodeId } from './types.ts'

export function requestKey (request: { client: NodeId, timestamp: number }): string {
  return `${request.client}\u0000${request.timestamp}`
}

export class RequestQueue {
  readonly #limits: PbftLimits
  readonly #pending = new Map<string, ClientRequest>()
  readonly #perClient = new Map<NodeId, number>()
  readonly #inFlight = new Map<string, ClientRequest>()

  constructor (limits: PbftLimits) {
    this.#limits = limits
  }

  get pendingCount (): number {
    return this.#pending.size
  }

  /** Pending or in flight: executing it is awaited. */
  get waiting (): boolean {
    return this.#pending.size > 0 || this.#inFlight.size > 0
  }

  has (key: string): 'pending' | 'in-flight' | null {
    if (this.#pending.has(key)) { return 'pending' }
    if (this.#inFlight.has(key)) { return 'in-flight' }
    return null
  }

  /** Queues a request to order, unless a limit is reached. */
  add (request: ClientRequest): 'added' | 'buffer-full' | 'client-limit' {
    if (this.#pending.size >= this.#limits.pendingRequestsMax) { return 'buffer-full' }
    const count = this.#perClient.get(request.client) ?? 0
    if (count >= this.#limits.pendingPerClientMax) { return 'client-limit' }
    this.#pending.set(requestKey(request), request)
    this.#perClient.set(request.client, count + 1)
    return 'added'
  }

  /** Requests in arrival order. */
  pending (): IterableIterator<ClientRequest> {
    return this.#pending.values()
  }

  /** Now in an accepted pre-prepare. */
  markInFlight (request: ClientRequest): void {
    const key = requestKey(request)
    this.#removePending(key)
    this.#inFlight.set(key, request)
  }

  /** Executed (or superseded): forgotten. */
  done (request: { client: NodeId, timestamp: number }): void {
    const key = requestKey(request)
    this.#removePending(key)
    this.#inFlight.delete(key)
  }

  /** A new view: requests that its pre-prepares do not carry wait to be ordered again (as far as the limits allow). */
  requeueInFlight (): void {
    const inFlight = [...this.#inFlight.values()]
    this.#inFlight.clear()
    for (const request of inFlight) { this.add(request) }
  }

  #removePending (key: string): void {
    const request = this.#pending.get(key)
    if (request === undefined) { return }
    this.#pending.delete(key)
    const count = (this.#perClient.get(request.client) ?? 1) - 1
    if (count === 0) { this.#perClient.delete(request.client) } else { this.#perClient.set(request.client, count) }
  }
}
