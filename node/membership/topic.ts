/**
 * The membership gossipsub topic, `accord/<cluster>/membership/1`, and how
 * gossipsub scores its peers on it.
 *
 * Scoring (gossipsub v1.1, P1-P4 per topic): the topic is quiet (a member
 * publishes when it joins, changes its metadata, refutes, leaves, or
 * declares a suspicion or a death), so
 * - an invalid message (oversize, malformed, refused by the core, or not
 * from an admitted member: see gossip.ts) costs -100 * count², decaying
 * by 1% a second: one sinks a peer below the graylist threshold (-80),
 * where gossipsub ignores everything it sends, for 6 to 11 s (as its
 * positive score is 8 or 0), two for over a minute;
 * - a first delivery earns +1, up to +5, decaying 10% a second, and time
 * in the mesh a little (+1 per 100 s, up to +3): enough to rank honest
 * peers above new ones for opportunistic grafting, too little to buy
 * room for invalid messages;
 * - mesh delivery rates (P3, P3b) are not scored: on a quiet topic they
 * would punish every honest mesh peer for the silence.
 */
import type { GossipsubOpts } from '@libp2p/gossipsub'
import type { PeerScoreThresholds, TopicScoreParams } from '@libp2p/gossipsub/score'

export function membershipTopic (cluster: string): string {
  return `accord/${cluster}/membership/1`
}

export const MEMBERSHIP_TOPIC_SCORE_PARAMS: Readonly<TopicScoreParams> = {
  topicWeight: 1,
  timeInMeshWeight: 0.01,
  timeInMeshQuantum: 1000,
  timeInMeshCap: 300,
  firstMessageDeliveriesWeight: 1,
  firstMessageDeliveriesDecay: 0.9,
  firstMessageDeliveriesCap: 5,
  meshMessageDeliveriesWeight: 0,
  meshMessageDeliveriesDecay: 0.5,
  meshMessageDeliveriesCap: 1,
  meshMessageDeliveriesThreshold: 1,
  meshMessageDeliveriesWindow: 10,
  meshMessageDeliveriesActivation: 5000,
  meshFailurePenaltyWeight: 0,
  meshFailurePenaltyDecay: 0.5,
  invalidMessageDeliveriesWeight: -100,
  invalidMessageDeliveriesDecay: 0.99
}

/**
 * gossipsub's defaults, but for acceptPXThreshold: accord does no peer
 * exchange (doPX stays off), and a peer would need a score no topic here
 * can give to have its PX accepted.
 */
export const ACCORD_SCORE_THRESHOLDS: Readonly<PeerScoreThresholds> = {
  gossipThreshold: -10,
  publishThreshold: -50,
  graylistThreshold: -80,
  acceptPXThreshold: 100,
  opportunisticGraftThreshold: 1
}

/** The score parameters of the membership topic of `cluster`, by topic (gossipsub's scoreParams.topics). */
export function membershipTopicScoreParams (cluster: string): Record<string, TopicScoreParams> {
  return { [membershipTopic(cluster)]: { ...MEMBERSHIP_TOPIC_SCORE_PARAMS } }
}

/**
 * The gossipsub options accord's node uses, for an app that runs accord's
 * services in its own libp2p node:
 * `pubsub: gossipsub({ ...accordGossipsubOptions('my-cluster'), ...its own })`.
 * StrictSign (the membership validator reads the signed author), and the
 * membership topic's scoring. An app with topics of its own adds their
 * scores to `scoreParams.topics`.
 */
export function accordGossipsubOptions (cluster: string): Pick<GossipsubOpts, 'globalSignaturePolicy' | 'scoreParams' | 'scoreThresholds'> {
  return {
    globalSignaturePolicy: 'StrictSign',
    scoreParams: { topics: membershipTopicScoreParams(cluster) },
    scoreThresholds: { ...ACCORD_SCORE_THRESHOLDS }
  }
}
