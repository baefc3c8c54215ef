/*
 * The public half of a FROST(Ed25519, SHA-512) signing session, RFC 9591
 * sections 4.2-4.6: interpolating values, binding factors, the group
 * commitment and the challenge, computed once per session.
 *
 * noble computes the same values inside signShare/verifyShare/aggregate but
 * does not expose them, and its aggregate re-derives them for every share
 * when it looks for a cheater: O(t^2) point work, minutes for t in the
 * hundreds. The coordinator (aggregate, verifySignatureShare in index.ts)
 * computes them here once, so finding cheaters costs one check per share.
 * Inputs are already validated by the caller; scalar arithmetic is noble's
 * field, hashing is @noble/hashes.
 */
import { ed25519 } from '@noble/curves/ed25519.js'
import { bytesToNumberLE, concatBytes } from '@noble/curves/utils.js'
import { sha512 } from '@noble/hashes/sha2.js'
import { assert } from '../../protocols/common/assert.ts'

const Fn = ed25519.Point.Fn
type Point = InstanceType<typeof ed25519.Point>

const CONTEXT = 'FROST-ED25519-SHA512-v1'
const encoder = new TextEncoder()
const H1_PREFIX = encoder.encode(`${CONTEXT}rho`)
const H4_PREFIX = encoder.encode(`${CONTEXT}msg`)
const H5_PREFIX = encoder.encode(`${CONTEXT}com`)

/** One signer's validated round-one commitment. */
export interface SessionCommitment {
  index: number
  hiding: Point
  binding: Point
}

export interface SessionValues {
  /** Binding factor of each signer, by index. */
  bindingFactors: Map<number, bigint>
  /** Lagrange coefficient of each signer at 0 over the session's signers. */
  lambdas: Map<number, bigint>
  /** R = sum(D_i + rho_i * E_i). */
  groupCommitment: Point
  /** c = H2(R || PK || msg), the RFC 8032 challenge. */
  challenge: bigint
}

/** Hash to a scalar: SHA-512, read little-endian, reduced mod L (H1, H2, H3 of the suite). */
function hashToScalar (...parts: Uint8Array[]): bigint {
  return Fn.create(bytesToNumberLE(sha512(concatBytes(...parts))))
}

function scalarBytes (index: number): Uint8Array {
  return Fn.toBytes(BigInt(index))
}

/** `commitments` sorted by index, distinct, non-empty; `groupPublicKey` is its canonical encoding. */
export function sessionValues (groupPublicKey: Uint8Array, commitments: SessionCommitment[], message: Uint8Array): SessionValues {
  // encode_group_commitment_list, then compute_binding_factors (section 4.4)
  const encoded = concatBytes(...commitments.flatMap((c) => [scalarBytes(c.index), c.hiding.toBytes(), c.binding.toBytes()]))
  const prefix = concatBytes(groupPublicKey, sha512(concatBytes(H4_PREFIX, message)), sha512(concatBytes(H5_PREFIX, encoded)))
  const bindingFactors = new Map(commitments.map((c) => [c.index, hashToScalar(H1_PREFIX, prefix, scalarBytes(c.index))]))

  // compute_group_commitment (section 4.5); public data, so variable time is fine
  let groupCommitment = ed25519.Point.ZERO
  for (const c of commitments) {
    groupCommitment = groupCommitment.add(c.hiding).add(c.binding.multiplyUnsafe(lookup(bindingFactors, c.index)))
  }

  // compute_challenge (section 4.6): H2 carries no context string, for RFC 8032 compatibility
  const challenge = hashToScalar(groupCommitment.toBytes(), groupPublicKey, message)

  // derive_interpolating_value (section 4.2) for every signer
  const xs = commitments.map((c) => BigInt(c.index))
  const lambdas = new Map(xs.map((xi) => {
    let numerator = Fn.ONE
    let denominator = Fn.ONE
    for (const xj of xs) {
      if (xj === xi) { continue }
      numerator = Fn.mul(numerator, xj)
      denominator = Fn.mul(denominator, Fn.sub(xj, xi))
    }
    return [Number(xi), Fn.div(numerator, denominator)]
  }))
  return { bindingFactors, lambdas, groupCommitment, challenge }
}

/**
 * verify_signature_share (section 5.4): z_i * B == D_i + rho_i * E_i + (c * lambda_i) * PK_i.
 * All inputs are public, so variable-time multiplication is fine.
 */
export function shareIsValid (values: SessionValues, commitment: SessionCommitment, verifyingShare: Point, share: bigint): boolean {
  const rho = lookup(values.bindingFactors, commitment.index)
  const lambda = lookup(values.lambdas, commitment.index)
  const expected = commitment.hiding
    .add(commitment.binding.multiplyUnsafe(rho))
    .add(verifyingShare.multiplyUnsafe(Fn.mul(values.challenge, lambda)))
  return ed25519.Point.BASE.multiplyUnsafe(share).equals(expected)
}

function lookup (values: Map<number, bigint>, index: number): bigint {
  const value = values.get(index)
  assert(value !== undefined, `signer ${index} is not in the session`)
  return value
}
