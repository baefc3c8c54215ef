/**
 * Small helpers shared by identity/'s signed statements (cluster
 * certificates and join tokens, key hand-overs): raw Ed25519 public keys,
 * domain-separated signing input, and the checks their decoders make.
 */
import { publicKeyFromRaw } from '@libp2p/crypto/keys'

/** Bytes of a raw Ed25519 public key. */
export const ED25519_PUBLIC_KEY_BYTES = 32

/** Whether `signature` by raw Ed25519 `publicKey` is over `data`; false for a malformed key too. */
export async function verifyEd25519 (publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
  try {
    return await publicKeyFromRaw(publicKey).verify(data, signature)
  } catch {
    return false
  }
}

export function isEd25519PublicKey (value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.byteLength === ED25519_PUBLIC_KEY_BYTES
}

/** A non-negative safe integer (a count, a sequence, a time in ms). */
export function isCount (value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0
}

/** `domain` then `body`: what a domain-separated signature covers. */
export function concat (domain: Uint8Array, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(domain.byteLength + body.byteLength)
  out.set(domain)
  out.set(body, domain.byteLength)
  return out
}

export function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i])
}
