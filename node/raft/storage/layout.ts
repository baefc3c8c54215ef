/**
 * Files of the Raft storage, in its own directory `<dataDir>/raft`:
 *
 * | path                           | content                                                         |
 * |--------------------------------|-----------------------------------------------------------------|
 * | `accord.lock`                  | the pid of the process that has the store open (lock.ts)        |
 * | `wal/<seq, 16 hex>.wal`        | a write-ahead log segment: frames (node/storage-frames.ts) of   |
 * |                                | records (records.ts), the first one a head record; preallocated |
 * |                                | to segmentBytes, the unwritten rest zeros                       |
 * | `snap/<index, 16 hex>.snap`    | a snapshot: a frame of its metadata, a frame of its data        |
 * | `snap/*.tmp`                   | a snapshot being written (deleted at open: never referenced)    |
 * | `leveldb-format1.bak/`         | the LevelDB files of the format-1 store this one was migrated   |
 * |                                | from (migrate.ts), kept for the operator to delete              |
 * | `format2-migration.tmp/`       | a migration from format 1 in progress (migrate.ts)              |
 *
 * Segments are numbered from 1 without gaps; the log is their frames in
 * order. A segment is created by writing its head into a `.tmp` file,
 * syncing it and renaming it (then syncing the directory), so a segment
 * file always starts with a whole head. Snapshot files are written the same
 * way, and are live only once a synced `S` record names them.
 *
 * Format 1 was a LevelDB database in the same directory (accord before the
 * write-ahead log); it is recognised by its `CURRENT` file (and no segment)
 * and migrated by migrate.ts when the store is opened. Changing anything
 * here is a format change: bump FORMAT_VERSION.
 */
import { join } from 'node:path'

export const FORMAT_VERSION = 2

/** Not `LOCK`: a LevelDB store of format 1 has a file of that name. */
export const LOCK_FILE = 'accord.lock'
export const WAL_DIR = 'wal'
export const SNAPSHOT_DIR = 'snap'
/** A file only a LevelDB database (format 1) has. */
export const LEVELDB_MARKER_FILE = 'CURRENT'
export const TMP_SUFFIX = '.tmp'
/** Where a migration from format 1 builds the new store, and where it keeps the old one (migrate.ts). */
export const MIGRATION_DIR = 'format2-migration.tmp'
export const LEVELDB_BACKUP_DIR = 'leveldb-format1.bak'

const SEGMENT_PATTERN = /^([0-9a-f]{16})\.wal$/
const SNAPSHOT_PATTERN = /^([0-9a-f]{16})\.snap$/

const hex16 = (n: number): string => n.toString(16).padStart(16, '0')

export function segmentPath (dir: string, seq: number): string {
  return join(dir, WAL_DIR, `${hex16(seq)}.wal`)
}

export function snapshotPath (dir: string, index: number): string {
  return join(dir, SNAPSHOT_DIR, `${hex16(index)}.snap`)
}

/** The sequence number of a segment file name, or null if `name` is not one. */
export function parseSegmentName (name: string): number | null {
  const match = SEGMENT_PATTERN.exec(name)
  return match === null ? null : Number.parseInt(match[1], 16)
}

/** The index of a snapshot file name, or null if `name` is not one. */
export function parseSnapshotName (name: string): number | null {
  const match = SNAPSHOT_PATTERN.exec(name)
  return match === null ? null : Number.parseInt(match[1], 16)
}
