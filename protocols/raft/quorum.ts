import type { NodeId } from './types.ts'

/**
 * Quorum arithmetic over a majority configuration and over a joint one
 * (two majorities that must both agree), as etcd's quorum package.
 */

export type VoteResult = 'won' | 'lost' | 'pending'

/**
 * The largest value that a majority of `voters` has reached, where
 * `valueOf` reports each voter's value (its match index, acked read round, ...).
 * An empty configuration imposes no constraint: +Infinity, so that a joint
 * computation with an empty outgoing half reduces to the incoming half.
 */
export function majorityValue (voters: ReadonlySet<NodeId>, valueOf: (id: NodeId) => number): number {
  if (voters.size === 0) { return Number.POSITIVE_INFINITY }
  const values = [...voters].map(valueOf).sort((a, b) => b - a)
  return values[Math.floor(voters.size / 2)]
}

export function jointValue (incoming: ReadonlySet<NodeId>, outgoing: ReadonlySet<NodeId>, valueOf: (id: NodeId) => number): number {
  return Math.min(majorityValue(incoming, valueOf), majorityValue(outgoing, valueOf))
}

/** `votes` holds granted (true) and rejected (false) answers; absent means not yet answered. */
export function majorityVoteResult (voters: ReadonlySet<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.size === 0) { return 'won' }
  let granted = 0
  let missing = 0
  for (const id of voters) {
    const vote = votes.get(id)
    if (vote === undefined) { missing++ } else if (vote) { granted++ }
  }
  const quorum = Math.floor(voters.size / 2) + 1
  if (granted >= quorum) { return 'won' }
  if (granted + missing >= quorum) { return 'pending' }
  return 'lost'
}

export function jointVoteResult (incoming: ReadonlySet<NodeId>, outgoing: ReadonlySet<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const a = majorityVoteResult(incoming, votes)
  const b = majorityVoteResult(outgoing, votes)
  if (a === b) { return a }
  if (a === 'lost' || b === 'lost') { return 'lost' }
  return 'pending'
}
