/**
 * The I/O-free PBFT core of accord (Castro and Liskov, with signatures):
 * replicas that order signed client requests in batches through
 * pre-prepare, prepare and commit, with checkpoints, view changes, catch-up
 * from the log and from stable checkpoints, equivocation evidence and the
 * isolation of Byzantine peers; and the client that accepts f+1 matching
 * replies. See README.md.
 */
export { PbftReplica } from './replica.ts'
export type { PbftConfigInit } from './replica.ts'
export { PbftClient } from './client.ts'
export type { PbftClientConfig, PbftClientReady } from './client.ts'
export { PBFT_DEFAULTS, resolvePbftLimits, faultsTolerated, quorumSize, REPLICAS_MAX, NODE_ID_LENGTH_MAX, SIGNATURE_BYTES_MAX, RESULT_BYTES_MAX, REQUEST_BUNDLE_MAX, GROUP_SIGNATURE_BYTES } from './config.ts'
export type { PbftLimits } from './config.ts'
export { checkEvidence } from './evidence.ts'
export type { EvidenceCheck } from './evidence.ts'
export {
  RECONFIGURATION_PREFIX, approvalPayload, approve, verifyApproval, checkReconfiguration, decodeConfiguration, decodeReconfiguration,
  effectiveAfter, encodeConfiguration, encodeReconfiguration, genesisConfiguration, isReconfiguration, replicaSetProblem
} from './reconfiguration.ts'
export type { Approval, ConfigurationState, PbftConfiguration, Reconfiguration } from './reconfiguration.ts'
export { Suspicion, SCORE_MAX, SUSPICION_POINTS, SCORE_RECOVERY_POINTS } from './suspicion.ts'
export type { PeerScore, SuspicionReason } from './suspicion.ts'
export {
  GENESIS_CHECKPOINT, GENESIS_STATE_DIGEST, primaryOf, requestDigest, batchDigest, signRequest, signRequests, verifyRequest, verifySigned,
  checkCommittedCertificate, checkPreparedCertificate, checkStableCheckpoint, checkViewChange
} from './certificates.ts'
export { checkNewView, planNewView } from './view-change.ts'
export { CHECKPOINT_GROUP_DOMAIN, checkCompactCheckpoint, checkpointGroupPayload, groupProblem, isCheckpointGroupMessage } from './group.ts'
export type { NewViewPlan } from './view-change.ts'
export {
  PBFT_ENCODING_VERSION, signingPayload, bundleSigningPayload, encodeMessage, decodeMessage, encodeRecord, decodeRecord, encodeEvidence, decodeEvidence
} from './encoding.ts'
export type * from './types.ts'
