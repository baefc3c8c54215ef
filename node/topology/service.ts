/**
 * The topology service: `services: { topology: clusterTopology(init) }`,
 * beside the cluster-metadata store as `metadata`.
 *
 * Every `intervalMs` it makes this node's topology report (report.ts) and,
 * when the report changed, sets it as this node's value of the key
 * `accord.topology` in the store, which spreads it to every member. view() merges
 * the reports of every node found in the store (view.ts): no protocol of
 * its own, so nothing new to attack. A report read from the store is
 * remote input: a bad one is skipped, logged and counted, never fatal.
 *
 * It reads kad-dht as `dht` and gossipsub as `pubsub` when the node runs
 * them (their names in js-libp2p's examples); without them the report's
 * DHT buckets and mesh are empty.
 */
import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { Counter, Registry } from 'prom-client'
import { bytesEqual } from '../../protocols/membership/membership-node.ts'
import { hostFromComponents, optionalService } from '../host.ts'
import { silentLogger } from '../logger.ts'
import { METADATA_CAPABILITY } from '../metadata/service.ts'
import { encodeReport } from './codec.ts'
import { collectReport } from './report.ts'
import { ReportReader } from './view.ts'
import type { ReportRejectReason } from './codec.ts'
import type { TopologyReport } from './report.ts'
import type { TopologyGraph } from './view.ts'
import type { AccordHost, HostComponents } from '../host.ts'
import type { ClusterMetadataService } from '../metadata/service.ts'
import type { Startable } from '@libp2p/interface'
import type { Logger } from 'pino'

/** The key of each node's report in the cluster-metadata store. */
export const TOPOLOGY_KEY = 'accord.topology'
export const TOPOLOGY_CAPABILITY = '@accord/topology'

export interface TopologySettings {
  /** How often this node's report is made again (and set in the store if it changed). */
  intervalMs: number
  /** Reports merged into one view, at most (this node's first, then by peer id). */
  reportsMax: number
}

export const TOPOLOGY_SETTINGS_DEFAULTS: Readonly<TopologySettings> = {
  intervalMs: 5_000,
  reportsMax: 1024
}

export interface TopologyInit {
  settings?: Partial<TopologySettings>
  /** Where the topology metrics are registered (default: a registry of its own). */
  registry?: Registry
  log?: Logger
}

export interface TopologyComponents extends HostComponents {
  metadata: Pick<ClusterMetadataService, 'set' | 'get' | 'entries'>
  /** kad-dht, if the node runs it. */
  dht?: unknown
  /** gossipsub, if the node runs it. */
  pubsub?: unknown
}

export class TopologyService implements Startable {
  readonly settings: TopologySettings
  readonly #components: TopologyComponents
  readonly #host: AccordHost
  readonly #log: Logger
  readonly #reader: ReportReader
  readonly #published: Counter
  #timer: ReturnType<typeof setInterval> | undefined
  /** The last report set in the store: its bytes, and its content without its time (what "changed" compares). */
  #lastPublished: { content: string, bytes: Uint8Array } | undefined

  readonly [Symbol.toStringTag] = TOPOLOGY_CAPABILITY
  readonly [serviceCapabilities]: string[] = [TOPOLOGY_CAPABILITY]
  readonly [serviceDependencies]: string[] = [METADATA_CAPABILITY]

  constructor (components: TopologyComponents, init: TopologyInit = {}) {
    this.#components = components
    this.#host = hostFromComponents(components)
    this.#log = init.log ?? silentLogger()
    this.settings = { ...TOPOLOGY_SETTINGS_DEFAULTS, ...init.settings }
    const registers = [init.registry ?? new Registry()]
    this.#published = new Counter({ name: 'accord_topology_reports_published_total', help: 'Topology reports of this node set in the cluster-metadata store (one per change)', registers })
    const rejected = new Counter({ name: 'accord_topology_reports_rejected_total', help: 'Topology reports read from the store and skipped: oversize, malformed, version, invalid, too-many', labelNames: ['reason'], registers })
    this.#reader = new ReportReader({
      reportsMax: this.settings.reportsMax,
      onReject: (peerId, reason, error) => {
        rejected.inc({ reason })
        this.#log.debug({ peer: peerId, reason, error }, 'topology: report skipped')
      }
    })
  }

  start (): void {
    this.#timer = setInterval(() => { this.#tick() }, this.settings.intervalMs)
  }

  /** Once every service runs (the store included): the first report. */
  afterStart (): void {
    this.#tick()
  }

  stop (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
    this.#lastPublished = undefined
  }

  /** This node's report as it would be made now. */
  localReport (): TopologyReport {
    return collectReport({
      connections: this.#host.getConnections(),
      dht: optionalService(() => this.#components.dht),
      pubsub: optionalService(() => this.#components.pubsub)
    }, Date.now())
  }

  /** The overlay as every node's report in the store tells it. */
  view (): TopologyGraph {
    return this.#reader.view(this.#host.peerId.toString(), this.#components.metadata.entries(TOPOLOGY_KEY))
  }

  /** Reports skipped since start, by reason (each stored version counted once). */
  rejectedReports (): Record<ReportRejectReason, number> {
    return { ...this.#reader.rejected }
  }

  #tick (): void {
    try {
      this.#publish()
      // read what arrived, so bad reports are counted even when nobody asks for the view
      this.#reader.refresh(this.#host.peerId.toString(), this.#components.metadata.entries(TOPOLOGY_KEY))
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'topology: cannot publish this node\'s report')
    }
  }

  /** Set this node's report in the store if it changed, or if the store no longer holds what we set (someone wrote the key). */
  #publish (): void {
    const report = this.localReport()
    const content = JSON.stringify({ ...report, reportedAt: 0 })
    const { metadata } = this.#components
    const last = this.#lastPublished
    const stored = metadata.get(this.#host.peerId.toString(), TOPOLOGY_KEY)
    if (last?.content === content && stored !== undefined && bytesEqual(stored, last.bytes)) { return }
    const bytes = encodeReport(report)
    metadata.set(TOPOLOGY_KEY, bytes)
    this.#lastPublished = { content, bytes }
    this.#published.inc()
  }
}

/**
 * The topology service: `services: { topology: clusterTopology() }`, beside
 * the cluster-metadata store as `metadata` (and kad-dht as `dht`, gossipsub
 * as `pubsub`, when the node runs them).
 */
export function clusterTopology (init: TopologyInit = {}): (components: TopologyComponents) => TopologyService {
  return (components) => new TopologyService(components, init)
}
