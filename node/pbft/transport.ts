/**
 * The PBFT transport: carries PbftMessages (replica messages, client
 * requests and replies) between nodes over `/accord/pbft/1.0.0`, and
 * serves state transfer over `/accord/pbft-state/1.0.0`.
 *
 * Outbound: one long-lived stream per peer, opened on the first send and
 * reused, with length-prefixed frames of encodeMessage bytes. send() never
 * blocks: it appends to the peer's bounded queue (the oldest is dropped
 * when full) and wakes the peer's writer. A failed dial or stream drops
 * what was queued (PBFT retransmits what matters) and backs off. A message
 * to this node itself is handed to onMessage on a later turn.
 *
 * Inbound: only admitted peers get here (the service registers through
 * admission's gate). An isolated peer's stream is closed at once. Each
 * frame must be at most messageBytesMax and decode (decodeMessage, with
 * the core's limits); a frame that does not is counted and closes the
 * stream. Each message then passes the peer's token bucket for its type
 * (rate-limit.ts), or is dropped and counted. Nothing a peer sends can
 * throw out of here.
 *
 * State transfer is request/response on its own stream: the asker writes
 * the seq (decimal text), the holder answers a header frame (`found u8,
 * bytes u64be`) and the state in chunks, bounded by snapshotBytesMax.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { decodeMessage, encodeMessage } from '../../protocols/pbft/encoding.ts'
import { boundedLengthDecoder } from '../raft/transport.ts'
import { PeerRateLimiter } from './rate-limit.ts'
import type { PbftTransport } from './driver.ts'
import type { RateLimit, PbftMessageType } from './rate-limit.ts'
import type { PbftLimits } from '../../protocols/pbft/config.ts'
import type { NodeId, PbftMessage } from '../../protocols/pbft/types.ts'
import type { RaftTransportComponents } from '../raft/transport.ts'
import type { Connection, Logger, PeerId, Stream } from '@libp2p/interface'
import type { LengthPrefixedStream } from '@libp2p/utils'

export const PBFT_PROTOCOL = '/accord/pbft/1.0.0'
export const PBFT_STATE_PROTOCOL = '/accord/pbft-state/1.0.0'

const KIB = 1024
const MIB = 1024 * KIB

export interface PbftTransportLimits {
  /** Largest encoded message sent or accepted (a pre-prepare's batch is at most the core's batchBytesMax). */
  messageBytesMax: number
  /** Messages queued per peer; when full the oldest is dropped. */
  outboundQueueMessagesMax: number
  /** Encoded bytes queued per peer. */
  outboundQueueBytesMax: number
  /** Peers with outbound state (queue, stream, backoff). */
  peersMax: number
  /** An inbound stream with no frame for this long is closed (the sender reopens on its next message). */
  readIdleTimeoutMs: number
  /** A write that cannot be flushed for this long fails its stream. */
  writeTimeoutMs: number
  dialTimeoutMs: number
  reconnectBackoffMinMs: number
  reconnectBackoffMaxMs: number
  /** Largest state fetched or served (the KV store's largest snapshot). */
  snapshotBytesMax: number
  snapshotChunkBytes: number
  /** A whole state fetch (dial, request, every chunk) must finish within this. */
  fetchStateTimeoutMs: number
  /** State fetches served at once; more are refused (each holds a snapshot's chunks in flight). */
  stateServesMax: number
  /** Registrar limits per connection on the message protocol: one long-lived stream each way, plus room for a replacement. */
  maxInboundStreams: number
  maxOutboundStreams: number
}

export const PBFT_TRANSPORT_DEFAULTS: Readonly<PbftTransportLimits> = Object.freeze({
  messageBytesMax: 32 * MIB,
  outboundQueueMessagesMax: 8192,
  outboundQueueBytesMax: 64 * MIB,
  peersMax: 1024,
  readIdleTimeoutMs: 60_000,
  writeTimeoutMs: 10_000,
  dialTimeoutMs: 5_000,
  reconnectBackoffMinMs: 50,
  reconnectBackoffMaxMs: 2_000,
  snapshotBytesMax: 512 * MIB,
  snapshotChunkBytes: MIB,
  fetchStateTimeoutMs: 60_000,
  stateServesMax: 4,
  maxInboundStreams: 4,
  maxOutboundStreams: 4
})

export type PbftFrameRejectReason =
  /** Larger than messageBytesMax, or a length prefix that is not a varint. */
  | 'oversize'
  /** decodeMessage refused it. */
  | 'malformed'
  /** More than the peer's token bucket for the message type allows. */
  | 'rate-limited'
  /** The peer is on this node's blocklist. */
  | 'isolated'

export type PbftDropReason = 'queue-full' | 'unreachable' | 'stream-error' | 'oversize' | 'invalid-peer' | 'peers-full' | 'not-running'

export interface PbftTransportStats {
  messagesSent: number
  messagesReceived: number
  rejected: Record<PbftFrameRejectReason, number>
  dropped: Record<PbftDropReason, number>
  statesServed: number
  statesFetched: number
}

/** What the transport uses from libp2p: the same as the Raft transport. */
export type PbftTransportComponents = RaftTransportComponents

export interface PbftTransportInit {
  limits?: Partial<PbftTransportLimits>
  rateLimits?: Partial<Record<PbftMessageType, RateLimit>>
  /** The core's limits, for decoding (the same on every replica). */
  coreLimits?: Partial<PbftLimits>
  /** Every decoded message that passed the rate limits, with the peer it came from. Must not block. */
  onMessage(message: PbftMessage, link: NodeId): void
  /** Whether `peer` is isolated (its streams are closed and refused). */
  isIsolated(peer: NodeId): boolean
  /** This node's state at `seq`, for a peer catching up; null when it has none. */
  serveState(seq: number): Uint8Array | null
  /** A frame or message refused (for metrics and the refusal log). */
  onRejected?(peer: NodeId, reason: PbftFrameRejectReason): void
  /** The clock in ms (tests pass their own for the rate limits). */
  now?(): number
}

const REJECT_REASONS: readonly PbftFrameRejectReason[] = ['oversize', 'malformed', 'rate-limited', 'isolated']
const DROP_REASONS: readonly PbftDropReason[] = ['queue-full', 'unreachable', 'stream-error', 'oversize', 'invalid-peer', 'peers-full', 'not-running']
/** Header of a state answer: found u8, state bytes u64be. */
const STATE_HEADER_BYTES = 9
/** Decimal digits of a seq in a state request. */
const STATE_REQUEST_BYTES_MAX = 20

function zeroCounts<K extends string> (keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map(k => [k, 0])) as Record<K, number>
}

interface Outbound {
  id: string
  peerId: PeerId
  queue: Uint8Array[]
  queuedBytes: number
  lp?: LengthPrefixedStream<Stream>
  stream?: Stream
  draining: boolean
  failures: number
  retryAtMs: number
}

export class PbftStreamTransport implements PbftTransport {
  readonly #components: PbftTransportComponents
  readonly #init: PbftTransportInit
  readonly limits: Readonly<PbftTransportLimits>
  readonly #self: string
  readonly #log: Logger
  readonly #rate: PeerRateLimiter
  readonly #now: () => number
  readonly #outbound = new Map<string, Outbound>()
  readonly #inbound = new Set<Stream>()
  readonly #decodeLength: ReturnType<typeof boundedLengthDecoder>
  #running = false
  #abort = new AbortController()
  #statesServing = 0
  #messagesSent = 0
  #messagesReceived = 0
  #statesServed = 0
  #statesFetched = 0
  readonly #rejected = zeroCounts(REJECT_REASONS)
  readonly #dropped = zeroCounts(DROP_REASONS)

  constructor (components: PbftTransportComponents, init: PbftTransportInit) {
    this.#components = components
    this.#init = init
    this.limits = resolveTransportLimits(init.limits)
    this.#self = components.peerId.toString()
    this.#log = components.logger.forComponent('accord:pbft:transport')
    this.#rate = new PeerRateLimiter(init.rateLimits, this.limits.peersMax)
    this.#now = init.now ?? (() => performance.now())
    this.#decodeLength = boundedLengthDecoder(this.limits.messageBytesMax)
  }

  async start (): Promise<void> {
    if (this.#running) { return }
    this.#abort = new AbortController()
    this.#running = true
    const { registrar } = this.#components
    await registrar.handle(PBFT_PROTOCOL, this.#onStream, { maxInboundStreams: this.limits.maxInboundStreams, maxOutboundStreams: this.limits.maxOutboundStreams })
    await registrar.handle(PBFT_STATE_PROTOCOL, this.#onStateStream, { maxInboundStreams: this.limits.stateServesMax, maxOutboundStreams: 2 })
  }

  async stop (): Promise<void> {
    if (!this.#running) { return }
    this.#running = false
    this.#abort.abort(new Error('pbft transport stopped'))
    for (const protocol of [PBFT_PROTOCOL, PBFT_STATE_PROTOCOL]) {
      await this.#components.registrar.unhandle(protocol).catch(err => { this.#log.error('unhandle %s failed - %e', protocol, err) })
    }
    const streams = [...this.#inbound]
    for (const out of this.#outbound.values()) {
      if (out.stream !== undefined) { streams.push(out.stream) }
    }
    this.#outbound.clear()
    this.#inbound.clear()
    for (const stream of streams) { stream.abort(new Error('pbft transport stopped')) }
  }

  /** Queues `message` for `to`; never blocks, never throws for network reasons (a message that cannot go is dropped and counted). */
  send (to: NodeId, message: PbftMessage): void {
    if (!this.#running) { this.#dropped['not-running']++; return }
    if (to === this.#self) {
      // to ourselves (our client to our replica, or back): on a later turn, as if it came over a link
      setImmediate(() => { if (this.#running) { this.#deliver(message, this.#self) } })
      return
    }
    const frame = encodeMessage(message)
    if (frame.byteLength > this.limits.messageBytesMax) {
      this.#log('dropping %s to %s: %d bytes exceed messageBytesMax', message.type, to, frame.byteLength)
      this.#dropped.oversize++
      return
    }
    const out = this.#outboundFor(to)
    if (typeof out === 'string') { this.#dropped[out]++; return }
    out.queue.push(frame)
    out.queuedBytes += frame.byteLength
    while (out.queue.length > this.limits.outboundQueueMessagesMax || out.queuedBytes > this.limits.outboundQueueBytesMax) {
      out.queuedBytes -= out.queue.shift()?.byteLength ?? 0
      this.#dropped['queue-full']++
    }
    if (!out.draining) { void this.#drain(out) }
  }

  /** Asks `from` for its state at `seq`; null when it has none, cannot be reached, or answers badly. */
  async fetchState (from: NodeId, seq: number): Promise<Uint8Array | null> {
    if (!this.#running || from === this.#self) { return null }
    let peerId: PeerId
    try { peerId = peerIdFromString(from) } catch { return null }
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.limits.fetchStateTimeoutMs)])
    let stream: Stream | undefined
    try {
      stream = await this.#components.connectionManager.openStream(peerId, PBFT_STATE_PROTOCOL, { signal })
      const lp = lpStream(stream, { maxDataLength: Math.max(this.limits.snapshotChunkBytes, STATE_HEADER_BYTES), lengthDecoder: boundedLengthDecoder(Math.max(this.limits.snapshotChunkBytes, STATE_HEADER_BYTES)) })
      await lp.write(new TextEncoder().encode(String(seq)), { signal })
      const header = (await lp.read({ signal })).subarray()
      if (header.byteLength !== STATE_HEADER_BYTES || header[0] > 1) { throw new Error('bad state header') }
      if (header[0] === 0) { return null }
      const total = Number(new DataView(header.buffer, header.byteOffset, header.byteLength).getBigUint64(1))
      if (total > this.limits.snapshotBytesMax) { throw new Error(`state of ${total} bytes exceeds snapshotBytesMax`) }
      const data = new Uint8Array(total)
      let received = 0
      while (received < total) {
        const chunk = (await lp.read({ signal })).subarray()
        if (chunk.byteLength === 0 || received + chunk.byteLength > total) { throw new Error('state chunks overrun the announced size') }
        data.set(chunk, received)
        received += chunk.byteLength
      }
      await stream.close({ signal }).catch(() => {})
      this.#statesFetched++
      return data
    } catch (err) {
      this.#log('fetching the state at %d from %s failed - %e', seq, from, err)
      stream?.abort(err instanceof Error ? err : new Error(String(err)))
      return null
    }
  }

  stats (): PbftTransportStats {
    return {
      messagesSent: this.#messagesSent,
      messagesReceived: this.#messagesReceived,
      rejected: { ...this.#rejected },
      dropped: { ...this.#dropped },
      statesServed: this.#statesServed,
      statesFetched: this.#statesFetched
    }
  }

  /** Closes the streams of a peer that was just isolated, and forgets its queue. */
  disconnect (peer: NodeId): void {
    const out = this.#outbound.get(peer)
    this.#outbound.delete(peer)
    out?.stream?.abort(new Error('pbft peer isolated'))
  }

  // ---- outbound ----

  #outboundFor (to: string): Outbound | PbftDropReason {
    const known = this.#outbound.get(to)
    if (known !== undefined) { return known }
    let peerId: PeerId
    try { peerId = peerIdFromString(to) } catch { return 'invalid-peer' }
    if (this.#outbound.size >= this.limits.peersMax) {
      const idle = [...this.#outbound.values()].find(o => !o.draining && o.queue.length === 0)
      if (idle === undefined) { return 'peers-full' }
      this.disconnect(idle.id)
    }
    const out: Outbound = { id: to, peerId, queue: [], queuedBytes: 0, draining: false, failures: 0, retryAtMs: 0 }
    this.#outbound.set(to, out)
    return out
  }

  async #drain (out: Outbound): Promise<void> {
    out.draining = true
    try {
      while (this.#running && this.#outbound.get(out.id) === out && out.queue.length > 0) {
        const waitMs = out.retryAtMs - Date.now()
        if (waitMs > 0) { await sleep(waitMs, undefined, { signal: this.#abort.signal }); continue }
        const lp = out.lp ?? await this.#open(out)
        if (lp === undefined) { continue }
        const frames = out.queue
        out.queue = []
        out.queuedBytes = 0
        const deadline = setTimeout(() => { out.stream?.abort(new Error('pbft write timed out')) }, this.limits.writeTimeoutMs)
        try {
          await (frames.length === 1 ? lp.write(frames[0], { signal: this.#abort.signal }) : lp.writeV(frames, { signal: this.#abort.signal }))
          this.#messagesSent += frames.length
          out.failures = 0
        } catch (err) {
          if (!this.#running) { break }
          this.#dropped['stream-error'] += frames.length
          this.#log('stream to %s failed - %e', out.id, err)
          out.stream?.abort(err instanceof Error ? err : new Error(String(err)))
          out.lp = undefined
          out.stream = undefined
          this.#backoff(out)
        } finally {
          clearTimeout(deadline)
        }
      }
    } catch (err) {
      // only the backoff sleep throws, aborted by stop()
      if (this.#running) { this.#log.error('writer to %s failed - %e', out.id, err) }
    } finally {
      out.draining = false
    }
  }

  async #open (out: Outbound): Promise<LengthPrefixedStream<Stream> | undefined> {
    try {
      const stream = await this.#components.connectionManager.openStream(out.peerId, PBFT_PROTOCOL, { signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.limits.dialTimeoutMs)]) })
      if (!this.#running || this.#outbound.get(out.id) !== out) { stream.abort(new Error('pbft transport stopped')); return undefined }
      const lp = lpStream(stream, { maxDataLength: this.limits.messageBytesMax })
      const gone = (): void => {
        stream.removeEventListener('close', gone)
        stream.removeEventListener('remoteCloseWrite', gone)
        if (out.stream === stream) { out.stream = undefined; out.lp = undefined }
      }
      stream.addEventListener('close', gone)
      stream.addEventListener('remoteCloseWrite', gone)
      out.stream = stream
      out.lp = lp
      return lp
    } catch (err) {
      if (!this.#running) { return undefined }
      this.#log('cannot open %s to %s - %e', PBFT_PROTOCOL, out.id, err)
      this.#dropped.unreachable += out.queue.length
      out.queue = []
      out.queuedBytes = 0
      this.#backoff(out)
      return undefined
    }
  }

  #backoff (out: Outbound): void {
    out.failures++
    const { reconnectBackoffMinMs: min, reconnectBackoffMaxMs: max } = this.limits
    out.retryAtMs = Date.now() + Math.min(max, min * 2 ** Math.min(out.failures - 1, 30))
  }

  // ---- inbound ----

  readonly #onStream = async (stream: Stream, connection: Connection): Promise<void> => {
    const remote = connection.remotePeer.toString()
    if (!this.#running) { stream.abort(new Error('pbft transport stopped')); return }
    if (this.#isIsolated(remote)) { this.#reject(stream, remote, 'isolated'); return }
    this.#inbound.add(stream)
    const idle = new AbortController()
    const timer = setTimeout(() => { idle.abort(new Error('idle')) }, this.limits.readIdleTimeoutMs)
    const signal = AbortSignal.any([this.#abort.signal, idle.signal])
    const lp = lpStream(stream, { maxDataLength: this.limits.messageBytesMax, maxBufferSize: 2 * this.limits.messageBytesMax + 16, lengthDecoder: this.#decodeLength })
    try {
      while (this.#running) {
        let bytes: Uint8Array
        try {
          bytes = (await lp.read({ signal })).subarray()
        } catch (err) {
          const name = (err as Error | undefined)?.name ?? ''
          if (['InvalidDataLengthError', 'InvalidDataLengthLengthError', 'LengthPrefixTooLongError', 'InvalidMessageLengthError', 'StreamBufferError'].includes(name)) {
            this.#reject(stream, remote, 'oversize')
          } else if (stream.status === 'open') {
            // idle, or the remote closed: the sender reopens on its next message
            await stream.close().catch(() => { stream.abort(new Error('pbft stream closed')) })
          }
          return
        }
        timer.refresh()
        if (this.#isIsolated(remote)) { this.#reject(stream, remote, 'isolated'); return }
        const decoded = decodeMessage(bytes, this.#init.coreLimits)
        if (!decoded.ok) {
          this.#log('frame from %s rejected: %s', remote, decoded.error)
          this.#reject(stream, remote, 'malformed')
          return
        }
        if (!this.#rate.allow(remote, decoded.message.type, this.#now())) {
          this.#count(remote, 'rate-limited')
          continue
        }
        this.#deliver(decoded.message, remote)
      }
    } finally {
      clearTimeout(timer)
      this.#inbound.delete(stream)
    }
  }

  readonly #onStateStream = async (stream: Stream, connection: Connection): Promise<void> => {
    const remote = connection.remotePeer.toString()
    if (!this.#running || this.#isIsolated(remote) || this.#statesServing >= this.limits.stateServesMax) {
      stream.abort(new Error('pbft state transfer refused'))
      return
    }
    this.#statesServing++
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.limits.fetchStateTimeoutMs)])
    try {
      const lp = lpStream(stream, { maxDataLength: this.limits.snapshotChunkBytes, lengthDecoder: boundedLengthDecoder(STATE_REQUEST_BYTES_MAX) })
      const request = new TextDecoder().decode((await lp.read({ signal })).subarray())
      const seq = Number(request)
      if (!/^\d{1,16}$/.test(request) || !Number.isSafeInteger(seq)) {
        this.#reject(stream, remote, 'malformed')
        return
      }
      const state = this.#serveState(seq)
      const header = new Uint8Array(STATE_HEADER_BYTES)
      header[0] = state === null ? 0 : 1
      new DataView(header.buffer).setBigUint64(1, BigInt(state?.byteLength ?? 0))
      await lp.write(header, { signal })
      if (state !== null) {
        for (let offset = 0; offset < state.byteLength; offset += this.limits.snapshotChunkBytes) {
          await lp.write(state.subarray(offset, offset + this.limits.snapshotChunkBytes), { signal })
        }
        this.#statesServed++
      }
      await stream.close({ signal })
    } catch (err) {
      this.#log('serving state to %s failed - %e', remote, err)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      this.#statesServing--
    }
  }

  #serveState (seq: number): Uint8Array | null {
    try {
      return this.#init.serveState(seq)
    } catch (err) {
      this.#log.error('serveState threw - %e', err)
      return null
    }
  }

  #isIsolated (peer: string): boolean {
    try {
      return this.#init.isIsolated(peer)
    } catch (err) {
      this.#log.error('isIsolated threw - %e', err)
      return false
    }
  }

  #deliver (message: PbftMessage, link: string): void {
    this.#messagesReceived++
    try {
      this.#init.onMessage(message, link)
    } catch (err) {
      this.#log.error('onMessage threw - %e', err)
    }
  }

  #count (remote: string, reason: PbftFrameRejectReason): void {
    this.#rejected[reason]++
    try {
      this.#init.onRejected?.(remote, reason)
    } catch (err) {
      this.#log.error('onRejected threw - %e', err)
    }
  }

  #reject (stream: Stream, remote: string, reason: PbftFrameRejectReason): void {
    this.#count(remote, reason)
    this.#log('closing stream from %s: %s', remote, reason)
    stream.abort(new Error(`pbft frame rejected: ${reason}`))
  }
}

/** Fills defaults and rejects limits that cannot work (a programming error: throws RangeError). */
export function resolveTransportLimits (init: Partial<PbftTransportLimits> = {}): PbftTransportLimits {
  const limits: PbftTransportLimits = { ...PBFT_TRANSPORT_DEFAULTS }
  for (const [key, value] of Object.entries(init) as Array<[keyof PbftTransportLimits, number | undefined]>) {
    if (!(key in PBFT_TRANSPORT_DEFAULTS) || value === undefined) { continue }
    if (!Number.isSafeInteger(value) || value < 1) { throw new RangeError(`pbft transport: ${key} must be a positive integer, got ${String(value)}`) }
    limits[key] = value
  }
  if (limits.outboundQueueBytesMax < limits.messageBytesMax) { throw new RangeError('pbft transport: outboundQueueBytesMax must be at least messageBytesMax') }
  return limits
}
