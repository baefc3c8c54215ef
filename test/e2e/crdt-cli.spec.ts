/**
 * `accord crdt` against two node processes: a CRDT created on one appears
 * on the other, ops on both converge, and mistakes end as one line on
 * stderr with exit code 2.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { waitFor } from '../lib/nodes.ts'
import { DaemonProcess, joinTokenFrom, runCli } from '../lib/processes.ts'

describe('accord crdt (separate OS processes)', function () {
  this.timeout(120_000)
  let root: string
  const daemons: DaemonProcess[] = []

  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'accord-e2e-')) })
  afterEach(async () => {
    await Promise.all(daemons.splice(0).map(async d => { await d.stop('SIGKILL') }))
    await rm(root, { recursive: true, force: true })
  })

  it('create, op, get and list through two nodes, and one-line errors', async () => {
    const dirs = [0, 1].map(i => join(root, `node-${i}`))
    const flags = ['--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--raft', 'off', '--crdt-sync-interval-ms', '300']
    const first = new DaemonProcess(dirs[0], flags)
    daemons.push(first)
    const info = await first.ready()
    const second = new DaemonProcess(dirs[1], [...flags, '--bootstrap', info.multiaddrs[0], '--join-token', await joinTokenFrom(dirs[0])])
    daemons.push(second)
    await second.ready()
    const crdt = async (i: number, ...args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> => runCli(['crdt', ...args, '--data-dir', dirs[i]])

    const created = await crdt(0, 'create', 'visitors', 'pn-counter')
    expect(created.code, created.stderr).to.equal(0)
    expect(created.stdout).to.equal('visitors: pn-counter (created)\n')
    expect((await crdt(0, 'create', 'visitors', 'pn-counter')).stdout).to.equal('visitors: pn-counter (exists)\n')
    await waitFor(async () => (await crdt(1, 'list')).stdout === 'visitors pn-counter\n', 'the second node to hold the CRDT')
    expect((await crdt(0, 'op', 'visitors', '{"op":"increment","by":3}')).stdout).to.equal('3\n')
    expect((await crdt(1, 'op', 'visitors', '{"op":"decrement","by":1}')).code).to.equal(0)
    await waitFor(async () => (await crdt(0, 'get', 'visitors')).stdout === '2\n' && (await crdt(1, 'get', 'visitors')).stdout === '2\n', 'both nodes to converge')

    for (const [args, pattern] of [
      [['create', 'visitors', 'g-set'], /409 .*exists as a pn-counter/],
      [['op', 'visitors', '{"op":"increment","by":1.5}'], /400 /],
      [['op', 'visitors', 'not json'], /the op must be JSON/],
      [['get', 'nobody'], /no such CRDT: nobody/],
      [['frobnicate'], /expected create, op, get or list/]
    ] as Array<[string[], RegExp]>) {
      const result = await crdt(0, ...args)
      expect(result.code, args.join(' ')).to.equal(2)
      expect(result.stderr.trim().split('\n').filter(l => !l.startsWith('{"level":'))).to.have.length(1)
      expect(result.stderr).to.match(pattern)
    }
  })

  it('an op answered is on disk: it outlives a kill -9 right after the answer', async () => {
    const dir = join(root, 'alone')
    const flags = ['--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--raft', 'off']
    const node = new DaemonProcess(dir, flags)
    daemons.push(node)
    await node.ready()
    const crdt = async (...args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> => runCli(['crdt', ...args, '--data-dir', dir])
    expect((await crdt('create', 'tally', 'or-set')).code).to.equal(0)
    for (let i = 0; i < 5; i++) { expect((await crdt('op', 'tally', JSON.stringify({ op: 'add', value: `v${i}` }))).code).to.equal(0) }
    await node.stop('SIGKILL')
    const restarted = new DaemonProcess(dir, [])
    daemons.push(restarted)
    await restarted.ready()
    expect((await crdt('get', 'tally')).stdout).to.equal('["v0","v1","v2","v3","v4"]\n')
  })
})
