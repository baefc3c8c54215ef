/**
 * A hand-driven network of membership cores for unit tests: messages wait in
 * a list until the test delivers (or drops) them, time moves only by
 * tick(). No scheduler, no randomness beyond each core's seeded Rng.
 */
import { createRng } from '../../../protocols/common/rng.ts'
import { MembershipNode } from '../../../protocols/membership/index.ts'
import type { MemberId, MembershipConfigInit, MembershipEvent, Message, StepResult, Update } from '../../../protocols/membership/index.ts'

export class Harness {
  readonly nodes = new Map<MemberId, MembershipNode>()
  readonly events = new Map<MemberId, MembershipEvent[]>()
  /** What each node handed out in Ready.publish, in order (delivered to nobody unless a test does). */
  readonly published = new Map<MemberId, Update[]>()
  /** Messages sent and not yet delivered, in send order. */
  inflight: Message[] = []
  /** Every step() result, for tests that look at rejections. */
  readonly results: Array<{ message: Message, result: StepResult }> = []
  private seed = 1

  add (id: MemberId, config: Omit<MembershipConfigInit, 'id'> = {}): MembershipNode {
    const node = new MembershipNode({ ...config, id }, createRng(this.seed++))
    this.nodes.set(id, node)
    this.events.set(id, [])
    this.published.set(id, [])
    this.collect()
    return node
  }

  node (id: MemberId): MembershipNode {
    const node = this.nodes.get(id)
    if (node === undefined) { throw new Error(`harness: no node ${id}`) }
    return node
  }

  /** Drains every node's Ready into inflight and the event logs. */
  collect (): void {
    for (const [id, node] of this.nodes) {
      if (!node.hasReady()) { continue }
      const ready = node.ready()
      this.inflight.push(...ready.messages)
      this.events.get(id)?.push(...ready.events)
      this.published.get(id)?.push(...ready.publish)
    }
  }

  /** Ticks the given nodes (default: all) `n` times, collecting after each tick. */
  tick (n = 1, ids: MemberId[] = [...this.nodes.keys()]): void {
    for (let i = 0; i < n; i++) {
      for (const id of ids) { this.node(id).tick() }
      this.collect()
    }
  }

  /**
   * Delivers the inflight messages (and those they cause), until none is
   * left or `rounds` passes; `keep(m)` false drops a message instead.
   */
  deliver (keep: (m: Message) => boolean = () => true, rounds = 20): void {
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
  run (n: number, keep?: (m: Message) => boolean): void {
    for (let i = 0; i < n; i++) {
      this.tick(1)
      this.deliver(keep)
    }
  }

  /** Takes (and forgets) the events `id` reported so far. */
  takeEvents (id: MemberId): MembershipEvent[] {
    const list = this.events.get(id) ?? []
    this.events.set(id, [])
    return list
  }

  /** Takes the inflight messages matching `pick`, leaving the others. */
  take (pick: (m: Message) => boolean): Message[] {
    const taken = this.inflight.filter(pick)
    this.inflight = this.inflight.filter(m => !pick(m))
    return taken
  }
}
