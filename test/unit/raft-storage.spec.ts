import { expect } from 'aegir/chai'
import { UserError } from '../../node/errors.ts'
import { RaftStorage, StorageLimitError, raftStorageDir } from '../../node/raft/storage/index.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { CONF, CaptureLogger, TempDirs, entries, entry, hard, listFiles, snapshot } from './raft-storage-helpers.ts'
import type { RaftStorageOptions } from '../../node/raft/storage/index.ts'
import type { Entry, HardState, RestoredState, Snapshot } from '../../protocols/raft/index.ts'

describe('raft storage: round trips and group commit', () => {
  const temp = new TempDirs()
  const open: RaftStorage[] = []
  let logger: CaptureLogger

  async function openStore (dir: string, options: RaftStorageOptions = {}): Promise<RaftStorage> {
    const storage = await RaftStorage.open(dir, { logger, ...options })
    open.push(storage)
    return storage
  }

  async function reopen (storage: RaftStorage, options: RaftStorageOptions = {}): Promise<{ storage: RaftStorage, restored: RestoredState }> {
    await storage.close()
    const next = await openStore(storage.dir, options)
    return { storage: next, restored: await next.load() }
  }

  beforeEach(() => { logger = new CaptureLogger() })
  afterEach(async () => {
    await Promise.all(open.splice(0).map(async s => { await s.close() }))
    await temp.removeAll()
  })

  it('keeps its database in <dataDir>/raft', () => {
    expect(raftStorageDir('/var/lib/accord')).to.equal('/var/lib/accord/raft')
  })

  it('starts empty', async () => {
    const storage = await openStore(await temp.make())
    expect(await storage.load()).to.deep.equal({ hardState: { term: 0, vote: null, commit: 0 }, entries: [] })
  })

  it('restores hard state and entries after a reopen', async () => {
    const storage = await openStore(await temp.make())
    await storage.persist({ hardState: hard(1, 0), entries: entries(1, 3, 1) })
    await storage.persist({ hardState: hard(2, 3, 'n2'), entries: entries(4, 5, 2) })
    const { restored } = await reopen(storage)
    expect(restored).to.deep.equal({ hardState: hard(2, 3, 'n2'), entries: [...entries(1, 3, 1), ...entries(4, 5, 2)] })
    expect(logger.warnings).to.deep.equal([])
  })

  it('replaces a suffix of the log with shorter, equal and longer overwrites', async () => {
    let storage = await openStore(await temp.make())
    await storage.persist({ hardState: hard(1, 2), entries: entries(1, 10, 1) })
    await storage.persist({ hardState: hard(2, 2), entries: entries(6, 7, 2) })
    let restored: RestoredState
    ;({ storage, restored } = await reopen(storage))
    expect(restored.entries).to.deep.equal([...entries(1, 5, 1), ...entries(6, 7, 2)])

    await storage.persist({ hardState: hard(3, 2), entries: entries(3, 7, 3) })
    await storage.persist({ hardState: hard(4, 2), entries: entries(5, 12, 4) })
    ;({ storage, restored } = await reopen(storage))
    expect(restored.entries).to.deep.equal([...entries(1, 2, 1), ...entries(3, 4, 3), ...entries(5, 12, 4)])
  })

  it('reads no truncated entry back, and keeps one segment and no snapshot file for a short log', async () => {
    let storage = await openStore(await temp.make())
    await storage.persist({ hardState: hard(1, 1), entries: entries(1, 10, 1) })
    await storage.persist({ hardState: hard(2, 1), entries: entries(3, 4, 2) })
    let restored: RestoredState
    ;({ storage, restored } = await reopen(storage))
    expect(restored.entries).to.deep.equal([...entries(1, 2, 1), ...entries(3, 4, 2)])
    await storage.close()
    expect(await listFiles(storage.dir)).to.deep.equal(['wal/1'])
  })

  it('installs a snapshot from a Ready, replacing the whole log', async () => {
    let storage = await openStore(await temp.make())
    await storage.persist({ hardState: hard(1, 3), entries: entries(1, 8, 1) })
    await storage.persist({ hardState: hard(3, 20), snapshot: snapshot(20, 3), entries: [] })
    let restored: RestoredState
    ;({ storage, restored } = await reopen(storage))
    expect(restored).to.deep.equal({ hardState: hard(3, 20), snapshot: snapshot(20, 3), entries: [] })
    await storage.persist({ hardState: hard(3, 21), entries: entries(21, 22, 3) })
    ;({ storage, restored } = await reopen(storage))
    expect(restored).to.deep.equal({ hardState: hard(3, 21), snapshot: snapshot(20, 3), entries: entries(21, 22, 3) })
    await storage.close()
    expect(await listFiles(storage.dir)).to.deep.equal(['snap/20', 'wal/1'])
  })

  it('installs a snapshot behind uncommitted entries (they are discarded)', async () => {
    let storage = await openStore(await temp.make())
    await storage.persist({ hardState: hard(1, 2), entries: entries(1, 9, 1) })
    await storage.persist({ hardState: hard(2, 5), snapshot: snapshot(5, 2), entries: [] })
    let restored: RestoredState
    ;({ storage, restored } = await reopen(storage))
    expect(restored).to.deep.equal({ hardState: hard(2, 5), snapshot: snapshot(5, 2), entries: [] })
  })

  it('compacts the log with saveSnapshot and keeps the entries after it', async () => {
    let storage = await openStore(await temp.make())
    await storage.persist({ hardState: hard(2, 8), entries: [...entries(1, 4, 1), ...entries(5, 10, 2)] })
    await storage.saveSnapshot(snapshot(6, 2))
    let restored: RestoredState
    ;({ storage, restored } = await reopen(storage))
    expect(restored).to.deep.equal({ hardState: hard(2, 8), snapshot: snapshot(6, 2), entries: entries(7, 10, 2) })
    await storage.saveSnapshot(snapshot(8, 2, 3000))
    ;({ storage, restored } = await reopen(storage))
    expect(restored).to.deep.equal({ hardState: hard(2, 8), snapshot: snapshot(8, 2, 3000), entries: entries(9, 10, 2) })
    await storage.close()
    expect(await listFiles(storage.dir)).to.deep.equal(['snap/8', 'wal/1'])
  })

  it('compacts the whole log when the snapshot is at the last index', async () => {
    let storage = await openStore(await temp.make())
    await storage.persist({ hardState: hard(2, 5), entries: entries(1, 5, 2) })
    await storage.saveSnapshot(snapshot(5, 2))
    let restored: RestoredState
    ;({ storage, restored } = await reopen(storage))
    expect(restored).to.deep.equal({ hardState: hard(2, 5), snapshot: snapshot(5, 2), entries: [] })
    await storage.persist({ entries: entries(6, 6, 2) })
    ;({ restored } = await reopen(storage))
    expect(restored.entries).to.deep.equal(entries(6, 6, 2))
  })

  it('refuses snapshots that do not fit the log', async () => {
    const storage = await openStore(await temp.make())
    await storage.persist({ hardState: hard(2, 5), entries: entries(1, 8, 2) })
    await expect(storage.saveSnapshot(snapshot(6, 2))).to.be.rejectedWith(RangeError, /not committed/)
    await expect(storage.saveSnapshot(snapshot(9, 2))).to.be.rejectedWith(RangeError, /not committed/)
    await storage.saveSnapshot(snapshot(4, 2))
    await expect(storage.saveSnapshot(snapshot(4, 2))).to.be.rejectedWith(RangeError, /not after the stored snapshot/)
    await expect(storage.persist({ snapshot: snapshot(3, 2), entries: [] })).to.be.rejectedWith(RangeError, /not after/)
    await expect(storage.saveSnapshot({ meta: { index: 5, term: 2, conf: CONF }, data: 'x' } as unknown as Snapshot)).to.be.rejectedWith(TypeError)
  })

  it('stores a snapshot larger than a frame in its own file, named by one small frame', async () => {
    const fsyncs: Array<[number, number]> = []
    let storage = await openStore(await temp.make(), {
      snapshotChunkBytes: 1024, batchBytesMax: 4096, entryBytesMax: 512, onFsync: (_ms, n, bytes) => { fsyncs.push([n, bytes]) }
    })
    const big = snapshot(30, 4, 10 * 1024 + 7)
    await storage.persist({ hardState: hard(4, 30), snapshot: big, entries: [] })
    // one frame: the snapshot record (18 bytes) and the hard state (21), after an 8-byte header
    expect(fsyncs).to.deep.equal([[0, 8 + 18 + 21]])
    let restored: RestoredState
    ;({ storage, restored } = await reopen(storage, { snapshotChunkBytes: 1024, batchBytesMax: 4096, entryBytesMax: 512 }))
    expect(restored.snapshot).to.deep.equal(big)
    await storage.close()
    expect(await listFiles(storage.dir)).to.deep.equal(['snap/30', 'wal/1'])
  })

  it('keeps only the file of the current snapshot', async () => {
    let storage = await openStore(await temp.make(), { snapshotChunkBytes: 100 })
    await storage.persist({ hardState: hard(1, 10), entries: entries(1, 12, 1) })
    await storage.saveSnapshot(snapshot(5, 1, 450))
    await storage.saveSnapshot(snapshot(10, 1, 250))
    let restored: RestoredState
    ;({ storage, restored } = await reopen(storage, { snapshotChunkBytes: 100 }))
    expect(restored.snapshot).to.deep.equal(snapshot(10, 1, 250))
    await storage.close()
    expect(await listFiles(storage.dir)).to.deep.equal(['snap/10', 'wal/1'])
  })

  it('stores an empty snapshot payload', async () => {
    let storage = await openStore(await temp.make())
    await storage.persist({ hardState: hard(1, 2), snapshot: snapshot(2, 1, 0), entries: [] })
    let restored: RestoredState
    ;({ storage, restored } = await reopen(storage))
    expect(restored.snapshot).to.deep.equal(snapshot(2, 1, 0))
  })

  it('coalesces persists issued together into one synced batch', async () => {
    const fsyncs: Array<{ entries: number, bytes: number }> = []
    let storage = await openStore(await temp.make(), { onFsync: (_ms, n, bytes) => { fsyncs.push({ entries: n, bytes }) } })
    const order: number[] = []
    await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      await storage.persist({ hardState: hard(1, i), entries: [entry(i + 1, 1)] })
      order.push(i)
    }))
    expect(fsyncs).to.have.length(1)
    expect(fsyncs[0].entries).to.equal(20)
    expect(fsyncs[0].bytes).to.be.greaterThan(20 * 24)
    expect(order).to.deep.equal([...Array(20).keys()])
    let restored: RestoredState
    ;({ storage, restored } = await reopen(storage))
    expect(restored).to.deep.equal({ hardState: hard(1, 19), entries: entries(1, 20, 1) })
  })

  it('coalesces persists that arrive while a sync is in flight into the next batch', async () => {
    const fsyncs: number[] = []
    const storage = await openStore(await temp.make(), { onFsync: (_ms, n) => { fsyncs.push(n) } })
    const first = storage.persist({ hardState: hard(1, 0), entries: [entry(1, 1)] })
    // Let the writer take the first write and write its frame.
    for (let i = 0; i < 5; i++) { await Promise.resolve() }
    const rest = Array.from({ length: 10 }, async (_, i) => { await storage.persist({ entries: [entry(i + 2, 1)] }) })
    await Promise.all([first, ...rest])
    expect(fsyncs).to.deep.equal([1, 10])
  })

  it('splits a coalesced group at batchBytesMax', async () => {
    const fsyncs: number[] = []
    const storage = await openStore(await temp.make(), { batchBytesMax: 2000, entryBytesMax: 600, snapshotChunkBytes: 1000, onFsync: (_ms, n) => { fsyncs.push(n) } })
    // Each write: 2 entries of 500 bytes (~1050 record bytes) → one write per batch.
    await Promise.all([0, 1, 2].map(async i => { await storage.persist({ entries: entries(2 * i + 1, 2 * i + 2, 1, 500) }) }))
    expect(fsyncs).to.deep.equal([2, 2, 2])
  })

  it('skips the fsync when only the commit index changed and mustSync is false', async () => {
    const fsyncs: number[] = []
    let storage = await openStore(await temp.make(), { onFsync: (_ms, n) => { fsyncs.push(n) } })
    await storage.persist({ hardState: hard(1, 0), entries: entries(1, 3, 1), mustSync: false })
    await storage.persist({ hardState: hard(1, 2), entries: [], mustSync: false })
    await storage.persist({ hardState: hard(2, 2), entries: [], mustSync: false })
    expect(fsyncs).to.deep.equal([3, 0]) // entries and a term change are always synced
    let restored: RestoredState
    ;({ storage, restored } = await reopen(storage))
    expect(restored.hardState).to.deep.equal(hard(2, 2))
  })

  it('resolves an empty persist once earlier writes are durable', async () => {
    const storage = await openStore(await temp.make())
    const events: string[] = []
    const write = storage.persist({ hardState: hard(1, 0), entries: entries(1, 2, 1) }).then(() => events.push('write'))
    const empty = storage.persist({ entries: [] }).then(() => events.push('empty'))
    await Promise.all([write, empty])
    expect(events).to.deep.equal(['write', 'empty'])
  })

  it('reports every synced batch to onFsync, and survives a throwing hook', async () => {
    const calls: Array<[number, number, number]> = []
    const storage = await openStore(await temp.make(), {
      onFsync: (ms, n, bytes) => {
        calls.push([ms, n, bytes])
        throw new Error('metrics broke')
      }
    })
    await storage.persist({ hardState: hard(1, 0), entries: entries(1, 4, 1, 256) })
    await storage.persist({ hardState: hard(1, 4), entries: [] })
    expect(calls).to.have.length(2)
    expect(calls[0][0]).to.be.a('number') // the duration, reported (never asserted on)
    expect(calls[0][1]).to.equal(4)
    expect(calls[0][2]).to.be.within(4 * 256, 4 * 256 + 400)
    expect(calls[1][1]).to.equal(0)
    expect(logger.warnings.map(w => w.message)).to.deep.equal(['raft storage: the onFsync hook threw', 'raft storage: the onFsync hook threw'])
  })

  it('load() after writes reads the current state', async () => {
    const storage = await openStore(await temp.make())
    await storage.persist({ hardState: hard(1, 1), entries: entries(1, 2, 1) })
    expect(await storage.load()).to.deep.equal({ hardState: hard(1, 1), entries: entries(1, 2, 1) })
  })

  describe('bounds and bad input', () => {
    it('rejects an entry larger than entryBytesMax and writes nothing of that Ready', async () => {
      let storage = await openStore(await temp.make(), { entryBytesMax: 1000 })
      await storage.persist({ hardState: hard(1, 1), entries: entries(1, 2, 1) })
      const update = { hardState: hard(2, 2), entries: [entry(3, 2, 10), entry(4, 2, 1001)] }
      await expect(storage.persist(update)).to.be.rejectedWith(StorageLimitError, /entry 4 has 1001 data bytes, more than entryBytesMax \(1000\); nothing was written/)
      let restored: RestoredState
      ;({ storage, restored } = await reopen(storage))
      expect(restored).to.deep.equal({ hardState: hard(1, 1), entries: entries(1, 2, 1) })
      await storage.persist({ entries: [entry(3, 1, 1000)] }) // the bound itself is allowed
    })

    it('rejects a write larger than batchBytesMax', async () => {
      const storage = await openStore(await temp.make(), { batchBytesMax: 5000, entryBytesMax: 1000, snapshotChunkBytes: 1000 })
      await expect(storage.persist({ entries: entries(1, 6, 1, 1000) })).to.be.rejectedWith(StorageLimitError, /batchBytesMax \(5000\); nothing was written/)
      expect(await storage.load()).to.deep.equal({ hardState: hard(0, 0, null), entries: [] })
    })

    it('rejects a snapshot larger than snapshotBytesMax', async () => {
      const storage = await openStore(await temp.make(), { snapshotBytesMax: 1000 })
      await expect(storage.persist({ snapshot: snapshot(5, 1, 1001), entries: [] })).to.be.rejectedWith(StorageLimitError, /snapshotBytesMax/)
    })

    it('rejects a vote longer than VOTE_BYTES_MAX (a peer id is far shorter)', async () => {
      const storage = await openStore(await temp.make())
      await expect(storage.persist({ hardState: hard(1, 0, 'x'.repeat(1025)) })).to.be.rejectedWith(StorageLimitError, /a vote of 1025 bytes is longer than VOTE_BYTES_MAX \(1024\)/)
      await storage.persist({ hardState: hard(1, 0, 'x'.repeat(1024)) })
      expect((await reopen(storage)).restored.hardState).to.deep.equal(hard(1, 0, 'x'.repeat(1024)))
    })

    it('rejects writes beyond pendingWritesMax', async () => {
      const storage = await openStore(await temp.make(), { pendingWritesMax: 3 })
      const accepted = [1, 2, 3].map(async i => { await storage.persist({ entries: [entry(i, 1)] }) })
      await expect(storage.persist({ entries: [entry(4, 1)] })).to.be.rejectedWith(StorageLimitError, /pendingWritesMax/)
      await Promise.all(accepted)
      await storage.persist({ entries: [entry(4, 1)] }) // the queue drained: accepted again
      expect((await storage.load()).entries).to.deep.equal(entries(1, 4, 1))
    })

    it('rejects entries that would leave a gap or are not contiguous', async () => {
      const storage = await openStore(await temp.make())
      await storage.persist({ hardState: hard(1, 0), entries: entries(1, 3, 1) })
      await expect(storage.persist({ entries: [entry(5, 1)] })).to.be.rejectedWith(RangeError, /must be in 1\.\.4/)
      await expect(storage.persist({ entries: [entry(3, 1), entry(5, 1)] })).to.be.rejectedWith(RangeError, /not contiguous at index 5/)
      await storage.persist({ hardState: hard(1, 2), entries: [] })
      await storage.saveSnapshot(snapshot(2, 1))
      await expect(storage.persist({ entries: [entry(2, 1)] })).to.be.rejectedWith(RangeError, /must be in 3\.\.4/)
      await expect(storage.persist({ hardState: hard(1, 9), entries: [] })).to.be.rejectedWith(RangeError, /commit 9 would be beyond the last log index 3/)
      expect(await storage.load()).to.deep.equal({ hardState: hard(1, 2), snapshot: snapshot(2, 1), entries: [entry(3, 1)] })
    })

    it('rejects malformed updates', async () => {
      const storage = await openStore(await temp.make())
      const bad = [
        { entries: [{ index: 1, term: 0, type: 'normal', data: new Uint8Array(1) }] },
        { entries: [{ index: 1, term: 1, type: 'other', data: new Uint8Array(1) }] },
        { entries: [{ index: 1, term: 1, type: 'normal', data: 'text' }] },
        { hardState: { term: -1, vote: null, commit: 0 } },
        { hardState: { term: 1, vote: '', commit: 0 } },
        { entries: 'nope' }
      ]
      for (const update of bad) {
        await expect(storage.persist(update as never)).to.be.rejectedWith(TypeError)
      }
      expect(await storage.load()).to.deep.equal({ hardState: hard(0, 0, null), entries: [] })
    })

    it('rejects bad limits', async () => {
      const dir = await temp.make()
      await expect(RaftStorage.open(dir, { entryBytesMax: 0 })).to.be.rejectedWith(RangeError, /entryBytesMax must be a positive integer/)
      await expect(RaftStorage.open(dir, { batchBytesMax: 100, entryBytesMax: 200, snapshotChunkBytes: 50 })).to.be.rejectedWith(RangeError, /batchBytesMax/)
    })

    it('refuses a second open of the same directory', async () => {
      const storage = await openStore(await temp.make())
      await expect(RaftStorage.open(storage.dir)).to.be.rejectedWith(UserError, /cannot open raft storage .* \(is another node using this data dir\?\): .*lock/i)
    })

    it('rejects calls after close', async () => {
      const storage = await openStore(await temp.make())
      await storage.close()
      await expect(storage.persist({ entries: [entry(1, 1)] })).to.be.rejectedWith(/is closed/)
      await expect(storage.load()).to.be.rejectedWith(/is closed/)
    })

    it('fails every later write after a write error', async () => {
      const storage = await openStore(await temp.make())
      await storage.persist({ entries: [entry(1, 1)] })
      await storage['wal']['file'].close() // the disk goes away under the storage
      const failed = storage.persist({ entries: [entry(2, 1)] })
      const queued = storage.persist({ entries: [entry(3, 1)] })
      await expect(failed).to.be.rejectedWith(Error)
      await expect(queued).to.be.rejectedWith(Error)
      await expect(storage.persist({ entries: [entry(4, 1)] })).to.be.rejectedWith(/failed and accepts no more writes/)
    })
  })

  describe('against a model, with random reopens', () => {
    interface Model { hardState: HardState, snapshot?: Snapshot, log: Entry[] }

    const lastIndex = (m: Model): number => m.log.at(-1)?.index ?? m.snapshot?.meta.index ?? 0
    const firstIndex = (m: Model): number => (m.snapshot?.meta.index ?? 0) + 1

    ;[1, 2, 3, 4, 5].forEach(seed => {
      it(`seed ${seed}: every operation sequence restores what the model holds`, async () => {
        const rng = createRng(seed)
        // Snapshots of more than 162 bytes are staged next to the queue, and
        // 2 KiB segments rotate and are released every few steps.
        const options = { snapshotChunkBytes: 64, snapshotBatchBytes: 2 * (13 + 4 + 64), segmentBytes: 2048 }
        let storage = await openStore(await temp.make(), options)
        const model: Model = { hardState: hard(0, 0, null), log: [] }
        const seen = { append: 0, overwrite: 0, compact: 0, staged: 0, install: 0, hardState: 0, reopen: 0 }
        let term = 1
        for (let step = 0; step < 60; step++) {
          const pending: Array<Promise<unknown>> = []
          let compacting = false // one saveSnapshot() at a time
          const writes = rng.intBetween(1, 4)
          for (let w = 0; w < writes; w++) {
            const last = lastIndex(model)
            const commit = model.hardState.commit
            const choice = rng.nextFloat()
            if (choice < 0.55) {
              // Append (sometimes overwriting an uncommitted suffix with a newer term).
              const overwrite = last > commit && rng.chance(0.3)
              if (overwrite) { term++ }
              seen[overwrite ? 'overwrite' : 'append']++
              const from = overwrite ? rng.intBetween(Math.max(commit, firstIndex(model) - 1) + 1, last) : last + 1
              const added = entries(from, from + rng.intBetween(0, 4), term, rng.intBetween(0, 80))
              const newCommit = rng.chance(0.5) ? rng.intBetween(commit, from - 1) : commit
              model.log = [...model.log.filter(e => e.index < from), ...added]
              model.hardState = hard(term, newCommit)
              pending.push(storage.persist({ hardState: model.hardState, entries: added }))
            } else if (choice < 0.75 && commit > firstIndex(model) - 1 && !compacting) {
              const at = rng.intBetween(firstIndex(model), commit)
              const snap = snapshot(at, model.log.find(e => e.index === at)!.term, rng.intBetween(0, 300))
              model.snapshot = snap
              model.log = model.log.filter(e => e.index > at)
              compacting = true
              seen.compact++
              if (snap.data.length > 128) { seen.staged++ }
              // It resolves false when an install later in this step supersedes it; the model holds that install.
              pending.push(storage.saveSnapshot(snap))
            } else if (choice < 0.85) {
              term++
              const at = Math.max(last, commit) + rng.intBetween(1, 5)
              const snap = snapshot(at, term, rng.intBetween(1, 200))
              model.snapshot = snap
              model.log = []
              seen.install++
              model.hardState = hard(term, at)
              pending.push(storage.persist({ hardState: model.hardState, snapshot: snap, entries: [] }))
            } else {
              model.hardState = hard(term, Math.min(last, commit + rng.intBetween(0, 3)), rng.chance(0.5) ? 'n2' : null)
              seen.hardState++
              pending.push(storage.persist({ hardState: model.hardState, entries: [], mustSync: rng.chance(0.5) }))
            }
          }
          await Promise.all(pending)
          if (rng.chance(0.25)) {
            let restored: RestoredState
            ;({ storage, restored } = await reopen(storage, options))
            const expected: RestoredState = { hardState: model.hardState, entries: model.log }
            if (model.snapshot !== undefined) { expected.snapshot = model.snapshot }
            expect(restored, `seed ${seed} step ${step}`).to.deep.equal(expected)
            expect(logger.warnings, `seed ${seed} step ${step}`).to.deep.equal([])
            seen.reopen++
          }
        }
        for (const [kind, count] of Object.entries(seen)) { expect(count, `seed ${seed}: ${kind}`).to.be.greaterThan(0) }
      })
    })
  })
})
