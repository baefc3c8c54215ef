/**
 * The I/O-free membership core of accord: SWIM failure detection with
 * Lifeguard (local health awareness, nacks, dynamic suspicion), incarnation
 * numbers, piggybacked dissemination, member metadata, join and graceful
 * leave. The libp2p service (`/accord/swim/1.0.0`) drives it.
 */
export { MembershipNode } from './membership-node.ts'
export { MEMBERSHIP_DEFAULTS, resolveConfig, ID_LENGTH_MAX, INCARNATION_MAX, INCARNATION_JUMP_MAX, META_BYTES_FLOOR, LIST_LENGTH_MAX, isValidMemberId } from './config.ts'
export type { MembershipConfig, MembershipConfigInit, MessageLimits } from './config.ts'
export { createRoster } from './member-table.ts'
export type { Roster, RosterEntry, MemberRecord } from './member-table.ts'
export { validateMessage, validateGossip, parseUpdate, InvalidMessageError } from './validate.ts'
export type { GossipBatch } from './validate.ts'
export { messageBytes, updateBytes, headerBytes, gossipBytes, aliveUpdateBytesMax } from './size.ts'
export { supersedes, isLive, STATE_RANK } from './precedence.ts'
export { suspicionTimeoutMinTicks, suspicionTimeoutTicks, expectedConfirmations } from './suspicion.ts'
export { retransmitLimit } from './broadcast-queue.ts'
export { MESSAGE_TYPES } from './types.ts'
export type * from './types.ts'
