/* eslint-disable no-console */
/**
 * node scripts/bench-membership.ts [--sizes 100,1000,10000] [--loss 0.01] [--topic-ms 50 | --no-topic] [--json out.json]
 *
 * The SWIM + Lifeguard core (protocols/membership) at scale, in the
 * simulator (test/sim/membership/cluster.ts: real cores, virtual time, a
 * 200 ms protocol period with a 100 ms probe timeout, 1-5 ms latency and
 * `--loss` message loss). Every member starts from one shared roster of
 * N members with ~52-character ids (the length of a PeerId string).
 *
 * Per size, over its seeds: members crash one after another; for each, the
 * first suspicion and the first death declaration (in protocol periods
 * after the crash) and the time until 99.99% of the live members hold it
 * dead, counted from the crash and from the first declaration (how long
 * the news takes to spread, the suspicion timeout aside: at 10,000 members
 * that timeout alone is at least 16 periods); one new member joins through a random seed, and the time until
 * 99.99% of the members know it. Also the false positives (suspicions and
 * death declarations of members that never crashed) and the bytes each
 * member sends per second, by the core's byte model (size.ts: ids as
 * UTF-8, 8-byte integers; what a compact binary codec would send, before
 * transport framing and encryption).
 *
 * The gossipsub topic the service publishes on is modelled too (what each
 * member originates reaches every member `--topic-ms` later, its bytes
 * counted as 6 mesh copies per member: the cluster's sim, `topic`), from
 * the end of the warm-up (every member starts from the shared roster);
 * `--no-topic` measures SWIM's piggybacking alone.
 *
 * Everything runs in one process: 10,000 members take a few minutes and a
 * few GB, so that size runs one seed with fewer crashes (see PLANS).
 *
 * Then the starvation run (scripts/bench-membership-starvation.ts): real
 * daemons on loopback, a few starved of CPU by busy loops pinned beside
 * them, and the false positives that caused. `--no-starvation` skips it,
 * `--starvation-only` runs only it; `--starvation-nodes 10`,
 * `--starvation-victims 3`, `--starvation-loops 6` (busy loops) and
 * `--starvation-seconds 30` shape it.
 */
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { createRoster } from '../protocols/membership/index.ts'
import { MembershipCluster } from '../test/sim/membership/cluster.ts'
import { printStarvationResult, runStarvationBench } from './bench-membership-starvation.ts'
import { percentile } from './percentile.ts'
import type { StarvationBenchResult } from './bench-membership-starvation.ts'
import type { MemberId } from '../protocols/membership/index.ts'

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100,1000,10000' },
    loss: { type: 'string', default: '0.01' },
    seeds: { type: 'string' },
    'topic-ms': { type: 'string', default: '50' },
    'no-topic': { type: 'boolean', default: false },
    'no-starvation': { type: 'boolean', default: false },
    'starvation-only': { type: 'boolean', default: false },
    'starvation-nodes': { type: 'string', default: '10' },
    'starvation-victims': { type: 'string', default: '3' },
    'starvation-loops': { type: 'string', default: '6' },
    'starvation-seconds': { type: 'string', default: '30' },
    json: { type: 'string' }
  }
})

/** The starvation run, with the flags' settings. */
async function starvationRun (): Promise<StarvationBenchResult> {
  const result = await runStarvationBench({
    nodes: Number(values['starvation-nodes']),
    victims: Number(values['starvation-victims']),
    busyLoops: Number(values['starvation-loops']),
    seconds: Number(values['starvation-seconds'])
  })
  printStarvationResult(result)
  return result
}

function writeJson (report: Record<string, unknown>): void {
  if (values.json === undefined) { return }
  writeFileSync(values.json, JSON.stringify(report, null, 2))
  console.log(`wrote ${values.json}`)
}

if (values['starvation-only']) {
  writeJson({ starvation: await starvationRun() })
  process.exit(0)
}

interface Plan {
  seeds: number
  crashes: number
  /** Virtual ms between two crashes. */
  gapMs: number
}

const PLANS: Record<number, Plan> = {
  100: { seeds: 20, crashes: 5, gapMs: 10_000 },
  1000: { seeds: 4, crashes: 5, gapMs: 12_000 },
  10_000: { seeds: 1, crashes: 4, gapMs: 15_000 }
}

const TICK_MS = 20
/** gossipsub's mesh degree (D): the copies of each topic message a member sends on. */
const TOPIC_MESH_DEGREE = 6
const PERIOD_MS = 200
const WARMUP_MS = 4000
const COVERAGE = 0.9999

interface SizeResult {
  members: number
  seeds: number
  failures: number
  firstSuspectPeriods: number[]
  firstDeadPeriods: number[]
  deadCoverageMs: number[]
  /** From the first death declaration to 99.99% of live members holding it: the news's spread alone. */
  deadSpreadMs: number[]
  joinCoverageMs: number[]
  falseSuspicions: number
  falseDeaths: number
  bytesPerMemberPerSecond: number
  /** Bytes of the gossipsub topic (the model's), apart from SWIM's. */
  topicBytesPerMemberPerSecond: number
  messagesPerMemberPerSecond: number
  wallSeconds: number
  virtualSeconds: number
  heapMiB: number
}

function memberIds (n: number, prefix = ''): MemberId[] {
  return Array.from({ length: n }, (_, i) => `12D3KooW${prefix}${i.toString(36).padStart(44 - prefix.length, 'A')}`)
}

function runSeed (n: number, seed: number, plan: Plan, loss: number, into: SizeResult): void {
  const ids = memberIds(n)
  const roster = createRoster(ids.map(id => ({ id })))
  const cluster = new MembershipCluster({
    seed,
    tickMs: TICK_MS,
    network: { dropRate: loss, duplicateRate: 0, delayRate: 0, latencyMsMin: 1, latencyMsMax: 5, delayMsMax: 5 },
    config: { roster },
    traceLines: 1,
    ...(values['no-topic'] ? {} : { topic: { latencyMs: Number(values['topic-ms']), fanout: TOPIC_MESH_DEGREE, fromMs: WARMUP_MS } })
  })
  for (const id of ids) { cluster.addMember(id) }
  const crashAt = new Map<MemberId, number>()
  const track = new Map<MemberId, { firstSuspect: number, firstDead: number, dead: Set<MemberId>, known: Set<MemberId>, covered: number }>()
  const liveOthers = (subject: MemberId): number => n - crashAt.size - (crashAt.has(subject) ? 0 : 1) + (joined !== null ? 1 : 0)
  let joined: MemberId | null = null
  let joinAt = 0

  cluster.onEvent((observer, event, now) => {
    if (!('id' in event) || event.id === observer) { return }
    const subject = event.id
    const crashed = crashAt.has(subject)
    if (event.type === 'member:suspect' && event.from === observer && !crashed) { into.falseSuspicions++ }
    if (event.type === 'member:dead' && event.from === observer && !crashed) { into.falseDeaths++ }
    const t = track.get(subject)
    if (t === undefined) { return }
    if (crashed) {
      if (event.type === 'member:suspect' && t.firstSuspect < 0) { t.firstSuspect = now }
      if (event.type === 'member:dead') {
        if (t.firstDead < 0) { t.firstDead = now }
        t.dead.add(observer)
        if (t.covered < 0 && t.dead.size >= Math.ceil(COVERAGE * liveOthers(subject))) { t.covered = now }
      }
    } else if (event.type === 'member:join') {
      t.known.add(observer)
      if (t.covered < 0 && t.known.size >= Math.ceil(COVERAGE * liveOthers(subject))) { t.covered = now }
    }
  })

  // The members to crash, and the one to join, are drawn from the seed.
  const picks = [...ids]
  for (let i = picks.length - 1; i > 0; i--) {
    const j = cluster.rng.intBetween(0, i);
    [picks[i], picks[j]] = [picks[j], picks[i]]
  }
  for (const [i, id] of picks.slice(0, plan.crashes).entries()) {
    cluster.scheduler.at(WARMUP_MS + i * plan.gapMs, () => {
      crashAt.set(id, cluster.now)
      track.set(id, { firstSuspect: -1, firstDead: -1, dead: new Set(), known: new Set(), covered: -1 })
      cluster.crash(id)
    })
  }
  const joinSeed = picks[plan.crashes]
  cluster.scheduler.at(WARMUP_MS + plan.gapMs / 2, () => {
    joined = memberIds(1, `join${seed}`)[0]
    joinAt = cluster.now
    track.set(joined, { firstSuspect: -1, firstDead: -1, dead: new Set(), known: new Set(), covered: -1 })
    cluster.addMember(joined, { seeds: [joinSeed], config: { roster: undefined } })
  })

  // Start counting bytes after the warm-up.
  cluster.run(WARMUP_MS)
  const bytesBefore = cluster.stats.bytes
  const topicBytesBefore = cluster.stats.topicBytes
  const messagesBefore = cluster.stats.messages
  const endMs = WARMUP_MS + (plan.crashes - 1) * plan.gapMs + 40_000
  const allCovered = (): boolean => track.size === plan.crashes + 1 && [...track.values()].every(t => t.covered >= 0)
  cluster.run(endMs, () => cluster.now > WARMUP_MS + (plan.crashes - 1) * plan.gapMs && allCovered())
  const seconds = (cluster.now - WARMUP_MS) / 1000
  into.bytesPerMemberPerSecond += (cluster.stats.bytes - bytesBefore) / n / seconds / into.seeds
  into.topicBytesPerMemberPerSecond += (cluster.stats.topicBytes - topicBytesBefore) / n / seconds / into.seeds
  into.messagesPerMemberPerSecond += (cluster.stats.messages - messagesBefore) / n / seconds / into.seeds
  into.virtualSeconds += cluster.now / 1000

  for (const [id, t] of track) {
    if (id === joined) {
      if (t.covered >= 0) { into.joinCoverageMs.push(t.covered - joinAt) } else { console.log(`  seed ${seed}: join of ${id} not known by 99.99% within the run`) }
      continue
    }
    const at = crashAt.get(id) ?? 0
    into.failures++
    if (t.firstSuspect >= 0) { into.firstSuspectPeriods.push((t.firstSuspect - at) / PERIOD_MS) }
    if (t.firstDead >= 0) { into.firstDeadPeriods.push((t.firstDead - at) / PERIOD_MS) }
    if (t.covered >= 0 && t.firstDead >= 0) { into.deadSpreadMs.push(t.covered - t.firstDead) }
    if (t.covered >= 0) { into.deadCoverageMs.push(t.covered - at) } else { console.log(`  seed ${seed}: crash of ${id} not known by 99.99% within the run`) }
  }
}

function runSize (n: number, loss: number, seedsOverride: number | undefined): SizeResult {
  const plan = { ...(PLANS[n] ?? { seeds: 2, crashes: 4, gapMs: 12_000 }) }
  if (seedsOverride !== undefined) { plan.seeds = seedsOverride }
  const result: SizeResult = {
    members: n,
    seeds: plan.seeds,
    failures: 0,
    firstSuspectPeriods: [],
    firstDeadPeriods: [],
    deadCoverageMs: [],
    deadSpreadMs: [],
    joinCoverageMs: [],
    falseSuspicions: 0,
    falseDeaths: 0,
    bytesPerMemberPerSecond: 0,
    topicBytesPerMemberPerSecond: 0,
    messagesPerMemberPerSecond: 0,
    wallSeconds: 0,
    virtualSeconds: 0,
    heapMiB: 0
  }
  const began = performance.now()
  for (let seed = 1; seed <= plan.seeds; seed++) {
    runSeed(n, seed, plan, loss, result)
    result.heapMiB = Math.max(result.heapMiB, process.memoryUsage().heapUsed / 2 ** 20)
  }
  result.wallSeconds = (performance.now() - began) / 1000
  return result
}

function p (values: number[], q: number, digits = 1): string {
  const sorted = [...values].sort((a, b) => a - b)
  const v = percentile(sorted, q)
  return Number.isNaN(v) ? '-' : v.toFixed(digits)
}

const loss = Number(values.loss)
const sizes = values.sizes.split(',').map(Number)
const results: SizeResult[] = []
console.log(`SWIM + Lifeguard, simulated: ${PERIOD_MS} ms protocol period, 100 ms probe timeout, 1-5 ms latency, ${(loss * 100).toFixed(1)}% loss, ${values['no-topic'] ? 'no gossipsub topic' : `gossipsub topic modelled at ${values['topic-ms']} ms`}`)
for (const n of sizes) {
  console.log(`running ${n} members ...`)
  const r = runSize(n, loss, values.seeds === undefined ? undefined : Number(values.seeds))
  results.push(r)
  console.log(`  done in ${r.wallSeconds.toFixed(1)} s wall (${r.virtualSeconds.toFixed(0)} s virtual), heap ${r.heapMiB.toFixed(0)} MiB`)
}

const rows = results.map(r => [
  String(r.members),
  `${r.seeds}/${r.failures}`,
  `${p(r.firstSuspectPeriods, 0.5)} / ${p(r.firstSuspectPeriods, 0.99)}`,
  `${p(r.firstDeadPeriods, 0.5)} / ${p(r.firstDeadPeriods, 0.99)}`,
  `${p(r.deadCoverageMs.map(ms => ms / 1000), 0.5)} / ${p(r.deadCoverageMs.map(ms => ms / 1000), 0.99)}`,
  `${p(r.deadSpreadMs.map(ms => ms / 1000), 0.5)} / ${p(r.deadSpreadMs.map(ms => ms / 1000), 0.99)}`,
  `${p(r.joinCoverageMs.map(ms => ms / 1000), 0.5)} / ${p(r.joinCoverageMs.map(ms => ms / 1000), 0.99)}`,
  `${r.falseSuspicions} / ${r.falseDeaths}`,
  `${r.bytesPerMemberPerSecond.toFixed(0)} (${r.messagesPerMemberPerSecond.toFixed(1)} msg) + ${r.topicBytesPerMemberPerSecond.toFixed(0)} topic`,
  r.wallSeconds.toFixed(0)
])
const head = ['members', 'seeds/crashes', 'first suspect p50/p99 (periods)', 'first dead p50/p99 (periods)', 'dead @99.99% p50/p99 (s)', 'first dead to 99.99% p50/p99 (s)', 'join @99.99% p50/p99 (s)', 'false suspect / dead', 'bytes/member/s (SWIM + topic)', 'wall s']
const widths = head.map((h, i) => Math.max(h.length, ...rows.map(row => row[i].length)))
const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join('  ')
console.log()
console.log(line(head))
console.log(line(widths.map(w => '-'.repeat(w))))
for (const row of rows) { console.log(line(row)) }
console.log('\np99 over few samples is close to their maximum: seeds x crashes samples per size (one join per seed).')
const starvation = values['no-starvation'] ? null : await starvationRun()
writeJson({ periodMs: PERIOD_MS, loss, topicMs: values['no-topic'] ? null : Number(values['topic-ms']), results, starvation })
