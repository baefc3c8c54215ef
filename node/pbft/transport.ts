/**
 * The PBFT transport: carries PbftMessages (replica messages, client
 * requests and replies) between nodes over `/accord/pbft/1.0.0`, and
 * serves state transfer over `/accord/pbft-state/1.0.0`.
 *
 * Outbound: one long-lived stream per peer (node/peer-outbox.ts, as Raft's
 * transport), opened on the first send and reused, with length-prefixed
 * frames of encodeMessage bytes. send() never blocks: it appends to the
 * peer's bounded queue (the oldest is dropped when full) and wakes the
 * peer's writer, which writes everything queued at once. A failed dial or
 * stream drops what was queued (PBFT retransmits what matters) and backs
 * off. A message to this node itself is handed to onMessage on a later turn.
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
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { decodeMessage, encodeMessage } from '../../protocols/pbft/encoding.ts'
import { PeerOutbox } from '../peer-outbox.ts'
import { boundedLengthDecoder } from '../raft/transport.ts'
import { PeerRateLimiter } from './rate-limit.ts'
import type { PbftTransport } from './driver.ts'
import type { RateLimit, PbftMessageType } from './rate-limit.ts'
import type { PbftLimits } from '../../protocols/pbft/config.ts'
import type { NodeId, PbftMessage } from '../../protocols/pbft/types.ts'
import type { RaftTransportComponents } from '../raft/transport.ts'
import type { Connection, Logger, PeerId, Stream } from '@libp2p/interface'

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

/** The outbox's reasons (OutboxDropReason in node/peer-outbox.ts; no snapshot goes through it here), and send() while the transport is not started. */
export type PbftDropReason = 'queue-full' | 'unreachable' | 'stream-error' | 'oversize' | 'invalid-peer' | 'peers-full' | 'stopped' | 'not-running'

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
const DROP_REASONS: readonly PbftDropReason[] = ['queue-full', 'unreachable', 'stream-error', 'oversize', 'invalid-peer', 'peers-full', 'stopped', 'not-running']
/** Header of a state answer: found u8, state bytes u64be. */
const STATE_HEADER_BYTES = 9
/** Decimal digits of a seq in a state request. */
const STATE_REQUEST_BYTES_MAX = 20

function zeroCounts<K extends string> (keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map(k => [k, 0])) as Record<K, number>
}

export class PbftStreamTransport implements PbftTransport {
  readonly #components: PbftTransportComponents
  readonly #init: PbftTransportInit
  readonly limits: Readonly<PbftTransportLimits>
  readonly #self: string
  readonly #log: Logger
  readonly #rate: PeerRateLimiter
  readonly #now: () => number
  readonly #outbox: PeerOutbox
  readonly #inbound = new Set<Stream>()
  readonly #decodeLength: ReturnType<typeof boundedLengthDecoder>
  #running = false
  #abort = new AbortController()
  #statesServing = 0
  /** The last message encoded and its frame (see #encode). */
  #lastEncoded: { message: PbftMessage, frame: Uint8Array } | null = null
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
    this.#outbox = new PeerOutbox({
      protocol: PBFT_PROTOCOL,
      // everything queued goes in one write
      limits: { ...this.limits, writeBatchBytesMax: this.limits.outboundQueueBytesMax, frameBytesMax: this.limits.messageBytesMax },
      log: this.#log,
      connectionManager: components.connectionManager,
      closeStream: async stream => { stream.abort(new Error('pbft stream released')) },
      // only frames are pushed, so no snapshot is ever superseded
      onDropped: (_peer, _item, reason) => { this.#dropped[reason as PbftDropReason]++ }
    })
  }

  async start (): Promise<void> {
    if (this.#running) { return }
    this.#abort = new AbortController()
    this.#running = true
    this.#outbox.start()
    const { registrar } = this.#components
    await registrar.handle(PBFT_PROTOCOL, this.#onStream, { maxInboundStreams: this.limits.maxInboundStreams, maxOutboundStreams: this.limits.maxOutboundStreams })
    await registrar.handle(PBFT_STATE_PROTOCOL, this.#onStateStream, { maxInboundStreams: this.limits.stateServesMax, maxOutboundStreams: 2 })
  }

  async stop (): Promise<void> {
    if (!this.#running) { return }
    this.#running = false
    this.#abort.abort(new Error('pbft transport stopped'))
    const outboundClosed = this.#outbox.stop()
    for (const protocol of [PBFT_PROTOCOL, PBFT_STATE_PROTOCOL]) {
      await this.#components.registrar.unhandle(protocol).catch(err => { this.#log.error('unhandle %s failed - %e', protocol, err) })
    }
    for (const stream of this.#inbound) { stream.abort(new Error('pbft transport stopped')) }
    this.#inbound.clear()
    await outboundClosed
  }

  /** Queues `message` for `to`; never blocks, never throws for network reasons (a message that cannot go is dropped and counted). */
  send (to: NodeId, message: PbftMessage): void {
    if (!this.#running) { this.#dropped['not-running']++; return }
    if (to === this.#self) {
      // to ourselves (our client to our replica, or back): on a later turn, as if it came over a link
      setImmediate(() => { if (this.#running) { this.#deliver(message, this.#self) } })
      return
    }
    const frame = this.#encode(message)
    if (frame.byteLength > this.limits.messageBytesMax) {
      this.#log('dropping %s to %s: %d bytes exceed messageBytesMax', message.type, to, frame.byteLength)
      this.#dropped.oversize++
      return
    }
    this.#outbox.push(to, { kind: 'frame', frame, bytes: frame.byteLength })
  }

  /**
   * encodeMessage, once for a message sent to several peers in a row (a
   * broadcast: the core hands out one message object per peer): the frame
   * is only read by the outbox, so the peers' queues share it.
   */
  #encode (message: PbftMessage): Uint8Array {
    if (this.#lastEncoded?.message === message) { return this.#lastEncoded.frame }
    const frame = encodeMessage(message)
    this.#lastEncoded = { message, frame }
    return frame
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
      messagesSent: this.#outbox.stats().messagesSent,
      messagesReceived: this.#messagesReceived,
      rejected: { ...this.#rejected },
      dropped: { ...this.#dropped },
      statesServed: this.#statesServed,
      statesFetched: this.#statesFetched
    }
  }

  /** Closes the streams of a peer that was just isolated, and forgets its queue. */
  disconnect (peer: NodeId): void {
    this.#outbox.remove(peer)
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
