/**
 * The outbound quota over real libp2p (TCP, Noise) on loopback: the node
 * dials peers of its own choosing from its routing table and keeps them
 * when strangers that dialled it push it over maxConnections, and spreads
 * its choices over subnets (peers listening on 127.a.b.c addresses of
 * different /24s: Linux routes all of 127.0.0.0/8 to lo).
 */
import { rm } from 'node:fs/promises'
import { expect } from 'aegir/chai'
import { budgetsOf, hostOf } from '../../node/budgets.ts'
import { KAD_PEER_TAG, OUTBOUND_TAG, OUTBOUND_TAG_VALUE } from '../../node/outbound-quota.ts'
import { waitFor } from '../lib/nodes.ts'
import { builtPeer, plainPeer } from '../lib/peers.ts'
import type { BaseServices } from '../../node/libp2p.ts'
import type { Libp2p } from '@libp2p/interface'

/** Only keeps a broken test from hanging: never asserted on. */
const SETTLE_DEADLINE_MS = 20_000
/**
 * kad-dht's tag on its closest peers (KAD_CLOSE_TAG_NAME, value 50): what
 * Sybil ids ground close to the node's own id earn; the tag sum the
 * pruner compares is then 50 for each stranger, 1 for a plain
 * routing-table peer.
 */
const KAD_CLOSE_TAG = 'kad-close'
const KAD_CLOSE_TAG_VALUE = 50

describe('outbound quota (real libp2p over TCP on loopback)', function () {
  this.timeout(60_000)
  const nodes: Libp2p[] = []
  const dirs: string[] = []

  afterEach(async () => {
    await Promise.all(nodes.splice(0).map(async n => { await n.stop() }))
    await Promise.all(dirs.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) }))
  })

  async function build (maxConnections: number, outboundPeersMin: number, intervalMs = 100): Promise<Libp2p<BaseServices>> {
    const node = await builtPeer(dirs, { maxConnections, outboundPeersMin }, { outboundQuota: { intervalMs } })
    nodes.push(node as unknown as Libp2p)
    return node
  }

  async function peers (n: number, listen: boolean | string): Promise<Libp2p[]> {
    const made = await Promise.all(Array.from({ length: n }, async () => plainPeer(listen)))
    nodes.push(...made)
    return made
  }

  it('with maxConnections taken by inbound strangers, the node still connects to peers it chose from its routing table, and keeps them', async () => {
    const maxConnections = 4
    const node = await build(maxConnections, 2)
    // libp2p refuses inbound connections beyond maxConnections: the strangers hold every slot
    const strangers = await peers(maxConnections + 2, false)
    for (const stranger of strangers) {
      await node.peerStore.merge(stranger.peerId, { tags: { [KAD_CLOSE_TAG]: { value: KAD_CLOSE_TAG_VALUE } } })
      await stranger.dial(node.getMultiaddrs()[0]).catch(() => {})
    }
    await waitFor(() => node.getConnections().length === maxConnections, `the strangers to hold ${maxConnections} connections`, SETTLE_DEADLINE_MS)

    // honest peers enter the routing table (as kad-dht records them)
    const honest = await peers(2, true)
    for (const peer of honest) {
      await node.peerStore.merge(peer.peerId, { multiaddrs: peer.getMultiaddrs(), tags: { [KAD_PEER_TAG]: { value: 1 } } })
    }
    await waitFor(() => budgetsOf(node)?.outbound?.chosen.length === 2, 'the node to choose its two peers', SETTLE_DEADLINE_MS)
    await waitFor(() => node.getConnections().length <= maxConnections, `at most ${maxConnections} connections`, SETTLE_DEADLINE_MS)

    for (const peer of honest) {
      expect(node.getConnections(peer.peerId).map(c => `${c.direction} ${c.status}`)).to.deep.equal(['outbound open'])
      expect((await node.peerStore.get(peer.peerId)).tags.get(OUTBOUND_TAG)?.value).to.equal(OUTBOUND_TAG_VALUE)
    }
    const strangersConnected = strangers.filter(s => node.getConnections(s.peerId).length > 0).length
    expect(strangersConnected).to.equal(maxConnections - honest.length)
  })

  it('replaces a chosen peer that goes away with another candidate', async () => {
    const node = await build(10, 1)
    const [first, second] = await peers(2, true)
    await node.peerStore.merge(first.peerId, { multiaddrs: first.getMultiaddrs(), tags: { [KAD_PEER_TAG]: { value: 1 } } })
    await waitFor(() => budgetsOf(node)?.outbound?.chosen.length === 1, 'the node to choose a peer', SETTLE_DEADLINE_MS)
    await node.peerStore.merge(second.peerId, { multiaddrs: second.getMultiaddrs(), tags: { [KAD_PEER_TAG]: { value: 1 } } })
    expect(budgetsOf(node)?.outbound?.chosen).to.deep.equal([first.peerId.toString()])

    await first.stop()
    await waitFor(() => budgetsOf(node)?.outbound?.chosen[0] === second.peerId.toString(), 'the node to choose the other peer', SETTLE_DEADLINE_MS)
    expect(node.getConnections(second.peerId).map(c => c.direction)).to.deep.equal(['outbound'])
  })

  it('spreads its choices over subnets: of 12 routing-table peers in 127.0.0.0/24 and one in each of 127.1.0.0/24, 127.2.0.0/24 and 127.3.0.0/24, it chooses the three and one of the twelve', async () => {
    // refilled by the test alone, once every peer is in the routing table
    const node = await build(50, 4, 3_600_000)
    const crowd = await peers(12, '127.0.0.1')
    const few = (await Promise.all([1, 2, 3].map(async i => peers(1, `127.${i}.0.1`)))).flat()
    for (const peer of [...crowd, ...few]) {
      await node.peerStore.merge(peer.peerId, { multiaddrs: peer.getMultiaddrs(), tags: { [KAD_PEER_TAG]: { value: 1 } } })
    }
    const quota = budgetsOf(node)?.outbound
    if (quota == null) { throw new Error('buildLibp2p installed no outbound quota') }
    await quota.refill()

    expect(quota.chosen).to.have.length(4)
    expect(quota.chosen).to.include.members(few.map(p => p.peerId.toString()))
    expect([...quota.chosenSubnets.values()]).to.have.members(['127.0.0.0/24', '127.1.0.0/24', '127.2.0.0/24', '127.3.0.0/24'])
    for (const peer of few) {
      expect(node.getConnections(peer.peerId).map(c => `${c.direction} ${c.status} ${hostOf(c.remoteAddr)?.host}`)).to.deep.equal([`outbound open ${hostOf(peer.getMultiaddrs()[0])?.host}`])
    }
    expect(quota.misplaced).to.equal(0)
  })
})
