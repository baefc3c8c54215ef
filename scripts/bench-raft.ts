/* eslint-disable no-console */
/**
 * npm run bench:raft [-- --seconds 10 --clients 1,64 --failover-trials 10 --rounds 1]
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
import { spawn } from 'node:child_process'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { percentile } from './percentile.ts'
import type { ChildProcess } from 'node:child_process'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    clients: { type: 'string', default: '1,64' },
    'failover-trials': { type: 'string', default: '10' },
    'value-bytes': { type: 'string', default: '256' },
    systems: { type: 'string', default: 'accord,etcd' },
    'raft-tick-ms': { type: 'string', default: '100' },
    rounds: { type: 'string', default: '1' }
  }
})
const TICK_MS = values['raft-tick-ms']
const SYSTEMS = values.systems.split(',')
const SECONDS = Number(values.seconds)
const CLIENTS = values.clients.split(',').map(Number)
const FAILOVER_TRIALS = Number(values['failover-trials'])
/** accord and etcd take turns this many times: the machine's speed drifts, so ratios come from neighbouring runs. */
const ROUNDS = Number(values.rounds)
const VALUE = 'v'.repeat(Number(values['value-bytes']))
const CLI = fileURLToPath(new URL('../node/cli.ts', import.meta.url))

interface Target {
  name: string
  /** Throws ServerExitedError if a server process is no longer running (a round with one gone measures a smaller cluster). */
  checkRunning(when: string): void
  /** URL of the node to send writes to (the leader). */
  leaderUrl(): Promise<string>
  write(agent: Agent, url: string, key: string): Promise<number>
  /** The server processes, whose CPU time is charged to the writes. */
  pids(): number[]
}

function httpCall (agent: Agent, url: string, method: string, path: string, body: string, contentType?: string): Promise<{ status: number, text: string }> {
  return new Promise((resolve, reject) => {
    const headers = { 'content-length': Buffer.byteLength(body), ...(contentType != null ? { 'content-type': contentType } : {}) }
    const req = request(`${url}${path}`, { method, agent, headers, timeout: 10_000 }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { text += d })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, text }) })
    })
    req.on('error', reject)
    req.on('timeout', () => { req.destroy(new Error('timeout')) })
    req.end(body)
  })
}

/** Every process the run starts, killed at the end whatever happens. */
const children = new Set<ChildProcess>()
function tracked (child: ChildProcess): ChildProcess {
  children.add(child)
  return child
}

/** A server process of the cluster under test exited: the measurement is void. */
class ServerExitedError extends Error {}

const isRunning = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null

/** Throws ServerExitedError naming those of `servers` (name, process) of `system` that are no longer running. */
function checkRunning (system: string, servers: Array<[string, ChildProcess]>, when: string): void {
  const exited = servers.filter(([, c]) => !isRunning(c)).map(([name, c]) => `${name} (${c.signalCode ?? `exit code ${c.exitCode}`})`)
  if (exited.length > 0) { throw new ServerExitedError(`${system}: ${exited.join(', ')} exited ${when}`) }
}

interface LoadResult {
  clients: number
  writes: number
  writesPerSecond: number
  p50Ms: number
  p99Ms: number
  errors: number
  /** CPU time (user + system, all threads) of the three servers per write; NaN without /proc. */
  serverCpuMsPerWrite: number
}

/** CPU time a process has used so far, in ms (Linux /proc; NaN elsewhere or once it is gone). */
function cpuMsOf (pid: number): number {
  try {
    // fields after the command name: utime is the 12th, stime the 13th, in clock ticks (100 per second)
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return NaN
  }
}

async function load (target: Target, clients: number): Promise<LoadResult> {
  const url = await target.leaderUrl()
  const agent = new Agent({ keepAlive: true, maxSockets: clients })
  const latencies: number[] = []
  let errors = 0
  const warmupEnd = performance.now() + 1000
  const end = warmupEnd + SECONDS * 1000
  const pids = target.pids()
  let cpuAtWarmupEnd: number[] = []
  const warmedUp = setTimeout(() => { cpuAtWarmupEnd = pids.map(cpuMsOf) }, 1000)
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    let i = 0
    while (performance.now() < end) {
      const t = performance.now()
      try {
        const status = await target.write(agent, url, `bench-${c}-${i++}`)
        if (status !== 200) { errors++ } else if (t >= warmupEnd) { latencies.push(performance.now() - t) }
      } catch {
        errors++
      }
    }
  }))
  clearTimeout(warmedUp)
  target.checkRunning('during the run')
  const serverCpuMs = pids.map(cpuMsOf).reduce((sum, ms, i) => sum + ms - (cpuAtWarmupEnd[i] ?? NaN), 0)
  agent.destroy()
  latencies.sort((a, b) => a - b)
  return {
    clients,
    writes: latencies.length,
    writesPerSecond: latencies.length / SECONDS,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    errors,
    serverCpuMsPerWrite: serverCpuMs / latencies.length
  }
}

// ---------------------------------------------------------------- accord

interface Proc { child: ChildProcess, dataDir: string, api: string, args: string[] }

async function startAccord (root: string): Promise<{ procs: Proc[], target: Target, stop(): Promise<void> }> {
  // below Linux's ephemeral ports (32768 and up), which outgoing connections may hold
  const base = 23_000 + Math.floor(Math.random() * 9_000)
  const procs: Proc[] = []
  const launch = (i: number, extra: string[]): Proc => {
    const dataDir = join(root, `accord-${i}`)
    const args = ['--listen', `/ip4/127.0.0.1/tcp/${base + 100 + i}`, '--api', `127.0.0.1:${base + i}`, '--log-level', 'warn', '--raft-tick-ms', TICK_MS, ...extra]
    const child = tracked(spawn(process.execPath, [CLI, 'start', '--data-dir', dataDir, ...args], { stdio: 'ignore', env: { ...process.env, NODE_OPTIONS: '' } }))
    return { child, dataDir, api: `http://127.0.0.1:${base + i}`, args }
  }
  procs.push(launch(0, []))
  const agent = new Agent({ keepAlive: true })
  const status = async (p: Proc): Promise<any> => JSON.parse((await httpCall(agent, p.api, 'GET', '/v1/raft/members', '')).text)
  await waitUntil(async () => status(procs[0]).then(s => s.role === 'leader', () => false))
  const self = JSON.parse((await httpCall(agent, procs[0].api, 'GET', '/v1/status', '')).text)
  const bootstrap = self.addresses[0]
  const { token } = JSON.parse((await httpCall(agent, procs[0].api, 'POST', '/v1/admission/tokens', '{}', 'application/json')).text)
  procs.push(launch(1, ['--bootstrap', bootstrap, '--join-token', token]), launch(2, ['--bootstrap', bootstrap, '--join-token', token]))
  await waitUntil(async () => status(procs[0]).then(s => s.voters.length === 3, () => false))
  // a steady cluster: every node connected to the two others
  const connectedPeers = async (p: Proc): Promise<number> => JSON.parse((await httpCall(agent, p.api, 'GET', '/v1/status', '')).text).members.filter((m: { connected: boolean }) => m.connected).length
  const servers = (): Array<[string, ChildProcess]> => procs.map((p, i) => [`node ${i}`, p.child])
  await waitUntil(async () => {
    checkRunning('accord', servers(), 'at start')
    return (await Promise.all(procs.map(connectedPeers))).every(n => n === 2)
  })
  const leaderUrl = async (): Promise<string> => {
    for (;;) {
      for (const p of procs) {
        if (!isRunning(p.child)) { continue }
        const s = await status(p).catch(() => null)
        if (s?.role === 'leader') { return p.api }
      }
      await sleep(50)
    }
  }
  const target: Target = {
    name: 'accord',
    leaderUrl,
    write: async (a, url, key) => (await httpCall(a, url, 'PUT', `/v1/kv/${key}`, VALUE)).status,
    pids: () => procs.map(p => p.child.pid ?? -1),
    checkRunning: when => { checkRunning('accord', servers(), when) }
  }
  return {
    procs,
    target,
    stop: async () => {
      agent.destroy()
      for (const p of procs) { p.child.kill('SIGKILL') }
    }
  }
}

// ---------------------------------------------------------------- etcd

function etcdAvailable (): string | null {
  try {
    return execFileSync('etcd', ['--version'], { encoding: 'utf8' }).split('\n')[0]
  } catch {
    return null
  }
}

async function startEtcd (root: string): Promise<{ target: Target, stop(): Promise<void> }> {
  // below Linux's ephemeral ports (32768 and up), which outgoing connections may hold
  const base = 12_000 + Math.floor(Math.random() * 9_000)
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
      leaderUrl,
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

async function waitUntil (condition: () => Promise<boolean>, deadlineMs = 60_000): Promise<void> {
  const deadline = Date.now() + deadlineMs
  while (!(await condition().catch(err => { if (err instanceof ServerExitedError) { throw err } return false }))) {
    if (Date.now() > deadline) { throw new Error('timed out waiting for the cluster') }
    await sleep(100)
  }
}

// ---------------------------------------------------------------- failover

/** Write through the given nodes in turn until one write commits. */
async function writeUntilCommitted (agent: Agent, nodes: Proc[], keyPrefix: string): Promise<void> {
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
  const { procs, target, stop } = await startAccord(join(root, `failover-${kind}`))
  const agent = new Agent({ keepAlive: true })
  const results: number[] = []
  try {
    for (let t = 0; t < trials; t++) {
      const leaderUrl = await target.leaderUrl()
      const victim = procs.find(p => p.api === leaderUrl) as Proc
      const failedAt = performance.now()
      victim.child.kill(kind === 'kill' ? 'SIGKILL' : 'SIGSTOP')
      await writeUntilCommitted(agent, procs.filter(x => x !== victim), `failover-${kind}-${t}`)
      results.push(performance.now() - failedAt)
      console.error(`failover (${kind}) trial ${t + 1}/${trials}: ${results[t].toFixed(0)} ms`)
      // bring the victim back and let it catch up before the next trial
      if (kind === 'stop') {
        victim.child.kill('SIGCONT')
      } else {
        victim.child = tracked(spawn(process.execPath, [CLI, 'start', '--data-dir', victim.dataDir], { stdio: 'ignore', env: { ...process.env, NODE_OPTIONS: '' } }))
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

const ROUND_ATTEMPTS = 3

/**
 * One round of one system: every client count against a fresh cluster. A
 * round in which a server exited (a port taken by another process, a crash)
 * is measured again on a new cluster, up to ROUND_ATTEMPTS times.
 */
async function measureRound (start: (attempt: number) => Promise<{ target: Target, stop(): Promise<void> }>): Promise<LoadResult[]> {
  for (let attempt = 1; ; attempt++) {
    let cluster: { target: Target, stop(): Promise<void> } | undefined
    try {
      cluster = await start(attempt)
      const results: LoadResult[] = []
      for (const c of CLIENTS) { results.push(await load(cluster.target, c)) }
      return results
    } catch (err) {
      if (!(err instanceof ServerExitedError) || attempt === ROUND_ATTEMPTS) { throw err }
      console.error(`${err.message}; measuring the round again on a fresh cluster (attempt ${attempt + 1} of ${ROUND_ATTEMPTS})`)
    } finally {
      await cluster?.stop()
    }
  }
}

const root = await mkdtemp(join(tmpdir(), 'accord-bench-raft-'))
const etcdVersion = etcdAvailable()
const rows: Array<{ round: number, system: string, result: LoadResult }> = []
try {
  for (let round = 1; round <= ROUNDS; round++) {
    if (SYSTEMS.includes('accord')) {
      for (const result of await measureRound(async attempt => startAccord(join(root, `load-${round}-${attempt}`)))) { rows.push({ round, system: 'accord', result }) }
    }
    if (etcdVersion != null && SYSTEMS.includes('etcd')) {
      for (const result of await measureRound(async attempt => startEtcd(join(root, `etcd-${round}-${attempt}`)))) { rows.push({ round, system: 'etcd', result }) }
    }
  }
  const failovers = FAILOVER_TRIALS > 0 ? await failover(root, FAILOVER_TRIALS, 'kill') : []
  const silentFailovers = FAILOVER_TRIALS > 0 ? await failover(root, FAILOVER_TRIALS, 'stop') : []

  console.log(`raft writes: 3 nodes on loopback, fsync on, ${VALUE.length}-byte values, ${SECONDS} s per run, raft tick ${TICK_MS} ms, ${cpus().length} cores`)
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
  await mkdir('bench/results', { recursive: true })
  await writeFile('bench/results/raft.json', JSON.stringify({
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    seconds: SECONDS,
    rounds: ROUNDS,
    valueBytes: VALUE.length,
    etcd: etcdVersion,
    load: rows,
    ratios,
    failoverMs: failovers,
    silentFailoverMs: silentFailovers
  }, null, 2) + '\n')
  console.log('saved bench/results/raft.json')
} finally {
  // also after a failure: no node or etcd member outlives the run (or its data dir)
  for (const child of children) { child.kill('SIGKILL') }
  await rm(root, { recursive: true, force: true })
}
process.exit(0)
