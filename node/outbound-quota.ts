/**
 * An outbound quota against eclipse: the node keeps at least
 * `outboundPeersMin` connections to peers it chose itself (members it knows
 * from its peer store first, then peers of its DHT routing table), and tags
 * them so that libp2p's connection pruner closes them last. libp2p refuses
 * inbound connections once maxConnections are open, so strangers that got
 * there first could otherwise hold every slot: the quota's dials still go
 * out, and the pruner then closes strangers' connections to make room.
 *
 * Among the peers that are not members, the quota takes one per subnet
 * before a second from any subnet (subnet-spread.ts), so an attacker that
 * holds one network cannot fill every choice with its peer ids. A peer
 * counts in the subnet of its open connection, or else of the first
 * address libp2p would dial; after the dial, the subnet of the address the
 * connection reached is checked, and a peer that turns out to sit in
 * another subnet, holding more chosen peers than the one it was ranked by,
 * is not chosen (logged, counted in `misplaced`; its connection is left to
 * the pruner, and on the next refill it counts where its connection is).
 */
import { randomInt } from 'node:crypto'
import { CONNECTION_BUDGETS } from './budgets.ts'
import { peerSubnet, spreadOverSubnets } from './subnet-spread.ts'
import type { RankedCandidate } from './subnet-spread.ts'
import type { Libp2p, Logger, Peer, PeerId } from '@libp2p/interface'

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
  /** The IPv4 prefix length of one subnet for the spread (budgets.ts subnetIpv4PrefixBits). */
  subnetIpv4PrefixBits: number
  /** The IPv6 prefix length of one subnet for the spread (budgets.ts subnetIpv6PrefixBits). */
  subnetIpv6PrefixBits: number
  /** Peers never chosen (denied ones). */
  isDenied?(peer: PeerId): boolean
}

export const OUTBOUND_QUOTA: Readonly<Omit<OutboundQuotaOptions, 'memberTag' | 'isDenied'>> = {
  outboundPeersMin: 4,
  intervalMs: 10_000,
  dialTimeoutMs: 10_000,
  dialsPerRefillMax: 8,
  subnetIpv4PrefixBits: CONNECTION_BUDGETS.subnetIpv4PrefixBits,
  subnetIpv6PrefixBits: CONNECTION_BUDGETS.subnetIpv6PrefixBits
}

type QuotaNode = Pick<Libp2p, 'peerId' | 'peerStore' | 'getConnections' | 'dial' | 'status' | 'logger'>

/** A candidate of a refill; members have no subnet to be checked against (they are chosen wherever they are). */
type Candidate = RankedCandidate<Peer> | { candidate: Peer, subnet: null, rank: null }

/**
 * Chooses and keeps the peers of the quota. `refill()` runs every
 * intervalMs, and can be called at any time (calls while one runs share
 * it). The chosen set holds at most outboundPeersMin peers.
 */
export class OutboundQuota {
  readonly options: Readonly<OutboundQuotaOptions>
  /** Set by wireBudgets: where a misplaced peer is counted (`ranked`: the subnet it was ranked by, `reached`: the one its connection reached). */
  onMisplaced: ((peer: string, ranked: string, reached: string) => void) | undefined
  readonly #node: QuotaNode
  readonly #log: Logger
  /** peer id → the peer and the subnet its connection reached */
  readonly #chosen = new Map<string, { id: PeerId, subnet: string }>()
  #misplaced = 0
  #timer: ReturnType<typeof setInterval> | undefined
  #running: Promise<void> | undefined

  constructor (node: QuotaNode, options: Partial<OutboundQuotaOptions> & Pick<OutboundQuotaOptions, 'memberTag'>) {
    this.options = { ...OUTBOUND_QUOTA, ...options }
    if (!Number.isSafeInteger(this.options.outboundPeersMin) || this.options.outboundPeersMin < 0) {
      throw new RangeError(`outboundPeersMin must be a non-negative integer, got ${this.options.outboundPeersMin}`)
    }
    this.#node = node
    this.#log = node.logger.forComponent('accord:outbound-quota')
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

  /** The subnet of each chosen peer's connection, by peer id. */
  get chosenSubnets (): Map<string, string> {
    return new Map([...this.#chosen].map(([id, { subnet }]) => [id, subnet]))
  }

  /** Peers dialled but not chosen because their connection reached another subnet, with more chosen peers than the one they were ranked by. */
  get misplaced (): number {
    return this.#misplaced
  }

  /** Forget chosen peers no longer connected, and choose new ones until the quota is met, no candidate is left or dialsPerRefillMax dials were tried. */
  async refill (): Promise<void> {
    this.#running ??= this.#refill().finally(() => { this.#running = undefined })
    return this.#running
  }

  async #refill (): Promise<void> {
    if (this.#node.status !== 'started') { return }
    for (const [id, { id: peer }] of this.#chosen) {
      if (this.#node.getConnections(peer).some(c => c.status === 'open')) { continue }
      this.#chosen.delete(id)
      await this.#tag(peer, false)
    }
    if (this.#chosen.size >= this.options.outboundPeersMin) { return }
    const candidates = (await this.#candidates()).slice(0, this.options.dialsPerRefillMax)
    for (const { candidate: peer, subnet: ranked } of candidates) {
      if (this.#chosen.size >= this.options.outboundPeersMin || this.#node.status !== 'started') { return }
      // tagged before the dial: over maxConnections, libp2p prunes as soon
      // as the new connection opens, and would close this one first
      await this.#tag(peer.id, true)
      let subnet: string
      try {
        const connection = await this.#node.dial(peer.id, { signal: AbortSignal.timeout(this.options.dialTimeoutMs) })
        subnet = peerSubnet(connection.remoteAddr, [], this.#prefixes)
      } catch {
        await this.#tag(peer.id, false)
        continue
      }
      // a peer found where it was ranked is chosen (the order did the
      // spreading); one found elsewhere only if that subnet holds no more
      // chosen peers than the one it was ranked by
      if (ranked != null && subnet !== ranked && this.#chosenIn(subnet) > this.#chosenIn(ranked)) {
        this.#misplaced++
        this.#log('not choosing %p: ranked in %s, its connection reached %s', peer.id, ranked, subnet)
        this.onMisplaced?.(peer.id.toString(), ranked, subnet)
        await this.#tag(peer.id, false)
        continue
      }
      this.#chosen.set(peer.id.toString(), { id: peer.id, subnet })
    }
  }

  get #prefixes (): { ipv4Bits: number, ipv6Bits: number } {
    return { ipv4Bits: this.options.subnetIpv4PrefixBits, ipv6Bits: this.options.subnetIpv6PrefixBits }
  }

  #chosenIn (subnet: string): number {
    let count = 0
    for (const chosen of this.#chosen.values()) { if (chosen.subnet === subnet) { count++ } }
    return count
  }

  /** Members first, in random order; then routing-table peers in random order, spread over their subnets. */
  async #candidates (): Promise<Candidate[]> {
    const self = this.#node.peerId.toString()
    const { memberTag, isDenied } = this.options
    const peers = await this.#node.peerStore.all({
      filters: [peer => {
        const id = peer.id.toString()
        return id !== self && !this.#chosen.has(id) && isDenied?.(peer.id) !== true &&
          (peer.tags.has(memberTag) || peer.tags.has(KAD_PEER_TAG))
      }]
    })
    const members = shuffle(peers.filter(p => p.tags.has(memberTag))).map(candidate => ({ candidate, subnet: null, rank: null }))
    const others = shuffle(peers.filter(p => !p.tags.has(memberTag)))
    const subnetOfPeer = (peer: Peer): string => {
      const connected = this.#node.getConnections(peer.id).find(c => c.status === 'open')?.remoteAddr
      return peerSubnet(connected, peer.addresses.map(a => a.multiaddr), this.#prefixes)
    }
    const taken = [...this.#chosen.values()].map(c => c.subnet)
    return [...members, ...spreadOverSubnets(others, subnetOfPeer, taken)]
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
