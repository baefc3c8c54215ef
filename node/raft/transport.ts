/**
 * The Raft transport: carries protocols/raft Messages between nodes over
 * the libp2p protocol `/accord/raft/1.0.0`.
 *
 * Outbound: one long-lived stream per peer (node/peer-outbox.ts), opened
 * lazily on the first send and reused; frames are length-prefixed
 * (lpStream, maxDataLength = FRAME_BYTES_MAX) and encoded by ./codec.ts.
 * send() never blocks: it encodes the message, appends it to the peer's
 * bounded queue (the oldest is dropped when full, see
 * node/outbound-queue.ts) and wakes the peer's writer. A failed dial or
 * stream is discarded; the next attempt waits an exponential backoff
 * (bounded). A failed dial also drops what was queued: it is stale by the
 * time the peer is back, and Raft resends what matters.
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
import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { validateMessage } from '../../protocols/raft/index.ts'
import { PeerOutbox } from '../peer-outbox.ts'
import { decodeFrame, encodeFrame, encodeMessage, FRAME_BYTES_MAX, snapshotFrames } from './codec.ts'
import { RAFT_PROTOCOL, resolveLimits } from './transport-constants.ts'
import { SnapshotReassembler } from './transport-reassembly.ts'
import type { DecodeRejectReason } from './codec.ts'
import type { RaftTransportLimits } from './transport-constants.ts'
import type { ReassemblyDropReason, ReassemblyRejectReason } from './transport-reassembly.ts'
import type { Message, SnapshotMessage } from '../../protocols/raft/index.ts'
import type { QueueItem } from '../outbound-queue.ts'
import type { OutboxDropReason, PeerOutboundStats } from '../peer-outbox.ts'
import type { AbortOptions, ComponentLogger, Connection, Logger, PeerId, Startable, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'

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
  /** The outbox's (node/peer-outbox.ts); 'oversize' also when encoded larger than FRAME_BYTES_MAX, 'invalid-peer' also for ourselves. */
  | OutboxDropReason
  /** Snapshot data larger than snapshotBytesMax. */
  | 'snapshot-too-large'
  /** send() while the transport is not started. */
  | 'not-running'

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
  /** Times resetPeer() dropped the streams of a peer that stopped answering. */
  peersReset: number
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

class IdleTimeoutError extends Error {
  override name = 'IdleTimeoutError'
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
    throw INCOMPLETE_LENGTH_PREFIX
  }
}

/**
 * "Read one more byte", thrown for most frames (lpStream reads the prefix a
 * byte at a time) and always caught by lpStream: one instance, since
 * capturing a stack trace per frame cost about 1% of a busy PBFT replica.
 */
const INCOMPLETE_LENGTH_PREFIX = new RangeError('incomplete length prefix')

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
  readonly #outbox: PeerOutbox<SnapshotMessage>
  /** Inbound streams being read, with the peer each comes from. */
  readonly #inbound = new Map<Stream, string>()
  #peersReset = 0
  readonly #reassembler: SnapshotReassembler
  #running = false
  #abort = new AbortController()

  #messagesReceived = 0
  #bytesReceived = 0
  #snapshotsReceived = 0
  readonly #dropped = zeroCounts(DROP_REASONS)
  readonly #rejected = zeroCounts(REJECT_REASONS)
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
    this.#outbox = new PeerOutbox<SnapshotMessage>({
      protocol: this.#protocol,
      limits: { ...this.#limits, frameBytesMax: FRAME_BYTES_MAX },
      log: this.#log,
      connectionManager: components.connectionManager,
      closeStream: async stream => { await this.#closeStream(stream) },
      snapshotFrames: message => snapshotFrames(message, this.#limits.snapshotChunkBytes),
      // a snapshot that does not go is reported failed, unless the peer or the transport is gone
      onDropped: (peer, item, reason) => { this.#drop(peer, reason, item.kind === 'snapshot' && reason !== 'stopped') },
      onUnreachable: peer => { this.#notifyUnreachable(peer) },
      onSnapshotSent: peer => { this.#notifySnapshot(peer, 'success') }
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
    this.#outbox.start()
    try {
      await this.#components.registrar.handle(this.#protocol, this.#onStream, {
        maxInboundStreams: this.#limits.maxInboundStreams,
        maxOutboundStreams: this.#limits.maxOutboundStreams
      })
    } catch (err) {
      this.#running = false
      await this.#outbox.stop()
      throw err
    }
  }

  /** Unregisters the protocol, aborts pending dials, writes and reads, and closes every stream. */
  async stop (): Promise<void> {
    if (!this.#running) { return }
    this.#running = false
    this.#abort.abort(new Error('raft transport stopped'))
    const outboundClosed = this.#outbox.stop()
    try {
      await this.#components.registrar.unhandle(this.#protocol)
    } catch (err) {
      this.#log.error('unhandle %s failed - %e', this.#protocol, err)
    }
    const inbound = [...this.#inbound.keys()]
    this.#inbound.clear()
    this.#reassembler.clear()
    await Promise.all([outboundClosed, ...inbound.map(async s => { await this.#closeStream(s) })])
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
    if (to === this.#self) {
      this.#drop(to, 'invalid-peer', item.kind === 'snapshot')
      return
    }
    this.#outbox.push(to, item)
  }

  /**
   * `to` stopped answering (see RaftOutbox.resetPeer): aborts the stream to
   * it and every stream from it, so both sides open new ones. Streams can
   * stop carrying data while both ends think them open; this is the way out.
   */
  resetPeer (to: string): void {
    if (!this.#running) { return }
    this.#peersReset++
    const reason = new Error('raft peer stopped answering: streams reset')
    this.#outbox.resetStream(to, reason)
    for (const [stream, remote] of this.#inbound) {
      if (remote === to) { stream.abort(reason) }
    }
  }

  /** Forgets a peer (it left the cluster): drops its queue and closes its stream. */
  removePeer (to: string): void {
    this.#outbox.remove(to)
  }

  stats (): RaftTransportStats {
    const outbox = this.#outbox.stats()
    return {
      messagesSent: outbox.messagesSent,
      bytesSent: outbox.bytesSent,
      messagesReceived: this.#messagesReceived,
      bytesReceived: this.#bytesReceived,
      snapshotsSent: outbox.snapshotsSent,
      snapshotsReceived: this.#snapshotsReceived,
      dropped: { ...this.#dropped },
      framesRejected: { ...this.#rejected },
      streamsOpened: outbox.streamsOpened,
      reconnects: outbox.reconnects,
      dialFailures: outbox.dialFailures,
      streamErrors: outbox.streamErrors,
      peersReset: this.#peersReset,
      idleStreamsClosed: this.#idleStreamsClosed,
      snapshotsIncomplete: this.#snapshotsIncomplete,
      snapshotsEvicted: this.#snapshotsEvicted,
      deliverErrors: this.#deliverErrors,
      inboundStreams: this.#inbound.size,
      outboundStreams: outbox.outboundStreams,
      queuedMessages: outbox.queuedMessages,
      queuedBytes: outbox.queuedBytes,
      snapshotReassemblies: this.#reassembler.size,
      snapshotReassemblyBytesPeak: this.#reassembler.bufferedBytesPeak,
      peers: outbox.peers
    }
  }

  // ---- outbound ----

  /** Encodes `message` into a queue item, or drops it (and returns undefined). */
  #queueItem (to: string, message: Message): QueueItem<SnapshotMessage> | undefined {
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
    this.#inbound.set(stream, remote)
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
