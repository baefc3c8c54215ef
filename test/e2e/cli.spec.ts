import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { expect } from 'aegir/chai'
import { createJoinToken } from '../../identity/cluster-credentials.ts'
import { IDENTITY_FILE } from '../../node/identity.ts'
import { RUNTIME_FILE } from '../../node/runtime-file.ts'
import { waitFor } from '../lib/nodes.ts'
import { DaemonProcess, joinTokenFrom, runCli } from '../lib/processes.ts'
import type { Server } from 'node:net'

/** A one-line error, non-zero exit, and no stack trace (structured JSON log lines aside). */
function expectOneLineError (result: { code: number | null, stderr: string }, pattern: RegExp): void {
  expect(result.code, result.stderr).to.equal(2)
  const lines = result.stderr.trim().split('\n').filter(line => !line.startsWith('{"level":'))
  expect(lines, result.stderr).to.have.length(1)
  expect(lines[0]).to.match(/^accord: /)
  expect(lines[0]).to.match(pattern)
  expect(result.stderr).to.not.match(/\n\s+at /)
}

async function occupyPort (): Promise<{ server: Server, port: number }> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address == null || typeof address === 'string') { throw new Error('no port') }
  return { server, port: address.port }
}

describe('accord CLI (separate OS processes)', function () {
  this.timeout(120_000)
  let root: string
  const daemons: DaemonProcess[] = []

  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'accord-e2e-')) })
  afterEach(async () => {
    await Promise.all(daemons.splice(0).map(async d => { await d.stop('SIGKILL') }))
    await rm(root, { recursive: true, force: true })
  })

  describe('errors a person can cause', () => {
    it('an unknown command', async () => {
      expectOneLineError(await runCli(['frobnicate']), /unknown command "frobnicate"/)
    })

    it('an unknown flag', async () => {
      expectOneLineError(await runCli(['start', '--data-dir', root, '--bogus']), /start: Unknown option '--bogus'/)
    })

    it('a missing data dir', async () => {
      expectOneLineError(await runCli(['start']), /--data-dir is required/)
    })

    it('a bad flag value', async () => {
      expectOneLineError(await runCli(['start', '--data-dir', root, '--listen', 'nonsense']), /--listen "nonsense" is not a valid multiaddr/)
      expectOneLineError(await runCli(['start', '--data-dir', root, '--log-level', 'loud']), /--log-level must be one of/)
      expectOneLineError(await runCli(['demo', '--nodes', '0']), /--nodes must be an integer in 1\.\.64/)
      // a flag of another kv action is refused, not dropped (put --expected would overwrite blindly)
      expectOneLineError(await runCli(['kv', 'put', 'k', 'v', '--expected', 'old']), /kv put: --expected and --absent belong to kv cas/)
      expectOneLineError(await runCli(['kv', 'del', 'k', '--consistency', 'stale']), /kv del: --consistency belongs to kv get/)
    })

    it('an occupied libp2p port', async () => {
      const { server, port } = await occupyPort()
      try {
        expectOneLineError(await runCli(['start', '--data-dir', root, '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--api', 'off']), /listen address already in use/)
      } finally {
        server.close()
      }
    })

    it('an occupied API port', async () => {
      const { server, port } = await occupyPort()
      try {
        expectOneLineError(await runCli(['start', '--data-dir', root, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', `127.0.0.1:${port}`]), new RegExp(`API address 127\\.0\\.0\\.1:${port} is already in use`))
      } finally {
        server.close()
      }
    })

    it('a key file readable by others', async () => {
      const id = await runCli(['id', '--data-dir', root])
      expect(id.code).to.equal(0)
      await chmod(join(root, IDENTITY_FILE), 0o644)
      expectOneLineError(await runCli(['start', '--data-dir', root, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', 'off']), /accessible by others \(mode 0644\)/)
      expectOneLineError(await runCli(['id', '--data-dir', root]), /accessible by others/)
    })

    it('a wrong passphrase for an encrypted key', async () => {
      expect((await runCli(['id', '--data-dir', root], { env: { ACCORD_PASSPHRASE: 'right' } })).code).to.equal(0)
      expectOneLineError(await runCli(['id', '--data-dir', root], { env: { ACCORD_PASSPHRASE: 'wrong' } }), /wrong passphrase/)
    })

    it('an unreachable bootstrap address', async () => {
      const { server, port } = await occupyPort()
      server.close() // a port on which nobody listens now
      const peer = '12D3KooWHkW6YdTVUw4nnbmmZUUG1nYQ7D893waHZbqe2jpEWJCX'
      const bootstrap = `/ip4/127.0.0.1/tcp/${port}/p2p/${peer}`
      const validLookingToken = await createJoinToken(await generateKeyPair('Ed25519'), { cluster: 'accord', expiresAtMs: Date.now() + 60_000, nonce: new Uint8Array(16) })
      expectOneLineError(await runCli(['start', '--data-dir', root, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', 'off', '--bootstrap', bootstrap, '--join-token', validLookingToken]), /cannot reach any bootstrap peer/)
    })

    it('Raft storage that cannot be opened, and exits though the node had started its services', async () => {
      // raft/ is a file: the storage fails to open after libp2p and its services have started
      await mkdir(root, { recursive: true })
      await writeFile(join(root, 'raft'), 'not a directory')
      const result = await runCli(['start', '--data-dir', root, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', 'off'], { timeoutMs: 30_000 })
      expect(result.signal, 'exited by itself, not killed at the timeout').to.equal(null)
      expect(result.code, result.stderr).to.not.equal(0)
      expect(result.stderr).to.match(/raft/)
    })

    it('a bootstrap address without a join token', async () => {
      const peer = '12D3KooWHkW6YdTVUw4nnbmmZUUG1nYQ7D893waHZbqe2jpEWJCX'
      expectOneLineError(await runCli(['start', '--data-dir', root, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', 'off', '--bootstrap', `/ip4/127.0.0.1/tcp/1/p2p/${peer}`]),
        /needs a join token: run "accord token create" on a member and start with --join-token TOKEN/)
    })

    it('a join token that is not one', async () => {
      // the token is read before any peer is dialled
      const peer = '12D3KooWHkW6YdTVUw4nnbmmZUUG1nYQ7D893waHZbqe2jpEWJCX'
      expectOneLineError(await runCli(['start', '--data-dir', root, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', 'off', '--bootstrap', `/ip4/127.0.0.1/tcp/1/p2p/${peer}`, '--join-token', 'hello']),
        /--join-token: not an accord join token/)
    })

    it('a token lifetime that is not a duration', async () => {
      expectOneLineError(await runCli(['token', 'create', '--ttl', 'soon']), /--ttl "soon" is not a duration/)
    })

    it('status with no node to ask', async () => {
      const { server, port } = await occupyPort()
      server.close()
      expectOneLineError(await runCli(['status', '--api', `http://127.0.0.1:${port}`]), /cannot reach the accord API/)
    })
  })

  it('accord id prints the same PeerId every time, from a 0600 key', async () => {
    const first = await runCli(['id', '--data-dir', root])
    expect(first.stdout.trim()).to.match(/^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/)
    expect((await runCli(['id', '--data-dir', root])).stdout).to.equal(first.stdout)
    expect((await stat(join(root, IDENTITY_FILE))).mode & 0o777).to.equal(0o600)
  })

  it('3 processes discover each other, answer /v1/status, restart from their data dir alone, and stop cleanly on SIGTERM', async () => {
    const dirs = [0, 1, 2].map(i => join(root, `node-${i}`))
    const start = (i: number, extra: string[]): DaemonProcess => {
      const d = new DaemonProcess(dirs[i], ['--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', ...extra])
      daemons.push(d)
      return d
    }
    const first = start(0, [])
    const info0 = await first.ready()
    const bootstrap = `${info0.multiaddrs[0]}`
    const token = await joinTokenFrom(dirs[0])
    const others = [start(1, ['--bootstrap', bootstrap, '--join-token', token]), start(2, ['--bootstrap', bootstrap, '--join-token', token])]
    const infos = [info0, ...await Promise.all(others.map(async d => d.ready()))]

    const statusOf = async (i: number): Promise<any> => {
      const result = await runCli(['status', '--data-dir', dirs[i], '--json'])
      expect(result.code, result.stderr).to.equal(0)
      return JSON.parse(result.stdout)
    }
    await waitFor(async () => {
      const all = await Promise.all([0, 1, 2].map(statusOf))
      return all.every(s => s.members.filter((m: { connected: boolean }) => m.connected).length === 2)
    }, 'all three to see each other')
    for (let i = 0; i < 3; i++) {
      const s = await statusOf(i)
      expect(s.peerId).to.equal(infos[i].peerId)
      expect(s.members.map((m: { peerId: string }) => m.peerId).sort()).to.deep.equal(infos.filter((_, j) => j !== i).map(x => x.peerId).sort())
    }
    const human = await runCli(['status', '--data-dir', dirs[1]])
    expect(human.stdout).to.include(`peer id    ${infos[1].peerId}`)
    expect(human.stdout).to.match(/members {4}2/)

    // restart node 1 from its data dir alone: same identity, same address, same peers
    const stopped = await others[0].stop('SIGTERM')
    expect(stopped.code, stopped.stderr).to.equal(0)
    expect(stopped.stdout).to.include('received SIGTERM, stopping')
    const restarted = new DaemonProcess(dirs[1], [])
    daemons.push(restarted)
    const again = await restarted.ready()
    expect(again.peerId).to.equal(infos[1].peerId)
    expect(again.multiaddrs).to.deep.equal(infos[1].multiaddrs)
    await waitFor(async () => (await statusOf(1)).members.filter((m: { connected: boolean }) => m.connected).length === 2, 'the restarted node to rejoin')

    for (const daemon of [first, others[1], restarted]) {
      const result = await daemon.stop('SIGTERM')
      expect(result.code, result.stderr).to.equal(0)
      await expect(stat(join(daemon.dataDir, RUNTIME_FILE))).to.eventually.be.rejected()
    }
  })
})
