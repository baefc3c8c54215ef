/**
 * Equivocation evidence: two messages signed by one replica that an honest
 * replica never signs both of. Anyone with the replicas' public keys checks
 * it, so it is published and every receiver isolates the offender.
 */
import { verifySigned } from './certificates.ts'
import type { Evidence, NodeId, PbftCrypto, SignedMessage } from './types.ts'

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
export function equivocation (first: SignedMessage, second: SignedMessage): Evidence {
  const slim = (m: SignedMessage): SignedMessage => m.type === 'pre-prepare' ? { ...m, batch: [] } : m
  return { kind: 'equivocation', offender: first.replica, first: slim(first), second: slim(second) }
}

export function checkEvidence (evidence: Evidence, replicas: readonly NodeId[], crypto: PbftCrypto): { ok: true } | { ok: false, error: string } {
  if (evidence?.kind !== 'equivocation') { return { ok: false, error: 'unknown evidence kind' } }
  const { offender, first, second } = evidence
  if (!replicas.includes(offender)) { return { ok: false, error: `offender ${offender} is not a replica` } }
  if (first?.replica !== offender || second?.replica !== offender) { return { ok: false, error: 'the messages are not both from the offender' } }
  if (!conflicting(first, second)) { return { ok: false, error: 'the messages do not conflict' } }
  try {
    if (!verifySigned(first, crypto) || !verifySigned(second, crypto)) { return { ok: false, error: 'a message is not validly signed by the offender' } }
  } catch (err) {
    // a hand-made object (not from decodeEvidence) that cannot be encoded
    return { ok: false, error: `malformed evidence: ${(err as Error).message}` }
  }
  return { ok: true }
}
