/**
 * Client requests a replica holds until they execute: `pending` ones wait to
 * be ordered (bounded over all clients and per client), `inFlight` ones are
 * in a pre-prepare accepted in the current view. Keyed by (client,
 * timestamp), the unit of exactly-once. The tick each pending request
 * arrived at tells how long the oldest has waited (suspicion.ts).
 */
import type { PbftLimits } from './config.ts'
import type { ClientRequest, NodeId } from './types.ts'

export function requestKey (request: { client: NodeId, timestamp: number }): string {
  return `${request.client}\u0000${request.timestamp}`
}

export class RequestQueue {
  readonly #limits: PbftLimits
  /** In arrival order, with the tick of arrival. */
  readonly #pending = new Map<string, { request: ClientRequest, since: number }>()
  readonly #perClient = new Map<NodeId, number>()
  readonly #inFlight = new Map<string, ClientRequest>()
  /** Operation bytes of the pending requests. */
  #pendingBytes = 0

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

  /** Queues a request to order (arrived at tick `now`), unless a limit is reached. */
  add (request: ClientRequest, now: number): 'added' | 'buffer-full' | 'client-limit' {
    if (this.#pending.size >= this.#limits.pendingRequestsMax) { return 'buffer-full' }
    const count = this.#perClient.get(request.client) ?? 0
    if (count >= this.#limits.pendingPerClientMax) { return 'client-limit' }
    if (this.#pendingBytes + request.operation.byteLength > this.#limits.pendingBytesMax) { return 'buffer-full' }
    this.#pending.set(requestKey(request), { request, since: now })
    this.#pendingBytes += request.operation.byteLength
    this.#perClient.set(request.client, count + 1)
    return 'added'
  }

  /** Requests in arrival order. */
  * pending (): IterableIterator<ClientRequest> {
    for (const { request } of this.#pending.values()) { yield request }
  }

  /** The arrival tick of the request waiting longest to be ordered, or null if none waits. */
  oldestPendingSince (): number | null {
    return this.#pending.values().next().value?.since ?? null
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

  /** A new view (at tick `now`): requests that its pre-prepares do not carry wait to be ordered again (as far as the limits allow). */
  requeueInFlight (now: number): void {
    const inFlight = [...this.#inFlight.values()]
    this.#inFlight.clear()
    for (const request of inFlight) { this.add(request, now) }
  }

  /** Forgets every request (a state transfer may have executed any of them). */
  clear (): void {
    this.#pending.clear()
    this.#pendingBytes = 0
    this.#perClient.clear()
    this.#inFlight.clear()
  }

  #removePending (key: string): void {
    const held = this.#pending.get(key)
    if (held === undefined) { return }
    this.#pending.delete(key)
    this.#pendingBytes -= held.request.operation.byteLength
    const { client } = held.request
    const count = (this.#perClient.get(client) ?? 1) - 1
    if (count === 0) { this.#perClient.delete(client) } else { this.#perClient.set(client, count) }
  }
}
