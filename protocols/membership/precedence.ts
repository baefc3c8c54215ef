/**
 * Which news about a member wins (SWIM §4.2, memberlist's aliveNode /
 * suspectNode / deadNode). An update is compared with what we hold by
 * (incarnation, rank) in lexicographic order, rank alive < suspect < dead
 * < left:
 *
 * - alive(i) overrides suspect(j), dead(j) and left(j) iff i > j: only the
 * member itself raises its incarnation, so a higher one is fresh news from
 * it (a refutation, new metadata, a return);
 * - suspect(i) overrides alive(j) iff i >= j;
 * - dead(i) overrides alive(j) and suspect(j) iff i >= j;
 * - left(i) overrides alive, suspect and dead for i >= j: left is dead by the
 * member's own word, so it is the more precise of the two.
 *
 * A total order makes the merge a join-semilattice: whatever order the same
 * set of updates about a member arrives in, every member that saw them all
 * holds the same state (a property test checks it). memberlist differs in
 * two corners, both resolved here by the order: it ignores suspect(i) about a
 * member it holds dead(j < i) (here the member is back, as suspect), and it
 * ignores left after dead at the same incarnation (here left wins).
 *
 * Updates about ourselves are not merged but answered (refutation): see
 * MembershipNode.
 */
import type { MemberState, UpdateKind } from './types.ts'

export const STATE_RANK: Readonly<Record<MemberState, number>> = { alive: 0, suspect: 1, dead: 2, left: 3 }

/** Whether news of `kind` at `incarnation` replaces a record in `state` at `heldIncarnation`. */
export function supersedes (kind: UpdateKind, incarnation: number, state: MemberState, heldIncarnation: number): boolean {
  return incarnation > heldIncarnation || (incarnation === heldIncarnation && STATE_RANK[kind] > STATE_RANK[state])
}

export function isLive (state: MemberState | undefined): boolean {
  return state === 'alive' || state === 'suspect'
}
