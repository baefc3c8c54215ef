/**
 * The membership service: SWIM with Lifeguard (protocols/membership) over
 * libp2p. `services: { membership: swimMembership(init) }`, beside
 * clusterAdmission as `admission`.
 *
 * The driver ticks the core every `tickMs`, feeds it the messages that
 * arrive on `/accord/swim/1.0.0`, and sends what it returns: each message
 * one length-prefixed CBOR frame on a stream of its own (SWIM is built for
 * unreliable datagrams; a lost or late message is what its probes and
 * timeouts expect). Admission gates the protocol: only members of the
 * cluster take part, and a message must come from the peer it names as
 * its sender (Noise authenticated that peer; a member cannot speak for
 * another).
 *
 * The core's metadata carries an envelope: the member's listen addresses
 * (so a member learnt through gossip can be dialled) and the app's own
 * metadata (at most `metaBytesMax`, 4 KiB by default).
 */
import { randomBytes } from 'node:crypto'
import { serviceCapabilities, serviceDependencies, TypedEventEmitter } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { encode } from 'cborg'
import { Registry } from 'prom-client'
import { createRng } from '../../protocols/common/rng.ts'
import { MEMBERSHIP_DEFAULTS, MembershipNode } from '../../protocols/membership/index.ts'
import { bytesEqual } from '../../protocols/membership/membership-node.ts'
import { hostFromComponents } from '../host.ts'
import { silentLogger } from '../logger.ts'
import { decodeBoundedCbor } from '../raft/codec.ts'
import { boundedLengthDecoder } from '../raft/transport.ts'
import { membershipMetrics } from './metrics.ts'
import type { MembershipMetrics } from './metrics.ts'
import type { MemberInfo, MembershipConfig, MembershipEvent, MembershipStatus, Message } from '../../protocols/membership/index.ts'
import type { Admission } from '../admission/admission.ts'
import type { AccordHost, HostComponents } from '../host.ts'
import type { Connection, PeerId, Startable, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'

export const SWIM_PROTOCOL = '/accord/swim/1.0.0'

export interface MembershipSettings {
  /** The driver's clock: the core advances one tick this often. */
  tickMs: number
  /** Largest app metadata of a member, in bytes (at least 4096). */
  metaBytesMax: number
  /** Messages being sent at once; beyond it a message is dropped (SWIM tolerates loss) and counted. */
  sendsInFlightMax: number
  /** A send (dial, open, write) that takes longer is abandoned. */
  sendTimeoutMs: number
  /**
   * stop() hands out the news of our leave for at most this long. One
   * protocol period carries it to a member or two, who pass it on; waiting
   * for the core's full retransmit count would hold every stop for seconds.
   */
  leaveTimeoutMs: number
  /** Listen addresses carried in a member's envelope, at most. */
  addressesMax: number
}

export const MEMBERSHIP_SETTINGS_DEFAULTS: Readonly<MembershipSettings> = {
  tickMs: 100,
  metaBytesMax: 4096,
  sendsInFlightMax: 256,
  sendTimeoutMs: 2_000,
  leaveTimeoutMs: 1_000,
  addressesMax: 8
}

/** What the envelope adds to the app's metadata, at most (addresses and framing). */
const ENVELOPE_BYTES_MAX = 2048
/** Pings whose round trip is being timed, at most (the oldest is forgotten first). */
const PINGS_TIMED_MAX = 1024
/** A frame holds one message: the core's largest plus the CBOR framing of its byte model. */
const FRAME_SLACK_BYTES = 4096

export interface MembershipInit {
  /** This member's app metadata (roles, API address, version...); see setMeta(). */
  meta?: Uint8Array
  settings?: Partial<MembershipSettings>
  /** The core's settings (protocol period, suspicion multipliers, limits), in ticks. */
  core?: Partial<Omit<MembershipConfig, 'id' | 'meta' | 'metaBytesMax' | 'roster'>>
  /** Where the membership metrics are registered (default: a registry of its own). */
  registry?: Registry
  log?: Logger
}

/** What the service reports about a member: the core's view, with the envelope opened. */
export interface Member {
  peerId: string
  state: MemberInfo['state']
  incarnation: number
  /** The member's app metadata. */
  meta: Uint8Array
  addresses: string[]
}

export interface MembershipEvents {
  'member:join': CustomEvent<Member>
  'member:update': CustomEvent<Member>
  'member:suspect': CustomEvent<Member>
  'member:alive': CustomEvent<Member>
  'member:dead': CustomEvent<Member>
  'member:leave': CustomEvent<Member>
}

export interface MembershipComponents extends HostComponents {
  admission: Admission
}

interface Envelope { addrs: string[], app: Uint8Array }

export class MembershipService extends TypedEventEmitter<MembershipEvents> implements Startable {
  readonly settings: MembershipSettings
  readonly #components: MembershipComponents
  readonly #host: AccordHost
  readonly #init: MembershipInit
  readonly #log: Logger
  readonly #metrics: MembershipMetrics
  #core: MembershipNode | undefined
  #appMeta: Uint8Array
  #timer: ReturnType<typeof setInterval> | undefined
  #sendsInFlight = 0
  /** Direct pings awaiting their ack, by "peer seq", with the time sent: the probe RTT (at most PINGS_TIMED_MAX). */
  readonly #pings = new Map<string, number>()
  #stopAdmissionWatch: (() => void) | undefined
  #leaveDone: (() => void) | undefined

  readonly [Symbol.toStringTag] = '@accord/membership'
  readonly [serviceCapabilities]: string[] = ['@accord/membership']
  readonly [serviceDependencies]: string[] = ['@accord/admission']

  constructor (components: MembershipComponents, init: MembershipInit = {}) {
    super()
    this.#components = components
    this.#host = hostFromComponents(components)
    this.#init = init
    this.#log = init.log ?? silentLogger()
    this.settings = { ...MEMBERSHIP_SETTINGS_DEFAULTS, ...init.settings }
    this.#appMeta = init.meta ?? new Uint8Array(0)
    if (this.#appMeta.byteLength > this.settings.metaBytesMax) { throw new RangeError(`membership: meta of ${this.#appMeta.byteLength} bytes exceeds metaBytesMax ${this.settings.metaBytesMax}`) }
    this.#metrics = membershipMetrics(init.registry ?? new Registry())
  }

  async start (): Promise<void> {
    const { settings } = this
    const seed = randomBytes(4).readUInt32LE(0)
    const core = this.#core = new MembershipNode({
      ...this.#init.core,
      id: this.#host.peerId.toString(),
      meta: this.#envelope(),
      metaBytesMax: settings.metaBytesMax + ENVELOPE_BYTES_MAX
    }, createRng(seed))
    const frameBytesMax = (this.#init.core?.messageBytesMax ?? MEMBERSHIP_DEFAULTS.messageBytesMax) + FRAME_SLACK_BYTES
    const admission = this.#components.admission
    await this.#host.handle(SWIM_PROTOCOL, admission.gate(SWIM_PROTOCOL, async (stream, connection) => {
      await this.#receive(stream, connection, frameBytesMax)
    }), { maxInboundStreams: 32, maxOutboundStreams: 32 })
    this.#timer = setInterval(() => { this.#tick() }, settings.tickMs)
    // every admitted peer runs membership too: join through the first ones
    this.#stopAdmissionWatch = admission.onAdmitted(peer => { this.#joinThrough([peer]) })
    this.#joinThrough(admission.admittedPeers())
    this.#metrics.observe(() => core.status())
  }

  /** Once libp2p listens: our addresses go into our envelope. */
  afterStart (): void {
    this.#refreshEnvelope()
    this.#host.addEventListener('self:peer:update', this.#refreshEnvelope)
  }

  /** Our listen addresses changed: a new alive update carries them (only when they did). */
  readonly #refreshEnvelope = (): void => {
    const core = this.#core
    if (core == null) { return }
    const envelope = this.#envelope()
    if (bytesEqual(core.member(this.#host.peerId.toString())?.meta ?? new Uint8Array(0), envelope)) { return }
    core.setMeta(envelope)
    this.#flush()
  }

  /** Leave gracefully (the news goes out for at most leaveTimeoutMs), then stop. */
  async stop (): Promise<void> {
    const core = this.#core
    if (core == null) { return }
    this.#stopAdmissionWatch?.()
    if (core.status().liveMembers > 1) {
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, this.settings.leaveTimeoutMs)
        this.#leaveDone = () => { clearTimeout(timer); resolve() }
        core.leave()
        this.#flush()
      })
    }
    clearInterval(this.#timer)
    this.#host.removeEventListener('self:peer:update', this.#refreshEnvelope)
    this.#pings.clear()
    this.#core = undefined
    await this.#host.unhandle(SWIM_PROTOCOL).catch(() => {})
  }

  /** Every member known, this node included; dead and left ones until the core forgets them. */
  members (): Member[] {
    return (this.#core?.members() ?? []).map(m => this.#member(m))
  }

  /** The state of `peerId` in this node's view (undefined: unknown). Cheaper than members(). */
  stateOf (peerId: string): Member['state'] | undefined {
    return this.#core?.stateOf(peerId)
  }

  status (): MembershipStatus | null {
    return this.#core?.status() ?? null
  }

  /** Replace this member's app metadata (at most metaBytesMax bytes); it spreads with our next alive update. */
  setMeta (meta: Uint8Array): void {
    if (meta.byteLength > this.settings.metaBytesMax) { throw new RangeError(`meta of ${meta.byteLength} bytes exceeds metaBytesMax ${this.settings.metaBytesMax}`) }
    this.#appMeta = meta.slice()
    const result = this.#core?.setMeta(this.#envelope())
    if (result != null && !result.ok) { throw new Error(`cannot set metadata: ${result.reason}`) }
    this.#flush()
  }

  #joinThrough (peers: string[]): void {
    const core = this.#core
    if (core == null || peers.length === 0) { return }
    // alone (or only with members we believe dead): ask the newcomers for the list
    if (core.status().liveMembers > 1) { return }
    core.join(peers.slice(0, this.#init.core?.seedsMax ?? MEMBERSHIP_DEFAULTS.seedsMax))
    this.#flush()
  }

  #envelope (): Uint8Array {
    const addrs = this.#host.getMultiaddrs().slice(0, this.settings.addressesMax).map(a => a.toString())
    const bytes = encode({ addrs, app: this.#appMeta })
    // addresses that do not fit are left out rather than failing the node
    return bytes.byteLength <= this.settings.metaBytesMax + ENVELOPE_BYTES_MAX ? bytes : encode({ addrs: [], app: this.#appMeta })
  }

  #tick (): void {
    const core = this.#core
    if (core == null) { return }
    core.tick()
    this.#flush()
  }

  /** Send what the core returned and tell listeners what happened. */
  #flush (): void {
    const core = this.#core
    if (core == null || !core.hasReady()) { return }
    const { messages, events } = core.ready()
    for (const message of messages) { this.#send(message) }
    for (const event of events) { this.#report(event) }
  }

  #report (event: MembershipEvent): void {
    if (event.type === 'leave:done') { this.#leaveDone?.(); return }
    if (event.type === 'join:done' || event.type === 'join:failed') {
      this.#log.info({ event }, event.type === 'join:done' ? 'membership: joined' : 'membership: no seed answered')
      return
    }
    this.#metrics.event(event.type)
    const info = this.#core?.member(event.id)
    if (info == null) { return }
    const member = this.#member(info)
    if (event.type === 'member:join' || event.type === 'member:update') { void this.#remember(member) }
    if (event.type === 'member:dead' || event.type === 'member:suspect') {
      this.#log.info({ peer: member.peerId, state: member.state, incarnation: member.incarnation }, `membership: ${event.type.slice(7)}`)
    }
    this.safeDispatchEvent(event.type, { detail: member })
  }

  /** Keep a member's addresses in the peer store, so a member learnt through gossip can be dialled. */
  async #remember (member: Member): Promise<void> {
    if (member.peerId === this.#host.peerId.toString() || member.addresses.length === 0) { return }
    try {
      await this.#host.peerStore.merge(peerIdFromString(member.peerId), { multiaddrs: member.addresses.map(a => multiaddr(a)) })
    } catch (err) {
      this.#log.debug({ peer: member.peerId, err: (err as Error).message }, 'membership: cannot keep a member\'s addresses')
    }
  }

  #member (info: MemberInfo): Member {
    const envelope = openEnvelope(info.meta)
    return { peerId: info.id, state: info.state, incarnation: info.incarnation, meta: envelope.app, addresses: envelope.addrs }
  }

  #send (message: Message): void {
    if (this.#sendsInFlight >= this.settings.sendsInFlightMax) {
      this.#metrics.dropped('sends-full')
      return
    }
    let to: PeerId
    try { to = peerIdFromString(message.to) } catch { this.#metrics.dropped('bad-recipient'); return }
    const target = this.#dialTarget(to, message.to)
    this.#sendsInFlight++
    const bytes = encode(message)
    this.#metrics.sent(message.type, bytes.byteLength)
    if (message.type === 'ping') { this.#timePing(`${message.to} ${message.seq}`) }
    void (async () => {
      const signal = AbortSignal.timeout(this.settings.sendTimeoutMs)
      const stream = await this.#host.dialProtocol(target, SWIM_PROTOCOL, { signal })
      try {
        await lpStream(stream).write(bytes, { signal })
        await stream.close({ signal })
      } catch (err) {
        stream.abort(err as Error)
        throw err
      }
    })().catch(err => {
      this.#metrics.dropped('unreachable')
      this.#log.trace({ to: message.to, type: message.type, err: (err as Error).message }, 'membership: send failed')
    }).finally(() => { this.#sendsInFlight-- })
  }

  /**
   * Where to reach a member: its connection, else the addresses its
   * envelope announced. A dial by peer id alone to a member learnt through
   * gossip, whose addresses the peer store may not hold yet, would look
   * the peer up in the DHT, and any other dial to it would wait on that.
   */
  #dialTarget (peerId: PeerId, id: string): PeerId | Multiaddr[] {
    if (this.#host.getConnections(peerId).length > 0) { return peerId }
    const meta = this.#core?.member(id)?.meta
    const addrs = meta == null ? [] : openEnvelope(meta).addrs.flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
    return addrs.length > 0 ? addrs : peerId
  }

  #timePing (key: string): void {
    if (this.#pings.size >= PINGS_TIMED_MAX) {
      const oldest = this.#pings.keys().next().value
      if (oldest !== undefined) { this.#pings.delete(oldest) }
    }
    this.#pings.set(key, performance.now())
  }

  async #receive (stream: Stream, connection: Connection, frameBytesMax: number): Promise<void> {
    const peer = connection.remotePeer.toString()
    const refusals = this.#components.admission.refusals
    const signal = AbortSignal.timeout(this.settings.sendTimeoutMs)
    let input: unknown
    try {
      const lp = lpStream(stream, { maxDataLength: frameBytesMax, lengthDecoder: boundedLengthDecoder(frameBytesMax) })
      const frame = (await lp.read({ signal })).subarray()
      this.#metrics.received(frame.byteLength)
      input = decodeBoundedCbor(frame)
      await stream.close({ signal })
    } catch (err) {
      refusals.refuse(peer, SWIM_PROTOCOL, 'malformed', { detail: (err as Error).message })
      stream.abort(err as Error)
      return
    }
    const core = this.#core
    if (core == null) { return }
    // Noise authenticated the peer: it speaks only for itself
    if (typeof input !== 'object' || input == null || (input as { from?: unknown }).from !== peer) {
      refusals.refuse(peer, SWIM_PROTOCOL, 'spoofed-sender')
      return
    }
    const result = core.step(input)
    const { type, seq } = input as { type?: unknown, seq?: unknown }
    if (result.ok && type === 'ack') {
      const sentAt = this.#pings.get(`${peer} ${String(seq)}`)
      if (sentAt !== undefined) { this.#pings.delete(`${peer} ${String(seq)}`); this.#metrics.probeRtt(performance.now() - sentAt) }
    }
    if (!result.ok) {
      refusals.refuse(peer, SWIM_PROTOCOL, result.reason, result.detail !== undefined ? { detail: result.detail } : {})
      return
    }
    this.#flush()
  }
}

/** A member's envelope; a malformed one (from a member of another version) reads as no addresses and no metadata. */
function openEnvelope (meta: Uint8Array): Envelope {
  try {
    const decoded = decodeBoundedCbor(meta) as Partial<Envelope> | null
    const addrs = Array.isArray(decoded?.addrs) ? decoded.addrs.filter((a): a is string => typeof a === 'string') : []
    const app = decoded?.app instanceof Uint8Array ? decoded.app : new Uint8Array(0)
    return { addrs, app }
  } catch {
    return { addrs: [], app: new Uint8Array(0) }
  }
}

/**
 * The membership service: `services: { membership: swimMembership() }`,
 * beside clusterAdmission as `admission`.
 */
export function swimMembership (init: MembershipInit = {}): (components: MembershipComponents) => MembershipService {
  return (components) => new MembershipService(components, init)
}
