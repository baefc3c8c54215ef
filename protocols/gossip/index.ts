/**
 * The I/O-free anti-entropy core of accord: a replicated cluster-metadata
 * store of per-node key/values, reconciled by Scuttlebutt digests in push,
 * pull or push-pull mode, with self-certifying (signed) entries and adaptive
 * fanout and interval. The libp2p service (node/metadata) drives it.
 */
export { AntiEntropyNode } from './anti-entropy-node.ts'
export {
  ANTI_ENTROPY_DEFAULTS, resolveConfig, limitsOf, isValidNodeId, ID_LENGTH_MAX, VERSION_MAX, VERSION_JUMP_MAX,
  SIGNATURE_BYTES_MAX, AGE_TICKS_MAX, RAISE_MARGIN, DELTAS_PER_MESSAGE_MAX, RELAY_SLACK
} from './config.ts'
export type { AntiEntropyConfig, AntiEntropyConfigInit, GossipLimits } from './config.ts'
export { entryPayload } from './payload.ts'
export { validateGossipMessage, validateNodeDelta, entriesPerDeltaMax, InvalidMessageError } from './validate.ts'
export { gossipMessageBytes, entryBytes, pageBytes, nodeDeltaBytes } from './size.ts'
export { retune, onNews, sizeFanout, predictedRounds, GossipMeter, TUNE_EVERY_ROUNDS, QUIET_ROUNDS, LAG_FACTOR, DUPLICATE_RATE_HIGH } from './tuning.ts'
export type { TuningParameters, TuningBounds, TuningObservations } from './tuning.ts'
export { GOSSIP_MESSAGE_TYPES, GOSSIP_MODES, WANTS } from './types.ts'
export type * from './types.ts'
