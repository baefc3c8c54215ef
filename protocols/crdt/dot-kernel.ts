/**
 * The dot kernel shared by the causal types (OR-Set, MV-Register, OR-Map):
 * a dot store mapping each live dot to the value it was created with, plus
 * the causal context of everything the store has seen. A dot in the context
 * but not in the store has been removed; that is why removes leave no
 * tombstone element behind, only dots in the context.
 *
 * Join keeps a dot when both sides hold it, or when one side holds it and
 * the other has not seen it (its context lacks the dot).
 */
import { DecodeError } from '../kv/codec.ts'
import { contextContains, contextFromDots, compareDots, dotKey, EMPTY_CONTEXT, joinContexts, nextDot, readContext, readDot, writeContext, writeDot } from './causal.ts'
import { readCount } from './codec.ts'
import type { CausalContext, Dot, ReplicaId } from './causal.ts'
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

export interface Dotted<V> {
  readonly dot: Dot
  readonly value: V
}

export interface DotKernel<V> {
  /** dotKey(dot) -> the dot and its value; a dot's value never changes. */
  readonly entries: ReadonlyMap<string, Dotted<V>>
  readonly context: CausalContext
}

export function emptyKernel<V> (): DotKernel<V> {
  return { entries: new Map(), context: EMPTY_CONTEXT }
}

export function joinKernels<V> (a: DotKernel<V>, b: DotKernel<V>): DotKernel<V> {
  const entries = new Map<string, Dotted<V>>()
  for (const [key, entry] of a.entries) {
    if (b.entries.has(key) || !contextContains(b.context, entry.dot)) { entries.set(key, entry) }
  }
  for (const [key, entry] of b.entries) {
    if (!a.entries.has(key) && !contextContains(a.context, entry.dot)) { entries.set(key, entry) }
  }
  return { entries, context: joinContexts(a.context, b.context) }
}

/**
 * The delta that removes the entries `removed` selects and, if `value` is
 * given, adds it under a fresh dot of `replica`: the delta's context covers
 * the removed dots and the new one.
 */
export function kernelDelta<V> (kernel: DotKernel<V>, removed: (value: V) => boolean, replica?: ReplicaId, value?: V): DotKernel<V> {
  const covered: Dot[] = []
  for (const entry of kernel.entries.values()) {
    if (removed(entry.value)) { covered.push(entry.dot) }
  }
  const entries = new Map<string, Dotted<V>>()
  if (replica !== undefined && value !== undefined) {
    const dot = nextDot(kernel.context, replica)
    entries.set(dotKey(dot), { dot, value })
    covered.push(dot)
  }
  return { entries, context: contextFromDots(covered) }
}

export function writeKernel<V> (writer: ByteWriter, kernel: DotKernel<V>, writeValue: (w: ByteWriter, v: V) => void): void {
  writeContext(writer, kernel.context)
  const entries = [...kernel.entries.values()].sort((x, y) => compareDots(x.dot, y.dot))
  writer.varint(entries.length)
  for (const entry of entries) {
    writeDot(writer, entry.dot)
    writeValue(writer, entry.value)
  }
}

/** Reads a kernel; every dot must be in the context and the dots must be ascending. */
export function readKernel<V> (reader: ByteReader, readValue: (r: ByteReader) => V): DotKernel<V> {
  const context = readContext(reader)
  const entries = new Map<string, Dotted<V>>()
  let previous: Dot | undefined
  for (let i = readCount(reader, 'dot store'); i > 0; i--) {
    const dot = readDot(reader)
    if (previous !== undefined && compareDots(previous, dot) >= 0) { throw new DecodeError('dot store out of order or repeated') }
    if (!contextContains(context, dot)) { throw new DecodeError('dot store holds a dot outside its causal context') }
    previous = dot
    entries.set(dotKey(dot), { dot, value: readValue(reader) })
  }
  return { entries, context }
}
