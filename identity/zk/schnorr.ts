/*
 * Schnorr proof of knowledge of a discrete logarithm x of X = x·G, made
 * non-interactive by Fiat–Shamir: A = w·G, c = H(dst, G, X, A, context),
 * z = w + c·x; the proof is (c, z) and the verifier recomputes
 * A = z·G − c·X. Used as a proof of possession of a key (a BLS key in G1, a
 * DKG encryption key) bound to a context, e.g. a DKG session and member id.
 */
import { numberToBytesBE, bytesToNumberBE } from '@noble/curves/utils.js'
import { baseTimes, baseTimesPublic, checkContext, encoderOf, hashToScalar, hedgedNonce } from './transcript.ts'
import type { Group } from './transcript.ts'
import type { RandomBytes } from '../bls.ts'
import type { CurvePoint } from '@noble/curves/abstract/curve.js'

export interface SchnorrProof {
  challenge: bigint
  response: bigint
}

const dstOf = (groupName: string): string => `accord-zk-v1:schnorr:${groupName}`

export function proveKnowledge<P extends CurvePoint<any, P>> (group: Group<P>, secret: bigint, context: Uint8Array, randomBytes: RandomBytes): SchnorrProof {
  checkContext(context)
  const { Fn, BASE } = group.Point
  const enc = encoderOf(group)
  if (secret <= 0n || secret >= Fn.ORDER) { throw new RangeError('the secret must be a non-zero scalar') }
  const X = baseTimes(group, secret)
  const dst = dstOf(group.name)
  const w = hedgedNonce(dst, Fn.ORDER, randomBytes(32), Fn.toBytes(secret), enc(X), context)
  const A = baseTimes(group, w)
  const challenge = hashToScalar(dst, Fn.ORDER, enc(BASE), enc(X), enc(A), context)
  return { challenge, response: Fn.add(w, Fn.mul(challenge, secret)) }
}

/** Whether `proof` shows knowledge of log_G(publicPoint) in this context. Never throws on a malformed proof. */
export function verifyKnowledge<P extends CurvePoint<any, P>> (group: Group<P>, publicPoint: P, context: Uint8Array, proof: SchnorrProof): boolean {
  checkContext(context)
  const { Fn, BASE } = group.Point
  const enc = encoderOf(group)
  if (!isScalar(proof?.challenge, Fn.ORDER) || !isScalar(proof?.response, Fn.ORDER) || publicPoint.is0()) { return false }
  const A = baseTimesPublic(group, proof.response).subtract(publicPoint.multiplyUnsafe(proof.challenge))
  if (A.is0()) { return false }
  const challenge = hashToScalar(dstOf(group.name), Fn.ORDER, enc(BASE), enc(publicPoint), enc(A), context)
  return challenge === proof.challenge
}

export function encodeScalarPair (a: bigint, b: bigint, scalarBytes: number): Uint8Array {
  const out = new Uint8Array(2 * scalarBytes)
  out.set(numberToBytesBE(a, scalarBytes), 0)
  out.set(numberToBytesBE(b, scalarBytes), scalarBytes)
  return out
}

/** Two scalars below `order`, or a reason. */
export function decodeScalarPair (bytes: Uint8Array, scalarBytes: number, order: bigint): [bigint, bigint] | string {
  if (!(bytes instanceof Uint8Array) || bytes.length !== 2 * scalarBytes) { return `a proof is ${2 * scalarBytes} bytes` }
  const a = bytesToNumberBE(bytes.subarray(0, scalarBytes))
  const b = bytesToNumberBE(bytes.subarray(scalarBytes))
  if (a >= order || b >= order) { return 'proof scalar out of range' }
  return [a, b]
}

export function isScalar (s: unknown, order: bigint): s is bigint {
  return typeof s === 'bigint' && s >= 0n && s < order
}
