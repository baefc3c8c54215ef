/**
 * MV-Register (multi-value): a dot kernel of written values. A write covers
 * every value it has seen and adds its own under a fresh dot, so after a
 * join the register holds exactly the writes that no other write saw:
 * concurrent writes are all kept until a later write supersedes them.
 */
import { decodeWith, encodeWith, TYPE_TAGS } from './codec.ts'
import { emptyKernel, joinKernels, kernelDelta, readKernel, writeKernel } from './dot-kernel.ts'
import { readJson, writeJson } from './json.ts'
import { jsonField, opOf } from './ops.ts'
import { distinctValues } from './or-set.ts'
import type { ReplicaId } from './causal.ts'
import type { DotKernel } from './dot-kernel.ts'
import type { Canonical } from './json.ts'
import type { CrdtType, JsonValue, Result } from './types.ts'
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

export type MVRegister = DotKernel<Canonical>

export const emptyMVRegister = (): MVRegister => emptyKernel()

export function set (state: MVRegister, replica: ReplicaId, value: Canonical): MVRegister {
  return kernelDelta(state, () => true, replica, value)
}

export const joinMVRegisters: (a: MVRegister, b: MVRegister) => MVRegister = joinKernels

/** The concurrent values (distinct, sorted by canonical encoding); [] before any write. */
export function mvRegisterValue (state: MVRegister): JsonValue[] {
  return distinctValues(state)
}

export const writeMVRegister = (writer: ByteWriter, state: MVRegister): void => { writeKernel(writer, state, writeJson) }
export const readMVRegister = (reader: ByteReader): MVRegister => readKernel(reader, r => readJson(r, 'register value'))

export const encodeMVRegister = (state: MVRegister): Uint8Array => encodeWith(TYPE_TAGS['mv-register'], writeMVRegister, state)
export const decodeMVRegister = (bytes: Uint8Array): Result<MVRegister> => decodeWith(TYPE_TAGS['mv-register'], readMVRegister, bytes)

export const mvRegisterType: CrdtType<MVRegister> = {
  name: 'mv-register',
  empty: emptyMVRegister,
  apply: (state, op, env) => {
    const parsed = opOf(op, 'mv-register', ['set'])
    if (!parsed.ok) { return parsed }
    const value = jsonField(parsed.value, 'value')
    return value.ok ? { ok: true, value: set(state, env.replica, value.value) } : value
  },
  join: joinMVRegisters,
  value: mvRegisterValue,
  write: writeMVRegister,
  read: readMVRegister
}
