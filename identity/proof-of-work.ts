/*
 * Proof of work for joining an open cluster: a nonce such that
 *
 *   SHA-256("accord-join-pow-v1\0" || u8(bits) || u8(len(cluster)) || cluster || u8(len(peer)) || peer || nonce)
 *
 * starts with at least `bits` zero bits. It is bound to the peer id and the
 * cluster (length-prefixed, so no two (cluster, peer) pairs share an input)
 * and to the difficulty it was made for, so a proof made for one identity,
 * cluster or lower difficulty does not count for another. Checking costs
 * one hash; making one costs 2^bits hashes on average, so each Sybil peer
 * id costs CPU time. A proof names its difficulty (it is hashed in), so a
 * verifier asking for b bits accepts a proof made for b or more.
 *
 * Pure functions: no clock, no randomness (the search is a counter from a
 * caller's start, so a caller can split it into slices and yield between
 * them).
 */
import { sha256 } from '@noble/hashes/sha2.js'

const DOMAIN = new TextEncoder().encode('accord-join-pow-v1\0')
/** The range of difficulties, in leading zero bits. */
export const POW_BITS_MIN = 1
/** 28 bits: about 270 million hashes, several minutes of one core (about 660k hashes/s were measured here). */
export const POW_BITS_MAX = 28
/** The difficulty an open cluster asks for when turned on without one: about a million hashes, a second or two of one core. */
export const POW_BITS_DEFAULT = 20
/** A nonce: 8 bytes (a big-endian counter when solveProofOfWork made it). */
export const POW_NONCE_BYTES = 8
const NAME_BYTES_MAX = 128

export interface ProofOfWorkInput {
  cluster: string
  peer: string
}

/** Whether `bits` is a difficulty this module accepts. */
export function isPowBits (bits: unknown): bits is number {
  return Number.isInteger(bits) && (bits as number) >= POW_BITS_MIN && (bits as number) <= POW_BITS_MAX
}

/** The hash input without the nonce; throws RangeError on names over 128 bytes or a difficulty out of range. */
function prefixOf (input: ProofOfWorkInput, bits: number): Uint8Array {
  if (!isPowBits(bits)) { throw new RangeError(`a proof of work has ${POW_BITS_MIN}..${POW_BITS_MAX} bits of difficulty`) }
  const cluster = new TextEncoder().encode(input.cluster)
  const peer = new TextEncoder().encode(input.peer)
  if (cluster.byteLength > NAME_BYTES_MAX || peer.byteLength > NAME_BYTES_MAX) { throw new RangeError(`a cluster name or peer id has at most ${NAME_BYTES_MAX} bytes`) }
  const prefix = new Uint8Array(DOMAIN.byteLength + 3 + cluster.byteLength + peer.byteLength + POW_NONCE_BYTES)
  let at = 0
  prefix.set(DOMAIN, at); at += DOMAIN.byteLength
  prefix[at++] = bits
  prefix[at++] = cluster.byteLength
  prefix.set(cluster, at); at += cluster.byteLength
  prefix[at++] = peer.byteLength
  prefix.set(peer, at)
  return prefix
}

/** Leading zero bits of `hash`. */
export function leadingZeroBits (hash: Uint8Array): number {
  let bits = 0
  for (const byte of hash) {
    if (byte === 0) { bits += 8; continue }
    return bits + Math.clz32(byte) - 24
  }
  return bits
}

/**
 * Search nonces start, start + 1, ..., start + count - 1 for one whose hash
 * has at least `bits` leading zero bits: the nonce, or null when none in
 * the slice does. Throws RangeError on bad input.
 */
export function solveProofOfWork (input: ProofOfWorkInput, bits: number, start = 0, count = 2 ** 40): Uint8Array | null {
  if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(count) || count < 0) { throw new RangeError('start and count are non-negative safe integers') }
  const data = prefixOf(input, bits)
  const nonceAt = data.byteLength - POW_NONCE_BYTES
  const view = new DataView(data.buffer, nonceAt, POW_NONCE_BYTES)
  const end = Math.min(start + count, Number.MAX_SAFE_INTEGER)
  for (let n = start; n < end; n++) {
    view.setUint32(0, Math.floor(n / 2 ** 32))
    view.setUint32(4, n >>> 0)
    if (leadingZeroBits(sha256(data)) >= bits) { return data.slice(nonceAt) }
  }
  return null
}

/**
 * Whether `nonce` is a proof of work of at least `bits` for `input`: one
 * hash. False (never a throw) on a malformed nonce, a name too long or a
 * difficulty out of range.
 */
export function verifyProofOfWork (input: ProofOfWorkInput, bits: number, nonce: unknown): boolean {
  if (!(nonce instanceof Uint8Array) || nonce.byteLength !== POW_NONCE_BYTES) { return false }
  let data: Uint8Array
  try { data = prefixOf(input, bits) } catch { return false }
  data.set(nonce, data.byteLength - POW_NONCE_BYTES)
  return leadingZeroBits(sha256(data)) >= bits
}
