/**
 * The cluster-metadata store: per-node key/values that every member
 * replicates by Scuttlebutt anti-entropy (protocols/gossip), over
 * `/accord/anti-entropy/1.0.0`. `services: { metadata: clusterMetadata() }`,
 * beside clusterAdmission as `admission` and swimMembership as
 * `membership`.
 *
 * Each node writes only its own keys (set, delete); the others' come in by
 * gossip, signed by their owner (auth.ts), so a member relaying them cannot
 * change them. The peers gossiped with are the members that membership
 * holds alive or suspect; a member membership has forgotten (dead or left
 * past its retention) is forgotten here too. Partitions heal to the same
 * state: once members reach each other again, their digests differ and
 * each round sends what the other lacks.
 *
 * Messages are datagrams (node/datagram.ts): one CBOR frame a stream, best
 * effort, gated by admission, the sender the authenticated peer.
 */
import { randomBytes } from 'node:crypto'
import { serviceCapabilities, serviceDependencies, TypedEventEmitter } from '@libp2p/interface'
import { Registry } from 'prom-client'
import { createRng } from '../../protocols/common/rng.ts'
import { ANTI_ENTROPY_DEFAULTS, AntiEntropyNode } from '../../protocols/gossip/index.ts'
import { DatagramChannel } from '../datagram.ts'
import { hostFromComponents } from '../host.ts'
import { silentLogger } from '../logger.ts'
import { peerEntryAuth } from './auth.ts'
import { metadataMetrics } from './metrics.ts'
import type { MetadataMetrics } from './metrics.ts'
import type { AntiEntropyConfigInit, AntiEntropyStatus, GossipEvent, GossipMessage } from '../../protocols/gossip/index.ts'
import type { Admission } from '../admission/admission.ts'
import type { DatagramChannelInit } from '../datagram.ts'
import type { AccordHost, HostComponents } from '../host.ts'
import type { MembershipService } from '../membership/service.ts'
import type { PrivateKey, Startable } from '@libp2p/interface'
import type { Logger } from 'pino'

export const ANTI_ENTROPY_PROTOCOL = '/accord/anti-entropy/1.0.0'
export const METADATA_CAPABILITY = '@accord/metadata'
/** Keys of accord's own services (the topology report); the HTTP API does not write them. */
export const METADATA_RESERVED_KEY_PREFIX = 'accord.'

export interface MetadataSettings {
  /** The driver's clock: the core advances one tick this often. */
  tickMs: number
  /** Messages being sent at once; beyond, a message is dropped (the next round makes up for it) and counted. */
  sendsInFlightMax: number
  /** A send or receive that takes longer is abandoned. */
  sendTimeoutMs: number
  /** How often the peers are read from membership again, besides at every membership event. */
  peersRefreshMs: number
}

export const METADATA_SETTINGS_DEFAULTS: Readonly<MetadataSettings> = {
  tickMs: 100,
  sendsInFlightMax: 128,
  sendTimeoutMs: 2_000,
  peersRefreshMs: 5_000
}

/** A frame holds one message: the core's largest plus CBOR framing. */
const FRAME_SLACK_BYTES = 4096

/** The largest anti-entropy frame a node reads, for a core whose messages are at most `messageBytesMax`. */
export function antiEntropyFrameBytesMax (messageBytesMax: number = ANTI_ENTROPY_DEFAULTS.messageBytesMax): number {
  return messageBytesMax + FRAME_SLACK_BYTES
}

export interface MetadataInit {
  settings?: Partial<MetadataSettings>
  /** The core's settings (mode, fanout, interval bounds in ticks, limits). */
  core?: Partial<Omit<AntiEntropyConfigInit, 'id' | 'auth'>>
  /** Where the metrics are registered (default: a registry of its own). */
  registry?: Registry
  log?: Logger
}

export interface MetadataUpdate {
  peerId: string
  key: string
  version: number
  deleted: boolean
}

export interface MetadataEvents {
  'metadata:update': CustomEvent<MetadataUpdate>
}

export interface MetadataEntry {
  peerId: string
  value: Uint8Array
  version: number
}

export interface MetadataComponents extends HostComponents {
  privateKey: PrivateKey
  admission: Admission
  membership: MembershipService
}

/** What status() reports: the core's, with the round interval in milliseconds. */
export interface MetadataStatus extends AntiEntropyStatus {
  intervalMs: number
}

export class ClusterMetadataService extends TypedEventEmitter<MetadataEvents> implements Startable {
  readonly settings: MetadataSettings
  readonly #components: MetadataComponents
  readonly #host: AccordHost
  readonly #init: MetadataInit
  readonly #log: Logger
  readonly #metrics: MetadataMetrics
  #core: AntiEntropyNode | undefined
  #channel: DatagramChannel<GossipMessage> | undefined
  #timer: ReturnType<typeof setInterval> | undefined
  #ticksToPeersRefresh = 0
  #peersStale = true
  #starting: Promise<void> | undefined

  readonly [Symbol.toStringTag] = METADATA_CAPABILITY
  readonly [serviceCapabilities]: string[] = [METADATA_CAPABILITY]
  readonly [serviceDependencies]: string[] = ['@accord/admission', '@accord/membership']

  constructor (components: MetadataComponents, init: MetadataInit = {}) {
    super()
    this.#components = components
    this.#host = hostFromComponents(components)
    this.#init = init
    this.#log = init.log ?? silentLogger()
    this.settings = { ...METADATA_SETTINGS_DEFAULTS, ...init.settings }
    this.#metrics = metadataMetrics(init.registry ?? new Registry())
  }

  async start (): Promise<void> {
    this.#starting = this.#start()
    await this.#starting
  }

  async #start (): Promise<void> {
    const core = this.#core = new AntiEntropyNode({
      // Versions start at the wall clock in milliseconds: a restarted node
      // forgot what it published, and starting above it voids all of that
      // (the core writes a floor) instead of reusing versions others hold
      // with other values. Each write adds one, so this holds unless a node
      // wrote more than once a millisecond on average over its previous
      // life; should it not, the core still raises itself above any of its
      // own entries it meets (the version:raised event).
      initialVersion: Date.now(),
      ...this.#init.core,
      id: this.#host.peerId.toString(),
      auth: peerEntryAuth(this.#components.privateKey)
    }, createRng(randomBytes(4).readUInt32LE(0)))
    const channelInit: DatagramChannelInit = {
      host: this.#host,
      admission: this.#components.admission,
      protocol: ANTI_ENTROPY_PROTOCOL,
      frameBytesMax: antiEntropyFrameBytesMax(this.#init.core?.messageBytesMax),
      sendsInFlightMax: this.settings.sendsInFlightMax,
      timeoutMs: this.settings.sendTimeoutMs,
      streamsMax: 32,
      counters: this.#metrics,
      deliver: (message) => {
        const result = core.step(message)
        if (result.ok) { this.#flush() }
        return result
      },
      addressesOf: (id) => this.#components.membership.addressesOf(id),
      log: this.#log
    }
    const channel = this.#channel = new DatagramChannel<GossipMessage>(channelInit)
    await channel.start()
    this.#metrics.observe(() => core.status(), this.settings.tickMs)
    for (const type of MEMBERSHIP_CHANGES) { this.#components.membership.addEventListener(type, this.#onMembershipChange) }
    this.#timer = setInterval(() => { this.#tick() }, this.settings.tickMs)
  }

  async stop (): Promise<void> {
    await this.#starting?.catch(() => {})
    clearInterval(this.#timer)
    for (const type of MEMBERSHIP_CHANGES) { this.#components.membership.removeEventListener(type, this.#onMembershipChange) }
    await this.#channel?.stop()
    this.#channel = undefined
    this.#core = undefined
  }

  /**
   * Set this node's own value for `key`; it spreads with the next rounds.
   * Returns the entry's version. Throws RangeError beyond the store's limits.
   */
  set (key: string, value: Uint8Array): number {
    const result = this.#started().set(key, value)
    if (!result.ok) { throw new RangeError(`metadata: cannot set ${JSON.stringify(key.slice(0, 64))}: ${result.reason}`) }
    this.#flush()
    return result.version
  }

  /** Delete this node's own value for `key` (the deletion spreads as a tombstone); returns the tombstone's version. */
  delete (key: string): number {
    const result = this.#started().delete(key)
    if (!result.ok) { throw new RangeError(`metadata: cannot delete ${JSON.stringify(key.slice(0, 64))}: ${result.reason}`) }
    this.#flush()
    return result.version
  }

  /** The longest key (in UTF-16 units) and largest value (in bytes) this store takes. */
  get limits (): { keyLengthMax: number, valueBytesMax: number } {
    const core = this.#init.core
    return {
      keyLengthMax: core?.keyLengthMax ?? ANTI_ENTROPY_DEFAULTS.keyLengthMax,
      valueBytesMax: core?.valueBytesMax ?? ANTI_ENTROPY_DEFAULTS.valueBytesMax
    }
  }

  /** `peerId`'s value for `key`, as far as this node knows. */
  get (peerId: string, key: string): Uint8Array | undefined {
    return this.#core?.get(peerId, key)
  }

  /** Every node's current value for `key`, this node's included. */
  entries (key: string): MetadataEntry[] {
    const core = this.#core
    if (core == null) { return [] }
    const found: MetadataEntry[] = []
    for (const node of core.nodes()) {
      const entry = core.entriesOf(node).find(e => e.key === key)
      if (entry !== undefined) { found.push({ peerId: node, value: entry.value, version: entry.version }) }
    }
    return found
  }

  /** Every node's live entries, by node. */
  nodes (): Array<{ peerId: string, entries: Array<{ key: string, value: Uint8Array, version: number }> }> {
    const core = this.#core
    if (core == null) { return [] }
    return core.nodes().map(node => ({ peerId: node, entries: core.entriesOf(node) }))
  }

  status (): MetadataStatus | null {
    const status = this.#core?.status()
    return status == null ? null : { ...status, intervalMs: status.intervalTicks * this.settings.tickMs }
  }

  #started (): AntiEntropyNode {
    if (this.#core == null) { throw new Error('metadata: the service is not started') }
    return this.#core
  }

  readonly #onMembershipChange = (): void => { this.#peersStale = true }

  #tick (): void {
    const core = this.#core
    if (core == null) { return }
    if (this.#peersStale || --this.#ticksToPeersRefresh <= 0) { this.#refreshPeers(core) }
    core.tick()
    this.#flush()
  }

  /**
   * Gossip with the members membership holds alive or suspect; forget the
   * nodes it no longer lists at all (reaped after their death or leave).
   */
  #refreshPeers (core: AntiEntropyNode): void {
    this.#peersStale = false
    this.#ticksToPeersRefresh = Math.max(1, Math.round(this.settings.peersRefreshMs / this.settings.tickMs))
    const self = this.#host.peerId.toString()
    const membership = this.#components.membership
    core.setPeers(membership.memberStates()
      .filter(m => m.peerId !== self && (m.state === 'alive' || m.state === 'suspect'))
      .map(m => m.peerId))
    for (const node of core.nodes()) {
      if (node !== self && membership.stateOf(node) === undefined) { core.forget(node) }
    }
  }

  #flush (): void {
    const core = this.#core
    if (core == null || !core.hasReady()) { return }
    const { messages, events } = core.ready()
    for (const message of messages) { this.#channel?.send(message) }
    for (const event of events) { this.#report(event) }
  }

  #report (event: GossipEvent): void {
    if (event.type !== 'entry:update') { return }
    this.safeDispatchEvent('metadata:update', { detail: { peerId: event.node, key: event.key, version: event.version, deleted: event.deleted } })
  }
}

const MEMBERSHIP_CHANGES = ['member:join', 'member:alive', 'member:suspect', 'member:dead', 'member:leave'] as const

/**
 * The cluster-metadata store: `services: { metadata: clusterMetadata() }`,
 * beside clusterAdmission as `admission` and swimMembership as `membership`.
 */
export function clusterMetadata (init: MetadataInit = {}): (components: MetadataComponents) => ClusterMetadataService {
  return (components) => new ClusterMetadataService(components, init)
}
