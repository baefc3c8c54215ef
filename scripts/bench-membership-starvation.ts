/* eslint-disable no-console */
/**
 * The starvation run of `npm run bench:membership`: `nodes` real
 * `accord start` daemons on loopback (Raft off: membership alone, its
 * defaults, a 1 s protocol period), all alive everywhere first; then
 * `victims` of them pinned to one CPU beside `busyLoops` busy loops for
 * `seconds` (the others pinned to the remaining CPUs), and afterwards until
 * every member is alive everywhere again. Nobody crashed, so every
 * suspicion and every death is a false positive: it reports them, the
 * refutations, and how slow the starved nodes were (round trips of
 * GET /v1/members sampled each second). The target is 0.
 *
 * Uses test/lib/scenario.ts (RaftScenario.starve, MembershipWatch), the
 * same code as test/e2e/membership-10.spec.ts. Needs taskset (util-linux)
 * and two CPUs.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describeStarvation, heldDeadBy, MembershipWatch, RaftScenario } from '../test/lib/scenario.ts'
import type { StarvationReport } from '../test/lib/scenario.ts'

export interface StarvationBenchOptions {
  nodes: number
  victims: number
  busyLoops: number
  seconds: number
}

export interface StarvationBenchResult {
  options: StarvationBenchOptions
  /** Views that marked a live member suspect (the suspecting node's and those that took its news). */
  falseSuspectViews: number
  /** Live members suspected by anyone. */
  suspectedMembers: number
  /** Views that marked a live member dead. */
  falseDeathViews: number
  /** Live members held dead by a majority of the nodes at some point. */
  deadByMajority: number
  refutations: number
  report: StarvationReport
}

/** Bounds the waits for the cluster to form and to settle (a hang, not a measurement). */
const SETTLE_MS = 120_000

export async function runStarvationBench (options: StarvationBenchOptions): Promise<StarvationBenchResult> {
  const { nodes, victims, busyLoops, seconds } = options
  for (const [flag, value] of Object.entries(options)) {
    if (!Number.isSafeInteger(value) || value < 1) { throw new RangeError(`--starvation-${flag === 'busyLoops' ? 'loops' : flag} must be a positive integer`) }
  }
  if (victims >= nodes) { throw new RangeError('--starvation-victims must be below --starvation-nodes') }
  const root = await mkdtemp(join(tmpdir(), 'accord-bench-starvation-'))
  const scenario = new RaftScenario()
  const watch = new MembershipWatch(scenario)
  try {
    const base = 21_000 + Math.floor(Math.random() * 20_000)
    console.log(`starvation run: starting ${nodes} daemons on loopback ...`)
    await scenario.startCluster(Array.from({ length: nodes }, (_, i) => ({
      dataDir: join(root, `node-${i}`),
      apiUrl: `http://127.0.0.1:${base + i}`,
      args: ['--listen', `/ip4/127.0.0.1/tcp/${base + 100 + i}`, '--api', `127.0.0.1:${base + i}`, '--cluster', 'bench', '--raft', 'off']
    })), { waitForVoters: false })
    await watch.waitForAllAlive(SETTLE_MS)
    const starved = Array.from({ length: victims }, (_, i) => nodes - victims + i)
    console.log(`starvation run: all ${nodes} alive everywhere; starving nodes ${starved.join(',')} with ${busyLoops} busy loops for ${seconds} s ...`)
    const report = await watch.starvationRun({ victims: starved, busyLoops, durationMs: seconds * 1000, settleMs: SETTLE_MS })
    console.log(`starvation run: ${describeStarvation(report, nodes)}`)
    const majority = Math.floor(nodes / 2) + 1
    return {
      options,
      falseSuspectViews: report.changes.filter(c => c.state === 'suspect').length,
      suspectedMembers: new Set(report.changes.filter(c => c.state === 'suspect').map(c => c.subject)).size,
      falseDeathViews: report.changes.filter(c => c.state === 'dead').length,
      deadByMajority: scenario.nodes.filter(node => heldDeadBy(report, node.index).size >= majority).length,
      refutations: report.refutations,
      report
    }
  } finally {
    await scenario.stopAll()
    await rm(root, { recursive: true, force: true })
  }
}

/** The figures as the benchmark prints them. */
export function printStarvationResult (result: StarvationBenchResult): void {
  const { nodes, victims, busyLoops, seconds } = result.options
  console.log()
  console.log(`false positives in the starvation run (${nodes} daemons, ${victims} starved by ${busyLoops} busy loops on their CPU for ${seconds} s; target 0):`)
  console.log(`  views marking a live member suspect:  ${result.falseSuspectViews} (${result.suspectedMembers} members suspected)`)
  console.log(`  views marking a live member dead:     ${result.falseDeathViews}`)
  console.log(`  live members held dead by a majority: ${result.deadByMajority}`)
  console.log(`  refutations:                          ${result.refutations}`)
}
