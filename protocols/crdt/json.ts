/**
 * JSON values as CRDT payloads. Set elements, register values and map
 * values are compared by their canonical encoding: JSON text with object
 * keys sorted by code point and no whitespace, so `{a:1,b:2}` and
 * `{b:2,a:1}` are the same element on every replica.
 */
import { compareUtf8, DecodeError, utf8ByteLength } from '../kv/codec.ts'
import type { JsonValue, Result } from './types.ts'
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

/** Longest canonical encoding of one value. */
export const JSON_BYTES_MAX = 64 * 1024
/** Deepest nesting of arrays/objects in one value. */
export const JSON_DEPTH_MAX = 32

/**
 * The canonical text of a JSON value, or an error for what JSON cannot carry
 * faithfully (non-finite numbers, undefined, functions, cycles, too deep or
 * too large).
 */
export function canonicalJson (value: unknown): Result<string> {
  try {
    const text = canonical(value, 0)
    if (utf8ByteLength(text) > JSON_BYTES_MAX) { return { ok: false, error: `value encodes to more than ${JSON_BYTES_MAX} bytes` } }
    return { ok: true, value: text }
  } catch (err) {
    return { ok: false, error: (err as Error).message }
  }
}

function canonical (value: unknown, depth: number): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') { return JSON.stringify(value) }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) { throw new RangeError(`not a JSON number: ${value}`) }
    return JSON.stringify(value)
  }
  if (depth >= JSON_DEPTH_MAX) { throw new RangeError(`value nests deeper than ${JSON_DEPTH_MAX}`) }
  // Array.from visits holes (as undefined, refused below), where map() would skip them
  if (Array.isArray(value)) { return `[${Array.from(value, v => canonical(v, depth + 1)).join(',')}]` }
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const record = value as Record<string, unknown>
    const keys = Object.keys(record).sort(compareUtf8)
    return `{${keys.map(k => `${JSON.stringify(k)}:${canonical(record[k], depth + 1)}`).join(',')}}`
  }
  throw new TypeError(`not a JSON value: ${typeof value}`)
}

/** A JSON value with its canonical text: the text is the identity, the value what readers get. */
export interface Canonical {
  readonly key: string
  readonly value: JsonValue
}

export function toCanonical (value: unknown): Result<Canonical> {
  const text = canonicalJson(value)
  if (!text.ok) { return text }
  // re-parsed so the state holds its own copy, immune to later edits by the caller
  return { ok: true, value: { key: text.value, value: JSON.parse(text.value) } }
}

export function writeJson (writer: ByteWriter, value: Canonical): void {
  writer.utf8(value.key)
}

/** Reads canonical JSON text; text that is valid JSON but not canonical is refused, so encodings stay unique. */
export function readJson (reader: ByteReader, what: string): Canonical {
  const text = reader.utf8(what, JSON_BYTES_MAX)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new DecodeError(`${what} is not JSON`)
  }
  const again = canonicalJson(parsed)
  if (!again.ok) { throw new DecodeError(`${what}: ${again.error}`) }
  if (again.value !== text) { throw new DecodeError(`${what} is not canonical JSON`) }
  return { key: text, value: parsed as JsonValue }
}
