/*
 * Node key rotation: a hand-over statement, signed by both the old and the
 * new key, that tells peers "the member that was <old key> is now <new key>".
 *
 * Statement body (CBOR): { v: 1, cluster, old, new, seq, ts } where old and
 * new are raw Ed25519 public keys, seq is the rotation's sequence number in
 * this identity's chain (the first rotation of a node's first key is 1) and
 * ts the caller's clock (informational, never trusted for ordering).
 * Each key signs the body under its own role prefix
 * ("accord-key-handover-v1\0old\0" and "...\0new\0"): the old key's
 * signature authorises the hand-over, the new key's proves its holder agrees
 * (nobody can hand a member's identity to a key they do not hold, or claim
 * another's key as their successor), and neither signature can stand in for
 * the other.
 *
 * Peers accept a statement only for the key they currently hold for that
 * member and only at the next sequence number (current + 1). So an old
 * statement is refused once its old key has been replaced, a statement for a
 * key that came back (A -> B -> A) cannot be replayed to undo later
 * rotations, and of two conflicting statements from one key the first seen
 * wins (a second, different one is evidence the old key leaked).
 */
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { decode, encode } from 'cborg'
import { concat, equalBytes, isCount, isEd25519PublicKey, verifyEd25519 } from './ed25519.ts'
import type { Keystore } from './keystore.ts'
import type { PrivateKey } from '@libp2p/interface'

export const HANDOVER_BYTES_MAX = 512
const SIGNATURE_BYTES = 64
const CLUSTER_ID_CHARS_MAX = 63
const DOMAIN = 'accord-key-handover-v1\0'
const OLD_ROLE = new TextEncoder().encode(`${DOMAIN}old\0`)
const NEW_ROLE = new TextEncoder().encode(`${DOMAIN}new\0`)

export interface HandoverStatement {
  clusterId: string
  /** Raw Ed25519 public keys (32 bytes). */
  oldPublicKey: Uint8Array
  newPublicKey: Uint8Array
  sequence: number
  timestampMs: number
}

export interface VerifiedHandover extends HandoverStatement {
  oldPeerId: string
  newPeerId: string
}

/** What a peer knows about the member the statement speaks for. */
export interface HandoverExpectations {
  clusterId: string
  /** The member's key as this peer holds it now. */
  currentPublicKey: Uint8Array
  /** The sequence of the hand-over that made it current (0 if none). */
  currentSequence: number
}

/** Sign a hand-over from `oldKey` to `newKey` with both keys. */
export async function createHandover (oldKey: PrivateKey, newKey: PrivateKey, statement: { clusterId: string, sequence: number, timestampMs: number }): Promise<Uint8Array> {
  if (oldKey.type !== 'Ed25519' || newKey.type !== 'Ed25519') { throw new TypeError('key hand-over needs Ed25519 keys') }
  const body = encodeBody({ ...statement, oldPublicKey: oldKey.publicKey.raw, newPublicKey: newKey.publicKey.raw })
  if (typeof body === 'string') { throw new RangeError(body) }
  return encode([body, await oldKey.sign(concat(OLD_ROLE, body)), await newKey.sign(concat(NEW_ROLE, body))])
}

/**
 * Rotate a keystore's node key: the new keystore (the node's BLS and FROST
 * shares stay) and the hand-over statement to send to peers. The caller
 * writes the keystore durably before publishing the statement.
 */
export async function rotateNodeKey (store: Keystore, newKey: PrivateKey, options: { clusterId: string, timestampMs: number }): Promise<{ store: Keystore, handover: Uint8Array }> {
  if (newKey.equals(store.nodeKey)) { throw new RangeError('the new node key is the current one') }
  const sequence = store.rotation + 1
  const handover = await createHandover(store.nodeKey, newKey, { clusterId: options.clusterId, sequence, timestampMs: options.timestampMs })
  return { store: { ...store, nodeKey: newKey, rotation: sequence, handover }, handover }
}

/** Read a statement without checking its signatures; returns it, or why it is malformed. */
export function decodeHandover (bytes: Uint8Array): { statement: HandoverStatement, body: Uint8Array, oldSignature: Uint8Array, newSignature: Uint8Array } | string {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength > HANDOVER_BYTES_MAX) { return 'hand-over statement too large' }
  let outer: unknown
  let body: unknown
  try {
    outer = decode(bytes)
    if (!Array.isArray(outer) || outer.length !== 3 || !outer.every((part) => part instanceof Uint8Array)) { return 'malformed hand-over statement' }
    body = decode(outer[0])
  } catch {
    return 'hand-over statement is not CBOR'
  }
  const [bodyBytes, oldSignature, newSignature] = outer as [Uint8Array, Uint8Array, Uint8Array]
  if (oldSignature.byteLength !== SIGNATURE_BYTES || newSignature.byteLength !== SIGNATURE_BYTES) { return 'malformed hand-over signature' }
  if (typeof body !== 'object' || body == null || Array.isArray(body)) { return 'malformed hand-over statement' }
  const b = body as Record<string, unknown>
  if (b.v !== 1) { return 'unsupported hand-over statement version' }
  if (Object.keys(b).length !== 6 || typeof b.cluster !== 'string' || !isEd25519PublicKey(b.old) || !isEd25519PublicKey(b.new) || !isCount(b.seq) || !isCount(b.ts)) {
    return 'malformed hand-over statement'
  }
  const statement = { clusterId: b.cluster, oldPublicKey: b.old, newPublicKey: b.new, sequence: b.seq, timestampMs: b.ts }
  const problem = checkStatement(statement)
  if (problem !== undefined) { return problem }
  return { statement, body: bodyBytes, oldSignature, newSignature }
}

/**
 * Check a statement as a peer does before it replaces a member's key:
 * returns the statement with both peer ids, or why it is refused.
 */
export async function verifyHandover (bytes: Uint8Array, expect: HandoverExpectations): Promise<VerifiedHandover | string> {
  const decoded = decodeHandover(bytes)
  if (typeof decoded === 'string') { return decoded }
  const { statement, body } = decoded
  if (statement.clusterId !== expect.clusterId) { return 'hand-over statement of another cluster' }
  if (!equalBytes(statement.oldPublicKey, expect.currentPublicKey)) { return 'hand-over from a key that is not the member\'s current key' }
  if (statement.sequence <= expect.currentSequence) { return `stale hand-over statement (sequence ${statement.sequence}, already at ${expect.currentSequence})` }
  if (statement.sequence !== expect.currentSequence + 1) { return `hand-over statement skips ahead (sequence ${statement.sequence}, expected ${expect.currentSequence + 1})` }
  if (!await verifyEd25519(statement.oldPublicKey, concat(OLD_ROLE, body), decoded.oldSignature)) { return 'bad old-key signature on hand-over statement' }
  if (!await verifyEd25519(statement.newPublicKey, concat(NEW_ROLE, body), decoded.newSignature)) { return 'bad new-key signature on hand-over statement' }
  return {
    ...statement,
    oldPeerId: peerIdFromPublicKey(publicKeyFromRaw(statement.oldPublicKey)).toString(),
    newPeerId: peerIdFromPublicKey(publicKeyFromRaw(statement.newPublicKey)).toString()
  }
}

function encodeBody (s: HandoverStatement): Uint8Array | string {
  const problem = checkStatement(s)
  if (problem !== undefined) { return problem }
  return encode({ v: 1, cluster: s.clusterId, old: s.oldPublicKey, new: s.newPublicKey, seq: s.sequence, ts: s.timestampMs })
}

function checkStatement (s: HandoverStatement): string | undefined {
  if (s.clusterId.length === 0 || s.clusterId.length > CLUSTER_ID_CHARS_MAX) { return `hand-over cluster id must have 1 to ${CLUSTER_ID_CHARS_MAX} characters` }
  if (!isCount(s.sequence) || s.sequence < 1) { return 'hand-over sequence must be a positive integer' }
  if (!isCount(s.timestampMs)) { return 'hand-over timestamp must be a non-negative integer (ms)' }
  if (equalBytes(s.oldPublicKey, s.newPublicKey)) { return 'hand-over to the same key' }
  return undefined
}
