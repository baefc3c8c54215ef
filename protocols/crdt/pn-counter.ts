/**
 * PN-Counter: two G-Counters, one of increments and one of decrements; the
 * value is their difference.
 */
import { decodeWith, encodeWith, TYPE_TAGS } from './codec.ts'
import { checkAmount, gCounterValue, increment as gIncrement, joinGCounters, readGCounter, writeGCounter } from './g-counter.ts'
import { guarded, opOf, positiveIntegerField } from './ops.ts'
import type { ReplicaId } from './causal.ts'
import type { GCounter } from './g-counter.ts'
import type { CrdtType, Result } from './types.ts'
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

export interface PNCounter {
  readonly p: GCounter
  readonly n: GCounter
}

const EMPTY: GCounter = new Map()

export function emptyPNCounter (): PNCounter {
  return { p: EMPTY, n: EMPTY }
}

/** The delta of adding `by`; throws RangeError for a bad amount or overflow. */
export function increment (state: PNCounter, replica: ReplicaId, by: number): PNCounter {
  checkAmount(by)
  return { p: gIncrement(state.p, replica, by), n: EMPTY }
}

/** The delta of subtracting `by`; throws RangeError for a bad amount or overflow. */
export function decrement (state: PNCounter, replica: ReplicaId, by: number): PNCounter {
  checkAmount(by)
  return { p: EMPTY, n: gIncrement(state.n, replica, by) }
}

export function joinPNCounters (a: PNCounter, b: PNCounter): PNCounter {
  return { p: joinGCounters(a.p, b.p), n: joinGCounters(a.n, b.n) }
}

export function pnCounterValue (state: PNCounter): number {
  return gCounterValue(state.p) - gCounterValue(state.n)
}

export function writePNCounter (writer: ByteWriter, state: PNCounter): void {
  writeGCounter(writer, state.p)
  writeGCounter(writer, state.n)
}

export function readPNCounter (reader: ByteReader): PNCounter {
  const p = readGCounter(reader)
  return { p, n: readGCounter(reader) }
}

export const encodePNCounter = (state: PNCounter): Uint8Array => encodeWith(TYPE_TAGS['pn-counter'], writePNCounter, state)
export const decodePNCounter = (bytes: Uint8Array): Result<PNCounter> => decodeWith(TYPE_TAGS['pn-counter'], readPNCounter, bytes)

export const pnCounterType: CrdtType<PNCounter> = {
  name: 'pn-counter',
  empty: emptyPNCounter,
  apply: (state, op, env) => {
    const parsed = opOf(op, 'pn-counter', ['increment', 'decrement'])
    if (!parsed.ok) { return parsed }
    const by = positiveIntegerField(parsed.value, 'by')
    if (!by.ok) { return by }
    const mutate = parsed.value.op === 'increment' ? increment : decrement
    return guarded(() => mutate(state, env.replica, by.value))
  },
  join: joinPNCounters,
  value: pnCounterValue,
  write: writePNCounter,
  read: readPNCounter
}
