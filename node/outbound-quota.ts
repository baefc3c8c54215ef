/**
 * An outbound quota against eclipse: the node keeps at least
 * `outboundPeersMin` connections to peers it chose itself (members it knows
 * from its peer store first, then peers of its DHT routing table), and tags
 * them so that libp2p's connection pruner closes them last. libp2p refuses
 * inbound connections once maxConnections are open, so strangers that got
 * there first could otherwise hold every slot: the quota's dials still go
 * out, and the pruner then closes strangers' connections to make room.
 */
import { randomInt } from 'node:crypto'
import type { Libp2p, Peer, PeerId } from '@libp2p/interface'

/** The peer-store tag of the peers the quota chose (the pruner closes the lowest tag sum first). */
export const OUTBOUND_TAG = 'accord-outbound'
export const OUTBOUND_TAG_VALUE = 100
/** kad-dht's tag on the peers of its routing table (@libp2p/kad-dht KAD_PEER_TAG_NAME, not exported from its index). */
export const KAD_PEER_TAG = 'kad-peer'

export interface OutboundQuotaOptions {
  /** Connections to peers of the node's choosing kept open. */
  outboundPeersMin: number
  /** How often the quota is checked and refilled (ms). */
  intervalMs: number
  /** How long one dial may take (ms). */
  dialTimeoutMs: number
  /** The tag that marks members in the peer store (budgets.ts MEMBER_TAG). */
  memberTag: string
  /** Dials one refill may try: peers a stale peer store still lists would otherwise each cost a dial timeout. */
  dialsPerRefillMax: number
  /** Peers never chosen (denied ones). */
  isDenied?(peer: PeerId): boolean
}

export const OUTBOUND_QUOTA: Readonly<Omit<OutboundQuotaOptions, 'memberTag' | 'isDenied'>> = {
  outboundPeersMin: 4,
  intervalMs: 10_000,
  dialTimeoutMs: 10_000,
  dialsPerRefillMax: 8
}

type QuotaNode = Pick<Libp2p, 'peerId' | 'peerStore' | 'getConnections' | 'dial' | 'status'>

/**
 * Chooses and keeps the peers of the quota. `refill()` runs every
 * intervalMs, and can be called at any time (calls while one runs share
 * it). The chosen set holds at most outboundPeersMin peers.
 */
export class OutboundQuota {
  readonly options: Readonly<OutboundQuotaOptions>
  readonly #node: QuotaNode
  readonly #chosen = new Map<string, PeerId>()
  #timer: ReturnType<typeof setInterval> | undefined
  #running: Promise<void> | undefined

  constructor (node: QuotaNode, options: Partial<OutboundQuotaOptions> & Pick<OutboundQuotaOptions, 'memberTag'>) {
    this.options = { ...OUTBOUND_QUOTA, ...options }
    if (!Number.isSafeInteger(this.options.outboundPeersMin) || this.options.outboundPeersMin < 0) {
      throw new RangeError(`outboundPeersMin must be a non-negative integer, got ${this.options.outboundPeersMin}`)
    }
    this.#node = node
  }

  start (): void {
    if (this.#timer != null || this.options.outboundPeersMin === 0) { return }
    this.#timer = setInterval(() => { void this.refill() }, this.options.intervalMs)
  }

  stop (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  /** The peers chosen and still connected. */
  get chosen (): string[] {
    return [...this.#chosen.keys()]
  }

  /** Forget chosen peers no longer connected, and choose new ones until the quota is met, no candidate is left or dialsPerRefillMax dials were tried. */
  async refill (): Promise<void> {
    this.#running ??= this.#refill().finally(() => { this.#running = undefined })
    return this.#running
  }

  async #refill (): Promise<void> {
    if (this.#node.status !== 'started') { return }
    for (const [id, peer] of this.#chosen) {
      if (this.#node.getConnections(peer).some(c => c.status === 'open')) { continue }
      this.#chosen.delete(id)
      await this.#tag(peer, false)
    }
    if (this.#chosen.size >= this.options.outboundPeersMin) { return }
    const candidates = (await this.#candidates()).slice(0, this.options.dialsPerRefillMax)
    for (const peer of candidates) {
      if (this.#chosen.size >= this.options.outboundPeersMin || this.#node.status !== 'started') { return }
      // tagged before the dial: over maxConnections, libp2p prunes as soon
      // as the new connection opens, and would close this one first
      await this.#tag(peer.id, true)
      try {
        await this.#node.dial(peer.id, { signal: AbortSignal.timeout(this.options.dialTimeoutMs) })
      } catch {
        await this.#tag(peer.id, false)
        continue
      }
      this.#chosen.set(peer.id.toString(), peer.id)
    }
  }

  /** Members first, then routing-table peers, each group in random order. */
  async #candidates (): Promise<Peer[]> {
    const self = this.#node.peerId.toString()
    const { memberTag, isDenied } = this.options
    const peers = await this.#node.peerStore.all({
      filters: [peer => {
        const id = peer.id.toString()
        return id !== self && !this.#chosen.has(id) && isDenied?.(peer.id) !== true &&
          (peer.tags.has(memberTag) || peer.tags.has(KAD_PEER_TAG))
      }]
    })
    const members = shuffle(peers.filter(p => p.tags.has(memberTag)))
    const others = shuffle(peers.filter(p => !p.tags.has(memberTag)))
    return [...members, ...others]
  }

  async #tag (peer: PeerId, on: boolean): Promise<void> {
    try {
      await this.#node.peerStore.merge(peer, { tags: { [OUTBOUND_TAG]: on ? { value: OUTBOUND_TAG_VALUE } : undefined } })
    } catch {
      // the node is stopping
    }
  }
}

/** Fisher–Yates with node:crypto, in place. */
function shuffle<T> (items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(i + 1)
    const swap = items[i]
    items[i] = items[j]
    items[j] = swap
  }
  return items
}
