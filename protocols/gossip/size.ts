/**
 * The byte model: how many bytes a message takes on the wire, as an upper
 * bound for a plain length-prefixed binary encoding (the same conventions as
 * protocols/membership/size.ts: 1 byte per tag or flag, ids and keys as a
 * 2-byte length + UTF-8, integers as 8 bytes, values as a 4-byte length +
 * bytes, a 2-byte count before each list). The core keeps every message it
 * builds under messageBytesMax by it, validate.ts refuses inbound messages
 * it says are too big, and a node's share of the store (bytesPerNodeMax) is
 * counted in it. The service's codec must encode within it; the benchmark's
 * bytes per node per second are counted with it.
 */
import { unreachable } from '../common/assert.ts'
import { idBytesMax, utf8Length } from '../membership/size.ts'
import type { DigestPage, GossipMessage, NodeDelta, WireEntry } from './types.ts'

const TAG_BYTES = 1
const FLAG_BYTES = 1
const INT_BYTES = 8
const AGE_BYTES = 4
const LENGTH_BYTES = 2
const VALUE_LENGTH_BYTES = 4
const COUNT_BYTES = 2

/**
 * UTF-8 lengths of the ids and keys seen lately: pages list hundreds of ids,
 * each sized several times per message (built, checked, received), and the
 * same ids come back round after round. Cleared when full (a pure memo: it
 * changes no result).
 */
const textBytesSeen = new Map<string, number>()
const TEXT_BYTES_SEEN_MAX = 65536

function textBytes (text: string): number {
  let bytes = textBytesSeen.get(text)
  if (bytes === undefined) {
    bytes = utf8Length(text)
    if (textBytesSeen.size >= TEXT_BYTES_SEEN_MAX) { textBytesSeen.clear() }
    textBytesSeen.set(text, bytes)
  }
  return bytes
}

/** A node id on the wire: a 2-byte length + UTF-8. */
export function idBytes (id: string): number {
  return LENGTH_BYTES + textBytes(id)
}

export function keyBytes (key: string): number {
  return LENGTH_BYTES + textBytes(key)
}

function valueBytes (value: Uint8Array | null): number {
  return FLAG_BYTES + (value === null ? 0 : VALUE_LENGTH_BYTES + value.byteLength)
}

/** One entry inside a node delta (its node is named once, by the delta). */
export function entryBytes (e: Pick<WireEntry, 'key' | 'value' | 'signature'>): number {
  return keyBytes(e.key) + valueBytes(e.value) + INT_BYTES + LENGTH_BYTES + e.signature.byteLength + AGE_BYTES
}

/** The largest entry with keys of at most `keyLengthMax` UTF-16 units (3 UTF-8 bytes each). */
export function entryBytesMax (keyLengthMax: number, valueBytesMax: number, signatureBytesMax: number): number {
  return LENGTH_BYTES + 3 * keyLengthMax + FLAG_BYTES + VALUE_LENGTH_BYTES + valueBytesMax + INT_BYTES + LENGTH_BYTES + signatureBytesMax + AGE_BYTES
}

/** A node delta without its entries. */
export function nodeDeltaHeadBytes (node: string): number {
  return idBytes(node) + INT_BYTES + COUNT_BYTES
}

export function nodeDeltaBytes (d: NodeDelta): number {
  let total = nodeDeltaHeadBytes(d.node)
  for (const e of d.entries) { total += entryBytes(e) }
  return total
}

/** A version in a digest page, after its node id. */
export const DIGEST_VERSION_BYTES = INT_BYTES

export function digestEntryBytes (node: string): number {
  return idBytes(node) + DIGEST_VERSION_BYTES
}

/** A page without its versions. */
export function pageHeadBytes (after: string | null, until: string | null): number {
  return FLAG_BYTES + (after === null ? 0 : idBytes(after)) + FLAG_BYTES + (until === null ? 0 : idBytes(until)) + COUNT_BYTES
}

export function pageBytes (page: DigestPage): number {
  let total = pageHeadBytes(page.after, page.until)
  for (const v of page.versions) { total += digestEntryBytes(v.node) }
  return total
}

/** Everything but the node deltas and the page. */
export function headerBytes (m: GossipMessage): number {
  const base = TAG_BYTES + idBytes(m.from) + idBytes(m.to)
  switch (m.type) {
    case 'digest': return base + TAG_BYTES
    case 'delta': return base + COUNT_BYTES + FLAG_BYTES
    default: return unreachable(m)
  }
}

/** The largest header, with ids of at most `idLengthMax` units. */
export function headerBytesMax (idLengthMax: number): number {
  return TAG_BYTES + 2 * idBytesMax(idLengthMax) + COUNT_BYTES + FLAG_BYTES
}

/** The largest page head (its two bounds), with ids of at most `idLengthMax` units. */
export function pageHeadBytesMax (idLengthMax: number): number {
  return 2 * (FLAG_BYTES + idBytesMax(idLengthMax)) + COUNT_BYTES
}

export function nodeDeltaHeadBytesMax (idLengthMax: number): number {
  return idBytesMax(idLengthMax) + INT_BYTES + COUNT_BYTES
}

/** The byte model of a whole message. */
export function gossipMessageBytes (m: GossipMessage): number {
  switch (m.type) {
    case 'digest': return headerBytes(m) + pageBytes(m.page)
    case 'delta': {
      let total = headerBytes(m) + (m.page === null ? 0 : pageBytes(m.page))
      for (const d of m.deltas) { total += nodeDeltaBytes(d) }
      return total
    }
    default: return unreachable(m)
  }
}
