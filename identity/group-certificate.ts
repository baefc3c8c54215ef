/*
 * Membership certificates signed by a cluster's threshold group key (made
 * by a DKG): pure functions over bytes, no I/O, no clock (the caller passes
 * the time).
 *
 * A group certificate is the group's BLS signature (identity/bls.ts, 96
 * bytes, min-pk) over
 *
 *   "accord-member-cert-group-v1\0" || CBOR {v: 2, cluster, gk, peer, iat, exp}
 *
 * where gk is the 48-byte group public key. No single member holds the
 * group's secret: a signature needs t members' partial signatures (see
 * identity/threshold), so a certificate shows that t members agreed to
 * admit `peer`. The domain differs from the cluster-key certificate's
 * ("accord-member-cert-v1\0") and from anything a generic signing round
 * may sign (node/dkg refuses to sign messages under this prefix except for
 * admission), and the body names the cluster, the group key and the peer,
 * so a certificate cannot be replayed for another peer, cluster or group.
 *
 * On the wire: CBOR [body, signature], at most CERTIFICATE_BYTES_MAX bytes.
 * Decoders are bounded and never throw: they return the object or a reason.
 */
import { decode, encode } from 'cborg'
import { G1_BYTES, G2_BYTES, verify } from './bls.ts'
import { CERTIFICATE_BYTES_MAX } from './cluster-credentials.ts'
import { concat, equalBytes, isCount } from './ed25519.ts'

/** What the group signs: the domain, then the CBOR body. */
export const GROUP_CERT_DOMAIN = new TextEncoder().encode('accord-member-cert-group-v1\0')
/** The longest lifetime of a group certificate (its expiry minus its issue time). */
export const GROUP_CERT_TTL_MS_MAX = 366 * 24 * 3600_000
/** The lifetime admission gives a group certificate unless told otherwise. */
export const GROUP_CERT_TTL_MS_DEFAULT = 90 * 24 * 3600_000
const CLUSTER_NAME_CHARS_MAX = 63
const PEER_ID_CHARS_MAX = 128

export interface GroupCertificate {
  cluster: string
  /** The group's public key (compressed G1, 48 bytes). */
  groupKey: Uint8Array
  peer: string
  issuedAtMs: number
  expiresAtMs: number
}

export interface GroupCertificateExpectations {
  cluster: string
  groupKey: Uint8Array
  /** The peer that presented it (authenticated by Noise). */
  peer: string
  nowMs: number
}

/** The bytes the group signs for `cert` (domain-separated). Throws RangeError on a malformed certificate. */
export function groupCertificateMessage (cert: GroupCertificate): Uint8Array {
  const problem = certificateProblem(cert)
  if (problem !== null) { throw new RangeError(problem) }
  return concat(GROUP_CERT_DOMAIN, encodeBody(cert))
}

/** Whether `message` is under the group certificate domain (what a generic signing round must refuse). */
export function isGroupCertificateMessage (message: Uint8Array): boolean {
  return message.byteLength >= GROUP_CERT_DOMAIN.byteLength && equalBytes(message.subarray(0, GROUP_CERT_DOMAIN.byteLength), GROUP_CERT_DOMAIN)
}

/**
 * The certificate a signing request asks for: what a member checks before
 * it gives its partial signature. Returns the certificate or a reason.
 */
export function parseGroupCertificateMessage (message: Uint8Array): GroupCertificate | string {
  if (!(message instanceof Uint8Array) || message.byteLength > CERTIFICATE_BYTES_MAX) { return 'too large' }
  if (!isGroupCertificateMessage(message)) { return 'not a group certificate message' }
  const body = message.subarray(GROUP_CERT_DOMAIN.byteLength)
  const cert = decodeBody(body)
  if (typeof cert === 'string') { return cert }
  // one encoding per certificate: the signed bytes are the canonical ones
  if (!equalBytes(encodeBody(cert), body)) { return 'not canonical' }
  return cert
}

/** The certificate on the wire: the body the group signed and the group's signature. */
export function encodeGroupCertificate (cert: GroupCertificate, signature: Uint8Array): Uint8Array {
  if (!(signature instanceof Uint8Array) || signature.byteLength !== G2_BYTES) { throw new RangeError(`a group signature has ${G2_BYTES} bytes`) }
  const problem = certificateProblem(cert)
  if (problem !== null) { throw new RangeError(problem) }
  return encode([encodeBody(cert), signature])
}

/** Read a certificate without checking its signature; returns it, or why it is malformed. */
export function decodeGroupCertificate (bytes: Uint8Array): (GroupCertificate & { signature: Uint8Array, message: Uint8Array }) | string {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength > CERTIFICATE_BYTES_MAX) { return 'too large' }
  let outer: unknown
  try { outer = decode(bytes) } catch { return 'not CBOR' }
  if (!Array.isArray(outer) || outer.length !== 2 || !(outer[0] instanceof Uint8Array) || !(outer[1] instanceof Uint8Array)) { return 'malformed' }
  const [body, signature] = outer as [Uint8Array, Uint8Array]
  if (signature.byteLength !== G2_BYTES) { return 'not a group signature' }
  const cert = decodeBody(body)
  if (typeof cert === 'string') { return cert }
  return { ...cert, signature, message: concat(GROUP_CERT_DOMAIN, body) }
}

/**
 * Check a presented group certificate: the cluster, the group key and the
 * peer it names, its validity at `nowMs`, and the group's signature.
 * Returns it, or why it is refused.
 */
export function verifyGroupCertificate (bytes: Uint8Array, expect: GroupCertificateExpectations): GroupCertificate | string {
  const cert = decodeGroupCertificate(bytes)
  if (typeof cert === 'string') { return cert }
  if (cert.cluster !== expect.cluster) { return 'certificate of another cluster' }
  if (!equalBytes(cert.groupKey, expect.groupKey)) { return 'certificate signed by another group key' }
  if (cert.peer !== expect.peer) { return 'certificate of another peer' }
  if (cert.expiresAtMs <= expect.nowMs) { return 'certificate expired' }
  if (!verify(expect.groupKey, cert.message, cert.signature)) { return 'bad group signature' }
  return { cluster: cert.cluster, groupKey: cert.groupKey, peer: cert.peer, issuedAtMs: cert.issuedAtMs, expiresAtMs: cert.expiresAtMs }
}

function encodeBody (cert: GroupCertificate): Uint8Array {
  return encode({ v: 2, cluster: cert.cluster, gk: cert.groupKey, peer: cert.peer, iat: cert.issuedAtMs, exp: cert.expiresAtMs })
}

function decodeBody (body: Uint8Array): GroupCertificate | string {
  let value: unknown
  try { value = decode(body) } catch { return 'not CBOR' }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) { return 'malformed' }
  const { v, cluster, gk, peer, iat, exp, ...rest } = value as Record<string, unknown>
  if (v !== 2) { return 'not a group certificate (version)' }
  if (Object.keys(rest).length > 0) { return 'unknown certificate fields' }
  const cert = { cluster, groupKey: gk, peer, issuedAtMs: iat, expiresAtMs: exp } as GroupCertificate
  const problem = certificateProblem(cert)
  return problem ?? cert
}

function certificateProblem (cert: GroupCertificate): string | null {
  if (typeof cert.cluster !== 'string' || cert.cluster.length < 1 || cert.cluster.length > CLUSTER_NAME_CHARS_MAX) { return 'malformed certificate: cluster' }
  if (!(cert.groupKey instanceof Uint8Array) || cert.groupKey.byteLength !== G1_BYTES) { return 'malformed certificate: group key' }
  if (typeof cert.peer !== 'string' || cert.peer.length < 1 || cert.peer.length > PEER_ID_CHARS_MAX) { return 'malformed certificate: peer' }
  if (!isCount(cert.issuedAtMs) || !isCount(cert.expiresAtMs)) { return 'malformed certificate: times' }
  if (cert.expiresAtMs <= cert.issuedAtMs || cert.expiresAtMs - cert.issuedAtMs > GROUP_CERT_TTL_MS_MAX) { return 'malformed certificate: lifetime' }
  return null
}
