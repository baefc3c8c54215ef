/**
 * The attacks of issue 10, end to end: three `accord start` processes form
 * a group; an outsider (an ordinary js-libp2p node that knows only the
 * addresses /v1/status prints), a stranger daemon and a web page then try
 * what once worked against them. None of it may change the group's term,
 * store or members, or stop a node.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { createJoinToken } from '../../identity/cluster-credentials.ts'
import { encodeFrame, snapshotFrames } from '../../node/raft/codec.ts'
import { RAFT_PROTOCOL } from '../../node/raft/transport-constants.ts'
import { encodeCommand } from '../../protocols/kv/index.ts'
import { waitFor } from '../lib/nodes.ts'
import { plainPeer } from '../lib/peers.ts'
import { testPortBase } from '../lib/ports.ts'
import { runCli } from '../lib/processes.ts'
import { RaftScenario } from '../lib/scenario.ts'
import type { Message } from '../../protocols/raft/index.ts'
import type { Libp2p } from '@libp2p/interface'

/** A raw HTTP request, with the Host and Origin headers a browser would send (fetch() may not set them). */
async function rawRequest (url: string, method: string, path: string, headers: Record<string, string>, body = ''): Promise<{ status: number, text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { text += d })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, text }) })
    })
    req.on('error', reject)
    req.end(body)
  })
}

describe('attacks on a formed group (3 OS processes)', function () {
  this.timeout(180_000)
  let root: string
  let scenario: RaftScenario
  let outsider: Libp2p

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-attacks-'))
    scenario = new RaftScenario()
    const base = testPortBase()
    await scenario.startCluster([0, 1, 2].map(i => ({
      dataDir: join(root, `node-${i}`),
      apiUrl: `http://127.0.0.1:${base + i}`,
      args: ['--listen', `/ip4/127.0.0.1/tcp/${base + 100 + i}`, '--api', `127.0.0.1:${base + i}`, '--cluster', 'demo']
    })))
    // every node has applied the promotions, so what each reports is final
    await waitFor(async () => {
      const all = await Promise.all(scenario.nodes.map(async node => scenario.raftStatus(node)))
      return all.every(s => s?.voters.length === 3)
    }, 'every node to see three voters')
    await scenario.waitForAllCaughtUp()
    outsider = await plainPeer()
  })

  after(async () => {
    await outsider?.stop()
    await scenario.stopAll()
    await rm(root, { recursive: true, force: true })
  })

  const statusOf = async (i: number): Promise<any> => (await scenario.request(scenario.nodes[i], 'GET', '/v1/status')).json
  const follower = async (): Promise<number> => {
    const leader = await scenario.leaderIndex()
    return leader === 0 ? 1 : 0
  }

  /** Send Raft frames to node `i` as the outsider; whatever the node does with the stream is fine. */
  async function sendRaftFrames (i: number, frames: Uint8Array[]): Promise<void> {
    const status = await statusOf(i)
    const stream = await outsider.dialProtocol(multiaddr(status.addresses[0]), RAFT_PROTOCOL).catch(() => null)
    if (stream == null) { return }
    const lp = lpStream(stream)
    for (const frame of frames) { await lp.write(frame).catch(() => {}) }
    await new Promise(resolve => setTimeout(resolve, 6000)) // the admission wait, and then some
  }

  it('an outsider\'s heartbeat 100 terms ahead leaves the term alone', async () => {
    const target = await follower()
    const before = await scenario.raftStatus(scenario.nodes[target])
    const to = scenario.nodes[target].peerId
    const heartbeat: Message = { type: 'heartbeat', from: outsider.peerId.toString(), to, term: before!.term + 100, commit: 0, readRound: 0 }
    await sendRaftFrames(target, [encodeFrame({ kind: 'message', message: heartbeat })])
    const after = await scenario.raftStatus(scenario.nodes[target])
    // not equal to before: on a loaded machine the group may hold a real
    // election in the 6 s the test waits (one term up), but never 100 terms
    expect(after!.term).to.be.below(before!.term + 100)
    expect(after?.voters).to.deep.equal(before?.voters)
  })

  it('an outsider\'s append with a KV put writes nothing', async () => {
    const target = await follower()
    const before = await scenario.raftStatus(scenario.nodes[target])
    const put = encodeCommand({ type: 'put', session: { clientId: 'outsider', sequence: 1 }, key: 'owned', value: new TextEncoder().encode('by-an-outsider') })
    const append: Message = {
      type: 'append',
      from: outsider.peerId.toString(),
      to: scenario.nodes[target].peerId,
      term: before!.term + 1,
      prevIndex: before!.lastIndex,
      prevTerm: before!.term,
      commit: before!.lastIndex + 1,
      entries: [{ index: before!.lastIndex + 1, term: before!.term + 1, type: 'normal', data: put }]
    }
    await sendRaftFrames(target, [encodeFrame({ kind: 'message', message: append })])
    // the reads tell whether the append was taken; its term (one up) is
    // what a real election on a loaded machine would give the node too
    for (const node of scenario.nodes) {
      const read = await scenario.request(node, 'GET', '/v1/kv/owned?consistency=linearizable')
      expect(read.status).to.equal(404)
    }
  })

  it('an outsider\'s garbage snapshot neither stops the node nor keeps it from restarting', async () => {
    const target = await follower()
    const before = await scenario.raftStatus(scenario.nodes[target])
    const snapshot = {
      type: 'snapshot' as const,
      from: outsider.peerId.toString(),
      to: scenario.nodes[target].peerId,
      term: before!.term + 1,
      snapshot: { meta: { index: before!.lastIndex + 10, term: before!.term + 1, conf: { voters: [outsider.peerId.toString()], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data: new Uint8Array(64).fill(0xab) }
    }
    await sendRaftFrames(target, [...snapshotFrames(snapshot)])
    await scenario.kill(target)
    await scenario.restart(target)
    const after = await scenario.raftStatus(scenario.nodes[target])
    expect(after?.lastSnapshotIndex).to.equal(before?.lastSnapshotIndex)
    expect(after?.voters).to.deep.equal(before?.voters)
    await scenario.waitForAllCaughtUp()
  })

  it('a stranger daemon with the bootstrap address and the cluster name, but no token or a forged one, does not join', async () => {
    const leader = scenario.nodes[await scenario.leaderIndex()]
    const bootstrap = (await statusOf(0)).addresses[0] as string
    const args = ['start', '--data-dir', join(root, 'stranger'), '--cluster', 'demo', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', 'off', '--bootstrap', bootstrap]
    const noToken = await runCli(args, { timeoutMs: 60_000 })
    expect(noToken.code).to.equal(2)
    expect(noToken.stderr).to.match(/needs a join token/)

    const forged = await createJoinToken(await generateKeyPair('Ed25519'), { cluster: 'demo', expiresAtMs: Date.now() + 600_000, nonce: new Uint8Array(16) })
    const forgedRun = await runCli([...args, '--join-token', forged], { timeoutMs: 60_000 })
    expect(forgedRun.code).to.equal(2)
    expect(forgedRun.stderr).to.match(/refused the join token: join token signed by another cluster key/)

    expect((await scenario.raftStatus(leader))?.voters).to.have.length(3)
  })

  it('a web page can neither write through a cross-origin form post nor read through DNS rebinding', async () => {
    const node = scenario.nodes[0]
    const csrf = await rawRequest(node.apiUrl, 'POST', '/v1/kv/csrf/cas', { 'content-type': 'text/plain', origin: 'http://evil.example' }, JSON.stringify({ expected: null, value: 'pwned' }))
    expect(csrf.status).to.equal(403)
    const rebinding = await rawRequest(node.apiUrl, 'GET', '/v1/status', { host: 'rebind.evil.example' })
    expect(rebinding.status).to.be.oneOf([403, 421])
    expect((await scenario.request(node, 'GET', '/v1/kv/csrf?consistency=linearizable')).status).to.equal(404)
  })

  it('afterwards every node answers, agrees on the leader, and applies a write', async () => {
    const leader = await scenario.leaderIndex()
    expect(leader).to.be.at.least(0)
    const put = await scenario.request(scenario.nodes[leader], 'PUT', '/v1/kv/after', 'still-ours')
    expect(put.status).to.equal(200)
    await scenario.waitForAllCaughtUp()
    for (const node of scenario.nodes) {
      const read = await scenario.request(node, 'GET', '/v1/kv/after?consistency=linearizable')
      expect(read.json.value).to.equal('still-ours')
    }
  })
})
