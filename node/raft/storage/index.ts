/**
 * Durable storage for the Raft core (protocols/raft): hard state and log
 * entries in a write-ahead log of preallocated segment files, snapshots in
 * files beside it, one fdatasync per group of Readies, every frame
 * checksummed, and a start-up check that cuts off a torn write but refuses
 * to run on a log that lost data which may have been acknowledged.
 *
 * - layout.ts: files and the format version;
 * - records.ts: record encodings inside the log's frames;
 * - recovery.ts: replay, the log index and the durability rule;
 * - wal.ts: segments (open and replay, append, rotation, release, reads);
 * - snapshot-file.ts: snapshot files;
 * - lock.ts: one process per store;
 * - write-plan.ts: turning queued writes into one frame;
 * - migrate.ts, format1.ts: carrying a store of format 1 (LevelDB) over;
 * - raft-storage.ts: RaftStorage (open, load, persist, saveSnapshot, close).
 */
export { RaftStorage, RAFT_STORAGE_DEFAULTS, raftStorageDir } from './raft-storage.ts'
export type { PersistUpdate, RaftStorageLimits, RaftStorageOptions, StorageLogger } from './raft-storage.ts'
export { StorageCorruptionError, StorageFormatError, StorageLimitError, StoredStateError } from './errors.ts'
export { FORMAT_VERSION } from './layout.ts'
