/**
 * accord installs `@libp2p/peer-store` with a patch (patches/, applied by
 * `npm ci` through patch-package): libp2p merges the protocol of every
 * stream it opens into the remote peer's record, on both ends, and each
 * merge read the record from the datastore (LevelDB in a node) and wrote
 * it back even when nothing changed. Patched, records are read through an
 * in-memory cache kept in step with every write and delete, and a merge
 * that changes nothing is not written (unless the stored record is a
 * minute old, which keeps its expiry times moving). These tests fail if
 * the patch is not applied.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from '@libp2p/interface'

/** A datastore in a Map that counts its reads and writes (keys are only ever compared as strings). */
class CountingDatastore {
  readonly values = new Map<string, Uint8Array>()
  gets = 0
  puts = 0

  async get (key: { toString(): string }): Promise<Uint8Array> {
    this.gets++
    const value = this.values.get(key.toString())
    if (value === undefined) { throw Object.assign(new Error('not found'), { name: 'NotFoundError' }) }
    return value
  }

  async put (key: { toString(): string }, value: Uint8Array): Promise<unknown> {
    this.puts++
    this.values.set(key.toString(), value)
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

describe('@libp2p/peer-store as patched', () => {
  let node: Libp2p
  let datastore: CountingDatastore

  beforeEach(async () => {
    datastore = new CountingDatastore()
    node = await createLibp2p({ datastore: datastore as any, start: false })
  })

  afterEach(async () => { await node.stop() })

  it('a merge that changes nothing is neither read from nor written to the datastore again', async () => {
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
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
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
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
})
