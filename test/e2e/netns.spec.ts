import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { NetnsLab } from '../lib/netns.ts'
import { waitFor } from '../lib/nodes.ts'
import { DaemonProcess, joinTokenFrom, runCli } from '../lib/processes.ts'

describe('3 nodes in 3 network namespaces (stand-ins for separate machines)', function () {
  this.timeout(180_000)
  const lab = new NetnsLab(3)
  const daemons: DaemonProcess[] = []
  let root: string

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-netns-'))
    await lab.create()
  })

  after(async () => {
    await Promise.all(daemons.map(async d => { await d.stop('SIGKILL') }))
    await lab.destroy()
    await rm(root, { recursive: true, force: true })
  })

  it('discover each other over their own IP addresses and stop cleanly', async () => {
    const start = (i: number, extra: string[]): DaemonProcess => {
      const host = lab.hosts[i]
      const daemon = new DaemonProcess(join(root, `node-${i}`), [
        '--listen', `/ip4/${host.address}/tcp/4001`, '--api', '127.0.0.1:7070', ...extra
      ], { wrap: host.wrap })
      daemons.push(daemon)
      return daemon
    }
    const first = start(0, [])
    const info0 = await first.ready()
    expect(info0.multiaddrs[0]).to.equal(`/ip4/${lab.hosts[0].address}/tcp/4001/p2p/${info0.peerId}`)
    const token = await joinTokenFrom(daemons[0].dataDir, { wrap: lab.hosts[0].wrap })
    start(1, ['--bootstrap', info0.multiaddrs[0], '--join-token', token])
    start(2, ['--bootstrap', info0.multiaddrs[0], '--join-token', token])
    const infos = await Promise.all(daemons.map(async d => d.ready()))

    // each API listens on its own namespace's loopback: ask from inside
    const statusOf = async (i: number): Promise<any> => {
      const result = await runCli(['status', '--data-dir', daemons[i].dataDir, '--json'], { wrap: lab.hosts[i].wrap })
      expect(result.code, result.stderr).to.equal(0)
      return JSON.parse(result.stdout)
    }
    await waitFor(async () => {
      const all = await Promise.all([0, 1, 2].map(statusOf))
      return all.every(s => s.members.filter((m: { connected: boolean }) => m.connected).length === 2)
    }, 'the three hosts to see each other', 90_000)

    for (let i = 0; i < 3; i++) {
      const status = await statusOf(i)
      for (const peer of status.peers) {
        expect(peer.encryption).to.deep.equal(['/noise'])
        // connections run over the namespaces' own addresses, not loopback
        for (const addr of peer.addresses) { expect(addr).to.match(/^\/ip4\/10\.213\.7\.\d\/tcp\//) }
      }
      expect(status.members.map((m: { peerId: string }) => m.peerId).sort())
        .to.deep.equal(infos.filter((_, j) => j !== i).map(x => x.peerId).sort())
    }

    for (const daemon of daemons) {
      const result = await daemon.stop('SIGTERM')
      expect(result.code, result.stderr).to.equal(0)
    }
  })
})
