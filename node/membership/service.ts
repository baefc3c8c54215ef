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
 *
 * With a gossipsub service in the node as `pubsub` (StrictSign), the news
 * this member originates also goes out on `accord/<cluster>/membership/1`,
 * and the topic's messages are validated and applied (gossip.ts). Without
 * one, SWIM's piggybacking alone spreads the news.
 */
import { randomBytes } from 'node:crypto'
import { serviceCapabilities, serviceDependencies, TypedEventEmitter } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { encode } from 'cborg'
import { Registry } from 'prom-client'
import { createRng } from '../../protocols/common/rng.ts'
import { aliveUpdateBytesMax, ID_LENGTH_MAX, MEMBERSHIP_DEFAULTS, MembershipNode } from '../../protocols/membership/index.ts'
import { bytesEqual } from '../../protocols/membership/membership-node.ts'
import { DatagramChannel } from '../datagram.ts'
import { gossipMetrics } from '../gossip-metrics.ts'
import { hostFromComponents, optionalService } from '../host.ts'
import { silentLogger } from '../logger.ts'
import { decodeBoundedCbor } from '../raft/codec.ts'
import { MembershipGossip } from './gossip.ts'
import { membershipMetrics } from './metrics.ts'
import { membershipTopic } from './topic.ts'
import type { MembershipMetrics } from './metrics.ts'
import type { MemberInfo, MembershipConfig, MembershipEvent, MembershipStatus, Message } from '../../protocols/membership/index.ts'
import type { Admission } from '../admission/admission.ts'
import type { AccordHost, HostComponents } from '../host.ts'
import type { GossipSub } from '@libp2p/gossipsub'
import type { Startable } from '@libp2p/interface'
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

/** The largest SWIM frame (and gossip message) read, for a core whose messageBytesMax is `messageBytesMax`. */
export function swimFrameBytesMax (messageBytesMax: number = MEMBERSHIP_DEFAULTS.messageBytesMax): number {
  return messageBytesMax + FRAME_SLACK_BYTES
}
/** Updates per message on the gossip topic, by the core's byte model (at least one largest alive update). */
const GOSSIP_BATCH_BYTES = 16 * 1024

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
  /** Optional: gossipsub (StrictSign) as `pubsub`; membership news then spreads on its topic too. */
  pubsub?: GossipSub
}

/** The core's status, and the gossip topic in use (null: no gossipsub in the node). */
export type MembershipServiceStatus = MembershipStatus & { gossipTopic: string | null }

interface Envelope { addrs: string[], app: Uint8Array }

export class MembershipService extends TypedEventEmitter<MembershipEvents> implements Startable {
  readonly settings: MembershipSettings
  readonly #components: MembershipComponents
  readonly #host: AccordHost
  readonly #init: MembershipInit
  readonly #log: Logger
  readonly #metrics: MembershipMetrics
  readonly #registry: Registry
  #core: MembershipNode | undefined
  #gossip: MembershipGossip | undefined
  #leaving: Promise<void> | undefined
  #appMeta: Uint8Array
  #timer: ReturnType<typeof setInterval> | undefined
  #channel: DatagramChannel<Message> | undefined
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
    this.#registry = init.registry ?? new Registry()
    this.#metrics = membershipMetrics(this.#registry)
  }

  async start (): Promise<void> {
    const { settings } = this
    this.#leaving = undefined
    const seed = randomBytes(4).readUInt32LE(0)
    const core = this.#core = new MembershipNode({
      ...this.#init.core,
      id: this.#host.peerId.toString(),
      meta: this.#envelope(),
      metaBytesMax: settings.metaBytesMax + ENVELOPE_BYTES_MAX
    }, createRng(seed))
    const frameBytesMax = swimFrameBytesMax(this.#init.core?.messageBytesMax)
    const admission = this.#components.admission
    this.#gossip = this.#createGossip(frameBytesMax)
    const channel = this.#channel = new DatagramChannel<Message>({
      host: this.#host,
      admission,
      protocol: SWIM_PROTOCOL,
      frameBytesMax,
      sendsInFlightMax: settings.sendsInFlightMax,
      timeoutMs: settings.sendTimeoutMs,
      streamsMax: 32,
      counters: this.#metrics,
      deliver: (message, peer) => this.#deliver(core, message, peer),
      addressesOf: (id) => this.addressesOf(id),
      log: this.#log
    })
    await channel.start()
    this.#timer = setInterval(() => { this.#tick() }, settings.tickMs)
    // every admitted peer runs membership too: join through the first ones
    this.#stopAdmissionWatch = admission.onAdmitted(peer => { this.#joinThrough([peer]) })
    this.#joinThrough(admission.admittedPeers())
    this.#metrics.observe(() => core.status())
  }

  /** Once libp2p listens: our addresses go into our envelope, and (gossipsub has started) we join the topic. */
  afterStart (): void {
    this.#refreshEnvelope()
    this.#host.addEventListener('self:peer:update', this.#refreshEnvelope)
    try {
      this.#gossip?.start()
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'membership: cannot use the gossip topic; news spreads by SWIM alone')
      this.#gossip = undefined
    }
  }

  /** gossipsub as `pubsub`, when the node has it and it signs (the validator reads the signed author). */
  #createGossip (frameBytesMax: number): MembershipGossip | undefined {
    const pubsub = optionalPubsub(this.#components)
    if (pubsub == null) { return undefined }
    if (pubsub.globalSignaturePolicy !== 'StrictSign') {
      this.#log.warn('membership: gossipsub does not sign messages (StrictSign): the gossip topic is not used')
      return undefined
    }
    const admission = this.#components.admission
    return new MembershipGossip({
      pubsub,
      topic: membershipTopic(admission.cluster),
      self: this.#host.peerId.toString(),
      admission,
      messageBytesMax: frameBytesMax,
      batchBytesMax: Math.max(GOSSIP_BATCH_BYTES, aliveUpdateBytesMax(ID_LENGTH_MAX, this.settings.metaBytesMax + ENVELOPE_BYTES_MAX)),
      core: () => this.#core,
      afterInput: () => { this.#flush() },
      metrics: this.#metrics,
      bytes: gossipMetrics(this.#registry),
      log: this.#log
    })
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

  /** Leave gracefully before libp2p stops anything, so the news goes out by SWIM and on the topic. */
  async beforeStop (): Promise<void> {
    await this.#leave()
  }

  /** Leave (if beforeStop did not), then stop. */
  async stop (): Promise<void> {
    const core = this.#core
    if (core == null) { return }
    await this.#leave()
    this.#gossip?.stop()
    this.#gossip = undefined
    clearInterval(this.#timer)
    this.#host.removeEventListener('self:peer:update', this.#refreshEnvelope)
    this.#pings.clear()
    this.#core = undefined
    await this.#channel?.stop()
    this.#channel = undefined
  }

  /** Every member known, this node included; dead and left ones until the core forgets them. */
  members (): Member[] {
    return (this.#core?.members() ?? []).map(m => this.#member(m))
  }

  /** Every member's id and state, this node included (no envelope opened: cheaper than members()). */
  memberStates (): Array<{ peerId: string, state: Member['state'] }> {
    return (this.#core?.members() ?? []).map(m => ({ peerId: m.id, state: m.state }))
  }

  /** The listen addresses `peerId` announced, as far as this node knows (cheaper than members()). */
  addressesOf (peerId: string): string[] {
    const meta = this.#core?.member(peerId)?.meta
    return meta == null ? [] : openEnvelope(meta).addrs
  }

  /** The state of `peerId` in this node's view (undefined: unknown). Cheaper than members(). */
  stateOf (peerId: string): Member['state'] | undefined {
    return this.#core?.stateOf(peerId)
  }

  /** The core's counters (refutations among them), health and queues, and the gossip topic. */
  status (): MembershipServiceStatus | null {
    const status = this.#core?.status()
    return status == null ? null : { ...status, gossipTopic: this.#gossip?.topic ?? null }
  }

  /** Leave gracefully: the news goes out for at most leaveTimeoutMs. Once. */
  async #leave (): Promise<void> {
    this.#leaving ??= (async () => {
      const core = this.#core
      if (core == null) { return }
      this.#stopAdmissionWatch?.()
      if (core.status().liveMembers <= 1) { return }
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, this.settings.leaveTimeoutMs)
        this.#leaveDone = () => { clearTimeout(timer); resolve() }
        core.leave()
        this.#flush()
      })
    })()
    await this.#leaving
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
    const { messages, events, publish } = core.ready()
    for (const message of messages) { this.#send(message) }
    if (publish.length > 0) { this.#gossip?.publish(publish) }
    for (const event of events) { this.#report(event) }
  }

  #report (event: MembershipEvent): void {
    if (event.type === 'leave:done') { this.#leaveDone?.(); return }
    if (event.type === 'join:done' || event.type === 'join:failed') {
      this.#log.info({ event }, event.type === 'join:done' ? 'membership: joined' : 'membership: no seed answered')
      return
    }
    this.#metrics.event(event.type)
    if (event.type === 'member:alive' && event.id === this.#host.peerId.toString()) { this.#metrics.refuted() }
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
    if (message.type === 'ping') { this.#timePing(`${message.to} ${message.seq}`) }
    this.#channel?.send(message)
  }

  #timePing (key: string): void {
    if (this.#pings.size >= PINGS_TIMED_MAX) {
      const oldest = this.#pings.keys().next().value
      if (oldest !== undefined) { this.#pings.delete(oldest) }
    }
    this.#pings.set(key, performance.now())
  }

  /** A message from `peer` (admitted, and the sender it names): to the core, and an ack's round trip timed. */
  #deliver (core: MembershipNode, input: unknown, peer: string): ReturnType<MembershipNode['step']> {
    if (this.#core !== core) { return { ok: true } }
    const result = core.step(input)
    if (!result.ok) { return result }
    const { type, seq } = input as { type?: unknown, seq?: unknown }
    if (type === 'ack') {
      const sentAt = this.#pings.get(`${peer} ${String(seq)}`)
      if (sentAt !== undefined) { this.#pings.delete(`${peer} ${String(seq)}`); this.#metrics.probeRtt(performance.now() - sentAt) }
    }
    this.#flush()
    return result
  }
}

/** The node's gossipsub, if it has one as `pubsub` (and it is gossipsub). */
function optionalPubsub (components: MembershipComponents): GossipSub | undefined {
  const pubsub = optionalService<unknown>(() => components.pubsub)
  const p = pubsub as Partial<GossipSub> | undefined
  return typeof p?.subscribe === 'function' && typeof p.publish === 'function' && p.topicValidators instanceof Map ? pubsub as GossipSub : undefined
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
