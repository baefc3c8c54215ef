/**
 * OR-Map with nested CRDT values, after the delta-state paper's ORMap: one
 * causal context shared by the whole map decides which keys are present,
 * and removing a key is an observed remove of it, leaving no tombstone.
 *
 * The map is a dot kernel whose dots carry fields (key, type, nested state).
 * Updating a field takes a fresh dot carrying the field's whole new nested
 * state and covers the field's dots seen so far; a field's value is the join
 * of the nested states under its live dots. Because a dot's payload never
 * changes, this is a plain dot-kernel join and stays a lattice whatever the
 * nested type, causal or not (the paper embeds only causal types, sharing
 * the context with them; here nested types keep their own state and the
 * shared context governs only key presence).
 *
 * Consequences: a delta carries the updated field's full nested state, not
 * a nested delta; a remove concurrent with an update keeps the key, with the
 * updating replica's nested state (update wins); a key may hold fields of
 * several types if replicas created it concurrently with different types.
 */
import { compareUtf8, DecodeError } from '../kv/codec.ts'
import { decodeWith, encodeWith, MAP_KEY_BYTES_MAX, NESTING_DEPTH_MAX, TYPE_TAGS } from './codec.ts'
import { emptyKernel, joinKernels, kernelDelta, readKernel, writeKernel } from './dot-kernel.ts'
import { jsonField, keyField, opOf } from './ops.ts'
import type { DotKernel } from './dot-kernel.ts'
import type { CrdtType, JsonValue, MutationEnv, Result } from './types.ts'
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

/** Finds a nested type by name (the registry, passed in to keep modules free of import cycles). */
export type TypeLookup = (name: string) => CrdtType<unknown> | undefined

export interface Field {
  readonly key: string
  readonly type: string
  readonly state: unknown
}

export type ORMap = DotKernel<Field>

export const emptyORMap = (): ORMap => emptyKernel()

/** The current nested state of field (key, type): the join of its live dots' states. */
export function fieldState (map: ORMap, key: string, type: CrdtType<unknown>): unknown {
  let state = type.empty()
  for (const { value } of map.entries.values()) {
    if (value.key === key && value.type === type.name) { state = type.join(state, value.state) }
  }
  return state
}

/** The delta of applying nested `op` to field (key, type); errors come from the nested type. */
export function update (map: ORMap, env: MutationEnv, key: string, type: CrdtType<unknown>, op: unknown): Result<ORMap> {
  const current = fieldState(map, key, type)
  const nested = type.apply(current, op, env)
  if (!nested.ok) { return nested }
  const field: Field = { key, type: type.name, state: type.join(current, nested.value) }
  return { ok: true, value: kernelDelta(map, f => f.key === key && f.type === type.name, env.replica, field) }
}

/** The delta removing `key` (every field under it) as observed here. */
export function remove (map: ORMap, key: string): ORMap {
  return kernelDelta(map, f => f.key === key)
}

export const joinORMaps: (a: ORMap, b: ORMap) => ORMap = joinKernels

/**
 * The map as an object with keys in code point order. A key holding fields
 * of several types shows the one whose type name sorts first.
 */
export function orMapValue (map: ORMap, lookup: TypeLookup): Record<string, JsonValue> {
  const types = new Map<string, string>()
  for (const { value } of map.entries.values()) {
    const shown = types.get(value.key)
    if (shown === undefined || compareUtf8(value.type, shown) < 0) { types.set(value.key, value.type) }
  }
  const entries: Array<[string, JsonValue]> = []
  for (const key of [...types.keys()].sort(compareUtf8)) {
    const type = lookup(types.get(key) as string) as CrdtType<unknown>
    entries.push([key, type.value(fieldState(map, key, type))])
  }
  return Object.fromEntries(entries)
}

export function writeORMap (writer: ByteWriter, map: ORMap, lookup: TypeLookup): void {
  writeKernel(writer, map, (w, field) => {
    const type = lookup(field.type) as CrdtType<unknown>
    w.utf8(field.key).utf8(field.type)
    type.write(w, field.state)
  })
}

export function readORMap (reader: ByteReader, depth: number, lookup: TypeLookup): ORMap {
  if (depth >= NESTING_DEPTH_MAX) { throw new DecodeError(`maps nest deeper than ${NESTING_DEPTH_MAX}`) }
  return readKernel(reader, r => {
    const key = r.utf8('map key', MAP_KEY_BYTES_MAX)
    const typeName = r.utf8('field type', 64)
    const type = lookup(typeName)
    if (type === undefined) { throw new DecodeError(`unknown field type ${JSON.stringify(typeName)}`) }
    return { key, type: typeName, state: type.read(r, depth + 1) }
  })
}

/** How many OR-Map updates an op nests, so a crafted op cannot build a state too deep to decode. */
function opDepth (op: unknown): number {
  let depth = 0
  let inner = op
  while (typeof inner === 'object' && inner !== null && (inner as Record<string, unknown>).op === 'update') {
    depth++
    if (depth > NESTING_DEPTH_MAX) { break }
    inner = (inner as Record<string, unknown>).update
  }
  return depth
}

/**
 * The OR-Map as a CrdtType. Ops: {op:'update', key, type, update} applies a
 * nested op to the field of that type; {op:'set', key, value} is shorthand
 * for updating an 'lww-register' field; {op:'delete', key} removes the key.
 */
export function orMapType (lookup: TypeLookup): CrdtType<ORMap> {
  const type: CrdtType<ORMap> = {
    name: 'or-map',
    empty: emptyORMap,
    apply: (map, op, env) => {
      const parsed = opOf(op, 'or-map', ['update', 'set', 'delete'])
      if (!parsed.ok) { return parsed }
      const key = keyField(parsed.value)
      if (!key.ok) { return key }
      switch (parsed.value.op) {
        case 'delete': return { ok: true, value: remove(map, key.value) }
        case 'set': {
          const value = jsonField(parsed.value, 'value')
          if (!value.ok) { return value }
          return update(map, env, key.value, lookup('lww-register') as CrdtType<unknown>, { op: 'set', value: value.value.value })
        }
        default: {
          if (opDepth(op) > NESTING_DEPTH_MAX) { return { ok: false, error: `maps nest deeper than ${NESTING_DEPTH_MAX}` } }
          const nested = parsed.value.type
          const nestedType = typeof nested === 'string' ? lookup(nested) : undefined
          if (nestedType === undefined) { return { ok: false, error: `unknown field type ${JSON.stringify(nested)}` } }
          return update(map, env, key.value, nestedType, parsed.value.update)
        }
      }
    },
    join: joinORMaps,
    value: map => orMapValue(map, lookup),
    write: (writer, map) => { writeORMap(writer, map, lookup) },
    read: (reader, depth) => readORMap(reader, depth, lookup)
  }
  return type
}

export function encodeORMap (map: ORMap, lookup: TypeLookup): Uint8Array {
  return encodeWith(TYPE_TAGS['or-map'], (w, m: ORMap) => { writeORMap(w, m, lookup) }, map)
}

export function decodeORMap (bytes: Uint8Array, lookup: TypeLookup): Result<ORMap> {
  return decodeWith(TYPE_TAGS['or-map'], (r, depth) => readORMap(r, depth, lookup), bytes)
}
