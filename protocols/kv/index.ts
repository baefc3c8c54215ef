/**
 * The replicated KV state machine, applied to committed entries in log
 * order (Raft's today; PBFT's executed requests next): commands with client
 * sessions for exactly-once, limits, a binary command encoding and canonical
 * snapshots. I/O-free, and independent of the protocol that orders its
 * commands; reads (get) are served by the node once the protocol says a
 * read may be (Raft: after ReadIndex).
 */
export { KvStateMachine } from './state-machine.ts'
export type { KvCheckResult, KvRestore, KvRestoreResult, KvSnapshotCheck, KvStateMachineOptions, KvStats } from './state-machine.ts'
export {
  KV_COMMAND_VERSION,
  KV_DEFAULTS,
  resolveKvLimits,
  validateCommand,
  encodeCommand,
  decodeCommand,
  writeSessionlessCommand,
  readSessionlessCommand,
  commandBytesMax
} from './command.ts'
export type { ClientSession, KvCommand, KvCommandType, KvLimits, CommandValidation, DecodedCommand, SessionlessKvCommand, WithoutSession } from './command.ts'
export { KV_SNAPSHOT_VERSION, kvSnapshotBytesMax } from './snapshot.ts'
export type { CreateSha256, KvSnapshotEncoder, Sha256 } from './snapshot.ts'
export type { KvApplyResult, KvRejection, KvSavedResult, KvSession } from './results.ts'
