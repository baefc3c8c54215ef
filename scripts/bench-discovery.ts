/* eslint-disable no-console */
/**
 * npm run bench:discovery [-- --sizes 8,32 --trials 3]
 *
 * Starts N accord nodes in this process (real libp2p over TCP on loopback),
 * each bootstrapped only from node 0, and measures the time from the first
 * node's start until every node has a connection to, and knows as a member,
 * every other node. Prints a table and writes JSON under bench/results/.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { createAccordNode } from '../node/index.ts'
import type { AccordNode } from '../node/index.ts'

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '8,32' }, trials: { type: 'string', default: '3' } } })
const sizes = values.sizes.split(',').map(Number)
const trials = Number(values.trials)
const TRIAL_DEADLINE_MS = 120_000
const logger = pino({ level: 'silent' })

/** discoverAllMs is null when the trial hit the deadline; completeNodes then tells how far it got. */
interface Trial { nodes: number, startAllMs: number, discoverAllMs: number | null, completeNodes: number }

async function trial (count: number): Promise<Trial> {
  const root = await mkdtemp(join(tmpdir(), 'accord-bench-'))
  const nodes: AccordNode[] = []
  const t0 = performance.now()
  try {
    // discovery alone: a 32-voter Raft group on one event loop would measure something else
    const options = { listen: ['/ip4/127.0.0.1/tcp/0'], api: null, raft: false }
    nodes.push(await createAccordNode({ dataDir: join(root, 'n0'), ...options }, { logger, saveConfig: false }))
    const bootstrap = [nodes[0].libp2p.getMultiaddrs()[0].toString()]
    const { token: joinToken } = await nodes[0].admission.createJoinToken()
    nodes.push(...await Promise.all(Array.from({ length: count - 1 }, async (_, i) =>
      createAccordNode({ dataDir: join(root, `n${i + 1}`), bootstrap, ...options }, { logger, saveConfig: false, joinToken }))))
    const startAllMs = performance.now() - t0
    for (;;) {
      const completeNodes = nodes.filter(n => n.members().filter(m => m.connected).length === count - 1).length
      if (completeNodes === count) { break }
      if (performance.now() - t0 > TRIAL_DEADLINE_MS) { return { nodes: count, startAllMs, discoverAllMs: null, completeNodes } }
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    return { nodes: count, startAllMs, discoverAllMs: performance.now() - t0, completeNodes: count }
  } finally {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await rm(root, { recursive: true, force: true })
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const results: Array<{ nodes: number, trials: Trial[], converged: number, startAllMsMedian: number, discoverAllMsMedian: number | null, discoverAllMsMax: number | null }> = []
for (const size of sizes) {
  const runs: Trial[] = []
  for (let i = 0; i < trials; i++) { runs.push(await trial(size)) }
  const done = runs.flatMap(r => r.discoverAllMs == null ? [] : [r.discoverAllMs])
  results.push({
    nodes: size,
    trials: runs,
    converged: done.length,
    startAllMsMedian: median(runs.map(r => r.startAllMs)),
    discoverAllMsMedian: done.length > 0 ? median(done) : null,
    discoverAllMsMax: done.length > 0 ? Math.max(...done) : null
  })
}

console.log(`discovery: N in-process nodes on loopback, each bootstrapped from node 0 only, ${trials} trials each`)
console.log(`| nodes | converged within ${TRIAL_DEADLINE_MS / 1000} s | all started (median ms) | all know all (median ms) | all know all (max ms) |`)
console.log('|------:|---:|------------------------:|-------------------------:|----------------------:|')
const ms = (x: number | null): string => x == null ? '-' : x.toFixed(0)
for (const r of results) {
  const stuck = r.trials.filter(t => t.discoverAllMs == null).map(t => `${t.completeNodes}/${t.nodes} complete`).join(', ')
  console.log(`| ${r.nodes} | ${r.converged}/${r.trials.length}${stuck !== '' ? ` (others: ${stuck})` : ''} | ${ms(r.startAllMsMedian)} | ${ms(r.discoverAllMsMedian)} | ${ms(r.discoverAllMsMax)} |`)
}
await mkdir('bench/results', { recursive: true })
const file = join('bench/results', 'discovery.json')
await writeFile(file, JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: cpus().length, results }, null, 2) + '\n')
console.log(`saved ${file}`)
