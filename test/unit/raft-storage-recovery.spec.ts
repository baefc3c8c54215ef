import { copyFile, mkdir, readFile, readdir, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { UserError } from '../../node/errors.ts'
import { RaftStorage, StorageCorruptionError, StorageFormatError } from '../../node/raft/storage/index.ts'
import { encodeEntryRecord, encodeHardStateRecord, encodeHeadRecord } from '../../node/raft/storage/records.ts'
import { encodeFrame } from '../../node/storage-frames.ts'
import { CaptureLogger, TempDirs, entries, entry, flipByte, listFiles, segmentFile, segmentFrames, snapshot, snapshotFile } from './raft-storage-helpers.ts'

/** The durable log every test starts from: entries 1..4 (term 1), 5..8 (term 2), commit 5; three frames (head, 1..4, 5..8). */
const BASE_ENTRIES = [...entries(1, 4, 1), ...entries(5, 8, 2)]
const BASE_HARD_STATE = { term: 2, vote: 'n1', commit: 5 }

describe('raft storage: recovery and the durability rule', () => {
  const temp = new TempDirs()
  let logger: CaptureLogger
  let dir: string

  async function openAndLoad (): Promise<{ storage: RaftStorage, restored: Awaited<ReturnType<RaftStorage['load']>> }> {
    const storage = await RaftStorage.open(dir, { logger, snapshotChunkBytes: 64 })
    return { storage, restored: await storage.load() }
  }

  /** Every file of the store with its bytes. */
  async function contents (): Promise<Record<string, string>> {
    const out: Record<string, string> = {}
    for (const sub of ['wal', 'snap']) {
      for (const name of await readdir(join(dir, sub))) { out[`${sub}/${name}`] = (await readFile(join(dir, sub, name))).toString('base64') }
    }
    return out
  }

  async function expectRefusal (pattern: RegExp, index: number | null): Promise<StorageCorruptionError> {
    const before = await contents()
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
    expect(await contents(), 'a refused open changes nothing').to.deep.equal(before)
    return corruption
  }

  /** Writes `frame` at the end of the last whole frame of segment 1. */
  async function appendRaw (frame: Uint8Array): Promise<number> {
    const { bytes, end } = await segmentFrames(dir, 1)
    bytes.set(frame, end)
    await writeFile(segmentFile(dir, 1), bytes)
    return end
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

  describe('repaired: a torn write at the end of the log', () => {
    it('cuts off a partial frame after the last whole one, with a warning, and keeps working', async () => {
      const torn = encodeFrame(encodeEntryRecord(entry(9, 2, 500))).subarray(0, 300)
      const offset = await appendRaw(torn)
      const { storage, restored } = await openAndLoad()
      expect(restored).to.deep.equal({ hardState: BASE_HARD_STATE, entries: BASE_ENTRIES })
      expect(logger.warnings).to.have.length(1)
      expect(logger.warnings[0].message).to.match(/cutting off a torn write at the end of the write-ahead log/)
      expect(logger.warnings[0].fields).to.deep.include({ dir, segment: 1, offset })
      await storage.persist({ entries: [entry(9, 3)], hardState: { term: 3, vote: null, commit: 5 } })
      await storage.close()
      const again = await openAndLoad()
      expect(again.restored.entries).to.deep.equal([...BASE_ENTRIES, entry(9, 3)])
      expect(logger.warnings, 'the torn bytes were zeroed').to.have.length(1)
      await again.storage.close()
    })

    it('takes a damaged last frame followed by zeros for a torn write (what no rule can tell apart)', async () => {
      const { frames } = await segmentFrames(dir, 1)
      await flipByte(segmentFile(dir, 1), frames[2] + 40)
      const { storage, restored } = await openAndLoad()
      expect(restored).to.deep.equal({ hardState: { term: 1, vote: 'n1', commit: 2 }, entries: entries(1, 4, 1) })
      expect(logger.warnings.map(w => w.fields.offset)).to.deep.equal([frames[2]])
      await storage.close()
    })

    it('deletes snapshot files left by an interrupted compaction or install', async () => {
      let { storage } = await openAndLoad()
      await storage.saveSnapshot(snapshot(4, 1, 100))
      await storage.close()
      await copyFile(snapshotFile(dir, 4), snapshotFile(dir, 3))
      await writeFile(snapshotFile(dir, 7) + '.123-1.tmp', 'half a snapshot');
      ({ storage } = await openAndLoad())
      expect(logger.warnings.map(w => w.fields)).to.deep.equal([{ dir, snapshotIndex: 4, files: ['0000000000000003.snap', '0000000000000007.snap.123-1.tmp'] }])
      await storage.close()
      expect(await listFiles(dir)).to.deep.equal(['snap/4', 'wal/1'])
    })
  })

  describe('refused: anything a completed write stored', () => {
    it('a damaged frame followed by another (it was synced before the next was written)', async () => {
      const { frames } = await segmentFrames(dir, 1)
      await flipByte(segmentFile(dir, 1), frames[1] + 30)
      const err = await expectRefusal(new RegExp(`segment 1: the frame at byte ${frames[1]} is damaged \\(checksum mismatch\\) and more data follows it`), null)
      expect(err).to.be.instanceOf(UserError) // the CLI prints it as one line
    })

    it('a damaged frame length before more data', async () => {
      const { frames } = await segmentFrames(dir, 1)
      await flipByte(segmentFile(dir, 1), frames[1])
      await expectRefusal(new RegExp(`segment 1: the frame at byte ${frames[1]} is damaged \\(frame of \\d+ bytes exceeds the limit of \\d+\\) and more data follows it`), null)
    })

    it('a checksummed frame that does not decode', async () => {
      await appendRaw(encodeFrame(Uint8Array.of(0x58, 1, 2, 3)))
      await expectRefusal(/the frame at byte \d+ does not decode \(an unknown record type 0x58 at byte 0\)/, null)
    })

    it('an entry that leaves a gap in the log', async () => {
      await appendRaw(encodeFrame(encodeEntryRecord(entry(12, 2))))
      await expectRefusal(/log entry 12 does not fit the log \(snapshot 0, last index 8\)/, 12)
    })

    it('a commit index beyond the log', async () => {
      await appendRaw(encodeFrame(encodeHardStateRecord({ term: 2, vote: 'n1', commit: 20 })))
      await expectRefusal(/the commit index 20 is beyond the last log index 8/, 20)
    })

    it('a damaged, missing or foreign snapshot file', async () => {
      const { storage } = await openAndLoad()
      await storage.saveSnapshot(snapshot(5, 2, 150))
      await storage.close()
      const good = await readFile(snapshotFile(dir, 5))
      await flipByte(snapshotFile(dir, 5), good.length - 3)
      await expectRefusal(/the snapshot at index 5 is unreadable: its file is damaged/, 5)
      await writeFile(snapshotFile(dir, 5), good.subarray(0, good.length - 10))
      await expectRefusal(/the snapshot at index 5 is unreadable: its file is damaged/, 5)
      const other = await temp.make()
      const foreign = await RaftStorage.open(other, { logger })
      await foreign.persist({ hardState: { term: 3, vote: null, commit: 5 }, snapshot: snapshot(5, 3), entries: [] })
      await foreign.close()
      await copyFile(snapshotFile(other, 5), snapshotFile(dir, 5))
      await expectRefusal(/the snapshot at index 5 is unreadable: its metadata does not match \(expected index 5, term 2\)/, 5)
      await unlink(snapshotFile(dir, 5))
      await expectRefusal(/the snapshot at index 5 is unreadable: its file is missing/, 5)
    })
  })

  describe('format', () => {
    it('refuses another format version with a clear error', async () => {
      const { bytes, frames } = await segmentFrames(dir, 1)
      const head = encodeFrame(encodeHeadRecord(99, 1, { hardState: { term: 0, vote: null, commit: 0 }, snapshotIndex: 0, snapshotTerm: 0, lastIndex: 0, lastTerm: 0 }))
      expect(head.length).to.equal(frames[1])
      bytes.set(head, 0)
      await writeFile(segmentFile(dir, 1), bytes)
      const err = await RaftStorage.open(dir, { logger }).catch((err: unknown) => err)
      expect(err).to.be.instanceOf(StorageFormatError)
      expect((err as Error).message).to.equal(`raft storage ${dir}: it has storage format version 99, but this accord reads version 2; ` +
        `run an accord release that reads version 99, or remove this node from the cluster, delete ${dir} and add it back as a new member`)
    })

    it('refuses a damaged segment head', async () => {
      await flipByte(segmentFile(dir, 1), 12)
      await expectRefusal(/segment 1: the frame at byte 0 is damaged \(checksum mismatch\)/, null)
    })

    it('refuses a LevelDB database that is not a raft store of an earlier accord, and writes nothing of format 2', async () => {
      // (a real format-1 store is migrated: raft-storage-migrate.spec.ts)
      const { ClassicLevel } = await import('classic-level')
      const old = await temp.make()
      const db = new ClassicLevel(old)
      await db.put('H', 'state')
      await db.close()
      await expect(RaftStorage.open(old, { logger })).to.be.rejectedWith(StorageFormatError,
        /it holds a LevelDB database without the format record of an accord raft store/)
      const names = await readdir(old)
      expect(names).to.include('CURRENT')
      for (const name of ['wal', 'snap', 'format2-migration.tmp', 'leveldb-format1.bak']) { expect(names).to.not.include(name) }
    })

    it('refuses a directory with other files', async () => {
      const other = await temp.make()
      await mkdir(other, { recursive: true })
      await writeFile(join(other, 'notes.txt'), 'mine')
      await expect(RaftStorage.open(other, { logger })).to.be.rejectedWith(StorageFormatError, /it has files but no write-ahead log \(notes\.txt\), so it is not an accord raft store/)
      expect(await readdir(other)).to.deep.equal(['notes.txt'])
    })
  })
})
