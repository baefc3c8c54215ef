/**
 * G-Counter: a grow-only counter, one entry per replica holding the sum of
 * that replica's increments. Join is the entry-wise maximum; an increment's
 * delta is the replica's single new entry.
 */
import { DecodeError } from '../kv/codec.ts'
import { mergeClocks } from './causal.ts'
import { checkAscending, decodeWith, encodeWith, readCount, readReplica, sortedKeys, TYPE_TAGS } from './codec.ts'
import { guarded, opOf, positiveIntegerField } from './ops.ts'
import type { ReplicaId } from './causal.ts'
import type { CrdtType, Result } from './types.ts'
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

export type GCounter = ReadonlyMap<ReplicaId, number>

export function checkAmount (by: number): void {
  if (!Number.isSafeInteger(by) || by < 1) { throw new RangeError(`amount must be a positive safe integer: ${by}`) }
}

/** The delta of adding `by` at `replica`. Throws RangeError for a bad amount or a total past 2^53 - 1. */
export function increment (state: GCounter, replica: ReplicaId, by: number): GCounter {
  checkAmount(by)
  if (gCounterValue(state) + by > Number.MAX_SAFE_INTEGER) { throw new RangeError('counter would exceed 2^53 - 1') }
  return new Map([[replica, (state.get(replica) ?? 0) + by]])
}

/** A G-Counter is a vector clock of increments: the join is the entry-wise maximum. */
export const joinGCounters: (a: GCounter, b: GCounter) => GCounter = mergeClocks

export function gCounterValue (state: GCounter): number {
  let sum = 0
  for (const n of state.values()) { sum += n }
  return sum
}

export function writeGCounter (writer: ByteWriter, state: GCounter): void {
  const replicas = sortedKeys(state)
  writer.varint(replicas.length)
  for (const replica of replicas) { writer.utf8(replica).varint(state.get(replica) ?? 0) }
}

export function readGCounter (reader: ByteReader): GCounter {
  const state = new Map<ReplicaId, number>()
  let previous: string | undefined
  for (let i = readCount(reader, 'counter entries'); i > 0; i--) {
    const replica = readReplica(reader)
    checkAscending(previous, replica, 'counter replica')
    previous = replica
    const n = reader.varint('counter entry')
    if (n === 0) { throw new DecodeError('counter entry is 0') }
    state.set(replica, n)
  }
  return state
}

export const encodeGCounter = (state: GCounter): Uint8Array => encodeWith(TYPE_TAGS['g-counter'], writeGCounter, state)
export const decodeGCounter = (bytes: Uint8Array): Result<GCounter> => decodeWith(TYPE_TAGS['g-counter'], readGCounter, bytes)

export const gCounterType: CrdtType<GCounter> = {
  name: 'g-counter',
  empty: () => new Map(),
  apply: (state, op, env) => {
    const parsed = opOf(op, 'g-counter', ['increment'])
    if (!parsed.ok) { return parsed }
    const by = positiveIntegerField(parsed.value, 'by')
    if (!by.ok) { return by }
    return guarded(() => increment(state, env.replica, by.value))
  },
  join: joinGCounters,
  value: gCounterValue,
  write: writeGCounter,
  read: readGCounter
}
