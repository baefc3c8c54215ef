import { unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { RaftStorage, StorageCorruptionError } from '../../node/raft/storage/index.ts'
import { CaptureLogger, TempDirs, entries, hard, listFiles, segmentFile, segmentFrames, snapshot } from './raft-storage-helpers.ts'
import type { RaftStorageOptions } from '../../node/raft/storage/index.ts'

/** 4 KiB segments: a head and three of the frames below (4 entries of 300 bytes and a hard state, 1317 bytes) fill one. */
const SMALL: RaftStorageOptions = { segmentBytes: 4096 }

describe('raft storage: write-ahead log segments', () => {
  const temp = new TempDirs()
  const open: RaftStorage[] = []
  let logger: CaptureLogger

  async function openStore (dir: string, options: RaftStorageOptions = {}): Promise<RaftStorage> {
    const storage = await RaftStorage.open(dir, { logger, ...SMALL, ...options })
    open.push(storage)
    return storage
  }

  /** A store of entries 1..40 (term 1, 300 bytes each), commit 40, in ten persists. */
  async function openWithLog (): Promise<RaftStorage> {
    const storage = await openStore(await temp.make())
    for (let first = 1; first <= 40; first += 4) {
      await storage.persist({ hardState: hard(1, first + 3), entries: entries(first, first + 3, 1, 300) })
    }
    return storage
  }

  beforeEach(() => { logger = new CaptureLogger() })
  afterEach(async () => {
    await Promise.all(open.splice(0).map(async s => { await s.close() }))
    await temp.removeAll()
  })

  it('rotates to a new segment when a frame does not fit, and reads the log back across them', async () => {
    const storage = await openWithLog()
    await storage.close()
    // entries 1..12 in segment 1, 13..24 in 2, 25..36 in 3, 37..40 in 4
    expect(await listFiles(storage.dir)).to.deep.equal(['wal/1', 'wal/2', 'wal/3', 'wal/4'])
    const reopened = await openStore(storage.dir)
    expect(await reopened.load()).to.deep.equal({ hardState: hard(1, 40), entries: entries(1, 40, 1, 300) })
  })

  it('releases the segments wholly below a durable snapshot, and no others', async () => {
    const storage = await openWithLog()
    // entries 1..12 are in segment 1, 13..24 in segment 2
    await storage.saveSnapshot(snapshot(14, 1))
    await storage.close()
    expect(await listFiles(storage.dir)).to.deep.equal(['snap/14', 'wal/2', 'wal/3', 'wal/4'])
    let reopened = await openStore(storage.dir)
    expect(await reopened.load()).to.deep.equal({ hardState: hard(1, 40), snapshot: snapshot(14, 1), entries: entries(15, 40, 1, 300) })
    await reopened.saveSnapshot(snapshot(40, 1))
    await reopened.close()
    // the current segment stays, however little of it is live
    expect(await listFiles(storage.dir)).to.deep.equal(['snap/40', 'wal/4'])
    reopened = await openStore(storage.dir)
    expect(await reopened.load()).to.deep.equal({ hardState: hard(1, 40), snapshot: snapshot(40, 1), entries: [] })
    await reopened.persist({ entries: entries(41, 41, 1) })
    expect((await reopened.load()).entries).to.deep.equal(entries(41, 41, 1))
    expect(logger.warnings).to.deep.equal([])
  })

  it('opens with an index of where the live entries lie, not the entries', async () => {
    const storage = await openWithLog()
    await storage.saveSnapshot(snapshot(14, 1))
    await storage.close()
    const reopened = await openStore(storage.dir)
    const index = reopened['replay'].index
    expect(index.size).to.equal(26)
    expect(index.firstIndex).to.equal(15)
    expect(index.get(14)).to.equal(undefined)
    const location = index.get(15)
    expect(location).to.have.all.keys('seq', 'offset', 'bytes', 'term')
    expect(location).to.deep.include({ seq: 2, bytes: 22 + 300, term: 1 })
    expect(index.oldestSegment()).to.equal(2)
  })

  it('cuts off a torn write at the end of the last segment after a rotation', async () => {
    const storage = await openWithLog()
    await storage.close()
    const { bytes, end } = await segmentFrames(storage.dir, 4)
    bytes.set([0, 0, 5, 0, 1, 2, 3, 4, 5, 6, 7], end) // a frame header claiming 1280 bytes, and a few of them
    await writeFile(segmentFile(storage.dir, 4), bytes)
    const reopened = await openStore(storage.dir)
    expect((await reopened.load()).entries).to.deep.equal(entries(1, 40, 1, 300))
    expect(logger.warnings.map(w => w.fields)).to.deep.equal([{ dir: storage.dir, segment: 4, offset: end, bytes: 4096 - end }])
  })

  describe('refused', () => {
    async function refusal (dir: string): Promise<StorageCorruptionError> {
      const err = await RaftStorage.open(dir, { logger, ...SMALL }).then(async s => { await s.close(); throw new Error('open succeeded') }, (e: unknown) => e)
      expect(err).to.be.instanceOf(StorageCorruptionError)
      return err as StorageCorruptionError
    }

    it('a segment missing from the sequence', async () => {
      const storage = await openWithLog()
      await storage.close()
      await unlink(segmentFile(storage.dir, 3))
      expect((await refusal(storage.dir)).message).to.match(/write-ahead log segment 3 is missing/)
    })

    it('live entries whose segment is gone', async () => {
      const storage = await openWithLog()
      await storage.close()
      await unlink(segmentFile(storage.dir, 1))
      const err = await refusal(storage.dir)
      expect(err.message).to.match(/log entries 1\.\.12 are missing \(their segment was deleted\)/)
      expect(err.index).to.equal(1)
    })

    it('damage after the last frame of an earlier segment (it was synced before the next one was created)', async () => {
      const storage = await openWithLog()
      await storage.close()
      const { bytes, end } = await segmentFrames(storage.dir, 2)
      bytes.set([1, 2, 3], end)
      await writeFile(segmentFile(storage.dir, 2), bytes)
      expect((await refusal(storage.dir)).message).to.match(new RegExp(`write-ahead log segment 2: it has damaged data after its last whole frame \\(byte ${end}\\)`))
    })

    it('a segment whose head contradicts the segments before it', async () => {
      const storage = await openWithLog()
      await storage.close()
      const { bytes, frames } = await segmentFrames(storage.dir, 2)
      // segment 2 loses its frames (entries 13..24): segment 3's head says the log ended at 24
      bytes.fill(0, frames[1])
      await writeFile(segmentFile(storage.dir, 2), bytes)
      expect((await refusal(storage.dir)).message).to.match(/segment 3: segment 3 starts from another state than the segments before it left \(snapshot 0, last 24\/1, term 1; replayed snapshot 0, last 12\/1, term 1\)/)
    })
  })

  describe('the lock', () => {
    it('takes over a lock left by a process that no longer runs', async () => {
      const storage = await openWithLog()
      await storage.close()
      await writeFile(join(storage.dir, 'accord.lock'), '2147483646\n')
      const reopened = await openStore(storage.dir)
      expect((await reopened.load()).entries).to.have.length(40)
    })

    it('refuses a lock held by a running process, naming it', async () => {
      const storage = await openWithLog()
      await storage.close()
      await writeFile(join(storage.dir, 'accord.lock'), `${process.ppid}\n`)
      await expect(RaftStorage.open(storage.dir, { logger })).to.be.rejectedWith(new RegExp(`is another node using this data dir\\?\\): it is locked by process ${process.ppid}`))
    })
  })
})
