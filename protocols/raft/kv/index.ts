/**
 * The replicated KV state machine applied to committed Raft entries: commands
 * with client sessions for exactly-once, limits, a binary command encoding
 * and canonical snapshots. I/O-free; reads (get) are served by the node after
 * ReadIndex.
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
  commandBytesMax
} from './command.ts'
export type { ClientSession, KvCommand, KvCommandType, KvLimits, CommandValidation, DecodedCommand } from './command.ts'
export { KV_SNAPSHOT_VERSION, kvSnapshotBytesMax } from './snapshot.ts'
export type { CreateSha256, KvSnapshotEncoder, Sha256 } from './snapshot.ts'
export type { KvApplyResult, KvRejection, KvSavedResult, KvSession } from './results.ts'
