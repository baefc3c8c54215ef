/*
 * Feldman commitments to a sharing polynomial: C_k = a_k·G1. Anyone holding
 * them can compute every participant's public share f(i)·G1 and check a
 * share against it; C_0 is the group public key.
 */
import { G1, decodeG1, encodeG1, mulBaseG1 } from '../bls.ts'
import { checkIndex } from './shamir.ts'
import type { G1Point } from '../bls.ts'

/** a_k·G1 for every coefficient (each non-zero and below r), by blst's native, constant-time base multiplication. */
export function commit (coefficients: readonly bigint[]): G1Point[] {
  return coefficients.map(a => {
    if (a === 0n) { throw new RangeError('invalid scalar: out of range') }
    return mulBaseG1(a)
  })
}

/**
 * f(i)·G1 = Σ C_k·i^k, by Horner: every multiplication is by the small index
 * i, so this costs t short scalar multiplications, not t full ones.
 */
export function publicShare (commitments: readonly G1Point[], index: number): G1Point {
  checkIndex(index)
  const x = BigInt(index)
  let acc = G1.ZERO
  for (let k = commitments.length - 1; k >= 0; k--) { acc = acc.multiplyUnsafe(x).add(commitments[k]) }
  return acc
}

/**
 * Whether `value` (a scalar below r) is the share of participant `index`:
 * value·G1 = f(index)·G1. value·G1 is blst's (native, constant time: the
 * share is secret); f(index)·G1 is publicShare's.
 */
export function verifyShare (commitments: readonly G1Point[], index: number, value: bigint): boolean {
  return mulBaseG1(value).equals(publicShare(commitments, index))
}

export function encodeCommitments (commitments: readonly G1Point[]): Uint8Array[] {
  return commitments.map(encodeG1)
}

/** Commitments from bytes; a reason when any point is malformed or the count is not `threshold`. */
export function decodeCommitments (encoded: unknown, threshold: number): G1Point[] | string {
  if (!Array.isArray(encoded) || encoded.length !== threshold) { return `expected ${threshold} commitments` }
  const points: G1Point[] = []
  for (const bytes of encoded) {
    const p = decodeG1(bytes)
    if (typeof p === 'string') { return `commitment: ${p}` }
    points.push(p)
  }
  return points
}
