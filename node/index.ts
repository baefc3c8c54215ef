/**
 * accord as a library, two ways.
 *
 * `createAccordNode(config)` builds and starts a whole node (libp2p,
 * admission, discovery, Raft, the HTTP API), as the daemon does.
 *
 * The service factories `clusterAdmission()`, `clusterDiscovery()`,
 * `raft()`, `pbft()`, `swimMembership()`, `clusterMetadata()`, `crdtService()` and `clusterTopology()`
 * add accord's protocols to an app's own libp2p node:
 * `createLibp2p({ services: { admission: clusterAdmission(init), raft: raft(init) } })`.
 */
export { createAccordNode } from './accord-node.ts'
export type { AccordNode, CreateAccordNodeOptions, MetadataSummary, NodeStatus, PeerStatus } from './accord-node.ts'
export { defaultConfig, ENCRYPTERS, LOG_LEVELS } from './config.ts'
export type { AccordConfig, Encrypter, LogLevel } from './config.ts'
export { UserError } from './errors.ts'
export type { AccordLibp2p, AccordOwnServices, AccordServices, BaseServices } from './libp2p.ts'
export { Refusals } from './refusals.ts'
export type { RefusalsOptions } from './refusals.ts'

// services
export { Admission, clusterAdmission, ADMISSION_DEFAULTS, ADMISSION_PROTOCOL } from './admission/admission.ts'
export type { AdmissionComponents, AdmissionInit, AdmissionLimits } from './admission/admission.ts'
export type { ClusterCredentials } from './admission/credentials.ts'
export { ClusterDiscovery, clusterDiscovery } from './discovery.ts'
export type { AdmissionView, DiscoveryComponents, DiscoveryInit, Member } from './discovery.ts'
export { raft, RaftService, RAFT_SETTINGS_DEFAULTS, RESERVED_KEY_PREFIX } from './raft/service.ts'
export type { RaftComponents, RaftInit, RaftSettings, RaftSummary, ReadConsistency } from './raft/service.ts'
export { RaftError } from './raft/driver.ts'
export { pbft, PbftService, PbftError, PBFT_SETTINGS_DEFAULTS, checkReplicaSet } from './pbft/service.ts'
export type { BftApproval, BftSummary, PbftComponents, PbftErrorCode, PbftInit, PbftSettings } from './pbft/service.ts'
export { PBFT_PROTOCOL, PBFT_STATE_PROTOCOL, PBFT_TRANSPORT_DEFAULTS } from './pbft/transport.ts'
export type { PbftDropReason, PbftFrameRejectReason, PbftTransportLimits, PbftTransportStats } from './pbft/transport.ts'
export { PBFT_RATE_LIMITS_DEFAULTS } from './pbft/rate-limit.ts'
export type { RateLimit as PbftRateLimit, PbftMessageType } from './pbft/rate-limit.ts'
export type { PbftKvResult, PbftOperation, PbftResult, SessionlessKvCommand, WithoutSession } from './pbft/operations.ts'
export type { ClientRequest as PbftClientRequest, Checkpoint as PbftCheckpoint, Commit as PbftCommit, CommittedBatches as PbftCommittedBatches, CommittedCertificate as PbftCommittedCertificate, Configuration as PbftConfigurationMessage, Digest as PbftDigest, FetchCommitted as PbftFetchCommitted, Isolation, IsolationReason, NewView as PbftNewView, NodeId as PbftNodeId, PbftCrypto, PbftMessage, Prepare as PbftPrepare, PreparedCertificate as PbftPreparedCertificate, PrePrepare as PbftPrePrepare, Reply as PbftReply, ReplicaMessage as PbftReplicaMessage, StableCheckpoint as PbftStableCheckpoint, ViewChange as PbftViewChange } from '../protocols/pbft/types.ts'
export type { PbftLimits } from '../protocols/pbft/config.ts'
export type { ConfigurationState as PbftConfigurationState, PbftConfiguration, Approval as PbftApproval, Reconfiguration as PbftReconfiguration } from '../protocols/pbft/reconfiguration.ts'
export { evidenceTopic } from './pbft/evidence-topic.ts'
export { peerKeyPbftCrypto, PeerKeyVerifier } from './pbft/crypto.ts'
export { swimMembership, MembershipService, MEMBERSHIP_SETTINGS_DEFAULTS, SWIM_PROTOCOL } from './membership/service.ts'
export type { Member as MembershipMember, MembershipComponents, MembershipEvents, MembershipInit, MembershipServiceStatus, MembershipSettings } from './membership/service.ts'
export { clusterMetadata, ClusterMetadataService, ANTI_ENTROPY_PROTOCOL, METADATA_CAPABILITY, METADATA_RESERVED_KEY_PREFIX, METADATA_SETTINGS_DEFAULTS } from './metadata/service.ts'
export type { MetadataComponents, MetadataEntry, MetadataEvents, MetadataInit, MetadataSettings, MetadataStatus, MetadataUpdate } from './metadata/service.ts'
export { crdtService, crdtTopic, CrdtError, CrdtService, CRDT_CAPABILITY, CRDT_COUNT_MAX_DEFAULT, CRDT_NAME_LENGTH_MAX, CRDT_NAME_PATTERN, CRDT_SETTINGS_DEFAULTS, CRDT_SYNC_PROTOCOL } from './crdt/service.ts'
export type { CrdtComponents, CrdtErrorCode, CrdtHandle, CrdtInit, CrdtOpOf, CrdtOps, CrdtSettings, CrdtSummary, CrdtValueOf, CrdtValues } from './crdt/service.ts'
export { CrdtStorage, CRDT_DIR, CRDT_REGISTRY_FILE } from './crdt/storage.ts'
export type { CrdtDescriptor, StoredCrdt } from './crdt/storage.ts'
export type { CrdtMetrics, CrdtRejectReason, CrdtSyncResult } from './crdt/metrics.ts'
export { CRDT_TYPE_NAMES, isCrdtTypeName } from '../protocols/crdt/index.ts'
export type { CrdtTypeName, JsonValue } from '../protocols/crdt/index.ts'
export { clusterTopology, TopologyService, TOPOLOGY_CAPABILITY, TOPOLOGY_KEY, TOPOLOGY_SETTINGS_DEFAULTS } from './topology/service.ts'
export type { TopologyComponents, TopologyInit, TopologySettings } from './topology/service.ts'
export type { EdgeKind, SkippedReport, TopologyEdge, TopologyGraph, TopologyNode } from './topology/view.ts'
export type { ConnectionEntry, DhtBucket, MeshTopic, TopologyReport } from './topology/report.ts'
export type { ConfChange, ConfChangeSingle, PeerStatus as RaftPeerProgress, ProgressStateName } from '../protocols/raft/index.ts'
export type { ClientSession, KvApplyResult, KvCommand, KvLimits, KvRejection } from '../protocols/kv/index.ts'
export type { MemberState, MembershipConfig, MembershipCounters, MembershipStatus, MemberRecord, Roster } from '../protocols/membership/index.ts'
export type { AntiEntropyConfig, AntiEntropyConfigInit, Entry as MetadataStoreEntry, EntryAuth, GossipCounters, GossipMode } from '../protocols/gossip/index.ts'
export type { ReportRejectReason } from './topology/codec.ts'
export type { ListName } from './topology/report.ts'
export type { AccordHost, HostComponents } from './host.ts'
// gossipsub: the settings accord's node gives it (StrictSign, topic scoring), for an app's own gossipsub
export { accordGossipsubOptions, membershipTopic, membershipTopicScoreParams, ACCORD_SCORE_THRESHOLDS, MEMBERSHIP_TOPIC_SCORE_PARAMS } from './membership/topic.ts'
export { gossipBytesCounter, gossipMetrics, GOSSIP_BYTES_METRIC } from './gossip-metrics.ts'
export type { GossipDirection, GossipMetrics } from './gossip-metrics.ts'

// HTTP: the routes of the services an app picks, on accord's API server or mounted on the app's own
export { createApiHandler, ownOriginCheck, startHttpApi } from './http-api.ts'
export type { ApiHandlerOptions, ApiResponse, Caller, HttpApi, HttpApiOptions, Route } from './http-api.ts'
export { admissionRoutes } from './admission/routes.ts'
export type { AdmissionSummary } from './admission/routes.ts'
export { raftRoutes } from './raft/routes.ts'
export { pbftRoutes } from './pbft/routes.ts'
export { membershipRoutes } from './membership/routes.ts'
export type { MemberView } from './membership/routes.ts'
export { metadataRoutes } from './metadata/routes.ts'
export { crdtRoutes } from './crdt/routes.ts'
export { topologyRoutes } from './topology/routes.ts'
