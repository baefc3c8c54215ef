/**
 * Per-connection stream limits (real libp2p over TCP): a peer that opens
 * more streams of a protocol than the node allows on one connection has the
 * extra one reset, and the node keeps serving everyone else.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { STREAM_LIMITS } from '../../node/budgets.ts'
import { clusterProtocol, CLUSTER_HELLO_STREAMS_MAX, membershipTopic } from '../../node/constants.ts'
import { addressOf, TestCluster, waitFor } from '../lib/nodes.ts'
import { plainPeer, presentCertificate } from '../lib/peers.ts'
import type { Libp2p, Stream } from '@libp2p/interface'

type Outcome = { hello: unknown } | { reset: true }

/**
 * What a cluster-hello stream gives: the node's hello, or nothing and a
 * reset. Read by events, not `for await`: libp2p's stream iterator waits
 * for the remote to close its side, and misses that when it happened
 * before the iterator started (the hello and the close come together);
 * the same goes for `readStatus`, which stays 'readable' then.
 */
async function outcome (stream: Stream): Promise<Outcome> {
  const chunks: Uint8Array[] = []
  stream.addEventListener('message', (event) => { chunks.push(event.data.subarray()) })
  await waitFor(() => stream.remoteWriteStatus === 'closed' && stream.readBufferLength === 0, 'the stream to end', 10_000, 20)
  if (chunks.length === 0 && stream.status === 'reset') { return { reset: true } }
  return { hello: JSON.parse(new TextDecoder().decode(Buffer.concat(chunks))) }
}

describe('stream limits per connection (real libp2p over TCP)', function () {
  this.timeout(60_000)
  let cluster: TestCluster
  const peers: Libp2p[] = []

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => {
    await Promise.all(peers.splice(0).map(async p => { await p.stop() }))
    await cluster.stop()
  })

  it(`a peer opening more than ${CLUSTER_HELLO_STREAMS_MAX} cluster-hello streams on one connection has the extra one reset; others are served`, async () => {
    const node = await cluster.add({ raft: false })
    const protocol = clusterProtocol(node.config.cluster)
    const greedy = await plainPeer(false)
    const other = await plainPeer(false)
    peers.push(greedy, other)
    // members both, so admission lets their streams through to the handler
    await presentCertificate(node, greedy)
    await presentCertificate(node, other)
    const address = multiaddr(addressOf(node))

    // the greedy peer never closes its side, so each stream stays open on the node
    const held: Array<Promise<Outcome>> = []
    for (let i = 0; i < CLUSTER_HELLO_STREAMS_MAX; i++) { held.push(outcome(await greedy.dialProtocol(address, protocol))) }
    const extra = outcome(await greedy.dialProtocol(address, protocol))
    expect(greedy.getConnections(node.libp2p.peerId)).to.have.length(1)

    expect(await extra).to.deep.equal({ reset: true })
    for (const answer of await Promise.all(held)) {
      expect(answer).to.have.nested.property('hello.cluster', node.config.cluster)
    }
    // another peer is served meanwhile
    expect(await outcome(await other.dialProtocol(address, protocol))).to.have.nested.property('hello.cluster', node.config.cluster)
  })

  it(`a peer opening more than ${STREAM_LIMITS.gossipsubMax} gossipsub streams on one connection has the extra one reset; others are served`, async () => {
    const node = await cluster.add({ raft: false })
    const greedy = await plainPeer(false)
    peers.push(greedy)
    const address = multiaddr(addressOf(node))
    const protocol = '/meshsub/1.1.0'

    // gossipsub closes its side of a peer's older inbound stream when a new
    // one comes; the greedy peer never closes its side, so all stay open
    const held: Stream[] = []
    for (let i = 0; i < STREAM_LIMITS.gossipsubMax; i++) { held.push(await greedy.dialProtocol(address, protocol)) }
    const extra = await greedy.dialProtocol(address, protocol)
    await waitFor(() => extra.status === 'reset', 'the extra stream to be reset', 10_000, 20)
    expect(held.map(s => s.status)).to.not.include('reset')
    expect(greedy.getConnections(node.libp2p.peerId)).to.have.length(1)

    // a member joining meanwhile gets its gossipsub stream: the node sees its subscriptions
    const member = await cluster.add({ raft: false, bootstrap: [addressOf(node)] })
    const topic = membershipTopic(node.config.cluster)
    await waitFor(() => node.libp2p.services.pubsub.getSubscribers(topic).some(p => p.equals(member.libp2p.peerId)), 'the member\'s gossipsub subscription')
  })
})
