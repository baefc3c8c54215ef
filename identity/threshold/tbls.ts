/*
 * Threshold BLS (t-of-n) over a Feldman-committed sharing: a group public key
 * C_0, public shares f(i)·G1 computed from the commitments, partial
 * signatures σ_i = f(i)·H(m), and σ = Σ λ_i·σ_i for any t valid partials.
 *
 * Every partial is checked against its signer's public share before it is
 * combined, so a bad partial is named (its index returned in `bad`), not
 * just refused: a batch check of all of them first (blst, one multi-pairing),
 * and only when that fails, one check per partial to find the culprits.
 */
import { mulAddUnsafe } from '@noble/curves/abstract/curve.js'
import { G1_BYTES, G2, decodeG2, encodeG1, encodeG2, sign, verify, verifyBatchSameMessage } from '../bls.ts'
import { publicShare } from './feldman.ts'
import { checkIndex, lagrangeAtZero } from './shamir.ts'
import type { Share } from './shamir.ts'
import type { G1Point, G2Point } from '../bls.ts'

export interface PartialSignature {
  index: number
  /** 96-byte compressed G2 point. */
  signature: Uint8Array
}

/**
 * The public side of a threshold group: its commitments (C_0 is the group
 * key), threshold t = commitments.length, and size n. Public shares are
 * computed once and cached, or given when the caller computed them from
 * the same commitments already (a DKG's share record holds them all).
 */
export class ThresholdPublicKey {
  readonly threshold: number
  readonly size: number
  readonly commitments: readonly G1Point[]
  readonly groupKey: Uint8Array
  readonly #publicShares = new Map<number, Uint8Array>()

  constructor (commitments: readonly G1Point[], size: number, publicShares?: readonly Uint8Array[]) {
    if (commitments.length < 1) { throw new RangeError('a threshold key needs at least one commitment') }
    if (!Number.isInteger(size) || size < commitments.length) { throw new RangeError(`group size ${size} is below the threshold ${commitments.length}`) }
    checkIndex(size)
    if (publicShares !== undefined && (publicShares.length !== size || !publicShares.every(s => s instanceof Uint8Array && s.byteLength === G1_BYTES))) {
      throw new RangeError(`the public shares are ${size} of ${G1_BYTES} bytes each`)
    }
    this.threshold = commitments.length
    this.size = size
    this.commitments = commitments
    this.groupKey = encodeG1(commitments[0])
    publicShares?.forEach((share, i) => { this.#publicShares.set(i + 1, share) })
  }

  /** Participant `index`'s public share (48 bytes). */
  publicShare (index: number): Uint8Array {
    if (!Number.isInteger(index) || index < 1 || index > this.size) { throw new RangeError(`no participant ${index} in a group of ${this.size}`) }
    let share = this.#publicShares.get(index)
    if (share === undefined) {
      share = encodeG1(publicShare(this.commitments, index))
      this.#publicShares.set(index, share)
    }
    return share
  }
}

export function partialSign (share: Share, message: Uint8Array): PartialSignature {
  checkIndex(share.index)
  return { index: share.index, signature: sign(share.value, message) }
}

/** Whether a partial is a valid signature of `message` under its signer's public share. */
export function verifyPartial (key: ThresholdPublicKey, message: Uint8Array, partial: PartialSignature): boolean {
  if (!isPartialShape(partial) || partial.index > key.size) { return false }
  return verify(key.publicShare(partial.index), message, partial.signature)
}

/**
 * The partials that are valid signatures of `message` under their signers'
 * public shares, and the indices of the others (malformed ones and repeated
 * indices too): one batch check of all of them (blst, one multi-pairing),
 * and only when that fails, one check per partial to find the culprits.
 * T valid partials of one message always combine into a signature under
 * the group key: the public shares come from the same commitments.
 */
export function checkPartials (key: ThresholdPublicKey, message: Uint8Array, partials: readonly PartialSignature[]): { valid: PartialSignature[], bad: number[] } {
  const bad: number[] = []
  const candidates: PartialSignature[] = []
  const seen = new Set<number>()
  for (const p of partials) {
    if (!isPartialShape(p) || p.index > key.size) {
      if (typeof p?.index === 'number') { bad.push(p.index) }
      continue
    }
    if (seen.has(p.index)) { bad.push(p.index); continue }
    seen.add(p.index)
    candidates.push(p)
  }
  const items = candidates.map(p => ({ publicKey: key.publicShare(p.index), signature: p.signature }))
  if (verifyBatchSameMessage(message, items)) { return { valid: candidates, bad } }
  const valid = candidates.filter((p, k) => {
    const ok = verify(items[k].publicKey, message, p.signature)
    if (!ok) { bad.push(p.index) }
    return ok
  })
  return { valid, bad }
}

export type CombineResult =
  | { ok: true, signature: Uint8Array, bad: number[] }
  | { ok: false, reason: string, bad: number[] }

/**
 * The group signature from the partials: each is verified, the bad ones are
 * listed in `bad` (by index; malformed ones too), and the t valid partials
 * with the lowest indices are combined by Lagrange interpolation in the
 * exponent. The result is verified against the group key before it is
 * returned. Fails, naming the bad ones, when fewer than t are valid.
 */
export function combine (key: ThresholdPublicKey, message: Uint8Array, partials: readonly PartialSignature[]): CombineResult {
  if (partials.length > key.size) { return { ok: false, reason: `more partials (${partials.length}) than group members (${key.size})`, bad: [] } }
  const { valid, bad } = checkPartials(key, message, partials)
  if (valid.length < key.threshold) {
    return { ok: false, reason: `${valid.length} valid partial signatures, ${key.threshold} needed`, bad }
  }

  const used = [...valid].sort((a, b) => a.index - b.index).slice(0, key.threshold)
  const lambdas = lagrangeAtZero(used.map(p => p.index))
  // Partials passed verification, so they decode (blst checked the subgroup).
  const points = used.map(p => decodeG2(p.signature) as G2Point)
  const signature = encodeG2(mulAddUnsafe(G2, points, lambdas))
  if (!verify(key.groupKey, message, signature)) {
    return { ok: false, reason: 'the combined signature does not verify under the group key', bad }
  }
  return { ok: true, signature, bad }
}

/** A group signature is an ordinary BLS signature under the group key. */
export function verifyGroupSignature (key: ThresholdPublicKey | Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  return verify(key instanceof ThresholdPublicKey ? key.groupKey : key, message, signature)
}

function isPartialShape (p: PartialSignature): boolean {
  return p !== null && typeof p === 'object' && Number.isInteger(p.index) && p.index >= 1 && p.signature instanceof Uint8Array
}
