import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { isAlive } from '../../node/cli/demo.ts'
import { waitFor } from '../lib/nodes.ts'
import { testPortBase } from '../lib/ports.ts'
import { collect, DaemonProcess, spawnCli } from '../lib/processes.ts'

interface ClusterFile {
  nodes: Array<{ index: number, peerId: string | null, multiaddrs: string[], api: string, dataDir: string, pid: number | null, state: string }>
}

describe('accord demo', function () {
  this.timeout(180_000)
  let root: string

  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'accord-demo-')) })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })

  it('runs a cluster whose CRDTs converge, shows a dead node as down, notices it come back, and stops everything on Ctrl-C', async () => {
    const base = testPortBase()
    const demo = spawnCli(['demo', '--nodes', '3', '--data-dir', root, '--api-port-base', String(base), '--p2p-port-base', String(base + 100)])
    const done = collect(demo)
    let output = ''
    demo.stdout?.on('data', (d: Buffer) => { output += d.toString() })
    const readCluster = async (): Promise<ClusterFile> => JSON.parse(await readFile(join(root, 'cluster.json'), 'utf8'))

    await waitFor(() => output.includes('all 3 nodes discovered each other'), 'the demo cluster to form', 90_000)
    const cluster = await readCluster()
    expect(cluster.nodes).to.have.length(3)
    for (const node of cluster.nodes) {
      expect(node.state).to.equal('up')
      expect(node.peerId).to.match(/^12D3KooW/)
      expect(node.api).to.equal(`http://127.0.0.1:${base + node.index}`)
      expect(node.dataDir).to.equal(join(root, `node-${node.index}`))
      expect(node.multiaddrs[0]).to.equal(`/ip4/127.0.0.1/tcp/${base + 100 + node.index}/p2p/${node.peerId}`)
    }

    // the demo's CRDTs: every node added itself to the set, and every node's copy holds all three
    await waitFor(() => output.includes('node 0 created demo-counter'), 'the demo to create its CRDTs', 30_000)
    const names = ['node-0', 'node-1', 'node-2']
    for (const node of cluster.nodes) {
      await waitFor(async () => {
        const response = await fetch(`${node.api}/v1/crdt/demo-set`).catch(() => null)
        const value: unknown = response?.ok === true ? (await response.json()).value : null
        return Array.isArray(value) && names.every(name => value.includes(name))
      }, `node ${node.index}'s demo-set to hold every node`, 60_000)
    }

    const victim = cluster.nodes[1]
    process.kill(victim.pid ?? 0, 'SIGKILL')
    await waitFor(() => output.includes('node 1 is down (killed by SIGKILL)'), 'the demo to show node 1 down')
    await waitFor(async () => (await readCluster()).nodes[1].state === 'down', 'cluster.json to show node 1 down')
    expect((await readCluster()).nodes.filter(n => n.state === 'up')).to.have.length(2)
    expect(isAlive(cluster.nodes[0].pid ?? 0) && isAlive(cluster.nodes[2].pid ?? 0)).to.equal(true)

    // brought back by hand, from its data dir alone
    const revived = new DaemonProcess(victim.dataDir, [])
    const info = await revived.ready()
    expect(info.peerId).to.equal(victim.peerId)
    await waitFor(async () => (await readCluster()).nodes[1].state === 'up', 'the demo to show node 1 up again')
    expect((await readCluster()).nodes[1].pid).to.equal(revived.child.pid)

    demo.kill('SIGINT')
    const result = await done
    expect(result.code, result.stderr).to.equal(0)
    expect(output).to.include('all nodes stopped')
    expect((await revived.done).code).to.equal(0)
    for (const node of cluster.nodes) { if (node.pid != null) { expect(isAlive(node.pid)).to.equal(false) } }
  })
})
