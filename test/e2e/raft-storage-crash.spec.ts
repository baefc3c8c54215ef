import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'aegir/chai'
import { RaftStorage } from '../../node/raft/storage/index.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { CaptureLogger } from '../unit/raft-storage-helpers.ts'
import { CRASH_STORAGE_OPTIONS, applyWrite, mismatch, modelOf, sameBytes, workloadEntry } from './fixtures/raft-storage-workload.ts'
import type { LogModel, WriteRecord, WriterLine } from './fixtures/raft-storage-workload.ts'

const WRITER = fileURLToPath(new URL('./fixtures/raft-storage-writer.ts', import.meta.url))
const ROUNDS = Number(process.env.RAFT_STORAGE_CRASH_ROUNDS ?? 6)
const SEED = Number(process.env.RAFT_STORAGE_CRASH_SEED ?? 7103)

interface Round {
  issued: WriteRecord[]
  /** The highest acknowledged (durable) write; acknowledgements arrive in order. */
  acked: number
  stderr: string
  signal: NodeJS.Signals | null
  code: number | null
}

/** Runs the writer until it has acknowledged `acksBeforeKill` writes, waits `delayMs`, then kill -9. */
async function runWriter (dir: string, seed: number, acksBeforeKill: number, delayMs: number): Promise<Round> {
  const child = spawn(process.execPath, [WRITER, dir, String(seed)], {
    env: { ...process.env, NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const round: Round = { issued: [], acked: 0, stderr: '', signal: null, code: null }
  let pending = ''
  let killScheduled = false
  const deadline = setTimeout(() => child.kill('SIGKILL'), 20_000)
  child.stderr.on('data', (d: Buffer) => { round.stderr += d.toString() })
  child.stdout.on('data', (d: Buffer) => {
    pending += d.toString()
    const lines = pending.split('\n')
    pending = lines.pop() ?? ''
    for (const text of lines) {
      const line = JSON.parse(text) as WriterLine
      if ('issued' in line) {
        round.issued.push(line.issued)
      } else {
        expect(line.durable, 'acknowledgements come in issue order').to.equal(round.acked + 1)
        round.acked = line.durable
      }
    }
    if (!killScheduled && round.acked >= acksBeforeKill) {
      killScheduled = true
      setTimeout(() => child.kill('SIGKILL'), delayMs)
    }
  })
  await new Promise<void>(resolve => {
    child.once('close', (code, signal) => {
      round.code = code
      round.signal = signal
      resolve()
    })
  })
  clearTimeout(deadline)
  return round
}

describe('raft storage under kill -9 (separate OS process)', function () {
  this.timeout(60_000)
  let root: string

  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'accord-raft-crash-')) })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })

  it(`keeps every acknowledged write, in order, across ${ROUNDS} seeded kills (seed ${SEED})`, async () => {
    const rng = createRng(SEED)
    const dir = join(root, 'raft')
    let model: LogModel = { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, terms: new Map(), lastIndex: 0 }
    let ackedTotal = 0
    let durableBeyondAck = 0
    for (let round = 0; round < ROUNDS; round++) {
      const context = `seed ${SEED} round ${round}`
      const result = await runWriter(dir, SEED * 1000 + round, rng.intBetween(5, 120), rng.intBetween(0, 15))
      expect(result.signal, `${context}: the writer died by itself: ${result.stderr}`).to.equal('SIGKILL')
      expect(result.acked, context).to.be.greaterThan(0)

      const logger = new CaptureLogger()
      const storage = await RaftStorage.open(dir, { logger, ...CRASH_STORAGE_OPTIONS })
      const restored = await storage.load()
      await storage.close()

      // The log is contiguous after the snapshot, and every entry holds its own content.
      const first = (restored.snapshot?.meta.index ?? 0) + 1
      restored.entries.forEach((e, i) => {
        expect(e.index, `${context}: contiguous log`).to.equal(first + i)
        expect(sameBytes(e.data, workloadEntry(e.index, e.term).data), `${context}: content of entry ${e.index}`).to.equal(true)
      })

      // The store equals the model after some prefix of the issued writes
      // that contains every acknowledged one: nothing acknowledged was lost,
      // and writes became durable atomically and in order.
      const states: LogModel[] = [model]
      for (const write of result.issued) { states.push(applyWrite(states[states.length - 1], write)) }
      const reasons: string[] = []
      let matched = -1
      for (let k = result.acked; k < states.length && matched < 0; k++) {
        const why = mismatch(restored, states[k])
        if (why === null) { matched = k } else { reasons.push(`after ${k} writes: ${why}`) }
      }
      expect(matched, `${context}: acked ${result.acked} of ${result.issued.length}\n${reasons.join('\n')}`).to.be.at.least(result.acked)

      ackedTotal += result.acked
      durableBeyondAck += matched - result.acked
      model = modelOf(restored)
    }
    expect(ackedTotal).to.be.greaterThan(ROUNDS * 5)
    // Informational: how often the kill landed between a durable write and its acknowledgement.
    process.stderr.write(`      raft storage crash test: ${ackedTotal} acknowledged writes, ${durableBeyondAck} durable but unacknowledged\n`)
  })
})
