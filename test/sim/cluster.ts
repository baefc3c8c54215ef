/**
 * The simulated cluster: nodes (each the production RaftDriver, see
 * node.ts), their disks, the network between them, the clients, the
 * invariant checker and the event trace, all driven by one scheduler in
 * virtual time and one seeded generator.
 */
import { RaftPeerFilter } from '../../node/raft/peer-filter.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { SimClient } from './clients.ts'
import { SimDisk } from './disk.ts'
import { InvariantChecker } from './invariants.ts'
import { SimNetwork } from './network.ts'
import { SimNode } from './node.ts'
import { runUntilAsync } from './runtime.ts'
import { Scheduler } from './scheduler.ts'
import { describeMessage, Trace } from './trace.ts'
import type { ClientRequest, ClientResponse } from './clients.ts'
import type { DeliveryOutcome } from './network.ts'
import type { NodeEnv } from './node.ts'
import type { SimOptions } from './options.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { ConfState, Message, NodeId, RaftStatus } from '../../protocols/raft/index.ts'
import type { KvOperation } from '../lib/linearizability.ts'

/** Trace lines kept for failure reports. */
const TRACE_LINES_KEPT = 200
const CLIENT_LATENCY_MS_MAX = 4

export class SimulationFailure extends Error {
  override name = 'SimulationFailure'
}

export class SimCluster {
  readonly options: SimOptions
  readonly scheduler = new Scheduler()
  readonly trace: Trace
  readonly checker: InvariantChecker
  readonly network: SimNetwork
  readonly rng: Rng
  readonly nodes = new Map<NodeId, SimNode>()
  readonly disks = new Map<NodeId, SimDisk>()
  /** Removed from the cluster and shut down for good. */
  readonly retired = new Set<NodeId>()
  readonly clients: SimClient[] = []
  readonly history: KvOperation[] = []
  readonly stats = { crashes: 0, restarts: 0, pauses: 0, lostWrites: 0, partitions: 0, transfers: 0, confChanges: 0, notAdmitted: 0, refusedByFilter: 0 }
  /** Each running incarnation's peer filter (see SimOptions.peerFilter). */
  private readonly filters = new Map<NodeId, RaftPeerFilter>()
  private readonly env: NodeEnv
  private readonly clientRng: Rng
  private incarnations = 0
  /** The first error found inside a driver's asynchronous work (see NodeEnv.fail); run() throws it. */
  private failure: { error: unknown } | null = null

  constructor (options: SimOptions) {
    this.options = options
    this.rng = createRng(options.seed)
    this.checker = new InvariantChecker(options.tolerateStaleTermAcks)
    this.trace = new Trace(() => this.scheduler.now, TRACE_LINES_KEPT, options.fullTrace)
    this.network = new SimNetwork(this.rng.fork(), options.network, this.scheduler, this.trace, {
      deliver: (message) => this.deliver(message),
      settled: (message, outcome) => { this.settled(message, outcome) }
    })
    this.clientRng = this.rng.fork()
    this.env = {
      scheduler: this.scheduler,
      trace: this.trace,
      checker: this.checker,
      options,
      send: (message) => { this.network.send(message) },
      reply: (clientId, response) => { this.replyToClient(clientId, response) },
      fail: (error) => { this.failure ??= { error } }
    }
    const voters = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`)
    const conf: ConfState = { voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }
    for (const id of voters) { this.startNode(id, conf) }
  }

  /**
   * Runs events until `stop()` holds or none is due by `untilMs` (see
   * runUntilAsync), and throws the first failure a node reported meanwhile.
   */
  async run (untilMs: number, stop: () => boolean = () => false): Promise<void> {
    await runUntilAsync(this.scheduler, untilMs, () => {
      if (this.failure !== null) { throw this.failure.error }
      return stop()
    })
    if (this.failure !== null) { throw this.failure.error }
  }

  /** Starts a brand-new node (founding with `bootstrap`, or empty to join later). */
  startNode (id: NodeId, bootstrap?: ConfState): void {
    const disk = new SimDisk()
    this.disks.set(id, disk)
    this.launch(id, disk, bootstrap)
  }

  /** `timeoutsMax`: timeouts after which a client gives up an operation (Infinity: never). */
  addClients (count: number, keys: string[], timeoutsMax = 3): SimClient[] {
    const added: SimClient[] = []
    for (let i = 0; i < count; i++) {
      const client = new SimClient(`c${this.clients.length + 1}`, this.clientRng.fork(), {
        scheduler: this.scheduler,
        trace: this.trace,
        servers: () => this.servers(),
        sendRequest: (node, request) => { this.sendRequest(node, request) },
        record: (op) => { this.history.push(op) },
        fail: (message) => { throw new SimulationFailure(message) }
      }, { keys, timeoutMs: this.options.clientTimeoutMs, timeoutsMax, thinkMsMax: 30, readRatio: this.options.readRatio })
      this.clients.push(client)
      added.push(client)
    }
    return added
  }

  isUp (id: NodeId): boolean {
    return this.nodes.get(id)?.alive === true
  }

  /** Nodes that are part of the cluster (up or down), in id order. */
  servers (): NodeId[] {
    return [...this.disks.keys()].filter(id => !this.retired.has(id))
  }

  crash (id: NodeId): void {
    const node = this.nodes.get(id)
    if (node === undefined || !node.alive) { return }
    const lost = node.crash()
    this.stats.crashes++
    this.stats.lostWrites += lost
    this.trace.add(`CRASH ${id} (${lost} unsynced writes lost)`)
  }

  restart (id: NodeId): void {
    const disk = this.disks.get(id)
    if (disk === undefined || this.isUp(id) || this.retired.has(id)) { return }
    this.stats.restarts++
    const { hardState, snapshot, entries } = disk.durable
    this.trace.add(`RESTART ${id} from t${hardState.term} v${hardState.vote ?? '-'} c${hardState.commit} snap ${snapshot?.meta.index ?? 0} last ${entries.at(-1)?.index ?? snapshot?.meta.index ?? 0}`)
    this.launch(id, disk)
  }

  pause (id: NodeId, durationMs: number): void {
    const node = this.nodes.get(id)
    if (node === undefined || !node.alive) { return }
    node.pause(durationMs)
    this.stats.pauses++
    this.trace.add(`PAUSE ${id} for ${durationMs} ms`)
  }

  /** Shuts a removed node down for good. */
  retire (id: NodeId): void {
    this.crash(id)
    this.retired.add(id)
    this.trace.add(`RETIRE ${id}`)
  }

  /** The live leader with the highest term, if any. */
  leader (): { id: NodeId, status: RaftStatus } | null {
    let best: { id: NodeId, status: RaftStatus } | null = null
    for (const [id, node] of this.nodes) {
      if (!node.alive) { continue }
      const status = node.status()
      if (status.role === 'leader' && (best === null || status.term > best.status.term)) { best = { id, status } }
    }
    return best
  }

  node (id: NodeId): SimNode {
    const node = this.nodes.get(id)
    if (node === undefined) { throw new Error(`no node ${id}`) }
    return node
  }

  private launch (id: NodeId, disk: SimDisk, bootstrap?: ConfState): void {
    const skew = this.options.clockSkew * (2 * this.rng.nextFloat() - 1)
    const tickMs = this.options.tickMs * (1 + skew)
    const rng = createRng(this.options.seed * 7919 + ++this.incarnations)
    const node = new SimNode(id, disk, rng, tickMs, this.env, bootstrap)
    this.nodes.set(id, node)
    this.filters.set(id, new RaftPeerFilter({
      state: () => { const s = node.status(); return { conf: s.conf, leader: s.leader, lastIndex: s.lastIndex } }
    }, { refreshMs: this.options.tickMs * 10, now: () => this.scheduler.now }))
  }

  private deliver (message: Message): DeliveryOutcome {
    const node = this.nodes.get(message.to)
    if (node === undefined || !node.alive) {
      this.trace.add(`lost (down) ${describeMessage(message)}`)
      return 'lost'
    }
    // admission: only nodes of the cluster ever got a certificate
    if (!this.disks.has(message.from)) {
      this.stats.notAdmitted++
      this.trace.add(`refused (not admitted) ${describeMessage(message)}`)
      return 'delivered'
    }
    if (this.options.peerFilter && this.filters.get(message.to)?.accepts(message) === false) {
      this.stats.refusedByFilter++
      this.trace.add(`refused (not a member) ${describeMessage(message)}`)
      return 'delivered'
    }
    this.trace.add(`recv ${describeMessage(message)}`)
    node.receive(message)
    return 'delivered'
  }

  /** Like the service layer, tells the sender how a snapshot transfer ended. */
  private settled (message: Message, outcome: DeliveryOutcome): void {
    if (message.type !== 'snapshot') { return }
    const sender = this.nodes.get(message.from)
    if (sender === undefined || !sender.alive) { return }
    sender.reportSnapshot(message.to, outcome === 'delivered' ? 'success' : 'failure')
  }

  /** Client traffic is not partitioned, but is lost as often as node-to-node traffic. */
  private sendRequest (node: NodeId, request: ClientRequest): void {
    if (this.clientRng.chance(this.network.faults.dropRate)) {
      this.trace.add(`drop request of client ${request.clientId} op ${request.opId} to ${node}`)
      return
    }
    this.scheduler.after(this.clientLatencyMs(), () => {
      // The request reaches whatever incarnation runs then; a crashed one never answers.
      const target = this.nodes.get(node)
      if (target?.alive === true) { target.handleRequest(request) }
    })
  }

  private replyToClient (clientId: string, response: ClientResponse): void {
    const client = this.clients.find(c => c.id === clientId)
    if (client === undefined) { throw new Error(`reply to unknown client ${clientId}`) }
    if (this.clientRng.chance(this.network.faults.dropRate)) {
      this.trace.add(`drop ${response.kind} reply to client ${clientId} op ${response.opId}`)
      return
    }
    this.scheduler.after(this.clientLatencyMs(), () => { client.onResponse(response) })
  }

  private clientLatencyMs (): number {
    return this.clientRng.intBetween(1, CLIENT_LATENCY_MS_MAX)
  }
}
