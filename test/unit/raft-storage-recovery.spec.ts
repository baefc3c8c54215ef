import { expect } from 'aegir/chai'
import { UserError } from '../../node/errors.ts'
import { RaftStorage, StorageCorruptionError, StorageFormatError } from '../../node/raft/storage/index.ts'
import { FORMAT_KEY, SNAPSHOT_META_KEY, STATE_KEY, chunkKey, entryKey } from '../../node/raft/storage/layout.ts'
import { encodeEntryValue, encodeFormatValue, sealRecord } from '../../node/raft/storage/records.ts'
import { CaptureLogger, TempDirs, entries, entry, listKeys, snapshot, withRawDb } from './raft-storage-helpers.ts'
import type { ClassicLevel } from 'classic-level'

type RawDb = ClassicLevel<Uint8Array, Uint8Array>

/** The durable log every test starts from: entries 1..4 (term 1), 5..8 (term 2), commit 5. */
const BASE_ENTRIES = [...entries(1, 4, 1), ...entries(5, 8, 2)]
const BASE_HARD_STATE = { term: 2, vote: 'n1', commit: 5 }

async function flipByte (db: RawDb, key: Uint8Array, offset = -1): Promise<void> {
  const value = await db.get(key)
  if (value === undefined) { throw new Error('no such record') }
  const damaged = Uint8Array.from(value)
  damaged[(offset + damaged.length) % damaged.length] ^= 0x40
  await db.put(key, damaged)
}

describe('raft storage: recovery and the durability rule', () => {
  const temp = new TempDirs()
  let logger: CaptureLogger
  let dir: string

  async function openAndLoad (): Promise<{ storage: RaftStorage, restored: Awaited<ReturnType<RaftStorage['load']>> }> {
    const storage = await RaftStorage.open(dir, { logger, snapshotChunkBytes: 64 })
    return { storage, restored: await storage.load() }
  }

  async function expectRefusal (pattern: RegExp, index: number | null): Promise<StorageCorruptionError> {
    const keysBefore = await listKeys(dir)
    const err = await RaftStorage.open(dir, { logger, snapshotChunkBytes: 64 }).then(
      async storage => { await storage.close(); throw new Error('open succeeded') },
      (err: unknown) => err
    )
    expect(err).to.be.instanceOf(StorageCorruptionError)
    const corruption = err as StorageCorruptionError
    expect(corruption.message).to.match(pattern)
    expect(corruption.index).to.equal(index)
    expect(corruption.dir).to.equal(dir)
    expect(corruption.message).to.include(`raft storage ${dir}:`)
    expect(corruption.message).to.include('refuses to start rather than silently lose it')
    expect(corruption.message).to.include(`remove this node from the cluster (through another member), delete ${dir}, and add the node back as a new member`)
    expect(await listKeys(dir), 'a refused open changes nothing').to.deep.equal(keysBefore)
    return corruption
  }

  beforeEach(async () => {
    logger = new CaptureLogger()
    dir = await temp.make()
    const storage = await RaftStorage.open(dir, { logger })
    await storage.persist({ hardState: { term: 1, vote: 'n1', commit: 2 }, entries: entries(1, 4, 1) })
    await storage.persist({ hardState: BASE_HARD_STATE, entries: entries(5, 8, 2) })
    await storage.close()
  })
  afterEach(async () => { await temp.removeAll() })

  describe('repaired: records after the last durable index', () => {
    it('truncates corrupt and stray records after the last index, with a warning, and keeps working', async () => {
      await withRawDb(dir, async db => {
        await db.put(entryKey(9), Uint8Array.of(1, 2, 3, 4, 5, 6, 7)) // a torn record
        await db.put(entryKey(10), encodeEntryValue(entryKey(10), entry(10, 2))) // valid, but no batch had it in its log
      })
      const { storage, restored } = await openAndLoad()
      expect(restored).to.deep.equal({ hardState: BASE_HARD_STATE, entries: BASE_ENTRIES })
      expect(logger.warnings).to.have.length(1)
      expect(logger.warnings[0].message).to.match(/truncating log records after the last durable index/)
      expect(logger.warnings[0].fields).to.deep.include({ dir, lastIndex: 8, records: 2, corrupt: 1 })
      await storage.persist({ entries: [entry(9, 3)], hardState: { term: 3, vote: null, commit: 5 } })
      await storage.close()
      expect((await listKeys(dir)).filter(k => k.startsWith('E:'))).to.have.length(9)
      const again = await openAndLoad()
      expect(again.restored.entries).to.deep.equal([...BASE_ENTRIES, entry(9, 3)])
      expect(logger.warnings).to.have.length(1)
      await again.storage.close()
    })

    it('deletes entries and snapshot chunks left by an interrupted compaction', async () => {
      let { storage } = await openAndLoad()
      await storage.saveSnapshot(snapshot(4, 1, 100))
      await storage.close()
      await withRawDb(dir, async db => {
        await db.put(entryKey(2), encodeEntryValue(entryKey(2), entry(2, 1)))
        await db.put(chunkKey(3, 0), sealRecord(chunkKey(3, 0), Uint8Array.of(9)))
      });
      ({ storage } = await openAndLoad())
      expect(logger.warnings.map(w => w.fields)).to.deep.equal([{ dir, snapshotIndex: 4, entries: 1, snapshotChunks: 1 }])
      await storage.close()
      expect(await listKeys(dir)).to.deep.equal(['E:5', 'E:6', 'E:7', 'E:8', 'H', 'M', 'S:4:0', 'S:4:1', 'V'])
    })
  })

  describe('refused: anything a completed write stored', () => {
    it('a corrupt entry at or below the commit index', async () => {
      await withRawDb(dir, async db => { await flipByte(db, entryKey(3)) })
      const err = await expectRefusal(/log entry 3 is corrupt \(checksum or header mismatch\)/, 3)
      expect(err).to.be.instanceOf(UserError) // the CLI prints it as one line
    })

    it('a corrupt entry after the commit index (a follower acknowledged it when its write completed)', async () => {
      await withRawDb(dir, async db => { await flipByte(db, entryKey(7), 30) })
      await expectRefusal(/log entry 7 is corrupt/, 7)
    })

    it('a corrupt last entry (the last completed write may have been acknowledged)', async () => {
      await withRawDb(dir, async db => { await flipByte(db, entryKey(8), 6) })
      await expectRefusal(/log entry 8 is corrupt/, 8)
    })

    it('a missing entry in the middle or at the end of the log', async () => {
      await withRawDb(dir, async db => { await db.del(entryKey(4)) })
      await expectRefusal(/log entry 4 is missing \(the log must hold every index from 1 to 8\)/, 4)
      await withRawDb(dir, async db => {
        await db.put(entryKey(4), encodeEntryValue(entryKey(4), entry(4, 1)))
        await db.del(entryKey(8))
      })
      await expectRefusal(/log entry 8 is missing/, 8)
    })

    it('a valid record stored under another index', async () => {
      await withRawDb(dir, async db => { await db.put(entryKey(4), (await db.get(entryKey(3)))!) })
      await expectRefusal(/log entry 4 is corrupt/, 4)
    })

    it('a last entry whose term contradicts the state record', async () => {
      await withRawDb(dir, async db => { await db.put(entryKey(8), encodeEntryValue(entryKey(8), entry(8, 3))) })
      await expectRefusal(/log entry 8 has term 3 but the state record says 2/, 8)
    })

    it('a corrupt or missing state record (it holds the vote)', async () => {
      await withRawDb(dir, async db => { await flipByte(db, STATE_KEY, 10) })
      await expectRefusal(/the state record \(term, vote, commit, log bounds\) is corrupt/, null)
      await withRawDb(dir, async db => { await db.del(STATE_KEY) })
      await expectRefusal(/the state record \(term, vote, commit, log bounds\) is missing/, null)
    })

    it('a corrupt, missing or incomplete snapshot', async () => {
      const { storage } = await openAndLoad()
      await storage.saveSnapshot(snapshot(5, 2, 150)) // 3 chunks of at most 64 bytes
      await storage.close()
      await withRawDb(dir, async db => { await flipByte(db, chunkKey(5, 1)) })
      await expectRefusal(/chunk 1 of the snapshot at index 5 is missing or corrupt/, 5)
      await withRawDb(dir, async db => { await db.del(chunkKey(5, 1)) })
      await expectRefusal(/chunk 1 of the snapshot at index 5 is missing or corrupt/, 5)
      await withRawDb(dir, async db => {
        await db.put(chunkKey(5, 1), sealRecord(chunkKey(5, 1), snapshot(5, 2, 150).data.subarray(64, 128)))
        await db.del(chunkKey(5, 2))
      })
      await expectRefusal(/the snapshot at index 5 is incomplete \(2 of 3 chunks, 128 of 150 bytes\)/, 5)
      await withRawDb(dir, async db => { await db.del(SNAPSHOT_META_KEY) })
      await expectRefusal(/the metadata of the snapshot at index 5 is missing or corrupt/, 5)
    })
  })

  describe('format', () => {
    it('refuses another format version with a clear error', async () => {
      await withRawDb(dir, async db => { await db.put(FORMAT_KEY, encodeFormatValue(FORMAT_KEY, 99)) })
      const err = await RaftStorage.open(dir, { logger }).catch((err: unknown) => err)
      expect(err).to.be.instanceOf(StorageFormatError)
      expect((err as Error).message).to.equal(`raft storage ${dir}: it has storage format version 99, but this accord reads version 1; ` +
        `run an accord release that reads version 99, or remove this node from the cluster, delete ${dir} and add it back as a new member`)
    })

    it('refuses a corrupt format record', async () => {
      await withRawDb(dir, async db => { await flipByte(db, FORMAT_KEY) })
      await expectRefusal(/the format record is corrupt/, null)
    })

    it('refuses a LevelDB database that is not a raft store', async () => {
      const other = await temp.make()
      await withRawDb(other, async db => { await db.put(Uint8Array.of(0x2f, 0x6b), Uint8Array.of(1)) })
      await expect(RaftStorage.open(other, { logger })).to.be.rejectedWith(StorageFormatError, /has data but no format record, so it is not an accord raft store/)
      expect(await listKeys(other)).to.deep.equal(['/'])
    })
  })
})
