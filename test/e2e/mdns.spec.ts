import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { expect } from 'aegir/chai'
import { NetnsLab } from '../lib/netns.ts'
import { waitFor } from '../lib/nodes.ts'
import { DaemonProcess, joinTokenFrom, runCli } from '../lib/processes.ts'
import type { NodeStatus } from '../../node/index.ts'

const exec = promisify(execFile)

/**
 * A network namespace of the test's own whose loopback carries multicast
 * (a loopback interface has no MULTICAST flag and no multicast route by
 * default). mDNS then works between processes on 127.0.0.1 inside it, and
 * its packets never reach a real network.
 */
class MulticastLoopbackNamespace {
  readonly name = `accmd${(process.pid % 10000).toString(36)}`
  readonly wrap = ['ip', 'netns', 'exec', this.name]

  async create (): Promise<void> {
    await NetnsLab.check()
    await this.destroy()
    await exec('ip', ['netns', 'add', this.name])
    await exec('ip', ['-n', this.name, 'link', 'set', 'lo', 'up', 'multicast', 'on'])
    await exec('ip', ['-n', this.name, 'route', 'add', '224.0.0.0/4', 'dev', 'lo'])
  }

  async destroy (): Promise<void> {
    await exec('ip', ['netns', 'del', this.name]).catch(() => {})
  }
}

describe('--mdns (separate processes in a network namespace with multicast on loopback)', function () {
  this.timeout(60_000)
  const namespace = new MulticastLoopbackNamespace()
  const daemons: DaemonProcess[] = []
  let root: string

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-mdns-'))
    await namespace.create()
  })

  after(async () => {
    await Promise.all(daemons.map(async d => { await d.stop('SIGKILL') }))
    await namespace.destroy()
    await rm(root, { recursive: true, force: true })
  })

  const start = (name: string, cluster: string, extra: string[] = []): DaemonProcess => {
    const daemon = new DaemonProcess(join(root, name), [
      '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--raft', 'off', '--mdns', '--cluster', cluster, ...extra
    ], { wrap: namespace.wrap })
    daemons.push(daemon)
    return daemon
  }

  // the APIs listen on the namespace's loopback: ask from inside it
  const statusOf = async (daemon: DaemonProcess): Promise<NodeStatus> => {
    const result = await runCli(['status', '--data-dir', daemon.dataDir, '--json'], { wrap: namespace.wrap })
    expect(result.code, result.stderr).to.equal(0)
    return JSON.parse(result.stdout) as NodeStatus
  }
  const connectedMemberIds = (status: NodeStatus): string[] => status.members.filter(m => m.connected).map(m => m.peerId).sort()

  it('a node with --mdns, a join token and no bootstrap peer finds a member, joins, and both see each other; a node of another cluster does not', async () => {
    // one after the other: b's first query, sent as it starts, is then
    // answered (started together, both may ask before either listens, and
    // they find each other only at the next query, 10 s later)
    const a = start('a', 'lan')
    const infoA = await a.ready()
    const token = await joinTokenFrom(a.dataDir, { wrap: namespace.wrap })
    const b = start('b', 'lan', ['--join-token', token])
    const infoB = await b.ready()
    await waitFor(async () => {
      const [statusA, statusB] = await Promise.all([statusOf(a), statusOf(b)])
      return connectedMemberIds(statusA).join() === infoB.peerId && connectedMemberIds(statusB).join() === infoA.peerId
    }, 'the two nodes to find each other by mDNS', 30_000)

    // mDNS of another cluster asks for another service name; that node
    // founds its own cluster, whose certificates ours do not accept
    const other = start('other', 'other-lan')
    await other.ready()

    const [statusA, statusB, statusOther] = await Promise.all([a, b, other].map(statusOf))
    expect(statusA.members.map(m => m.peerId)).to.deep.equal([infoB.peerId])
    expect(statusB.members.map(m => m.peerId)).to.deep.equal([infoA.peerId])
    expect(statusOther.members).to.deep.equal([])
    for (const status of [statusA, statusB]) {
      for (const peer of status.peers) {
        for (const addr of peer.addresses) { expect(addr).to.match(/^\/ip4\/127\.0\.0\.1\/tcp\//) }
      }
    }

    for (const daemon of daemons) {
      const result = await daemon.stop('SIGTERM')
      expect(result.code, result.stderr).to.equal(0)
    }
  })
})
