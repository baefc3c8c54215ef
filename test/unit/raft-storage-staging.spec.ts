import { expect } from 'aegir/chai'
import { RaftStorage } from '../../node/raft/storage/index.ts'
import { chunkRunBytes, recordBytes, sealChunks, snapshotChunks, splitChunkRun } from '../../node/raft/storage/write-plan.ts'
import { CaptureLogger, TempDirs, entries, hard, listKeys, payload, snapshot } from './raft-storage-helpers.ts'
import type { RaftStorageOptions } from '../../node/raft/storage/index.ts'
import type { RestoredState, Snapshot } from '../../protocols/raft/index.ts'

/**
 * 1 KiB chunks, three to a staged batch: the 20 KiB snapshots below take
 * seven staged batches of their own before their commit batch.
 */
const SMALL: RaftStorageOptions = { snapshotChunkBytes: 1024, snapshotBatchBytes: 4096 }
const STAGED_BATCHES = 7
const big = (index: number, term: number): Snapshot => snapshot(index, term, 20 * 1024 + 5)
const chunksOf = (index: number, count: number): string[] => Array.from({ length: count }, (_, i) => `S:${index}:${i}`)

describe('raft storage: large snapshots staged next to the write queue', () => {
  const temp = new TempDirs()
  const open: RaftStorage[] = []
  let logger: CaptureLogger

  async function openStore (dir: string, options: RaftStorageOptions = {}): Promise<RaftStorage> {
    const storage = await RaftStorage.open(dir, { logger, ...SMALL, ...options })
    open.push(storage)
    return storage
  }

  /** Closes `storage`, opens its directory again and loads it. */
  async function reopen (storage: RaftStorage): Promise<{ storage: RaftStorage, restored: RestoredState }> {
    await storage.close()
    const next = await openStore(storage.dir)
    return { storage: next, restored: await next.load() }
  }

  /** Every chunk key in the store (closes it first). */
  async function chunkKeysIn (storage: RaftStorage): Promise<string[]> {
    await storage.close()
    return (await listKeys(storage.dir)).filter(k => k.startsWith('S:'))
  }

  /** A store holding entries 1..20 (term 1), commit 10, and a small snapshot at 4. */
  async function openWithLog (options: RaftStorageOptions = {}): Promise<RaftStorage> {
    const storage = await openStore(await temp.make(), options)
    await storage.persist({ hardState: hard(1, 10), entries: entries(1, 20, 1) })
    expect(await storage.saveSnapshot(snapshot(4, 1))).to.equal(true)
    return storage
  }

  beforeEach(() => { logger = new CaptureLogger() })
  afterEach(async () => {
    await Promise.all(open.splice(0).map(async s => { await s.close() }))
    await temp.removeAll()
  })

  it('lets a persist issued after saveSnapshot() become durable first, and stores both', async () => {
    const storage = await openWithLog()
    const events: string[] = []
    const saved = storage.saveSnapshot(big(8, 1)).then(stored => { events.push('snapshot'); return stored })
    const written = storage.persist({ hardState: hard(1, 12), entries: entries(21, 22, 1) }).then(() => { events.push('persist') })
    expect(await saved).to.equal(true)
    await written
    expect(events).to.deep.equal(['persist', 'snapshot'])
    const reopened = await reopen(storage)
    expect(reopened.restored).to.deep.equal({ hardState: hard(1, 12), snapshot: big(8, 1), entries: entries(9, 22, 1) })
    expect(await chunkKeysIn(reopened.storage)).to.deep.equal(chunksOf(8, 21))
    expect(logger.warnings).to.deep.equal([])
  })

  it('spares the staged chunks in a cleanup that runs while staging', async () => {
    let staging = false
    let truncating: Promise<void> | undefined
    const storage: RaftStorage = await openWithLog({
      onFsync: (_ms, entryCount) => {
        // After the first staged batch: a new leader's entries cut the log
        // tail (17..20), so the writer cleans up before the snapshot commits.
        if (staging && entryCount === 0 && truncating === undefined) {
          truncating = storage.persist({ hardState: hard(2, 10), entries: entries(15, 16, 2) })
        }
      }
    })
    staging = true
    expect(await storage.saveSnapshot(big(8, 1))).to.equal(true)
    expect(truncating).to.not.equal(undefined)
    await truncating
    const reopened = await reopen(storage)
    expect(reopened.restored.snapshot).to.deep.equal(big(8, 1))
    expect(reopened.restored.entries).to.deep.equal([...entries(9, 14, 1), ...entries(15, 16, 2)])
    expect(await chunkKeysIn(reopened.storage)).to.deep.equal(chunksOf(8, 21))
    expect(logger.warnings).to.deep.equal([])
  })

  it('reopens on the old snapshot, strays removed, after a crash between staging and commit', async () => {
    let staged = 0
    let crash = false
    const storage: RaftStorage = await openWithLog({
      onFsync: (_ms, entryCount) => {
        // The disk goes away once the last chunk batch is durable, before the commit batch.
        if (crash && entryCount === 0 && ++staged === STAGED_BATCHES) { void storage['db'].close() }
      }
    })
    crash = true
    await expect(storage.saveSnapshot(big(8, 1))).to.be.rejectedWith(Error)
    expect(staged).to.equal(STAGED_BATCHES)
    await expect(storage.persist({ entries: entries(21, 21, 1) })).to.be.rejectedWith(/failed and accepts no more writes/)
    expect(await chunkKeysIn(storage)).to.deep.equal([...chunksOf(4, 1), ...chunksOf(8, 21)])

    const reopened = await openStore(storage.dir)
    expect(await reopened.load()).to.deep.equal({ hardState: hard(1, 10), snapshot: snapshot(4, 1), entries: entries(5, 20, 1) })
    expect(logger.warnings.map(w => w.fields)).to.deep.equal([{ dir: storage.dir, snapshotIndex: 4, entries: 0, snapshotChunks: 21 }])
    expect(await chunkKeysIn(reopened)).to.deep.equal(chunksOf(4, 1))
  })

  it('fails the storage on a write error while staging, and reopens on the old snapshot', async () => {
    let staged = 0
    let crash = false
    const storage: RaftStorage = await openWithLog({
      onFsync: (_ms, entryCount) => {
        if (crash && entryCount === 0 && ++staged === 2) { void storage['db'].close() }
      }
    })
    crash = true
    const saved = storage.saveSnapshot(big(8, 1))
    const written = storage.persist({ entries: entries(21, 21, 1) }) // durable or rejected, never lost silently
    await expect(saved).to.be.rejectedWith(Error, /not open/i)
    await expect(storage.persist({ entries: entries(22, 22, 1) })).to.be.rejectedWith(/failed and accepts no more writes/)
    const persisted = await written.then(() => true, () => false)
    const { restored } = await reopen(storage)
    expect(restored).to.deep.equal({
      hardState: hard(1, 10), snapshot: snapshot(4, 1), entries: entries(5, persisted ? 21 : 20, 1)
    })
  })

  it('resolves false when a Ready snapshot at a higher index is persisted while staging', async () => {
    const storage = await openWithLog()
    const saved = storage.saveSnapshot(big(8, 1))
    const installed = storage.persist({ hardState: hard(2, 30), snapshot: snapshot(30, 2, 2500), entries: [] })
    expect(await saved).to.equal(false)
    await installed
    const reopened = await reopen(storage)
    expect(reopened.restored).to.deep.equal({ hardState: hard(2, 30), snapshot: snapshot(30, 2, 2500), entries: [] })
    expect(await chunkKeysIn(reopened.storage)).to.deep.equal(chunksOf(30, 3))
    expect(logger.warnings).to.deep.equal([], 'the superseded chunks were deleted at run time')
  })

  it('lets a Ready snapshot at the same index replace chunks already staged', async () => {
    let install: Promise<void> | undefined
    let staging = false
    const leaders = { meta: { index: 8, term: 1, conf: snapshot(8, 1).meta.conf }, data: payload(8, 1, 1500, 7) }
    const storage: RaftStorage = await openWithLog({
      onFsync: (_ms, entryCount) => {
        if (staging && entryCount === 0 && install === undefined) {
          install = storage.persist({ hardState: hard(1, 8), snapshot: leaders, entries: [] })
        }
      }
    })
    staging = true
    expect(await storage.saveSnapshot(big(8, 1))).to.equal(false)
    await install
    const reopened = await reopen(storage)
    expect(reopened.restored).to.deep.equal({ hardState: hard(1, 8), snapshot: leaders, entries: [] })
    expect(await chunkKeysIn(reopened.storage)).to.deep.equal(chunksOf(8, 2))
    expect(logger.warnings).to.deep.equal([])
  })

  it('refuses a second saveSnapshot() while one is staging, and takes one again afterwards', async () => {
    const storage = await openWithLog()
    const first = storage.saveSnapshot(big(8, 1))
    await expect(storage.saveSnapshot(snapshot(9, 1))).to.be.rejectedWith(Error, /snapshot at index 8 is still being saved/)
    await expect(storage.saveSnapshot(big(10, 1))).to.be.rejectedWith(Error, /still being saved/)
    expect(await first).to.equal(true)
    expect(await storage.saveSnapshot(snapshot(9, 1))).to.equal(true)
    expect((await reopen(storage)).restored).to.deep.equal({ hardState: hard(1, 10), snapshot: snapshot(9, 1), entries: entries(10, 20, 1) })
  })

  it('refuses entries that would rewrite what a staging snapshot covers', async () => {
    const storage = await openWithLog()
    const saved = storage.saveSnapshot(big(8, 1))
    await expect(storage.persist({ entries: entries(8, 9, 2) })).to.be.rejectedWith(RangeError, /must be in 9\.\.21/)
    expect(await saved).to.equal(true)
  })

  it('stops a staging at close(): saveSnapshot() resolves false and nothing is left behind', async () => {
    const storage = await openWithLog()
    const saved = storage.saveSnapshot(big(8, 1))
    await storage.close()
    expect(await saved).to.equal(false)
    expect(await chunkKeysIn(storage)).to.deep.equal(chunksOf(4, 1))
    const reopened = await openStore(storage.dir)
    expect(await reopened.load()).to.deep.equal({ hardState: hard(1, 10), snapshot: snapshot(4, 1), entries: entries(5, 20, 1) })
    expect(logger.warnings).to.deep.equal([])
  })

  it('keeps a snapshot that fits in one batch in the queue, in call order', async () => {
    const storage = await openWithLog()
    const events: string[] = []
    const saved = storage.saveSnapshot(snapshot(8, 1, 3000)).then(() => { events.push('snapshot') })
    const written = storage.persist({ entries: entries(21, 21, 1) }).then(() => { events.push('persist') })
    await Promise.all([saved, written])
    expect(events).to.deep.equal(['snapshot', 'persist'])
  })

  describe('chunk runs', () => {
    it('account for exactly the bytes sealChunks() writes, and split at the batch size', () => {
      const data = payload(1, 1, 10 * 100 + 7)
      const all = snapshotChunks(5, data, 100)
      expect(all.count).to.equal(11)
      expect(chunkRunBytes(all)).to.equal(recordBytes(sealChunks(all)))
      const runs = splitChunkRun(all, 3 * 117)
      expect(runs.map(r => [r.first, r.count])).to.deep.equal([[0, 3], [3, 3], [6, 3], [9, 2]])
      for (const run of runs) { expect(chunkRunBytes(run)).to.equal(recordBytes(sealChunks(run))) }
      expect(runs.flatMap(sealChunks)).to.deep.equal(sealChunks(all))
      expect(snapshotChunks(5, new Uint8Array(0), 100).count).to.equal(0)
    })
  })
})
