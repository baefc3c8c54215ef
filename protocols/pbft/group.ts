/**
 * Compact checkpoint certificates: once the replicas hold shares of a DKG
 * group key, each CHECKPOINT carries the replica's partial threshold
 * signature of (seq, stateDigest), and a stable checkpoint is proven by the
 * one group signature combined from a quorum's partials instead of a
 * quorum of signed CHECKPOINT messages.
 *
 * What is signed: CHECKPOINT_GROUP_DOMAIN ‖ seq (8 bytes, big-endian) ‖
 * stateDigest (32 bytes). Neither the group key nor an epoch is in it: a
 * BLS signature verifies under one key only, so the key adds nothing, and
 * (seq, stateDigest) is the whole claim: the state digest covers the
 * replica configuration (PBFT_CONFIGURATION_KEY is in the state), so it
 * pins the set and epoch too. The domain keeps the payload apart from
 * everything else the group signs (membership certificates, and the
 * generic signing round, which refuses this domain: otherwise a member
 * could have the honest members sign a stable checkpoint nobody reached).
 */
import { GROUP_SIGNATURE_BYTES, quorumSize } from './config.ts'
import { digestToBytes } from './encoding.ts'
import type { Digest, NodeId, PbftThresholdGroup, StableCheckpoint } from './types.ts'

export const CHECKPOINT_GROUP_DOMAIN = new TextEncoder().encode('accord/pbft/checkpoint-group/1')

/** The bytes a checkpoint's partial and a compact certificate's group signature cover. */
export function checkpointGroupPayload (seq: number, stateDigest: Digest): Uint8Array {
  const payload = new Uint8Array(CHECKPOINT_GROUP_DOMAIN.length + 8 + 32)
  payload.set(CHECKPOINT_GROUP_DOMAIN)
  new DataView(payload.buffer).setBigUint64(CHECKPOINT_GROUP_DOMAIN.length, BigInt(seq))
  payload.set(digestToBytes(stateDigest), CHECKPOINT_GROUP_DOMAIN.length + 8)
  return payload
}

/** Whether `message` is under the checkpoint domain (what a generic threshold signing round must refuse). */
export function isCheckpointGroupMessage (message: Uint8Array): boolean {
  if (message.length < CHECKPOINT_GROUP_DOMAIN.length) { return false }
  for (let i = 0; i < CHECKPOINT_GROUP_DOMAIN.length; i++) { if (message[i] !== CHECKPOINT_GROUP_DOMAIN[i]) { return false } }
  return true
}

/**
 * Whether `group` may prove checkpoints of `provers` (the set that ordered
 * the seq); null when it may, else why not. Its members must be exactly the
 * provers: a member outside the set could give partials in place of
 * replicas, and a replica outside the group could give none. Its threshold
 * must be at least the provers' quorum: a group signature shows only that
 * `threshold` distinct members signed, and only a quorum of the set
 * signing (seq, digest) makes it stable (any two quorums share an honest
 * replica). With a threshold below the quorum a group signature would
 * prove less than a quorum certificate: f + 1 signers, say, f of them
 * faulty.
 */
export function groupProblem (group: PbftThresholdGroup | null | undefined, provers: readonly NodeId[]): string | null {
  if (group == null) { return 'no threshold group known here' }
  if (group.members.length !== provers.length || new Set(group.members).size !== group.members.length ||
    !provers.every(replica => group.members.includes(replica))) {
    return 'the threshold group\'s members are not the replicas that prove this checkpoint'
  }
  const quorum = quorumSize(provers.length)
  if (!Number.isSafeInteger(group.threshold) || group.threshold < quorum || group.threshold > provers.length) {
    return `the threshold group's threshold ${group.threshold} is not between the quorum ${quorum} and ${provers.length}`
  }
  return null
}

/** A compact stable checkpoint: the group applies to the provers and its signature holds. Null when it is proven. */
export function checkCompactCheckpoint (stable: StableCheckpoint, provers: readonly NodeId[], group: PbftThresholdGroup | null | undefined): string | null {
  const { groupSignature } = stable
  if (!(groupSignature instanceof Uint8Array) || groupSignature.length !== GROUP_SIGNATURE_BYTES) { return `a group signature is ${GROUP_SIGNATURE_BYTES} bytes` }
  if (stable.proof.length !== 0) { return 'a compact stable checkpoint carries no checkpoint messages' }
  const problem = groupProblem(group, provers)
  if (problem !== null || group == null) { return `compact stable checkpoint not checkable: ${problem ?? ''}` }
  return group.verifyGroup(checkpointGroupPayload(stable.seq, stable.stateDigest), groupSignature)
    ? null
    : 'the group signature of the stable checkpoint does not verify'
}
