/*
 * Finds the other members of our cluster and keeps connections to them.
 *
 * - private mode: DHT walks on our own DHT (`/accord/kad/1.0.0`). Each round
 *   looks up the peers closest to our own id and to a random key, and dials
 *   the peers those walks reveal; a node given one bootstrap address so
 *   learns every other node, not only the bootstrap node.
 * - public mode: the public Amino DHT. Members provide a rendezvous CID
 *   derived from the cluster name and dial the other providers of it.
 *
 * With mDNS on, libp2p only records the peers mDNS reports (libp2p 3 no longer
 * dials discovered peers), so discovery dials those on this host or LAN.
 *
 * Membership comes from admission, not from what a peer claims: a peer is
 * a member once it has shown a certificate of our cluster (see
 * node/admission). identify's protocol list (`/accord/cluster/<name>/1.0.0`)
 * only tells whom to dial: members are remembered in the peer store
 * (persisted), so a restarted node redials them without a bootstrap node.
 */
import { randomBytes } from 'node:crypto'
import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { isPrivate } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { CLUSTER_HELLO_BYTES_MAX, CLUSTER_HELLO_STREAMS_MAX, clusterProtocol, rendezvousKey } from './constants.ts'
import { hostFromComponents } from './host.ts'
import { silentLogger } from './logger.ts'
import { VERSION } from './version.ts'
import type { AccordHost, HostComponents } from './host.ts'
import type { Identify } from '@libp2p/identify'
import type { Connection, IdentifyResult, PeerId, PeerInfo, PeerUpdate, Startable, StreamHandler } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Logger } from 'pino'

const RAW_CODEC = 0x55
/** Rounds at the start run this much faster, so a new cluster forms in seconds. */
const FAST_ROUNDS = 6
const FAST_ROUND_MS = 500
/** A DHT walk or provide that takes longer is abandoned. */
const WALK_TIMEOUT_MS = 60_000
const DIAL_TIMEOUT_MS = 30_000
/** At most this many dials are started per round. */
const DIALS_PER_ROUND_MAX = 64
/** How long an identify retry may take (libp2p's own identify timeout is 5 s). */
const IDENTIFY_RETRY_TIMEOUT_MS = 10_000
/** libp2p's identify protocol (with the default prefix, which libp2p.ts keeps). */
const IDENTIFY_PROTOCOL = '/ipfs/id/1.0.0'
/** Connected peers whose failed identify is retried, per pass (passes run at the pace of the rounds). */
const IDENTIFY_RETRIES_PER_PASS_MAX = 16
/** Dials in flight beyond which a peer that mDNS reports is not dialled (it still dials us when it finds us). */
const DISCOVERED_DIALS_IN_FLIGHT_MAX = 64
/** Members tracked; beyond this, new peers are not recorded (and logged). */
export const MEMBERS_MAX = 4096

export interface Member {
  peerId: string
  addresses: string[]
  connected: boolean
  firstSeenAt: string
}

/** What discovery asks of admission. */
export interface AdmissionView {
  isAdmitted(peer: string): boolean
  /** Removed from the cluster: never dialled again. */
  isRevoked(peer: string): boolean
  onAdmitted(listener: (peer: string) => void): () => void
}

export interface DiscoveryInit {
  /** Rendezvous over the public Amino DHT instead of walking a private DHT (default false). */
  public?: boolean
  /** Time between discovery rounds (default 10 s; the first rounds run faster). */
  intervalMs?: number
  /** Bootstrap multiaddrs (with /p2p/<id>); redialled while disconnected from them. */
  bootstrap?: string[]
  /** Dial the peers a peer discovery service (mDNS) reports. Default false. */
  dialDiscoveredPeers?: boolean
  /** Members tracked at most. Default MEMBERS_MAX (tests use a small one). */
  membersMax?: number
  log?: Logger
}

/**
 * libp2p's kad-dht and identify services, and accord's admission, under
 * the names js-libp2p's examples give them (as kad-dht finds `ping`).
 */
export interface DiscoveryComponents extends HostComponents {
  dht: KadDHT
  identify: Identify
  admission: AdmissionView & { readonly cluster: string, gate(protocol: string, handler: StreamHandler): StreamHandler }
}

export const DISCOVERY_INTERVAL_MS_DEFAULT = 10_000

export async function rendezvousCid (cluster: string): Promise<CID> {
  const digest = await sha256.digest(new TextEncoder().encode(rendezvousKey(cluster)))
  return CID.createV1(RAW_CODEC, digest)
}

export class ClusterDiscovery implements Startable {
  readonly #components: DiscoveryComponents
  readonly #node: AccordHost
  readonly #init: DiscoveryInit
  readonly #log: Logger
  readonly #bootstrap: string[]
  /** The cluster protocol, `/accord/cluster/<name>/1.0.0` (the cluster's name comes from admission). */
  #protocol = ''
  readonly #membersMax: number
  readonly #members = new Map<string, Member>()
  /** Discovery rounds: find candidate peers, dial them, redial lost members. */
  readonly #rounds: PacedLoop
  /**
   * Identify retries keep their own pace, not the rounds': a node whose
   * every connection missed identify has an empty DHT routing table (kad-dht
   * adds peers on identify), and kad-dht then holds the walk until a peer
   * is added, for up to WALK_TIMEOUT_MS.
   */
  readonly #identifyPasses: PacedLoop
  #running = false
  #starting: Promise<void> | undefined
  #stopAdmissionListener: (() => void) | undefined
  /** One per instance, created with it: the mDNS listener may dial before start(). */
  #abort = new AbortController()
  #provided = false
  /** Dials in flight, so a slow dial is not started again by the next round (at most DIALS_PER_ROUND_MAX per round). */
  readonly #dialing = new Set<string>()
  /**
   * Open connections that identify has not completed on, by connection id,
   * with the pass of their last identify retry (-1: none). An entry goes
   * when identify completes or the connection closes, so the map is bounded
   * by the connection limit.
   */
  readonly #unidentified = new Map<string, number>()

  readonly [Symbol.toStringTag] = '@accord/discovery'
  readonly [serviceCapabilities]: string[] = ['@accord/discovery']
  readonly [serviceDependencies]: string[] = ['@accord/admission', '@libp2p/kad-dht', '@libp2p/identify']

  constructor (components: DiscoveryComponents, init: DiscoveryInit = {}) {
    this.#components = components
    this.#node = hostFromComponents(components)
    this.#init = init
    this.#log = init.log ?? silentLogger()
    this.#bootstrap = init.bootstrap ?? []
    const intervalMs = init.intervalMs ?? DISCOVERY_INTERVAL_MS_DEFAULT
    this.#rounds = new PacedLoop(intervalMs, async () => { await this.#round() }, err => { this.#log.debug({ err }, 'discovery round failed') })
    this.#identifyPasses = new PacedLoop(intervalMs, async () => { await this.#identifyUnknownPeers() }, err => { this.#log.debug({ err }, 'identify retries failed') })
    this.#membersMax = init.membersMax ?? MEMBERS_MAX
    // listening from construction, before libp2p starts: mDNS sends its
    // first query as it starts, and the answers would otherwise be missed;
    // likewise a peer may dial us as soon as libp2p listens
    this.#listenToConnections()
  }

  /** (Adding a listener that is already there changes nothing.) */
  #listenToConnections (): void {
    if (this.#init.dialDiscoveredPeers === true) { this.#node.addEventListener('peer:discovery', this.#onPeerDiscovery) }
    this.#node.addEventListener('connection:open', this.#onConnectionOpen)
    this.#node.addEventListener('connection:close', this.#onConnectionClose)
    this.#node.addEventListener('peer:identify', this.#onPeerIdentify)
  }

  /** Admission, a sibling service: looked up when used, since services are built one by one. */
  get #admission (): DiscoveryComponents['admission'] {
    return this.#components.admission
  }

  /** Members other than ourselves, sorted by peer id; connected means connected and admitted. */
  members (): Member[] {
    const connected = new Set(this.#node.getConnections().map(c => c.remotePeer.toString()))
    return [...this.#members.values()]
      .map(m => ({ ...m, connected: connected.has(m.peerId) && this.#admission.isAdmitted(m.peerId) }))
      .sort((a, b) => a.peerId.localeCompare(b.peerId))
  }

  /** Serve the cluster protocol, so identify announces us as a member to dial. */
  async start (): Promise<void> {
    this.#starting = this.#start()
    await this.#starting
  }

  async #start (): Promise<void> {
    const node = this.#node
    this.#running = true
    // after a stop (libp2p nodes can be stopped and started again)
    if (this.#abort.signal.aborted) { this.#abort = new AbortController() }
    this.#listenToConnections()
    this.#protocol = clusterProtocol(this.#admission.cluster)
    await node.handle(this.#protocol, this.#admission.gate(this.#protocol, async (stream) => {
      const hello = new TextEncoder().encode(JSON.stringify({ cluster: this.#admission.cluster, version: VERSION }))
      if (hello.byteLength <= CLUSTER_HELLO_BYTES_MAX) { stream.send(hello) }
      await stream.close()
    }), { maxInboundStreams: CLUSTER_HELLO_STREAMS_MAX, maxOutboundStreams: CLUSTER_HELLO_STREAMS_MAX })
    node.addEventListener('peer:update', this.#onPeerUpdate)
    this.#stopAdmissionListener = this.#admission.onAdmitted(peer => {
      const peerId = peerIdFromString(peer)
      node.peerStore.get(peerId)
        .then(p => { this.#record(peerId, p.addresses.map(a => a.multiaddr.toString())) }, () => { this.#record(peerId, []) })
    })
  }

  /** Once libp2p listens: redial the members remembered from an earlier run, and start the rounds. */
  async afterStart (): Promise<void> {
    const node = this.#node
    const remembered = await node.peerStore.all({ filters: [(p) => p.protocols.includes(this.#protocol)] })
    // libp2p stops every service when another fails to start (a listen
    // address in use), maybe while this one was reading the peer store
    if (!this.#running) { return }
    for (const peer of remembered) {
      this.#record(peer.id, peer.addresses.map(a => a.multiaddr.toString()))
      this.#dial(peer.id)
    }
    this.#rounds.start()
    this.#identifyPasses.start()
  }

  /**
   * Dial every bootstrap address and wait for the outcome. Returns the
   * reasons of the failed dials (empty when all succeeded).
   */
  async dialBootstrap (): Promise<{ reached: number, failures: string[] }> {
    const node = this.#node
    const results = await Promise.allSettled(this.#bootstrap.map(async addr => {
      const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)])
      await node.dial(multiaddr(addr), { signal })
    }))
    const failures = results.flatMap((r, i) => r.status === 'rejected' ? [`${this.#bootstrap[i]}: ${(r.reason as Error).message}`] : [])
    return { reached: results.length - failures.length, failures }
  }

  /** How many members were remembered from an earlier run (known at start). */
  get knownMembers (): number {
    return this.#members.size
  }

  async stop (): Promise<void> {
    // libp2p stops every service when one fails to start, maybe while this one still starts
    await this.#starting?.catch(() => {})
    this.#running = false
    this.#abort.abort()
    this.#rounds.stop()
    this.#identifyPasses.stop()
    this.#stopAdmissionListener?.()
    this.#node.removeEventListener('peer:update', this.#onPeerUpdate)
    this.#node.removeEventListener('peer:discovery', this.#onPeerDiscovery)
    this.#node.removeEventListener('connection:open', this.#onConnectionOpen)
    this.#node.removeEventListener('connection:close', this.#onConnectionClose)
    this.#node.removeEventListener('peer:identify', this.#onPeerIdentify)
    this.#unidentified.clear()
    await this.#node.unhandle(this.#protocol).catch(() => {})
  }

  // identify (and identify push) results land in the peer store, so a peer
  // update is where a peer's protocol list, and so its membership, shows
  readonly #onPeerUpdate = (event: CustomEvent<PeerUpdate>): void => {
    const { peer } = event.detail
    if (peer.protocols.includes(this.#protocol) && this.#admission.isAdmitted(peer.id.toString())) { this.#record(peer.id, peer.addresses.map(a => a.multiaddr.toString())) }
  }

  readonly #onConnectionOpen = (event: CustomEvent<Connection>): void => {
    this.#unidentified.set(event.detail.id, -1)
  }

  readonly #onConnectionClose = (event: CustomEvent<Connection>): void => {
    this.#unidentified.delete(event.detail.id)
  }

  // reported when an identify exchange completes on a connection
  readonly #onPeerIdentify = (event: CustomEvent<IdentifyResult>): void => {
    this.#unidentified.delete(event.detail.connection.id)
  }

  // libp2p also reports as discovered every peer a DHT answer names: only
  // peers on this host or LAN (what mDNS finds) are dialled, not strangers
  readonly #onPeerDiscovery = (event: CustomEvent<PeerInfo>): void => {
    if (this.#dialing.size >= DISCOVERED_DIALS_IN_FLIGHT_MAX || !event.detail.multiaddrs.some(isPrivate)) { return }
    this.#dial(event.detail.id, event.detail)
  }

  #record (peerId: PeerId, addresses: string[]): void {
    const id = peerId.toString()
    const known = this.#members.get(id)
    if (known != null) {
      if (addresses.length > 0) { known.addresses = addresses }
      return
    }
    if (this.#members.size >= this.#membersMax) {
      this.#log.warn({ peer: id, membersMax: this.#membersMax }, 'member table full; peer not recorded')
      return
    }
    this.#members.set(id, { peerId: id, addresses, connected: true, firstSeenAt: new Date().toISOString() })
    this.#log.info({ peer: id, members: this.#members.size }, 'cluster member discovered')
  }

  /** One round: find candidate peers, dial them, and redial lost members. */
  async #round (): Promise<void> {
    const budget = { dials: DIALS_PER_ROUND_MAX }
    const offer = (peer: PeerInfo): void => {
      if (budget.dials > 0 && this.#dial(peer.id, peer)) { budget.dials-- }
    }
    for (const addr of this.#bootstrap) {
      const ma = multiaddr(addr)
      const id = peerIdFromString(ma.getComponents().find(c => c.name === 'p2p')?.value ?? '')
      offer({ id, multiaddrs: [ma] })
    }
    // peers are dialled as the walk reveals them, not after it ends: a
    // walk can take seconds on a busy node
    if ((this.#init.public === true)) { await this.#rendezvous(offer) } else { await this.#walk(offer) }
    for (const member of this.members()) {
      if (!member.connected) { offer({ id: peerIdFromString(member.peerId), multiaddrs: [] }) }
    }
  }

  /**
   * kad-dht adds a peer to its routing table when identify completes, and
   * a public-mode joiner finds members by the protocols identify lists.
   * On a busy node an identify exchange
   * can time out, leaving a connected peer whose protocol list holds only
   * what streams happened to negotiate, and nothing else identifies that
   * connection again while it stays open (accord runs no identify push). So
   * every pass identifies again a few connections that identify never
   * completed on (least recently retried first, so peers that never answer
   * do not crowd out the others), until it completes or the connection
   * closes.
   */
  async #identifyUnknownPeers (): Promise<void> {
    const node = this.#node
    const retriedPass = (c: Connection): number => this.#unidentified.get(c.id) ?? -1
    const retried = node.getConnections()
      .filter(c => c.status === 'open' && this.#unidentified.has(c.id) &&
        // libp2p's own identify, run as the connection opened, is still
        // going: the remote takes one identify stream per connection and
        // would refuse a second
        !c.streams.some(s => s.protocol === IDENTIFY_PROTOCOL && s.direction === 'outbound'))
      .sort((a, b) => retriedPass(a) - retriedPass(b))
      .slice(0, IDENTIFY_RETRIES_PER_PASS_MAX)
    // side by side and briefly
    await Promise.all(retried.map(async connection => {
      this.#unidentified.set(connection.id, this.#identifyPasses.runs)
      const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(IDENTIFY_RETRY_TIMEOUT_MS)])
      await this.#components.identify.identify(connection, { signal })
        .catch(err => { this.#log.debug({ peer: connection.remotePeer.toString(), err: (err as Error).message }, 'identify retry failed') })
    }))
  }

  async #walk (offer: (peer: PeerInfo) => void): Promise<void> {
    const node = this.#node
    // alternate between the neighbourhood of our own id (which fills our
    // k-buckets nearest to us) and a random region of the key space
    const key = this.#rounds.runs % 2 === 0 ? node.peerId.toMultihash().bytes : new Uint8Array(randomBytes(32))
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(WALK_TIMEOUT_MS)])
    try {
      for await (const event of this.#components.dht.getClosestPeers(key, { signal })) {
        if (event.name === 'FINAL_PEER') { offer(event.peer) }
        if (event.name === 'PEER_RESPONSE') { event.closer.forEach(offer) }
      }
    } catch (err) {
      if (this.#running) { this.#log.debug({ err }, 'dht walk ended early') }
    }
  }

  async #rendezvous (offer: (peer: PeerInfo) => void): Promise<void> {
    const node = this.#node
    const cid = await rendezvousCid(this.#admission.cluster)
    const signal = (): AbortSignal => AbortSignal.any([this.#abort.signal, AbortSignal.timeout(WALK_TIMEOUT_MS)])
    try {
      // kad-dht republishes provider records by itself once provided
      if (!this.#provided && node.getConnections().length > 0) {
        for await (const event of this.#components.dht.provide(cid, { signal: signal() })) { void event }
        this.#provided = true
        this.#log.info({ cid: cid.toString() }, 'provided cluster rendezvous key')
      }
      for await (const event of this.#components.dht.findProviders(cid, { signal: signal() })) {
        if (event.name === 'PROVIDER') { event.providers.forEach(offer) }
      }
    } catch (err) {
      if (this.#running) { this.#log.debug({ err }, 'rendezvous ended early') }
    }
  }

  /** Dial a peer unless it is us or already connected; returns whether a dial started. */
  #dial (peerId: PeerId, info?: PeerInfo): boolean {
    const node = this.#node
    const id = peerId.toString()
    if (peerId.equals(node.peerId) || this.#dialing.has(id) || node.getConnections(peerId).length > 0 || this.#admission.isRevoked(id)) { return false }
    const target = info != null && info.multiaddrs.length > 0 ? info.multiaddrs : peerId
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)])
    this.#dialing.add(id)
    node.dial(target, { signal }).catch(err => {
      this.#log.debug({ peer: id, err: (err as Error).message }, 'dial failed')
    }).finally(() => { this.#dialing.delete(id) })
    return true
  }
}

/**
 * Runs `step` over and over: FAST_ROUNDS times FAST_ROUND_MS apart (a new
 * node wants its peers soon), then every `intervalMs`. A step never
 * overlaps the next one: the wait starts when a step ends.
 */
class PacedLoop {
  readonly #intervalMs: number
  readonly #step: () => Promise<void>
  readonly #onError: (err: unknown) => void
  #timer: ReturnType<typeof setTimeout> | undefined
  #running = false
  /** Steps started so far. */
  runs = 0

  constructor (intervalMs: number, step: () => Promise<void>, onError: (err: unknown) => void) {
    this.#intervalMs = intervalMs
    this.#step = step
    this.#onError = onError
  }

  start (): void {
    this.#running = true
    this.#schedule()
  }

  stop (): void {
    this.#running = false
    clearTimeout(this.#timer)
  }

  #schedule (): void {
    if (!this.#running) { return }
    const delay = this.runs < FAST_ROUNDS ? FAST_ROUND_MS : this.#intervalMs
    this.#timer = setTimeout(() => {
      this.runs++
      this.#step().catch(this.#onError).finally(() => { this.#schedule() })
    }, delay)
  }
}

/**
 * The discovery service: `services: { discovery: clusterDiscovery({ bootstrap }) }`.
 * Needs kad-dht as `dht`, identify as `identify`, and clusterAdmission as `admission`.
 */
export function clusterDiscovery (init: DiscoveryInit = {}): (components: DiscoveryComponents) => ClusterDiscovery {
  return (components) => new ClusterDiscovery(components, init)
}
