/**
 * Threshold signing rounds with the stored DKG group (./service.ts runs
 * them; the datagrams are its own).
 *
 * A round sends the message to the group's members (the roster: the peer
 * ids they hold now), each answers with its partial signature, and the
 * first T valid partials combine into the group signature. Each partial is
 * checked on arrival against its index's public share, so a bad one is
 * named. A request from, or a partial of, a revoked member is refused: its
 * share exists until the group is reshared without it, but it has no say.
 *
 * Some domains are never signed by a round (reservedDomain): membership
 * certificates are signed under admission's policy only (a member asked
 * applies mayCertify), PBFT checkpoint partials only inside a replica's
 * own CHECKPOINT, and key confirmations only at the end of a DKG. Any
 * other message is signed under the member's policy (./approvals.ts).
 */
import { randomBytes } from 'node:crypto'
import { encode } from 'cborg'
import { equalBytes } from '../../identity/ed25519.ts'
import { isGroupCertificateMessage } from '../../identity/group-certificate.ts'
import { combine, partialSign, verifyPartial } from '../../identity/threshold/tbls.ts'
import { isCheckpointGroupMessage } from '../../protocols/pbft/group.ts'
import { messageDigest } from './approvals.ts'
import { isConfirmationMessage } from './confirmation.ts'
import { DKG_SIGN_MESSAGE_BYTES_MAX, DKG_SIGN_ROUNDS_MAX } from './constants.ts'
import { envelopeBody } from './envelope.ts'
import { DkgError } from './errors.ts'
import type { MessageApprovals, SignPolicy } from './approvals.ts'
import type { Envelope, EnvelopeKind } from './envelope.ts'
import type { StoredGroup } from './store.ts'
import type { PartialSignature, ThresholdPublicKey } from '../../identity/threshold/tbls.ts'
import type { AbortOptions } from '@libp2p/interface'

export interface DkgSignResult {
  signature: string
  /** Indices of the partials combined. */
  signers: number[]
  /** Indices whose partials did not verify. */
  bad: number[]
}

export interface SigningInit {
  self: string
  /** How long a round waits for partials. */
  timeoutMs: number
  /** The stored group, its public key and its roster (the peer id each member holds now, by share index), or null. */
  group(): { stored: StoredGroup, key: ThresholdPublicKey, roster: string[] } | null
  /** This node's share of the stored group. */
  share(): { index: number, value: bigint } | null
  sign(kind: EnvelopeKind, body: Uint8Array): Envelope
  send(to: string, env: Envelope): void
  isRevoked(peer: string): boolean
  /** Admission's policy for a membership certificate asked for by `requester`: null to sign, else why not. */
  mayCertify(message: Uint8Array, requester: string): string | null
  /** The policy for any other message (./approvals.ts) and this node's operator's approvals. */
  policy: SignPolicy
  approvals: MessageApprovals
  onBadPartial(): void
}

interface Round {
  key: ThresholdPublicKey
  message: Uint8Array
  partials: Map<number, PartialSignature>
  /** How many of `partials` verify (each is checked once, on arrival). */
  valid: number
  answered: Set<string>
  finish(): void
}

/** Why no round signs `message`, or null when one may. */
export function reservedDomain (message: Uint8Array): string | null {
  if (isGroupCertificateMessage(message)) { return 'messages under the membership certificate domain are signed by admission only' }
  if (isCheckpointGroupMessage(message)) { return 'messages under the PBFT checkpoint domain are signed by each replica in its own checkpoints only' }
  if (isConfirmationMessage(message)) { return 'messages under the key confirmation domain are signed at the end of a DKG only' }
  return null
}

export class SigningRounds {
  readonly #init: SigningInit
  /** Rounds this node runs, by round id; at most DKG_SIGN_ROUNDS_MAX. */
  readonly #rounds = new Map<string, Round>()

  constructor (init: SigningInit) {
    this.#init = init
  }

  /** End every round now (the node stops): each combines what it has. */
  finishAll (): void {
    for (const round of this.#rounds.values()) { round.finish() }
  }

  /** A round for `message`; `ownPartial`: whether this node adds its own. Throws DkgError. */
  async run (message: Uint8Array, ownPartial: boolean, options: AbortOptions = {}): Promise<DkgSignResult> {
    if (!(message instanceof Uint8Array) || message.byteLength > DKG_SIGN_MESSAGE_BYTES_MAX) { throw new DkgError('bad-message', `the message is at most ${DKG_SIGN_MESSAGE_BYTES_MAX} bytes`) }
    const group = this.#init.group()
    const share = this.#init.share()
    if (group == null || share == null) { throw new DkgError('no-key', 'this node holds no DKG key: run a DKG first') }
    if (this.#rounds.size >= DKG_SIGN_ROUNDS_MAX) { throw new DkgError('rounds-full', `${DKG_SIGN_ROUNDS_MAX} signing rounds are running already`) }
    const { key } = group
    const roundId = new Uint8Array(randomBytes(16))
    const hex = Buffer.from(roundId).toString('hex')
    const partials = new Map(ownPartial ? [[share.index, partialSign(share, message)]] : [])
    await new Promise<void>(resolve => {
      const timer = setTimeout(() => { round.finish() }, this.#init.timeoutMs)
      const round: Round = {
        key,
        message,
        partials,
        valid: ownPartial && verifyPartial(key, message, partials.get(share.index) as PartialSignature) ? 1 : 0,
        answered: new Set([this.#init.self]),
        finish: () => {
          clearTimeout(timer)
          options.signal?.removeEventListener('abort', round.finish)
          this.#rounds.delete(hex)
          resolve()
        }
      }
      options.signal?.addEventListener('abort', round.finish, { once: true })
      this.#rounds.set(hex, round)
      const request = this.#init.sign('sign', encode({ round: roundId, groupKey: key.groupKey, message }))
      for (const member of group.roster) {
        if (member !== this.#init.self) { this.#init.send(member, request) }
      }
      if (round.valid >= key.threshold) { round.finish() }
    })
    const result = combine(key, message, [...partials.values()])
    if (!result.ok) { throw new DkgError('sign-failed', `${result.reason}${result.bad.length > 0 ? `; bad partials from indices ${result.bad.join(', ')}` : ''}`) }
    const valid = [...partials.values()].filter(p => !result.bad.includes(p.index)).map(p => p.index).sort((a, b) => a - b)
    return { signature: Buffer.from(result.signature).toString('hex'), signers: valid.slice(0, key.threshold), bad: result.bad }
  }

  /** A member asks for our partial: given unless refused (DkgError). */
  onRequest (env: Envelope): void {
    const group = this.#init.group()
    const { round, groupKey, message } = envelopeBody(env)
    if (!(round instanceof Uint8Array) || round.byteLength !== 16 || !(groupKey instanceof Uint8Array) || !(message instanceof Uint8Array) || message.byteLength > DKG_SIGN_MESSAGE_BYTES_MAX) { throw new DkgError('malformed', 'a signing request has a round id, a group key and a message') }
    const share = this.#init.share()
    if (group == null || share == null || !equalBytes(group.stored.record.groupPublicKey, groupKey)) { throw new DkgError('no-key', 'this node holds no share of that key') }
    if (!group.roster.includes(env.signer)) { throw new DkgError('not-a-member', 'only the group\'s members ask for partials') }
    if (this.#init.isRevoked(env.signer)) { throw new DkgError('revoked', 'a revoked member asks for a partial') }
    if (isGroupCertificateMessage(message)) {
      const refusal = this.#init.mayCertify(message, env.signer)
      if (refusal !== null) { throw new DkgError('not-approved', `no partial for this certificate: ${refusal}`) }
    } else {
      const reserved = reservedDomain(message)
      if (reserved !== null) { throw new DkgError('reserved', `no partial through a signing round: ${reserved}`) }
      if (this.#init.policy === 'approve' && !this.#init.approvals.isApproved(message)) {
        throw new DkgError('not-approved', `this member's operator has not approved the message (sha-256 ${messageDigest(message)})`)
      }
    }
    const partial = partialSign(share, message)
    this.#init.send(env.signer, this.#init.sign('partial', encode({ round, index: partial.index, signature: partial.signature })))
  }

  /** A member's partial for one of our rounds (one per member; a late one is dropped). */
  onPartial (env: Envelope): void {
    const { round: id, index, signature } = envelopeBody(env)
    if (!(id instanceof Uint8Array) || !Number.isInteger(index) || !(signature instanceof Uint8Array)) { throw new DkgError('malformed', 'a partial has a round id, an index and a signature') }
    const round = this.#rounds.get(Buffer.from(id).toString('hex'))
    if (round === undefined) { return }
    const members = this.#init.group()?.roster ?? []
    if (members[(index as number) - 1] !== env.signer || round.answered.has(env.signer)) { throw new DkgError('not-a-member', 'a partial comes from the member of its index, once') }
    // a removed member's share still exists until the group is reshared: its partials do not count
    if (this.#init.isRevoked(env.signer)) { throw new DkgError('revoked', 'a partial from a revoked member') }
    round.answered.add(env.signer)
    const partial = { index: index as number, signature }
    round.partials.set(partial.index, partial)
    if (verifyPartial(round.key, round.message, partial)) { round.valid++ } else { this.#init.onBadPartial() }
    if (round.valid >= round.key.threshold || round.answered.size === members.length) { round.finish() }
  }
}
