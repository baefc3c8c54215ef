import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { waitFor } from '../lib/nodes.ts'
import { DaemonProcess, joinTokenFrom, runCli } from '../lib/processes.ts'

describe('accord raft force-new-cluster (quorum permanently lost)', function () {
  this.timeout(180_000)
  let root: string
  const daemons: DaemonProcess[] = []

  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'accord-recover-')) })
  afterEach(async () => {
    await Promise.all(daemons.splice(0).map(async d => { await d.stop('SIGKILL') }))
    await rm(root, { recursive: true, force: true })
  })

  it('brings one survivor back as a one-voter group with the committed data, only when told to', async () => {
    const dirs = [0, 1, 2].map(i => join(root, `node-${i}`))
    const start = (i: number, extra: string[]): DaemonProcess => {
      const d = new DaemonProcess(dirs[i], ['--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', ...extra])
      daemons.push(d)
      return d
    }
    const first = start(0, [])
    const info = await first.ready()
    const token = await joinTokenFrom(dirs[0])
    await Promise.all([start(1, ['--bootstrap', info.multiaddrs[0], '--join-token', token]), start(2, ['--bootstrap', info.multiaddrs[0], '--join-token', token])].map(async d => d.ready()))
    const members = async (): Promise<any> => JSON.parse((await runCli(['status', '--data-dir', dirs[0], '--json'])).stdout).raft
    await waitFor(async () => (await members()).voters.length === 3, 'three voters')
    const put = await runCli(['kv', 'put', 'precious', 'data', '--data-dir', dirs[1]])
    expect(put.code, put.stderr).to.equal(0)

    // the whole group dies; only node 0's disk survives
    await Promise.all(daemons.splice(0).map(async d => { await d.stop('SIGKILL') }))

    const dryRun = await runCli(['raft', 'force-new-cluster', '--data-dir', dirs[0]])
    expect(dryRun.code, dryRun.stderr).to.equal(0)
    expect(dryRun.stdout).to.match(/will drop \d+ uncommitted entr/)
    expect(dryRun.stdout).to.include('nothing changed: add --force to do it')

    const forced = await runCli(['raft', 'force-new-cluster', '--data-dir', dirs[0], '--force'])
    expect(forced.code, forced.stderr).to.equal(0)
    expect(forced.stdout).to.include('done')

    const survivor = new DaemonProcess(dirs[0], [])
    daemons.push(survivor)
    await survivor.ready()
    await waitFor(async () => (await members())?.role === 'leader', 'the survivor to lead alone')
    expect((await members()).voters).to.deep.equal([info.peerId])
    const get = await runCli(['kv', 'get', 'precious', '--data-dir', dirs[0]])
    expect(get.stdout).to.equal('data\n')
    const write = await runCli(['kv', 'put', 'after', 'recovery', '--data-dir', dirs[0]])
    expect(write.code, write.stderr).to.equal(0)
  })

  it('refuses a data dir that holds no node, and creates nothing there', async () => {
    const typo = join(root, 'no-such-node')
    const result = await runCli(['raft', 'force-new-cluster', '--data-dir', typo, '--force'])
    expect(result.code).to.equal(2)
    expect(result.stderr).to.match(/^accord: .*holds no accord node/m)
    expect(existsSync(typo)).to.equal(false)
  })

  it('refuses to run while the node is running', async () => {
    const daemon = new DaemonProcess(join(root, 'live'), ['--listen', '/ip4/127.0.0.1/tcp/0', '--api', 'off'])
    daemons.push(daemon)
    await daemon.ready()
    const result = await runCli(['raft', 'force-new-cluster', '--data-dir', join(root, 'live'), '--force'])
    expect(result.code).to.equal(2)
    expect(result.stderr).to.match(/^accord: .*(lock|in use|another)/m)
  })
})
