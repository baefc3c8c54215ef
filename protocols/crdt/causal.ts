/**
 * Causality tracking for the delta-state CRDTs (Almeida, Shoker, Baquero,
 * "Delta State Replicated Data Types", 2018): dots, causal contexts and
 * version vectors.
 *
 * A dot (replica, counter) names one event: the counter-th event of that
 * replica. A causal context is a set of dots, kept as a version vector
 * (every counter 1..n of a replica) plus a dot cloud of the dots not (yet)
 * contiguous with it. Deltas carry clouds (a remove covers just the removed
 * dots); joining fills the gaps and the cloud is folded into the vector as
 * soon as it is contiguous, so a replica that saw everything keeps a plain
 * version vector.
 */
import { compareUtf8, DecodeError } from '../kv/codec.ts'
import { checkAscending, readCount, readReplica, sortedKeys } from './codec.ts'
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

export type ReplicaId = string

export interface Dot {
  readonly replica: ReplicaId
  readonly counter: number
}

export interface CausalContext {
  /** replica -> n: dots 1..n of the replica are in the context. */
  readonly vv: ReadonlyMap<ReplicaId, number>
  /** Dots beyond the vector, never empty sets, never at or below the vector's counter. */
  readonly cloud: ReadonlyMap<ReplicaId, ReadonlySet<number>>
}

/** A version vector (and vector clock): replica -> highest contiguous counter. */
export type VersionVector = ReadonlyMap<ReplicaId, number>

/** A string key for maps of dots. The counter comes first: replica ids may contain ':'. */
export function dotKey (dot: Dot): string {
  return `${dot.counter}:${dot.replica}`
}

export function compareDots (a: Dot, b: Dot): number {
  return a.replica === b.replica ? a.counter - b.counter : compareUtf8(a.replica, b.replica)
}

export const EMPTY_CONTEXT: CausalContext = { vv: new Map(), cloud: new Map() }

export function contextContains (context: CausalContext, dot: Dot): boolean {
  return dot.counter <= (context.vv.get(dot.replica) ?? 0) || context.cloud.get(dot.replica)?.has(dot.counter) === true
}

/** The next dot for `replica`: one past anything of the replica the context holds. */
export function nextDot (context: CausalContext, replica: ReplicaId): Dot {
  let counter = context.vv.get(replica) ?? 0
  for (const c of context.cloud.get(replica) ?? []) { counter = Math.max(counter, c) }
  return { replica, counter: counter + 1 }
}

/** A copy of the context's version vector (the cloud, if any, is not part of it). */
export function versionVector (context: CausalContext): Map<ReplicaId, number> {
  return new Map(context.vv)
}

/** Builds a context from dots and mutable parts, compacting the cloud into the vector. */
class ContextBuilder {
  readonly vv: Map<ReplicaId, number>
  readonly cloud = new Map<ReplicaId, Set<number>>()

  constructor (vv: ReadonlyMap<ReplicaId, number> = new Map()) {
    this.vv = new Map(vv)
  }

  addVector (vv: ReadonlyMap<ReplicaId, number>): void {
    for (const [replica, n] of vv) { this.vv.set(replica, Math.max(n, this.vv.get(replica) ?? 0)) }
  }

  add (dot: Dot): void {
    let set = this.cloud.get(dot.replica)
    if (set === undefined) { this.cloud.set(dot.replica, set = new Set()) }
    set.add(dot.counter)
  }

  addCloud (cloud: ReadonlyMap<ReplicaId, ReadonlySet<number>>): void {
    for (const [replica, counters] of cloud) {
      for (const counter of counters) { this.add({ replica, counter }) }
    }
  }

  finish (): CausalContext {
    const cloud = new Map<ReplicaId, ReadonlySet<number>>()
    for (const [replica, counters] of this.cloud) {
      let n = this.vv.get(replica) ?? 0
      while (counters.has(n + 1)) { n++ }
      if (n > 0) { this.vv.set(replica, n) }
      const rest = [...counters].filter(c => c > n).sort((a, b) => a - b)
      if (rest.length > 0) { cloud.set(replica, new Set(rest)) }
    }
    return { vv: this.vv, cloud }
  }
}

export function contextFromDots (dots: Iterable<Dot>): CausalContext {
  const builder = new ContextBuilder()
  for (const dot of dots) { builder.add(dot) }
  return builder.finish()
}

/** The union of two contexts. */
export function joinContexts (a: CausalContext, b: CausalContext): CausalContext {
  const builder = new ContextBuilder(a.vv)
  builder.addVector(b.vv)
  builder.addCloud(a.cloud)
  builder.addCloud(b.cloud)
  return builder.finish()
}

export function writeContext (writer: ByteWriter, context: CausalContext): void {
  const replicas = sortedKeys(context.vv)
  writer.varint(replicas.length)
  for (const replica of replicas) { writer.utf8(replica).varint(context.vv.get(replica) ?? 0) }
  const clouded = sortedKeys(context.cloud)
  writer.varint(clouded.length)
  for (const replica of clouded) {
    const counters = [...(context.cloud.get(replica) ?? [])].sort((a, b) => a - b)
    writer.utf8(replica).varint(counters.length)
    for (const counter of counters) { writer.varint(counter) }
  }
}

/** Reads a context, refusing any that is not in the compact canonical form writeContext produces. */
export function readContext (reader: ByteReader): CausalContext {
  const vv = new Map<ReplicaId, number>()
  let previous: string | undefined
  for (let i = readCount(reader, 'version vector'); i > 0; i--) {
    const replica = readReplica(reader)
    checkAscending(previous, replica, 'version vector replica')
    previous = replica
    const counter = reader.varint('version vector counter')
    if (counter === 0) { throw new DecodeError('version vector counter is 0') }
    vv.set(replica, counter)
  }
  const cloud = new Map<ReplicaId, ReadonlySet<number>>()
  previous = undefined
  for (let i = readCount(reader, 'dot cloud'); i > 0; i--) {
    const replica = readReplica(reader)
    checkAscending(previous, replica, 'dot cloud replica')
    previous = replica
    // a cloud counter must leave a gap above the vector, or it would have been compacted
    let last = (vv.get(replica) ?? 0) + 1
    const counters = new Set<number>()
    for (let j = readCount(reader, 'dot cloud counters'); j > 0; j--) {
      const counter = reader.varint('dot cloud counter')
      if (counter <= last) { throw new DecodeError('dot cloud counters not ascending above the vector') }
      counters.add(counter)
      last = counter
    }
    if (counters.size === 0) { throw new DecodeError('empty dot cloud entry') }
    cloud.set(replica, counters)
  }
  return { vv, cloud }
}

export function writeDot (writer: ByteWriter, dot: Dot): void {
  writer.utf8(dot.replica).varint(dot.counter)
}

export function readDot (reader: ByteReader): Dot {
  const replica = readReplica(reader)
  const counter = reader.varint('dot counter')
  if (counter === 0) { throw new DecodeError('dot counter is 0') }
  return { replica, counter }
}

export type ClockOrder = 'equal' | 'before' | 'after' | 'concurrent'

/** How vector clock `a` relates to `b` (missing entries are 0). */
export function compareClocks (a: VersionVector, b: VersionVector): ClockOrder {
  let less = false
  let greater = false
  for (const replica of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(replica) ?? 0
    const y = b.get(replica) ?? 0
    if (x < y) { less = true } else if (x > y) { greater = true }
  }
  if (less && greater) { return 'concurrent' }
  if (less) { return 'before' }
  return greater ? 'after' : 'equal'
}

/** The entry-wise maximum of two vector clocks. */
export function mergeClocks (a: VersionVector, b: VersionVector): Map<ReplicaId, number> {
  const merged = new Map(a)
  for (const [replica, n] of b) { merged.set(replica, Math.max(n, merged.get(replica) ?? 0)) }
  return merged
}

/**
 * The entry-wise minimum of vector clocks (a replica missing from one is 0
 * there, so it is left out): what every one of them has seen. Applied to
 * every live member's version vector, the causally stable ops.
 */
export function meetClocks (clocks: Iterable<VersionVector>): Map<ReplicaId, number> {
  let meet: Map<ReplicaId, number> | null = null
  for (const clock of clocks) {
    if (meet === null) {
      meet = new Map(clock)
      continue
    }
    for (const [replica, n] of meet) {
      const other = clock.get(replica) ?? 0
      if (other === 0) { meet.delete(replica) } else if (other < n) { meet.set(replica, other) }
    }
  }
  return meet ?? new Map()
}

/**
 * Causal delivery test for an op stamped with its origin's clock (which
 * counts the op itself): 'ready' when it is the origin's next op and every
 * op it depends on has been delivered, 'duplicate' when it was delivered
 * already, else 'waiting'.
 */
export function deliveryStatus (delivered: VersionVector, origin: ReplicaId, clock: VersionVector): 'ready' | 'duplicate' | 'waiting' {
  const seq = clock.get(origin) ?? 0
  const seen = delivered.get(origin) ?? 0
  if (seq <= seen) { return 'duplicate' }
  if (seq > seen + 1) { return 'waiting' }
  for (const [replica, n] of clock) {
    if (replica !== origin && n > (delivered.get(replica) ?? 0)) { return 'waiting' }
  }
  return 'ready'
}
