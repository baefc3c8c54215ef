/*
 * Chaum–Pedersen proof of discrete-log equality: for public X = x·G and
 * Y = x·H, proves log_G X = log_H Y without revealing x. Fiat–Shamir:
 * A = w·G, B = w·H, c = H(dst, G, H, X, Y, A, B, context), z = w + c·x;
 * the proof is (c, z). The DKG uses it to reveal a Diffie–Hellman key in a
 * complaint: "this is sk·R for the sk behind my registered key", so anyone
 * can decrypt the disputed share and judge the dealer.
 */
import { isScalar } from './schnorr.ts'
import { baseTimes, baseTimesPublic, checkContext, encoderOf, hashToScalar, hedgedNonce } from './transcript.ts'
import type { Group } from './transcript.ts'
import type { RandomBytes } from '../bls.ts'
import type { CurvePoint } from '@noble/curves/abstract/curve.js'

export interface DleqProof {
  challenge: bigint
  response: bigint
}

const dstOf = (groupName: string): string => `accord-zk-v1:dleq:${groupName}`

export function proveEquality<P extends CurvePoint<any, P>> (group: Group<P>, secret: bigint, H: P, context: Uint8Array, randomBytes: RandomBytes): DleqProof {
  checkContext(context)
  const { Fn, BASE } = group.Point
  const enc = encoderOf(group)
  if (secret <= 0n || secret >= Fn.ORDER) { throw new RangeError('the secret must be a non-zero scalar') }
  const X = baseTimes(group, secret)
  const Y = H.multiply(secret)
  const dst = dstOf(group.name)
  const w = hedgedNonce(dst, Fn.ORDER, randomBytes(32), Fn.toBytes(secret), enc(H), context)
  const A = baseTimes(group, w)
  const B = H.multiply(w)
  const challenge = hashToScalar(dst, Fn.ORDER, enc(BASE), enc(H), enc(X), enc(Y), enc(A), enc(B), context)
  return { challenge, response: Fn.add(w, Fn.mul(challenge, secret)) }
}

/** Whether log_G X = log_H Y, per the proof, in this context. Never throws on a malformed proof. */
export function verifyEquality<P extends CurvePoint<any, P>> (group: Group<P>, X: P, H: P, Y: P, context: Uint8Array, proof: DleqProof): boolean {
  checkContext(context)
  const { Fn, BASE } = group.Point
  const enc = encoderOf(group)
  if (!isScalar(proof?.challenge, Fn.ORDER) || !isScalar(proof?.response, Fn.ORDER)) { return false }
  if (X.is0() || H.is0() || Y.is0()) { return false }
  const A = baseTimesPublic(group, proof.response).subtract(X.multiplyUnsafe(proof.challenge))
  const B = H.multiplyUnsafe(proof.response).subtract(Y.multiplyUnsafe(proof.challenge))
  const challenge = hashToScalar(dstOf(group.name), Fn.ORDER, enc(BASE), enc(H), enc(X), enc(Y), enc(A), enc(B), context)
  return challenge === proof.challenge
}
