/* eslint-disable no-console */
/**
 * node scripts/bench-storage.ts [--seconds 3] [--entry-bytes 256] [--window 64] [--batch 100] [--dir /path]
 *
 * Throughput of the Raft storage (write-ahead log, every frame synced) in entries/s,
 * in three modes. One-by-one: 1-entry Readies, each persisted before the next
 * is issued, so every entry pays a whole fsync. Coalesced: 1-entry Readies
 * from `window` concurrent callers; persists that arrive while a sync is in
 * flight share the next batch (group commit). Batched: `batch`-entry Readies
 * one by one (what a busy leader hands over).
 * Prints a table and writes JSON under bench/results/. Use --dir to measure a
 * particular disk (default: the OS temp dir).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { RaftStorage } from '../node/raft/storage/index.ts'
import type { Entry } from '../protocols/raft/index.ts'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    'entry-bytes': { type: 'string', default: '256' },
    window: { type: 'string', default: '64' },
    batch: { type: 'string', default: '100' },
    dir: { type: 'string' }
  }
})
const runMs = Number(values.seconds) * 1000
const entryBytes = Number(values['entry-bytes'])
const window = Number(values.window)
const batch = Number(values.batch)

interface Result {
  mode: string
  entries: number
  fsyncs: number
  seconds: number
  entriesPerSecond: number
  entriesPerFsync: number
  fsyncMsMean: number
  fsyncMsP50: number
  fsyncMsP99: number
}

const data = new Uint8Array(entryBytes).map((_, i) => i)
const entryAt = (index: number): Entry => ({ index, term: 1, type: 'normal', data })
const entriesFrom = (first: number, count: number): Entry[] => Array.from({ length: count }, (_, i) => entryAt(first + i))

async function measure (mode: string, drive: (storage: RaftStorage, deadline: number) => Promise<number>): Promise<Result> {
  const root = await mkdtemp(join(values.dir ?? tmpdir(), 'accord-bench-storage-'))
  const fsyncMs: number[] = []
  const storage = await RaftStorage.open(join(root, 'raft'), { onFsync: (ms) => { fsyncMs.push(ms) } })
  try {
    const started = performance.now()
    const entries = await drive(storage, started + runMs)
    const seconds = (performance.now() - started) / 1000
    fsyncMs.sort((a, b) => a - b)
    return {
      mode,
      entries,
      fsyncs: fsyncMs.length,
      seconds,
      entriesPerSecond: entries / seconds,
      entriesPerFsync: entries / fsyncMs.length,
      fsyncMsMean: fsyncMs.reduce((a, b) => a + b, 0) / fsyncMs.length,
      fsyncMsP50: fsyncMs[Math.floor(fsyncMs.length * 0.5)],
      fsyncMsP99: fsyncMs[Math.floor(fsyncMs.length * 0.99)]
    }
  } finally {
    await storage.close()
    await rm(root, { recursive: true, force: true })
  }
}

const results: Result[] = []

results.push(await measure('one-by-one, 1 entry per Ready', async (storage, deadline) => {
  let index = 0
  while (performance.now() < deadline) { await storage.persist({ entries: [entryAt(++index)] }) }
  return index
}))

results.push(await measure(`coalesced, 1 entry per Ready, ${window} in flight`, async (storage, deadline) => {
  let index = 0
  // Each caller takes the next index when it issues, so calls stay in log order.
  await Promise.all(Array.from({ length: window }, async () => {
    while (performance.now() < deadline) { await storage.persist({ entries: [entryAt(++index)] }) }
  }))
  return index
}))

results.push(await measure(`one-by-one, ${batch} entries per Ready`, async (storage, deadline) => {
  let index = 0
  while (performance.now() < deadline) {
    await storage.persist({ entries: entriesFrom(index + 1, batch) })
    index += batch
  }
  return index
}))

console.log(`raft storage: ${entryBytes}-byte entries, every batch synced (fsync), ${values.seconds} s per mode, dir ${values.dir ?? tmpdir()}`)
console.log('| mode | entries/s | fsyncs | entries/fsync | fsync mean ms | fsync p50 ms | fsync p99 ms |')
console.log('|------|----------:|-------:|--------------:|--------------:|-------------:|-------------:|')
for (const r of results) {
  console.log(`| ${r.mode} | ${r.entriesPerSecond.toFixed(0)} | ${r.fsyncs} | ${r.entriesPerFsync.toFixed(1)} | ${r.fsyncMsMean.toFixed(2)} | ${r.fsyncMsP50.toFixed(2)} | ${r.fsyncMsP99.toFixed(2)} |`)
}
await mkdir('bench/results', { recursive: true })
const file = join('bench/results', 'storage.json')
await writeFile(file, JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: cpus().length, entryBytes, results }, null, 2) + '\n')
console.log(`saved ${file}`)
