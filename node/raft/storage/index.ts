/**
 * Durable storage for the Raft core (protocols/raft): hard state, log
 * entries and snapshots in LevelDB, one fsync per group of Readies, every
 * record checksummed, and a start-up check that refuses to run on a log
 * that lost data which may have been acknowledged.
 *
 * - layout.ts: keys and the format version;
 * - records.ts: value encodings and checksums;
 * - recovery.ts: loading, verification and the durability rule;
 * - write-plan.ts: turning queued writes into one batch;
 * - raft-storage.ts: RaftStorage (open, load, persist, saveSnapshot, close).
 */
export { RaftStorage, RAFT_STORAGE_DEFAULTS, raftStorageDir } from './raft-storage.ts'
export type { PersistUpdate, RaftStorageLimits, RaftStorageOptions, StorageLogger } from './raft-storage.ts'
export { StorageCorruptionError, StorageFormatError, StorageLimitError, StoredStateError } from './errors.ts'
export { FORMAT_VERSION } from './layout.ts'
