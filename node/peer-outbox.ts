/**
 * The outbound side of a stream transport (Raft's and PBFT's): per peer, a
 * bounded queue (outbound-queue.ts) and a writer that sends it over one
 * long-lived stream of length-prefixed frames.
 *
 * push() never blocks: it queues the item and wakes the peer's writer,
 * which opens the stream on first use and reuses it, awaits every write
 * (lpStream waits for the stream to drain) before taking the next items,
 * and writes consecutive frames together up to writeBatchBytesMax. A peer
 * that stops reading does not hold the writer forever: a write that cannot
 * be flushed within writeTimeoutMs fails its stream. A failed dial drops
 * what was queued (stale by the time the peer is back; both protocols
 * resend what matters); the next attempt after a failed dial or stream
 * waits an exponential backoff (bounded).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { OutboundQueue } from './outbound-queue.ts'
import type { QueueItem } from './outbound-queue.ts'
import type { AbortOptions, Logger, PeerId, Stream } from '@libp2p/interface'
import type { LengthPrefixedStream } from '@libp2p/utils'

export interface PeerOutboxLimits {
  /** Items queued per peer; when full the oldest is dropped. */
  outboundQueueMessagesMax: number
  /** Bytes queued per peer (a snapshot item counts its first frame only). */
  outboundQueueBytesMax: number
  /** Peers with outbound state (queue, stream, backoff). */
  peersMax: number
  /** Consecutive frames written together, in bytes. */
  writeBatchBytesMax: number
  /** A write (one frame, a batch, or one frame of a snapshot) that cannot be flushed for this long fails its stream. */
  writeTimeoutMs: number
  /** Dial plus protocol negotiation of a stream. */
  dialTimeoutMs: number
  /** Wait after the first failed dial or stream; doubles per consecutive failure up to the max. */
  reconnectBackoffMinMs: number
  reconnectBackoffMaxMs: number
  /** The streams' lpStream maxDataLength. */
  frameBytesMax: number
}

export type OutboxDropReason =
  /** The peer's queue was full: the oldest item made room. */
  | 'queue-full'
  /** Larger than the queue's byte bound. */
  | 'oversize'
  /** A queued snapshot replaced by a newer one to the same peer. */
  | 'snapshot-superseded'
  /** Queued when the dial to the peer failed. */
  | 'unreachable'
  /** Being written when the stream failed (error, reset, write timeout). */
  | 'stream-error'
  /** The peer is not a PeerId. */
  | 'invalid-peer'
  /** Already peersMax peers have outbound state, every one busy. */
  | 'peers-full'
  /** Queued or being written when stop() or remove() ran. */
  | 'stopped'

export interface PeerOutboundStats {
  queuedMessages: number
  /** Items taken from the queue and being written (a blocked write holds them here). */
  writingMessages: number
  queuedBytes: number
  queuedBytesPeak: number
  streamOpen: boolean
  consecutiveFailures: number
}

export interface PeerOutboxStats {
  /** Items fully written (a snapshot counts one). */
  messagesSent: number
  /** Frame bytes written (length prefixes excluded). */
  bytesSent: number
  snapshotsSent: number
  /** Streams opened. */
  streamsOpened: number
  /** Streams opened to a peer that had one before. */
  reconnects: number
  dialFailures: number
  /** Streams that failed while writing. */
  streamErrors: number
  /** Streams let go by resetStream() (the peer stopped answering). */
  streamsReset: number
  outboundStreams: number
  queuedMessages: number
  queuedBytes: number
  peers: Record<string, PeerOutboundStats>
}

export interface PeerOutboxInit<S> {
  protocol: string
  limits: PeerOutboxLimits
  log: Logger
  connectionManager: {
    openStream(peer: PeerId, protocol: string, options?: AbortOptions): Promise<Stream>
  }
  /** Lets go of a stream no longer used (the peer was removed, the remote closed its side, stop()). */
  closeStream(stream: Stream): Promise<void>
  /** The frames of a snapshot item, written in order (required when snapshots are pushed). */
  snapshotFrames?(snapshot: S): Iterable<Uint8Array>
  /** An item to `peer` was dropped (`item` is what push() was given, or was queued). Must not throw. */
  onDropped(peer: string, item: QueueItem<S>, reason: OutboxDropReason): void
  /** Queued items to `peer` were lost because it could not be reached (dial or stream failure). Must not throw. */
  onUnreachable?(peer: string): void
  /** A snapshot to `peer` was written completely. Must not throw. */
  onSnapshotSent?(peer: string): void
}

class WriteTimeoutError extends Error {
  override name = 'WriteTimeoutError'
  constructor (timeoutMs: number) {
    super(`a write did not complete within ${timeoutMs} ms`)
  }
}

/** An open stream and its framing. */
interface Channel {
  stream: Stream
  lp: LengthPrefixedStream<Stream>
}

/** Per-peer outbound state. */
interface Outbound<S> {
  id: string
  peerId: PeerId
  queue: OutboundQueue<S>
  channel?: Channel
  /** The writer loop is running. */
  draining: boolean
  writingMessages: number
  consecutiveFailures: number
  /** No dial before this time (Date.now() ms). */
  retryAtMs: number
  streamsOpened: number
}

export class PeerOutbox<S = never> {
  readonly #init: PeerOutboxInit<S>
  readonly #limits: PeerOutboxLimits
  readonly #peers = new Map<string, Outbound<S>>()
  #running = false
  #abort = new AbortController()
  #messagesSent = 0
  #bytesSent = 0
  #snapshotsSent = 0
  #streamsOpened = 0
  #reconnects = 0
  #dialFailures = 0
  #streamErrors = 0
  #streamsReset = 0

  constructor (init: PeerOutboxInit<S>) {
    this.#init = init
    this.#limits = init.limits
  }

  start (): void {
    if (this.#running) { return }
    this.#abort = new AbortController()
    this.#running = true
  }

  /** Aborts dials and writes, drops everything queued ('stopped'), and resolves once every stream is let go. */
  async stop (): Promise<void> {
    if (!this.#running) { return }
    this.#running = false
    this.#abort.abort(new Error('transport stopped'))
    const streams: Stream[] = []
    for (const out of this.#peers.values()) {
      this.#dropAll(out, 'stopped')
      if (out.channel !== undefined) { streams.push(out.channel.stream) }
      out.channel = undefined
    }
    this.#peers.clear()
    await Promise.all(streams.map(async s => { await this.#init.closeStream(s) }))
  }

  /** Queues `item` for `to` and wakes its writer; what cannot be queued is dropped (onDropped). Call only while started. */
  push (to: string, item: QueueItem<S>): void {
    const out = this.#outboundFor(to)
    if (typeof out === 'string') {
      this.#init.onDropped(to, item, out)
      return
    }
    for (const dropped of out.queue.push(item)) {
      this.#init.onDropped(to, dropped, dropReason(item, dropped))
    }
    if (!out.draining) { void this.#drain(out) }
  }

  /** Forgets a peer: drops its queue ('stopped') and lets go of its stream. */
  remove (to: string): void {
    const out = this.#peers.get(to)
    if (out === undefined) { return }
    this.#peers.delete(to)
    this.#dropAll(out, 'stopped')
    if (out.channel !== undefined) { void this.#init.closeStream(out.channel.stream) }
    out.channel = undefined
  }

  /**
   * Lets go of the stream to `to` (aborted, so its remote sees a reset), if
   * one is open; the next message opens a new one. What was queued stays.
   */
  resetStream (to: string, reason: Error): void {
    const channel = this.#peers.get(to)?.channel
    if (channel === undefined) { return }
    this.#streamsReset++
    channel.stream.abort(reason)
  }

  stats (): PeerOutboxStats {
    const peers: Record<string, PeerOutboundStats> = {}
    let queuedMessages = 0
    let queuedBytes = 0
    let outboundStreams = 0
    for (const out of this.#peers.values()) {
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
      snapshotsSent: this.#snapshotsSent,
      streamsOpened: this.#streamsOpened,
      reconnects: this.#reconnects,
      dialFailures: this.#dialFailures,
      streamErrors: this.#streamErrors,
      streamsReset: this.#streamsReset,
      outboundStreams,
      queuedMessages,
      queuedBytes,
      peers
    }
  }

  /** The peer's outbound state (created on first use), or why there is none. */
  #outboundFor (to: string): Outbound<S> | OutboxDropReason {
    const known = this.#peers.get(to)
    if (known !== undefined) { return known }
    let peerId: PeerId
    try {
      peerId = peerIdFromString(to)
    } catch {
      return 'invalid-peer'
    }
    if (this.#peers.size >= this.#limits.peersMax && !this.#evictIdlePeer()) { return 'peers-full' }
    const out: Outbound<S> = {
      id: to,
      peerId,
      queue: new OutboundQueue<S>({ messagesMax: this.#limits.outboundQueueMessagesMax, bytesMax: this.#limits.outboundQueueBytesMax }),
      draining: false,
      writingMessages: 0,
      consecutiveFailures: 0,
      retryAtMs: 0,
      streamsOpened: 0
    }
    this.#peers.set(to, out)
    return out
  }

  /**
   * Frees the slot of the longest-known peer with nothing queued or being
   * written (one that left, or an id a stranger made us answer), so peers
   * that come and go cannot fill the table for good. False when all are busy.
   */
  #evictIdlePeer (): boolean {
    for (const out of this.#peers.values()) {
      if (!out.draining && out.queue.length === 0) {
        this.remove(out.id)
        return true
      }
    }
    return false
  }

  /** The writer of one peer: runs while its queue is non-empty. */
  async #drain (out: Outbound<S>): Promise<void> {
    out.draining = true
    try {
      while (this.#running && this.#peers.get(out.id) === out && out.queue.length > 0) {
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
          const stopped = !this.#running || this.#peers.get(out.id) !== out
          for (const item of batch) { this.#init.onDropped(out.id, item, stopped ? 'stopped' : 'stream-error') }
          if (stopped) { break }
          this.#streamFailed(out, channel, err)
        } finally {
          out.writingMessages = 0
        }
      }
    } catch (err) {
      // only the backoff sleep throws here, aborted by stop()
      if (this.#running) { this.#init.log.error('writer to %s failed - %e', out.id, err) }
    } finally {
      out.draining = false
    }
  }

  /** The next snapshot alone, or consecutive frames up to writeBatchBytesMax. */
  #takeBatch (out: Outbound<S>): Array<QueueItem<S>> {
    const first = out.queue.shift()
    if (first === undefined) { return [] }
    const batch: Array<QueueItem<S>> = [first]
    if (first.kind !== 'frame') { return batch }
    let bytes = first.bytes
    for (let next = out.queue.peekFrame(); next !== undefined && bytes + next.bytes <= this.#limits.writeBatchBytesMax; next = out.queue.peekFrame()) {
      out.queue.shift()
      batch.push(next)
      bytes += next.bytes
    }
    return batch
  }

  async #write (out: Outbound<S>, channel: Channel, batch: Array<QueueItem<S>>): Promise<void> {
    // Past the deadline the stream is aborted, which fails the pending
    // write. (One timer per write: AbortSignal.timeout + AbortSignal.any
    // cost several times more, on the path of every message.)
    const { lp, stream } = channel
    const options: AbortOptions = { signal: this.#abort.signal }
    const deadline = setTimeout(() => { stream.abort(new WriteTimeoutError(this.#limits.writeTimeoutMs)) }, this.#limits.writeTimeoutMs)
    try {
      const first = batch[0]
      if (first.kind === 'snapshot') {
        const frames = this.#init.snapshotFrames?.(first.message)
        if (frames === undefined) { throw new TypeError('a snapshot was pushed to an outbox without snapshotFrames') }
        for (const frame of frames) {
          deadline.refresh()
          await lp.write(frame, options)
          this.#bytesSent += frame.byteLength
        }
        this.#messagesSent++
        this.#snapshotsSent++
        this.#init.onSnapshotSent?.(out.id)
        return
      }
      const frames = batch.map(item => (item as QueueItem<S> & { kind: 'frame' }).frame)
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
  async #open (out: Outbound<S>): Promise<Channel | undefined> {
    const { protocol } = this.#init
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#limits.dialTimeoutMs)])
    let stream: Stream
    try {
      stream = await this.#init.connectionManager.openStream(out.peerId, protocol, { signal })
    } catch (err) {
      if (!this.#running) { return undefined }
      this.#dialFailures++
      this.#init.log('cannot open %s to %s - %e', protocol, out.id, err)
      this.#backoff(out)
      this.#dropAll(out, 'unreachable')
      this.#init.onUnreachable?.(out.id)
      return undefined
    }
    if (!this.#running || this.#peers.get(out.id) !== out) {
      stream.abort(new Error('transport stopped'))
      return undefined
    }
    this.#streamsOpened++
    if (out.streamsOpened++ > 0) { this.#reconnects++ }
    const lp = lpStream(stream, { maxDataLength: this.#limits.frameBytesMax })
    // The remote never writes on this stream: its closing the write side (idle
    // timeout, stop) or a reset means the stream is gone; forget it now so the
    // next message opens a new one instead of failing on this one.
    const channel: Channel = { stream, lp }
    const gone = (): void => {
      stream.removeEventListener('close', gone)
      stream.removeEventListener('remoteCloseWrite', gone)
      if (out.channel === channel) { out.channel = undefined }
      if (stream.status === 'open') { void this.#init.closeStream(stream) }
    }
    stream.addEventListener('close', gone)
    stream.addEventListener('remoteCloseWrite', gone)
    out.channel = channel
    return channel
  }

  #streamFailed (out: Outbound<S>, channel: Channel, err: unknown): void {
    this.#streamErrors++
    this.#init.log('stream to %s failed - %e', out.id, err)
    if (out.channel === channel) { out.channel = undefined }
    channel.stream.abort(err instanceof Error ? err : new Error(String(err)))
    this.#backoff(out)
    this.#init.onUnreachable?.(out.id)
  }

  #backoff (out: Outbound<S>): void {
    out.consecutiveFailures++
    const { reconnectBackoffMinMs: min, reconnectBackoffMaxMs: max } = this.#limits
    const delayMs = Math.min(max, min * 2 ** Math.min(out.consecutiveFailures - 1, 30))
    out.retryAtMs = Date.now() + delayMs
  }

  #dropAll (out: Outbound<S>, reason: OutboxDropReason): void {
    for (const item of out.queue.clear()) { this.#init.onDropped(out.id, item, reason) }
  }
}

/** Why the queue gave back `dropped` when `pushed` was added. */
function dropReason<S> (pushed: QueueItem<S>, dropped: QueueItem<S>): OutboxDropReason {
  if (dropped === pushed) { return 'oversize' }
  if (dropped.kind === 'snapshot' && pushed.kind === 'snapshot') { return 'snapshot-superseded' }
  return 'queue-full'
}
