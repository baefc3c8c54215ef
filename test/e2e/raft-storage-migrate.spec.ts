/**
 * `accord start` on a data dir written by an accord from before the
 * write-ahead log (test/fixtures/raft-format1/data-dir: a one-node group,
 * keys key-1..key-14, a snapshot at index 10 and entries 11..16 in its
 * LevelDB Raft store): the node migrates its Raft store at start, says so
 * in its log, and serves the old keys.
 */
import { chmod, cp, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { waitFor } from '../lib/nodes.ts'
import { DaemonProcess, runCli } from '../lib/processes.ts'
import { FORMAT1_FIXTURES } from '../unit/raft-storage-helpers.ts'

/** The fixture's data dir, copied to `dataDir` with its secrets private again (git keeps no file mode but the executable bit, and the node refuses secrets others can read). */
async function copyDataDir (dataDir: string): Promise<void> {
  await cp(join(FORMAT1_FIXTURES, 'data-dir'), dataDir, { recursive: true })
  for (const secret of ['identity.key', 'admission/cluster.key', 'admission/member.cert']) { await chmod(join(dataDir, secret), 0o600) }
}

describe('accord start on a data dir of Raft storage format 1 (LevelDB)', function () {
  this.timeout(120_000)
  let root: string
  let daemon: DaemonProcess | null = null

  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'accord-migrate-')) })
  afterEach(async () => {
    await daemon?.stop('SIGKILL')
    daemon = null
    await rm(root, { recursive: true, force: true })
  })

  it('migrates the Raft store at start and serves the keys the earlier accord stored', async () => {
    const dataDir = join(root, 'node')
    await copyDataDir(dataDir)
    daemon = new DaemonProcess(dataDir, ['--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0'])
    await daemon.ready()
    const migrated = daemon.logSoFar.split('\n').filter(line => line.includes('migrated the LevelDB store')).map(line => JSON.parse(line))
    expect(migrated).to.have.length(1)
    expect(migrated[0]).to.include({ level: 30, entries: 6, snapshotIndex: 10, lastIndex: 16 })
    expect(await readdir(join(dataDir, 'raft'))).to.include.members(['wal', 'snap', 'leveldb-format1.bak'])

    // key-1..key-10 are in the snapshot, the rest in entries after it
    await waitFor(async () => (await runCli(['kv', 'get', 'key-14', '--data-dir', dataDir])).stdout === 'value-14\n', 'the group to serve reads')
    for (const i of [1, 10, 11, 13]) {
      const get = await runCli(['kv', 'get', `key-${i}`, '--data-dir', dataDir])
      expect(get.stdout, get.stderr).to.equal(`value-${i}\n`)
    }
    const put = await runCli(['kv', 'put', 'after', 'migration', '--data-dir', dataDir])
    expect(put.code, put.stderr).to.equal(0)
    // after the 16 entries carried over (and the new leader's empty entry)
    expect(Number(/^ok \(index (\d+)\)\n$/.exec(put.stdout)?.[1])).to.be.greaterThan(16)
  })

  it('accord raft migrate does it offline, says what it carried over, and then finds nothing to do', async () => {
    const dataDir = join(root, 'node')
    await copyDataDir(dataDir)
    const first = await runCli(['raft', 'migrate', '--data-dir', dataDir])
    expect(first.code, first.stderr).to.equal(0)
    expect(first.stdout).to.match(/^migrated .*\/node\/raft to storage format 2: 6 entries after the snapshot at index 10, last index 16, \d+ bytes of data, in \d+ ms\n/)
    expect(first.stdout).to.include(`the LevelDB files are in ${join(dataDir, 'raft', 'leveldb-format1.bak')}/`)
    const second = await runCli(['raft', 'migrate', '--data-dir', dataDir])
    expect(second.code, second.stderr).to.equal(0)
    expect(second.stdout).to.equal(`nothing to migrate: ${join(dataDir, 'raft')} holds storage format 2\n`)
  })
})
