/* eslint-disable no-console */
/**
 * npm run soak [-- --minutes 10 --clients 64 --snapshot-entries 10000 --keys-per-client 100 --log-dir DIR]
 *
 * A long run of a 3-node accord Raft cluster (3 `accord start` processes,
 * libp2p over TCP on loopback, fsync on, a snapshot every 10,000 entries)
 * under N closed-loop HTTP keep-alive clients writing 256-byte values. Each
 * client rewrites its own few keys, so the data stays the same size and
 * memory growth means a leak, not a bigger store. Clients write to the
 * leader of the moment (a follower would forward, at a cost). With
 * --log-dir, the nodes log at level info to DIR/node-<i>.log (leader
 * changes, late ticks, snapshots). Not part of CI.
 *
 * Reports per minute: writes/s, write latency p50/p99, errors (non-200
 * answers and failed requests), elections (term increases) and leader
 * changes seen by polling every node's /v1/raft/members, each node's RSS
 * (VmRSS from /proc/<pid>/status) and CPU, the leader's last snapshot
 * index, and the machine's load average (a shared machine skews
 * everything). Then RSS growth after the first minute. Writes
 * bench/results/soak.json.
 */
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { Agent } from 'node:http'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { children, cpuMsOf, getJson, httpCall, saveResults, startRaftCluster } from './bench-lib.ts'
import { percentile } from './percentile.ts'
import type { RaftProc } from './bench-lib.ts'

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    clients: { type: 'string', default: '64' },
    'snapshot-entries': { type: 'string', default: '10000' },
    'keys-per-client': { type: 'string', default: '100' },
    'value-bytes': { type: 'string', default: '256' },
    'log-dir': { type: 'string' },
    /** Default: the node's own (--raft-tick-ms of accord start). */
    'raft-tick-ms': { type: 'string' }
  }
})
const MINUTES = positive(values.minutes, '--minutes')
const CLIENTS = positive(values.clients, '--clients')
const SNAPSHOT_ENTRIES = positive(values['snapshot-entries'], '--snapshot-entries')
const KEYS_PER_CLIENT = positive(values['keys-per-client'], '--keys-per-client')
const VALUE = 'v'.repeat(positive(values['value-bytes'], '--value-bytes'))
const MINUTE_MS = 60_000
/** How often every node's role and term are read, to see leader changes. */
const POLL_MS = 100

function positive (text: string, flag: string): number {
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n < 1) {
    console.error(`${flag} must be a positive integer, got ${text}`)
    process.exit(2)
  }
  return n
}

/** Resident set size of a process in MiB (Linux /proc; NaN once it is gone). */
function rssMiB (pid: number): number {
  try {
    const kib = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
    return kib != null ? Number(kib) / 1024 : NaN
  } catch {
    return NaN
  }
}

interface Minute {
  minute: number
  writesPerSecond: number
  p50Ms: number
  p99Ms: number
  errors: number
  elections: number
  leaderChanges: number
  rssMiB: number[]
  /** CPU time of each node during the minute, in % of one core. */
  cpuPercent: number[]
  leaderSnapshotIndex: number | null
  loadAverage: number
}

/** Watches every node's role and term: elections (term increases) and leader changes (a new node leading). */
class LeaderWatch {
  maxTerm = 0
  leader: string | null = null
  /** The API of the node that leads (as last seen). */
  leaderApi: string
  elections = 0
  leaderChanges = 0
  #stopped = false
  readonly #done: Promise<void>

  constructor (agent: Agent, procs: RaftProc[], leaderApi: string) {
    this.leaderApi = leaderApi
    this.#done = (async () => {
      while (!this.#stopped) {
        const states = await Promise.all(procs.map(async p => getJson(agent, p.api, '/v1/raft/members').catch(() => null)))
        for (const [i, s] of states.entries()) {
          if (s == null) { continue }
          if (this.maxTerm > 0 && s.term > this.maxTerm) { this.elections += s.term - this.maxTerm }
          this.maxTerm = Math.max(this.maxTerm, s.term)
          if (s.role === 'leader' && s.term === this.maxTerm && s.leader !== this.leader) {
            if (this.leader != null) { this.leaderChanges++ }
            this.leader = s.leader
            this.leaderApi = procs[i].api
          }
        }
        await sleep(POLL_MS)
      }
    })()
  }

  async stop (): Promise<void> {
    this.#stopped = true
    await this.#done
  }
}

const root = await mkdtemp(join(tmpdir(), 'accord-soak-'))
try {
  const logDir = values['log-dir']
  if (logDir != null) { await mkdir(logDir, { recursive: true }) }
  const cluster = await startRaftCluster(join(root, 'cluster'), {
    tickMs: values['raft-tick-ms'],
    value: VALUE,
    args: ['--raft-snapshot-entries', String(SNAPSHOT_ENTRIES), ...(logDir != null ? ['--log-level', 'info'] : [])],
    logDir
  })
  const { procs } = cluster
  const pids = procs.map(p => p.child.pid ?? -1)
  const statusAgent = new Agent({ keepAlive: true })
  const watch = new LeaderWatch(statusAgent, procs, await cluster.leaderUrl())
  const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS })
  const startMs = performance.now()
  const endMs = startMs + MINUTES * MINUTE_MS
  /** Latencies and errors of the minute in progress. */
  let latencies: number[] = []
  let errors = 0
  let errorSample: string | null = null
  const minutes: Minute[] = []

  const clients = Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
    for (let i = 0; performance.now() < endMs; i++) {
      const t = performance.now()
      try {
        const { status, text } = await httpCall(agent, watch.leaderApi, 'PUT', `/v1/kv/soak-${c}-${i % KEYS_PER_CLIENT}`, VALUE)
        if (status === 200) {
          latencies.push(performance.now() - t)
        } else {
          errors++
          errorSample ??= `HTTP ${status}: ${text.slice(0, 200)}`
        }
      } catch (err) {
        errors++
        errorSample ??= (err as Error).message
      }
    }
  }))

  console.error(`soak: ${MINUTES} min, ${CLIENTS} clients, snapshot every ${SNAPSHOT_ENTRIES} entries, ${cpus().length} cores`)
  for (let m = 1; m <= MINUTES; m++) {
    const electionsBefore = watch.elections
    const changesBefore = watch.leaderChanges
    const cpuBefore = pids.map(cpuMsOf)
    await sleep(Math.max(0, startMs + m * MINUTE_MS - performance.now()))
    const done = latencies.sort((a, b) => a - b)
    latencies = []
    const leader = procs.find(p => p.api === watch.leaderApi)
    const minute: Minute = {
      minute: m,
      writesPerSecond: done.length / 60,
      p50Ms: percentile(done, 0.5),
      p99Ms: percentile(done, 0.99),
      errors,
      elections: watch.elections - electionsBefore,
      leaderChanges: watch.leaderChanges - changesBefore,
      rssMiB: pids.map(rssMiB),
      cpuPercent: pids.map((pid, i) => (cpuMsOf(pid) - cpuBefore[i]) / 600),
      leaderSnapshotIndex: leader != null ? (await getJson(statusAgent, leader.api, '/v1/raft/members').catch(() => null))?.lastSnapshotIndex ?? null : null,
      loadAverage: loadavg()[0]
    }
    errors = 0
    minutes.push(minute)
    console.error(`minute ${m}: ${minute.writesPerSecond.toFixed(0)} writes/s, RSS ${minute.rssMiB.map(r => r.toFixed(0)).join('/')} MiB, ${minute.errors} errors, ${minute.leaderChanges} leader changes, load ${minute.loadAverage.toFixed(1)}`)
  }
  await clients
  await watch.stop()
  cluster.target.checkRunning('during the soak')

  console.log(`soak: 3 accord nodes on loopback, fsync on, ${CLIENTS} clients, ${VALUE.length}-byte values over ${CLIENTS * KEYS_PER_CLIENT} keys, snapshot every ${SNAPSHOT_ENTRIES} entries, ${MINUTES} min, ${cpus().length} cores`)
  console.log('| minute | writes/s | p50 ms | p99 ms | errors | elections | leader changes | RSS MiB (node 0/1/2) | CPU % (node 0/1/2) | leader snapshot index | load avg |')
  console.log('|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|')
  for (const r of minutes) {
    console.log(`| ${r.minute} | ${r.writesPerSecond.toFixed(0)} | ${r.p50Ms.toFixed(1)} | ${r.p99Ms.toFixed(1)} | ${r.errors} | ${r.elections} | ${r.leaderChanges} | ${r.rssMiB.map(x => x.toFixed(0)).join(' / ')} | ${r.cpuPercent.map(x => x.toFixed(0)).join(' / ')} | ${r.leaderSnapshotIndex ?? '-'} | ${r.loadAverage.toFixed(1)} |`)
  }
  const first = minutes[0]
  const last = minutes[minutes.length - 1]
  const rssGrowthPercent = first.rssMiB.map((r, i) => 100 * (last.rssMiB[i] - r) / r)
  const totals = {
    errors: minutes.reduce((sum, r) => sum + r.errors, 0),
    elections: minutes.reduce((sum, r) => sum + r.elections, 0),
    leaderChanges: minutes.reduce((sum, r) => sum + r.leaderChanges, 0)
  }
  console.log(`RSS growth from minute 1 to minute ${last.minute}: ${rssGrowthPercent.map(g => `${g.toFixed(1)}%`).join(' / ')}; errors ${totals.errors}; elections ${totals.elections}; leader changes ${totals.leaderChanges}`)
  if (errorSample != null) { console.log(`first error: ${errorSample}`) }
  await saveResults('soak', { minutes: MINUTES, clients: CLIENTS, valueBytes: VALUE.length, keys: CLIENTS * KEYS_PER_CLIENT, snapshotEveryEntries: SNAPSHOT_ENTRIES, perMinute: minutes, rssGrowthPercent, ...totals, firstError: errorSample })
  statusAgent.destroy()
  agent.destroy()
  await cluster.stop()
} finally {
  // also after a failure: no node outlives the run (or its data dir)
  for (const child of children) { child.kill('SIGKILL') }
  await rm(root, { recursive: true, force: true })
}
process.exit(0)
