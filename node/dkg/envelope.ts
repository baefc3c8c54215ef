/**
 * Every DKG datagram carries one signed statement: a kind, a body and the
 * Ed25519 signature of its author (the `signer`, whose peer id embeds the
 * public key). The signature covers a domain tag, the kind and the
 * SHA-256 digest of the body, so a statement cannot be replayed as another
 * kind, and a member that relays another's statement (the keys in a
 * `begin`) cannot change it. Signing the digest makes a deal's (digest,
 * signature) pair a compact, checkable commitment to it: two such pairs of
 * one dealer with different digests are proof that it equivocated, and
 * members exchange these pairs instead of echoing whole deals.
 */
import { createHash, sign, verify } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { concat } from '../../identity/ed25519.ts'
import { privateKeyObject, publicKeyObject } from '../pbft/crypto.ts'
import { decodeBoundedCbor } from '../raft/codec.ts'
import { DkgError } from './errors.ts'
import type { PrivateKey } from '@libp2p/interface'
import type { KeyObject } from 'node:crypto'

export const ENVELOPE_KINDS = ['start', 'key', 'begin', 'msg', 'seen', 'sign', 'partial', 'confirm'] as const
export type EnvelopeKind = typeof ENVELOPE_KINDS[number]

export interface Envelope {
  kind: EnvelopeKind
  /** The author's peer id. */
  signer: string
  body: Uint8Array
  /** Ed25519, 64 bytes. */
  sig: Uint8Array
}

const SIGNATURE_BYTES = 64
// node:crypto (OpenSSL) keys, made as PBFT makes them (pbft/crypto.ts): it verifies about 10 times faster than @noble/curves
/** Public keys of signers seen, at most (a DKG group is at most 255 members). */
const PUBLIC_KEYS_CACHED_MAX = 1024
const publicKeys = new Map<string, KeyObject | null>()
const DOMAIN = new TextEncoder().encode('accord/dkg/1.0.0 envelope\n')

export const DIGEST_BYTES = 32

export function digestOf (body: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(body).digest())
}

function signedBytes (kind: string, digest: Uint8Array): Uint8Array {
  return concat(concat(DOMAIN, new TextEncoder().encode(`${kind}\n`)), digest)
}

/** The bytes an envelope's signature covers (for signers outside this module: the fuzzer signs its own envelopes). */
export function envelopePayload (kind: string, body: Uint8Array): Uint8Array {
  return signedBytes(kind, digestOf(body))
}

/** Signs with a libp2p Ed25519 key (its raw form is the 32-byte seed, then the public key). */
export function envelopeSigner (privateKey: PrivateKey, signer: string): (kind: EnvelopeKind, body: Uint8Array) => Envelope {
  if (privateKey.type !== 'Ed25519') { throw new Error(`the DKG service signs with Ed25519 peer keys, not ${privateKey.type}`) }
  const secret = privateKeyObject(privateKey.raw.subarray(0, 32))
  return (kind, body) => ({ kind, signer, body, sig: new Uint8Array(sign(null, signedBytes(kind, digestOf(body)), secret)) })
}

/** The envelope if `value` is one, well-formed and signed by its signer; else why not. */
export function checkEnvelope (value: unknown): { ok: true, envelope: Envelope } | { ok: false, reason: string } {
  if (typeof value !== 'object' || value === null) { return { ok: false, reason: 'malformed' } }
  const { kind, signer, body, sig } = value as Record<string, unknown>
  if (typeof kind !== 'string' || !(ENVELOPE_KINDS as readonly string[]).includes(kind)) { return { ok: false, reason: 'malformed' } }
  if (typeof signer !== 'string' || !(body instanceof Uint8Array) || !(sig instanceof Uint8Array) || sig.byteLength !== SIGNATURE_BYTES) { return { ok: false, reason: 'malformed' } }
  const checked = checkSignature(signer, kind, digestOf(body), sig)
  if (checked !== 'ok') { return { ok: false, reason: checked } }
  return { ok: true, envelope: { kind: kind as EnvelopeKind, signer, body, sig } }
}

/** Whether `sig` is `signer`'s signature of a `kind` statement whose body has `digest`. */
export function checkSignature (signer: string, kind: string, digest: Uint8Array, sig: Uint8Array): 'ok' | 'malformed' | 'bad-signature' {
  const key = publicKeyOf(signer)
  if (key === undefined) { return 'malformed' }
  if (key === null || sig.byteLength !== SIGNATURE_BYTES || digest.byteLength !== DIGEST_BYTES) { return 'bad-signature' }
  try {
    return verify(null, signedBytes(kind, digest), key, sig) ? 'ok' : 'bad-signature'
  } catch {
    return 'bad-signature'
  }
}

/** The signer's public key; null for a peer id without an Ed25519 key, undefined for no peer id at all. */
function publicKeyOf (signer: string): KeyObject | null | undefined {
  const cached = publicKeys.get(signer)
  if (cached !== undefined) { return cached }
  try { peerIdFromString(signer) } catch { return undefined }
  const key = publicKeyObject(signer)
  if (publicKeys.size >= PUBLIC_KEYS_CACHED_MAX) { publicKeys.clear() }
  publicKeys.set(signer, key)
  return key
}

/** The body of an envelope whose body is a CBOR map. */
export function envelopeBody (env: Envelope): Record<string, unknown> {
  let value: unknown
  try { value = decodeBoundedCbor(env.body) } catch { throw new DkgError('malformed', `the ${env.kind} body is not CBOR`) }
  if (typeof value !== 'object' || value === null) { throw new DkgError('malformed', `the ${env.kind} body is not a map`) }
  return value as Record<string, unknown>
}
