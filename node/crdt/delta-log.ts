/**
 * The recent deltas of one CRDT, by dot, for delta-interval anti-entropy:
 * a sync peer that reported holding version vector V is sent the join of
 * the deltas of the dots this node holds beyond V, instead of the whole
 * state, when every one of them is still here. Bounded by count and bytes;
 * the oldest go first, after which a peer that far behind gets the state.
 *
 * A delta group (the join of several ops' deltas, as a batched gossip
 * message carries them) is kept once, under each of its dots.
 *
 * Only deltas of ops that are durable here go in (a local op once its
 * state is on disk, a remote one once joined): like a published delta, a
 * logged one must not outlive a crash that loses its op.
 */
import type { CausalContext, Dot, VersionVector } from '../../protocols/crdt/index.ts'

/** Deltas kept per CRDT. */
export const DELTA_LOG_ENTRIES_MAX = 4096
/** Bytes of deltas kept per CRDT. */
export const DELTA_LOG_BYTES_MAX = 512 * 1024

export class DeltaLog {
  readonly #byReplica = new Map<string, Map<number, Uint8Array>>()
  /** How many dots hold each delta (a group is held by several): its bytes count once. */
  readonly #holders = new Map<Uint8Array, number>()
  /** Insertion order, for eviction. */
  readonly #order: Dot[] = []
  #head = 0
  #bytes = 0

  get size (): number {
    return this.#order.length - this.#head
  }

  get bytes (): number {
    return this.#bytes
  }

  /** Keeps the delta of `dot` (a dot already held is left as it is); a delta over the byte bound is not kept. */
  add (dot: Dot, delta: Uint8Array): void {
    this.addGroup([dot], delta)
  }

  /** Keeps `delta`, the join of the deltas of `dots`, under each of them that is not held yet. */
  addGroup (dots: readonly Dot[], delta: Uint8Array): void {
    if (delta.byteLength > DELTA_LOG_BYTES_MAX) { return }
    for (const dot of dots) {
      let deltas = this.#byReplica.get(dot.replica)
      if (deltas === undefined) {
        deltas = new Map()
        this.#byReplica.set(dot.replica, deltas)
      }
      if (deltas.has(dot.counter)) { continue }
      deltas.set(dot.counter, delta)
      this.#order.push(dot)
      const holders = this.#holders.get(delta) ?? 0
      if (holders === 0) { this.#bytes += delta.byteLength }
      this.#holders.set(delta, holders + 1)
    }
    while (this.size > DELTA_LOG_ENTRIES_MAX || this.#bytes > DELTA_LOG_BYTES_MAX) { this.#evictOldest() }
  }

  /**
   * The dots of `held` that a replica at `theirs` lacks, and their deltas
   * (each group once); null when one of them is no longer here.
   */
  gap (held: CausalContext, theirs: VersionVector): { dots: Dot[], deltas: Uint8Array[] } | null {
    const dots: Dot[] = []
    const deltas = new Set<Uint8Array>()
    const take = (replica: string, counter: number): boolean => {
      const delta = this.#byReplica.get(replica)?.get(counter)
      if (delta === undefined) { return false }
      dots.push({ replica, counter })
      deltas.add(delta)
      return true
    }
    for (const [replica, n] of held.vv) {
      for (let counter = (theirs.get(replica) ?? 0) + 1; counter <= n; counter++) {
        if (!take(replica, counter)) { return null }
      }
    }
    for (const [replica, counters] of held.cloud) {
      const from = theirs.get(replica) ?? 0
      for (const counter of counters) {
        if (counter > from && !take(replica, counter)) { return null }
      }
    }
    return { dots, deltas: [...deltas] }
  }

  #evictOldest (): void {
    const dot = this.#order[this.#head++]
    const deltas = this.#byReplica.get(dot.replica)
    const delta = deltas?.get(dot.counter)
    if (deltas !== undefined && delta !== undefined) {
      deltas.delete(dot.counter)
      const holders = (this.#holders.get(delta) ?? 1) - 1
      if (holders === 0) {
        this.#holders.delete(delta)
        this.#bytes -= delta.byteLength
      } else {
        this.#holders.set(delta, holders)
      }
      if (deltas.size === 0) { this.#byReplica.delete(dot.replica) }
    }
    // compact the queue now and then rather than shift() each time
    if (this.#head > 1024 && this.#head * 2 > this.#order.length) {
      this.#order.splice(0, this.#head)
      this.#head = 0
    }
  }
}
