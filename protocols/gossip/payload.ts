/**
 * What a node signs for each of its entries: a canonical, unambiguous
 * encoding of (node, key, value, version). Every variable-length field is
 * length-prefixed, so no two different entries share a payload (no "ab"+"c"
 * vs "a"+"bc"), and a tombstone (value null) differs from an empty value.
 * A domain prefix keeps a signature over an entry from passing as one over
 * anything else the same key signs (the libp2p key also signs Noise
 * handshakes and identify records).
 *
 * Layout: DOMAIN | u32 len | node UTF-8 | u32 len | key UTF-8 |
 * u8 (0: null, 1: value) [| u32 len | value] | u64 version, all big-endian.
 */
import type { NodeId } from './types.ts'

const DOMAIN = new TextEncoder().encode('accord/gossip/entry/1\n')
const encoder = new TextEncoder()

export function entryPayload (node: NodeId, key: string, value: Uint8Array | null, version: number): Uint8Array {
  const nodeBytes = encoder.encode(node)
  const keyBytes = encoder.encode(key)
  const valueLength = value === null ? 0 : 4 + value.byteLength
  const out = new Uint8Array(DOMAIN.byteLength + 4 + nodeBytes.byteLength + 4 + keyBytes.byteLength + 1 + valueLength + 8)
  const view = new DataView(out.buffer)
  out.set(DOMAIN, 0)
  let at = DOMAIN.byteLength
  view.setUint32(at, nodeBytes.byteLength)
  out.set(nodeBytes, at + 4)
  at += 4 + nodeBytes.byteLength
  view.setUint32(at, keyBytes.byteLength)
  out.set(keyBytes, at + 4)
  at += 4 + keyBytes.byteLength
  if (value === null) {
    out[at++] = 0
  } else {
    out[at++] = 1
    view.setUint32(at, value.byteLength)
    out.set(value, at + 4)
    at += 4 + value.byteLength
  }
  // Versions stay below 2^53: split into two 32-bit halves.
  view.setUint32(at, Math.floor(version / 2 ** 32))
  view.setUint32(at + 4, version >>> 0)
  return out
}
