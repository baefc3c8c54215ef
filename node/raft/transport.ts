/**
 * The Raft transport: carries protocols/raft Messages between nodes over
 * the libp2p protocol `/accord/raft/1.0.0`.
 *
 * Outbound: one long-lived stream per peer, opened lazily on the first
 * send and reused; frames are length-prefixed (lpStream, maxDataLength =
 * FRAME_BYTES_MAX) and encoded by ./codec.ts. send() never blocks: it
 * encodes the message, appends it to the peer's bounded queue (the oldest
 * is dropped when full, see transport-queue.ts) and wakes the peer's writer,
 * which awaits every write (lpStream waits for the stream to drain) before
 * taking the next item. A failed dial or stream is discarded; the next
 * attempt waits an exponential backoff (bounded). A failed dial also drops
 * what was queued: it is stale by the time the peer is back, and Raft
 * resends what matters.
 *
 * Inbound: every stream is read frame by frame with an idle timeout; a
 * message whose `from` is not the connection's remote peer, or whose `to`
 * is not us, and any malformed or oversize frame is counted by reason and
 * closes that stream. Nothing a peer sends can throw out of here.
 *
 * Snapshots travel as a begin frame plus 1 MiB chunks and are reassembled
 * (bounded, see transport-reassembly.ts) into one Message. The leader this
 * node follows (`isLeader`) always gets a reassembly slot, and a reassembly
 * that receives too little for too long is dropped.
 *
 * The transport does not interpret messages: the node's Raft driver gives
 * `onMessage` to step() and may map `onUnreachable` / `onSnapshotSent` to
 * RaftNode.reportUnreachable / reportSnapshot.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { validateMessage } from '../../protocols/raft/index.ts'
import { decodeFrame, encodeFrame, encodeMessage, FRAME_BYTES_MAX, snapshotFrames } from './codec.ts'
import { RAFT_PROTOCOL, resolveLimits } from './transport-constants.ts'
import { OutboundQueue } from './transport-queue.ts'
import { SnapshotReassembler } from './transport-reassembly.ts'
import type { DecodeRejectReason } from './codec.ts'
import type { RaftTransportLimits } from './transport-constants.ts'
import type { QueueItem } from './transport-queue.ts'
import type { ReassemblyDropReason, ReassemblyRejectReason } from './transport-reassembly.ts'
import type { Message, SnapshotMessage } from '../../protocols/raft/index.ts'
import type { AbortOptions, ComponentLogger, Connection, Logger, PeerId, Startable, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { LengthPrefixedStream } from '@libp2p/utils'

/** What the transport uses from libp2p (a service gets these from libp2p; see also raftTransportComponents). */
export interface RaftTransportComponents {
  peerId: PeerId
  logger: ComponentLogger
  registrar: {
    handle(protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>
    unhandle(protocol: string, options?: AbortOptions): Promise<void>
  }
  connectionManager: {
    openStream(peer: PeerId, protocol: string, options?: AbortOptions): Promise<Stream>
  }
}

export interface RaftTransportInit extends Partial<RaftTransportLimits> {
  /** Every inbound message, checked (validateMessage, from = remote peer, to = us). Must not block; exceptions are caught and counted. */
  onMessage(message: Message): void
  /** A queued message to `to` was lost because `to` could not be reached (dial or stream failure). */
  onUnreachable?(to: string): void
  /** A snapshot to `to` was written completely ('success') or dropped ('failure'). */
  onSnapshotSent?(to: string, outcome: 'success' | 'failure'): void
  /**
   * Whether `peer` is the leader this node follows now: its snapshot always
   * gets a reassembly slot, evicting another peer's if all are taken.
   * Must not block; without it no peer is preferred.
   */
  isLeader?(peer: string): boolean
  /** Defaults to RAFT_PROTOCOL. */
  protocol?: string
}

export type DropReason =
  /** The peer's queue was full: the oldest message made room. */
  | 'queue-full'
  /** Queued when the dial to the peer failed. */
  | 'unreachable'
  /** Being written when the stream failed (error, reset, write timeout). */
  | 'stream-error'
  /** Encoded larger than FRAME_BYTES_MAX (or than the queue's byte bound). */
  | 'oversize'
  /** Snapshot data larger than snapshotBytesMax. */
  | 'snapshot-too-large'
  /** A queued snapshot replaced by a newer one to the same peer. */
  | 'snapshot-superseded'
  /** `to` is not a PeerId or is ourselves. */
  | 'invalid-peer'
  /** Already peersMax peers have outbound state, every one busy. */
  | 'peers-full'
  /** send() while the transport is not started. */
  | 'not-running'
  /** Queued or in flight when stop() or removePeer() ran. */
  | 'stopped'

export type FrameRejectReason =
  | DecodeRejectReason
  | ReassemblyRejectReason
  /** A length prefix above FRAME_BYTES_MAX (or a varint longer than needed for it). */
  | 'oversize'
  /** A length prefix that is not a valid varint. */
  | 'bad-length'
  /** The peer pushed more unread bytes than the read buffer holds. */
  | 'buffer-overflow'
  /** message.from is not the peer that opened the stream. */
  | 'spoofed-from'
  /** message.to is not us. */
  | 'wrong-recipient'

export interface PeerOutboundStats {
  queuedMessages: number
  /** Messages taken from the queue and being written (a blocked write holds them here). */
  writingMessages: number
  queuedBytes: number
  queuedBytesPeak: number
  streamOpen: boolean
  consecutiveFailures: number
}

export interface RaftTransportStats {
  /** Messages fully written to a stream (a chunked snapshot counts one). */
  messagesSent: number
  /** Frame bytes written (length prefixes excluded). */
  bytesSent: number
  /** Messages handed to onMessage. */
  messagesReceived: number
  /** Frame bytes read (length prefixes excluded). */
  bytesReceived: number
  snapshotsSent: number
  snapshotsReceived: number
  dropped: Record<DropReason, number>
  framesRejected: Record<FrameRejectReason, number>
  /** Outbound streams opened. */
  streamsOpened: number
  /** Outbound streams opened to a peer that had one before. */
  reconnects: number
  dialFailures: number
  /** Outbound streams that failed while writing. */
  streamErrors: number
  /** Inbound streams closed by the idle timeout. */
  idleStreamsClosed: number
  /** Inbound snapshots whose stream ended before the last chunk. */
  snapshotsIncomplete: number
  /** Inbound snapshots dropped half-way to make room for the leader's (their stream is closed). */
  snapshotsEvicted: number
  /** onMessage threw. */
  deliverErrors: number
  inboundStreams: number
  outboundStreams: number
  queuedMessages: number
  queuedBytes: number
  snapshotReassemblies: number
  /** The most snapshot bytes held by reassemblies at once. */
  snapshotReassemblyBytesPeak: number
  peers: Record<string, PeerOutboundStats>
}

const DROP_REASONS: readonly DropReason[] = ['queue-full', 'unreachable', 'stream-error', 'oversize', 'snapshot-too-large', 'snapshot-superseded', 'invalid-peer', 'peers-full', 'not-running', 'stopped']
const REJECT_REASONS: readonly FrameRejectReason[] = [
  'too-large', 'cbor', 'too-complex', 'version', 'shape', 'invalid-message', 'non-canonical',
  'snapshot-too-large', 'snapshot-busy', 'unexpected-frame', 'snapshot-overrun', 'snapshot-too-slow',
  'oversize', 'bad-length', 'buffer-overflow', 'spoofed-from', 'wrong-recipient'
]

function zeroCounts<K extends string> (keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map(k => [k, 0])) as Record<K, number>
}

/** An open outbound stream and its framing. */
interface Channel {
  stream: Stream
  lp: LengthPrefixedStream<Stream>
}

/** Why the queue gave back `dropped` when `pushed` was added. */
function dropReason (pushed: QueueItem, dropped: QueueItem): DropReason {
  if (dropped === pushed) { return 'oversize' }
  if (dropped.kind === 'snapshot' && pushed.kind === 'snapshot') { return 'snapshot-superseded' }
  return 'queue-full'
}

/** Per-peer outbound state. */
interface Outbound {
  id: string
  peerId: PeerId
  queue: OutboundQueue
  channel?: Channel
  /** The writer loop is running. */
  draining: boolean
  writingMessages: number
  consecutiveFailures: number
  /** No dial before this time (Date.now() ms). */
  retryAtMs: number
  streamsOpened: number
}

class IdleTimeoutError extends Error {
  override name = 'IdleTimeoutError'
}

class WriteTimeoutError extends Error {
  override name = 'WriteTimeoutError'
  constructor (timeoutMs: number) {
    super(`a write did not complete within ${timeoutMs} ms`)
  }
}

/** Inbound read buffer: a whole frame plus its prefix, and the start of the next. */
const READ_BUFFER_BYTES_MAX = 2 * FRAME_BYTES_MAX + 16

class LengthPrefixTooLongError extends Error {
  override name = 'LengthPrefixTooLongError'
}

/**
 * An lpStream `lengthDecoder` that refuses a length prefix longer than the
 * varint of `maxDataLength` (use it on every lpStream that reads from peers).
 * lpStream (@libp2p/utils 7.4) treats a RangeError from its decoder as "read
 * one more byte" and checks the prefix length only after a successful
 * decode, so with the default decoder a peer sending 0xff bytes forever grows
 * the prefix buffer (one list node per byte) until the read times out.
 */
export function boundedLengthDecoder (maxDataLength: number): (data: { byteLength: number, get(index: number): number }) => number {
  const prefixBytesMax = Math.ceil(Math.log2(maxDataLength + 1) / 7)
  return (data) => {
    let value = 0
    let scale = 1
    const length = Math.min(data.byteLength, prefixBytesMax)
    for (let i = 0; i < length; i++, scale *= 0x80) {
      const byte = data.get(i)
      value += (byte & 0x7f) * scale
      if (byte < 0x80) { return value }
    }
    if (data.byteLength >= prefixBytesMax) { throw new LengthPrefixTooLongError(`length prefix longer than ${prefixBytesMax} bytes`) }
    throw new RangeError('incomplete length prefix')
  }
}

const decodeLengthPrefix = boundedLengthDecoder(FRAME_BYTES_MAX)

export class RaftTransport implements Startable {
  readonly [serviceCapabilities]: string[] = ['@accord/raft-transport']
  readonly [serviceDependencies]: string[] = []
  readonly [Symbol.toStringTag] = 'accord/raft-transport'

  readonly #components: RaftTransportComponents
  readonly #init: RaftTransportInit
  readonly #limits: RaftTransportLimits
  readonly #protocol: string
  readonly #self: string
  readonly #log: Logger
  readonly #outbound = new Map<string, Outbound>()
  readonly #inbound = new Set<Stream>()
  readonly #reassembler: SnapshotReassembler
  #running = false
  #abort = new AbortController()

  #messagesSent = 0
  #bytesSent = 0
  #messagesReceived = 0
  #bytesReceived = 0
  #snapshotsSent = 0
  #snapshotsReceived = 0
  readonly #dropped = zeroCounts(DROP_REASONS)
  readonly #rejected = zeroCounts(REJECT_REASONS)
  #streamsOpened = 0
  #reconnects = 0
  #dialFailures = 0
  #streamErrors = 0
  #idleStreamsClosed = 0
  #snapshotsIncomplete = 0
  #snapshotsEvicted = 0
  #deliverErrors = 0

  constructor (components: RaftTransportComponents, init: RaftTransportInit) {
    this.#components = components
    this.#init = init
    this.#limits = resolveLimits(init)
    this.#protocol = init.protocol ?? RAFT_PROTOCOL
    this.#self = components.peerId.toString()
    this.#log = components.logger.forComponent('accord:raft:transport')
    this.#reassembler = new SnapshotReassembler({
      snapshotBytesMax: this.#limits.snapshotBytesMax,
      reassembliesMax: this.#limits.snapshotReassembliesMax,
      progressBytes: this.#limits.snapshotChunkBytes,
      progressTimeoutMs: this.#limits.snapshotProgressTimeoutMs
    }, {
      isLeader: peer => this.#isLeader(peer),
      onDropped: (peer, owner, reason) => { this.#reassemblyDropped(peer, owner as Stream, reason) }
    })
  }

  get limits (): Readonly<RaftTransportLimits> { return this.#limits }

  get protocol (): string { return this.#protocol }

  isStarted (): boolean { return this.#running }

  async start (): Promise<void> {
    if (this.#running) { return }
    this.#abort = new AbortController()
    // running first: a stream may arrive as soon as the handler is registered
    this.#running = true
    try {
      await this.#components.registrar.handle(this.#protocol, this.#onStream, {
        maxInboundStreams: this.#limits.maxInboundStreams,
        maxOutboundStreams: this.#limits.maxOutboundStreams
      })
    } catch (err) {
      this.#running = false
      throw err
    }
  }

  /** Unregisters the protocol, aborts pending dials, writes and reads, and closes every stream. */
  async stop (): Promise<void> {
    if (!this.#running) { return }
    this.#running = false
    this.#abort.abort(new Error('raft transport stopped'))
    try {
      await this.#components.registrar.unhandle(this.#protocol)
    } catch (err) {
      this.#log.error('unhandle %s failed - %e', this.#protocol, err)
    }
    const streams: Stream[] = [...this.#inbound]
    for (const out of this.#outbound.values()) {
      this.#dropAll(out, 'stopped', false)
      if (out.channel !== undefined) { streams.push(out.channel.stream) }
      out.channel = undefined
    }
    this.#outbound.clear()
    this.#inbound.clear()
    this.#reassembler.clear()
    await Promise.all(streams.map(async s => { await this.#closeStream(s) }))
  }

  /**
   * Queues `message` for `to` (= message.to) and returns at once. Never
   * blocks and never throws for network reasons: a message that cannot be
   * sent is dropped and counted. Throws only on a caller bug: `to` differs
   * from message.to, or the message fails validateMessage.
   */
  send (to: string, message: Message): void {
    if (message.to !== to) { throw new RangeError(`send: message.to (${message.to}) differs from to (${to})`) }
    if (!this.#running) { this.#drop(to, 'not-running', message.type === 'snapshot'); return }
    const item = this.#queueItem(to, message)
    if (item === undefined) { return }
    const out = this.#outboundFor(to)
    if (typeof out === 'string') {
      this.#drop(to, out, item.kind === 'snapshot')
      return
    }
    for (const dropped of out.queue.push(item)) {
      this.#drop(to, dropReason(item, dropped), dropped.kind === 'snapshot')
    }
    if (!out.draining) { void this.#drain(out) }
  }

  /**
   * Frees the slot of the longest-known peer with nothing queued or being
   * written (one that left, or an id a stranger made us answer), so peers
   * that come and go cannot fill the table for good. False when all are busy.
   */
  #evictIdlePeer (): boolean {
    for (const out of this.#outbound.values()) {
      if (!out.draining && out.queue.length === 0) {
        this.removePeer(out.id)
        return true
      }
    }
    return false
  }

  /** Forgets a peer (it left the cluster): drops its queue and closes its stream. */
  removePeer (to: string): void {
    const out = this.#outbound.get(to)
    if (out === undefined) { return }
    this.#outbound.delete(to)
    this.#dropAll(out, 'stopped', false)
    if (out.channel !== undefined) { void this.#closeStream(out.channel.stream) }
    out.channel = undefined
  }

  stats (): RaftTransportStats {
    const peers: Record<string, PeerOutboundStats> = {}
    let queuedMessages = 0
    let queuedBytes = 0
    let outboundStreams = 0
    for (const out of this.#outbound.values()) {
      peers[out.id] = {
        queuedMessages: out.queue.length,
        writingMessages: out.writingMessages,
        queuedBytes: out.queue.bytes,
        queuedBytesPeak: out.queue.bytesPeak,
        streamOpen: out.channel !== undefined,
        consecutiveFailures: out.consecutiveFailures
      }
      queuedMessages += out.queue.length
      queuedBytes += out.queue.bytes
      if (out.channel !== undefined) { outboundStreams++ }
    }
    return {
      messagesSent: this.#messagesSent,
      bytesSent: this.#bytesSent,
      messagesReceived: this.#messagesReceived,
      bytesReceived: this.#bytesReceived,
      snapshotsSent: this.#snapshotsSent,
      snapshotsReceived: this.#snapshotsReceived,
      dropped: { ...this.#dropped },
      framesRejected: { ...this.#rejected },
      streamsOpened: this.#streamsOpened,
      reconnects: this.#reconnects,
      dialFailures: this.#dialFailures,
      streamErrors: this.#streamErrors,
      idleStreamsClosed: this.#idleStreamsClosed,
      snapshotsIncomplete: this.#snapshotsIncomplete,
      snapshotsEvicted: this.#snapshotsEvicted,
      deliverErrors: this.#deliverErrors,
      inboundStreams: this.#inbound.size,
      outboundStreams,
      queuedMessages,
      queuedBytes,
      snapshotReassemblies: this.#reassembler.size,
      snapshotReassemblyBytesPeak: this.#reassembler.bufferedBytesPeak,
      peers
    }
  }

  // ---- outbound ----

  /** Encodes `message` into a queue item, or drops it (and returns undefined). */
  #queueItem (to: string, message: Message): QueueItem | undefined {
    if (message.type === 'snapshot') {
      const checked = validateMessage(message)
      if (checked instanceof Error) { throw checked }
      if (message.snapshot.data.byteLength > this.#limits.snapshotBytesMax) {
        this.#drop(to, 'snapshot-too-large', true)
        return undefined
      }
      // the item references the caller's snapshot data (no copy): its queue cost is the begin frame
      const snapshot = checked as SnapshotMessage
      const begin = encodeFrame({ kind: 'snapshot-begin', message: { ...snapshot, snapshot: { ...snapshot.snapshot, data: new Uint8Array(0) } }, dataBytes: snapshot.snapshot.data.byteLength })
      return { kind: 'snapshot', message: snapshot, bytes: begin.byteLength }
    }
    const frame = encodeMessage(message)
    if (frame.byteLength > FRAME_BYTES_MAX) {
      this.#log('dropping %s to %s: %d bytes exceed the frame limit', message.type, to, frame.byteLength)
      this.#drop(to, 'oversize', false)
      return undefined
    }
    return { kind: 'frame', frame, bytes: frame.byteLength }
  }

  /** The peer's outbound state (created on first use), or why there is none. */
  #outboundFor (to: string): Outbound | DropReason {
    const known = this.#outbound.get(to)
    if (known !== undefined) { return known }
    if (to === this.#self) { return 'invalid-peer' }
    let peerId: PeerId
    try {
      peerId = peerIdFromString(to)
    } catch {
      return 'invalid-peer'
    }
    if (this.#outbound.size >= this.#limits.peersMax && !this.#evictIdlePeer()) { return 'peers-full' }
    const out: Outbound = {
      id: to,
      peerId,
      queue: new OutboundQueue({ messagesMax: this.#limits.outboundQueueMessagesMax, bytesMax: this.#limits.outboundQueueBytesMax }),
      draining: false,
      writingMessages: 0,
      consecutiveFailures: 0,
      retryAtMs: 0,
      streamsOpened: 0
    }
    this.#outbound.set(to, out)
    return out
  }

  /** The writer of one peer: runs while its queue is non-empty. */
  async #drain (out: Outbound): Promise<void> {
    out.draining = true
    try {
      while (this.#running && this.#outbound.get(out.id) === out && out.queue.length > 0) {
        const waitMs = out.retryAtMs - Date.now()
        if (waitMs > 0) {
          await sleep(waitMs, undefined, { signal: this.#abort.signal })
          continue
        }
        const channel = out.channel ?? await this.#open(out)
        if (channel === undefined) { continue }
        const batch = this.#takeBatch(out)
        out.writingMessages = batch.length
        try {
          await this.#write(out, channel, batch)
          out.consecutiveFailures = 0
        } catch (err) {
          const stopped = !this.#running || this.#outbound.get(out.id) !== out
          for (const item of batch) { this.#drop(out.id, stopped ? 'stopped' : 'stream-error', !stopped && item.kind === 'snapshot') }
          if (stopped) { break }
          this.#streamFailed(out, channel, err)
        } finally {
          out.writingMessages = 0
        }
      }
    } catch (err) {
      // only the backoff sleep throws here, aborted by stop()
      if (this.#running) { this.#log.error('writer to %s failed - %e', out.id, err) }
    } finally {
      out.draining = false
    }
  }

  /** The next snapshot alone, or consecutive small frames up to writeBatchBytesMax. */
  #takeBatch (out: Outbound): QueueItem[] {
    const first = out.queue.shift()
    if (first === undefined) { return [] }
    const batch: QueueItem[] = [first]
    if (first.kind !== 'frame') { return batch }
    let bytes = first.bytes
    for (let next = out.queue.peekFrame(); next !== undefined && bytes + next.bytes <= this.#limits.writeBatchBytesMax; next = out.queue.peekFrame()) {
      out.queue.shift()
      batch.push(next)
      bytes += next.bytes
    }
    return batch
  }

  async #write (out: Outbound, channel: Channel, batch: QueueItem[]): Promise<void> {
    // A peer that stops reading must not hold the writer forever: past the
    // deadline the stream is aborted, which fails the pending write. (One
    // timer per write: AbortSignal.timeout + AbortSignal.any cost several
    // times more, on the path of every message.)
    const { lp, stream } = channel
    const options: AbortOptions = { signal: this.#abort.signal }
    const deadline = setTimeout(() => { stream.abort(new WriteTimeoutError(this.#limits.writeTimeoutMs)) }, this.#limits.writeTimeoutMs)
    try {
      const first = batch[0]
      if (first.kind === 'snapshot') {
        for (const frame of snapshotFrames(first.message, this.#limits.snapshotChunkBytes)) {
          deadline.refresh()
          await lp.write(frame, options)
          this.#bytesSent += frame.byteLength
        }
        this.#messagesSent++
        this.#snapshotsSent++
        this.#notifySnapshot(out.id, 'success')
        return
      }
      const frames = batch.map(item => (item as QueueItem & { kind: 'frame' }).frame)
      if (frames.length === 1) {
        await lp.write(frames[0], options)
      } else {
        await lp.writeV(frames, options)
      }
      this.#messagesSent += frames.length
      for (const frame of frames) { this.#bytesSent += frame.byteLength }
    } finally {
      clearTimeout(deadline)
    }
  }

  /** Opens the peer's stream, or on failure drops its queue and schedules the retry. */
  async #open (out: Outbound): Promise<Channel | undefined> {
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#limits.dialTimeoutMs)])
    let stream: Stream
    try {
      stream = await this.#components.connectionManager.openStream(out.peerId, this.#protocol, { signal })
    } catch (err) {
      if (!this.#running) { return undefined }
      this.#dialFailures++
      this.#log('cannot open %s to %s - %e', this.#protocol, out.id, err)
      this.#backoff(out)
      this.#dropAll(out, 'unreachable', true)
      this.#notifyUnreachable(out.id)
      return undefined
    }
    if (!this.#running || this.#outbound.get(out.id) !== out) {
      stream.abort(new Error('raft transport stopped'))
      return undefined
    }
    this.#streamsOpened++
    if (out.streamsOpened++ > 0) { this.#reconnects++ }
    const lp = lpStream(stream, { maxDataLength: FRAME_BYTES_MAX })
    // The remote never writes on this stream: its closing the write side (idle
    // timeout, stop) or a reset means the stream is gone; forget it now so the
    // next message opens a new one instead of failing on this one.
    const channel: Channel = { stream, lp }
    const gone = (): void => {
      stream.removeEventListener('close', gone)
      stream.removeEventListener('remoteCloseWrite', gone)
      if (out.channel === channel) { out.channel = undefined }
      if (stream.status === 'open') { void this.#closeStream(stream) }
    }
    stream.addEventListener('close', gone)
    stream.addEventListener('remoteCloseWrite', gone)
    out.channel = channel
    return channel
  }

  #streamFailed (out: Outbound, channel: Channel, err: unknown): void {
    this.#streamErrors++
    this.#log('stream to %s failed - %e', out.id, err)
    if (out.channel === channel) { out.channel = undefined }
    channel.stream.abort(err instanceof Error ? err : new Error(String(err)))
    this.#backoff(out)
    this.#notifyUnreachable(out.id)
  }

  #backoff (out: Outbound): void {
    out.consecutiveFailures++
    const { reconnectBackoffMinMs: min, reconnectBackoffMaxMs: max } = this.#limits
    const delayMs = Math.min(max, min * 2 ** Math.min(out.consecutiveFailures - 1, 30))
    out.retryAtMs = Date.now() + delayMs
  }

  #dropAll (out: Outbound, reason: DropReason, notify: boolean): void {
    for (const item of out.queue.clear()) { this.#drop(out.id, reason, item.kind === 'snapshot' && notify) }
  }

  #drop (to: string, reason: DropReason, snapshotFailed: boolean): void {
    this.#dropped[reason]++
    this.#log.trace('dropped a message to %s: %s', to, reason)
    if (snapshotFailed) { this.#notifySnapshot(to, 'failure') }
  }

  #notifySnapshot (to: string, outcome: 'success' | 'failure'): void {
    try {
      this.#init.onSnapshotSent?.(to, outcome)
    } catch (err) {
      this.#log.error('onSnapshotSent threw - %e', err)
    }
  }

  #notifyUnreachable (to: string): void {
    try {
      this.#init.onUnreachable?.(to)
    } catch (err) {
      this.#log.error('onUnreachable threw - %e', err)
    }
  }

  async #closeStream (stream: Stream): Promise<void> {
    try {
      await stream.close({ signal: AbortSignal.timeout(this.#limits.streamCloseTimeoutMs) })
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  // ---- inbound ----

  readonly #onStream = async (stream: Stream, connection: Connection): Promise<void> => {
    if (!this.#running) {
      stream.abort(new Error('raft transport stopped'))
      return
    }
    await this.#read(stream, connection.remotePeer.toString())
  }

  async #read (stream: Stream, remote: string): Promise<void> {
    this.#inbound.add(stream)
    const idle = new AbortController()
    const timer = setTimeout(() => { idle.abort(new IdleTimeoutError()) }, this.#limits.readIdleTimeoutMs)
    const signal = AbortSignal.any([this.#abort.signal, idle.signal])
    const lp = lpStream(stream, { maxDataLength: FRAME_BYTES_MAX, maxBufferSize: READ_BUFFER_BYTES_MAX, lengthDecoder: decodeLengthPrefix })
    try {
      while (true) {
        let bytes: Uint8Array
        try {
          bytes = (await lp.read({ signal })).subarray()
        } catch (err) {
          this.#readEnded(stream, remote, err, idle.signal.aborted)
          return
        }
        timer.refresh()
        this.#bytesReceived += bytes.byteLength
        const rejected = this.#onFrame(stream, remote, bytes)
        if (rejected !== undefined) {
          this.#reject(stream, remote, rejected)
          return
        }
      }
    } finally {
      clearTimeout(timer)
      this.#inbound.delete(stream)
      if (this.#reassembler.discard(remote, stream)) { this.#snapshotsIncomplete++ }
    }
  }

  /** Handles one frame; returns why it was rejected, if it was. */
  #onFrame (stream: Stream, remote: string, bytes: Uint8Array): FrameRejectReason | undefined {
    const decoded = decodeFrame(bytes)
    if (!decoded.ok) {
      this.#log('frame from %s rejected (%s): %s', remote, decoded.reason, decoded.error)
      return decoded.reason
    }
    const { frame } = decoded
    if (frame.kind === 'snapshot-chunk') {
      const result = this.#reassembler.chunk(remote, stream, frame.data, Date.now())
      if (!result.ok) { return result.reason }
      if (result.complete !== undefined) { this.#deliver(result.complete) }
      return undefined
    }
    if (this.#reassembler.isOpen(remote, stream)) { return 'unexpected-frame' }
    const { message } = frame
    if (message.from !== remote) { return 'spoofed-from' }
    if (message.to !== this.#self) { return 'wrong-recipient' }
    if (frame.kind === 'snapshot-begin') {
      const result = this.#reassembler.begin(remote, stream, frame.message, frame.dataBytes, Date.now())
      if (!result.ok) { return result.reason }
      if (result.complete !== undefined) { this.#deliver(result.complete) }
      return undefined
    }
    if (message.type === 'snapshot' && message.snapshot.data.byteLength > this.#limits.snapshotBytesMax) { return 'snapshot-too-large' }
    this.#deliver(message)
    return undefined
  }

  #isLeader (peer: string): boolean {
    try {
      return this.#init.isLeader?.(peer) === true
    } catch (err) {
      this.#log.error('isLeader threw - %e', err)
      return false
    }
  }

  /** A reassembly was dropped while its stream was idle: close that stream, whose next chunk has nowhere to go. */
  #reassemblyDropped (peer: string, stream: Stream, reason: ReassemblyDropReason): void {
    if (reason === 'snapshot-evicted') {
      this.#snapshotsEvicted++
      this.#log('evicted the snapshot %s was sending, for the leader\'s', peer)
      stream.abort(new Error('raft snapshot evicted for the leader\'s'))
      return
    }
    this.#reject(stream, peer, reason)
  }

  #deliver (message: Message): void {
    this.#messagesReceived++
    if (message.type === 'snapshot') { this.#snapshotsReceived++ }
    try {
      this.#init.onMessage(message)
    } catch (err) {
      this.#deliverErrors++
      this.#log.error('onMessage threw - %e', err)
    }
  }

  #reject (stream: Stream, remote: string, reason: FrameRejectReason): void {
    this.#rejected[reason]++
    this.#log('closing stream from %s: frame rejected (%s)', remote, reason)
    stream.abort(new Error(`raft frame rejected: ${reason}`))
  }

  #readEnded (stream: Stream, remote: string, err: unknown, idle: boolean): void {
    if (!this.#running) { return }
    const name = (err as Error | undefined)?.name
    if (idle) {
      this.#idleStreamsClosed++
      this.#log('closing idle stream from %s', remote)
      void this.#closeStream(stream)
      return
    }
    switch (name) {
      case 'InvalidDataLengthError':
      case 'InvalidDataLengthLengthError':
      case 'LengthPrefixTooLongError':
        this.#reject(stream, remote, 'oversize')
        return
      case 'InvalidMessageLengthError':
        this.#reject(stream, remote, 'bad-length')
        return
      case 'StreamBufferError':
        this.#reject(stream, remote, 'buffer-overflow')
        return
      default:
        // the remote closed or reset the stream, or the connection went away
        this.#log.trace('stream from %s ended - %e', remote, err)
        if (stream.status === 'open') { void this.#closeStream(stream) }
    }
  }
}

/** The libp2p service factory: `services: { raft: raftTransport({ onMessage }) }`. */
export function raftTransport (init: RaftTransportInit): (components: RaftTransportComponents) => RaftTransport {
  return (components) => new RaftTransport(components, init)
}
