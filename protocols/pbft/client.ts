/**
 * The I/O-free PBFT client. It signs each request with its own key and a
 * fresh timestamp (the requests made since the last ready() are signed
 * there, together: one signature over a bundle of their digests, see
 * signRequests), sends an ordered request to the primary it believes in
 * (and to every replica when it retransmits), and accepts a result once
 * f+1 replicas sent the same one: at least one of them is honest.
 *
 * Read-only requests go to every replica, which answers at once from its
 * state; the client accepts a result on a quorum of matching replies, and
 * otherwise (replies that disagree, or a timeout) sends the operation again
 * as an ordered request, under a new timestamp.
 */
import { assert } from '../common/assert.ts'
import { primaryOf, signRequests } from './certificates.ts'
import { PBFT_DEFAULTS, faultsTolerated, quorumSize } from './config.ts'
import { bytesToDigest } from './encoding.ts'
import type { ClientRequest, NodeId, Outbound, PbftCrypto, Reply, StepResult } from './types.ts'

export interface PbftClientConfig {
  id: NodeId
  replicas: NodeId[]
  crypto: PbftCrypto
  /** Unanswered requests are sent again, to every replica, this often. */
  retransmitTicks: number
  /** Requests awaiting a result; submit() refuses more. */
  outstandingMax: number
  /** The first request's timestamp; later ones count up (a restarted client starts above its last one). */
  firstTimestamp: number
  /** Largest operation submit() accepts (the replicas' limit). */
  operationBytesMax?: number
}

export interface PbftClientReady {
  messages: Outbound[]
  /** Results by the timestamp submit() returned. */
  results: Array<{ timestamp: number, result: Uint8Array }>
}

interface Outstanding {
  /** The timestamp submit() returned (a read-only request re-sent as ordered keeps it). */
  submitted: number
  request: ClientRequest
  replies: Map<NodeId, Reply>
  ticks: number
}

export class PbftClient {
  readonly #config: PbftClientConfig
  #f: number
  #quorum: number
  readonly #operationBytesMax: number
  /** By the timestamp of the request currently out. */
  readonly #outstanding = new Map<number, Outstanding>()
  #nextTimestamp: number
  #view = 0
  /** Replicas whose link the driver reports down: at most n. */
  readonly #linksDown = new Set<NodeId>()
  #messages: Outbound[] = []
  #results: PbftClientReady['results'] = []
  /** Requests made since the last ready(), which signs them (no request leaves unsigned: only ready() hands messages out). */
  #unsigned: ClientRequest[] = []

  constructor (config: PbftClientConfig) {
    if (config.replicas.length === 0) { throw new RangeError('pbft client: no replicas') }
    for (const key of ['retransmitTicks', 'outstandingMax'] as const) {
      if (!Number.isSafeInteger(config[key]) || config[key] < 1) { throw new RangeError(`pbft client: ${key} must be a positive integer`) }
    }
    if (!Number.isSafeInteger(config.firstTimestamp) || config.firstTimestamp < 0) { throw new RangeError('pbft client: firstTimestamp must be a non-negative integer') }
    this.#config = { ...config, replicas: [...config.replicas] }
    this.#f = faultsTolerated(config.replicas.length)
    this.#quorum = quorumSize(config.replicas.length)
    this.#operationBytesMax = config.operationBytesMax ?? PBFT_DEFAULTS.operationBytesMax
    this.#nextTimestamp = config.firstTimestamp
  }

  /** The view the client believes the replicas are in (learnt from accepted replies). */
  get view (): number {
    return this.#view
  }

  submit (operation: Uint8Array, readOnly: boolean): { ok: true, timestamp: number } | { ok: false, reason: 'busy' | 'too-large' } {
    if (this.#outstanding.size >= this.#config.outstandingMax) { return { ok: false, reason: 'busy' } }
    if (operation.length > this.#operationBytesMax) { return { ok: false, reason: 'too-large' } }
    const timestamp = this.#nextTimestamp
    this.#send(timestamp, operation, readOnly)
    return { ok: true, timestamp }
  }

  receiveReply (reply: Reply, link: NodeId): StepResult {
    if (!this.#config.replicas.includes(link)) { return { ok: false, reason: 'not-a-replica' } }
    if (reply?.type !== 'reply' || reply.replica !== link) { return { ok: false, reason: 'wrong-sender' } }
    if (reply.client !== this.#config.id) { return { ok: false, reason: 'malformed', detail: 'a reply for another client' } }
    const outstanding = this.#outstanding.get(reply.timestamp)
    if (outstanding === undefined || reply.readOnly !== outstanding.request.readOnly) { return { ok: false, reason: 'stale' } }
    outstanding.replies.set(link, reply)
    const needed = outstanding.request.readOnly ? this.#quorum : this.#f + 1
    const groups = new Map<string, Reply[]>()
    for (const held of outstanding.replies.values()) {
      const key = bytesToDigest(held.result)
      const group = groups.get(key) ?? []
      group.push(held)
      groups.set(key, group)
      if (group.length >= needed) {
        this.#accept(outstanding, group)
        return { ok: true }
      }
    }
    const largest = Math.max(...[...groups.values()].map(group => group.length))
    const unanswered = this.#config.replicas.length - outstanding.replies.size
    if (outstanding.request.readOnly && largest + unanswered < needed) { this.#reorder(outstanding) }
    return { ok: true }
  }

  /**
   * The driver's word that the link to `peer` (a replica) is down. When it
   * is the primary the client believes in, every ordered request waiting
   * for a result goes at once to every replica whose link is not down (the
   * backups hold it and, the primary's link being down there too, start
   * the view change at once; see PbftReplica.linkDown), and so do new
   * requests while the link stays down. Returns whether the link counts.
   */
  linkDown (peer: NodeId): boolean {
    if (!this.#config.replicas.includes(peer)) { return false }
    const wasUp = !this.#linksDown.has(peer)
    this.#linksDown.add(peer)
    if (wasUp && peer === this.#primary) {
      for (const outstanding of this.#outstanding.values()) {
        if (outstanding.request.readOnly) { continue }
        outstanding.ticks = 0
        this.#broadcast(outstanding.request)
      }
    }
    return true
  }

  linkUp (peer: NodeId): void {
    this.#linksDown.delete(peer)
  }

  /**
   * A new replica set is in force (a reconfiguration the client learnt
   * of): replies count from its replicas only, with its f and quorum, and
   * every ordered request still waiting goes to each of them at once (the
   * new set starts in a view of its own, whose primary the client cannot
   * know yet). Read-only requests wait for their retransmission timer.
   */
  setReplicas (replicas: NodeId[]): void {
    if (replicas.length === 0) { throw new RangeError('pbft client: no replicas') }
    this.#config.replicas = [...replicas]
    this.#f = faultsTolerated(replicas.length)
    this.#quorum = quorumSize(replicas.length)
    for (const peer of [...this.#linksDown]) { if (!replicas.includes(peer)) { this.#linksDown.delete(peer) } }
    for (const outstanding of this.#outstanding.values()) {
      for (const replica of [...outstanding.replies.keys()]) { if (!replicas.includes(replica)) { outstanding.replies.delete(replica) } }
      if (!outstanding.request.readOnly) {
        outstanding.ticks = 0
        this.#broadcast(outstanding.request)
      }
    }
  }

  tick (): void {
    for (const outstanding of [...this.#outstanding.values()]) {
      outstanding.ticks++
      if (outstanding.ticks < this.#config.retransmitTicks) { continue }
      if (outstanding.request.readOnly) {
        this.#reorder(outstanding)
      } else {
        outstanding.ticks = 0
        this.#broadcast(outstanding.request)
      }
    }
  }

  hasReady (): boolean {
    return this.#messages.length > 0 || this.#results.length > 0
  }

  ready (): PbftClientReady {
    if (this.#unsigned.length > 0) {
      signRequests(this.#unsigned, this.#config.crypto)
      this.#unsigned = []
    }
    const ready = { messages: this.#messages, results: this.#results }
    this.#messages = []
    this.#results = []
    return ready
  }

  /** Nothing to acknowledge: ready() hands over its lists. Kept for the Ready-loop shape the drivers share. */
  advance (): void {}

  #send (submitted: number, operation: Uint8Array, readOnly: boolean): void {
    const timestamp = this.#nextTimestamp++
    const request: ClientRequest = { type: 'request', client: this.#config.id, timestamp, operation, readOnly, signature: new Uint8Array(0) }
    this.#unsigned.push(request)
    this.#outstanding.set(timestamp, { submitted, request, replies: new Map(), ticks: 0 })
    if (readOnly || this.#linksDown.has(this.#primary)) {
      this.#broadcast(request)
    } else {
      this.#messages.push({ to: this.#primary, message: request })
    }
  }

  /** A read-only request that got no quorum: ordered now, under a new timestamp. */
  #reorder (outstanding: Outstanding): void {
    assert(outstanding.request.readOnly, 'only read-only requests are re-sent as ordered')
    this.#outstanding.delete(outstanding.request.timestamp)
    this.#send(outstanding.submitted, outstanding.request.operation, false)
  }

  #accept (outstanding: Outstanding, matching: Reply[]): void {
    this.#outstanding.delete(outstanding.request.timestamp)
    this.#results.push({ timestamp: outstanding.submitted, result: matching[0].result })
    // the view at least f+1 of them report: one of those is honest
    const views = matching.map(reply => reply.view).sort((a, b) => b - a)
    const view = views[Math.min(this.#f, views.length - 1)]
    if (view > this.#view) {
      this.#view = view
      // a new view: the ordered requests still waiting went to the old primary, maybe gone; its successor gets them now
      for (const waiting of this.#outstanding.values()) {
        if (!waiting.request.readOnly) { this.#messages.push({ to: this.#primary, message: waiting.request }) }
      }
    }
  }

  get #primary (): NodeId {
    return primaryOf(this.#view, this.#config.replicas)
  }

  /** To every replica whose link is not known to be down (to all of them if none is up). */
  #broadcast (request: ClientRequest): void {
    const up = this.#config.replicas.filter(replica => !this.#linksDown.has(replica))
    for (const replica of up.length > 0 ? up : this.#config.replicas) { this.#messages.push({ to: replica, message: request }) }
  }
}
