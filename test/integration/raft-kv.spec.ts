import { lpStream } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { decode, encode } from 'cborg'
import { RAFT_CLIENT_PROTOCOL } from '../../node/raft/client-protocol.ts'
import { scrapeMetrics } from '../lib/metrics.ts'
import { formRaftGroup, leaderOf, TestCluster, waitFor } from '../lib/nodes.ts'
import type { AccordNode } from '../../node/index.ts'

const put = async (node: AccordNode, key: string, value: string, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(`${node.apiUrl}/v1/kv/${key}`, { method: 'PUT', body: value, headers })

describe('raft KV over libp2p (one process)', function () {
  this.timeout(120_000)
  let cluster: TestCluster

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => { await cluster.stop() })

  it('forms a group, forwards writes from followers to the leader and serves linearizable reads anywhere', async () => {
    const nodes = await formRaftGroup(cluster)
    const leader = leaderOf(nodes)
    const followers = nodes.filter(n => n !== leader)

    const written = await put(followers[0], 'greeting', 'hello')
    expect(written.status).to.equal(200)
    const { index } = await written.json()
    expect(index).to.be.a('number')

    const read = await fetch(`${followers[1].apiUrl}/v1/kv/greeting?consistency=linearizable`)
    expect(read.status).to.equal(200)
    expect(await read.json()).to.deep.include({ value: 'hello', encoding: 'utf8' })

    const missing = await fetch(`${followers[1].apiUrl}/v1/kv/nothing`)
    expect(missing.status).to.equal(404)

    const status = await (await fetch(`${followers[1].apiUrl}/v1/status`)).json()
    expect(status.raft.leader).to.equal(leader.libp2p.peerId.toString())
    expect(status.raft.voters).to.have.length(3)
    expect(status.raft.commit).to.be.at.least(index)
  })

  it('exposes the group\'s state as Prometheus gauges on /metrics', async () => {
    const nodes = await formRaftGroup(cluster)
    const leader = leaderOf(nodes)
    expect((await put(leader, 'metered', 'yes')).status).to.equal(200)
    const gauges = async (node: AccordNode): Promise<Map<string, number>> => scrapeMetrics(node.apiUrl)
    for (const node of nodes) {
      const g = await gauges(node)
      const { term, commit } = node.raft!.summary()
      expect(g.get('accord_raft_is_leader')).to.equal(node === leader ? 1 : 0)
      expect(g.get('accord_raft_voters')).to.equal(3)
      expect(g.get('accord_raft_term')).to.equal(term)
      // a follower learns the leader's commit index with its next message
      expect(g.get('accord_raft_commit_index')).to.be.within(1, commit)
      expect(g.get('accord_raft_apply_lag_entries')).to.be.at.least(0)
      expect(g.get('accord_raft_local_health')).to.equal(node.raft!.summary().localHealth)
    }
    const onLeader = await gauges(leader)
    expect(onLeader.get('accord_raft_commit_index')).to.equal(leader.raft!.summary().commit)
    // the write was answered once applied, and nothing was written since
    expect(onLeader.get('accord_raft_apply_lag_entries')).to.equal(0)
    expect(onLeader.get('accord_raft_transport_messages_sent')).to.be.above(0)
    // the KV store, as the members API reports it
    const { kv } = leader.raft!.summary()
    expect(kv.keys).to.equal(1)
    expect(onLeader.get('accord_kv_keys')).to.equal(kv.keys)
    expect(onLeader.get('accord_kv_data_bytes')).to.equal('metered'.length + 'yes'.length)
    expect(onLeader.get('accord_kv_sessions')).to.equal(kv.sessions)
    expect(onLeader.get('accord_raft_snapshot_index')).to.equal(0)
    expect(onLeader.get('accord_raft_transport_snapshots_sent')).to.equal(0)
  })

  it('compare-and-swap succeeds once, then reports the current value with 409', async () => {
    const nodes = await formRaftGroup(cluster)
    expect((await put(nodes[1], 'k', 'v1')).status).to.equal(200)
    const cas = async (expected: string | null, value: string): Promise<Response> =>
      fetch(`${nodes[2].apiUrl}/v1/kv/k/cas`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ expected, value }) })
    expect((await cas('v1', 'v2')).status).to.equal(200)
    const conflict = await cas('v1', 'v3')
    expect(conflict.status).to.equal(409)
    expect(await conflict.json()).to.deep.include({ error: 'cas-mismatch', current: 'v2' })
    expect((await cas(null, 'v4')).status).to.equal(409)

    const deleted = await fetch(`${nodes[0].apiUrl}/v1/kv/k`, { method: 'DELETE' })
    expect(await deleted.json()).to.deep.include({ deleted: true })
    expect((await cas(null, 'v5')).status).to.equal(200)
  })

  it('applies a retried write with the same client session exactly once', async () => {
    const nodes = await formRaftGroup(cluster)
    const session = { 'x-accord-client-id': 'client-a', 'x-accord-sequence': '1' }
    const first = await (await put(nodes[1], 'counter', 'one', session)).json()
    const retry = await (await put(nodes[2], 'counter', 'one', session)).json()
    expect(retry.index).to.equal(first.index)
    // a newer sequence applies; an older one is refused
    expect((await put(nodes[1], 'counter', 'two', { ...session, 'x-accord-sequence': '2' })).status).to.equal(200)
    const stale = await put(nodes[1], 'counter', 'zero', { ...session, 'x-accord-sequence': '1' })
    expect(stale.status).to.equal(409)
    expect((await stale.json()).error).to.match(/^stale-sequence/)
    const value = await (await fetch(`${nodes[0].apiUrl}/v1/kv/counter`)).json()
    expect(value.value).to.equal('two')
  })

  it('writes without a session reuse pooled ones, so they do not fill the session table', async () => {
    const nodes = await formRaftGroup(cluster)
    const leader = leaderOf(nodes)
    const sessions = (): number => leader.raft?.summary().kv.sessions ?? -1
    const before = sessions()
    // one at a time through each node: each node lends the same session again and again
    for (let i = 0; i < 60; i++) { expect((await put(nodes[i % 3], `anon-${i}`, 'v')).status).to.equal(200) }
    expect(sessions() - before).to.be.at.most(3)
    // 32 at once through one node: at most 32 more
    const concurrent = await Promise.all(Array.from({ length: 32 }, async (_, i) => put(nodes[1], `burst-${i}`, 'v')))
    expect(concurrent.every(r => r.status === 200)).to.equal(true)
    expect(sessions() - before).to.be.at.most(3 + 32)
    expect(leader.raft?.summary().kv.keys).to.be.at.least(92)
  })

  it('rejects bad input with 4xx and changes nothing', async () => {
    const nodes = await formRaftGroup(cluster)
    const api = nodes[0].apiUrl ?? ''
    const oversize = await fetch(`${api}/v1/kv/big`, { method: 'PUT', body: new Uint8Array(1024 * 1024 + 1) })
    expect(oversize.status).to.equal(413)
    expect((await fetch(`${api}/v1/kv/${'k'.repeat(1025)}`, { method: 'PUT', body: 'x' })).status).to.equal(400)
    expect((await fetch(`${api}/v1/kv/k?consistency=eventual`)).status).to.equal(400)
    expect((await fetch(`${api}/v1/kv/k?consistency=lease`)).status).to.equal(400)
    const unknownField = await fetch(`${api}/v1/kv/k/cas`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ expected: null, value: 'v', extra: 1 }) })
    expect(unknownField.status).to.equal(400)
    expect((await unknownField.json()).error).to.match(/unknown field "extra"/)
    expect((await fetch(`${api}/v1/kv/k/cas`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' })).status).to.equal(400)
    expect((await fetch(`${api}/v1/kv/k/cas`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ expected: 5, value: 'v' }) })).status).to.equal(400)
    expect((await put(nodes[0], 'k', 'v', { 'x-accord-client-id': 'c', 'x-accord-sequence': '-1' })).status).to.equal(400)
    expect((await fetch(`${api}/v1/raft/members`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action: 'add-learner', node: 'not-a-peer' }) })).status).to.equal(400)
    expect((await fetch(`${api}/v1/kv/k`)).status).to.equal(404)
    expect(nodes[0].raft?.summary().voters).to.have.length(3)
  })

  it('transfers leadership on request, and answers 503 naming no leader once a quorum is gone', async () => {
    const nodes = await formRaftGroup(cluster)
    const leader = leaderOf(nodes)
    const target = nodes.find(n => n !== leader) as AccordNode
    // a node with a committed conf change it has not applied yet ignores the leader's timeout-now (as etcd's does), and the
    // group has only just formed: the transfer waits until every node applied the formation
    const formed = leader.raft?.summary().commit ?? 0
    await waitFor(() => nodes.every(n => n.raft != null && !n.raft.summary().joint && n.raft.summary().applied >= formed), 'every node to apply the formation')
    const transfer = await fetch(`${leader.apiUrl}/v1/raft/transfer-leader`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to: target.libp2p.peerId.toString() }) })
    expect(transfer.status).to.equal(202)
    await waitFor(() => target.raft?.summary().role === 'leader', 'the target to lead')
    expect((await put(leader, 'after-transfer', 'ok')).status).to.equal(200)

    // stop two of three: the survivor cannot commit or confirm reads
    const survivor = nodes.find(n => n !== target) as AccordNode
    // (a follower learns a commit from the leader's next message, a heartbeat at the latest)
    const staleRead = async (): Promise<number> => (await fetch(`${survivor.apiUrl}/v1/kv/after-transfer?consistency=stale`)).status
    await waitFor(async () => await staleRead() === 200, 'the survivor to apply the write')
    for (const node of nodes.filter(n => n !== survivor)) { await node.stop() }
    const read = await fetch(`${survivor.apiUrl}/v1/kv/after-transfer`)
    expect([503, 504]).to.include(read.status)
    const body = await read.json()
    expect(body).to.have.property('leader')
    expect(await staleRead()).to.equal(200)
  })

  it('answers malformed client-protocol requests with an error and keeps serving', async () => {
    const nodes = await formRaftGroup(cluster)
    const leader = leaderOf(nodes)
    const sender = nodes.find(n => n !== leader) as AccordNode
    const ask = async (bytes: Uint8Array): Promise<unknown> => {
      const stream = await sender.libp2p.dialProtocol(leader.libp2p.peerId, RAFT_CLIENT_PROTOCOL)
      const lp = lpStream(stream)
      await lp.write(bytes)
      try {
        return decode((await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray())
      } catch (err) {
        return (err as Error).name
      } finally {
        stream.abort(new Error('done'))
      }
    }
    expect(await ask(new Uint8Array([0xff, 0x00, 0x13]))).to.deep.include({ ok: false, code: 'invalid' })
    expect(await ask(encode({ v: 1, op: 'propose', command: new Uint8Array([1, 2, 3]) }))).to.deep.include({ ok: false, code: 'invalid' })
    expect(await ask(encode({ v: 1, op: 'frobnicate' }))).to.deep.include({ ok: false, code: 'invalid' })
    expect(await ask(encode({ v: 2, op: 'propose' }))).to.deep.include({ ok: false, code: 'invalid' })
    expect(await ask(encode({ v: 1, op: 'conf-change', change: { changes: 'all' } }))).to.deep.include({ ok: false, code: 'invalid' })
    // member ids must be peer ids: every node dials the members it is told of
    expect(await ask(encode({ v: 1, op: 'conf-change', change: { changes: [{ type: 'add-learner', node: 'not-a-peer' }] } })))
      .to.deep.include({ ok: false, code: 'invalid', message: 'conf-change: every node must be a peer id' })
    expect(await ask(encode({ v: 1, op: 'transfer-leader', to: 'not-a-peer' }))).to.deep.include({ ok: false, code: 'invalid' })
    // CBOR is decoded within item and depth bounds (a small body must not build millions of objects)
    const manyItems = new Uint8Array(5 + 1_100_000)
    manyItems.set([0x9a, 0x00, 0x10, 0xc8, 0xe0]) // an array of 1,100,000 zeros
    expect(await ask(manyItems)).to.have.property('message').that.matches(/more than \d+ CBOR items/)
    expect(await ask(new Uint8Array([...new Array(20).fill(0x81), 0x00]))).to.have.property('message').that.matches(/nested deeper/)
    expect(leader.raft?.summary().learners).to.deep.equal([])

    // a length prefix far beyond the limit: the stream is refused, not buffered
    const stream = await sender.libp2p.dialProtocol(leader.libp2p.peerId, RAFT_CLIENT_PROTOCOL)
    stream.send(new Uint8Array(64).fill(0xff))
    await stream.close().catch(() => {})

    expect((await put(sender, 'still', 'serving')).status).to.equal(200)
  })

  it('removes a node that is down, and the rest keep committing', async () => {
    const nodes = await formRaftGroup(cluster)
    const leader = leaderOf(nodes)
    const victim = nodes.find(n => n !== leader) as AccordNode
    const victimId = victim.libp2p.peerId.toString()
    await victim.stop()
    const removed = await fetch(`${leader.apiUrl}/v1/raft/members`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action: 'remove', node: victimId }) })
    expect(removed.status).to.equal(200)
    await waitFor(() => !(leader.raft?.summary().voters.includes(victimId) ?? true), 'the removal to apply')
    expect((await put(leader, 'two-left', 'fine')).status).to.equal(200)
  })
})
