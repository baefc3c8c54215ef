/**
 * accord installs `@libp2p/peer-store` with a patch (patches/, applied by
 * `npm ci` through patch-package): libp2p merges the protocol of every
 * stream it opens into the remote peer's record, on both ends, and each
 * merge read the record from the datastore (LevelDB in a node) and wrote
 * it back even when nothing changed. Patched, records are read through an
 * in-memory cache kept in step with every write and delete, and a merge
 * that changes nothing is not written (unless the stored record is a
 * minute old, which keeps its expiry times moving). The cache holds at
 * most 1024 records, each a copy of its own (an encoded record is a view of
 * a Buffer pool slab, 64 KiB on Node 24, which it would keep), and hands out
 * copies (what is decoded from a record are views of it). These tests fail
 * if the patch is not applied.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import type { Libp2p, PeerId } from '@libp2p/interface'

/** CACHED_PEERS_MAX in the patch. */
const CACHED_PEERS_MAX = 1024

/** A datastore in a Map that counts its reads and writes (keys are only ever compared as strings); it copies what it is given and what it gives, as LevelDB does. */
class CountingDatastore {
  readonly values = new Map<string, Uint8Array>()
  gets = 0
  puts = 0
  /** When set, get answers with a view of a new ArrayBuffer of this size (a pool slab's), seen through `slabs`. */
  slabBytes = 0
  readonly slabs: Array<WeakRef<ArrayBuffer>> = []

  async get (key: { toString(): string }): Promise<Uint8Array> {
    this.gets++
    const value = this.values.get(key.toString())
    if (value === undefined) { throw Object.assign(new Error('not found'), { name: 'NotFoundError' }) }
    if (this.slabBytes === 0) { return value.slice() }
    const slab = new ArrayBuffer(this.slabBytes)
    this.slabs.push(new WeakRef(slab))
    const view = new Uint8Array(slab, 0, value.byteLength)
    view.set(value)
    return view
  }

  async put (key: { toString(): string }, value: Uint8Array): Promise<unknown> {
    this.puts++
    this.values.set(key.toString(), value.slice())
    return key
  }

  async has (key: { toString(): string }): Promise<boolean> { return this.values.has(key.toString()) }
  async delete (key: { toString(): string }): Promise<void> { this.values.delete(key.toString()) }
  async * query (): AsyncGenerator<never> {}
  async * queryKeys (): AsyncGenerator<never> {}
  async * getMany (): AsyncGenerator<never> {}
  async * putMany (): AsyncGenerator<never> {}
  async * deleteMany (): AsyncGenerator<never> {}
  batch (): { put(): void, delete(): void, commit(): Promise<void> } { return { put () {}, delete () {}, async commit () {} } }
}

/** Runs full collections until none of `refs` is left, or 20 times; returns how many are left. */
async function collectedAll (refs: Array<WeakRef<object>>): Promise<number> {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  // a reference read (deref) keeps its object until the job ends: each collection runs in a job of its own
  const left = (): number => refs.filter(r => r.deref() !== undefined).length
  for (let i = 0; i < 20 && left() > 0; i++) {
    await sleep(10)
    gc()
    await sleep(10)
  }
  return left()
}

async function newPeer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

describe('@libp2p/peer-store as patched', () => {
  let node: Libp2p
  let datastore: CountingDatastore

  beforeEach(async () => {
    datastore = new CountingDatastore()
    node = await createLibp2p({ datastore: datastore as any, start: false })
  })

  afterEach(async () => { await node.stop() })

  it('a merge that changes nothing is neither read from nor written to the datastore again', async () => {
    const peer = await newPeer()
    await node.peerStore.merge(peer, { protocols: ['/a/1.0.0'] })
    const { gets, puts } = datastore
    for (let i = 0; i < 5; i++) { await node.peerStore.merge(peer, { protocols: ['/a/1.0.0'] }) }
    expect(datastore.puts).to.equal(puts)
    expect(datastore.gets).to.equal(gets)
    await node.peerStore.merge(peer, { protocols: ['/b/1.0.0'] })
    expect(datastore.puts).to.equal(puts + 1)
    expect((await node.peerStore.get(peer)).protocols).to.deep.equal(['/a/1.0.0', '/b/1.0.0'])
    expect(datastore.gets).to.equal(gets)
  })

  it('the cache follows writes and deletes', async () => {
    const peer = await newPeer()
    await node.peerStore.merge(peer, { protocols: ['/a/1.0.0'] })
    await node.peerStore.delete(peer)
    await expect(node.peerStore.get(peer)).to.eventually.be.rejected.with.property('name', 'NotFoundError')
    expect(await node.peerStore.has(peer)).to.equal(false)
    await node.peerStore.save(peer, { protocols: ['/c/1.0.0'] })
    expect((await node.peerStore.get(peer)).protocols).to.deep.equal(['/c/1.0.0'])
    // what the datastore holds is what the cache answers
    const other = await createLibp2p({ datastore: datastore as any, start: false })
    expect((await other.peerStore.get(peer)).protocols).to.deep.equal(['/c/1.0.0'])
    await other.stop()
  })

  it('a merge that changes nothing writes the record again once it is a minute old', async () => {
    const peer = await newPeer()
    await node.peerStore.merge(peer, { protocols: ['/a/1.0.0'] })
    const { puts } = datastore
    const now = Date.now
    Date.now = () => now() + 61_000
    try {
      await node.peerStore.merge(peer, { protocols: ['/a/1.0.0'] })
    } finally {
      Date.now = now
    }
    expect(datastore.puts).to.equal(puts + 1)
  })

  it(`keeps at most ${CACHED_PEERS_MAX} records: the least recently used is read from the datastore again`, async () => {
    const peers = await Promise.all(Array.from({ length: CACHED_PEERS_MAX + 1 }, newPeer))
    for (const peer of peers) { await node.peerStore.merge(peer, { protocols: ['/a/1.0.0'] }) }
    // peers[0] was the least recently used when the last came in
    const gets = datastore.gets
    await node.peerStore.get(peers[CACHED_PEERS_MAX])
    await node.peerStore.get(peers[1])
    expect(datastore.gets, 'reads of cached records').to.equal(gets)
    await node.peerStore.get(peers[0])
    expect(datastore.gets, 'the evicted record read').to.equal(gets + 1)
    // taking it back in evicted the least recently used of the rest
    await node.peerStore.get(peers[2])
    expect(datastore.gets, 'the next evicted record read').to.equal(gets + 2)
    await node.peerStore.get(peers[1])
    expect(datastore.gets, 'a record used since').to.equal(gets + 2)
  })

  it('what a caller gets is its own: changing it in place changes nothing stored', async () => {
    const peer = await newPeer()
    await node.peerStore.merge(peer, { metadata: { k: new Uint8Array([1, 2, 3]) } })
    const { gets } = datastore
    const first = await node.peerStore.get(peer)
    first.metadata.get('k')!.fill(9)
    const again = await node.peerStore.get(peer)
    expect(datastore.gets, 'read from the cache').to.equal(gets)
    expect(again.metadata.get('k')).to.deep.equal(new Uint8Array([1, 2, 3]))
  })

  it('keeps a copy of each record, not the buffer it came in (a view of a pool slab would keep the slab)', async () => {
    const peers = await Promise.all(Array.from({ length: 8 }, newPeer))
    for (const peer of peers) { await node.peerStore.merge(peer, { protocols: ['/a/1.0.0'] }) }
    // another node on the same datastore reads each record once, into its cache, from a 1 MiB slab
    datastore.slabBytes = 1024 * 1024
    const other = await createLibp2p({ datastore: datastore as any, start: false })
    try {
      for (const peer of peers) { await other.peerStore.get(peer) }
      const { gets } = datastore
      for (const peer of peers) { await other.peerStore.get(peer) }
      expect(datastore.gets, 'read from the cache').to.equal(gets)
      expect(datastore.slabs).to.have.lengthOf(peers.length)
      expect(await collectedAll(datastore.slabs), 'slabs still in memory').to.equal(0)
    } finally {
      await other.stop()
    }
  })
})
