/**
 * Connection encryption over real TCP on loopback: Noise and TLS 1.3 side
 * by side, the order that picks Noise between accord nodes, a peer that
 * speaks only TLS, and the pnet pre-shared key with TLS.
 */
import { writeFile } from 'node:fs/promises'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import { clusterProtocol } from '../../node/constants.ts'
import { addressOf, connectedMembers, TestCluster, waitFor } from '../lib/nodes.ts'
import type { AccordNode } from '../../node/index.ts'
import type { Identify } from '@libp2p/identify'
import type { ConnectionEncrypter, Libp2p } from '@libp2p/interface'
import type { Ping } from '@libp2p/ping'
import type { Libp2pOptions } from 'libp2p'

const NOISE = '/noise'
const TLS = '/tls/1.0.0'
const SWARM_KEY = '/key/swarm/psk/1.0.0/\n/base16/\n' + 'cd'.repeat(32) + '\n'

/** The encryptions of the connections between two accord nodes, both ways (deduplicated). */
function encryptionBetween (a: AccordNode, b: AccordNode): string[] {
  const connections = [...a.libp2p.getConnections(b.libp2p.peerId), ...b.libp2p.getConnections(a.libp2p.peerId)]
  return [...new Set(connections.map(c => c.encryption ?? 'none'))]
}

describe('connection encryption: Noise and TLS 1.3 (real libp2p over TCP)', function () {
  this.timeout(60_000)
  let cluster: TestCluster
  const peers: Libp2p[] = []

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => {
    await Promise.all(peers.splice(0).map(async p => { await p.stop() }))
    await cluster.stop()
  })

  /** A plain js-libp2p peer that offers only `encrypter`, with identify and ping. */
  async function barePeer (encrypter: (components: any) => ConnectionEncrypter, protector?: Libp2pOptions['connectionProtector']): Promise<Libp2p<{ identify: Identify, ping: Ping }>> {
    const peer = await createLibp2p({
      transports: [tcp()],
      connectionEncrypters: [encrypter],
      connectionProtector: protector,
      streamMuxers: [yamux()],
      services: { identify: identify(), ping: ping() }
    })
    peers.push(peer)
    return peer
  }

  it('two accord nodes with the default encrypters use Noise', async () => {
    const first = await cluster.add({ raft: false })
    expect(first.config.encrypters).to.deep.equal(['noise', 'tls'])
    const second = await cluster.add({ raft: false, bootstrap: [addressOf(first)] })
    await waitFor(() => connectedMembers(first).includes(second.libp2p.peerId.toString()), 'the second node to join')
    expect(encryptionBetween(first, second)).to.deep.equal([NOISE])
  })

  it('a TLS-only js-libp2p peer connects over TLS 1.3, identifies and pings an accord node', async () => {
    const node = await cluster.add({ raft: false })
    const peer = await barePeer(tls())
    const rttMs = await peer.services.ping.ping(multiaddr(addressOf(node)))
    expect(rttMs).to.be.a('number')
    const connections = peer.getConnections(node.libp2p.peerId)
    expect(connections.map(c => c.encryption)).to.deep.equal([TLS])
    // identify ran over the TLS connection: the peer learned accord's protocols
    await waitFor(async () => (await peer.peerStore.get(node.libp2p.peerId)).protocols.includes(clusterProtocol(node.config.cluster)), 'identify over TLS')
    expect(node.libp2p.getConnections(peer.peerId).map(c => c.encryption)).to.deep.equal([TLS])
  })

  it('a Noise-only peer still gets Noise', async () => {
    const node = await cluster.add({ raft: false })
    const peer = await barePeer(noise())
    await peer.services.ping.ping(multiaddr(addressOf(node)))
    expect(peer.getConnections(node.libp2p.peerId).map(c => c.encryption)).to.deep.equal([NOISE])
  })

  it('a node started with encrypters ["noise"] refuses a TLS-only peer', async () => {
    const noiseOnly = await cluster.add({ raft: false, encrypters: ['noise'] })
    const tlsPeer = await barePeer(tls())
    await expect(tlsPeer.dial(multiaddr(addressOf(noiseOnly)))).to.eventually.be.rejected()
    expect(noiseOnly.libp2p.getConnections(tlsPeer.peerId)).to.be.empty()
  })

  it('a node started with encrypters ["tls"] joins a default node, over TLS', async () => {
    const welcoming = await cluster.add({ raft: false })
    const joined = await cluster.add({ raft: false, encrypters: ['tls'], bootstrap: [addressOf(welcoming)] })
    await waitFor(() => connectedMembers(welcoming).includes(joined.libp2p.peerId.toString()), 'the TLS node to join')
    expect(encryptionBetween(welcoming, joined)).to.deep.equal([TLS])
  })

  it('the pnet key works with TLS: nodes with the key join over TLS, a TLS peer without it gets no connection', async () => {
    const keyFile = `${await cluster.newDataDir()}/swarm.key`
    await writeFile(keyFile, SWARM_KEY, { mode: 0o600 })
    const guarded = await cluster.add({ raft: false, pnetKeyFile: keyFile, encrypters: ['tls'] })
    const insider = await cluster.add({ raft: false, pnetKeyFile: keyFile, encrypters: ['tls'], bootstrap: [addressOf(guarded)] })
    await waitFor(() => connectedMembers(guarded).includes(insider.libp2p.peerId.toString()), 'the node with the key to join')
    expect(encryptionBetween(guarded, insider)).to.deep.equal([TLS])

    const outsider = await barePeer(tls())
    await expect(outsider.dial(multiaddr(addressOf(guarded)))).to.eventually.be.rejected()
    const keyHolder = await barePeer(tls(), preSharedKey({ psk: new TextEncoder().encode(SWARM_KEY) }))
    await keyHolder.services.ping.ping(multiaddr(addressOf(guarded)))
    expect(keyHolder.getConnections(guarded.libp2p.peerId).map(c => c.encryption)).to.deep.equal([TLS])
  })
})
