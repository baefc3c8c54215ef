/**
 * Checking the JSON-ish ops a service passes to CrdtType.apply. They come
 * from outside (an API call, a remote request), so they are validated and
 * refused with an error, never trusted.
 */
import { utf8ByteLength } from '../kv/codec.ts'
import { MAP_KEY_BYTES_MAX } from './codec.ts'
import { toCanonical } from './json.ts'
import type { Canonical } from './json.ts'
import type { Result } from './types.ts'

export type OpRecord = Record<string, unknown>

/** The op as a record with an `op` name among `allowed`. */
export function opOf (op: unknown, typeName: string, allowed: readonly string[]): Result<OpRecord & { op: string }> {
  if (typeof op !== 'object' || op === null || Array.isArray(op)) { return { ok: false, error: 'op must be an object' } }
  const name = (op as OpRecord).op
  if (typeof name !== 'string' || !allowed.includes(name)) {
    return { ok: false, error: `${typeName} has no op ${JSON.stringify(name)} (ops: ${allowed.join(', ')})` }
  }
  return { ok: true, value: op as OpRecord & { op: string } }
}

export function positiveIntegerField (op: OpRecord, field: string): Result<number> {
  const value = op[field]
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    return { ok: false, error: `${field} must be a positive safe integer` }
  }
  return { ok: true, value }
}

export function jsonField (op: OpRecord, field: string): Result<Canonical> {
  if (!(field in op)) { return { ok: false, error: `op needs a ${field}` } }
  const value = toCanonical(op[field])
  return value.ok ? value : { ok: false, error: `${field}: ${value.error}` }
}

export function keyField (op: OpRecord): Result<string> {
  const key = op.key
  if (typeof key !== 'string') { return { ok: false, error: 'key must be a string' } }
  if (utf8ByteLength(key) > MAP_KEY_BYTES_MAX) { return { ok: false, error: `key is longer than ${MAP_KEY_BYTES_MAX} bytes` } }
  return { ok: true, value: key }
}

/** Runs a mutator that reports bad arguments with RangeError, turning that into an error value. */
export function guarded<S> (mutate: () => S): Result<S> {
  try {
    return { ok: true, value: mutate() }
  } catch (err) {
    if (err instanceof RangeError) { return { ok: false, error: err.message } }
    throw err
  }
}
