/**
 * Migration of a Raft store of format 1 (LevelDB, format1.ts) to format 2
 * (the write-ahead log), in place, in the store's directory `dir`
 * (`<dataDir>/raft`). RaftStorage.open() runs it under the store's lock
 * whenever it finds a format-1 store; `accord raft migrate` runs it offline.
 *
 * Which format a directory holds is decided by one fact: format 2 is there
 * as soon as `wal/` holds a segment (wal.ts opens a log whenever it finds
 * one); a directory without a segment but with LevelDB's `CURRENT` is
 * format 1. The steps, each named by the hook `afterStep` (a test kills the
 * process there):
 *
 * 1. `cleaned`: leftovers of an interrupted attempt are deleted: the
 * temporary directory `format2-migration.tmp/`, and `wal/` and `snap/`
 * (without a segment, nothing reads them). The LevelDB store is untouched.
 * 2. `building` (after the first write), `built`: the format-1 store is read
 * and checked record by record (format 1's own rules: a missing or
 * damaged live record refuses the migration, the temporary directory is
 * deleted, nothing else changed) and written, through RaftStorage, into a
 * new format-2 store in `format2-migration.tmp/`: the snapshot, the
 * entries after it, the hard state, every frame fdatasync'd. That store is
 * then closed, opened again and compared with what was read.
 * 3. `snapshot-moved`: `format2-migration.tmp/snap` is renamed to `snap`, and
 * both directories are synced. Still format 1: no segment in `wal/`.
 * 4. `committed`: `format2-migration.tmp/wal` is renamed to `wal` and the
 * directory synced. One rename, atomic: from here on `dir` opens as
 * format 2, with the snapshot file already in place (step 3 was synced
 * first).
 * 5. `backup-started` (after the first file), `backed-up`: every LevelDB
 * file is renamed into `leveldb-format1.bak/`, which is then synced.
 * 6. `done`: the (now empty) temporary directory is deleted.
 *
 * A crash before step 4 leaves format 1 intact, and the next start migrates
 * again from step 1. A crash after it leaves a complete format-2 store; the
 * temporary directory still exists until step 6, and its presence makes
 * the next start finish steps 5 and 6 (each file rename is atomic, so a
 * LevelDB file is either still in `dir` or already in the backup).
 */
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { StorageFormatError } from './errors.ts'
import { Format1Reader, LEVELDB_FILE_PATTERN } from './format1.ts'
import { LEVELDB_BACKUP_DIR, LEVELDB_MARKER_FILE, MIGRATION_DIR, SNAPSHOT_DIR, WAL_DIR, parseSegmentName } from './layout.ts'
import { lockStore } from './lock.ts'
import { RAFT_STORAGE_DEFAULTS, RaftStorage } from './raft-storage.ts'
import { ENTRY_RECORD_OVERHEAD_BYTES } from './records.ts'
import { syncDir } from './wal.ts'
import type { RaftStorageLimits, StorageLogger } from './raft-storage.ts'
import type { LogState } from './records.ts'
import type { Entry } from '../../../protocols/raft/index.ts'

export const MIGRATION_STEPS = ['cleaned', 'building', 'built', 'snapshot-moved', 'committed', 'backup-started', 'backed-up', 'done'] as const
export type MigrationStep = typeof MIGRATION_STEPS[number]

/** Entries are written to the log in frames of at most this many bytes (or batchBytesMax, if smaller). */
const MIGRATION_BATCH_BYTES = 4 * 1024 * 1024

export interface MigrationResult {
  /** Entries carried over (those after the snapshot). */
  entries: number
  /** The snapshot's index, 0 when there is none. */
  snapshotIndex: number
  lastIndex: number
  /** Entry data and snapshot data carried over. */
  bytes: number
  durationMs: number
}

export interface MigrateOptions {
  /** The limits of the new store (those of RaftStorage.open). */
  limits?: Partial<RaftStorageLimits>
  logger: StorageLogger
  /** Called after each step (see above); for tests that kill the process there. */
  afterStep?(step: MigrationStep): void | Promise<void>
}

/** What `dir` needs: a migration, the end of an interrupted one (steps 5 and 6), or nothing. */
async function migrationNeeded (dir: string): Promise<'migrate' | 'finish' | null> {
  const names: string[] = await readdir(dir).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') { return [] } throw err })
  const segments: string[] = await readdir(join(dir, WAL_DIR)).catch(() => [])
  if (segments.some(name => parseSegmentName(name) !== null)) { return names.includes(MIGRATION_DIR) ? 'finish' : null }
  return names.includes(LEVELDB_MARKER_FILE) ? 'migrate' : null
}

/**
 * Migrates the store in `dir` if it is of format 1, or finishes an
 * interrupted migration; resolves to what was carried over, or null when
 * there was nothing to migrate. The caller holds the store's lock.
 * Throws, having changed nothing, StorageCorruptionError or
 * StorageFormatError (the format-1 store is damaged, or is not one),
 * StorageLimitError (it holds an entry or a snapshot beyond the new store's
 * limits) or UserError (LevelDB cannot be opened: an earlier accord runs
 * there).
 */
export async function migrateFormat1 (dir: string, options: MigrateOptions): Promise<MigrationResult | null> {
  const needed = await migrationNeeded(dir)
  if (needed === null) { return null }
  const step = async (name: MigrationStep): Promise<void> => { await options.afterStep?.(name) }
  if (needed === 'finish') {
    options.logger.info?.({ dir }, 'raft storage: finishing an interrupted migration from format 1 (moving the LevelDB files to their backup)')
    await backUpLevelDb(dir, step)
    return null
  }
  const started = performance.now()
  const names = await readdir(dir)
  if (names.includes(LEVELDB_BACKUP_DIR)) {
    throw new StorageFormatError(dir, `it holds a LevelDB raft store (format 1) and also ${LEVELDB_BACKUP_DIR}/, the backup of one migrated ` +
      `earlier; move one of them away (keep ${LEVELDB_BACKUP_DIR}/ only if it is the store you want to keep)`)
  }
  options.logger.info?.({ dir }, 'raft storage: migrating the LevelDB store (format 1) to the write-ahead log (format 2)')
  const tmp = join(dir, MIGRATION_DIR)
  for (const name of [MIGRATION_DIR, WAL_DIR, SNAPSHOT_DIR]) { await rm(join(dir, name), { recursive: true, force: true }) }
  await syncDir(dir)
  await step('cleaned')

  let counts: Omit<MigrationResult, 'durationMs'>
  try {
    counts = await build(dir, tmp, options, step)
  } catch (err) {
    // a refused store (damaged, or beyond a limit) leaves nothing behind; a crash leaves it to the next attempt's step 1
    await rm(tmp, { recursive: true, force: true })
    throw err
  }
  await syncDir(tmp)
  await step('built')

  await rename(join(tmp, SNAPSHOT_DIR), join(dir, SNAPSHOT_DIR))
  await syncDir(tmp)
  await syncDir(dir)
  await step('snapshot-moved')

  await rename(join(tmp, WAL_DIR), join(dir, WAL_DIR))
  await syncDir(dir)
  await step('committed')

  await backUpLevelDb(dir, step)
  const result = { ...counts, durationMs: Math.round(performance.now() - started) }
  options.logger.info?.({ dir, ...result, backup: join(dir, LEVELDB_BACKUP_DIR) },
    'raft storage: migrated the LevelDB store (format 1) to the write-ahead log (format 2)')
  return result
}

/** migrateFormat1() under the store's lock, for `accord raft migrate` (the node must be stopped). */
export async function migrateStore (dir: string, options: MigrateOptions): Promise<MigrationResult | null> {
  const unlock = await lockStore(dir)
  try {
    return await migrateFormat1(dir, options)
  } finally {
    await unlock()
  }
}

/** Step 2: reads the format-1 store and writes it as a format-2 store in `tmp`. */
async function build (dir: string, tmp: string, options: MigrateOptions, step: (name: MigrationStep) => Promise<void>): Promise<Omit<MigrationResult, 'durationMs'>> {
  const reader = await Format1Reader.open(dir)
  try {
    const state = await reader.readState()
    const snapshot = state.snapshotIndex > 0 ? await reader.readSnapshot(state) : null
    const store = await RaftStorage.open(tmp, { ...options.limits, logger: options.logger })
    let entries = 0
    let bytes = snapshot?.data.length ?? 0
    try {
      // the order RaftStorage accepts: the snapshot replaces the (empty) log, entries follow it, then the commit they cover
      if (snapshot !== null) { await store.persist({ snapshot }) }
      const frameBytesMax = Math.min(MIGRATION_BATCH_BYTES, options.limits?.batchBytesMax ?? RAFT_STORAGE_DEFAULTS.batchBytesMax)
      let batch: Entry[] = []
      let batchBytes = 0
      const flush = async (): Promise<void> => {
        if (batch.length === 0) { return }
        await store.persist({ entries: batch })
        if (entries === 0) { await step('building') }
        entries += batch.length
        batch = []
        batchBytes = 0
      }
      for await (const entry of reader.entries(state)) {
        const recordBytes = ENTRY_RECORD_OVERHEAD_BYTES + entry.data.length
        if (batchBytes + recordBytes > frameBytesMax) { await flush() }
        batch.push(entry)
        batchBytes += recordBytes
        bytes += entry.data.length
      }
      await flush()
      await store.persist({ hardState: state.hardState })
    } finally {
      await store.close()
    }
    await checkBuilt(dir, tmp, options, state, entries)
    return { entries, snapshotIndex: state.snapshotIndex, lastIndex: state.lastIndex, bytes }
  } finally {
    await reader.close()
  }
}

/** Opens the new store as the next start will, and compares it with the format-1 state it was written from. */
async function checkBuilt (dir: string, tmp: string, options: MigrateOptions, expected: LogState, entries: number): Promise<void> {
  const store = await RaftStorage.open(tmp, { ...options.limits, logger: options.logger })
  try {
    const { hardState, snapshot, entries: written } = await store.load()
    const last = written.at(-1)
    const found = `hard state ${hardState.term}/${hardState.vote ?? 'none'}/${hardState.commit}, snapshot ${snapshot?.meta.index ?? 0}, ` +
      `${written.length} entries to ${last?.index ?? snapshot?.meta.index ?? 0}/${last?.term ?? snapshot?.meta.term ?? 0}`
    const want = `hard state ${expected.hardState.term}/${expected.hardState.vote ?? 'none'}/${expected.hardState.commit}, ` +
      `snapshot ${expected.snapshotIndex}, ${entries} entries to ${expected.lastIndex}/${expected.lastTerm}`
    if (found !== want) { throw new Error(`raft storage ${dir}: the migrated store reads back as ${found}, not ${want}; nothing was changed`) }
  } finally {
    await store.close()
  }
}

/** Steps 5 and 6: the LevelDB files go to the backup directory, then the temporary directory goes. */
async function backUpLevelDb (dir: string, step: (name: MigrationStep) => Promise<void>): Promise<void> {
  const backup = join(dir, LEVELDB_BACKUP_DIR)
  await mkdir(backup, { recursive: true, mode: 0o700 })
  let moved = 0
  for (const name of await readdir(dir)) {
    if (!LEVELDB_FILE_PATTERN.test(name) || !(await stat(join(dir, name))).isFile()) { continue }
    await rename(join(dir, name), join(backup, name))
    if (moved++ === 0) { await step('backup-started') }
  }
  await syncDir(backup)
  await syncDir(dir)
  await step('backed-up')
  await rm(join(dir, MIGRATION_DIR), { recursive: true, force: true })
  await syncDir(dir)
  await step('done')
}
