/**
 * `accord raft migrate`: the offline form of what a node does at start when
 * its data dir holds a Raft store of storage format 1 (LevelDB): migrate it
 * to format 2, the write-ahead log (node/raft/storage/migrate.ts).
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { UserError } from '../errors.ts'
import { StorageLimitError, raftStorageDir } from '../raft/storage/index.ts'
import { LEVELDB_BACKUP_DIR } from '../raft/storage/layout.ts'
import { migrateStore } from '../raft/storage/migrate.ts'
import { parseFlags } from './args.ts'

export const MIGRATE_HELP = `Usage: accord raft migrate --data-dir DIR

Migrate the Raft store in DIR/raft from storage format 1 (the LevelDB store
of an accord from before the write-ahead log) to format 2, offline, on a
stopped node. A node started on such a data dir does the same by itself;
this command lets you do it, and see the result, before the start.

The old store is read and checked first (a damaged one is refused and left
as it is), the new one is built beside it and switched in with one rename;
a crash at any point leaves either the old store or the complete new one.
The LevelDB files are kept in DIR/raft/${LEVELDB_BACKUP_DIR}/: delete that
directory once the node runs well (an accord from before the write-ahead
log can run on a copy of it, renamed back to DIR/raft).
`

export async function migrateCommand (args: string[]): Promise<void> {
  const flags = parseFlags('raft migrate', args, { 'data-dir': { type: 'string' } })
  const dataDir = flags['data-dir']
  if (dataDir === undefined) { throw new UserError('raft migrate: --data-dir is required') }
  const dir = raftStorageDir(dataDir)
  if (!existsSync(dir)) { throw new UserError(`raft migrate: ${dataDir} holds no Raft state (no ${dir})`) }
  const logger = {
    warn: (fields: Record<string, unknown>, message: string) => { process.stderr.write(`${message} ${JSON.stringify(fields)}\n`) }
  }
  let result
  try {
    // the store's lock makes this fail while a node runs there
    result = await migrateStore(dir, { logger })
  } catch (err) {
    if (err instanceof StorageLimitError) {
      throw new UserError(`raft migrate: ${err.message}; start the node instead, which migrates its store with the limits it is configured with`)
    }
    throw err
  }
  if (result === null) {
    process.stdout.write(`nothing to migrate: ${dir} holds storage format 2\n`)
    return
  }
  process.stdout.write(`migrated ${dir} to storage format 2: ${result.entries} entries after ` +
    (result.snapshotIndex > 0 ? `the snapshot at index ${result.snapshotIndex}` : 'no snapshot') +
    `, last index ${result.lastIndex}, ${result.bytes} bytes of data, in ${result.durationMs} ms\n` +
    `the LevelDB files are in ${join(dir, LEVELDB_BACKUP_DIR)}/ (delete it once the node runs well)\n`)
}
