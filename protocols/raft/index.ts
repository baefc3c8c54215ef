/**
 * The I/O-free Raft consensus core of accord (design after etcd-io/raft):
 * step / tick / ready / advance, with pre-vote, check-quorum, pipelined
 * replication, snapshots, leadership transfer, learners, joint consensus
 * and ReadIndex / lease reads.
 */
export { RaftNode } from './raft-node.ts'
export { RAFT_DEFAULTS, resolveConfig } from './config.ts'
export type { RaftConfig, RaftConfigInit } from './config.ts'
export { validateMessage, InvalidMessageError, RestoredStateError, COUNT_MAX, TERM_ADOPT_MAX, MESSAGE_ENTRIES_MAX, READ_CONTEXT_BYTES_MAX, CONF_MEMBERS_MAX } from './validate.ts'
export { encodeConfChange, decodeConfChange, checkConfChange, CONF_CHANGES_MAX } from './membership.ts'
export type { ConfChangeRecord } from './membership.ts'
export { MESSAGE_TYPES } from './types.ts'
export type * from './types.ts'
