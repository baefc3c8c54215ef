/**
 * Forming a Raft group with a static initial cluster (`accord start
 * --initial-cluster 3`), end to end with real `accord start` processes:
 * no write is acknowledged until the group has its three voters, so the
 * first acknowledged write survives a kill -9 of the leader, and a node
 * started alone never acknowledges one.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { expect } from 'aegir/chai'
import { waitFor } from '../lib/nodes.ts'
import { testPortBase } from '../lib/ports.ts'
import { collect, DaemonProcess, joinTokenFrom, spawnCli } from '../lib/processes.ts'

interface Node { dataDir: string, apiUrl: string, listen: string, daemon: DaemonProcess | null }

async function request (apiUrl: string, method: string, path: string, body?: string): Promise<{ status: number, json: any }> {
  // longer than the node's own request timeout (10 s), which answers first
  const response = await fetch(`${apiUrl}${path}`, { method, body, signal: AbortSignal.timeout(15_000) })
  return { status: response.status, json: await response.json().catch(() => ({})) }
}

async function raftOf (node: Node): Promise<any> {
  const { status, json } = await request(node.apiUrl, 'GET', '/v1/status').catch(() => ({ status: 0, json: null }))
  return status === 200 ? json.raft : null
}

describe('raft formation with --initial-cluster (OS processes)', function () {
  this.timeout(180_000)
  let root: string
  let nodes: Node[]

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-formation-'))
    const base = testPortBase()
    nodes = [0, 1, 2].map(i => ({ dataDir: join(root, `node-${i}`), apiUrl: `http://127.0.0.1:${base + i}`, listen: `/ip4/127.0.0.1/tcp/${base + 100 + i}`, daemon: null }))
  })

  afterEach(async () => {
    await Promise.all(nodes.map(async node => { await node.daemon?.stop('SIGKILL') }))
    await rm(root, { recursive: true, force: true })
  })

  function start (node: Node, extra: string[] = []): DaemonProcess {
    node.daemon = new DaemonProcess(node.dataDir, ['--listen', node.listen, '--api', new URL(node.apiUrl).host, '--initial-cluster', '3', ...extra])
    return node.daemon
  }

  /** Node 0 founds the cluster (no --bootstrap); the others join it with a token, as the README says. */
  async function startOthers (): Promise<void> {
    const info = await nodes[0].daemon!.ready()
    const token = await joinTokenFrom(nodes[0].dataDir)
    for (const node of nodes.slice(1)) { start(node, ['--bootstrap', info.multiaddrs[0], '--join-token', token]) }
    await Promise.all(nodes.slice(1).map(async node => node.daemon!.ready()))
  }

  it('a node started alone with --initial-cluster 3 never acknowledges a write', async () => {
    await start(nodes[0]).ready()
    const first = await request(nodes[0].apiUrl, 'PUT', '/v1/kv/k', 'v')
    expect(first.status).to.equal(503)
    expect(first.json.error).to.equal('raft group not formed: 1 of 3 members connected')
    // several election timeouts later, still nothing: it never founds alone
    await sleep(4000)
    expect((await request(nodes[0].apiUrl, 'PUT', '/v1/kv/k', 'v')).status).to.equal(503)
    expect((await request(nodes[0].apiUrl, 'GET', '/v1/kv/k')).status).to.equal(503)
    const raft = await raftOf(nodes[0])
    expect(raft).to.include({ formed: false, formedAt: null, formation: 'raft group not formed: 1 of 3 members connected', leader: null })
    expect(raft.voters).to.deep.equal([])
  })

  it('three nodes form one group of three voters; the first acknowledged write survives kill -9 of the leader', async () => {
    await start(nodes[0]).ready()
    expect((await request(nodes[0].apiUrl, 'PUT', '/v1/kv/early', 'no')).status).to.equal(503)
    await startOthers()

    // write as soon as any write is acknowledged
    let acknowledged: { status: number, json: any } = { status: 0, json: null }
    await waitFor(async () => {
      acknowledged = await request(nodes[0].apiUrl, 'PUT', '/v1/kv/first', 'one').catch(() => ({ status: 0, json: null }))
      return acknowledged.status === 200
    }, 'a write to be acknowledged', 90_000, 200)
    // when it was, the group had its three voters
    const raft = await raftOf(nodes[0])
    expect(raft.voters).to.have.length(3)
    expect(raft.formed).to.equal(true)
    expect(raft.formedAt).to.be.a('string')

    let leader = -1
    await waitFor(async () => {
      for (const [i, node] of nodes.entries()) { if ((await raftOf(node))?.role === 'leader') { leader = i } }
      return leader >= 0
    }, 'a leader', 30_000)
    nodes[leader].daemon!.child.kill('SIGKILL')
    await nodes[leader].daemon!.done
    nodes[leader].daemon = null

    const survivor = nodes.find(node => node.daemon != null)!
    let after: { status: number, json: any } = { status: 0, json: null }
    await waitFor(async () => {
      after = await request(survivor.apiUrl, 'PUT', '/v1/kv/second', 'two').catch(() => ({ status: 0, json: null }))
      return after.status === 200
    }, 'the two survivors to acknowledge a write', 60_000, 200)
    const read = await request(survivor.apiUrl, 'GET', '/v1/kv/first')
    expect(read.status).to.equal(200)
    expect(read.json.value).to.equal('one')
  })

  it('the demo forms its group with every node a voter, prints when, and cluster.json says so', async () => {
    const base = testPortBase()
    const demo = spawnCli(['demo', '--nodes', '3', '--data-dir', root, '--api-port-base', String(base), '--p2p-port-base', String(base + 100)])
    const done = collect(demo)
    let output = ''
    demo.stdout?.on('data', (d: Buffer) => { output += d.toString() })
    try {
      await waitFor(() => /raft group formed with 3 voters at \d\d:\d\d:\d\d\.\d{3}, [\d.]+ s after the demo started/.test(output), 'the demo to print when the group formed', 90_000)
      await waitFor(async () => JSON.parse(await readFile(join(root, 'cluster.json'), 'utf8')).raft.formed === true, 'cluster.json to say the group formed')
      const { raft } = JSON.parse(await readFile(join(root, 'cluster.json'), 'utf8'))
      expect(raft.voters).to.equal(3)
      expect(output).to.include(`raft group formed with 3 voters at ${String(raft.formedAt).slice(11, 23)}`)
    } finally {
      demo.kill('SIGINT')
      expect((await done).code).to.equal(0)
    }
  })
})
