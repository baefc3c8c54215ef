/**
 * Admission over real libp2p on loopback: what a stranger, a newcomer with
 * a good or a bad token, and a removed member can do to a Raft group.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { encode } from 'cborg'
import { createJoinToken } from '../../identity/cluster-credentials.ts'
import { joinCluster } from '../../node/admission/join.ts'
import { UserError } from '../../node/errors.ts'
import { sendClientRequest } from '../../node/raft/client-protocol.ts'
import { encodeFrame } from '../../node/raft/codec.ts'
import { RAFT_PROTOCOL } from '../../node/raft/transport-constants.ts'
import { refusalCount } from '../lib/metrics.ts'
import { addressOf, formRaftGroup, leaderOf, silentLogger, TestCluster, waitFor } from '../lib/nodes.ts'
import { plainPeer } from '../lib/peers.ts'
import type { AccordNode } from '../../node/index.ts'
import type { Libp2p } from '@libp2p/interface'

const idOf = (node: AccordNode): string => node.libp2p.peerId.toString()

describe('admission (real libp2p over TCP on loopback)', function () {
  this.timeout(90_000)
  let cluster: TestCluster
  const strangers: Libp2p[] = []

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => {
    await Promise.all(strangers.splice(0).map(async s => { await s.stop() }))
    await cluster.stop()
  })

  it('a stranger\'s Raft frames and client requests are refused: term, store and members stay as they were', async () => {
    const nodes = await formRaftGroup(cluster, 3)
    const leader = leaderOf(nodes)
    const follower = nodes.find(n => n !== leader)!
    const before = follower.raft!.summary()
    const outsider = await plainPeer()
    strangers.push(outsider)

    // a heartbeat 100 terms ahead, and an append carrying a write, from the outsider's own id
    const from = outsider.peerId.toString()
    const to = idOf(follower)
    const stream = await outsider.dialProtocol(multiaddr(addressOf(follower)), RAFT_PROTOCOL).catch(() => null)
    if (stream != null) {
      const lp = lpStream(stream)
      await lp.write(encodeFrame({ kind: 'message', message: { type: 'heartbeat', from, to, term: before.term + 100, commit: 0, readRound: 0 } })).catch(() => {})
      await lp.write(encodeFrame({ kind: 'message', message: { type: 'append', from, to, term: before.term + 100, prevIndex: before.lastIndex, prevTerm: before.term, commit: 0, entries: [] } })).catch(() => {})
    }
    const client = await outsider.dialProtocol(multiaddr(addressOf(follower)), '/accord/raft-client/1.0.0').catch(() => null)
    if (client != null) {
      const lp = lpStream(client)
      await lp.write(encode({ v: 1, op: 'transfer-leader', to: from })).catch(() => {})
      await expect(lp.read({ signal: AbortSignal.timeout(10_000) })).to.eventually.be.rejected()
    }

    await waitFor(async () => await refusalCount(follower, RAFT_PROTOCOL, 'not-admitted') >= 1, 'the Raft stream to be refused')
    const after = follower.raft!.summary()
    expect(after.term).to.equal(before.term)
    expect(after.voters).to.deep.equal(before.voters)
    expect(after.leader).to.equal(idOf(leader))
  })

  it('a member asking where peers are is told only about members of the group', async () => {
    const nodes = await formRaftGroup(cluster, 3)
    const leader = leaderOf(nodes)
    const follower = nodes.find(n => n !== leader)!
    const other = nodes.find(n => n !== leader && n !== follower)!
    // a stranger the leader has met, so its peer store knows where it is
    const outsider = await plainPeer()
    strangers.push(outsider)
    await outsider.dial(multiaddr(addressOf(leader)))
    await waitFor(async () => (await leader.libp2p.peerStore.get(outsider.peerId).catch(() => null)) != null, 'the leader to record the stranger')
    const answer = await sendClientRequest(follower.libp2p, idOf(leader), { op: 'peer-addresses', peers: [idOf(other), outsider.peerId.toString()] }, AbortSignal.timeout(10_000))
    expect(answer.ok).to.equal(true)
    expect((answer.ok ? answer.peers ?? [] : []).map(p => p.id)).to.deep.equal([idOf(other)])
  })

  it('closes a stranger\'s connection once the grace period ends', async () => {
    const node = await cluster.add({}, { admissionLimits: { graceMs: 300 } })
    const outsider = await plainPeer()
    strangers.push(outsider)
    await outsider.dial(multiaddr(addressOf(node)))
    await waitFor(() => outsider.getConnections(node.libp2p.peerId).length === 0, 'the stranger to be disconnected')
    expect(await refusalCount(node, '/accord/admission/1.0.0', 'grace-expired')).to.be.at.least(1)
  })

  /** Two members that admitted each other, then parted: b's admission service is stopped and their connection closed. */
  async function admittedThenParted (): Promise<{ a: AccordNode, b: AccordNode }> {
    // no grace expiry to close a connection that missed its exchange and so make a new one
    const options = { admissionLimits: { graceMs: 600_000 } }
    const a = await cluster.add({ raft: false }, options)
    const b = await cluster.add({ raft: false, bootstrap: [addressOf(a)] }, options)
    await waitFor(() => a.admission.isAdmitted(idOf(b)) && b.admission.isAdmitted(idOf(a)), 'a and b to admit each other')
    await b.admission.stop()
    await b.libp2p.hangUp(a.libp2p.peerId)
    await waitFor(() => !a.admission.isAdmitted(idOf(b)), 'a to forget b once disconnected')
    return { a, b }
  }

  it('presents its certificate on connections that opened before it started (services start together)', async () => {
    const { a, b } = await admittedThenParted()
    // b dials while its admission service is not started, as another service may while they all start
    await b.libp2p.dial(a.libp2p.getMultiaddrs()[0])
    await b.admission.start()
    await waitFor(() => a.admission.isAdmitted(idOf(b)) && b.admission.isAdmitted(idOf(a)), 'a and b to admit each other on that connection')
  })

  it('presents its certificate at start on connections the other side opened meanwhile (whose exchange found no one serving it)', async () => {
    const { a, b } = await admittedThenParted()
    // a dials b, which does not serve the exchange yet: a's attempt fails, and a does not try again on that connection
    await a.libp2p.dial(b.libp2p.getMultiaddrs()[0])
    // (its attempt takes a round trip: let it fail before b starts serving)
    await new Promise(resolve => setTimeout(resolve, 500))
    await b.admission.start()
    await waitFor(() => a.admission.isAdmitted(idOf(b)) && b.admission.isAdmitted(idOf(a)), 'a and b to admit each other on the connection a opened')
  })

  it('a node with a valid token joins and becomes a voter; an expired or forged token is refused with a reason', async () => {
    const founder = await cluster.add({ raftTickMs: 50, api: '127.0.0.1:0' })
    const expired = await founder.admission.createJoinToken(1000, Date.now() - 5000)
    await expect(cluster.add({ bootstrap: [addressOf(founder)] }, { joinToken: expired.token }))
      .to.eventually.be.rejectedWith(UserError, /refused the join token: join token expired/)

    const forged = await createJoinToken(await generateKeyPair('Ed25519'), { cluster: 'accord', expiresAtMs: Date.now() + 60_000, nonce: new Uint8Array(16) })
    await expect(cluster.add({ bootstrap: [addressOf(founder)] }, { joinToken: forged }))
      .to.eventually.be.rejectedWith(UserError, /refused the join token: join token signed by another cluster key/)

    await expect(cluster.add({ bootstrap: [addressOf(founder)] }, { joinToken: '' }))
      .to.eventually.be.rejectedWith(UserError, /not an accord join token/)

    const joined = await cluster.add({ raftTickMs: 50, bootstrap: [addressOf(founder)] })
    await waitFor(() => founder.raft!.summary().voters.includes(idOf(joined)), 'the new node to become a voter')
    expect(founder.admission.isAdmitted(idOf(joined))).to.equal(true)
    expect((await founder.status()).admission.clusterKeyId).to.equal((await joined.status()).admission.clusterKeyId)
  })

  it('a node started with bootstrap peers and no token does not start, and says why', async () => {
    const founder = await cluster.add()
    const dataDir = await cluster.newDataDir()
    const { createAccordNode } = await import('../../node/index.ts')
    await expect(createAccordNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], api: null, bootstrap: [addressOf(founder)] }, { logger: silentLogger }))
      .to.eventually.be.rejectedWith(UserError, /needs a join token: run "accord token create" on a member/)
  })

  it('a removed member is revoked: its connections close, it is refused, and it cannot join again', async () => {
    const nodes = await formRaftGroup(cluster, 3)
    const leader = leaderOf(nodes)
    const removed = nodes.find(n => n !== leader)!
    await leader.raft!.changeMembership({ changes: [{ type: 'remove', node: idOf(removed) }] })
    const survivors = nodes.filter(n => n !== removed)
    await waitFor(() => survivors.every(n => n.raft!.isRevoked(idOf(removed)) && !n.raft!.summary().voters.includes(idOf(removed))), 'the removal to apply everywhere')
    await waitFor(() => survivors.every(n => n.libp2p.getConnections(removed.libp2p.peerId).length === 0), 'the removed member to be disconnected')
    for (const node of survivors) { expect(node.admission.isAdmitted(idOf(removed))).to.equal(false) }

    // it redials (it still holds its certificate) and is refused again
    await removed.libp2p.dial(peerIdFromString(idOf(leader))).catch(() => {})
    await waitFor(async () => await refusalCount(leader, '/accord/admission/1.0.0', 'revoked') >= 1, 'the revoked certificate to be refused')
    expect(leader.admission.isAdmitted(idOf(removed))).to.equal(false)
    expect(leader.raft!.summary().voters).to.not.include(idOf(removed))

    // no API client can lift the revocation (or forge one): those keys are accord's own
    const revokedKey = encodeURIComponent(`\u0000accord/revoked/${idOf(removed)}`)
    expect((await fetch(`${leader.apiUrl}/v1/kv/${revokedKey}`, { method: 'DELETE' })).status).to.equal(403)
    expect((await fetch(`${leader.apiUrl}/v1/kv/${revokedKey}`, { method: 'PUT', body: 'x' })).status).to.equal(403)
    expect(leader.raft!.isRevoked(idOf(removed))).to.equal(true)

    // a fresh token does not bring the same identity back (the join is
    // refused as revoked, or its connection is closed for presenting a
    // revoked certificate first)
    const { token } = await leader.admission.createJoinToken()
    await expect(joinCluster(removed.libp2p, 'accord', async () => [addressOf(leader)], token, 1000))
      .to.eventually.be.rejectedWith(UserError, /revoked|could not join/)
    expect(leader.admission.isAdmitted(idOf(removed))).to.equal(false)
  })

  it('a follower that missed a membership change catches up from a leader it has never heard of', async () => {
    const nodes = await formRaftGroup(cluster, 3)
    const leader = leaderOf(nodes)
    const lagging = nodes.find(n => n !== leader)!
    const laggingDir = lagging.config.dataDir
    await lagging.stop()

    // a fourth node joins and is promoted while the follower is down; then it leads
    const newcomer = await cluster.add({ api: '127.0.0.1:0', raftTickMs: 50, bootstrap: [addressOf(leader)] })
    await waitFor(() => leader.raft!.summary().voters.includes(idOf(newcomer)), 'the newcomer to become a voter')
    // a transfer is refused or times out while the newcomer catches up: ask until it leads
    const running = [...nodes.filter(n => n !== lagging), newcomer]
    await waitFor(async () => {
      if (newcomer.raft!.summary().role === 'leader') { return true }
      const current = running.find(n => n.raft!.summary().role === 'leader')
      await current?.raft!.transferLeadership(idOf(newcomer)).catch(() => {})
      await new Promise(resolve => setTimeout(resolve, 500))
      return newcomer.raft!.summary().role === 'leader'
    }, 'the newcomer to lead')
    await newcomer.raft!.writeWithPooledSession(session => ({ type: 'put', session, key: 'after', value: new TextEncoder().encode('the change') }))

    const back = await cluster.restart(lagging, { dataDir: laggingDir })
    await waitFor(() => back.raft!.summary().voters.includes(idOf(newcomer)), 'the follower to learn of the newcomer')
    await waitFor(async () => { const r = await back.raft!.read('after', 'stale'); return r.value != null }, 'the follower to apply the newcomer\'s write')
  })
})
