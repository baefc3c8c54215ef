/**
 * A datagram protocol over libp2p streams: each message is one
 * length-prefixed CBOR frame on a stream of its own, sent best effort.
 * Gossip protocols (SWIM, anti-entropy) are built for unreliable
 * datagrams: a lost or late message is what their timeouts and rounds
 * expect, so a send that fails is counted, never retried.
 *
 * Inbound, admission gates the protocol (only cluster members speak it),
 * a frame is read within `frameBytesMax` and decoded with bounded CBOR,
 * and a message must name as its sender (`from`) the peer Noise
 * authenticated: a member speaks only for itself. What fails those checks
 * is refused through admission's refusals (counted and logged) and never
 * reaches the core.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { encode } from 'cborg'
import { decodeBoundedCbor } from './raft/codec.ts'
import { boundedLengthDecoder } from './raft/transport.ts'
import type { Admission } from './admission/admission.ts'
import type { AccordHost } from './host.ts'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'

/** The fields every datagram shares; the rest is the protocol's. */
export interface Datagram {
  type: string
  from: string
  to: string
}

export interface DatagramCounters {
  sent(type: string, bytes: number): void
  received(bytes: number): void
  /** reason: 'sends-full' | 'bad-recipient' | 'no-address' | 'unreachable' */
  dropped(reason: string): void
}

export interface DatagramChannelInit {
  host: AccordHost
  admission: Admission
  protocol: string
  /** Largest frame accepted, in bytes (the core's message limit plus CBOR framing). */
  frameBytesMax: number
  /** Sends in flight at once; beyond, a message is dropped and counted. */
  sendsInFlightMax: number
  /** A send (dial, open, write) or a receive that takes longer is abandoned. */
  timeoutMs: number
  /** Streams of this protocol open at once per connection, each way. */
  streamsMax: number
  /**
   * A frame may hold a CBOR array of up to this many messages, delivered
   * in order, each checked like a frame of its own (DkgSender batches what
   * it sends to one peer); 0 or absent: a frame is one message.
   */
  batchMax?: number
  counters: DatagramCounters
  /**
   * A decoded message whose `from` is the authenticated peer: hand it to the
   * core. A refusal ({ok: false}) is counted under its reason.
   */
  deliver(message: unknown, peer: string): { ok: true } | { ok: false, reason: string, detail?: string }
  /**
   * The addresses a peer announced (in its membership envelope): dialled
   * when we hold no connection to it (see dialTargetOf).
   */
  addressesOf(id: string): string[]
  log: Logger
}

export class DatagramChannel<M extends Datagram> {
  readonly #init: DatagramChannelInit
  #sendsInFlight = 0
  #open = false

  constructor (init: DatagramChannelInit) {
    this.#init = init
  }

  async start (): Promise<void> {
    const { host, admission, protocol, streamsMax } = this.#init
    await host.handle(protocol, admission.gate(protocol, async (stream, connection) => {
      await this.#receive(stream, connection)
    }), { maxInboundStreams: streamsMax, maxOutboundStreams: streamsMax })
    this.#open = true
  }

  async stop (): Promise<void> {
    this.#open = false
    await this.#init.host.unhandle(this.#init.protocol).catch(() => {})
  }

  get sendsInFlight (): number { return this.#sendsInFlight }

  /** Send one message, best effort (returns at once; a failure is counted). */
  send (message: M): void {
    const { host, protocol, counters, timeoutMs, log } = this.#init
    if (!this.#open) { return }
    if (this.#sendsInFlight >= this.#init.sendsInFlightMax) {
      counters.dropped('sends-full')
      return
    }
    let to: PeerId
    try { to = peerIdFromString(message.to) } catch { counters.dropped('bad-recipient'); return }
    const bytes = encode(message)
    this.#sendsInFlight++
    void (async () => {
      const target = await dialTargetOf(host, to, () => this.#init.addressesOf(message.to))
      if (target == null) {
        counters.dropped('no-address')
        return
      }
      counters.sent(message.type, bytes.byteLength)
      await sendOneMessage(host, target, protocol, bytes, timeoutMs)
    })().catch(err => {
      counters.dropped('unreachable')
      log.trace({ to: message.to, type: message.type, err: (err as Error).message }, `${protocol}: send failed`)
    }).finally(() => { this.#sendsInFlight-- })
  }

  async #receive (stream: Stream, connection: Connection): Promise<void> {
    const { admission, protocol, frameBytesMax, counters, timeoutMs } = this.#init
    const peer = connection.remotePeer.toString()
    const signal = AbortSignal.timeout(timeoutMs)
    let input: unknown
    try {
      const lp = lpStream(stream, { maxDataLength: frameBytesMax, lengthDecoder: boundedLengthDecoder(frameBytesMax) })
      const frame = (await lp.read({ signal })).subarray()
      counters.received(frame.byteLength)
      input = decodeBoundedCbor(frame)
      await stream.close({ signal })
    } catch (err) {
      admission.refusals.refuse(peer, protocol, 'malformed', { detail: (err as Error).message })
      stream.abort(err as Error)
      return
    }
    if (!this.#open) { return }
    const batchMax = this.#init.batchMax ?? 0
    if (Array.isArray(input) && batchMax > 0) {
      if (input.length > batchMax) {
        admission.refusals.refuse(peer, protocol, 'malformed', { detail: `a batch of ${input.length} messages (at most ${batchMax})` })
        return
      }
      for (const message of input) {
        if (!this.#open) { return }
        this.#deliverOne(message, peer)
      }
      return
    }
    this.#deliverOne(input, peer)
  }

  #deliverOne (input: unknown, peer: string): void {
    const { admission, protocol } = this.#init
    // Noise authenticated the peer: it speaks only for itself
    if (typeof input !== 'object' || input == null || (input as { from?: unknown }).from !== peer) {
      admission.refusals.refuse(peer, protocol, 'spoofed-sender')
      return
    }
    const result = this.#init.deliver(input, peer)
    if (!result.ok) {
      admission.refusals.refuse(peer, protocol, result.reason, result.detail !== undefined ? { detail: result.detail } : {})
    }
  }
}

/**
 * Opens a stream of `protocol` to `target` (the first of a list that the
 * peer speaks), writes `bytes` (or what `bytes` makes for the protocol
 * chosen) as one length-prefixed message and closes it, all within
 * `timeoutMs`. Returns the protocol chosen.
 */
export async function sendOneMessage (host: AccordHost, target: PeerId | Multiaddr[], protocol: string | string[], bytes: Uint8Array | ((chosen: string) => Uint8Array), timeoutMs: number): Promise<string> {
  const signal = AbortSignal.timeout(timeoutMs)
  const stream = await host.dialProtocol(target, protocol, { signal })
  try {
    await lpStream(stream).write(typeof bytes === 'function' ? bytes(stream.protocol) : bytes, { signal })
    await stream.close({ signal })
    return stream.protocol
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

/**
 * Where to reach a peer: its connection, else the addresses it announced,
 * else those the peer store holds; null when there are none. A dial by
 * peer id alone to a member learnt through gossip, whose addresses nobody
 * knows, would look the peer up in the DHT (and any other dial to it would
 * wait on that): a member that lies about members that do not exist, which
 * every node then contacts, would set the whole cluster on DHT lookups
 * (seen fuzzing /accord/swim).
 */
export async function dialTargetOf (host: AccordHost, peerId: PeerId, announced: () => string[]): Promise<PeerId | Multiaddr[] | null> {
  if (host.getConnections(peerId).length > 0) { return peerId }
  // read only when needed: most sends go over a connection, and reading decodes the member's envelope
  const addrs = announced().flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
  if (addrs.length > 0) { return addrs }
  const known = await host.peerStore.get(peerId).then(peer => peer.addresses.length > 0, () => false)
  return known ? peerId : null
}
