/**
 * Sending DKG datagrams: the datagram channel's framing (one CBOR frame on
 * a stream of its own), but retried and batched per peer. The channel's
 * own send is best effort for gossip, whose next round repairs a loss; a
 * DKG sends each message once, and a lost deal costs a justification round
 * or the dealer's exclusion, so a failed send (a stream reset, a timeout on
 * a busy peer) is tried again, `attempts` times in all, with a growing
 * pause.
 *
 * What one task sends to one peer (a response and the `seen` that follows
 * it) leaves on one stream, as one frame holding a CBOR array of datagrams
 * (at most `batchMax` of them and `frameBytesMax` bytes; DatagramChannel's
 * `batchMax` reads them): each stream costs both ends a multistream-select
 * and a peer-store update. Streams are not held back behind one another:
 * a peer busy with the DKG's crypto closes a stream late, and a message
 * queued behind it would wait for that (a first try that sent to each
 * peer one stream at a time was no faster at n = 16). A batch is acknowledged
 * as a whole (the receiver closes the stream once it has read the frame),
 * so a failed one is sent again whole.
 *
 * Batches are `protocol`'s (/accord/dkg/1.1.0). A stream is opened
 * offering it and then `unbatchedProtocol` (1.0.0, nodes from before
 * batching): a peer that picks the older one gets the batch one message
 * per stream, the first on the stream just opened.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { encode } from 'cborg'
import { dialTargetOf, sendOneMessage } from '../datagram.ts'
import type { DatagramCounters } from '../datagram.ts'
import type { AccordHost } from '../host.ts'
import type { Logger } from 'pino'

export interface DkgSenderInit {
  host: AccordHost
  /** The protocol of batched frames. */
  protocol: string
  /** The protocol of one datagram per frame, spoken to a peer that does not offer `protocol`. */
  unbatchedProtocol: string
  counters: DatagramCounters
  /** Messages queued or in flight at once, retries included; beyond, a message is dropped and counted. */
  sendsInFlightMax: number
  /** One attempt (dial, open, write, close) that takes longer is abandoned. */
  timeoutMs: number
  /** Tries of one message, the first included. */
  attempts: number
  /** The pause before the second try; doubled before each further one. */
  retryPauseMs: number
  /** Datagrams in one frame at most (1: every message on a stream of its own). */
  batchMax: number
  /** A batch's frame stays within this many bytes (a larger message goes alone). */
  frameBytesMax: number
  addressesOf(id: string): string[]
  log: Logger
}

interface Outgoing { type: string, bytes: Uint8Array }

export class DkgSender {
  readonly #init: DkgSenderInit
  /** Per peer: messages sent in the current task, to leave together once it ends. */
  readonly #pending = new Map<string, Outgoing[]>()
  #inFlight = 0
  #open = true

  constructor (init: DkgSenderInit) {
    this.#init = init
  }

  stop (): void { this.#open = false }

  send (message: { type: string, to: string, [field: string]: unknown }): void {
    const { counters } = this.#init
    if (!this.#open) { return }
    if (this.#inFlight >= this.#init.sendsInFlightMax) {
      counters.dropped('sends-full')
      return
    }
    try { peerIdFromString(message.to) } catch { counters.dropped('bad-recipient'); return }
    this.#inFlight++
    const outgoing = { type: message.type, bytes: encode(message) }
    if (this.#pending.size === 0) {
      // after the current task: what it sends to one peer (a response, then seen) leaves in one frame
      queueMicrotask(() => { this.#flush() })
    }
    const pending = this.#pending.get(message.to)
    if (pending !== undefined) {
      pending.push(outgoing)
    } else {
      this.#pending.set(message.to, [outgoing])
    }
  }

  /** Every peer's pending messages, a batch to a stream; streams to different peers, and batches, go at once. */
  #flush (): void {
    const pending = [...this.#pending]
    this.#pending.clear()
    for (const [to, queue] of pending) {
      while (queue.length > 0) { void this.#sendBatch(to, this.#takeBatch(queue)) }
    }
  }

  async #sendBatch (to: string, batch: Outgoing[]): Promise<void> {
    const { counters, log } = this.#init
    try {
      if (!this.#open) { throw new Error('stopped') }
      await this.#deliver(to, batch)
      for (const m of batch) { counters.sent(m.type, m.bytes.byteLength) }
    } catch (err) {
      for (const m of batch) {
        counters.dropped('unreachable')
        log.debug({ to, type: m.type, err: (err as Error).message }, 'dkg: send failed')
      }
    } finally {
      this.#inFlight -= batch.length
    }
  }

  #takeBatch (queue: Outgoing[]): Outgoing[] {
    const { batchMax, frameBytesMax } = this.#init
    let count = 1
    let bytes = queue[0].bytes.byteLength + 9
    while (count < queue.length && count < batchMax && bytes + queue[count].bytes.byteLength <= frameBytesMax) {
      bytes += queue[count].bytes.byteLength
      count++
    }
    return queue.splice(0, count)
  }

  async #deliver (to: string, batch: Outgoing[]): Promise<void> {
    const { attempts, retryPauseMs } = this.#init
    const peerId = peerIdFromString(to)
    for (let attempt = 1; ; attempt++) {
      try {
        const target = await dialTargetOf(this.#init.host, peerId, () => this.#init.addressesOf(to))
        if (target == null) { throw new Error('no address') }
        await this.#write(target, batch)
        return
      } catch (err) {
        if (attempt >= attempts || !this.#open) { throw err }
        await new Promise(resolve => setTimeout(resolve, retryPauseMs * 2 ** (attempt - 1)))
      }
    }
  }

  /**
   * The batch as one frame on a stream of the newest protocol the peer
   * speaks; if that is the unbatched one, its first message on that stream
   * and each further one on a stream of its own.
   */
  async #write (target: Parameters<typeof sendOneMessage>[1], batch: Outgoing[]): Promise<void> {
    const { host, protocol, unbatchedProtocol, timeoutMs } = this.#init
    const frame = (chosen: string): Uint8Array => chosen === unbatchedProtocol || batch.length === 1 ? batch[0].bytes : cborArray(batch.map(m => m.bytes))
    if (await sendOneMessage(host, target, [protocol, unbatchedProtocol], frame, timeoutMs) !== unbatchedProtocol) { return }
    for (const message of batch.slice(1)) { await sendOneMessage(host, target, unbatchedProtocol, message.bytes, timeoutMs) }
  }
}

/** A CBOR array of the already encoded `items` (RFC 8949: major type 4, then the items). */
export function cborArray (items: Uint8Array[]): Uint8Array {
  const n = items.length
  let head: number[]
  if (n < 24) {
    head = [0x80 + n]
  } else if (n < 256) {
    head = [0x98, n]
  } else {
    head = [0x99, n >> 8, n & 0xff]
  }
  const out = new Uint8Array(head.length + items.reduce((sum, item) => sum + item.byteLength, 0))
  out.set(head, 0)
  let offset = head.length
  for (const item of items) {
    out.set(item, offset)
    offset += item.byteLength
  }
  return out
}
