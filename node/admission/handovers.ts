/*
 * The hand-overs this node accepted: which member keys were retired, and
 * which key each member holds now (identity/keystore-rotation.ts has the
 * statement itself).
 *
 * A rotated node presents its statement, with the certificate its old key
 * held, on every connection (`/accord/admission/handover/1.0.0`, ./admission.ts).
 * A member accepts it when, in this order:
 *
 * - it is at most HANDOVER_BYTES_MAX bytes and decodes ('oversize', 'malformed');
 * - the old key is not retired already: the same statement again is
 *   accepted (idempotent: a rotated node shows it on every connection)
 *   unless a later hand-over retired its new key as well ('stale'), a
 *   different one at the same sequence is refused as 'conflict' and logged
 *   as evidence that the old key leaked (its holder signed two successors),
 *   any other from a retired key is 'stale';
 * - neither the old nor the new peer id is revoked ('revoked');
 * - the old key is a member's: the certificate shown with it admits the old
 *   peer id, or the old key is one that an earlier accepted hand-over made
 *   current ('unknown-key');
 * - the sequence is the next one for that key: 1 for a key this node
 *   never saw rotate, else the sequence that made it current plus 1
 *   ('stale' for a replay, 'skipped' for one ahead);
 * - the cluster is ours ('wrong-cluster') and both signatures verify
 *   ('bad-signature');
 * - fewer than `entriesMax` hand-overs are held ('full': a member that
 *   rotates without end cannot grow this table; an accepted hand-over is
 *   never evicted, so a retired key cannot come back by being forgotten).
 *
 * Accepting retires the old peer id on this node (admission treats it as
 * revoked) and records the new key with its sequence. The table is saved
 * in `<dataDir>/admission/handovers.json` so that a restart does not let a
 * retired key back in.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { equalBytes } from '../../identity/ed25519.ts'
import { decodeHandover, HANDOVER_BYTES_MAX, verifyHandover } from '../../identity/keystore-rotation.ts'
import { writeFileAtomic } from '../config.ts'
import { UserError } from '../errors.ts'
import { admissionDir } from './credentials.ts'
import type { VerifiedHandover } from '../../identity/keystore-rotation.ts'

export const HANDOVERS_FILE = 'handovers.json'
/** Hand-overs a node holds by default (each one a retired member key). */
export const HANDOVERS_MAX_DEFAULT = 4096

/** Why a hand-over statement is refused: a fixed word, used as the refusal counter's label. */
export type HandoverRefusal = 'oversize' | 'malformed' | 'conflict' | 'stale' | 'skipped' | 'revoked' | 'unknown-key' | 'wrong-cluster' | 'bad-signature' | 'full'

export type HandoverVerdict =
  | { ok: true, handover: VerifiedHandover, /** false when this node had accepted it already. */ fresh: boolean }
  | { ok: false, reason: HandoverRefusal, detail: string }

export interface HandoverContext {
  clusterId: string
  isRevoked(peer: string): boolean
  /** Whether the old key is an admitted member's (its certificate shown with the statement checks out). */
  isMember(oldPeer: string): boolean | Promise<boolean>
}

interface Retired { newPeer: string, sequence: number, statement: Uint8Array }

export class HandoverBook {
  readonly entriesMax: number
  /** Retired peer id → the hand-over that retired it; at most entriesMax. */
  readonly #retired = new Map<string, Retired>()
  /** Peer id made current by an accepted hand-over → its sequence; at most entriesMax (disjoint from #retired). */
  readonly #current = new Map<string, number>()

  constructor (entriesMax = HANDOVERS_MAX_DEFAULT) {
    if (!Number.isSafeInteger(entriesMax) || entriesMax < 1) { throw new RangeError('entriesMax must be a positive integer') }
    this.entriesMax = entriesMax
  }

  get size (): number { return this.#retired.size }

  /** Whether an accepted hand-over retired this peer id. */
  isRetired (peer: string): boolean { return this.#retired.has(peer) }

  /** The peer id that took over from `peer`, if it was retired. */
  successorOf (peer: string): string | undefined { return this.#retired.get(peer)?.newPeer }

  /** The sequence of the hand-over that made `peer` current (0 when none did). */
  sequenceOf (peer: string): number { return this.#current.get(peer) ?? 0 }

  /** The accepted hand-overs, oldest first: the retired peer id, its successor, the sequence. */
  entries (): Array<{ oldPeer: string, newPeer: string, sequence: number }> {
    return [...this.#retired].map(([oldPeer, r]) => ({ oldPeer, newPeer: r.newPeer, sequence: r.sequence }))
  }

  /** The accepted statements, oldest first (what handovers.json holds). */
  statements (): Uint8Array[] { return [...this.#retired.values()].map(r => r.statement) }

  /** Judge a statement by the rules above; an accepted one is recorded. */
  async judge (statement: Uint8Array, context: HandoverContext): Promise<HandoverVerdict> {
    if (!(statement instanceof Uint8Array)) { return refuse('malformed', 'not bytes') }
    if (statement.byteLength > HANDOVER_BYTES_MAX) { return refuse('oversize', `${statement.byteLength} bytes, at most ${HANDOVER_BYTES_MAX}`) }
    const decoded = decodeHandover(statement)
    if (typeof decoded === 'string') { return refuse('malformed', decoded) }
    const oldPeer = peerOf(decoded.statement.oldPublicKey)
    const newPeer = peerOf(decoded.statement.newPublicKey)
    const early = this.#retiredVerdict(statement, oldPeer, decoded.statement.sequence)
    if (early !== null) { return early }
    if (context.isRevoked(oldPeer)) { return refuse('revoked', `the old peer id ${oldPeer} is revoked`) }
    if (context.isRevoked(newPeer) || this.#retired.has(newPeer)) { return refuse('revoked', `the new peer id ${newPeer} is revoked or retired`) }
    if (!this.#current.has(oldPeer) && !await context.isMember(oldPeer)) { return refuse('unknown-key', `${oldPeer} is not a member this node knows`) }
    const verified = await verifyHandover(statement, { clusterId: context.clusterId, currentPublicKey: decoded.statement.oldPublicKey, currentSequence: this.sequenceOf(oldPeer) })
    if (typeof verified === 'string') {
      if (verified.startsWith('stale')) { return refuse('stale', verified) }
      if (verified.includes('skips ahead')) { return refuse('skipped', verified) }
      if (verified.includes('another cluster')) { return refuse('wrong-cluster', verified) }
      if (verified.includes('signature')) { return refuse('bad-signature', verified) }
      return refuse('malformed', verified)
    }
    // the checks above awaited: another statement for the same key may have been accepted meanwhile
    const late = this.#retiredVerdict(statement, oldPeer, verified.sequence)
    if (late !== null) { return late }
    if (verified.sequence !== this.sequenceOf(oldPeer) + 1) { return refuse('stale', `sequence ${verified.sequence} is no longer the next one`) }
    if (this.#retired.size >= this.entriesMax) { return refuse('full', `${this.entriesMax} hand-overs are held already`) }
    this.#record(oldPeer, newPeer, verified.sequence, statement)
    return { ok: true, handover: verified, fresh: true }
  }

  /**
   * Replay statements this node accepted before (handovers.json), in
   * order, without the membership checks: they were made when each was
   * accepted. Throws UserError on one that does not decode or chain.
   */
  restore (statements: Uint8Array[], where = HANDOVERS_FILE): void {
    if (statements.length > this.entriesMax) { throw new UserError(`${where} holds ${statements.length} hand-overs, over the limit of ${this.entriesMax}`) }
    statements.forEach((statement, i) => {
      const decoded = decodeHandover(statement)
      if (typeof decoded === 'string') { throw new UserError(`${where}: hand-over ${i}: ${decoded}`) }
      const oldPeer = peerOf(decoded.statement.oldPublicKey)
      const { sequence } = decoded.statement
      if (this.#retired.has(oldPeer) || sequence !== this.sequenceOf(oldPeer) + 1) { throw new UserError(`${where}: hand-over ${i} does not follow the ones before it`) }
      this.#record(oldPeer, peerOf(decoded.statement.newPublicKey), sequence, statement)
    })
  }

  #retiredVerdict (statement: Uint8Array, oldPeer: string, sequence: number): HandoverVerdict | null {
    const retired = this.#retired.get(oldPeer)
    if (retired === undefined) { return null }
    if (equalBytes(retired.statement, statement)) {
      // the same statement again: accepted, unless a later hand-over retired its new key too (a replay)
      if (this.#retired.has(retired.newPeer)) { return refuse('stale', `${retired.newPeer} was retired by a later hand-over`) }
      const decoded = decodeHandover(statement)
      if (typeof decoded === 'string') { return refuse('malformed', decoded) }
      return { ok: true, handover: { ...decoded.statement, oldPeerId: oldPeer, newPeerId: retired.newPeer }, fresh: false }
    }
    if (sequence === retired.sequence) {
      return refuse('conflict', `a second, different hand-over from ${oldPeer} at sequence ${sequence} (the first went to ${retired.newPeer}): the old key has leaked`)
    }
    return refuse('stale', `${oldPeer} was retired by the hand-over at sequence ${retired.sequence}`)
  }

  #record (oldPeer: string, newPeer: string, sequence: number, statement: Uint8Array): void {
    this.#retired.set(oldPeer, { newPeer, sequence, statement })
    this.#current.delete(oldPeer)
    this.#current.set(newPeer, sequence)
  }
}

function refuse (reason: HandoverRefusal, detail: string): HandoverVerdict {
  return { ok: false, reason, detail }
}

function peerOf (publicKey: Uint8Array): string {
  return peerIdFromPublicKey(publicKeyFromRaw(publicKey)).toString()
}

/** The hand-overs saved in `<dataDir>/admission/handovers.json` (none when the file is absent). Throws UserError. */
export async function loadHandovers (dataDir: string, book: HandoverBook): Promise<void> {
  const path = join(admissionDir(dataDir), HANDOVERS_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') { return }
    throw new UserError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  let parsed: unknown
  try { parsed = JSON.parse(text) } catch { parsed = null }
  const { v, accepted } = (parsed ?? {}) as { v?: unknown, accepted?: unknown }
  if (v !== 1 || !Array.isArray(accepted) || !accepted.every(s => typeof s === 'string' && s.length <= 2 * HANDOVER_BYTES_MAX)) {
    throw new UserError(`${path} is not a hand-over list ({"v":1,"accepted":[base64,...]}); restore it from a backup`)
  }
  book.restore(accepted.map(s => Uint8Array.from(Buffer.from(s as string, 'base64'))), path)
}

export async function saveHandovers (dataDir: string, book: HandoverBook): Promise<void> {
  const accepted = book.statements().map(s => Buffer.from(s).toString('base64'))
  await mkdir(admissionDir(dataDir), { recursive: true, mode: 0o700 })
  await writeFileAtomic(join(admissionDir(dataDir), HANDOVERS_FILE), JSON.stringify({ v: 1, accepted }) + '\n', 0o600)
}
