/**
 * The DKG group as the PBFT core uses it for compact checkpoint
 * certificates (PbftThresholdGroup, protocols/pbft/group.ts), built on
 * threshold BLS (identity/threshold/tbls.ts, blst through identity/bls.ts).
 * The group comes from a CheckpointSigner (the DKG service), set on the
 * PBFT service with setCheckpointSigner: no hard dependency between them.
 */
import { createHash } from 'node:crypto'
import { encodeG1 } from '../../identity/bls.ts'
import { combine, verifyGroupSignature, verifyPartial } from '../../identity/threshold/tbls.ts'
import type { ThresholdPublicKey } from '../../identity/threshold/tbls.ts'
import type { NodeId, PbftThresholdGroup } from '../../protocols/pbft/types.ts'

/** What PBFT needs of a DKG group; DkgService is one. */
export interface CheckpointSigner {
  /** The group this node holds a share of: its public key and members in share order (member i holds share i + 1); null without one. */
  checkpointGroup(): { key: ThresholdPublicKey, members: readonly string[] } | null
  /** This node's partial of a checkpoint payload (checkpointGroupPayload), signed locally with its share; null without one. */
  signCheckpointPartial(payload: Uint8Array): Uint8Array | null
  /** Calls `listener` whenever the group changes; returns the unsubscribe. */
  onGroupChange(listener: () => void): () => void
}

/**
 * Group signatures verified lately: the same compact certificate comes in
 * every view change of a NEW-VIEW and again in state transfers; a pairing
 * costs about a millisecond. Only valid ones are kept, oldest out first.
 */
export const GROUP_SIGNATURES_VERIFIED_KEPT = 16

export interface CheckpointGroupOptions {
  /** Hears of every member whose partial failed to verify (in a CHECKPOINT it signed: a lie). */
  onBadPartial(member: NodeId): void
  /** How a group signature is checked (default: tbls.verifyGroupSignature; tests count the calls). */
  verifyGroupSignature?(key: ThresholdPublicKey, payload: Uint8Array, signature: Uint8Array): boolean
}

/** Prefixes what a group id hashes. */
const GROUP_ID_DOMAIN = 'accord/pbft/checkpoint-group-id/1'

/**
 * PbftThresholdGroup.id: the SHA-256 of the members in share order and
 * every commitment (they give the key, C_0, and every public share), so
 * that a reshare (same key, new shares) or a new DKG changes it.
 */
export function checkpointGroupId (group: { key: ThresholdPublicKey, members: readonly string[] }): string {
  const hash = createHash('sha256').update(GROUP_ID_DOMAIN).update(new Uint8Array([0]))
  for (const member of group.members) { hash.update(`${member.length}:${member}`) }
  hash.update(new Uint8Array([0]))
  for (const commitment of group.key.commitments) { hash.update(encodeG1(commitment)) }
  return hash.digest('hex')
}

/** The core's group from the signer's; null when the signer holds none. */
export function checkpointThresholdGroup (signer: CheckpointSigner, options: CheckpointGroupOptions): PbftThresholdGroup | null {
  const group = signer.checkpointGroup()
  if (group === null) { return null }
  const { key, members } = group
  const id = checkpointGroupId(group)
  const { onBadPartial } = options
  const verify = options.verifyGroupSignature ?? verifyGroupSignature
  const verified = new Set<string>()
  return {
    id,
    groupKey: key.groupKey,
    members,
    threshold: key.threshold,
    // the checkpoint will name this group: a share of another one (the signer's group changed and this object is not yet replaced) signs nothing
    signPartial: (payload) => {
      const current = signer.checkpointGroup()
      return current !== null && checkpointGroupId(current) === id ? signer.signCheckpointPartial(payload) : null
    },
    verifyPartial: (member, payload, partial) => {
      const index = members.indexOf(member) + 1
      return index > 0 && verifyPartial(key, payload, { index, signature: partial })
    },
    verifyGroup: (payload, signature) => {
      const id = `${Buffer.from(signature).toString('hex')}/${Buffer.from(payload).toString('hex')}`
      if (verified.has(id)) { return true }
      if (!verify(key, payload, signature)) { return false }
      if (verified.size >= GROUP_SIGNATURES_VERIFIED_KEPT) { verified.delete(verified.values().next().value as string) }
      verified.add(id)
      return true
    },
    combine: (partials, payload) => {
      const bad: NodeId[] = []
      const indexed = []
      for (const [member, signature] of partials) {
        const index = members.indexOf(member) + 1
        if (index === 0) { bad.push(member) } else { indexed.push({ index, signature }) }
      }
      const result = combine(key, payload, indexed)
      bad.push(...result.bad.map(index => members[index - 1]))
      for (const member of bad) { onBadPartial(member) }
      return result.ok ? { ok: true, signature: result.signature, bad } : { ok: false, bad }
    }
  }
}
