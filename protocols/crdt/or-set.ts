/**
 * OR-Set, add-wins, in its optimized form (Almeida et al.'s delta AWORSet,
 * also known as ORSWOT): a dot kernel whose dots map to elements. An add
 * creates a fresh dot for the element and covers the element's dots seen so
 * far; a remove covers the element's dots and adds nothing, so no tombstone
 * element remains: the causal context alone remembers the removed dots.
 * A remove only removes the adds it has seen, so an add concurrent with it
 * survives (add wins).
 */
import { compareUtf8 } from '../kv/codec.ts'
import { decodeWith, encodeWith, TYPE_TAGS } from './codec.ts'
import { emptyKernel, joinKernels, kernelDelta, readKernel, writeKernel } from './dot-kernel.ts'
import { readJson, writeJson } from './json.ts'
import { jsonField, opOf } from './ops.ts'
import type { ReplicaId } from './causal.ts'
import type { DotKernel } from './dot-kernel.ts'
import type { Canonical } from './json.ts'
import type { CrdtType, JsonValue, Result } from './types.ts'
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

export type ORSet = DotKernel<Canonical>

export const emptyORSet = (): ORSet => emptyKernel()

export function add (state: ORSet, replica: ReplicaId, element: Canonical): ORSet {
  return kernelDelta(state, e => e.key === element.key, replica, element)
}

export function remove (state: ORSet, element: Canonical): ORSet {
  return kernelDelta(state, e => e.key === element.key)
}

export const joinORSets: (a: ORSet, b: ORSet) => ORSet = joinKernels

/** The distinct elements, sorted by canonical encoding. */
export function orSetValue (state: ORSet): JsonValue[] {
  return distinctValues(state)
}

/** The distinct values of a kernel of JSON values, sorted by canonical encoding. */
export function distinctValues (state: DotKernel<Canonical>): JsonValue[] {
  const distinct = new Map<string, JsonValue>()
  for (const { value } of state.entries.values()) { distinct.set(value.key, value.value) }
  return [...distinct.keys()].sort(compareUtf8).map(key => distinct.get(key) as JsonValue)
}

export const writeORSet = (writer: ByteWriter, state: ORSet): void => { writeKernel(writer, state, writeJson) }
export const readORSet = (reader: ByteReader): ORSet => readKernel(reader, r => readJson(r, 'set element'))

export const encodeORSet = (state: ORSet): Uint8Array => encodeWith(TYPE_TAGS['or-set'], writeORSet, state)
export const decodeORSet = (bytes: Uint8Array): Result<ORSet> => decodeWith(TYPE_TAGS['or-set'], readORSet, bytes)

export const orSetType: CrdtType<ORSet> = {
  name: 'or-set',
  empty: emptyORSet,
  apply: (state, op, env) => {
    const parsed = opOf(op, 'or-set', ['add', 'remove'])
    if (!parsed.ok) { return parsed }
    const element = jsonField(parsed.value, 'value')
    if (!element.ok) { return element }
    const delta = parsed.value.op === 'add' ? add(state, env.replica, element.value) : remove(state, element.value)
    return { ok: true, value: delta }
  },
  join: joinORSets,
  value: orSetValue,
  write: writeORSet,
  read: readORSet
}
