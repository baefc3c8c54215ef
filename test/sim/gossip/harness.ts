/**
 * A hand-driven network of anti-entropy cores for unit tests: messages wait
 * in a list until the test delivers (or drops) them, time moves only by
 * tick(). Every core signs with the harness's keyring (keyring.ts).
 */
import { createRng } from '../../../protocols/common/rng.ts'
import { AntiEntropyNode } from '../../../protocols/gossip/index.ts'
import { Keyring } from './keyring.ts'
import type { AntiEntropyConfigInit, GossipEvent, GossipMessage, NodeId, StepResult } from '../../../protocols/gossip/index.ts'

export class GossipHarness {
  readonly keyring = new Keyring(1)
  readonly nodes = new Map<NodeId, AntiEntropyNode>()
  readonly events = new Map<NodeId, GossipEvent[]>()
  /** Messages sent and not yet delivered, in send order. */
  inflight: GossipMessage[] = []
  /** Every step() result, for tests that look at rejections. */
  readonly results: Array<{ message: GossipMessage, result: StepResult }> = []
  private seed = 1

  add (id: NodeId, config: Omit<AntiEntropyConfigInit, 'id' | 'auth'> = {}): AntiEntropyNode {
    const node = new AntiEntropyNode({ ...config, id, auth: this.keyring.authFor(id) }, createRng(this.seed++))
    this.nodes.set(id, node)
    this.events.set(id, [])
    return node
  }

  node (id: NodeId): AntiEntropyNode {
    const node = this.nodes.get(id)
    if (node === undefined) { throw new Error(`harness: no node ${id}`) }
    return node
  }

  /** Every node gossips with every other. */
  connectAll (): void {
    const ids = [...this.nodes.keys()]
    for (const node of this.nodes.values()) { node.setPeers(ids) }
  }

  /** Drains every node's Ready into inflight and the event logs. */
  collect (): void {
    for (const [id, node] of this.nodes) {
      if (!node.hasReady()) { continue }
      const ready = node.ready()
      this.inflight.push(...ready.messages)
      this.events.get(id)?.push(...ready.events)
    }
  }

  /** Ticks the given nodes (default: all) `n` times, collecting after each tick. */
  tick (n = 1, ids: NodeId[] = [...this.nodes.keys()]): void {
    for (let i = 0; i < n; i++) {
      for (const id of ids) { this.node(id).tick() }
      this.collect()
    }
  }

  /**
   * Delivers the inflight messages (and those they cause), until none is
   * left or `rounds` passes; `keep(m)` false drops a message instead.
   */
  deliver (keep: (m: GossipMessage) => boolean = () => true, rounds = 20): void {
    this.collect()
    for (let r = 0; r < rounds && this.inflight.length > 0; r++) {
      const batch = this.inflight
      this.inflight = []
      for (const m of batch) {
        const node = this.nodes.get(m.to)
        if (node === undefined || !keep(m)) { continue }
        this.results.push({ message: m, result: node.step(m) })
      }
      this.collect()
    }
  }

  /** Ticks everyone and delivers everything, `n` times (a calm network). */
  run (n: number, keep?: (m: GossipMessage) => boolean): void {
    for (let i = 0; i < n; i++) {
      this.tick(1)
      this.deliver(keep)
    }
  }

  /** Takes (and forgets) the events `id` reported so far. */
  takeEvents (id: NodeId): GossipEvent[] {
    const list = this.events.get(id) ?? []
    this.events.set(id, [])
    return list
  }

  /** Takes the inflight messages matching `pick`, leaving the others. */
  take (pick: (m: GossipMessage) => boolean): GossipMessage[] {
    const taken = this.inflight.filter(pick)
    this.inflight = this.inflight.filter(m => !pick(m))
    return taken
  }

  /** Whether every node holds the same store (entries, tombstones and floors). */
  converged (ids: NodeId[] = [...this.nodes.keys()]): boolean {
    const first = storeText(this.node(ids[0]))
    return ids.every(id => storeText(this.node(id)) === first)
  }
}

/** A node's whole store as text, for comparisons. */
export function storeText (node: AntiEntropyNode): string {
  return node.snapshot().map(e => `${e.node}/${e.key}@${e.version}=${e.value === null ? '-' : Buffer.from(e.value).toString('hex')}`).join('\n')
}
