/*
 * Fiat–Shamir for the proofs in identity/zk: the challenge is RFC 9380
 * hash_to_field (expand_message_xmd, SHA-256) onto the group's scalar field,
 * with a domain-separation tag naming the proof kind and the group, over a
 * transcript that binds the caller's context bytes and every public value.
 * Fields are length-prefixed, so no two transcripts encode the same.
 */
import { hash_to_field as hashToField } from '@noble/curves/abstract/hash-to-curve.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { concatBytes } from '@noble/hashes/utils.js'
import { G1, encodeG1, mulBaseG1 } from '../bls.ts'
import type { G1Point } from '../bls.ts'
import type { CurvePoint, CurvePointCons } from '@noble/curves/abstract/curve.js'

/** The caller's context: which protocol, session and purpose a proof belongs to. */
export const CONTEXT_BYTES_MAX = 1024

/**
 * A prime-order group with noble's point API (BLS12-381 G1/G2, ed25519's
 * prime-order subgroup, secp256k1, ...) and a name for the DST.
 */
export interface Group<P extends CurvePoint<any, P>> {
  name: string
  Point: CurvePointCons<P>
  /** The point's canonical bytes in transcripts; point.toBytes() when absent. */
  encode?(point: P): Uint8Array
  /**
   * s·BASE for a scalar 0 ≤ s < order, in constant time, by a faster route
   * than noble's (native code); BASE.multiply / multiplyUnsafe when absent.
   */
  mulBase?(scalar: bigint): P
}

export const BLS12_381_G1: Group<G1Point> = { name: 'BLS12381G1', Point: G1, encode: encodeG1, mulBase: mulBaseG1 }

/** s·BASE for 1 ≤ s < order, constant time: the group's own route if it has one. */
export function baseTimes<P extends CurvePoint<any, P>> (group: Group<P>, scalar: bigint): P {
  return group.mulBase !== undefined ? group.mulBase(scalar) : group.Point.BASE.multiply(scalar)
}

/** s·BASE for a public 0 ≤ s < order (0 gives the identity). */
export function baseTimesPublic<P extends CurvePoint<any, P>> (group: Group<P>, scalar: bigint): P {
  return group.mulBase !== undefined ? group.mulBase(scalar) : group.Point.BASE.multiplyUnsafe(scalar)
}

/** The encoder a group's transcripts use. */
export function encoderOf<P extends CurvePoint<any, P>> (group: Group<P>): (point: P) => Uint8Array {
  return group.encode ?? (point => point.toBytes())
}

export function lengthPrefixed (...fields: Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = []
  for (const f of fields) {
    const len = new Uint8Array(4)
    new DataView(len.buffer).setUint32(0, f.length)
    parts.push(len, f)
  }
  return concatBytes(...parts)
}

/** A scalar in [0, order) from the transcript, domain-separated by `dst`. */
export function hashToScalar (dst: string, order: bigint, ...fields: Uint8Array[]): bigint {
  return hashToField(lengthPrefixed(...fields), 1, { DST: dst, p: order, m: 1, k: 128, expand: 'xmd', hash: sha256 })[0][0]
}

/**
 * A hedged nonce: random bytes mixed with the secret and the transcript, so
 * a weak random source alone does not leak the secret.
 */
export function hedgedNonce (dst: string, order: bigint, random: Uint8Array, secret: Uint8Array, ...fields: Uint8Array[]): bigint {
  for (let attempt = 0; ; attempt++) {
    const n = hashToScalar(`${dst}-nonce`, order, random, secret, Uint8Array.of(attempt), ...fields)
    if (n !== 0n) { return n }
  }
}

export function checkContext (context: Uint8Array): void {
  if (!(context instanceof Uint8Array) || context.length > CONTEXT_BYTES_MAX) { throw new RangeError(`a proof context is at most ${CONTEXT_BYTES_MAX} bytes`) }
}
