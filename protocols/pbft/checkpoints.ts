/**
 * CHECKPOINT votes by replica. A replica may be ahead of this one, so votes
 * above the watermarks are kept too, but only the latest few per replica
 * (watermarkWindow / checkpointInterval + 1): the memory is bounded by the
 * replica count whatever peers send.
 */
import { checkpointGroupPayload, groupProblem } from './group.ts'
import type { PbftLimits } from './config.ts'
import type { Checkpoint, NodeId, PbftThresholdGroup, StableCheckpoint } from './types.ts'

export class CheckpointVotes {
  readonly #perReplicaMax: number
  readonly #byReplica = new Map<NodeId, Map<number, Checkpoint>>()

  constructor (limits: PbftLimits) {
    this.#perReplicaMax = Math.floor(limits.watermarkWindow / limits.checkpointInterval) + 1
  }

  /** Records a (validly signed) vote; a different digest for a seq the replica already voted on is a conflict. */
  add (checkpoint: Checkpoint): { kind: 'added' | 'duplicate' | 'dropped' } | { kind: 'conflict', first: Checkpoint } {
    let votes = this.#byReplica.get(checkpoint.replica)
    if (votes === undefined) {
      votes = new Map()
      this.#byReplica.set(checkpoint.replica, votes)
    }
    const held = votes.get(checkpoint.seq)
    if (held !== undefined) {
      return held.stateDigest === checkpoint.stateDigest ? { kind: 'duplicate' } : { kind: 'conflict', first: held }
    }
    if (votes.size >= this.#perReplicaMax) {
      const lowest = Math.min(...votes.keys())
      if (checkpoint.seq < lowest) { return { kind: 'dropped' } }
      votes.delete(lowest)
    }
    votes.set(checkpoint.seq, checkpoint)
    return { kind: 'added' }
  }

  /**
   * A quorum of matching votes for `seq` from `provers` (the set that
   * ordered it), if there is one, as a stable checkpoint: compact (the
   * group signature combined from their partials) when `group` applies to
   * the provers, else (no group, or too few valid partials) proven by a
   * quorum of the votes, as without a group. Only partials made under
   * `group` count: one that names another group (made before a reshare or
   * a new DKG, here or there) is left out, not taken for a lie; one that
   * names none (an older node's) is tried. `badPartials`: the votes whose
   * partials failed to verify.
   */
  proven (seq: number, quorum: number, provers: readonly NodeId[], group?: PbftThresholdGroup | null): { stable: StableCheckpoint, badPartials: Checkpoint[] } | null {
    const byDigest = new Map<string, Checkpoint[]>()
    for (const [replica, votes] of this.#byReplica) {
      if (!provers.includes(replica)) { continue }
      const vote = votes.get(seq)
      if (vote === undefined) { continue }
      const matching = byDigest.get(vote.stateDigest) ?? []
      matching.push(vote)
      byDigest.set(vote.stateDigest, matching)
    }
    for (const [stateDigest, matching] of byDigest) {
      if (matching.length < quorum) { continue }
      const full = { stable: { seq, stateDigest, proof: matching.slice(0, quorum) }, badPartials: [] }
      if (group == null || groupProblem(group, provers) !== null) { return full }
      const partials = new Map<NodeId, Uint8Array>()
      for (const vote of matching) {
        if (vote.partial !== undefined && (vote.groupId === undefined || vote.groupId === group.id)) { partials.set(vote.replica, vote.partial) }
      }
      // too few partials to try: some replicas hold no share (yet)
      if (partials.size < group.threshold) { return full }
      const combined = group.combine(partials, checkpointGroupPayload(seq, stateDigest))
      const badPartials = matching.filter(vote => combined.bad.includes(vote.replica))
      // a lying replica's bad partial: never worse than without a group
      if (!combined.ok) { return { ...full, badPartials } }
      return { stable: { seq, stateDigest, proof: [], groupSignature: combined.signature }, badPartials }
    }
    return null
  }

  /** Whether any replica voted above `seq` (someone is ahead). */
  anyAbove (seq: number): boolean {
    for (const votes of this.#byReplica.values()) {
      for (const key of votes.keys()) { if (key > seq) { return true } }
    }
    return false
  }

  /** Drops the votes below `seq`. */
  forgetBelow (seq: number): void {
    for (const votes of this.#byReplica.values()) {
      for (const key of votes.keys()) { if (key < seq) { votes.delete(key) } }
    }
  }

  forget (replica: NodeId): void {
    this.#byReplica.delete(replica)
  }

  /** The seqs above `seq` that some replica voted on, ascending. */
  seqsAbove (seq: number): number[] {
    const seqs = new Set<number>()
    for (const votes of this.#byReplica.values()) {
      for (const key of votes.keys()) { if (key > seq) { seqs.add(key) } }
    }
    return [...seqs].sort((a, b) => a - b)
  }

  /** Keeps the votes of `replicas` only (a new replica set took over). */
  retain (replicas: readonly NodeId[]): void {
    for (const replica of this.#byReplica.keys()) { if (!replicas.includes(replica)) { this.#byReplica.delete(replica) } }
  }
}
