/* eslint-disable no-console */
/**
 * npm run bench:pbft [-- --seconds 10 --clients 1,64 --replicas 4,7 --trials 5 --workloads null,write --raft on --cpu-prof DIR]
 *
 * Throughput and latency of a PBFT replica set of n `accord start`
 * processes (libp2p over TCP on loopback, fsync on, --raft off), for each n
 * in --replicas: null operations (POST /v1/bft/noop, ordered through the
 * three phases like any write, executing as nothing) and 256-byte KV writes
 * (PUT /v1/bft/kv/<key>), at each client count. The clients are HTTP
 * keep-alive connections spread round-robin over the replicas' HTTP APIs,
 * backups first: each node's API is a PBFT client of its own (it signs
 * the requests with its key and waits for f+1 matching replies; at most 64
 * operations in flight per node), and the primary batches what arrives
 * while the previous batches are in flight. Then the view change: kill -9
 * the primary, time until the surviving replicas are in a new view and
 * until the next write through a surviving node commits; the victim is
 * restarted and caught up before the next trial (--trials per n).
 *
 * In the same run the same write workload goes to a 3-node accord Raft
 * cluster (PUT /v1/kv/<key> to the leader), for comparison; Raft has no
 * ordered null operation in its API, so it has no null row.
 *
 * --cpu-prof DIR runs the PBFT replicas under `node --cpu-prof` and stops
 * them with SIGTERM, so each writes a .cpuprofile into DIR (a replica killed
 * by a view-change trial writes none: use --trials 0). --keep-data keeps
 * the data directories and the replicas' logs (<tmp>/accord-bench-pbft-*).
 *
 * Prints tables and writes bench/results/pbft.json; exits non-zero when a
 * measurement fails (not when a target is missed: the targets are printed).
 */
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { Agent } from 'node:http'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { loadOrCreateIdentity } from '../node/identity.ts'
import { checkRunning, children, getJson, httpCall, isRunning, load, onFreshCluster, randomPortBase, saveResults, ServerExitedError, spawnAccord, startRaftCluster, waitQuiet, waitUntil } from './bench-lib.ts'
import { percentile } from './percentile.ts'
import type { LoadResult, Target } from './bench-lib.ts'
import type { BftSummary } from '../node/pbft/service.ts'
import type { ChildProcess } from 'node:child_process'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    clients: { type: 'string', default: '1,64' },
    replicas: { type: 'string', default: '4,7' },
    trials: { type: 'string', default: '5' },
    workloads: { type: 'string', default: 'null,write' },
    'value-bytes': { type: 'string', default: '256' },
    raft: { type: 'string', default: 'on' },
    'raft-tick-ms': { type: 'string', default: '100' },
    'cpu-prof': { type: 'string' },
    'keep-data': { type: 'boolean', default: false }
  }
})
const SECONDS = Number(values.seconds)
const CLIENTS = values.clients.split(',').map(Number)
const REPLICAS = values.replicas.split(',').map(Number)
const TRIALS = Number(values.trials)
type Workload = 'null' | 'write'
const WORKLOADS = values.workloads.split(',') as Workload[]
const VALUE = 'v'.repeat(Number(values['value-bytes']))
const RAFT = values.raft === 'on'
const CPU_PROF_DIR = values['cpu-prof']
for (const w of WORKLOADS) { if (w !== 'null' && w !== 'write') { throw new Error(`--workloads: unknown workload ${w} (null, write)`) } }
for (const n of REPLICAS) { if (!Number.isInteger(n) || n < 4) { throw new Error(`--replicas: ${n} is not a replica count of 4 or more (f >= 1)`) } }

/**
 * A cluster is measured once its idle servers use less than this (% of a
 * core each), or QUIET_WAIT_MS_MAX after it started: the steady background
 * (membership, gossipsub, DHT, PBFT ticks) was 4 to 6% per server here.
 */
const QUIET_PERCENT_PER_SERVER = 8
const QUIET_WAIT_MS_MAX = 15_000

/** The issue's targets. */
const TARGET = { n: 4, clients: 64, opsPerSecondMin: 5000, p50MsMax: 10, viewChangeMsMax: 1000 }

const workloadName = (w: Workload): string => w === 'null' ? 'null op' : `write ${VALUE.length} B`
const faults = (n: number): number => Math.floor((n - 1) / 3)

// ---------------------------------------------------------------- a PBFT replica set

interface Replica {
  index: number
  peerId: string
  dataDir: string
  api: string
  logFile: string
  child: ChildProcess
}

interface PbftCluster {
  n: number
  /** CPU use of the idle replica set before the runs, in % of one core (membership, gossipsub, DHT, PBFT ticks). */
  idleCpuPercent: number
  replicas: Replica[]
  agent: Agent
  summaries(): Promise<Array<BftSummary | null>>
  target(workload: Workload): Target
  restart(replica: Replica): void
  stop(): Promise<void>
}

async function bftSummary (agent: Agent, replica: Replica): Promise<BftSummary | null> {
  return getJson(agent, replica.api, '/v1/bft').catch(() => null)
}

async function operate (agent: Agent, url: string, workload: Workload, key: string): Promise<number> {
  const { status } = workload === 'null'
    ? await httpCall(agent, url, 'POST', '/v1/bft/noop', '{}', 'application/json', 15_000)
    : await httpCall(agent, url, 'PUT', `/v1/bft/kv/${key}`, VALUE, 'application/octet-stream', 15_000)
  return status
}

async function startPbft (root: string, n: number): Promise<PbftCluster> {
  const base = randomPortBase(23_000)
  const nodeOptions = CPU_PROF_DIR != null ? ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF_DIR}`] : []
  // the replica set is made from the identities first, as an operator would
  const identities = await Promise.all(Array.from({ length: n }, async (_, i) => {
    const dataDir = join(root, `replica-${i}`)
    return { dataDir, peerId: (await loadOrCreateIdentity(dataDir)).peerId.toString() }
  }))
  const set = identities.map(r => r.peerId)
  const launch = (i: number, extra: string[]): Replica => {
    const { dataDir, peerId } = identities[i]
    const logFile = join(root, `replica-${i}.log`)
    const args = ['--listen', `/ip4/127.0.0.1/tcp/${base + 100 + i}`, '--api', `127.0.0.1:${base + i}`, '--log-level', 'warn', '--raft', 'off', '--bft-replicas', set.join(','), ...extra]
    return { index: i, peerId, dataDir, api: `http://127.0.0.1:${base + i}`, logFile, child: spawnAccord(dataDir, args, { nodeOptions, logFile }) }
  }
  const agent = new Agent({ keepAlive: true })
  const replicas = [launch(0, [])]
  const servers = (): Array<[string, ChildProcess]> => replicas.map(r => [`replica ${r.index}`, r.child])
  const status = async (r: Replica): Promise<any> => getJson(agent, r.api, '/v1/status')
  await waitUntil(async () => { checkRunning(`pbft n=${n}`, servers(), 'at start'); return (await status(replicas[0])) != null })
  const bootstrap = (await status(replicas[0])).addresses[0]
  const { token } = JSON.parse((await httpCall(agent, replicas[0].api, 'POST', '/v1/admission/tokens', '{}', 'application/json')).text)
  for (let i = 1; i < n; i++) { replicas.push(launch(i, ['--bootstrap', bootstrap, '--join-token', token])) }
  // every replica admitted every other, so none times out relaying to a primary that does not serve it yet
  await waitUntil(async () => {
    checkRunning(`pbft n=${n}`, servers(), 'at start')
    const all = await Promise.all(replicas.map(status))
    return all.every((s, i) => s != null && set.every(id => id === replicas[i].peerId || (s.admission?.admittedPeers ?? []).includes(id)))
  }, 120_000, `${n} replicas to admit each other`)
  // the first operation through a node opens its client's KV session: not part of a measurement
  for (const r of replicas) {
    await waitUntil(async () => { checkRunning(`pbft n=${n}`, servers(), 'at start'); return (await operate(agent, r.api, 'write', `warm-${r.index}`)) === 200 }, 120_000, `a first write through replica ${r.index}`)
  }
  const summaries = async (): Promise<Array<BftSummary | null>> => Promise.all(replicas.map(async r => bftSummary(agent, r)))
  const idleCpuPercent = await waitQuiet(replicas.map(r => r.child.pid ?? -1), QUIET_PERCENT_PER_SERVER * n, QUIET_WAIT_MS_MAX)
  return {
    n,
    idleCpuPercent,
    replicas,
    agent,
    summaries,
    target: workload => ({
      name: `pbft n=${n}`,
      // backups first, the primary last (one client then talks to a backup, as most clients would)
      urls: async () => {
        const primary = (await summaries()).find(s => s != null)?.primary
        return [...replicas.filter(r => r.peerId !== primary), ...replicas.filter(r => r.peerId === primary)].map(r => r.api)
      },
      write: async (a, url, key) => operate(a, url, workload, key),
      pids: () => replicas.map(r => r.child.pid ?? -1),
      checkRunning: when => { checkRunning(`pbft n=${n}`, servers(), when) }
    }),
    restart: replica => {
      // accord.json holds every setting: --data-dir alone restarts it as it was
      replica.child = spawnAccord(replica.dataDir, [], { nodeOptions, logFile: replica.logFile })
    },
    stop: async () => {
      agent.destroy()
      if (CPU_PROF_DIR != null) {
        // a profile is written only by a process that exits by itself
        await Promise.all(replicas.filter(r => isRunning(r.child)).map(async r => {
          const exited = new Promise(resolve => r.child.once('exit', resolve))
          r.child.kill('SIGTERM')
          await Promise.race([exited, sleep(20_000)])
        }))
      }
      for (const r of replicas) { r.child.kill('SIGKILL') }
    }
  }
}

/** A counter's value in a node's /metrics (NaN when absent). */
async function metric (agent: Agent, url: string, name: string): Promise<number> {
  const { text } = await httpCall(agent, url, 'GET', '/metrics', '')
  const line = text.split('\n').find(l => l.startsWith(`${name} `))
  return line == null ? NaN : Number(line.split(' ').at(-1))
}

interface PbftLoadRow {
  n: number
  workload: Workload
  result: LoadResult
  /** Client requests per batch (pre-prepare) on one backup over the run: executed requests / sequence numbers. */
  requestsPerBatch: number
  /** Views changed during the run (0 in a steady run). */
  viewChanges: number
}

async function pbftLoad (cluster: PbftCluster, workload: Workload, clients: number): Promise<PbftLoadRow> {
  const probe = cluster.replicas[1]
  const before = await bftSummary(cluster.agent, probe)
  const requestsBefore = await metric(cluster.agent, probe.api, 'accord_pbft_executed_requests_total')
  const result = await load(cluster.target(workload), clients, SECONDS)
  const after = await bftSummary(cluster.agent, probe)
  const requestsAfter = await metric(cluster.agent, probe.api, 'accord_pbft_executed_requests_total')
  const batches = (after?.executed ?? NaN) - (before?.executed ?? NaN)
  return { n: cluster.n, workload, result, requestsPerBatch: (requestsAfter - requestsBefore) / batches, viewChanges: (after?.view ?? NaN) - (before?.view ?? NaN) }
}

// ---------------------------------------------------------------- view change

interface ViewChangeTrial {
  fromView: number
  toView: number
  /** kill → the first surviving replica changing views (or in a later view). */
  detectMs: number
  /** kill → 2f+1 surviving replicas in a later view, none of them still changing. */
  newViewMs: number
  /** kill → the first write through a surviving node (sent at the kill, retried) committed: the view change as a client sees it. */
  writeMs: number
  /** restart of the victim → its HTTP API answers. */
  apiUpMs: number
  /** restart of the victim → every replica having executed the same sequence number, 2f+1 in one view (see settle). */
  catchUpMs: number
}

/**
 * Every replica running and answering, all having executed the same
 * sequence number (a restarted one caught up), and 2f+1 of them in one
 * view, not changing views (a straggler that suspects the primary alone
 * changes nothing). Resolves with one of those 2f+1's summary. `via`: the
 * replicas that send the no-ops that give a lagging replica something to
 * catch up from.
 */
async function settle (cluster: PbftCluster, what: string, via: Replica[]): Promise<BftSummary> {
  let last: Array<BftSummary | null> = []
  let settled: BftSummary | undefined
  let i = 0
  const quorum = 2 * faults(cluster.n) + 1
  await waitUntil(async () => {
    cluster.target('null').checkRunning(what)
    if (i++ % 5 === 0) { await operate(cluster.agent, via[i % via.length].api, 'null', '').catch(() => 0) }
    last = await cluster.summaries()
    const s = last.filter(x => x != null)
    if (s.length < cluster.n || s.some(x => x.executed !== s[0].executed)) { return false }
    settled = s.find(x => !x.viewChanging && s.filter(y => y.view === x.view && !y.viewChanging).length >= quorum)
    return settled !== undefined
  }, 90_000, () => `the replicas to settle ${what} (last: ${JSON.stringify(last.map(x => x == null ? null : { view: x.view, changing: x.viewChanging, executed: x.executed }))})`)
  return settled as BftSummary
}

async function viewChangeTrial (cluster: PbftCluster, trial: number): Promise<ViewChangeTrial> {
  const { n, agent } = cluster
  const before = await settle(cluster, `before view-change trial ${trial}`, cluster.replicas)
  const victim = cluster.replicas.find(r => r.peerId === before.primary)
  if (victim == null) { throw new Error(`the primary ${before.primary} is not one of the replicas`) }
  const survivors = cluster.replicas.filter(r => r !== victim)
  const quorum = 2 * faults(n) + 1
  const fromView = before.view as number
  const pollAgent = new Agent({ keepAlive: true })
  let detectMs = NaN
  let newViewMs = NaN
  let toView = NaN
  let writeMs = NaN

  const killedAt = performance.now()
  victim.child.kill('SIGKILL')
  const polling = (async () => {
    while (performance.now() - killedAt < 60_000 && (Number.isNaN(newViewMs) || Number.isNaN(writeMs))) {
      const s = (await Promise.all(survivors.map(async r => bftSummary(pollAgent, r)))).filter(x => x != null)
      const at = performance.now() - killedAt
      if (Number.isNaN(detectMs) && s.some(x => x.viewChanging || (x.view ?? 0) > fromView)) { detectMs = at }
      const moved = s.filter(x => (x.view ?? 0) > fromView && !x.viewChanging)
      if (Number.isNaN(newViewMs) && moved.length >= quorum) { newViewMs = at; toView = Math.max(...moved.map(x => x.view ?? 0)) }
      await sleep(20)
    }
  })()
  // the write that finds the primary gone: its client retransmits it to every replica, and the new primary orders it
  for (let i = 0; performance.now() - killedAt < 60_000; i++) {
    const status = await operate(agent, survivors[i % survivors.length].api, 'write', `view-change-${trial}-${i}`).catch(() => 0)
    if (status === 200) { writeMs = performance.now() - killedAt; break }
    if (status === 0) { await sleep(5) }
  }
  await polling
  pollAgent.destroy()
  if (Number.isNaN(writeMs)) { throw new Error(`pbft n=${n}: no write committed within 60 s of killing the primary`) }

  const restartedAt = performance.now()
  cluster.restart(victim)
  await waitUntil(async () => (await bftSummary(agent, victim)) != null, 60_000, `replica ${victim.index} to answer after its restart`)
  const apiUpMs = performance.now() - restartedAt
  await settle(cluster, `after restarting replica ${victim.index}`, survivors)
  const trialResult = { fromView, toView, detectMs, newViewMs, writeMs, apiUpMs, catchUpMs: performance.now() - restartedAt }
  console.error(`pbft n=${n} view change ${trial + 1}/${TRIALS}: view ${fromView} → ${toView}, detected ${detectMs.toFixed(0)} ms, new view ${newViewMs.toFixed(0)} ms, write committed ${writeMs.toFixed(0)} ms; victim restarted: API up in ${apiUpMs.toFixed(0)} ms, caught up in ${trialResult.catchUpMs.toFixed(0)} ms`)
  return trialResult
}

// ---------------------------------------------------------------- main

const root = await mkdtemp(join(tmpdir(), 'accord-bench-pbft-'))
const pbftRows: PbftLoadRow[] = []
const raftRows: LoadResult[] = []
const viewChanges: Array<{ n: number, trials: ViewChangeTrial[] }> = []
const idle: Array<{ system: string, n: number, cpuPercent: number }> = []
let exitCode = 0
try {
  if (CPU_PROF_DIR != null) { await mkdir(CPU_PROF_DIR, { recursive: true }) }
  for (const n of REPLICAS) {
    const { rows, trials, idleCpuPercent } = await onFreshCluster(async attempt => {
      const cluster = await startPbft(join(root, `pbft-${n}-${attempt}`), n)
      console.error(`pbft n=${n}: ${cluster.replicas.map(r => `replica ${r.index} pid ${r.child.pid} ${r.api}`).join(', ')}`)
      return cluster
    }, async cluster => {
      const rows: PbftLoadRow[] = []
      for (const workload of WORKLOADS) {
        for (const c of CLIENTS) {
          rows.push(await pbftLoad(cluster, workload, c))
          const r = rows[rows.length - 1].result
          console.error(`pbft n=${n} ${workloadName(workload)} ${c} clients: ${r.writesPerSecond.toFixed(0)} ops/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, ${r.errors} errors`)
        }
      }
      const trials: ViewChangeTrial[] = []
      for (let t = 0; t < TRIALS; t++) { trials.push(await viewChangeTrial(cluster, t)) }
      return { rows, trials, idleCpuPercent: cluster.idleCpuPercent }
    }).catch(async err => {
      if (err instanceof ServerExitedError) {
        // the log of the replica that died says why
        for (const entry of await readLogs(root)) { console.error(entry) }
      }
      throw err
    })
    pbftRows.push(...rows)
    viewChanges.push({ n, trials })
    idle.push({ system: 'pbft', n, cpuPercent: idleCpuPercent })
  }
  if (RAFT) {
    raftRows.push(...await onFreshCluster(async attempt => startRaftCluster(join(root, `raft-${attempt}`), { tickMs: values['raft-tick-ms'], value: VALUE }), async cluster => {
      idle.push({ system: 'raft', n: 3, cpuPercent: await waitQuiet(cluster.target.pids(), QUIET_PERCENT_PER_SERVER * 3, QUIET_WAIT_MS_MAX) })
      const rows: LoadResult[] = []
      for (const c of CLIENTS) { rows.push(await load(cluster.target, c, SECONDS)) }
      return rows
    }))
  }

  console.log(`\npbft and raft on loopback (libp2p over TCP, fsync on), ${SECONDS} s per run after 1 s of warm-up, ${cpus().length} cores shared by every process and the load generator`)
  console.log(`idle servers before the runs (CPU, % of one core): ${idle.map(i => `${i.system} n=${i.n} ${i.cpuPercent.toFixed(0)}%`).join(', ')}`)
  console.log('| system | n | operation | clients | ops/s | p50 ms | p99 ms | server CPU ms/op | requests/batch | view changes | errors |')
  console.log('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const { n, workload, result: r, requestsPerBatch, viewChanges } of pbftRows) {
    console.log(`| pbft | ${n} | ${workloadName(workload)} | ${r.clients} | ${r.writesPerSecond.toFixed(0)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${r.serverCpuMsPerWrite.toFixed(3)} | ${requestsPerBatch.toFixed(1)} | ${viewChanges} | ${r.errors} |`)
  }
  if (RAFT) {
    if (WORKLOADS.includes('null')) { console.log('| raft | 3 | null op | | n/a: Raft\'s API has no ordered no-op | | | | | | |') }
    for (const r of raftRows) {
      console.log(`| raft | 3 | ${workloadName('write')} | ${r.clients} | ${r.writesPerSecond.toFixed(0)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${r.serverCpuMsPerWrite.toFixed(3)} | | | ${r.errors} |`)
    }
  }
  const stats = (xs: number[]): { p50: number, max: number } => {
    const sorted = xs.filter(x => !Number.isNaN(x)).sort((a, b) => a - b)
    return { p50: percentile(sorted, 0.5), max: sorted[sorted.length - 1] ?? NaN }
  }
  if (viewChanges.some(v => v.trials.length > 0)) {
    console.log('\nview change: kill -9 the primary (ms after the kill; p50 / max over the trials)')
    console.log('| n | trials | a backup changing views | 2f+1 in the new view | next write committed |')
    console.log('|---:|---:|---:|---:|---:|')
    for (const { n, trials } of viewChanges) {
      const cell = (pick: (t: ViewChangeTrial) => number): string => { const s = stats(trials.map(pick)); return `${s.p50.toFixed(0)} / ${s.max.toFixed(0)}` }
      console.log(`| ${n} | ${trials.length} | ${cell(t => t.detectMs)} | ${cell(t => t.newViewMs)} | ${cell(t => t.writeMs)} |`)
    }
  }

  const targetRows = pbftRows.filter(r => r.n === TARGET.n && r.result.clients === TARGET.clients)
  const targets = {
    throughput: targetRows.map(r => ({ workload: r.workload, opsPerSecond: r.result.writesPerSecond, p50Ms: r.result.p50Ms, met: r.result.writesPerSecond >= TARGET.opsPerSecondMin && r.result.p50Ms <= TARGET.p50MsMax })),
    viewChange: viewChanges.filter(v => v.trials.length > 0).map(v => { const s = stats(v.trials.map(t => t.writeMs)); return { n: v.n, p50Ms: s.p50, maxMs: s.max, met: s.max < TARGET.viewChangeMsMax } })
  }
  console.log(`\ntargets (issue): n = ${TARGET.n}, ${TARGET.clients} clients: >= ${TARGET.opsPerSecondMin} ops/s with p50 <= ${TARGET.p50MsMax} ms; view change (next write committed) < ${TARGET.viewChangeMsMax} ms`)
  for (const t of targets.throughput) { console.log(`  ${workloadName(t.workload)}: ${t.opsPerSecond.toFixed(0)} ops/s, p50 ${t.p50Ms.toFixed(2)} ms: ${t.met ? 'met' : 'MISSED'}`) }
  for (const t of targets.viewChange) { console.log(`  view change n = ${t.n}: p50 ${t.p50Ms.toFixed(0)} ms, max ${t.maxMs.toFixed(0)} ms: ${t.met ? 'met' : 'MISSED'}`) }

  await saveResults('pbft', {
    seconds: SECONDS,
    valueBytes: VALUE.length,
    clients: CLIENTS,
    targets,
    pbft: pbftRows,
    raft: raftRows.map(result => ({ n: 3, workload: 'write', result })),
    viewChange: viewChanges,
    idleCpuPercent: idle
  })
  if (pbftRows.some(r => r.result.writes === 0) || raftRows.some(r => r.writes === 0)) {
    console.error('bench:pbft: a run completed no operation')
    exitCode = 1
  }
} catch (err) {
  console.error(`bench:pbft failed: ${err instanceof Error ? err.stack : String(err)}`)
  exitCode = 1
} finally {
  // also after a failure: no node outlives the run (or its data dir)
  for (const child of children) { child.kill('SIGKILL') }
  if (values['keep-data']) { console.error(`data dirs and replica logs kept in ${root}`) } else { await rm(root, { recursive: true, force: true }) }
}
process.exit(exitCode)

/** The last lines of every replica log under `dir` that has any. */
async function readLogs (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const sub of await readdir(dir).catch(() => [])) {
    for (const file of (await readdir(join(dir, sub)).catch(() => [])).filter(f => f.endsWith('.log'))) {
      const text = (await readFile(join(dir, sub, file), 'utf8').catch(() => '')).trim()
      // a crash's reason (its first error line), else the last lines
      const lines = text.split('\n')
      const error = lines.find(l => /Error|error/.test(l))
      if (text !== '') { out.push(`${sub}/${file}: ${error ?? lines.slice(-3).join(' | ')}`) }
    }
  }
  return out
}
