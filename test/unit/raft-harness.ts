/**
 * A tiny synchronous network for RaftNode tests: each node has "disk"
 * (persisted hard state, snapshot, entries) and a state machine (the list of
 * applied payloads as strings). Messages are queued and delivered in FIFO
 * order; a drop predicate models partitions and loss. Nodes can crash and
 * restart from their disk.
 */
import { createRng } from '../../protocols/common/rng.ts'
import { RAFT_DEFAULTS, RaftNode } from '../../protocols/raft/index.ts'
import type { ConfState, Entry, HardState, Message, NodeId, RaftConfigInit, Ready, ReadState, Snapshot } from '../../protocols/raft/index.ts'

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b)

export interface Disk {
  hardState: HardState
  snapshot?: Snapshot
  entries: Entry[]
}

export interface ClusterOptions {
  seed?: number
  learners?: NodeId[]
  config?: Partial<Omit<RaftConfigInit, 'id' | 'rng'>>
  /** Per-node overrides. */
  nodeConfig?: Record<NodeId, Partial<Omit<RaftConfigInit, 'id' | 'rng'>>>
}

export class Cluster {
  readonly nodes = new Map<NodeId, RaftNode>()
  readonly disks = new Map<NodeId, Disk>()
  /** Applied normal entries (as strings) per node: the state machine. */
  readonly applied = new Map<NodeId, string[]>()
  /** Index of the last applied entry per node. */
  readonly appliedIndex = new Map<NodeId, number>()
  readonly readStates = new Map<NodeId, ReadState[]>()
  readonly down = new Set<NodeId>()
  /** Every message handed to the network, for assertions. */
  readonly sent: Message[] = []
  queue: Message[] = []
  drop: (m: Message) => boolean = () => false
  /** Report every snapshot transfer's outcome to its sender, as the service layer does. */
  autoReportSnapshots = true
  private readonly seed: number
  private readonly options: ClusterOptions

  constructor (voters: NodeId[], options: ClusterOptions = {}) {
    this.seed = options.seed ?? 1
    this.options = options
    const conf: ConfState = { voters, votersOutgoing: [], learners: options.learners ?? [], learnersNext: [], autoLeave: false }
    for (const id of [...voters, ...(options.learners ?? [])]) {
      this.start(id, conf)
    }
  }

  configFor (id: NodeId, restart = 0): RaftConfigInit {
    return {
      id,
      rng: createRng(this.seed * 1000 + hash(id) + restart * 7919),
      ...this.options.config,
      ...this.options.nodeConfig?.[id]
    }
  }

  /** Starts a node: a founding member (with bootstrapConf) or a new empty one. */
  start (id: NodeId, bootstrapConf?: ConfState): RaftNode {
    this.disks.set(id, { hardState: { term: 0, vote: null, commit: 0 }, entries: [] })
    this.applied.set(id, [])
    this.appliedIndex.set(id, 0)
    this.readStates.set(id, [])
    const node = new RaftNode(this.configFor(id), { hardState: { term: 0, vote: null, commit: 0 }, entries: [] }, bootstrapConf)
    this.nodes.set(id, node)
    this.down.delete(id)
    return node
  }

  node (id: NodeId): RaftNode {
    const node = this.nodes.get(id)
    if (node === undefined) { throw new Error(`no node ${id}`) }
    return node
  }

  /** Persist, send, apply, advance until the node has nothing more to do. */
  processReady (id: NodeId): void {
    const node = this.node(id)
    const disk = this.disks.get(id)!
    while (node.hasReady()) {
      const rd = node.ready()
      if (rd.snapshot !== undefined) {
        // A received snapshot replaces the whole log.
        disk.snapshot = rd.snapshot
        disk.entries = []
      }
      if (rd.entries.length > 0) {
        const first = rd.entries[0].index
        const lastOnDisk = disk.entries.at(-1)?.index ?? disk.snapshot?.meta.index ?? 0
        // The Ready contract: new entries extend or overwrite what is durable, never leave a gap.
        if (first > lastOnDisk + 1) { throw new Error(`${id}: Ready entries start at ${first}, disk ends at ${lastOnDisk}`) }
        disk.entries = [...disk.entries.filter(e => e.index < first), ...rd.entries]
      }
      if (rd.hardState !== undefined) { disk.hardState = rd.hardState }
      for (const m of rd.messages) {
        this.sent.push(m)
        this.queue.push(m)
      }
      if (rd.snapshot !== undefined) {
        this.applied.set(id, JSON.parse(dec(rd.snapshot.data)) as string[])
        this.appliedIndex.set(id, rd.snapshot.meta.index)
      }
      for (const e of rd.committedEntries) {
        const last = this.appliedIndex.get(id)!
        if (e.index !== last + 1) { throw new Error(`${id} applies ${e.index} after ${last}`) }
        if (e.type === 'normal' && e.data.byteLength > 0) { this.applied.get(id)!.push(dec(e.data)) }
        this.appliedIndex.set(id, e.index)
      }
      this.readStates.get(id)!.push(...rd.readStates)
      node.advance()
    }
  }

  processAllReady (): void {
    for (const id of this.nodes.keys()) {
      if (!this.down.has(id)) { this.processReady(id) }
    }
  }

  /**
   * Delivers one message unless it is lost (down recipient, drop predicate or
   * `lose`). Like the service layer, reports snapshot transfers to the sender.
   */
  deliver (m: Message, lose = false): boolean {
    const lost = lose || this.down.has(m.to) || !this.nodes.has(m.to) || this.drop(m)
    if (!lost) { this.node(m.to).step(m) }
    if (m.type === 'snapshot' && this.autoReportSnapshots && !this.down.has(m.from)) { this.node(m.from).reportSnapshot(m.to, lost ? 'failure' : 'success') }
    return !lost
  }

  /** Delivers queued messages (and whatever they cause) until the network is quiet. */
  stabilize (stepsMax = 100000): void {
    this.processAllReady()
    let steps = 0
    while (this.queue.length > 0) {
      if (++steps > stepsMax) { throw new Error(`cluster did not stabilize; next messages: ${describe(this.queue.slice(0, 6))}\n${this.describe()}`) }
      const m = this.queue.shift()!
      if (this.deliver(m)) { this.processReady(m.to) }
    }
  }

  /** Delivers only the messages currently queued (one "round"), then processes readies. */
  deliverRound (): void {
    const batch = this.queue
    this.queue = []
    for (const m of batch) { this.deliver(m) }
    this.processAllReady()
  }

  tick (n = 1, ids?: NodeId[]): void {
    for (let i = 0; i < n; i++) {
      for (const id of ids ?? this.nodes.keys()) {
        if (!this.down.has(id)) { this.node(id).tick() }
      }
      this.stabilize()
    }
  }

  /** Ticks until `predicate` holds (bounded). */
  tickUntil (predicate: () => boolean, ticksMax = 500): void {
    for (let i = 0; i < ticksMax; i++) {
      if (predicate()) { return }
      this.tick()
    }
    if (!predicate()) {
      throw new Error(`condition not reached\n${this.describe()}`)
    }
  }

  /** Every node's status, for failure messages. */
  describe (): string {
    return [...this.nodes.keys()].map(id => `${id}${this.down.has(id) ? ' (down)' : ''}: ${describe(this.node(id).status())}`).join('\n')
  }

  elect (id: NodeId): void {
    this.node(id).campaign()
    this.stabilize()
    if (this.node(id).status().role !== 'leader') { throw new Error(`${id} did not win`) }
  }

  leaders (): NodeId[] {
    return [...this.nodes.keys()].filter(id => !this.down.has(id) && this.node(id).status().role === 'leader')
  }

  /** Proposes on `id`, delivers everything, then lets followers learn the new commit index. */
  propose (id: NodeId, value: string): void {
    const result = this.node(id).propose(enc(value))
    if (!result.ok) { throw new Error(`proposal refused: ${result.reason}`) }
    this.stabilize()
    this.spreadCommit()
  }

  /**
   * A leader does not send a message just to announce a new commit index:
   * followers learn it from the next append or heartbeat. This ticks every
   * leader (only) through one heartbeat interval and delivers the result.
   */
  spreadCommit (): void {
    for (const id of this.leaders()) {
      this.tick(this.configFor(id).heartbeatIntervalTicks ?? RAFT_DEFAULTS.heartbeatIntervalTicks, [id])
    }
  }

  isolate (id: NodeId): void {
    this.drop = m => m.from === id || m.to === id
  }

  partition (...groups: NodeId[][]): void {
    const groupOf = new Map<NodeId, number>()
    groups.forEach((g, i) => { for (const id of g) { groupOf.set(id, i) } })
    this.drop = m => groupOf.get(m.from) !== groupOf.get(m.to)
  }

  heal (): void {
    this.drop = () => false
  }

  crash (id: NodeId): void {
    this.down.add(id)
    for (const m of this.queue) {
      if (m.to === id && m.type === 'snapshot') { this.deliver(m, true) } // the transfer fails
    }
    this.queue = this.queue.filter(m => m.to !== id && m.from !== id)
  }

  /** Restarts a crashed node from its disk (its state machine replays from the snapshot). */
  restart (id: NodeId, restartCount = 1): RaftNode {
    const disk = this.disks.get(id)!
    const node = new RaftNode(this.configFor(id, restartCount), {
      hardState: disk.hardState,
      entries: disk.entries,
      ...(disk.snapshot === undefined ? {} : { snapshot: disk.snapshot })
    })
    this.applied.set(id, disk.snapshot === undefined ? [] : JSON.parse(dec(disk.snapshot.data)) as string[])
    this.appliedIndex.set(id, disk.snapshot?.meta.index ?? 0)
    this.nodes.set(id, node)
    this.down.delete(id)
    return node
  }

  /** The application snapshots its state at its applied index and compacts the log. */
  compact (id: NodeId): Snapshot | null {
    const index = this.appliedIndex.get(id)!
    const snapshot = this.node(id).compact(index, enc(JSON.stringify(this.applied.get(id))))
    if (snapshot !== null) {
      const disk = this.disks.get(id)!
      disk.snapshot = snapshot
      disk.entries = disk.entries.filter(e => e.index > index)
    }
    return snapshot
  }
}

function describe (value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => v instanceof Uint8Array ? `<${v.byteLength} bytes>` : v)
}

function hash (s: string): number {
  let h = 0
  for (const c of s) { h = (Math.imul(h, 31) + c.charCodeAt(0)) >>> 0 }
  return h % 1000
}

/** Drains `node`'s ready without a cluster (for single-node unit tests). */
/** Every Ready `node` has, each advanced (nothing persisted or sent). */
export function readies (node: RaftNode): Ready[] {
  const out: Ready[] = []
  while (node.hasReady()) {
    out.push(node.ready())
    node.advance()
  }
  return out
}

export function drain (node: RaftNode): { messages: Message[], committed: Entry[], readStates: ReadState[] } {
  const all = readies(node)
  return { messages: all.flatMap(rd => rd.messages), committed: all.flatMap(rd => rd.committedEntries), readStates: all.flatMap(rd => rd.readStates) }
}
