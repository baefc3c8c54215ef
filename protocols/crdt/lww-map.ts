/**
 * LWW-Map: a map of string keys to JSON values, each key an LWW register.
 * A delete is a write of a tombstone with its own timestamp, so it beats
 * earlier sets and loses to later ones. Tombstones are kept forever (there is
 * no safe moment to drop one without knowing every replica has seen it);
 * the OR-Map is the type whose removes leave nothing behind.
 */
import { compareUtf8, DecodeError } from '../kv/codec.ts'
import { checkAscending, decodeWith, encodeWith, MAP_KEY_BYTES_MAX, readCount, sortedKeys, TYPE_TAGS } from './codec.ts'
import { nextTimestamp } from './hlc.ts'
import { readJson, writeJson } from './json.ts'
import { compareValues, latest, readTimestamp, writeTimestamp } from './lww-register.ts'
import { guarded, jsonField, keyField, opOf } from './ops.ts'
import type { ReplicaId } from './causal.ts'
import type { Canonical } from './json.ts'
import type { Stamped } from './lww-register.ts'
import type { CrdtType, JsonValue, Result } from './types.ts'
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

/** null is a tombstone (a JSON null value is a Canonical, not null). */
export type LWWMapEntry = Stamped<Canonical | null>

export type LWWMap = ReadonlyMap<string, LWWMapEntry>

/** Tombstones sort before every value, so a tie of stamps is settled the same way everywhere. */
function compareEntryValues (a: Canonical | null, b: Canonical | null): number {
  if (a === null || b === null) { return (a === null ? 0 : 1) - (b === null ? 0 : 1) }
  return compareValues(a, b)
}

/** The delta of setting `key` (or deleting it, for value null) at physical time `now`. */
export function set (state: LWWMap, replica: ReplicaId, key: string, value: Canonical | null, now: number): LWWMap {
  const stamp = nextTimestamp(state.get(key)?.stamp ?? null, replica, now)
  return new Map([[key, { stamp, value }]])
}

export function remove (state: LWWMap, replica: ReplicaId, key: string, now: number): LWWMap {
  return set(state, replica, key, null, now)
}

export function joinLWWMaps (a: LWWMap, b: LWWMap): LWWMap {
  const joined = new Map(a)
  for (const [key, entry] of b) {
    const mine = joined.get(key)
    joined.set(key, mine === undefined ? entry : latest(mine, entry, compareEntryValues))
  }
  return joined
}

/** The live keys and their values, as an object with keys in code point order. */
export function lwwMapValue (state: LWWMap): Record<string, JsonValue> {
  const entries: Array<[string, JsonValue]> = []
  for (const key of [...state.keys()].sort(compareUtf8)) {
    const value = state.get(key)?.value
    if (value != null) { entries.push([key, value.value]) }
  }
  return Object.fromEntries(entries)
}

export function writeLWWMap (writer: ByteWriter, state: LWWMap): void {
  const keys = sortedKeys(state)
  writer.varint(keys.length)
  for (const key of keys) {
    const entry = state.get(key) as LWWMapEntry
    writer.utf8(key)
    writeTimestamp(writer, entry.stamp)
    if (entry.value === null) {
      writer.u8(0)
    } else {
      writer.u8(1)
      writeJson(writer, entry.value)
    }
  }
}

export function readLWWMap (reader: ByteReader): LWWMap {
  const state = new Map<string, LWWMapEntry>()
  let previous: string | undefined
  for (let i = readCount(reader, 'map entries'); i > 0; i--) {
    const key = reader.utf8('map key', MAP_KEY_BYTES_MAX)
    checkAscending(previous, key, 'map key')
    previous = key
    const stamp = readTimestamp(reader)
    const flag = reader.u8('tombstone flag')
    if (flag > 1) { throw new DecodeError(`tombstone flag ${flag}`) }
    state.set(key, { stamp, value: flag === 0 ? null : readJson(reader, 'map value') })
  }
  return state
}

export const encodeLWWMap = (state: LWWMap): Uint8Array => encodeWith(TYPE_TAGS['lww-map'], writeLWWMap, state)
export const decodeLWWMap = (bytes: Uint8Array): Result<LWWMap> => decodeWith(TYPE_TAGS['lww-map'], readLWWMap, bytes)

export const lwwMapType: CrdtType<LWWMap> = {
  name: 'lww-map',
  empty: () => new Map(),
  apply: (state, op, env) => {
    const parsed = opOf(op, 'lww-map', ['set', 'delete'])
    if (!parsed.ok) { return parsed }
    const key = keyField(parsed.value)
    if (!key.ok) { return key }
    if (parsed.value.op === 'delete') { return guarded(() => remove(state, env.replica, key.value, env.now)) }
    const value = jsonField(parsed.value, 'value')
    if (!value.ok) { return value }
    return guarded(() => set(state, env.replica, key.value, value.value, env.now))
  },
  join: joinLWWMaps,
  value: lwwMapValue,
  write: writeLWWMap,
  read: readLWWMap
}
