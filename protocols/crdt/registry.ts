/**
 * The type registry: every CRDT type by name, behind the uniform CrdtType
 * interface, so a service can create, mutate, join, read and ship any of
 * them without knowing which it holds. Also a small replica handle that
 * keeps one state and applies ops to it.
 */
import { checkReplica, decodeWith, encodeWith, TYPE_TAGS } from './codec.ts'
import { gCounterType } from './g-counter.ts'
import { gSetType } from './g-set.ts'
import { lwwMapType } from './lww-map.ts'
import { lwwRegisterType } from './lww-register.ts'
import { mvRegisterType } from './mv-register.ts'
import { orMapType } from './or-map.ts'
import { orSetType } from './or-set.ts'
import { pnCounterType } from './pn-counter.ts'
import { rgaType } from './rga-type.ts'
import type { CrdtType, JsonValue, Result } from './types.ts'

export const CRDT_TYPE_NAMES = [
  'g-counter',
  'pn-counter',
  'g-set',
  'or-set',
  'lww-register',
  'mv-register',
  'or-map',
  'lww-map',
  'rga'
] as const

export type CrdtTypeName = typeof CRDT_TYPE_NAMES[number]

const TYPES = new Map<string, CrdtType<unknown>>()
const lookup = (name: string): CrdtType<unknown> | undefined => TYPES.get(name)

for (const type of [gCounterType, pnCounterType, gSetType, orSetType, lwwRegisterType, mvRegisterType, orMapType(lookup), lwwMapType, rgaType] as Array<CrdtType<unknown>>) {
  TYPES.set(type.name, type)
}

export function isCrdtTypeName (name: unknown): name is CrdtTypeName {
  return typeof name === 'string' && TYPES.has(name)
}

export function crdtType (name: CrdtTypeName): CrdtType<unknown> {
  return TYPES.get(name) as CrdtType<unknown>
}

/** A state's full encoding: format version, type tag, body. */
export function encodeState (name: CrdtTypeName, state: unknown): Uint8Array {
  return encodeWith(TYPE_TAGS[name], crdtType(name).write, state)
}

/** Decodes a state or delta of type `name`; malformed bytes give an error, never an exception. */
export function decodeState (name: CrdtTypeName, bytes: Uint8Array): Result<unknown> {
  return decodeWith(TYPE_TAGS[name], crdtType(name).read, bytes)
}

/**
 * One replica's copy of one CRDT: applies local ops (returning the delta to
 * ship) and joins remote deltas or states. It owns its state: for a type
 * with `absorb` (rga) it joins in place, so `state` is live (read it, do
 * not keep or change it).
 */
export class CrdtReplica {
  readonly typeName: CrdtTypeName
  readonly replica: string
  private readonly type: CrdtType<unknown>
  private current: unknown

  /** Throws RangeError for an unknown type or a bad replica id (local programming errors). */
  constructor (typeName: CrdtTypeName, replica: string) {
    if (!isCrdtTypeName(typeName)) { throw new RangeError(`unknown CRDT type ${JSON.stringify(typeName)}`) }
    const checked = checkReplica(replica)
    if (!checked.ok) { throw new RangeError(checked.error) }
    this.typeName = typeName
    this.replica = replica
    this.type = crdtType(typeName)
    this.current = this.type.empty()
  }

  get state (): unknown {
    return this.current
  }

  /** Applies a local op at physical time `now` (ms; only LWW types read it); returns its delta. */
  apply (op: unknown, now: number): Result<unknown> {
    const delta = this.type.apply(this.current, op, { replica: this.replica, now })
    if (delta.ok) { this.join(delta.value) }
    return delta
  }

  /** Joins a remote delta or state (already decoded). */
  join (remote: unknown): void {
    this.current = this.type.absorb !== undefined ? this.type.absorb(this.current, remote) : this.type.join(this.current, remote)
  }

  /** Decodes and joins a remote delta or state. */
  joinEncoded (bytes: Uint8Array): Result<undefined> {
    const remote = decodeState(this.typeName, bytes)
    if (!remote.ok) { return remote }
    this.join(remote.value)
    return { ok: true, value: undefined }
  }

  value (): JsonValue {
    return this.type.value(this.current)
  }

  encode (): Uint8Array {
    return encodeState(this.typeName, this.current)
  }
}

export function createReplica (typeName: CrdtTypeName, replica: string): CrdtReplica {
  return new CrdtReplica(typeName, replica)
}
