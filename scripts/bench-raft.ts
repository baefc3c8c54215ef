/* eslint-disable no-console */
/**
 * npm run bench:raft [-- --seconds 10 --clients 1,64 --failover-trials 10 --failover kill,stop --rounds 1]
 *
 * Write throughput and latency of a 3-node accord cluster (3 OS processes,
 * libp2p over TCP on loopback, fsync on), 256-byte values, N concurrent
 * HTTP keep-alive clients sending PUTs to the leader. When `etcd` is on the
 * PATH (Debian: etcd-server), the same workload runs against a 3-member
 * etcd on loopback through its JSON gateway (POST /v3/kv/put) for a ratio.
 * Then leader failover: kill -9 the leader (and, separately, SIGSTOP it),
 * time until the next write commits, over several trials.
 *
 * Prints tables and writes bench/results/raft.json.
 */
import { execFileSync, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { Agent } from 'node:http'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { checkRunning, children, httpCall, load, onFreshCluster, randomPortBase, saveResults, spawnAccord, startRaftCluster, tracked, waitUntil } from './bench-lib.ts'
import { percentile } from './percentile.ts'
import type { LoadResult, RaftProc, Target } from './bench-lib.ts'
import type { ChildProcess } from 'node:child_process'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    clients: { type: 'string', default: '1,64' },
    'failover-trials': { type: 'string', default: '10' },
    'value-bytes': { type: 'string', default: '256' },
    systems: { type: 'string', default: 'accord,etcd' },
    /** Default: the node's own (--raft-tick-ms of accord start). */
    'raft-tick-ms': { type: 'string' },
    /** Which failovers to time: kill (kill -9 the leader), stop (SIGSTOP it: a hang). */
    failover: { type: 'string', default: 'kill,stop' },
    rounds: { type: 'string', default: '1' }
  }
})
const TICK_MS = values['raft-tick-ms']
const SYSTEMS = values.systems.split(',')
const SECONDS = Number(values.seconds)
const CLIENTS = values.clients.split(',').map(Number)
const FAILOVER_TRIALS = Number(values['failover-trials'])
const FAILOVERS = values.failover.split(',')
/** accord and etcd take turns this many times: the machine's speed drifts, so ratios come from neighbouring runs. */
const ROUNDS = Number(values.rounds)
const VALUE = 'v'.repeat(Number(values['value-bytes']))

// ---------------------------------------------------------------- etcd

function etcdAvailable (): string | null {
  try {
    return execFileSync('etcd', ['--version'], { encoding: 'utf8' }).split('\n')[0]
  } catch {
    return null
  }
}

async function startEtcd (root: string): Promise<{ target: Target, stop(): Promise<void> }> {
  const base = randomPortBase(12_000)
  const names = ['e0', 'e1', 'e2']
  const peer = (i: number): string => `http://127.0.0.1:${base + 10 + i}`
  const client = (i: number): string => `http://127.0.0.1:${base + i}`
  const initial = names.map((n, i) => `${n}=${peer(i)}`).join(',')
  const members = names.map((name, i) => tracked(spawn('etcd', [
    '--name', name, '--data-dir', join(root, name),
    '--listen-peer-urls', peer(i), '--initial-advertise-peer-urls', peer(i),
    '--listen-client-urls', client(i), '--advertise-client-urls', client(i),
    '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', `bench-${base}`,
    '--log-level', 'error'
  ], { stdio: 'ignore' })))
  const agent = new Agent({ keepAlive: true })
  const memberStatus = async (i: number): Promise<any> => JSON.parse((await httpCall(agent, client(i), 'POST', '/v3/maintenance/status', '{}')).text)
  const leaderUrl = async (): Promise<string> => {
    for (;;) {
      for (let i = 0; i < 3; i++) {
        const s = await memberStatus(i).catch(() => null)
        if (s?.header != null && s.leader === s.header.member_id) { return client(i) }
      }
      await sleep(50)
    }
  }
  // every member up, not just a quorum (a member that could not bind its port exits at once)
  const servers = (): Array<[string, ChildProcess]> => members.map((c, i) => [names[i], c])
  await waitUntil(async () => {
    checkRunning('etcd', servers(), 'at start')
    return (await Promise.all(names.map(async (_, i) => memberStatus(i).then(s => s?.header != null, () => false)))).every(Boolean)
  })
  await waitUntil(async () => leaderUrl().then(() => true))
  const b64 = (s: string): string => Buffer.from(s).toString('base64')
  return {
    target: {
      name: 'etcd',
      urls: async () => [await leaderUrl()],
      write: async (a, url, key) => (await httpCall(a, url, 'POST', '/v3/kv/put', JSON.stringify({ key: b64(key), value: b64(VALUE) }))).status,
      pids: () => members.map(c => c.pid ?? -1),
      checkRunning: when => { checkRunning('etcd', servers(), when) }
    },
    stop: async () => {
      agent.destroy()
      for (const c of members) { c.kill('SIGKILL') }
    }
  }
}

// ---------------------------------------------------------------- failover

/** Write through the given nodes in turn until one write commits. */
async function writeUntilCommitted (agent: Agent, nodes: RaftProc[], keyPrefix: string): Promise<void> {
  const deadline = performance.now() + 60_000
  for (let i = 0; performance.now() < deadline; i++) {
    const node = nodes[i % nodes.length]
    const status = await httpCall(agent, node.api, 'PUT', `/v1/kv/${keyPrefix}-${i}`, VALUE).then(r => r.status, () => 0)
    if (status === 200) { return }
    // a refused connection answers at once: do not spin on the cores the failover needs
    if (status === 0) { await sleep(5) }
  }
  throw new Error('no write committed within 60 s of the failure')
}

/**
 * kill: kill -9, whose connections the OS resets, so the followers know at
 * once (RaftNode.forgetLeader). stop: SIGSTOP, a silent failure (like a
 * machine that froze or a cut cable): the followers wait out the election
 * timeout.
 */
type FailureKind = 'kill' | 'stop'

async function failover (root: string, trials: number, kind: FailureKind): Promise<number[]> {
  const { procs, leaderUrl: findLeader, stop } = await startRaftCluster(join(root, `failover-${kind}`), { tickMs: TICK_MS, value: VALUE })
  const agent = new Agent({ keepAlive: true })
  const results: number[] = []
  try {
    for (let t = 0; t < trials; t++) {
      const leaderUrl = await findLeader()
      const victim = procs.find(p => p.api === leaderUrl) as RaftProc
      const failedAt = performance.now()
      victim.child.kill(kind === 'kill' ? 'SIGKILL' : 'SIGSTOP')
      await writeUntilCommitted(agent, procs.filter(x => x !== victim), `failover-${kind}-${t}`)
      results.push(performance.now() - failedAt)
      console.error(`failover (${kind}) trial ${t + 1}/${trials}: ${results[t].toFixed(0)} ms`)
      // bring the victim back and let it catch up before the next trial
      if (kind === 'stop') {
        victim.child.kill('SIGCONT')
      } else {
        victim.child = spawnAccord(victim.dataDir, [])
      }
      await waitUntil(async () => (await httpCall(agent, victim.api, 'GET', '/v1/raft/members', '')).status === 200)
      await sleep(1500)
    }
  } finally {
    agent.destroy()
    await stop()
  }
  return results
}

// ---------------------------------------------------------------- main

/** One round of one system: every client count against a fresh cluster (a new one if a server exits, see onFreshCluster). */
async function measureRound (start: (attempt: number) => Promise<{ target: Target, stop(): Promise<void> }>): Promise<LoadResult[]> {
  return onFreshCluster(start, async cluster => {
    const results: LoadResult[] = []
    for (const c of CLIENTS) { results.push(await load(cluster.target, c, SECONDS)) }
    return results
  })
}

const root = await mkdtemp(join(tmpdir(), 'accord-bench-raft-'))
const etcdVersion = etcdAvailable()
const rows: Array<{ round: number, system: string, result: LoadResult }> = []
try {
  for (let round = 1; round <= ROUNDS; round++) {
    if (SYSTEMS.includes('accord')) {
      for (const result of await measureRound(async attempt => startRaftCluster(join(root, `load-${round}-${attempt}`), { tickMs: TICK_MS, value: VALUE }))) { rows.push({ round, system: 'accord', result }) }
    }
    if (etcdVersion != null && SYSTEMS.includes('etcd')) {
      for (const result of await measureRound(async attempt => startEtcd(join(root, `etcd-${round}-${attempt}`)))) { rows.push({ round, system: 'etcd', result }) }
    }
  }
  const failovers = FAILOVER_TRIALS > 0 && FAILOVERS.includes('kill') ? await failover(root, FAILOVER_TRIALS, 'kill') : []
  const silentFailovers = FAILOVER_TRIALS > 0 && FAILOVERS.includes('stop') ? await failover(root, FAILOVER_TRIALS, 'stop') : []

  console.log(`raft writes: 3 nodes on loopback, fsync on, ${VALUE.length}-byte values, ${SECONDS} s per run, raft tick ${TICK_MS != null ? `${TICK_MS} ms` : 'the node default'}, ${cpus().length} cores, load average ${loadavg()[0].toFixed(1)}`)
  console.log('| round | system | clients | writes/s | p50 ms | p99 ms | server CPU ms/write | errors |')
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|')
  for (const { round, system, result: r } of rows) {
    console.log(`| ${round} | ${system} | ${r.clients} | ${r.writesPerSecond.toFixed(0)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${r.serverCpuMsPerWrite.toFixed(3)} | ${r.errors} |`)
  }
  const ratios = rows.filter(r => r.system === 'accord').map(({ round, result: a }) => {
    const e = rows.find(r => r.system === 'etcd' && r.round === round && r.result.clients === a.clients)?.result
    return e != null
      ? { round, clients: a.clients, throughputRatio: a.writesPerSecond / e.writesPerSecond, p50Ratio: a.p50Ms / e.p50Ms, p99Ratio: a.p99Ms / e.p99Ms, cpuRatio: a.serverCpuMsPerWrite / e.serverCpuMsPerWrite }
      : null
  }).filter(r => r != null)
  if (etcdVersion == null) { console.log('etcd not on PATH: no comparison (apt-get install etcd-server)') } else {
    console.log(`\naccord / ${etcdVersion} (median over ${ROUNDS} round(s))`)
    console.log('| clients | writes/s ratio | p50 ratio | p99 ratio | server CPU per write ratio |')
    console.log('|---:|---:|---:|---:|---:|')
    for (const c of CLIENTS) {
      const mine = ratios.filter(r => r.clients === c)
      if (mine.length === 0) { continue }
      const median = (pick: (r: typeof mine[number]) => number): string => percentile(mine.map(pick).sort((x, y) => x - y), 0.5).toFixed(2)
      console.log(`| ${c} | ${median(r => r.throughputRatio)} | ${median(r => r.p50Ratio)} | ${median(r => r.p99Ratio)} | ${median(r => r.cpuRatio)} |`)
    }
  }
  for (const [what, times] of [['kill -9 the leader', failovers], ['SIGSTOP the leader (silent: no connection reset)', silentFailovers]] as const) {
    if (times.length === 0) { continue }
    const sorted = [...times].sort((a, b) => a - b)
    console.log(`\nleader failover (${what} → next committed write), ${times.length} trials`)
    console.log(`p50 ${percentile(sorted, 0.5).toFixed(0)} ms, p99 ${percentile(sorted, 0.99).toFixed(0)} ms, max ${sorted[sorted.length - 1].toFixed(0)} ms`)
  }
  await saveResults('raft', {
    seconds: SECONDS,
    rounds: ROUNDS,
    raftTickMs: TICK_MS ?? 'default',
    loadAverage: loadavg()[0],
    valueBytes: VALUE.length,
    etcd: etcdVersion,
    load: rows,
    ratios,
    failoverMs: failovers,
    silentFailoverMs: silentFailovers
  })
} finally {
  // also after a failure: no node or etcd member outlives the run (or its data dir)
  for (const child of children) { child.kill('SIGKILL') }
  await rm(root, { recursive: true, force: true })
}
process.exit(0)
