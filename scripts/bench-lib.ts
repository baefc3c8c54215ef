/* eslint-disable no-console */
/**
 * What the process-level bench scripts (bench-raft.ts, bench-pbft.ts)
 * share: HTTP keep-alive calls, tracking the server processes they start
 * (killed at the end whatever happens), CPU time from /proc, a closed-loop
 * load generator with warm-up, a fresh cluster for a measurement whose
 * server died, and a 3-node accord Raft cluster of `accord start` processes.
 */
import { spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { percentile } from './percentile.ts'
import type { ChildProcess } from 'node:child_process'

export const CLI = fileURLToPath(new URL('../node/cli.ts', import.meta.url))

export function httpCall (agent: Agent, url: string, method: string, path: string, body: string, contentType?: string, timeoutMs = 10_000): Promise<{ status: number, text: string }> {
  return new Promise((resolve, reject) => {
    const headers = { 'content-length': Buffer.byteLength(body), ...(contentType != null ? { 'content-type': contentType } : {}) }
    const req = request(`${url}${path}`, { method, agent, headers, timeout: timeoutMs }, res => {
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

/** Writes bench/results/<name>.json: when, on what (Node version, cores), then `fields`. */
export async function saveResults (name: string, fields: Record<string, unknown>): Promise<void> {
  await mkdir('bench/results', { recursive: true })
  await writeFile(`bench/results/${name}.json`, JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: cpus().length, ...fields }, null, 2) + '\n')
  console.log(`saved bench/results/${name}.json`)
}

/** GET `path` and parse the JSON answer (null when the node does not answer 200). */
export async function getJson (agent: Agent, url: string, path: string): Promise<any> {
  const { status, text } = await httpCall(agent, url, 'GET', path, '', undefined, 2000)
  return status === 200 ? JSON.parse(text) : null
}

/** Every process the run starts, killed at the end whatever happens. */
export const children = new Set<ChildProcess>()
export function tracked (child: ChildProcess): ChildProcess {
  children.add(child)
  return child
}

/** Every tracked process, killed when this process exits or is interrupted. */
export function killChildrenOnExit (): void {
  const killAll = (): void => { for (const child of children) { child.kill('SIGKILL') } }
  process.on('exit', killAll)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { killAll(); process.exit(130) })
  }
}

/**
 * Start `node node/cli.ts start --data-dir DIR ...args` (tracked).
 * `nodeOptions` go before the script (e.g. --cpu-prof); `logFile` gets its
 * stdout and stderr (else they are dropped).
 */
export function spawnAccord (dataDir: string, args: string[], options: { nodeOptions?: string[], logFile?: string } = {}): ChildProcess {
  const out = options.logFile != null ? openSync(options.logFile, 'a') : 'ignore'
  const child = spawn(process.execPath, [...(options.nodeOptions ?? []), CLI, 'start', '--data-dir', dataDir, ...args], { stdio: ['ignore', out, out], env: { ...process.env, NODE_OPTIONS: '' } })
  if (typeof out === 'number') { closeSync(out) }
  return tracked(child)
}

/** A server process of the cluster under test exited: the measurement is void. */
export class ServerExitedError extends Error {}

export const isRunning = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null

/** Throws ServerExitedError naming those of `servers` (name, process) of `system` that are no longer running. */
export function checkRunning (system: string, servers: Array<[string, ChildProcess]>, when: string): void {
  const exited = servers.filter(([, c]) => !isRunning(c)).map(([name, c]) => `${name} (${c.signalCode ?? `exit code ${c.exitCode}`})`)
  if (exited.length > 0) { throw new ServerExitedError(`${system}: ${exited.join(', ')} exited ${when}`) }
}

/** CPU time a process has used so far, in ms (Linux /proc; NaN elsewhere or once it is gone). */
export function cpuMsOf (pid: number): number {
  try {
    // fields after the command name: utime is the 12th, stime the 13th, in clock ticks (100 per second)
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return NaN
  }
}

/** `what` names the wait in the error, a function to say how far it got. */
/**
 * Waits (at most `maxMs`) until the processes `pids` together use less than
 * `percentMax` % of one core over a second (a cluster just started is busy
 * finding itself: discovery, membership, gossipsub meshes); resolves with
 * the last second's use, in % of one core.
 */
export async function waitQuiet (pids: number[], percentMax: number, maxMs = 30_000): Promise<number> {
  const deadline = Date.now() + maxMs
  for (;;) {
    const before = pids.map(cpuMsOf)
    await sleep(1000)
    const percent = pids.map(cpuMsOf).reduce((sum, ms, i) => sum + ms - before[i], 0) / 10
    if (percent < percentMax || Date.now() > deadline) { return percent }
  }
}

export async function waitUntil (condition: () => Promise<boolean>, deadlineMs = 60_000, what: string | (() => string) = 'the cluster'): Promise<void> {
  const deadline = Date.now() + deadlineMs
  while (!(await condition().catch(err => { if (err instanceof ServerExitedError) { throw err } return false }))) {
    if (Date.now() > deadline) { throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`) }
    await sleep(100)
  }
}

export interface Target {
  name: string
  /** Throws ServerExitedError if a server process is no longer running (a round with one gone measures a smaller cluster). */
  checkRunning(when: string): void
  /** URLs of the nodes to send operations to (Raft: the leader); client c uses the (c mod length)-th. */
  urls(): Promise<string[]>
  /** One operation; resolves with the HTTP status. */
  write(agent: Agent, url: string, key: string): Promise<number>
  /** The server processes, whose CPU time is charged to the operations. */
  pids(): number[]
}

export interface LoadResult {
  clients: number
  writes: number
  writesPerSecond: number
  p50Ms: number
  p99Ms: number
  errors: number
  /** CPU time (user + system, all threads) of the servers per operation; NaN without /proc. */
  serverCpuMsPerWrite: number
}

/**
 * `clients` closed-loop HTTP keep-alive clients for 1 s of warm-up (not
 * counted) and then `seconds`; each sends its next operation when the last
 * one answered.
 */
export async function load (target: Target, clients: number, seconds: number): Promise<LoadResult> {
  const urls = await target.urls()
  const agent = new Agent({ keepAlive: true, maxSockets: clients })
  const latencies: number[] = []
  let errors = 0
  const warmupEnd = performance.now() + 1000
  const end = warmupEnd + seconds * 1000
  const pids = target.pids()
  let cpuAtWarmupEnd: number[] = []
  const warmedUp = setTimeout(() => { cpuAtWarmupEnd = pids.map(cpuMsOf) }, 1000)
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    const url = urls[c % urls.length]
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
    writesPerSecond: latencies.length / seconds,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    errors,
    serverCpuMsPerWrite: serverCpuMs / latencies.length
  }
}

/**
 * `work` on a cluster from `start`, stopped afterwards. A measurement in
 * which a server exited (a port taken by another process, a crash) is made
 * again on a new cluster, up to `attempts` times.
 */
export async function onFreshCluster<C extends { stop(): Promise<void> }, R> (start: (attempt: number) => Promise<C>, work: (cluster: C) => Promise<R>, attempts = 3): Promise<R> {
  for (let attempt = 1; ; attempt++) {
    let cluster: C | undefined
    try {
      cluster = await start(attempt)
      return await work(cluster)
    } catch (err) {
      if (!(err instanceof ServerExitedError) || attempt === attempts) { throw err }
      console.error(`${err.message}; measuring again on a fresh cluster (attempt ${attempt + 1} of ${attempts})`)
    } finally {
      await cluster?.stop()
    }
  }
}

/** A port base below Linux's ephemeral ports (32768 and up), which outgoing connections may hold. */
export function randomPortBase (from: number, span = 9_000): number {
  return from + Math.floor(Math.random() * span)
}

// ---------------------------------------------------------------- a 3-node accord Raft cluster

export interface RaftProc { child: ChildProcess, dataDir: string, api: string, args: string[] }

export interface RaftCluster {
  procs: RaftProc[]
  /** PUT /v1/kv/<key> with `value` to the leader. */
  target: Target
  leaderUrl(): Promise<string>
  stop(): Promise<void>
}

/**
 * 3 `accord start` processes forming a Raft group (node 0 founds it, the
 * others join with a token), every node connected to the others. `tickMs`
 * (default: the node's own default) and `args` go to every node; with
 * `logDir`, node i logs to `<logDir>/node-<i>.log`.
 */
export async function startRaftCluster (root: string, options: { tickMs?: string, value: string, args?: string[], logDir?: string }): Promise<RaftCluster> {
  const base = randomPortBase(23_000)
  const procs: RaftProc[] = []
  const launch = (i: number, extra: string[]): RaftProc => {
    const dataDir = join(root, `accord-${i}`)
    const args = ['--listen', `/ip4/127.0.0.1/tcp/${base + 100 + i}`, '--api', `127.0.0.1:${base + i}`, '--log-level', 'warn', ...(options.tickMs != null ? ['--raft-tick-ms', options.tickMs] : []), ...(options.args ?? []), ...extra]
    const logFile = options.logDir != null ? join(options.logDir, `node-${i}.log`) : undefined
    return { child: spawnAccord(dataDir, args, { logFile }), dataDir, api: `http://127.0.0.1:${base + i}`, args }
  }
  procs.push(launch(0, []))
  const agent = new Agent({ keepAlive: true })
  const status = async (p: RaftProc): Promise<any> => JSON.parse((await httpCall(agent, p.api, 'GET', '/v1/raft/members', '')).text)
  await waitUntil(async () => status(procs[0]).then(s => s.role === 'leader', () => false))
  const self = JSON.parse((await httpCall(agent, procs[0].api, 'GET', '/v1/status', '')).text)
  const bootstrap = self.addresses[0]
  const { token } = JSON.parse((await httpCall(agent, procs[0].api, 'POST', '/v1/admission/tokens', '{}', 'application/json')).text)
  procs.push(launch(1, ['--bootstrap', bootstrap, '--join-token', token]), launch(2, ['--bootstrap', bootstrap, '--join-token', token]))
  await waitUntil(async () => status(procs[0]).then(s => s.voters.length === 3, () => false))
  // a steady cluster: every node connected to the two others
  const connectedPeers = async (p: RaftProc): Promise<number> => JSON.parse((await httpCall(agent, p.api, 'GET', '/v1/status', '')).text).members.filter((m: { connected: boolean }) => m.connected).length
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
  return {
    procs,
    leaderUrl,
    target: {
      name: 'accord',
      urls: async () => [await leaderUrl()],
      write: async (a, url, key) => (await httpCall(a, url, 'PUT', `/v1/kv/${key}`, options.value)).status,
      pids: () => procs.map(p => p.child.pid ?? -1),
      checkRunning: when => { checkRunning('accord', servers(), when) }
    },
    stop: async () => {
      agent.destroy()
      for (const p of procs) { p.child.kill('SIGKILL') }
    }
  }
}
