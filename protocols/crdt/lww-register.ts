/**
 * LWW-Register: the value of the write with the greatest hybrid logical
 * clock timestamp. A write is stamped after the register's current stamp
 * (an HLC step from what this replica has seen of the register), so it
 * supersedes everything the writer observed even if its physical clock lags;
 * concurrent writes are ordered by (wall, logical, replica id).
 */
import { compareUtf8, DecodeError } from '../kv/codec.ts'
import { decodeWith, encodeWith, readReplica, TYPE_TAGS } from './codec.ts'
import { compareTimestamps, nextTimestamp } from './hlc.ts'
import { readJson, writeJson } from './json.ts'
import { guarded, jsonField, opOf } from './ops.ts'
import type { ReplicaId } from './causal.ts'
import type { Timestamp } from './hlc.ts'
import type { Canonical } from './json.ts'
import type { CrdtType, JsonValue, Result } from './types.ts'
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

export interface Stamped<V> {
  readonly stamp: Timestamp
  readonly value: V
}

/** null before the first write. */
export type LWWRegister = Stamped<Canonical> | null

/**
 * The later of two stamped values. Equal stamps come from the same write
 * unless a replica misbehaved; the value order then still keeps join
 * commutative.
 */
export function latest<V> (a: Stamped<V>, b: Stamped<V>, order: (x: V, y: V) => number): Stamped<V> {
  const byStamp = compareTimestamps(a.stamp, b.stamp)
  if (byStamp !== 0) { return byStamp > 0 ? a : b }
  return order(a.value, b.value) >= 0 ? a : b
}

export function compareValues (a: Canonical, b: Canonical): number {
  return compareUtf8(a.key, b.key)
}

/** The delta of writing `value` at physical time `now`; throws RangeError for a bad `now`. */
export function set (state: LWWRegister, replica: ReplicaId, value: Canonical, now: number): LWWRegister {
  return { stamp: nextTimestamp(state?.stamp ?? null, replica, now), value }
}

export function joinLWWRegisters (a: LWWRegister, b: LWWRegister): LWWRegister {
  if (a === null) { return b }
  if (b === null) { return a }
  return latest(a, b, compareValues)
}

export function lwwRegisterValue (state: LWWRegister): JsonValue {
  return state?.value.value ?? null
}

export function writeTimestamp (writer: ByteWriter, stamp: Timestamp): void {
  writer.varint(stamp.wall).varint(stamp.logical).utf8(stamp.replica)
}

export function readTimestamp (reader: ByteReader): Timestamp {
  const wall = reader.varint('timestamp wall time')
  const logical = reader.varint('timestamp logical counter')
  return { wall, logical, replica: readReplica(reader) }
}

export function writeLWWRegister (writer: ByteWriter, state: LWWRegister): void {
  if (state === null) {
    writer.u8(0)
    return
  }
  writer.u8(1)
  writeTimestamp(writer, state.stamp)
  writeJson(writer, state.value)
}

export function readLWWRegister (reader: ByteReader): LWWRegister {
  const present = reader.u8('register flag')
  if (present === 0) { return null }
  if (present !== 1) { throw new DecodeError(`register flag ${present}`) }
  const stamp = readTimestamp(reader)
  return { stamp, value: readJson(reader, 'register value') }
}

export const encodeLWWRegister = (state: LWWRegister): Uint8Array => encodeWith(TYPE_TAGS['lww-register'], writeLWWRegister, state)
export const decodeLWWRegister = (bytes: Uint8Array): Result<LWWRegister> => decodeWith(TYPE_TAGS['lww-register'], readLWWRegister, bytes)

export const lwwRegisterType: CrdtType<LWWRegister> = {
  name: 'lww-register',
  empty: () => null,
  apply: (state, op, env) => {
    const parsed = opOf(op, 'lww-register', ['set'])
    if (!parsed.ok) { return parsed }
    const value = jsonField(parsed.value, 'value')
    if (!value.ok) { return value }
    return guarded(() => set(state, env.replica, value.value, env.now))
  },
  join: joinLWWRegisters,
  value: lwwRegisterValue,
  write: writeLWWRegister,
  read: readLWWRegister
}
