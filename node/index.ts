/**
 * accord as a library, two ways.
 *
 * `createAccordNode(config)` builds and starts a whole node (libp2p,
 * admission, discovery, Raft, the HTTP API), as the daemon does.
 *
 * The service factories `clusterAdmission()`, `clusterDiscovery()` and
 * `raft()` add accord's protocols to an app's own libp2p node:
 * `createLibp2p({ services: { admission: clusterAdmission(init), raft: raft(init) } })`.
 */
export { createAccordNode } from './accord-node.ts'
export type { AccordNode, CreateAccordNodeOptions, NodeStatus, PeerStatus } from './accord-node.ts'
export { defaultConfig, LOG_LEVELS } from './config.ts'
export type { AccordConfig, LogLevel } from './config.ts'
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
export type { ConfChange, ConfChangeSingle, PeerStatus as RaftPeerProgress, ProgressStateName } from '../protocols/raft/index.ts'
export type { ClientSession, KvApplyResult, KvCommand, KvLimits, KvRejection } from '../protocols/raft/kv/index.ts'
export type { AccordHost, HostComponents } from './host.ts'

// HTTP: the routes of the services an app picks, on accord's API server or mounted on the app's own
export { createApiHandler, ownOriginCheck, startHttpApi } from './http-api.ts'
export type { ApiHandlerOptions, ApiResponse, Caller, HttpApi, HttpApiOptions, Route } from './http-api.ts'
export { admissionRoutes } from './admission/routes.ts'
export type { AdmissionSummary } from './admission/routes.ts'
export { raftRoutes } from './raft/routes.ts'
