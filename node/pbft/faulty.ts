/**
 * A deliberately Byzantine replica, for demos and tests (accord start
 * --byzantine): it rewrites what it sends so that it provably misbehaves,
 * and honest replicas can catch it with evidence (two conflicting messages
 * it signed for the same view and seq):
 *
 * - as primary, backups at odd positions in the replica list get a
 * pre-prepare for another batch (the batch without its last request), and
 * those at even positions get both pre-prepares;
 * - as backup, replicas at odd positions get a prepare for another digest,
 * and those at even positions get both prepares.
 *
 * Both versions are signed with its own key. Sending both to some replicas
 * makes the misbehaviour provable at once (they hold two conflicting signed
 * messages: evidence); sending only the other to the rest splits the
 * honest replicas. A pre-prepare of the null request (empty batch) has no
 * other batch to offer and goes out unchanged.
 */
import { batchDigest, signingPayload } from '../../protocols/pbft/index.ts'
import type { NodeId, Outbound, PbftCrypto, PrePrepare, Prepare } from '../../protocols/pbft/types.ts'

const textEncoder = new TextEncoder()

/** Wraps `send` so that what `self` sends equivocates (see above). */
export function equivocating (self: NodeId, replicas: NodeId[], crypto: PbftCrypto, send: (outbound: Outbound) => void): (outbound: Outbound) => void {
  return outbound => {
    const { message, to } = outbound
    let conflicting: PrePrepare | Prepare | null = null
    if ('replica' in message && message.replica === self) {
      if (message.type === 'pre-prepare' && message.batch.length > 0) { conflicting = conflictingPrePrepare(message, crypto) }
      if (message.type === 'prepare') { conflicting = conflictingPrepare(message, crypto) }
    }
    if (conflicting === null) {
      send(outbound)
      return
    }
    if (replicas.indexOf(to) % 2 === 0) { send(outbound) }
    send({ to, message: conflicting })
  }
}

export function conflictingPrePrepare (prePrepare: PrePrepare, crypto: PbftCrypto): PrePrepare {
  const batch = prePrepare.batch.slice(0, -1)
  const unsigned: PrePrepare = { ...prePrepare, batch, digest: batchDigest(batch, crypto), signature: new Uint8Array() }
  return { ...unsigned, signature: crypto.sign(signingPayload(unsigned)) }
}

export function conflictingPrepare (prepare: Prepare, crypto: PbftCrypto): Prepare {
  const unsigned: Prepare = { ...prepare, digest: crypto.digest(textEncoder.encode(`conflicting ${prepare.digest}`)), signature: new Uint8Array() }
  return { ...unsigned, signature: crypto.sign(signingPayload(unsigned)) }
}
