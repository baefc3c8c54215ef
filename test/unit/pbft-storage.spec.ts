import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { compactRecords, PbftFileStore, PbftStorageCorruptionError } from '../../node/pbft/storage.ts'
import { encodeFrame, readFrames } from '../../node/storage-frames.ts'
import { decodeRecord, encodeRecord } from '../../protocols/pbft/encoding.ts'
import type { PersistRecord, PrePrepare, StableCheckpoint } from '../../protocols/pbft/types.ts'

const codec = { encode: encodeRecord, decode: (bytes: Uint8Array) => decodeRecord(bytes) }
const sig = (n: number): Uint8Array => new Uint8Array(64).fill(n)
const digest = (n: number): string => n.toString(16).padStart(64, '0')

function prePrepare (seq: number, view = 0): PrePrepare {
  return { type: 'pre-prepare', view, seq, digest: digest(seq), batch: [], replica: 'r0', signature: sig(seq) }
}

function records (fromSeq: number, toSeq: number): PersistRecord[] {
  const out: PersistRecord[] = []
  for (let seq = fromSeq; seq <= toSeq; seq++) {
    out.push({ kind: 'accepted', prePrepare: prePrepare(seq) })
    out.push({ kind: 'signed', message: { type: 'prepare', view: 0, seq, digest: digest(seq), replica: 'r1', signature: sig(seq) } })
  }
  return out
}

function checkpoint (seq: number): StableCheckpoint {
  return { seq, stateDigest: digest(1000 + seq), proof: [{ type: 'checkpoint', seq, stateDigest: digest(1000 + seq), replica: 'r0', signature: sig(9) }] }
}

describe('pbft storage', () => {
  let dir: string
  const open = async (): Promise<PbftFileStore> => PbftFileStore.open(dir, { codec, snapshotBytesMax: 1024 * 1024 })

  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'accord-pbft-storage-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('starts empty, and gives back what was appended after a reopen', async () => {
    const store = await open()
    expect(await store.load()).to.deep.equal({ records: [], snapshot: null, isolated: [] })
    const written: PersistRecord[] = [{ kind: 'view', view: 0, changing: false }, ...records(1, 3)]
    await Promise.all([store.append(written.slice(0, 3)), store.append(written.slice(3))])
    await store.close()
    const again = await open()
    expect((await again.load()).records).to.deep.equal(written)
    await again.close()
  })

  it('keeps a compact stable checkpoint compact: the snapshot and the log give back its group signature', async () => {
    const store = await open()
    await store.load()
    const compact: StableCheckpoint = { seq: 8, stateDigest: digest(1008), proof: [], groupSignature: new Uint8Array(96).fill(5) }
    await store.append([{ kind: 'stable', checkpoint: compact }])
    await store.saveSnapshot(compact, new Uint8Array([1, 2, 3]))
    await store.close()
    const again = await open()
    const loaded = await again.load()
    expect(loaded.snapshot?.checkpoint).to.deep.equal(compact)
    expect(loaded.records).to.deep.equal([{ kind: 'stable', checkpoint: compact }])
    await again.close()
  })

  it('shares one synced write among appends made while one is under way', async () => {
    const fsyncs: number[] = []
    const store = await PbftFileStore.open(dir, { codec, snapshotBytesMax: 1024, onFsync: (_ms, n) => { fsyncs.push(n) } })
    await store.load()
    await Promise.all(records(1, 10).map(async r => store.append([r])))
    expect(fsyncs.reduce((a, b) => a + b, 0)).to.equal(20)
    expect(fsyncs.length).to.be.lessThan(20)
    await store.close()
  })

  it('cuts a torn tail off at the last whole frame, and appends after it', async () => {
    const store = await open()
    await store.load()
    await store.append(records(1, 2))
    await store.close()
    const log = join(dir, 'log')
    const whole = (await stat(log)).size
    // a crash in the middle of the next append: its header and half its payload
    const frame = encodeFrame(codec.encode({ kind: 'view', view: 7, changing: true }))
    await writeFile(log, frame.subarray(0, frame.byteLength - 3), { flag: 'a' })

    const again = await open()
    expect((await again.load()).records).to.deep.equal(records(1, 2))
    expect((await stat(log)).size).to.equal(whole)
    await again.append([{ kind: 'view', view: 1, changing: false }])
    await again.close()
    const third = await open()
    expect((await third.load()).records).to.deep.equal([...records(1, 2), { kind: 'view', view: 1, changing: false }])
    await third.close()
  })

  it('takes a last frame whose checksum fails for a torn tail', async () => {
    const store = await open()
    await store.load()
    await store.append(records(1, 2))
    await store.close()
    const log = join(dir, 'log')
    const bytes = await readFile(log)
    bytes[bytes.byteLength - 1] ^= 0xff
    await writeFile(log, bytes)
    const again = await open()
    expect((await again.load()).records).to.deep.equal(records(1, 2).slice(0, 3))
    await again.close()
  })

  it('refuses corruption before the tail, naming the directory', async () => {
    const store = await open()
    await store.load()
    await store.append(records(1, 3))
    await store.close()
    const log = join(dir, 'log')
    const bytes = await readFile(log)
    bytes[12] ^= 0xff
    await writeFile(log, bytes)
    const again = await open()
    const err = await again.load().then(() => null, (e: Error) => e)
    expect(err).to.be.instanceOf(PbftStorageCorruptionError)
    expect(err?.message).to.include(dir)
  })

  it('refuses a whole frame that does not decode', async () => {
    await writeFile(join(dir, 'log'), Buffer.concat([encodeFrame(new TextEncoder().encode('not a record')), encodeFrame(codec.encode({ kind: 'view', view: 0, changing: false }))]))
    const store = await open()
    await expect(store.load()).to.eventually.be.rejectedWith(PbftStorageCorruptionError)
  })

  it('saves a snapshot and drops the records at or below its checkpoint', async () => {
    const store = await open()
    await store.load()
    await store.append([{ kind: 'view', view: 0, changing: false }, ...records(1, 6), { kind: 'view', view: 1, changing: false }])
    const sizeBefore = (await stat(join(dir, 'log'))).size
    const data = new TextEncoder().encode('state through 4')
    await store.saveSnapshot(checkpoint(4), data)
    expect((await stat(join(dir, 'log'))).size).to.be.lessThan(sizeBefore)
    // appends go on after the rewrite
    await store.append(records(7, 7))
    await store.close()

    const again = await open()
    const loaded = await again.load()
    expect(loaded.snapshot).to.deep.equal({ checkpoint: checkpoint(4), data })
    expect(loaded.records).to.deep.equal([...records(5, 6), { kind: 'view', view: 1, changing: false }, ...records(7, 7)])
    await again.close()
  })

  it('filters an old log left beside a newer snapshot (a crash between the two writes)', async () => {
    const store = await open()
    await store.load()
    await store.append(records(1, 4))
    await store.saveSnapshot(checkpoint(2), new Uint8Array([1]))
    await store.close()
    // put back a log with the compacted records, as if the rewrite never ran
    const frames = records(1, 4).map(r => encodeFrame(codec.encode(r)))
    await writeFile(join(dir, 'log'), Buffer.concat(frames))
    const again = await open()
    expect((await again.load()).records).to.deep.equal(records(3, 4))
    await again.close()
  })

  it('refuses a damaged snapshot file', async () => {
    const store = await open()
    await store.load()
    await store.saveSnapshot(checkpoint(2), new Uint8Array(100).fill(3))
    await store.close()
    await truncate(join(dir, 'snapshot'), 60)
    const again = await open()
    await expect(again.load()).to.eventually.be.rejectedWith(PbftStorageCorruptionError, dir)
  })

  it('refuses a snapshot larger than snapshotBytesMax', async () => {
    const store = await PbftFileStore.open(dir, { codec, snapshotBytesMax: 10 })
    await store.load()
    await expect(store.saveSnapshot(checkpoint(1), new Uint8Array(11))).to.eventually.be.rejectedWith(RangeError)
    await store.close()
  })

  it('keeps the blocklist across a reopen, and refuses a damaged one', async () => {
    const store = await open()
    await store.load()
    const isolated = [{ peer: 'peer-a', reason: 'equivocation' as const }, { peer: 'peer-b', reason: 'operator' as const }, { peer: 'peer-c', reason: 'bad-checkpoint-partial' as const }]
    await store.saveIsolated(isolated)
    await store.close()
    const again = await open()
    expect((await again.load()).isolated).to.deep.equal(isolated)
    await again.close()
    await writeFile(join(dir, 'isolated.json'), JSON.stringify({ version: 1, isolated: [{ peer: 'x', reason: 'whim' }] }))
    const third = await open()
    await expect(third.load()).to.eventually.be.rejectedWith(PbftStorageCorruptionError, 'isolated.json')
  })

  it('compaction keeps the last view record and view changes of the current view', () => {
    const vc = (view: number): PersistRecord => ({ kind: 'signed', message: { type: 'view-change', view, stable: checkpoint(0), prepared: [], replica: 'r0', signature: sig(1) } })
    const kept = compactRecords([{ kind: 'view', view: 1, changing: true }, vc(1), { kind: 'view', view: 2, changing: true }, vc(2), { kind: 'stable', checkpoint: checkpoint(2) }, { kind: 'stable', checkpoint: checkpoint(4) }], checkpoint(4))
    expect(kept).to.deep.equal([{ kind: 'view', view: 2, changing: true }, vc(2), { kind: 'stable', checkpoint: checkpoint(4) }])
  })

  it('frames: a wild length or an empty frame before more data is corruption, at the end a torn tail', () => {
    const good = encodeFrame(new Uint8Array([1, 2, 3]))
    const wild = (length: number): Uint8Array => { const w = new Uint8Array(8); new DataView(w.buffer).setUint32(0, length); return w }
    expect(readFrames(Buffer.concat([good, wild(0xffffffff)]), 1024)).to.deep.include({ ok: true, wholeBytes: good.byteLength })
    expect(readFrames(Buffer.concat([good, new Uint8Array(13)]), 1024)).to.deep.include({ ok: true, wholeBytes: good.byteLength })
    // claims 20 bytes (over the limit of 16) and 20 bytes follow: not a torn write
    expect(readFrames(Buffer.concat([wild(20), good, good]), 16).ok).to.equal(false)
    expect(readFrames(Buffer.concat([wild(0), good]), 16).ok).to.equal(false)
  })
})
