import { expect } from 'aegir/chai'
import { identityFor } from '../lib/identities.ts'
import { addressOf, connectedMembers, TestCluster, waitFor } from '../lib/nodes.ts'
import type { AccordNode } from '../../node/index.ts'

/**
 * A refused peer's dial may complete its handshake before the other side
 * aborts the connection, so the refused node may start; what must never
 * happen is a lasting connection or membership.
 */
async function startRefused (cluster: TestCluster, dataDir: string, bootstrap: string): Promise<AccordNode | null> {
  try {
    // with a token, as a welcome node would have; its join gives up soon
    return await cluster.add({ dataDir, bootstrap: [bootstrap], raft: false }, { joinDeadlineMs: 2000 })
  } catch {
    return null
  }
}

describe('connection gater (allow and deny lists)', function () {
  this.timeout(60_000)
  let cluster: TestCluster

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => { await cluster.stop() })

  it('a denied peer gets no connection and no membership; others do', async () => {
    const denied = await identityFor(await cluster.newDataDir())
    const guarded = await cluster.add({ denyPeers: [denied.peerId], raft: false })
    const refused = await startRefused(cluster, denied.dataDir, addressOf(guarded))
    const welcome = await cluster.add({ bootstrap: [addressOf(guarded)], raft: false })
    await waitFor(() => connectedMembers(guarded).includes(welcome.libp2p.peerId.toString()), 'the allowed node to join')
    if (refused != null) { await waitFor(() => refused.libp2p.getConnections(guarded.libp2p.peerId).length === 0, 'the refused connection to close') }
    expect(guarded.libp2p.getConnections().map(c => c.remotePeer.toString())).to.not.include(denied.peerId)
    expect(guarded.members().map(m => m.peerId)).to.not.include(denied.peerId)
  })

  it('with an allow list, only the listed peers get connections', async () => {
    const friend = await identityFor(await cluster.newDataDir())
    const stranger = await identityFor(await cluster.newDataDir())
    const guarded = await cluster.add({ allowPeers: [friend.peerId], raft: false })
    const refused = await startRefused(cluster, stranger.dataDir, addressOf(guarded))
    const admitted = await cluster.add({ dataDir: friend.dataDir, bootstrap: [addressOf(guarded)], raft: false })
    await waitFor(() => connectedMembers(guarded).includes(admitted.libp2p.peerId.toString()), 'the listed node to join')
    if (refused != null) { await waitFor(() => refused.libp2p.getConnections(guarded.libp2p.peerId).length === 0, 'the refused connection to close') }
    expect(guarded.libp2p.getConnections().map(c => c.remotePeer.toString())).to.deep.equal([friend.peerId])
    expect(guarded.members().map(m => m.peerId)).to.deep.equal([friend.peerId])
  })
})
