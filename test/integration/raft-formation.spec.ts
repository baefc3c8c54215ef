/**
 * Forming a Raft group with its initial cluster over real libp2p (one
 * process): with a list of peer ids every listed node bootstraps the same
 * configuration; with a count the founder waits for its members. Either
 * way no write is acknowledged before the group holds all its voters.
 */
import { expect } from 'aegir/chai'
import { sendClientRequest } from '../../node/raft/client-protocol.ts'
import { RaftError } from '../../node/raft/driver.ts'
import { RAFT_PROTOCOL } from '../../node/raft/transport-constants.ts'
import { identityFor } from '../lib/identities.ts'
import { addressOf, leaderOf, TestCluster, waitFor } from '../lib/nodes.ts'
import type { AccordNode } from '../../node/index.ts'

const config = { api: '127.0.0.1:0', raftTickMs: 50 }

async function notFormedError (node: AccordNode): Promise<RaftError> {
  const err = await node.raft!.put('k', 'v').then(() => null, (e: unknown) => e)
  expect(err).to.be.instanceOf(RaftError)
  return err as RaftError
}

describe('raft formation over libp2p (one process)', function () {
  this.timeout(120_000)
  let cluster: TestCluster

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => { await cluster.stop() })

  it('a list of peer ids: every listed node bootstraps the same three voters; writes wait for the group', async () => {
    const identities = await Promise.all([0, 1, 2].map(async () => identityFor(await cluster.newDataDir())))
    const ids = identities.map(i => i.peerId)
    const first = await cluster.add({ ...config, dataDir: identities[0].dataDir, raftInitialCluster: ids })
    // alone, node 0 holds the configuration but cannot elect a leader
    expect(first.raft!.summary()).to.deep.include({ voters: [...ids].sort(), learners: [], formed: false, formedAt: null })
    const err = await notFormedError(first)
    expect(err.code).to.equal('not-formed')
    expect(err.message).to.equal('raft group not formed: 1 of 3 members connected')
    const http = await fetch(`${first.apiUrl}/v1/kv/k`, { method: 'PUT', body: 'v' })
    expect(http.status).to.equal(503)
    expect(await http.json()).to.deep.include({ error: 'raft group not formed: 1 of 3 members connected' })

    // a node left out of the list counts for nothing until the group formed, then joins it
    const outsider = await cluster.add({ ...config, bootstrap: [addressOf(first)], raftInitialCluster: ids })
    await waitFor(async () => (await first.libp2p.peerStore.get(outsider.libp2p.peerId)).protocols.includes(RAFT_PROTOCOL), 'node 0 to know the outsider serves raft')
    // (a few of the service's formation checks, every 250 ms)
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(first.raft!.summary().formation).to.equal('raft group not formed: 1 of 3 members connected')
    const others = []
    for (const identity of identities.slice(1)) {
      others.push(await cluster.add({ ...config, dataDir: identity.dataDir, bootstrap: [addressOf(first)], raftInitialCluster: ids }))
    }
    const nodes = [first, ...others]
    await waitFor(() => nodes.every(n => n.raft!.summary().formed), 'the group to form on every node')
    const outsiderId = outsider.libp2p.peerId.toString()
    await waitFor(() => first.raft!.summary().voters.includes(outsiderId), 'the outsider to join the formed group and be promoted')
    for (const node of nodes) {
      const summary = node.raft!.summary()
      expect(summary.voters).to.include.members(ids)
      expect(summary.formation).to.equal(null)
      expect(summary.formedAt).to.be.a('string')
    }
    expect((await others[1].raft!.put('k', 'v')).ok).to.equal(true)
    const status = await (await fetch(`${others[0].apiUrl}/v1/status`)).json()
    expect(status.raft).to.deep.include({ formed: true, formation: null })
  })

  it('a count: the founder waits until three members are connected, then makes all three voters at once', async () => {
    const first = await cluster.add({ ...config, raftInitialCluster: 3 })
    expect(first.raft!.summary()).to.deep.include({ voters: [], formed: false })
    expect((await notFormedError(first)).message).to.equal('raft group not formed: 1 of 3 members connected')
    const second = await cluster.add({ ...config, bootstrap: [addressOf(first)], raftInitialCluster: 3 })
    await waitFor(() => first.raft!.summary().formation === 'raft group not formed: 2 of 3 members connected', 'node 0 to count 2 of 3 members')
    expect(first.raft!.summary().voters).to.deep.equal([])
    expect((await notFormedError(second)).code).to.equal('not-formed')

    const third = await cluster.add({ ...config, bootstrap: [addressOf(first)], raftInitialCluster: 3 })
    const nodes = [first, second, third]
    const ids = nodes.map(n => n.libp2p.peerId.toString()).sort()
    await waitFor(() => nodes.every(n => n.raft!.summary().formed), 'the group to form on every node')
    for (const node of nodes) { expect(node.raft!.summary()).to.deep.include({ voters: ids, learners: [] }) }
    expect((await third.raft!.put('k', 'v')).ok).to.equal(true)

    // a member's join request (sent before it heard of its configuration)
    // neither demotes it nor changes anything
    const leader = leaderOf(nodes)
    const follower = nodes.find(n => n !== leader)!
    const self = follower.libp2p.peerId.toString()
    const before = await leader.raft!.put('before', 'join')
    const answer = await sendClientRequest(follower.libp2p, leader.libp2p.peerId.toString(), { op: 'conf-change', change: { changes: [{ type: 'add-learner', node: self }] } }, AbortSignal.timeout(5000))
    expect(answer.ok).to.equal(true)
    // nothing was proposed: the next write takes the next index
    expect(await leader.raft!.put('after', 'join')).to.deep.include({ ok: true, index: before.index + 1 })
    expect(leader.raft!.summary()).to.deep.include({ voters: ids, learners: [] })
  })
})
