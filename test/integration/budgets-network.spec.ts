/**
 * The network budgets over real libp2p on loopback: the DHT keeps no
 * stranger's records, one host cannot take the pending-connection slots
 * nor more than its share of connections, and a member's connection is
 * pruned after strangers'.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { Record as DhtRecord } from '@libp2p/kad-dht'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { LevelDatastore } from 'datastore-level'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { Registry } from 'prom-client'
import { budgetsOf, MEMBER_TAG, MEMBER_TAG_VALUE } from '../../node/budgets.ts'
import { resolveConfig } from '../../node/config.ts'
import { PRIVATE_DHT_PROTOCOL } from '../../node/constants.ts'
import { buildLibp2p } from '../../node/libp2p.ts'
import { refusalCount } from '../lib/metrics.ts'
import { addressOf, TestCluster, waitFor } from '../lib/nodes.ts'
import { plainPeer, presentCertificate } from '../lib/peers.ts'
import type { ConnectionBudgets } from '../../node/budgets.ts'
import type { AccordNode } from '../../node/index.ts'
import type { BaseServices } from '../../node/libp2p.ts'
import type { Libp2p } from '@libp2p/interface'
import type { Socket } from 'node:net'

/** Only keeps a broken test from hanging: never asserted on. */
const SETTLE_DEADLINE_MS = 20_000
const RAW_CODEC = 0x55

// ---- a kad-dht message, by hand (kad-dht 16 exports no codec): dht.proto ----

function varint (n: number): number[] {
  const out: number[] = []
  for (; n >= 0x80; n = Math.floor(n / 0x80)) { out.push((n & 0x7f) | 0x80) }
  out.push(n)
  return out
}
const bytesField = (field: number, bytes: Uint8Array): number[] => [...varint((field << 3) | 2), ...varint(bytes.byteLength), ...bytes]
const intField = (field: number, n: number): number[] => [...varint(field << 3), ...varint(n)]

/** ADD_PROVIDER (type 2): `provider` provides `key`. */
function addProvider (key: Uint8Array, provider: Libp2p): Uint8Array {
  const peer = [...bytesField(1, provider.peerId.toMultihash().bytes), ...bytesField(2, provider.getMultiaddrs()[0].bytes)]
  return new Uint8Array([...intField(1, 2), ...bytesField(2, key), ...bytesField(9, new Uint8Array(peer))])
}

/** PUT_VALUE (type 0): a valid public-key record, which the default `pk` validator accepts. */
async function putPublicKey (): Promise<Uint8Array> {
  const key = (await generateKeyPair('Ed25519')).publicKey
  const recordKey = new Uint8Array([...new TextEncoder().encode('/pk/'), ...key.toMultihash().bytes])
  const record = new DhtRecord(recordKey, publicKeyToProtobuf(key), new Date()).serialize()
  return new Uint8Array([...intField(1, 0), ...bytesField(2, recordKey), ...bytesField(3, record)])
}

/**
 * Send one DHT message on a stream of its own, and wait until the node is
 * done with it: it closes the stream once it has handled the message (or
 * aborts it when it refused it).
 */
async function sendDht (from: Libp2p, to: AccordNode, message: Uint8Array): Promise<void> {
  const stream = await from.dialProtocol(to.libp2p.peerId, PRIVATE_DHT_PROTOCOL)
  const handled = new Promise(resolve => { stream.addEventListener('close', resolve, { once: true }) })
  try {
    await lpStream(stream).write(message)
    await stream.close()
  } catch {
    stream.abort(new Error('refused'))
  }
  await Promise.race([handled, new Promise(resolve => setTimeout(resolve, SETTLE_DEADLINE_MS))])
}

describe('network budgets (real libp2p over TCP on loopback)', function () {
  this.timeout(90_000)
  let cluster: TestCluster
  const peers: Libp2p[] = []
  const dirs: string[] = []
  const sockets: Socket[] = []

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => {
    for (const s of sockets.splice(0)) { s.destroy() }
    await Promise.all(peers.splice(0).map(async p => { await p.stop() }))
    await cluster.stop()
    await Promise.all(dirs.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) }))
  })

  it('private mode: a stranger\'s flood of ADD_PROVIDER and PUT_VALUE leaves nothing in the node\'s datastore, and each is counted', async () => {
    // strangers are closed after graceMs: long enough for the flood here
    const node = await cluster.add({ raft: false }, { admissionLimits: { graceMs: 60_000 } })
    const stranger = await plainPeer()
    peers.push(stranger)
    await stranger.dial(multiaddr(addressOf(node)))

    const providers = 40
    const values = 10
    for (let i = 0; i < providers; i++) {
      const cid = CID.createV1(RAW_CODEC, await sha256.digest(new TextEncoder().encode(`flood ${i}`)))
      await sendDht(stranger, node, addProvider(cid.bytes, stranger))
    }
    for (let i = 0; i < values; i++) { await sendDht(stranger, node, await putPublicKey()) }

    // what is on disk: no DHT record at all
    await node.stop()
    const datastore = new LevelDatastore(join(node.config.dataDir, 'datastore'))
    await datastore.open()
    const keys: string[] = []
    for await (const key of datastore.queryKeys({ prefix: '/dht/' })) { keys.push(key.toString()) }
    await datastore.close()
    expect(keys).to.deep.equal([])
    expect(await refusalCount(node, PRIVATE_DHT_PROTOCOL, 'dht-provider')).to.equal(providers)
    expect(await refusalCount(node, PRIVATE_DHT_PROTOCOL, 'dht-record')).to.equal(values)
  })

  describe('built by buildLibp2p, with the per-host limits on loopback', () => {
    async function build (budgets: Partial<ConnectionBudgets>): Promise<Libp2p<BaseServices>> {
      const dir = await mkdtemp(join(tmpdir(), 'accord-budgets-'))
      dirs.push(dir)
      const datastore = new LevelDatastore(join(dir, 'datastore'))
      await datastore.open()
      const node = await buildLibp2p({
        config: resolveConfig(dir, {}, { listen: ['/ip4/127.0.0.1/tcp/0'] }),
        privateKey: await generateKeyPair('Ed25519'),
        datastore,
        registry: new Registry(),
        version: 'test',
        connectionBudgets: { limitLoopback: true, ...budgets }
      })
      await node.start()
      peers.push(node as unknown as Libp2p)
      return node
    }

    it('sockets from one host that never finish a handshake take at most inboundPendingPerHostMax slots: another host still connects', async () => {
      const node = await build({})
      const budgets = budgetsOf(node)
      if (budgets == null) { throw new Error('buildLibp2p recorded no budgets') }
      const port = Number(node.getMultiaddrs()[0].getComponents().find(c => c.name === 'tcp')?.value)
      // libp2p's own default (10 pending upgrades, no per-host share)
      // lets 10 such sockets lock everyone out for its 10 s upgrade timeout
      const libp2pDefaultPending = 10
      const stalled = 20
      const closed = new Set<Socket>()
      for (let i = 0; i < stalled; i++) {
        const socket = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' })
        socket.on('error', () => {})
        socket.on('close', () => { closed.add(socket) })
        sockets.push(socket)
      }
      await waitFor(() => closed.size >= stalled - libp2pDefaultPending, 'the node to have taken in the stalled sockets', SETTLE_DEADLINE_MS)

      const member = await plainPeer(false)
      peers.push(member)
      const connection = await member.dial(node.getMultiaddrs()[0])
      expect(connection.status).to.equal('open')
      const { inboundPendingPerHostMax } = budgets.hosts.limits
      await waitFor(() => closed.size === stalled - inboundPendingPerHostMax, 'the sockets beyond the per-host pending limit to be closed', SETTLE_DEADLINE_MS)
      expect(budgets.hosts.usage('127.0.0.2')).to.deep.equal({ open: 0, pending: inboundPendingPerHostMax })
    })

    it('refuses a host\'s connections beyond inboundPerHostMax, and takes one again once another closes', async () => {
      const node = await build({ inboundPerHostMax: 3 })
      const target = node.getMultiaddrs()[0]
      const dialers = await Promise.all(Array.from({ length: 5 }, async () => plainPeer(false)))
      peers.push(...dialers)
      const results: boolean[] = []
      for (const d of dialers) { results.push(await d.dial(target).then(() => true, () => false)) }
      expect(results).to.deep.equal([true, true, true, false, false])
      await waitFor(() => node.getConnections().length === 3, 'the node to hold the 3 connections', SETTLE_DEADLINE_MS)

      await dialers[0].hangUp(node.peerId)
      await waitFor(() => budgetsOf(node)?.hosts.usage('127.0.0.1').open === 2, 'the closed connection to be freed', SETTLE_DEADLINE_MS)
      await dialers[3].dial(target)
      await waitFor(() => node.getConnections(dialers[3].peerId).length === 1, 'the node to take the new connection', SETTLE_DEADLINE_MS)
      expect(node.getConnections().length).to.equal(3)
    })
  })

  it('a member\'s connection is pruned after strangers\': with maxConnections 3, the node keeps it while its own dials to strangers push it over', async () => {
    const maxConnections = 3
    const node = await cluster.add({ raft: false, maxConnections }, { admissionLimits: { graceMs: 60_000 } })
    // the member dialled the node: an idle inbound connection, the first
    // the pruner would pick if it went by streams, direction and age alone
    const member = await plainPeer()
    peers.push(member)
    await member.dial(multiaddr(addressOf(node)))
    await presentCertificate(node, member)
    await waitFor(async () => (await node.libp2p.peerStore.get(member.peerId)).tags.get(MEMBER_TAG)?.value === MEMBER_TAG_VALUE, 'the member to be tagged', SETTLE_DEADLINE_MS)

    // strangers the node dials itself (as discovery does with peers a DHT walk reveals)
    const strangers = await Promise.all(Array.from({ length: 4 }, async () => plainPeer()))
    peers.push(...strangers)
    for (const stranger of strangers) {
      await node.libp2p.dial(stranger.getMultiaddrs()[0])
      await waitFor(() => node.libp2p.getConnections().length <= maxConnections, `at most ${maxConnections} connections`, SETTLE_DEADLINE_MS)
    }

    expect(node.libp2p.getConnections(member.peerId).map(c => c.status)).to.deep.equal(['open'])
    const strangersConnected = strangers.filter(s => node.libp2p.getConnections(s.peerId).length > 0).length
    expect(strangersConnected).to.equal(maxConnections - 1)
  })
})
