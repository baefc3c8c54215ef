/**
 * Binary framing shared by the CRDT encodings, on top of the KV codec's
 * ByteWriter/ByteReader. A top-level encoding is `u8 format version,
 * u8 type tag, body`, and a body lists its entries in a canonical order, so equal states encode
 * to equal bytes. Decoding is bounded by the limits below and returns an
 * error value; it never throws on malformed bytes.
 */
import { ByteReader, ByteWriter, compareUtf8, DecodeError, utf8ByteLength } from '../kv/codec.ts'
import type { Result } from './types.ts'

export const CRDT_FORMAT_VERSION = 1
/** Largest encoding decode() accepts. */
export const CRDT_ENCODING_BYTES_MAX = 16 * 1024 * 1024
/** Most entries (replicas, dots, elements, keys) in any one list of an encoding. */
export const CRDT_ENTRIES_MAX = 100_000
export const REPLICA_ID_BYTES_MAX = 256
export const MAP_KEY_BYTES_MAX = 1024
/** How deep OR-Maps may nest inside OR-Maps. */
export const NESTING_DEPTH_MAX = 8

/** Type tags of the encodings: stable wire values, never reuse one. */
export const TYPE_TAGS = {
  'g-counter': 1,
  'pn-counter': 2,
  'g-set': 3,
  'or-set': 4,
  'lww-register': 5,
  'mv-register': 6,
  'or-map': 7,
  'lww-map': 8,
  rga: 9
} as const

export function encodeWith<S> (tag: number, write: (w: ByteWriter, s: S) => void, state: S): Uint8Array {
  const writer = new ByteWriter()
  writer.u8(CRDT_FORMAT_VERSION).u8(tag)
  write(writer, state)
  return writer.finish()
}

export function decodeWith<S> (tag: number, read: (r: ByteReader, depth: number) => S, bytes: unknown): Result<S> {
  if (!(bytes instanceof Uint8Array)) { return { ok: false, error: 'encoding must be a Uint8Array' } }
  if (bytes.length > CRDT_ENCODING_BYTES_MAX) { return { ok: false, error: `encoding is ${bytes.length} bytes, more than ${CRDT_ENCODING_BYTES_MAX}` } }
  try {
    const reader = new ByteReader(bytes)
    const version = reader.u8('format version')
    if (version !== CRDT_FORMAT_VERSION) { throw new DecodeError(`unknown format version ${version}`) }
    const found = reader.u8('type tag')
    if (found !== tag) { throw new DecodeError(`type tag ${found}, expected ${tag}`) }
    const state = read(reader, 0)
    reader.end('state')
    return { ok: true, value: state }
  } catch (err) {
    if (err instanceof DecodeError) { return { ok: false, error: `malformed encoding: ${err.message}` } }
    throw err
  }
}

/** A list length, bounded by CRDT_ENTRIES_MAX and by the bytes left (each entry takes at least one). */
export function readCount (reader: ByteReader, what: string): number {
  const count = reader.varint(`${what} count`)
  if (count > CRDT_ENTRIES_MAX) { throw new DecodeError(`${what} count ${count} is more than ${CRDT_ENTRIES_MAX}`) }
  if (count > reader.remaining) { throw new DecodeError(`${what} count ${count} runs past the end`) }
  return count
}

export function readReplica (reader: ByteReader): string {
  return reader.utf8('replica id', REPLICA_ID_BYTES_MAX)
}

/** Checks that `next` sorts strictly after `previous` (by code point), so lists are canonical and duplicate-free. */
export function checkAscending (previous: string | undefined, next: string, what: string): void {
  if (previous !== undefined && compareUtf8(previous, next) >= 0) { throw new DecodeError(`${what} out of order or repeated`) }
}

export function sortedKeys<V> (map: ReadonlyMap<string, V>): string[] {
  return [...map.keys()].sort(compareUtf8)
}

export function checkReplica (replica: unknown): Result<string> {
  if (typeof replica !== 'string' || replica.length === 0) { return { ok: false, error: 'replica id must be a non-empty string' } }
  if (utf8ByteLength(replica) > REPLICA_ID_BYTES_MAX) { return { ok: false, error: `replica id is longer than ${REPLICA_ID_BYTES_MAX} bytes` } }
  return { ok: true, value: replica }
}
