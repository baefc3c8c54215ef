/*
 * FROST(Ed25519, SHA-512), RFC 9591: t-of-n threshold Schnorr signatures
 * that verify as plain Ed25519 signatures under the group public key.
 *
 * The protocol itself is @noble/curves' `ed25519_FROST` (a maintained
 * implementation of RFC 9591, checked against its vectors: nonce_generate,
 * signature shares, trusted dealer with VSS). The coordinator's public
 * side (verify_signature_share, aggregate, finding cheaters) is session.ts,
 * on noble's group and field, so that each session's binding factors are
 * computed once. This module is accord's face on both:
 *
 * - participants are numbered 1..total (noble names them by scalar hex);
 * - every input is checked first (lengths, canonical scalars, points that
 *   are not the identity and lie in the prime-order subgroup, participant
 *   counts under a named limit) and refused with a FrostError that says why;
 * - randomness is injected (`randomBytes`), never read from a global;
 * - a failed aggregation names the cheaters, by index, at the cost of one
 *   check per share.
 *
 * A signing session: each chosen signer runs `commit` (round one) and keeps
 * its nonces secret; the coordinator sends the message and every commitment
 * to the signers; each runs `sign` (round two); the coordinator runs
 * `aggregate`, which verifies the result and, when it fails, checks every
 * share to find who sent a bad one.
 */
import { ed25519, ed25519_FROST as suite } from '@noble/curves/ed25519.js'
import { sessionValues, shareIsValid } from './session.ts'
import type { SessionCommitment } from './session.ts'
import type { FrostPublic, FrostSecret, NonceCommitments } from '@noble/curves/abstract/frost.js'
import type { TArg } from '@noble/curves/utils.js'

/** Most participants in a group, and so in a session. Bounds every list a peer can send. */
export const FROST_PARTICIPANTS_MAX = 255
/** Largest message a session signs; sign a digest of anything bigger. */
export const FROST_MESSAGE_BYTES_MAX = 64 * 1024
export const FROST_SCALAR_BYTES = 32
export const FROST_POINT_BYTES = 32
export const FROST_SIGNATURE_BYTES = 64

const Fn = suite.utils.Fn
const Point = ed25519.Point

export class FrostError extends Error {
  override name = 'FrostError'
  /** Indices of signers whose signature shares failed verification. */
  readonly cheaters: number[]

  constructor (message: string, cheaters: number[] = []) {
    super(message)
    this.cheaters = cheaters
  }
}

/** Public data of a key group: what every participant and the coordinator hold. */
export interface FrostGroup {
  threshold: number
  total: number
  /** The group's Ed25519 public key: the VSS commitment to the secret (commitments[0]). */
  groupPublicKey: Uint8Array
  /** Feldman VSS commitments to the sharing polynomial's `threshold` coefficients. */
  commitments: Uint8Array[]
  /** verifyingShares[i - 1] = ScalarBaseMult(signing share of participant i). */
  verifyingShares: Uint8Array[]
}

/** A participant's secret share of the group key. */
export interface FrostShare {
  index: number
  signingShare: Uint8Array
}

/** Round-one secret nonces. Single use: `sign` zeroes them, and refuses zeroed ones. */
export interface FrostNonces {
  hiding: Uint8Array
  binding: Uint8Array
}

/** Round-one public commitment of one signer. */
export interface FrostCommitment {
  index: number
  hiding: Uint8Array
  binding: Uint8Array
}

export interface FrostSignatureShare {
  index: number
  share: Uint8Array
}

export type RandomBytes = (n: number) => Uint8Array

/**
 * Trusted-dealer key generation (RFC 9591 appendix C): a random secret, or
 * `secretKey` to split an existing one, shared t-of-n with VSS commitments.
 * The dealer must hand each share over a confidential channel and forget them.
 */
export function keygen (options: { threshold: number, total: number, randomBytes: RandomBytes, secretKey?: Uint8Array }): { group: FrostGroup, shares: FrostShare[] } {
  checkCounts(options.threshold, options.total)
  if (options.secretKey !== undefined) { checkScalar(options.secretKey, 'secret key') }
  const deal = noble(() => suite.trustedDealer({ min: options.threshold, max: options.total }, undefined, options.secretKey, checkedRandom(options.randomBytes)))
  const group: FrostGroup = {
    threshold: options.threshold,
    total: options.total,
    groupPublicKey: deal.public.commitments[0],
    commitments: deal.public.commitments,
    verifyingShares: range(options.total).map((i) => deal.public.verifyingShares[identifier(i)])
  }
  const shares = range(options.total).map((i) => ({ index: i, signingShare: deal.secretShares[identifier(i)].signingShare }))
  return { group, shares }
}

/**
 * Check a group's public data, e.g. as received from a peer: sizes, points
 * in the prime-order subgroup, and every verifying share consistent with the
 * VSS commitments (RFC 9591 appendix C.2, derive_group_info).
 */
export function checkGroup (group: FrostGroup): void {
  checkCounts(group.threshold, group.total)
  if (!Array.isArray(group.commitments) || group.commitments.length !== group.threshold) {
    throw new FrostError(`a group of threshold ${group.threshold} must have ${group.threshold} VSS commitments`)
  }
  if (!Array.isArray(group.verifyingShares) || group.verifyingShares.length !== group.total) {
    throw new FrostError(`a group of ${group.total} must have ${group.total} verifying shares`)
  }
  const commitments = group.commitments.map((c, j) => parsePoint(c, `VSS commitment ${j}`))
  const groupKey = parsePoint(group.groupPublicKey, 'group public key')
  if (!groupKey.equals(commitments[0])) { throw new FrostError('group public key is not the first VSS commitment') }
  for (let i = 1; i <= group.total; i++) {
    const share = parsePoint(group.verifyingShares[i - 1], `verifying share ${i}`)
    // S_i = sum_j commitments[j] * i^j: public data, so variable time is fine.
    let expected = Point.ZERO
    for (let j = commitments.length - 1; j >= 0; j--) { expected = expected.multiplyUnsafe(BigInt(i)).add(commitments[j]) }
    if (!share.equals(expected)) { throw new FrostError(`verifying share ${i} does not match the VSS commitments`) }
  }
}

/** Check a secret share against the group's VSS commitments (vss_verify). */
export function checkShare (share: FrostShare, group: FrostGroup): void {
  checkIndex(share.index, group.total, 'share')
  checkScalar(share.signingShare, 'signing share')
  noble(() => { suite.validateSecret(secret(share), toPublic(group)) }, `share ${share.index} is not on the group's polynomial`)
}

/** Recover the group secret from at least `threshold` shares (secret_share_combine). */
export function recoverSecret (shares: FrostShare[], group: Pick<FrostGroup, 'threshold' | 'total'>): Uint8Array {
  checkCounts(group.threshold, group.total)
  if (!Array.isArray(shares) || shares.length < group.threshold || shares.length > group.total) {
    throw new FrostError(`recovering needs ${group.threshold} to ${group.total} shares, got ${Array.isArray(shares) ? shares.length : 'none'}`)
  }
  checkDistinct(shares.map((s) => s.index), group.total, 'share')
  for (const s of shares) { checkScalar(s.signingShare, `signing share ${s.index}`) }
  return noble(() => suite.combineSecret(shares.map(secret), { min: group.threshold, max: group.total }))
}

/**
 * Round one: fresh nonces (nonce_generate, hedged with the share) and their
 * commitments. Keep `nonces` secret and use them for one `sign` only.
 */
export function commit (share: FrostShare, randomBytes: RandomBytes): { nonces: FrostNonces, commitment: FrostCommitment } {
  checkIndex(share.index, FROST_PARTICIPANTS_MAX, 'share')
  checkScalar(share.signingShare, 'signing share')
  const { nonces, commitments } = noble(() => suite.commit(secret(share), checkedRandom(randomBytes)))
  return { nonces, commitment: { index: share.index, hiding: commitments.hiding, binding: commitments.binding } }
}

/** Round two: this signer's signature share over `message`. Consumes `nonces`. */
export function sign (share: FrostShare, group: FrostGroup, nonces: FrostNonces, commitments: FrostCommitment[], message: Uint8Array): Uint8Array {
  checkIndex(share.index, group.total, 'share')
  checkScalar(share.signingShare, 'signing share')
  checkScalar(nonces?.hiding, 'hiding nonce')
  checkScalar(nonces?.binding, 'binding nonce')
  checkMessage(message)
  const { list } = checkCommitments(commitments, group)
  if (!commitments.some((c) => c.index === share.index)) { throw new FrostError(`signer ${share.index} is not in the commitment list`) }
  return noble(() => suite.signShare(secret(share), toPublic(group), nonces, list, message))
}

/** verify_signature_share: did signer `index` send a valid share? */
export function verifySignatureShare (group: FrostGroup, commitments: FrostCommitment[], message: Uint8Array, share: FrostSignatureShare): boolean {
  checkMessage(message)
  const session = checkCommitments(commitments, group)
  checkIndex(share.index, group.total, 'signature share')
  const z = parseScalar(share.share, `signature share ${share.index}`)
  const own = session.parsed.find((c) => c.index === share.index)
  if (own === undefined) { throw new FrostError(`signer ${share.index} is not in the commitment list`) }
  const values = sessionValues(parsePoint(group.groupPublicKey, 'group public key').toBytes(), session.parsed, message)
  return shareIsValid(values, own, parsePoint(group.verifyingShares?.[share.index - 1], `verifying share ${share.index}`), z)
}

/**
 * Aggregate one signature share per committed signer into an Ed25519
 * signature (R || z), verified before it is returned. If it does not verify,
 * throws a FrostError whose `cheaters` lists the signers with bad shares.
 */
export function aggregate (group: FrostGroup, commitments: FrostCommitment[], message: Uint8Array, shares: FrostSignatureShare[]): Uint8Array {
  checkMessage(message)
  const session = checkCommitments(commitments, group)
  if (!Array.isArray(shares)) { throw new FrostError('signature shares must be a list') }
  checkDistinct(shares.map((s) => s?.index), group.total, 'signature share')
  const byIndex = new Map<number, bigint>()
  for (const s of shares) {
    if (!session.parsed.some((c) => c.index === s.index)) { throw new FrostError(`signature share ${s.index} comes from a signer without a commitment`) }
    byIndex.set(s.index, parseScalar(s.share, `signature share ${s.index}`))
  }
  const missing = session.parsed.filter((c) => !byIndex.has(c.index)).map((c) => c.index)
  if (missing.length > 0) { throw new FrostError(`no signature share from signer(s) ${missing.join(', ')}`) }

  const groupPublicKey = parsePoint(group.groupPublicKey, 'group public key').toBytes()
  const values = sessionValues(groupPublicKey, session.parsed, message)
  if (values.groupCommitment.is0()) { throw new FrostError('the group commitment is the identity element') }
  let z = Fn.ZERO
  for (const zi of byIndex.values()) { z = Fn.add(z, zi) }
  const signature = new Uint8Array([...values.groupCommitment.toBytes(), ...Fn.toBytes(z)])
  if (verify(signature, message, groupPublicKey)) { return signature }

  const cheaters = session.parsed
    .filter((c) => !shareIsValid(values, c, parsePoint(group.verifyingShares?.[c.index - 1], `verifying share ${c.index}`), byIndex.get(c.index) ?? Fn.ZERO))
    .map((c) => c.index)
  if (cheaters.length > 0) { throw new FrostError(`invalid signature share from signer(s) ${cheaters.join(', ')}`, cheaters) }
  throw new FrostError('aggregation failed: every share verifies but the signature does not (fewer signers than the threshold, or wrong group data)')
}

/** Verify a group signature exactly as any Ed25519 verifier does (RFC 8032, cofactored). */
export function verify (signature: Uint8Array, message: Uint8Array, groupPublicKey: Uint8Array): boolean {
  if (!isBytes(signature, FROST_SIGNATURE_BYTES) || !isBytes(groupPublicKey, FROST_POINT_BYTES) || !(message instanceof Uint8Array)) { return false }
  try {
    return ed25519.verify(signature, message, groupPublicKey, { zip215: false })
  } catch {
    return false
  }
}

function checkCounts (threshold: number, total: number): void {
  // RFC 9591 allows 1-of-n; that is a plain Ed25519 key, and noble (like frost-rs) refuses it.
  if (!Number.isSafeInteger(threshold) || !Number.isSafeInteger(total) || threshold < 2 || threshold > total || total > FROST_PARTICIPANTS_MAX) {
    throw new FrostError(`threshold and total must satisfy 2 <= threshold <= total <= ${FROST_PARTICIPANTS_MAX} (got ${String(threshold)} of ${String(total)})`)
  }
}

function checkIndex (index: unknown, total: number, what: string): asserts index is number {
  if (!Number.isSafeInteger(index) || (index as number) < 1 || (index as number) > total) {
    throw new FrostError(`${what} index must be an integer in 1..${total} (got ${String(index)})`)
  }
}

function checkDistinct (indices: unknown[], total: number, what: string): void {
  const seen = new Set<number>()
  for (const index of indices) {
    checkIndex(index, total, what)
    if (seen.has(index)) { throw new FrostError(`${what} ${index} appears twice`) }
    seen.add(index)
  }
}

function checkScalar (bytes: unknown, what: string): asserts bytes is Uint8Array {
  parseScalar(bytes, what)
}

/** DeserializeScalar: 32 bytes, little-endian, below the group order. */
function parseScalar (bytes: unknown, what: string): bigint {
  if (!isBytes(bytes, FROST_SCALAR_BYTES)) { throw new FrostError(`${what} must be ${FROST_SCALAR_BYTES} bytes`) }
  try {
    return Fn.fromBytes(bytes)
  } catch {
    throw new FrostError(`${what} is not a canonical scalar (it is not below the group order)`)
  }
}

function checkMessage (message: unknown): asserts message is Uint8Array {
  if (!(message instanceof Uint8Array)) { throw new FrostError('the message must be bytes') }
  if (message.byteLength > FROST_MESSAGE_BYTES_MAX) { throw new FrostError(`the message is over ${FROST_MESSAGE_BYTES_MAX} bytes: sign its digest`) }
}

/** Validate a session's commitment list: for noble (signShare) and parsed, sorted by index (session.ts). */
function checkCommitments (commitments: FrostCommitment[], group: FrostGroup): { list: TArg<NonceCommitments[]>, parsed: SessionCommitment[] } {
  checkCounts(group.threshold, group.total)
  if (!Array.isArray(commitments) || commitments.length < group.threshold || commitments.length > group.total) {
    throw new FrostError(`a session needs ${group.threshold} to ${group.total} commitments, got ${Array.isArray(commitments) ? commitments.length : 'none'}`)
  }
  checkDistinct(commitments.map((c) => c?.index), group.total, 'commitment')
  const parsed = commitments.map((c) => ({
    index: c.index,
    hiding: parsePoint(c.hiding, `hiding commitment of signer ${c.index}`),
    binding: parsePoint(c.binding, `binding commitment of signer ${c.index}`)
  })).sort((a, b) => a.index - b.index)
  const list = commitments.map((c) => ({ identifier: identifier(c.index), hiding: c.hiding, binding: c.binding }))
  return { list, parsed }
}

/** DeserializeElement for Ed25519: canonical, not the identity, in the prime-order subgroup. */
function parsePoint (bytes: unknown, what: string): InstanceType<typeof Point> {
  if (!isBytes(bytes, FROST_POINT_BYTES)) { throw new FrostError(`${what} must be ${FROST_POINT_BYTES} bytes`) }
  let point
  try {
    point = Point.fromBytes(bytes, false)
  } catch {
    throw new FrostError(`${what} is not a canonical Ed25519 point`)
  }
  if (point.is0()) { throw new FrostError(`${what} is the identity element`) }
  if (!point.isTorsionFree()) { throw new FrostError(`${what} is not in the prime-order subgroup (small-order component)`) }
  return point
}

function isBytes (value: unknown, length: number): value is Uint8Array {
  return value instanceof Uint8Array && value.byteLength === length
}

function identifier (index: number): string {
  return suite.Identifier.fromNumber(index)
}

function secret (share: FrostShare): TArg<FrostSecret> {
  return { identifier: identifier(share.index), signingShare: share.signingShare }
}

function toPublic (group: FrostGroup): TArg<FrostPublic> {
  const verifyingShares: Record<string, Uint8Array> = {}
  group.verifyingShares.forEach((share, i) => { verifyingShares[identifier(i + 1)] = share })
  return { signers: { min: group.threshold, max: group.total }, commitments: group.commitments, verifyingShares }
}

function checkedRandom (randomBytes: RandomBytes): (n?: number) => Uint8Array {
  return (n = 32) => {
    const bytes = randomBytes(n)
    if (!isBytes(bytes, n)) { throw new FrostError(`randomBytes(${n}) returned ${String((bytes as Uint8Array | undefined)?.byteLength)} bytes`) }
    return bytes
  }
}

/** Run a noble call on inputs already checked here; any refusal it still makes becomes a FrostError. */
function noble<T> (call: () => T, context?: string): T {
  try {
    return call()
  } catch (err) {
    if (err instanceof FrostError) { throw err }
    throw new FrostError(context ?? (err as Error).message)
  }
}

function range (n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1)
}
