/**
 * N real AntiEntropyNode cores in one process, in virtual time, over the
 * Raft simulator's Scheduler and SimNetwork (loss, duplication, latency,
 * slow paths, partitions): the driver a libp2p service is, with the clock
 * and the network injected. One seeded Rng drives everything, so a run
 * replays exactly from its seed.
 *
 * Beside the network's faults: a node may crash (messages to it are lost,
 * it stops ticking) and restart as a fresh core that forgot its store, and
 * a node may lie: a `tamper` function rewrites its outbound messages
 * (liar.ts).
 *
 * Every signature a node makes is recorded (`signed`): an entry is genuine
 * if and only if its owner signed its payload, which is how the run checks
 * that no forged entry is ever taken.
 */
import { unreachable } from '../../../protocols/common/assert.ts'
import { createRng } from '../../../protocols/common/rng.ts'
import { AntiEntropyNode, entryPayload, gossipMessageBytes } from '../../../protocols/gossip/index.ts'
import { SimNetwork } from '../network.ts'
import { Scheduler } from '../scheduler.ts'
import { Trace } from '../trace.ts'
import { Keyring } from './keyring.ts'
import type { SignatureKind } from './keyring.ts'
import type { Rng } from '../../../protocols/common/rng.ts'
import type { AntiEntropyConfigInit, DigestPage, Entry, EntryAuth, GossipEvent, GossipMessage, NodeId } from '../../../protocols/gossip/index.ts'
import type { Message as RaftMessage } from '../../../protocols/raft/index.ts'
import type { NetworkFaults } from '../options.ts'

export type NodeConfig = Omit<AntiEntropyConfigInit, 'id' | 'auth'>

/** Rewrites a liar's outbound message (or returns it as it is). */
export type Tamper = (message: GossipMessage, rng: Rng) => GossipMessage

export interface GossipClusterOptions {
  seed: number
  /** Virtual milliseconds per tick() (20: the default 10-tick interval is 200 ms). */
  tickMs: number
  network: NetworkFaults
  /** Settings every core gets. */
  config?: NodeConfig
  signatures?: SignatureKind
  /** Record every signature's payload, for isGenuine() (the benchmark turns it off). */
  recordSignatures?: boolean
  fullTrace?: boolean
  traceLines?: number
  /** Run checkInvariants() (O(entries)) on every core after every input. */
  deepChecks?: boolean
  /** Sabotage (the spec's teeth): every signature verifies. */
  acceptForgeries?: boolean
}

export interface SimNode {
  readonly id: NodeId
  core: AntiEntropyNode
  up: boolean
  tamper: Tamper | null
  bytesSent: number
  messagesSent: number
}

export type EventObserver = (observer: NodeId, event: GossipEvent, timeMs: number) => void

export class GossipCluster {
  readonly options: GossipClusterOptions
  readonly scheduler = new Scheduler()
  readonly rng: Rng
  readonly trace: Trace
  readonly keyring: Keyring
  readonly nodes = new Map<NodeId, SimNode>()
  readonly stats = { messages: 0, bytes: 0, rejected: 0, rejectReasons: new Map<string, number>(), tampered: 0 }
  private readonly network: SimNetwork
  private readonly coreRng: Rng
  private readonly liarRng: Rng
  private readonly observers: EventObserver[] = []
  /** "signer payload" of every signature made: the ledger of genuine entries. */
  private readonly signed = new Set<string>()
  private ticking = false

  constructor (options: GossipClusterOptions) {
    this.options = options
    this.rng = createRng(options.seed)
    this.keyring = new Keyring(options.seed, options.signatures ?? 'hmac')
    this.trace = new Trace(() => this.scheduler.now, options.traceLines ?? 200, options.fullTrace === true)
    // SimNetwork is typed for Raft messages but reads only `from` and `to`
    // (and hands the message back): the casts are the whole adapter, as in
    // test/sim/membership/cluster.ts. Its own trace would print Raft
    // fields, so it gets one nobody reads.
    this.network = new SimNetwork(this.rng.fork(), options.network, this.scheduler, new Trace(() => 0, 1, false), {
      deliver: (message) => this.deliver(message as unknown as GossipMessage),
      settled: () => {}
    })
    this.coreRng = this.rng.fork()
    this.liarRng = this.rng.fork()
  }

  get now (): number {
    return this.scheduler.now
  }

  setNetworkFaults (faults: NetworkFaults): void {
    this.network.faults = faults
  }

  onEvent (observer: EventObserver): void {
    this.observers.push(observer)
  }

  /** Starts a node; `tamper`: it lies (see liar.ts). */
  addNode (id: NodeId, init: { config?: NodeConfig, tamper?: Tamper } = {}): SimNode {
    if (this.nodes.has(id)) { throw new Error(`sim: node ${id} exists`) }
    const node: SimNode = { id, core: this.newCore(id, init.config), up: true, tamper: init.tamper ?? null, bytesSent: 0, messagesSent: 0 }
    this.nodes.set(id, node)
    this.trace.add(`start ${id}${node.tamper === null ? '' : ' (liar)'}`)
    this.startTicking()
    return node
  }

  /** Every node gossips with every other (membership's view of a stable cluster). */
  connectAll (): void {
    const ids = [...this.nodes.keys()]
    for (const node of this.nodes.values()) { node.core.setPeers(ids) }
  }

  crash (id: NodeId): void {
    this.get(id).up = false
    this.trace.add(`crash ${id}`)
  }

  /** A fresh core under the same id, its store forgotten; `initialVersion`: what it persisted. */
  restart (id: NodeId, initialVersion: number): void {
    const node = this.get(id)
    node.core = this.newCore(id, { initialVersion })
    node.core.setPeers([...this.nodes.keys()])
    node.up = true
    this.trace.add(`restart ${id} at version ${initialVersion}`)
    this.flush(node)
  }

  write (id: NodeId, key: string, value: Uint8Array | null): void {
    const node = this.get(id)
    const result = value === null ? node.core.delete(key) : node.core.set(key, value)
    this.trace.add(`${id}: ${value === null ? 'delete' : 'set'} ${key}${value === null ? '' : ` (${value.byteLength} B)`} -> ${result.ok ? `@${result.version}` : result.reason}`)
    this.afterInput(node)
  }

  partition (groups: NodeId[][]): void {
    this.trace.add(`partition ${groups.map(g => `[${g.join(' ')}]`).join(' ')}`)
    this.network.partition(groups)
  }

  heal (): void {
    this.trace.add('heal')
    this.network.heal()
  }

  run (untilMs: number, stop?: () => boolean): void {
    this.scheduler.runUntil(untilMs, stop)
  }

  get (id: NodeId): SimNode {
    const node = this.nodes.get(id)
    if (node === undefined) { throw new Error(`sim: no node ${id}`) }
    return node
  }

  /** Whether `entry`'s owner signed exactly it (needs recordSignatures). */
  isGenuine (entry: Entry): boolean {
    return this.signed.has(`${entry.node} ${payloadKey(entryPayload(entry.node, entry.key, entry.value, entry.version))}`)
  }

  private newCore (id: NodeId, config: NodeConfig = {}): AntiEntropyNode {
    return new AntiEntropyNode({ ...this.options.config, ...config, id, auth: this.recordingAuth(id) }, this.coreRng.fork())
  }

  private recordingAuth (id: NodeId): EntryAuth {
    const auth = this.keyring.authFor(id)
    const verify = this.options.acceptForgeries === true ? () => true : auth.verify
    if (this.options.recordSignatures === false) { return { sign: auth.sign, verify } }
    return {
      sign: (payload) => {
        this.signed.add(`${id} ${payloadKey(payload)}`)
        return auth.sign(payload)
      },
      verify
    }
  }

  private startTicking (): void {
    if (this.ticking) { return }
    this.ticking = true
    const tick = (): void => {
      for (const node of this.nodes.values()) {
        if (!node.up) { continue }
        node.core.tick()
        this.afterInput(node)
      }
      this.scheduler.after(this.options.tickMs, tick)
    }
    this.scheduler.after(this.options.tickMs, tick)
  }

  private deliver (message: GossipMessage): 'delivered' | 'lost' {
    const node = this.nodes.get(message.to)
    if (node === undefined || !node.up) { return 'lost' }
    if (this.trace.full !== null) { this.trace.add(`recv ${describe(message)}`) }
    const result = node.core.step(message)
    if (!result.ok) {
      this.stats.rejected++
      this.stats.rejectReasons.set(result.reason, (this.stats.rejectReasons.get(result.reason) ?? 0) + 1)
      this.trace.add(`${node.id} refused ${describe(message)}: ${result.reason}`)
    }
    this.afterInput(node)
    return 'delivered'
  }

  private afterInput (node: SimNode): void {
    if (this.options.deepChecks === true) { node.core.checkInvariants() }
    this.flush(node)
  }

  private flush (node: SimNode): void {
    if (!node.core.hasReady()) { return }
    const { messages, events } = node.core.ready()
    for (const sent of messages) {
      const message = node.tamper === null ? sent : node.tamper(sent, this.liarRng)
      if (message !== sent) {
        this.stats.tampered++
        this.trace.add(`${node.id} tampers with ${describe(sent)}`)
      }
      const bytes = gossipMessageBytes(message)
      node.bytesSent += bytes
      node.messagesSent++
      this.stats.messages++
      this.stats.bytes += bytes
      if (this.trace.full !== null) { this.trace.add(`send ${describe(message)}`) }
      this.network.send(message as unknown as RaftMessage)
    }
    for (const event of events) {
      if (this.trace.full !== null) { this.trace.add(`${node.id}: ${describeEvent(event)}`) }
      for (const observer of this.observers) { observer(node.id, event, this.scheduler.now) }
    }
  }
}

function payloadKey (payload: Uint8Array): string {
  return Buffer.from(payload).toString('base64')
}

export function describe (m: GossipMessage): string {
  switch (m.type) {
    case 'digest': return `digest ${m.from}->${m.to} want=${m.want} ${describePage(m.page)}`
    case 'delta': {
      const deltas = m.deltas.map(d => `${d.node}>${d.after}:[${d.entries.map(e => `${e.key === '' ? '<floor>' : e.key}@${e.version}`).join(' ')}]`)
      return `delta ${m.from}->${m.to} ${deltas.join(' ')}${m.page === null ? '' : ` ${describePage(m.page)}`}`
    }
    default: return unreachable(m)
  }
}

function describePage (page: DigestPage): string {
  return `page(${page.after ?? '-'},${page.until ?? '-'}] ${page.versions.map(v => `${v.node}@${v.version}`).join(' ')}`
}

export function describeEvent (e: GossipEvent): string {
  switch (e.type) {
    case 'entry:update': return `${e.deleted ? 'deleted' : 'updated'} ${e.node}/${e.key}@${e.version}`
    case 'version:raised': return `version raised above ${e.seen} to ${e.version}`
    default: return unreachable(e)
  }
}
