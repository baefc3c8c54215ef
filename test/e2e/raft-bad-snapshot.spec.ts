/**
 * A node whose stored snapshot does not restore says so in one line, with
 * the remedy, and exits non-zero (a separate OS process, started through
 * the CLI as a user starts it); and an error accord cannot name (a bug) is
 * one line too, its stack trace shown only with ACCORD_DEBUG=1.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { expect } from 'aegir/chai'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { RaftStorage, raftStorageDir } from '../../node/raft/storage/index.ts'
import { runCli } from '../lib/processes.ts'

describe('accord start on a raft store it cannot start from (separate OS process)', function () {
  this.timeout(120_000)
  let root: string

  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'accord-e2e-')) })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })

  it('a stored snapshot of garbage: exit 2, one line on stderr naming the directory and what to do, no stack trace', async () => {
    const dataDir = join(root, 'node')
    const self = (await loadOrCreateIdentity(dataDir)).peerId.toString()
    const dir = raftStorageDir(dataDir)
    // what a follower of an earlier version kept after one malformed snapshot frame
    const storage = await RaftStorage.open(dir)
    await storage.persist({
      hardState: { term: 2, vote: null, commit: 16 },
      snapshot: { meta: { index: 16, term: 2, conf: { voters: [self], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data: new Uint8Array(64).fill(0xab) }
    })
    await storage.close()

    const result = await runCli(['start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', 'off', '--log-level', 'error'])
    expect(result.code, result.stderr).to.equal(2)
    const lines = result.stderr.trimEnd().split('\n')
    expect(lines, result.stderr).to.have.length(1)
    expect(lines[0]).to.equal(`accord: raft storage ${dir}: the stored snapshot at index 16 does not restore (malformed snapshot: not a KV snapshot (bad magic)). ` +
      `The node cannot start from it. To recover: put back a copy of ${dir} saved while the node was stopped, or remove this node from the cluster ` +
      `(through another member), delete ${dir}, and add the node back as a new member; it then catches up from the leader.`)
  })
})

describe('accord CLI: an error it cannot name (separate OS process)', function () {
  this.timeout(60_000)
  let root: string
  let preload: string

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-e2e-'))
    // a bug, planted: writing to stdout throws
    preload = join(root, 'bug.mjs')
    await writeFile(preload, "process.stdout.write = () => { throw new TypeError('planted bug: stdout is gone') }\n")
  })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })

  it('prints one line, saying where the stack trace is, and exits 1', async () => {
    const result = await runCli(['--version'], { env: { NODE_OPTIONS: `--import=${pathToFileURL(preload).href}` } })
    expect(result.code, result.stderr).to.equal(1)
    expect(result.stderr).to.equal('accord: unexpected error: TypeError: planted bug: stdout is gone (run with ACCORD_DEBUG=1 for the stack trace)\n')
  })

  it('adds the stack trace with ACCORD_DEBUG=1', async () => {
    const result = await runCli(['--version'], { env: { NODE_OPTIONS: `--import=${pathToFileURL(preload).href}`, ACCORD_DEBUG: '1' } })
    expect(result.code, result.stderr).to.equal(1)
    const [first, ...rest] = result.stderr.trimEnd().split('\n')
    expect(first).to.equal('accord: unexpected error: TypeError: planted bug: stdout is gone')
    expect(rest[0]).to.equal('TypeError: planted bug: stdout is gone')
    expect(rest.slice(1).every(line => /^\s+at /.test(line))).to.equal(true)
    expect(rest.length).to.be.above(1)
  })
})
