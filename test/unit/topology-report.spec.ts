/**
 * A node's own topology report from its services: sorted lists, cut at
 * their limits (and saying so), kad-dht's trie read into buckets by prefix.
 * The same report from real libp2p services is in
 * test/integration/topology.spec.ts.
 */
import { expect } from 'aegir/chai'
import { collectReport, dhtBucketsOf, REPORT_LIMITS } from '../../node/topology/report.ts'
import { peerIds } from './topology-fixtures.ts'
import type { Connection } from '@libp2p/interface'

function connection (peer: string, addr: string, direction: 'inbound' | 'outbound', status = 'open'): Connection {
  return { remotePeer: { toString: () => peer }, remoteAddr: { toString: () => addr }, direction, status } as unknown as Connection
}

const leaf = (...peers: string[]): { peers: Array<{ peerId: { toString(): string } }> } => ({ peers: peers.map(p => ({ peerId: { toString: () => p } })) })

describe('topology report', () => {
  let peers: string[]
  before(async () => { peers = await peerIds(4) })

  it('lists open connections, DHT buckets and mesh peers, sorted, and cuts nothing below the limits', () => {
    const [a, b, c] = peers
    const report = collectReport({
      connections: [connection(b, '/ip4/127.0.0.1/tcp/2', 'inbound'), connection(a, '/ip4/127.0.0.1/tcp/1', 'outbound'), connection(c, '/ip4/127.0.0.1/tcp/3', 'outbound', 'closing')],
      dht: { routingTable: { kb: { root: { left: leaf(b, a), right: { left: leaf(), right: leaf(c) } } } } },
      pubsub: { getTopics: () => ['z', 'm'], getMeshPeers: (topic: string) => topic === 'm' ? [b, a] : [] }
    }, 42)
    const sorted = [a, b].sort()
    expect(report).to.deep.equal({
      reportedAt: 42,
      connections: [
        { peer: a, remoteAddr: '/ip4/127.0.0.1/tcp/1', direction: 'outbound' },
        { peer: b, remoteAddr: '/ip4/127.0.0.1/tcp/2', direction: 'inbound' }
      ].sort((x, y) => x.peer < y.peer ? -1 : 1),
      // the empty leaf "10" is left out
      dhtBuckets: [{ prefix: '0', peers: sorted }, { prefix: '11', peers: [c] }],
      mesh: [{ topic: 'm', peers: sorted }, { topic: 'z', peers: [] }],
      truncated: []
    })
  })

  it('cuts each list at its limit and names it in truncated', async () => {
    const many = await peerIds(REPORT_LIMITS.connectionsMax + 1, 1000)
    const topics = Array.from({ length: REPORT_LIMITS.meshTopicsMax + 1 }, (_, i) => `t${String(i).padStart(3, '0')}`)
    const report = collectReport({
      connections: many.map((peer, i) => connection(peer, `/ip4/127.0.0.1/tcp/${i}`, 'inbound')),
      dht: { routingTable: { kb: { root: { left: leaf(...many.slice(0, 100)), right: leaf(...many.slice(100)) } } } },
      pubsub: { getTopics: () => topics, getMeshPeers: () => many }
    }, 1)
    expect(report.connections).to.have.lengthOf(REPORT_LIMITS.connectionsMax)
    expect(report.dhtBuckets.reduce((n, b) => n + b.peers.length, 0)).to.equal(REPORT_LIMITS.dhtPeersMax)
    expect(report.mesh).to.have.lengthOf(REPORT_LIMITS.meshTopicsMax)
    expect(report.mesh.every(m => m.peers.length === REPORT_LIMITS.meshPeersPerTopicMax)).to.equal(true)
    expect(report.truncated).to.deep.equal(['connections', 'dht', 'mesh'])
  })

  it('leaves out what a reader would refuse: a topic with a control character (saying mesh was cut), an address too long', () => {
    const [a] = peers
    const report = collectReport({
      connections: [connection(a, `/dns4/${'x'.repeat(REPORT_LIMITS.addrCharsMax)}/tcp/1`, 'outbound')],
      pubsub: { getTopics: () => ['ok', 'bad\u0007'], getMeshPeers: () => [] }
    }, 1)
    expect(report.connections).to.deep.equal([{ peer: a, remoteAddr: '', direction: 'outbound' }])
    expect(report.mesh.map(m => m.topic)).to.deep.equal(['ok'])
    expect(report.truncated).to.deep.equal(['mesh'])
  })

  it('reads no buckets from a DHT of another shape, or none at all', () => {
    expect(dhtBucketsOf(undefined)).to.deep.equal([])
    expect(dhtBucketsOf({ routingTable: { size: 3 } })).to.deep.equal([])
    expect(dhtBucketsOf({ routingTable: { kb: { root: { peers: 'not a list' } } } })).to.deep.equal([])
  })
})
