/**
 * G-Set: a grow-only set of JSON values, keyed by canonical encoding. Join
 * is union; an add's delta is the singleton set.
 */
import { checkAscending, decodeWith, encodeWith, readCount, sortedKeys, TYPE_TAGS } from './codec.ts'
import { readJson, writeJson } from './json.ts'
import { jsonField, opOf } from './ops.ts'
import type { Canonical } from './json.ts'
import type { CrdtType, JsonValue, Result } from './types.ts'
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

/** canonical key -> element. */
export type GSet = ReadonlyMap<string, Canonical>

export function add (element: Canonical): GSet {
  return new Map([[element.key, element]])
}

export function joinGSets (a: GSet, b: GSet): GSet {
  const joined = new Map(a)
  for (const [key, element] of b) { joined.set(key, element) }
  return joined
}

/** The elements, sorted by canonical encoding. */
export function gSetValue (state: GSet): JsonValue[] {
  return sortedKeys(state).map(key => (state.get(key) as Canonical).value)
}

export function writeGSet (writer: ByteWriter, state: GSet): void {
  const keys = sortedKeys(state)
  writer.varint(keys.length)
  for (const key of keys) { writeJson(writer, state.get(key) as Canonical) }
}

export function readGSet (reader: ByteReader): GSet {
  const state = new Map<string, Canonical>()
  let previous: string | undefined
  for (let i = readCount(reader, 'set elements'); i > 0; i--) {
    const element = readJson(reader, 'set element')
    checkAscending(previous, element.key, 'set element')
    previous = element.key
    state.set(element.key, element)
  }
  return state
}

export const encodeGSet = (state: GSet): Uint8Array => encodeWith(TYPE_TAGS['g-set'], writeGSet, state)
export const decodeGSet = (bytes: Uint8Array): Result<GSet> => decodeWith(TYPE_TAGS['g-set'], readGSet, bytes)

export const gSetType: CrdtType<GSet> = {
  name: 'g-set',
  empty: () => new Map(),
  apply: (_state, op) => {
    const parsed = opOf(op, 'g-set', ['add'])
    if (!parsed.ok) { return parsed }
    const element = jsonField(parsed.value, 'value')
    return element.ok ? { ok: true, value: add(element.value) } : element
  },
  join: joinGSets,
  value: gSetValue,
  write: writeGSet,
  read: readGSet
}
