/**
 * Strangers per subnet over real libp2p (TCP, Noise) on loopback: the gater
 * refuses strangers beyond subnetPeersMax from one subnet, while a member
 * (a peer with the member tag in the node's peer store) still connects.
 * Loopback is exempt by default; here limitLoopback applies the limit to
 * 127.0.0.0/24, where every dialler of this test is.
 */
import { rm } from 'node:fs/promises'
import { expect } from 'aegir/chai'
import { budgetsOf, MEMBER_TAG, MEMBER_TAG_VALUE } from '../../node/budgets.ts'
import { waitFor } from '../lib/nodes.ts'
import { builtPeer, plainPeer } from '../lib/peers.ts'
import type { BaseServices } from '../../node/libp2p.ts'
import type { Libp2p } from '@libp2p/interface'

/** Only keeps a broken test from hanging: never asserted on. */
const SETTLE_DEADLINE_MS = 20_000
const SUBNET = '127.0.0.0/24'

describe('strangers per subnet (real libp2p over TCP on loopback)', function () {
  this.timeout(60_000)
  const nodes: Libp2p[] = []
  const dirs: string[] = []

  afterEach(async () => {
    await Promise.all(nodes.splice(0).map(async n => { await n.stop() }))
    await Promise.all(dirs.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) }))
  })

  async function build (subnetPeersMax: number): Promise<Libp2p<BaseServices>> {
    // the setting as `accord start --subnet-peers-max` gives it
    const node = await builtPeer(dirs, { subnetPeersMax }, { connectionBudgets: { limitLoopback: true } })
    nodes.push(node as unknown as Libp2p)
    return node
  }

  async function dialers (n: number): Promise<Libp2p[]> {
    const made = await Promise.all(Array.from({ length: n }, async () => plainPeer(false)))
    nodes.push(...made)
    return made
  }

  it('refuses a stranger beyond subnetPeersMax from one subnet; a member from that subnet still connects', async () => {
    const node = await build(2)
    const target = node.getMultiaddrs()[0]
    const [a, b, c, member] = await dialers(4)
    for (const stranger of [a, b]) { await stranger.dial(target) }
    await waitFor(() => node.getConnections().length === 2, 'the node to hold the two strangers', SETTLE_DEADLINE_MS)

    // the third stranger's handshake may finish on its side before the node refuses the connection
    await c.dial(target).catch(() => {})
    await waitFor(() => c.getConnections(node.peerId).length === 0, 'the third stranger to be refused', SETTLE_DEADLINE_MS)
    expect(node.getConnections(c.peerId)).to.deep.equal([])
    expect(budgetsOf(node)?.subnets.strangers(SUBNET)).to.have.members([a.peerId.toString(), b.peerId.toString()])

    // a member, known by the tag admission gave it (kept in the peer store across restarts)
    await node.peerStore.merge(member.peerId, { tags: { [MEMBER_TAG]: { value: MEMBER_TAG_VALUE } } })
    const connection = await member.dial(target)
    expect(connection.status).to.equal('open')
    await waitFor(() => node.getConnections(member.peerId).length === 1, 'the node to take the member', SETTLE_DEADLINE_MS)
    expect(node.getConnections().map(conn => conn.remotePeer.toString())).to.have.members([a, b, member].map(p => p.peerId.toString()))

    // once a stranger leaves, another takes its place
    await a.hangUp(node.peerId)
    await waitFor(() => budgetsOf(node)?.subnets.strangers(SUBNET).length === 1, 'the stranger\'s slot to be freed', SETTLE_DEADLINE_MS)
    await c.dial(target)
    await waitFor(() => node.getConnections(c.peerId).length === 1, 'the node to take the third stranger now', SETTLE_DEADLINE_MS)
  })
})
