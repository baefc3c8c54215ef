/**
 * Shape checks of inbound DKG messages, before any cryptography: types,
 * lengths, known senders and list bounds. Cryptographic checks (points on
 * the curve, shares against commitments, proofs) come after, in the node.
 */
import { equalBytes } from '@noble/curves/utils.js'
import { G1_BYTES, SCALAR_BYTES } from '../../identity/bls.ts'
import { SEALED_SHARE_BYTES } from '../../identity/threshold/share-box.ts'
import { ID_CHARS_MAX } from './config.ts'
import type { DkgMessage, JustificationMessage, ResponseMessage } from './types.ts'

const PROOF_BYTES = 2 * SCALAR_BYTES

export interface Roles {
  session: Uint8Array
  dealers: ReadonlySet<string>
  members: ReadonlySet<string>
  membersCount: number
  threshold: number
}

/** null when the message is well formed for these roles, else why not. */
export function checkMessage (message: DkgMessage, roles: Roles): string | null {
  if (message === null || typeof message !== 'object') { return 'a message is an object' }
  if (!(message.session instanceof Uint8Array) || !equalBytes(message.session, roles.session)) { return 'wrong session' }
  if (typeof message.from !== 'string' || message.from.length > ID_CHARS_MAX) { return `from must be a string of at most ${ID_CHARS_MAX} characters` }
  switch (message.type) {
    case 'deal':
      if (!roles.dealers.has(message.from)) { return `${message.from} is not a dealer` }
      return checkDealFields(message, roles)
    case 'response':
      if (!roles.dealers.has(message.from) && !roles.members.has(message.from)) { return `${message.from} is not a participant` }
      return checkComplaints(message, roles)
    case 'justification':
      if (!roles.dealers.has(message.from)) { return `${message.from} is not a dealer` }
      return checkJustification(message, roles)
    default:
      return 'unknown message type'
  }
}

function checkComplaints (message: ResponseMessage, roles: Roles): string | null {
  if (!Array.isArray(message.complaints) || message.complaints.length > roles.dealers.size) { return `at most ${roles.dealers.size} complaints` }
  const against = new Set<string>()
  for (const c of message.complaints) {
    if (c === null || typeof c !== 'object' || !roles.dealers.has(c.dealer)) { return 'a complaint names a dealer' }
    if (against.has(c.dealer)) { return `two complaints against ${c.dealer}` }
    against.add(c.dealer)
    if (c.kind === 'bad-share') {
      if (!roles.members.has(message.from)) { return 'only a member can complain of a bad share' }
      if (!isBytes(c.boxKey, G1_BYTES) || !isBytes(c.proof, PROOF_BYTES)) { return 'a bad-share complaint carries a 48-byte box key and a 64-byte proof' }
    } else if (c.kind !== 'missing') {
      return 'unknown complaint kind'
    }
  }
  return null
}

function checkJustification (message: JustificationMessage, roles: Roles): string | null {
  if (message.deal === null || typeof message.deal !== 'object') { return 'a justification carries the deal' }
  const reason = checkDealFields(message.deal, roles)
  if (reason !== null) { return reason }
  if (!Array.isArray(message.shares) || message.shares.length > roles.membersCount) { return `at most ${roles.membersCount} shares` }
  for (const s of message.shares) {
    if (s === null || typeof s !== 'object' || !roles.members.has(s.member) || !isBytes(s.share, SCALAR_BYTES)) { return 'a revealed share names a member and is 32 bytes' }
  }
  return null
}

function checkDealFields (deal: { commitments: unknown, ephemeral: unknown, boxes: unknown }, roles: Roles): string | null {
  if (!Array.isArray(deal.commitments) || deal.commitments.length !== roles.threshold || !deal.commitments.every(c => isBytes(c, G1_BYTES))) { return `a deal has ${roles.threshold} commitments of ${G1_BYTES} bytes` }
  if (!isBytes(deal.ephemeral, G1_BYTES)) { return `the ephemeral key is ${G1_BYTES} bytes` }
  if (!Array.isArray(deal.boxes) || deal.boxes.length !== roles.membersCount || !deal.boxes.every(b => isBytes(b, SEALED_SHARE_BYTES))) { return `a deal has ${roles.membersCount} boxes of ${SEALED_SHARE_BYTES} bytes` }
  return null
}

function isBytes (value: unknown, length: number): value is Uint8Array {
  return value instanceof Uint8Array && value.length === length
}
