/**
 * Evidence of misbehaviour, published so that every receiver isolates the
 * offender:
 *
 * - equivocation: two messages signed by one replica that an honest
 * replica never signs both of; anyone with the replicas' public keys checks
 * it;
 * - a bad checkpoint partial: a CHECKPOINT the offender signed whose
 * partial does not verify under its public share in the group the
 * checkpoint names. Only a holder of that very group can judge it: a
 * partial made under an earlier group (before a reshare or a new DKG)
 * fails under a later one's shares, so without the group id in the signed
 * checkpoint an honest replica could be convicted by a checker whose group
 * moved on. A checker without that group refuses it as unjudgeable.
 */
import { verifySigned } from './certificates.ts'
import { GROUP_SIGNATURE_BYTES } from './config.ts'
import { checkpointGroupPayload } from './group.ts'
import type { BadCheckpointPartialEvidence, Evidence, EquivocationEvidence, NodeId, PbftCrypto, PbftThresholdGroup, SignedMessage } from './types.ts'

/**
 * The verdict on evidence. `unjudgeable`: this checker cannot tell (it
 * holds no group, or not the one the evidence names): it must not act on
 * it, nor count it against whoever relayed it.
 */
export type EvidenceCheck = { ok: true } | { ok: false, error: string, unjudgeable?: true }

/** Whether `a` and `b` conflict: same kind and slot (view and seq, or checkpoint seq), different digests. */
export function conflicting (a: SignedMessage, b: SignedMessage): boolean {
  if (a.replica !== b.replica || a.type !== b.type) { return false }
  switch (a.type) {
    case 'pre-prepare': case 'prepare': case 'commit': {
      const other = b as typeof a
      return a.view === other.view && a.seq === other.seq && a.digest !== other.digest
    }
    case 'checkpoint': {
      const other = b as typeof a
      return a.seq === other.seq && a.stateDigest !== other.stateDigest
    }
    default: return false
  }
}

/** Evidence from two conflicting messages; a pre-prepare's batch is left out (its signature covers the digest only). */
export function equivocation (first: SignedMessage, second: SignedMessage): EquivocationEvidence {
  const slim = (m: SignedMessage): SignedMessage => m.type === 'pre-prepare' ? { ...m, batch: [] } : m
  return { kind: 'equivocation', offender: first.replica, first: slim(first), second: slim(second) }
}

/**
 * Whether `evidence` proves misbehaviour by a replica of `replicas`; a bad
 * partial is judged with `group`, the threshold group this checker holds.
 */
export function checkEvidence (evidence: Evidence, replicas: readonly NodeId[], crypto: PbftCrypto, group?: PbftThresholdGroup | null): EvidenceCheck {
  switch (evidence?.kind) {
    case 'equivocation': return checkEquivocation(evidence, replicas, crypto)
    case 'bad-checkpoint-partial': return checkBadPartial(evidence, replicas, crypto, group)
    default: return { ok: false, error: 'unknown evidence kind' }
  }
}

function checkEquivocation (evidence: EquivocationEvidence, replicas: readonly NodeId[], crypto: PbftCrypto): EvidenceCheck {
  const { offender, first, second } = evidence
  if (!replicas.includes(offender)) { return { ok: false, error: `offender ${offender} is not a replica` } }
  if (first?.replica !== offender || second?.replica !== offender) { return { ok: false, error: 'the messages are not both from the offender' } }
  if (!conflicting(first, second)) { return { ok: false, error: 'the messages do not conflict' } }
  return signedByOffender([first, second], crypto)
}

/**
 * The checkpoint is the offender's, validly signed, and names a group and a
 * partial; then (and only then: a forgery is refused by every checker, a
 * group or not) the checker must hold that group, with only replicas as
 * members and the offender among them, and the partial must fail under the
 * offender's public share there.
 */
function checkBadPartial (evidence: BadCheckpointPartialEvidence, replicas: readonly NodeId[], crypto: PbftCrypto, group: PbftThresholdGroup | null | undefined): EvidenceCheck {
  const { offender, checkpoint } = evidence
  if (!replicas.includes(offender)) { return { ok: false, error: `offender ${offender} is not a replica` } }
  if (checkpoint?.type !== 'checkpoint' || checkpoint.replica !== offender) { return { ok: false, error: 'not a checkpoint from the offender' } }
  const { partial, groupId } = checkpoint
  if (!(partial instanceof Uint8Array) || partial.length !== GROUP_SIGNATURE_BYTES) { return { ok: false, error: `the checkpoint carries no partial of ${GROUP_SIGNATURE_BYTES} bytes` } }
  if (typeof groupId !== 'string') { return { ok: false, error: 'the checkpoint names no threshold group (an older layout): its partial proves nothing' } }
  const signed = signedByOffender([checkpoint], crypto)
  if (!signed.ok) { return signed }
  if (group == null) { return { ok: false, error: 'no threshold group known here to judge a checkpoint partial', unjudgeable: true } }
  if (group.id !== groupId) { return { ok: false, error: `the partial was made under threshold group ${groupId.slice(0, 16)}, not the one held here`, unjudgeable: true } }
  if (!group.members.includes(offender) || !group.members.every(member => replicas.includes(member))) {
    return { ok: false, error: 'the threshold group held here does not have the offender and only replicas as members', unjudgeable: true }
  }
  if (group.verifyPartial(offender, checkpointGroupPayload(checkpoint.seq, checkpoint.stateDigest), partial)) {
    return { ok: false, error: 'the partial verifies under the offender\'s public share' }
  }
  return { ok: true }
}

function signedByOffender (messages: SignedMessage[], crypto: PbftCrypto): EvidenceCheck {
  try {
    if (!messages.every(message => verifySigned(message, crypto))) { return { ok: false, error: 'a message is not validly signed by the offender' } }
  } catch (err) {
    // a hand-made object (not from decodeEvidence) that cannot be encoded
    return { ok: false, error: `malformed evidence: ${(err as Error).message}` }
  }
  return { ok: true }
}
