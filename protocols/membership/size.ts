/**
 * The byte model: how many bytes a message or update takes on the wire, as an
 * upper bound for a plain length-prefixed binary encoding (1 byte per type or
 * kind tag, ids as a 2-byte length + UTF-8, integers as 8 bytes, metadata as
 * a 4-byte length + bytes, a 2-byte count before each list). The core uses it
 * to keep every message it builds under messageBytesMax and each piggyback
 * under piggybackBytesMax, and validate.ts rejects inbound messages the model
 * says are too big. The service's codec must encode within it (a CBOR
 * encoding of the same fields does), so the limits mean the same on both
 * sides; the benchmark's bytes per member per second are counted with it.
 */
import { unreachable } from '../common/assert.ts'
import type { AliveUpdate, Message, Update } from './types.ts'

const TAG_BYTES = 1
const INT_BYTES = 8
const LENGTH_BYTES = 2
const META_LENGTH_BYTES = 4
const COUNT_BYTES = 2
const BOOL_BYTES = 1

/** UTF-8 length of a string (no allocation; lone surrogates count as 3 bytes, as TextEncoder's replacement does). */
export function utf8Length (text: string): number {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x80) {
      bytes += 1
    } else if (code < 0x800) {
      bytes += 2
    } else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4
        i++
      } else {
        bytes += 3
      }
    } else {
      bytes += 3
    }
  }
  return bytes
}

export function idBytes (id: string): number {
  return LENGTH_BYTES + utf8Length(id)
}

/** Bytes of an id of `length` UTF-16 units at most (3 UTF-8 bytes per unit). */
export function idBytesMax (length: number): number {
  return LENGTH_BYTES + 3 * length
}

export function updateBytes (u: Update): number {
  const head = TAG_BYTES + idBytes(u.id) + INT_BYTES
  switch (u.kind) {
    case 'alive': return head + META_LENGTH_BYTES + u.meta.byteLength
    case 'suspect':
    case 'dead': return head + idBytes(u.from)
    case 'left': return head
    default: return unreachable(u)
  }
}

/** The largest alive update with ids of at most `idLengthMax` units and metadata of at most `metaBytesMax` bytes. */
export function aliveUpdateBytesMax (idLengthMax: number, metaBytesMax: number): number {
  return TAG_BYTES + idBytesMax(idLengthMax) + INT_BYTES + META_LENGTH_BYTES + metaBytesMax
}

/** The smallest update of any kind (an alive or left update of a 1-byte id). */
export const UPDATE_BYTES_MIN = TAG_BYTES + LENGTH_BYTES + 1 + INT_BYTES

/** Bytes of everything but the piggybacked updates (and, for join-ack, its member list). */
export function headerBytes (m: Message): number {
  const base = TAG_BYTES + idBytes(m.from) + idBytes(m.to) + COUNT_BYTES
  switch (m.type) {
    case 'ping':
    case 'nack': return base + INT_BYTES
    case 'ack': return base + INT_BYTES + BOOL_BYTES
    case 'ping-req': return base + INT_BYTES + idBytes(m.target) + BOOL_BYTES
    case 'join': return base + BOOL_BYTES + (m.after === null ? 0 : idBytes(m.after))
    case 'join-ack': return base + COUNT_BYTES + BOOL_BYTES + (m.next === null ? 0 : idBytes(m.next))
    default: return unreachable(m)
  }
}

/** The largest header any message with ids of at most `idLengthMax` units can have. */
export function headerBytesMax (idLengthMax: number): number {
  return TAG_BYTES + 3 * idBytesMax(idLengthMax) + COUNT_BYTES * 2 + INT_BYTES + BOOL_BYTES
}

export function updatesBytes (updates: readonly Update[]): number {
  let total = 0
  for (const u of updates) { total += updateBytes(u) }
  return total
}

/** A batch of updates broadcast by `from` (receiveGossip): the author's id, a count and the updates. */
export function gossipBytes (from: string, updates: readonly Update[]): number {
  return idBytes(from) + COUNT_BYTES + updatesBytes(updates)
}

export function messageBytes (m: Message): number {
  let total = headerBytes(m) + updatesBytes(m.updates)
  if (m.type === 'join-ack') { total += updatesBytes(m.members as AliveUpdate[]) }
  return total
}
