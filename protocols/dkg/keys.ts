/**
 * Member encryption keys and the contexts that bind boxes and proofs to a
 * session, a dealer and a member. A member's key carries a Schnorr proof of
 * possession bound to its id, so nobody can register someone else's key
 * (and then "reveal" box keys it cannot compute).
 */
import { bytesToHex } from '@noble/curves/utils.js'
import { decodeG1 } from '../../identity/bls.ts'
import { decodeScalarPair, encodeScalarPair, proveKnowledge, verifyKnowledge } from '../../identity/zk/schnorr.ts'
import { lengthPrefixed, BLS12_381_G1 } from '../../identity/zk/transcript.ts'
import type { G1Point, RandomBytes } from '../../identity/bls.ts'

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)
const SCALAR_BYTES = 32

function keyContext (id: string): Uint8Array {
  return lengthPrefixed(utf8('accord-dkg-v1 encryption key'), utf8(id))
}

/** The context of the box from `dealer` to `member` in `session`. */
export function boxContext (session: Uint8Array, dealer: string, member: string): Uint8Array {
  return lengthPrefixed(utf8('accord-dkg-v1 box'), session, utf8(dealer), utf8(member))
}

/** The context of a complaint's DLEQ proof. */
export function complaintContext (session: Uint8Array, dealer: string, member: string): Uint8Array {
  return lengthPrefixed(utf8('accord-dkg-v1 complaint'), session, utf8(dealer), utf8(member))
}

/** A member's proof of possession of its encryption key (64 bytes). */
export function encryptionKeyProof (id: string, secret: bigint, randomBytes: RandomBytes): Uint8Array {
  const proof = proveKnowledge(BLS12_381_G1, secret, keyContext(id), randomBytes)
  return encodeScalarPair(proof.challenge, proof.response, SCALAR_BYTES)
}

/** Whether a member's key proof verifies (`decoded`: its key, if the caller has already decoded it). */
export function verifyEncryptionKey (member: { id: string, encryptionKey: Uint8Array, encryptionKeyProof: Uint8Array }, decoded?: G1Point): boolean {
  const key = decoded ?? decodeG1(member.encryptionKey)
  const proof = decodeScalarPair(member.encryptionKeyProof, SCALAR_BYTES, BLS12_381_G1.Point.Fn.ORDER)
  if (typeof key === 'string' || typeof proof === 'string') { return false }
  return verifyKnowledge(BLS12_381_G1, key, keyContext(member.id), { challenge: proof[0], response: proof[1] })
}

/** Results an EncryptionKeyChecks holds at most; beyond, proofs are verified but not remembered. */
export const KEY_CHECKS_MAX = 512

/**
 * Proofs of possession already verified, by (id, key, proof): one
 * verification costs a scalar multiplication of the member's key (~2 ms),
 * and a caller that looks at the same key statements more than once (the
 * libp2p service checks each as it arrives or is relayed, then gives the
 * members to the core) passes one of these so each is verified once per
 * node. It only remembers what verifyEncryptionKey itself answered, so a
 * check through it is the same check.
 */
export class EncryptionKeyChecks {
  readonly #results = new Map<string, boolean>()

  /** verifyEncryptionKey(member, decoded), remembered. */
  verify (member: { id: string, encryptionKey: Uint8Array, encryptionKeyProof: Uint8Array }, decoded?: G1Point): boolean {
    if (typeof member?.id !== 'string' || !(member.encryptionKey instanceof Uint8Array) || !(member.encryptionKeyProof instanceof Uint8Array)) { return false }
    const key = `${member.id}\n${bytesToHex(member.encryptionKey)}\n${bytesToHex(member.encryptionKeyProof)}`
    const known = this.#results.get(key)
    if (known !== undefined) { return known }
    const result = verifyEncryptionKey(member, decoded)
    if (this.#results.size < KEY_CHECKS_MAX) { this.#results.set(key, result) }
    return result
  }

  get size (): number { return this.#results.size }
}
