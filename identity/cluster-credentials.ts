/*
 * A cluster's credentials, as pure functions over bytes and keys.
 *
 * - The cluster key: an Ed25519 key made by the cluster's founder. Its
 *   public half names the cluster; members hold the private half.
 * - A membership certificate: the cluster key's signature over (cluster
 *   name, cluster public key, member peer id, issue time). A node presents
 *   it on every connection; a peer without a valid one is not served.
 * - A join token: the cluster key's signature over (cluster name, cluster
 *   public key, expiry, nonce). Whoever holds an unexpired token may
 *   exchange it once per identity for a certificate (see node/admission).
 *   The token carries the cluster public key, so the joiner also learns
 *   which cluster it is joining and can check what members present.
 *
 * Signatures are domain-separated ("accord-member-cert-v1" and
 * "accord-join-token-v1" prefixes), so a signature over one kind of object
 * can never pass as the other. Every decoder is bounded and never throws:
 * it returns the object or a reason.
 */
import { decode, encode } from 'cborg'
import { concat, equalBytes, isCount, isEd25519PublicKey, verifyEd25519 } from './ed25519.ts'
import type { PrivateKey } from '@libp2p/interface'

export const CERTIFICATE_BYTES_MAX = 1024
export const JOIN_TOKEN_CHARS_MAX = 1024
export const JOIN_TOKEN_PREFIX = 'accord-join-1.'
const SIGNATURE_BYTES = 64
const NONCE_BYTES = 16
const CLUSTER_NAME_CHARS_MAX = 63
const PEER_ID_CHARS_MAX = 128

const CERT_DOMAIN = new TextEncoder().encode('accord-member-cert-v1\0')
const TOKEN_DOMAIN = new TextEncoder().encode('accord-join-token-v1\0')

export interface MemberCertificate {
  cluster: string
  /** The cluster's public key (raw Ed25519, 32 bytes). */
  clusterKey: Uint8Array
  peer: string
  issuedAtMs: number
}

export interface JoinToken {
  cluster: string
  clusterKey: Uint8Array
  expiresAtMs: number
  nonce: Uint8Array
}

/** The raw public key of a cluster key: what certificates and tokens name. */
export function clusterPublicKey (clusterKey: PrivateKey): Uint8Array {
  if (clusterKey.type !== 'Ed25519') { throw new TypeError('a cluster key must be an Ed25519 key') }
  return clusterKey.publicKey.raw
}

/** A short, printable id of a cluster key (base64url of its first 12 bytes). */
export function clusterKeyId (clusterKey: Uint8Array): string {
  return Buffer.from(clusterKey.subarray(0, 12)).toString('base64url')
}

export async function issueCertificate (clusterKey: PrivateKey, cert: Omit<MemberCertificate, 'clusterKey'>): Promise<Uint8Array> {
  const body = encode({ v: 1, cluster: cert.cluster, ck: clusterPublicKey(clusterKey), peer: cert.peer, iat: cert.issuedAtMs })
  const sig = await clusterKey.sign(concat(CERT_DOMAIN, body))
  return encode([body, sig])
}

export interface CertificateExpectations {
  cluster: string
  clusterKey: Uint8Array
  /** The peer that presented it (authenticated by Noise). */
  peer: string
}

/** Check a presented certificate; returns it, or why it is refused. */
export async function verifyCertificate (bytes: Uint8Array, expect: CertificateExpectations): Promise<MemberCertificate | string> {
  const signed = decodeSigned(bytes, CERTIFICATE_BYTES_MAX)
  if (typeof signed === 'string') { return signed }
  const body = signed.body
  if (body.v !== 1) { return 'unsupported certificate version' }
  if (typeof body.cluster !== 'string' || typeof body.peer !== 'string' || !isEd25519PublicKey(body.ck) || !isCount(body.iat)) { return 'malformed certificate' }
  if (body.cluster !== expect.cluster) { return 'certificate of another cluster' }
  if (!equalBytes(body.ck, expect.clusterKey)) { return 'certificate signed by another cluster key' }
  if (body.peer !== expect.peer) { return 'certificate of another peer' }
  if (!await verifyEd25519(expect.clusterKey, concat(CERT_DOMAIN, signed.bodyBytes), signed.sig)) { return 'bad certificate signature' }
  return { cluster: body.cluster, clusterKey: body.ck, peer: body.peer, issuedAtMs: body.iat }
}

export async function createJoinToken (clusterKey: PrivateKey, token: Omit<JoinToken, 'clusterKey'>): Promise<string> {
  if (token.nonce.byteLength !== NONCE_BYTES) { throw new RangeError(`a join token nonce has ${NONCE_BYTES} bytes`) }
  const body = encode({ v: 1, cluster: token.cluster, ck: clusterPublicKey(clusterKey), exp: token.expiresAtMs, n: token.nonce })
  const sig = await clusterKey.sign(concat(TOKEN_DOMAIN, body))
  return JOIN_TOKEN_PREFIX + Buffer.from(encode([body, sig])).toString('base64url')
}

/**
 * Read a token without checking its signature or expiry: what a joiner
 * does to learn the cluster it names. Members check it with verifyJoinToken.
 */
export function parseJoinToken (text: string): (JoinToken & { signature: Uint8Array, bodyBytes: Uint8Array }) | string {
  if (typeof text !== 'string' || text.length > JOIN_TOKEN_CHARS_MAX) { return 'join token too long' }
  if (!text.startsWith(JOIN_TOKEN_PREFIX)) { return `not an accord join token (it starts with "${JOIN_TOKEN_PREFIX}")` }
  const payload = text.slice(JOIN_TOKEN_PREFIX.length)
  if (!/^[A-Za-z0-9_-]*$/.test(payload)) { return 'join token is not base64url' }
  const signed = decodeSigned(new Uint8Array(Buffer.from(payload, 'base64url')), JOIN_TOKEN_CHARS_MAX)
  if (typeof signed === 'string') { return `join token: ${signed}` }
  const body = signed.body
  if (body.v !== 1) { return 'unsupported join token version' }
  if (typeof body.cluster !== 'string' || body.cluster.length > CLUSTER_NAME_CHARS_MAX || !isEd25519PublicKey(body.ck) || !isCount(body.exp) ||
    !(body.n instanceof Uint8Array) || body.n.byteLength !== NONCE_BYTES) {
    return 'malformed join token'
  }
  return { cluster: body.cluster, clusterKey: body.ck, expiresAtMs: body.exp, nonce: body.n, signature: signed.sig, bodyBytes: signed.bodyBytes }
}

/** Check a token against this cluster and the time now; returns it, or why it is refused. */
export async function verifyJoinToken (text: string, expect: { cluster: string, clusterKey: Uint8Array, nowMs: number }): Promise<JoinToken | string> {
  const token = parseJoinToken(text)
  if (typeof token === 'string') { return token }
  if (token.cluster !== expect.cluster) { return 'join token of another cluster' }
  if (!equalBytes(token.clusterKey, expect.clusterKey)) { return 'join token signed by another cluster key' }
  if (!await verifyEd25519(expect.clusterKey, concat(TOKEN_DOMAIN, token.bodyBytes), token.signature)) { return 'bad join token signature' }
  if (token.expiresAtMs <= expect.nowMs) { return 'join token expired' }
  return { cluster: token.cluster, clusterKey: token.clusterKey, expiresAtMs: token.expiresAtMs, nonce: token.nonce }
}

interface Signed { body: Record<string, unknown>, bodyBytes: Uint8Array, sig: Uint8Array }

function decodeSigned (bytes: Uint8Array, bytesMax: number): Signed | string {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength > bytesMax) { return 'too large' }
  let outer: unknown
  let body: unknown
  try {
    outer = decode(bytes)
    if (!Array.isArray(outer) || outer.length !== 2 || !(outer[0] instanceof Uint8Array) || !(outer[1] instanceof Uint8Array)) { return 'malformed' }
    body = decode(outer[0])
  } catch {
    return 'not CBOR'
  }
  if (typeof body !== 'object' || body == null || Array.isArray(body)) { return 'malformed' }
  const [bodyBytes, sig] = outer as [Uint8Array, Uint8Array]
  if (sig.byteLength !== SIGNATURE_BYTES) { return 'malformed signature' }
  const record = body as Record<string, unknown>
  if (typeof record.peer === 'string' && record.peer.length > PEER_ID_CHARS_MAX) { return 'malformed' }
  return { body: record, bodyBytes, sig }
}
