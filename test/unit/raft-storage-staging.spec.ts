import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { RaftStorage } from '../../node/raft/storage/index.ts'
import { CaptureLogger, TempDirs, entries, hard, listFiles, payload, snapshot } from './raft-storage-helpers.ts'
import type { RaftStorageOptions } from '../../node/raft/storage/index.ts'
import type { RestoredState, Snapshot } from '../../protocols/raft/index.ts'

/**
 * 1 KiB chunks, and snapshots over 4 KiB staged: the 20 KiB snapshots below
 * take 21 chunk writes of their own before their commit joins the queue.
 */
const SMALL: RaftStorageOptions = { snapshotChunkBytes: 1024, snapshotBatchBytes: 4096 }
const big = (index: number, term: number): Snapshot => snapshot(index, term, 20 * 1024 + 5)

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

  /** The store's files (closes it first). */
  async function filesIn (storage: RaftStorage): Promise<string[]> {
    await storage.close()
    return listFiles(storage.dir)
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
    expect(await filesIn(reopened.storage)).to.deep.equal(['snap/8', 'wal/1'])
    expect(logger.warnings).to.deep.equal([])
  })

  it('spares the staged file in the cleanup after a snapshot that commits while staging', async () => {
    const storage = await openWithLog()
    // the small one is queued first; its commit deletes the other snapshot files while the large one is being written
    const small = storage.saveSnapshot(snapshot(6, 1))
    const large = storage.saveSnapshot(snapshot(8, 1, 8 * 1024 * 1024))
    expect(await small).to.equal(true)
    expect((await readdir(join(storage.dir, 'snap'))).some(name => name.endsWith('.tmp')), 'still staging').to.equal(true)
    expect(await large).to.equal(true)
    const reopened = await reopen(storage)
    expect(reopened.restored).to.deep.equal({ hardState: hard(1, 10), snapshot: snapshot(8, 1, 8 * 1024 * 1024), entries: entries(9, 20, 1) })
    expect(await filesIn(reopened.storage)).to.deep.equal(['snap/8', 'wal/1'])
    expect(logger.warnings).to.deep.equal([])
  })

  it('fails the storage on a write error at the commit, and reopens on the old snapshot, the unreferenced file deleted', async () => {
    const storage = await openWithLog()
    const saved = storage.saveSnapshot(big(8, 1))
    const written = storage.persist({ entries: entries(21, 21, 1) }) // durable or rejected, never lost silently
    await written.catch(() => {})
    await storage['wal']['file'].close() // the disk goes away before the commit's frame
    await expect(saved).to.be.rejectedWith(Error, /"fd"/)
    await expect(storage.persist({ entries: entries(22, 22, 1) })).to.be.rejectedWith(/failed and accepts no more writes/)
    const persisted = await written.then(() => true, () => false)
    expect(await filesIn(storage)).to.deep.equal(['snap/4', 'snap/8', 'wal/1'])
    const reopened = await openStore(storage.dir)
    expect(await reopened.load()).to.deep.equal({
      hardState: hard(1, 10), snapshot: snapshot(4, 1), entries: entries(5, persisted ? 21 : 20, 1)
    })
    expect(logger.warnings.map(w => w.fields)).to.deep.equal([{ dir: storage.dir, snapshotIndex: 4, files: ['0000000000000008.snap'] }])
    expect(await filesIn(reopened)).to.deep.equal(['snap/4', 'wal/1'])
  })

  it('resolves false when a Ready snapshot at a higher index is persisted while staging', async () => {
    const storage = await openWithLog()
    const saved = storage.saveSnapshot(big(8, 1))
    const installed = storage.persist({ hardState: hard(2, 30), snapshot: snapshot(30, 2, 2500), entries: [] })
    expect(await saved).to.equal(false)
    await installed
    const reopened = await reopen(storage)
    expect(reopened.restored).to.deep.equal({ hardState: hard(2, 30), snapshot: snapshot(30, 2, 2500), entries: [] })
    expect(await filesIn(reopened.storage)).to.deep.equal(['snap/30', 'wal/1'])
    expect(logger.warnings).to.deep.equal([], 'the superseded file was deleted at run time')
  })

  it('lets a Ready snapshot at the same index replace one being staged', async () => {
    const leaders = { meta: { index: 8, term: 1, conf: snapshot(8, 1).meta.conf }, data: payload(8, 1, 1500, 7) }
    const storage = await openWithLog()
    const saved = storage.saveSnapshot(big(8, 1))
    const install = storage.persist({ hardState: hard(1, 8), snapshot: leaders, entries: [] })
    expect(await saved).to.equal(false)
    await install
    const reopened = await reopen(storage)
    expect(reopened.restored).to.deep.equal({ hardState: hard(1, 8), snapshot: leaders, entries: [] })
    expect(await filesIn(reopened.storage)).to.deep.equal(['snap/8', 'wal/1'])
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
    expect(await listFiles(storage.dir)).to.deep.equal(['snap/4', 'wal/1'])
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
})
