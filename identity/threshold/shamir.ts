/*
 * Shamir secret sharing over the BLS12-381 scalar field. Share i is the
 * polynomial at x = i (1-based indices; x = 0 is the secret). All field
 * arithmetic is noble's Fr.
 */
import { Fr, randomScalar } from '../bls.ts'
import type { RandomBytes } from '../bls.ts'

/** Shamir indices are small positive integers; this bounds every group. */
export const SHARE_INDEX_MAX = 1024

export interface Share {
  /** x-coordinate, 1..SHARE_INDEX_MAX. */
  index: number
  value: bigint
}

/** a_0 = secret, a_1..a_{t-1} uniformly random: degree t−1, so t shares recover it. */
export function randomPolynomial (secret: bigint, threshold: number, randomBytes: RandomBytes): bigint[] {
  if (!Number.isInteger(threshold) || threshold < 1) { throw new RangeError(`threshold must be a positive integer, got ${threshold}`) }
  const coefficients = [Fr.create(secret)]
  for (let k = 1; k < threshold; k++) { coefficients.push(randomScalar(randomBytes)) }
  return coefficients
}

/** The polynomial at x (Horner). */
export function evaluatePolynomial (coefficients: readonly bigint[], x: bigint): bigint {
  let acc = 0n
  for (let k = coefficients.length - 1; k >= 0; k--) { acc = Fr.add(Fr.mul(acc, x), coefficients[k]) }
  return acc
}

export function checkIndex (index: number): void {
  if (!Number.isInteger(index) || index < 1 || index > SHARE_INDEX_MAX) { throw new RangeError(`share index must be an integer in 1..${SHARE_INDEX_MAX}, got ${index}`) }
}

/** Shares 1..n of a polynomial. */
export function sharesOf (coefficients: readonly bigint[], n: number): Share[] {
  if (!Number.isInteger(n) || n < coefficients.length || n > SHARE_INDEX_MAX) { throw new RangeError(`need threshold <= n <= ${SHARE_INDEX_MAX}, got n = ${n}`) }
  return Array.from({ length: n }, (_, i) => ({ index: i + 1, value: evaluatePolynomial(coefficients, BigInt(i + 1)) }))
}

/** Split a secret into n shares, any t of which recover it. */
export function split (secret: bigint, threshold: number, n: number, randomBytes: RandomBytes): Share[] {
  return sharesOf(randomPolynomial(secret, threshold, randomBytes), n)
}

/**
 * Lagrange coefficients at x = 0 for the given distinct indices:
 * λ_i = Π_{j≠i} j / (j − i).
 */
export function lagrangeAtZero (indices: readonly number[]): bigint[] {
  indices.forEach(checkIndex)
  if (new Set(indices).size !== indices.length) { throw new RangeError('share indices must be distinct') }
  return indices.map(i => {
    let numerator = 1n
    let denominator = 1n
    for (const j of indices) {
      if (j === i) { continue }
      numerator = Fr.mul(numerator, BigInt(j))
      denominator = Fr.mul(denominator, Fr.sub(BigInt(j), BigInt(i)))
    }
    return Fr.div(numerator, denominator)
  })
}

/**
 * The secret from at least `threshold` shares (the first `threshold` are
 * used). Fewer, or repeated indices, throw: t − 1 shares say nothing.
 */
export function recover (shares: readonly Share[], threshold: number): bigint {
  if (shares.length < threshold) { throw new RangeError(`need ${threshold} shares, got ${shares.length}`) }
  const used = shares.slice(0, threshold)
  const lambdas = lagrangeAtZero(used.map(s => s.index))
  return used.reduce((acc, s, k) => Fr.add(acc, Fr.mul(lambdas[k], s.value)), 0n)
}
