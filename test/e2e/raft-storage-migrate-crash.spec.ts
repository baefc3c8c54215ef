/**
 * A migration from storage format 1 killed (SIGKILL, in a separate OS
 * process) after each of its steps: the directory then still opens as
 * format 1 (before the commit step) or as a complete format 2 store, and the
 * next open restores exactly what format 1 held.
 */
import { spawn } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'aegir/chai'
import { MIGRATION_STEPS } from '../../node/raft/storage/migrate.ts'
import { CaptureLogger, TempDirs, copyFormat1Fixture, expectedOf, format1State, openAndLoad } from '../unit/raft-storage-helpers.ts'
import type { MigrationStep } from '../../node/raft/storage/migrate.ts'

const MIGRATOR = fileURLToPath(new URL('./fixtures/raft-storage-migrator.ts', import.meta.url))
const FIXTURE = 'snapshot-and-entries'

/** Runs the migration in a child process killed after `step`; resolves to the signal that ended it. */
async function migrateAndKill (dir: string, step: MigrationStep): Promise<NodeJS.Signals | null> {
  const child = spawn(process.execPath, [MIGRATOR, dir, step], { env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const deadline = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => { child.once('close', (c, s) => { resolve([c, s]) }) })
  clearTimeout(deadline)
  if (signal === null) { throw new Error(`the migrator exited with ${code} before step ${step}: ${stderr}`) }
  return signal
}

async function hasSegment (dir: string): Promise<boolean> {
  return (await readdir(join(dir, 'wal')).catch(() => [])).some(name => name.endsWith('.wal'))
}

describe('raft storage: a migration from format 1 killed at each step (separate OS process)', function () {
  this.timeout(120_000)
  const temp = new TempDirs()
  afterEach(async () => { await temp.removeAll() })

  const committed = MIGRATION_STEPS.indexOf('committed')
  MIGRATION_STEPS.forEach((step, k) => {
    it(`killed after '${step}': ${k < committed ? 'still format 1' : 'format 2'}, and the next open restores the same state`, async () => {
      const dir = await temp.make()
      await copyFormat1Fixture(FIXTURE, dir)
      const expected = await expectedOf(FIXTURE) as { hardState: unknown }
      expect(await migrateAndKill(dir, step)).to.equal('SIGKILL')
      if (k < committed) {
        expect(await hasSegment(dir), 'no segment: the directory is format 1').to.equal(false)
        expect(await format1State(dir), 'the LevelDB store is intact').to.deep.equal(expected.hardState)
      } else {
        expect(await hasSegment(dir), 'the log is in place: the directory is format 2').to.equal(true)
      }
      const logger = new CaptureLogger()
      expect(await openAndLoad(dir, logger)).to.deep.equal(expected)
      // whatever the step, the next open finished the job
      const names = (await readdir(dir)).sort()
      expect(names).to.deep.equal(['leveldb-format1.bak', 'snap', 'wal'])
      expect(await format1State(join(dir, 'leveldb-format1.bak')), 'the backup is the whole format-1 store').to.deep.equal(expected.hardState)
    })
  })

  it('survives two kills in a row (during the build, then during the backup)', async () => {
    const dir = await temp.make()
    await copyFormat1Fixture(FIXTURE, dir)
    expect(await migrateAndKill(dir, 'building')).to.equal('SIGKILL')
    expect(await migrateAndKill(dir, 'backup-started')).to.equal('SIGKILL')
    expect(await openAndLoad(dir, new CaptureLogger())).to.deep.equal(await expectedOf(FIXTURE))
  })
})
