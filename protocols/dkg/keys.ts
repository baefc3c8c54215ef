/**
 * Member encryption keys and the contexts that bind boxes and proofs to a
 * session, a dealer and a member. A member's key carries a Schnorr proof of
 * possession bound to its id, so nobody can register someone else's key
 * (and then "reveal" box keys it cannot compute).
 */
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
