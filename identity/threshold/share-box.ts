/*
 * A share encrypted to its recipient's G1 key (ECIES): the dealer picks one
 * ephemeral scalar r per deal and publishes R = r·G1; the box for recipient
 * j is keyed by the Diffie–Hellman point K_j = r·PK_j = sk_j·R through
 * HKDF-SHA256 (salted with R and PK_j, info = the caller's context) and
 * sealed with XChaCha20-Poly1305. The key and nonce are unique per (R, PK_j),
 * so the derived nonce is safe.
 *
 * Why a G1 key rather than X25519: the recipient can reveal K_j with a
 * Chaum–Pedersen proof that it is sk_j·R (identity/zk/dleq.ts), which lets
 * anyone open one disputed box and judge a complaint, without the recipient
 * giving up sk_j. Noble's X25519 exposes no group operations to prove that.
 */
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { concatBytes } from '@noble/hashes/utils.js'
import { encodeG1, scalarFromBytes, scalarToBytes, SCALAR_BYTES } from '../bls.ts'
import type { G1Point } from '../bls.ts'

const TAG_BYTES = 16
export const SEALED_SHARE_BYTES = SCALAR_BYTES + TAG_BYTES

function boxCipher (dh: G1Point, ephemeral: G1Point, recipientKey: G1Point, context: Uint8Array): ReturnType<typeof xchacha20poly1305> {
  const okm = hkdf(sha256, encodeG1(dh), concatBytes(encodeG1(ephemeral), encodeG1(recipientKey)), concatBytes(new TextEncoder().encode('accord-share-box-v1'), context), 32 + 24)
  return xchacha20poly1305(okm.subarray(0, 32), okm.subarray(32))
}

/** The dealer's side: seal `share` for the holder of `recipientKey`, with R = ephemeralSecret·G1 published beside it. */
export function sealShare (ephemeralSecret: bigint, ephemeral: G1Point, recipientKey: G1Point, share: bigint, context: Uint8Array): Uint8Array {
  return boxCipher(recipientKey.multiply(ephemeralSecret), ephemeral, recipientKey, context).encrypt(scalarToBytes(share))
}

/** The Diffie–Hellman point sk·R that opens a box: the recipient computes it, or reveals it with a DLEQ proof. */
export function boxKey (recipientSecret: bigint, ephemeral: G1Point): G1Point {
  return ephemeral.multiply(recipientSecret)
}

/** Open a box with its Diffie–Hellman point; the share, or why not (forged, wrong key, not a scalar). */
export function openShare (dh: G1Point, ephemeral: G1Point, recipientKey: G1Point, sealed: Uint8Array, context: Uint8Array): bigint | string {
  if (!(sealed instanceof Uint8Array) || sealed.length !== SEALED_SHARE_BYTES) { return `a sealed share is ${SEALED_SHARE_BYTES} bytes` }
  let plain: Uint8Array
  try {
    plain = boxCipher(dh, ephemeral, recipientKey, context).decrypt(sealed)
  } catch {
    return 'the sealed share does not open'
  }
  return scalarFromBytes(plain)
}
