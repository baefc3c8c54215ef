import { readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ClassicLevel } from 'classic-level'
import { RaftStorage, StorageCorruptionError, StorageFormatError } from '../../node/raft/storage/index.ts'
import { migrateStore } from '../../node/raft/storage/migrate.ts'
import { Wal } from '../../node/raft/storage/wal.ts'
import { CaptureLogger, TempDirs, copyFormat1Fixture, expectedOf, format1State, listFiles, openAndLoad, plain } from './raft-storage-helpers.ts'
import type { Format1Fixture } from './raft-storage-helpers.ts'
import type { MigrationResult } from '../../node/raft/storage/migrate.ts'

class InfoLogger extends CaptureLogger {
  readonly infos: Array<{ fields: Record<string, unknown>, message: string }> = []
  info = (fields: Record<string, unknown>, message: string): void => { this.infos.push({ fields, message }) }
}

/** Raw LevelDB access to plant damage in a copied fixture: `E` keys are 'E' u64be(index). */
async function damage (dir: string, edit: (db: ClassicLevel<Uint8Array, Uint8Array>) => Promise<void>): Promise<void> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' })
  await db.open()
  try { await edit(db) } finally { await db.close() }
}

function entryKey (index: number): Uint8Array {
  const key = new Uint8Array(9)
  key[0] = 0x45
  new DataView(key.buffer).setBigUint64(1, BigInt(index))
  return key
}

async function flipValueByte (db: ClassicLevel<Uint8Array, Uint8Array>, key: Uint8Array, offset: number): Promise<void> {
  const value = await db.get(key)
  if (value === undefined) { throw new Error('no such key') }
  const copy = Uint8Array.from(value)
  copy[offset] ^= 0x40
  await db.put(key, copy)
}

describe('raft storage: migration from format 1 (LevelDB)', () => {
  const temp = new TempDirs()
  let logger: InfoLogger
  let dir: string

  beforeEach(async () => {
    logger = new InfoLogger()
    dir = await temp.make()
  })
  afterEach(async () => { await temp.removeAll() })

  const fixtures: Format1Fixture[] = ['snapshot-and-entries', 'entries-only', 'snapshot-only', 'empty']
  fixtures.forEach(name => {
    it(`carries over the store '${name}' exactly as format 1 restored it`, async () => {
      await copyFormat1Fixture(name, dir)
      expect(await openAndLoad(dir, logger)).to.deep.equal(await expectedOf(name))
      // the LevelDB files are kept aside, nothing else is left behind
      expect(await listFiles(dir)).to.include.members(['leveldb-format1.bak', 'wal/1'])
      expect((await listFiles(dir)).filter(f => !f.startsWith('wal/') && !f.startsWith('snap/'))).to.deep.equal(['leveldb-format1.bak'])
      expect(await readdir(join(dir, 'leveldb-format1.bak'))).to.include('CURRENT')
      expect(await format1State(join(dir, 'leveldb-format1.bak')), 'the backup is the whole format-1 store')
        .to.deep.equal((await expectedOf(name) as { hardState: unknown }).hardState)
      // the next open is an ordinary one of format 2
      const before = logger.infos.length
      expect(await openAndLoad(dir, logger)).to.deep.equal(await expectedOf(name))
      expect(logger.infos.length).to.equal(before)
    })
  })

  it('reports at info what it carried over', async () => {
    await copyFormat1Fixture('snapshot-and-entries', dir)
    await openAndLoad(dir, logger)
    const done = logger.infos.find(i => i.message.includes('migrated the LevelDB store'))
    expect(done?.fields).to.include({ dir, entries: 20, snapshotIndex: 20, lastIndex: 40 })
    const expected = await expectedOf('snapshot-and-entries') as { entries: Array<{ data: string }> }
    const entryBytes = expected.entries.reduce((n, e) => n + Buffer.from(e.data, 'base64').length, 0)
    expect(done?.fields.bytes).to.equal(700 + entryBytes)
    expect(done?.fields.durationMs).to.be.a('number')
  })

  it('writes the log in several frames and segments when it is large', async () => {
    await copyFormat1Fixture('snapshot-and-entries', dir)
    const storage = await RaftStorage.open(dir, { logger, segmentBytes: 512, entryBytesMax: 64, batchBytesMax: 256, snapshotChunkBytes: 256 })
    expect(plain(await storage.load())).to.deep.equal(await expectedOf('snapshot-and-entries'))
    await storage.close()
    expect((await listFiles(dir)).filter(f => f.startsWith('wal/')).length).to.be.greaterThan(1)
  })

  it('is what accord raft migrate runs offline: migrateStore() takes the lock and reports the counts', async () => {
    await copyFormat1Fixture('entries-only', dir)
    const result = await migrateStore(dir, { logger }) as MigrationResult
    expect(result).to.include({ entries: 7, snapshotIndex: 0, lastIndex: 7 })
    expect(await migrateStore(dir, { logger }), 'nothing left to migrate').to.equal(null)
    expect(await openAndLoad(dir, logger)).to.deep.equal(await expectedOf('entries-only'))
  })

  describe('refuses a damaged store, saying what it found, and changes nothing', () => {
    async function expectRefused (edit: (db: ClassicLevel<Uint8Array, Uint8Array>) => Promise<void>, message: RegExp,
      type: typeof StorageCorruptionError | typeof StorageFormatError = StorageCorruptionError): Promise<void> {
      await copyFormat1Fixture('snapshot-and-entries', dir)
      await damage(dir, edit)
      const err = await RaftStorage.open(dir, { logger }).catch((err: unknown) => err)
      expect(err).to.be.instanceOf(type)
      expect((err as Error).message).to.match(message)
      // (LevelDB itself may have rewritten its files on open, as the earlier release did at each start)
      const names = await readdir(dir)
      expect(names, 'the LevelDB store stays').to.include('CURRENT')
      for (const name of ['wal', 'snap', 'format2-migration.tmp', 'leveldb-format1.bak']) { expect(names, 'no trace of format 2').to.not.include(name) }
    }

    it('a missing live entry', async () => {
      await expectRefused(async db => { await db.del(entryKey(33)) },
        /its LevelDB store \(format 1\) cannot be migrated: log entry 33 is missing \(the log must hold every index from 21 to 40\)\. This data may have been acknowledged/)
    })

    it('a live entry that fails its checksum', async () => {
      await expectRefused(async db => { await flipValueByte(db, entryKey(35), 20) },
        /cannot be migrated: log entry 35 is corrupt \(checksum or header mismatch\)/)
    })

    it('a damaged snapshot chunk', async () => {
      const chunk1 = Uint8Array.of(0x53, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 1)
      await expectRefused(async db => { await flipValueByte(db, chunk1, 100) },
        /cannot be migrated: chunk 1 of the snapshot at index 20 is missing or corrupt/)
    })

    it('a damaged state record (it holds the vote)', async () => {
      await expectRefused(async db => { await flipValueByte(db, Uint8Array.of(0x48), 8) },
        /cannot be migrated: the state record \(term, vote, commit, log bounds\) is corrupt/)
    })

    it('a LevelDB database that is not an accord raft store', async () => {
      await expectRefused(async db => { await db.del(Uint8Array.of(0x56)) },
        /it holds a LevelDB database without the format record of an accord raft store/, StorageFormatError)
    })
  })

  it('refuses a format-1 store next to the backup of an earlier migration', async () => {
    await copyFormat1Fixture('entries-only', dir)
    await copyFormat1Fixture('empty', join(dir, 'leveldb-format1.bak'))
    await expect(RaftStorage.open(dir, { logger })).to.be.rejectedWith(StorageFormatError,
      /holds a LevelDB raft store \(format 1\) and also leveldb-format1.bak\/, the backup of one migrated earlier/)
  })

  it('refuses while an earlier accord has the LevelDB store open, and changes nothing', async () => {
    await copyFormat1Fixture('entries-only', dir)
    const db = new ClassicLevel(dir)
    await db.open()
    try {
      await expect(RaftStorage.open(dir, { logger })).to.be.rejectedWith(/cannot open the LevelDB raft store \(format 1\) in .* \(is an earlier accord still running there\?\)/)
    } finally {
      await db.close()
    }
    expect(await readdir(dir)).to.not.include.members(['wal', 'snap', 'format2-migration.tmp', 'leveldb-format1.bak'])
    expect(await openAndLoad(dir, logger)).to.deep.equal(await expectedOf('entries-only'))
  })

  it('leaves a format-1 store to the migration: the write-ahead log alone refuses it', async () => {
    await copyFormat1Fixture('entries-only', dir)
    await expect(Wal.open(dir, { segmentBytes: 4096, frameBytesMax: 4096, logger })).to.be.rejectedWith(StorageFormatError,
      /it holds the LevelDB raft store of an earlier accord \(storage format 1\), but the write-ahead log reads version 2; migrate it first/)
  })

  it('creates a new store next to the backup once the operator deleted the log', async () => {
    await copyFormat1Fixture('entries-only', dir)
    await openAndLoad(dir, logger)
    await rm(join(dir, 'wal'), { recursive: true })
    await rm(join(dir, 'snap'), { recursive: true })
    expect(await openAndLoad(dir, logger)).to.deep.equal({ hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] })
  })
})
