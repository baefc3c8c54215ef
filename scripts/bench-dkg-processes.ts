/* eslint-disable no-console */
/**
 * The DKG as deployed: n `accord start` processes (one per node, --raft
 * off) on loopback, node 0 founding the cluster and the others joining with
 * a join token. Once every node admits the n - 1 others and the cluster has
 * settled (its CPU use fell, or a while passed), `POST /v1/keys/dkg` on
 * node 0 with all n as members, t = ⌊2n/3⌋ + 1, timed until it answers (the
 * initiator's session is done: it stored its share) and until every node's
 * `GET /v1/keys` shows the new group key. --runs such DKGs on the same
 * cluster, one after the other; the CPU time of all n processes over each
 * run from /proc. Used by bench-crypto.ts (`--dkg-processes 4,7,16`).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { Agent } from 'node:http'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { checkRunning, children, cpuMsOf, httpCall, randomPortBase, spawnAccord, waitQuiet, waitUntil } from './bench-lib.ts'
import type { ChildProcess } from 'node:child_process'

export interface DkgProcessRun {
  n: number
  t: number
  /** POST /v1/keys/dkg until it answered: the initiator stored its share. */
  requestMs: number
  /** The session's own duration on the initiator (start sent until its share was stored). */
  doneMs: number
  /** From the request until every node's GET /v1/keys showed the new key. */
  everyNodeStoredMs: number
  /** CPU time (user + system) of all n processes from the request until every node stored. */
  cpuMsAllProcesses: number
  /** The cluster's CPU use in the second before the run, in % of one core (its idle work). */
  idleCpuPercent: number
  loadAverage1m: number
  /** Before the run: of the n - 1 others, how many the least connected node held a connection to, and the median node. */
  connectedMin: number
  connectedMedian: number
  /** The initiator's session: when each step began, ms after the start (DkgSessionView.phaseMs; absent before it existed). */
  initiatorPhaseMs?: Record<string, number>
}

export interface DkgProcessOptions {
  runs: number
  /** Node 0 and node 1 run under `node --cpu-prof` into this directory (written at the end, on SIGTERM). */
  cpuProfDir?: string
  /** Keep the data dirs and node logs. */
  keepData?: boolean
  /** Log level of the nodes (their logs go to <root>/node-<i>.log). */
  logLevel?: string
}

interface Proc { child: ChildProcess, api: string, dataDir: string }

/** Before each run, the cluster settles until it uses less than this, per node, of a core (at most QUIET_WAIT_MS_MAX). */
const QUIET_PERCENT_PER_NODE = 5
const QUIET_WAIT_MS_MAX = 30_000

export async function dkgProcesses (n: number, options: DkgProcessOptions): Promise<DkgProcessRun[]> {
  const t = Math.floor(2 * n / 3) + 1
  const root = await mkdtemp(join(tmpdir(), `accord-bench-dkg-${n}-`))
  const base = randomPortBase(20_000, 12_000)
  const agent = new Agent({ keepAlive: true })
  const procs: Proc[] = []
  const launch = (i: number, extra: string[]): Proc => {
    const dataDir = join(root, `node-${i}`)
    const args = ['--listen', `/ip4/127.0.0.1/tcp/${base + 100 + i}`, '--api', `127.0.0.1:${base + i}`, '--raft', 'off', '--log-level', options.logLevel ?? 'warn', ...extra]
    const nodeOptions = options.cpuProfDir !== undefined && i < 2 ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfDir, '--cpu-prof-name', `dkg-n${n}-node${i}-${Date.now()}.cpuprofile`] : []
    return { child: spawnAccord(dataDir, args, { nodeOptions, logFile: join(root, `node-${i}.log`) }), api: `http://127.0.0.1:${base + i}`, dataDir }
  }
  /** GET `path` as JSON (null unless 200), with time for a node busy starting up. */
  const get = async (api: string, path: string): Promise<any> => {
    const { status, text } = await httpCall(agent, api, 'GET', path, '', undefined, 20_000)
    return status === 200 ? JSON.parse(text) : null
  }
  const servers = (): Array<[string, ChildProcess]> => procs.map((p, i) => [`node ${i}`, p.child])
  const runs: DkgProcessRun[] = []
  try {
    procs.push(launch(0, []))
    await waitUntil(async () => {
      checkRunning('accord', servers(), 'at start')
      return (await get(procs[0].api, '/v1/status')) !== null
    }, 60_000, 'node 0 to answer')
    const first = await get(procs[0].api, '/v1/status')
    const bootstrap = first.addresses[0] as string
    const { token } = JSON.parse((await httpCall(agent, procs[0].api, 'POST', '/v1/admission/tokens', '{"ttlSeconds":3600}', 'application/json', 20_000)).text)
    for (let i = 1; i < n; i++) { procs.push(launch(i, ['--bootstrap', bootstrap, '--join-token', token])) }
    const admitted = async (p: Proc): Promise<number> => ((await get(p.api, '/v1/admission'))?.admittedPeers?.length as number | undefined) ?? 0
    let counts: number[] = []
    await waitUntil(async () => {
      checkRunning('accord', servers(), 'while joining')
      counts = await Promise.all(procs.map(async p => admitted(p).catch(() => 0)))
      return counts.every(c => c >= n - 1)
    }, 180_000, () => `every node to admit the ${n - 1} others (admitted: ${counts.join(', ')})`)
    // peer ids from the data dirs' runtime files would do too; a busy node may take a while to answer
    const members: string[] = []
    for (const p of procs) {
      let id: string | undefined
      await waitUntil(async () => { id = (await get(p.api, '/v1/status'))?.peerId; return id !== undefined }, 60_000, 'a node\'s status')
      members.push(id as string)
    }
    const pids = procs.map(p => p.child.pid ?? -1)
    for (let run = 0; run < options.runs; run++) {
      const idleCpuPercent = await waitQuiet(pids, QUIET_PERCENT_PER_NODE * n, QUIET_WAIT_MS_MAX)
      const loadAverage1m = Number(loadavg()[0].toFixed(2))
      // how many of the n - 1 others each node holds a connection to (a DKG message to one it does not dials first)
      const connected = await Promise.all(procs.map(async p => ((await get(p.api, '/v1/status'))?.members ?? []).filter((m: { connected: boolean }) => m.connected).length as number))
      const cpuBefore = pids.map(cpuMsOf)
      const start = performance.now()
      const answer = await httpCall(agent, procs[0].api, 'POST', '/v1/keys/dkg', JSON.stringify({ members, threshold: t }), 'application/json', 180_000)
      const requestMs = performance.now() - start
      if (answer.status !== 200) { throw new Error(`DKG n = ${n}: ${answer.status} ${answer.text}`) }
      const session = JSON.parse(answer.text)
      await waitUntil(async () => {
        checkRunning('accord', servers(), 'during the DKG')
        const keys = await Promise.all(procs.map(async p => get(p.api, '/v1/keys')))
        return keys.every(k => k?.key?.groupKey === session.groupKey)
      }, 60_000, 'every node to store the key')
      const everyNodeStoredMs = performance.now() - start
      const cpuMsAllProcesses = pids.map(cpuMsOf).reduce((sum, ms, i) => sum + ms - cpuBefore[i], 0)
      const row = { n, t, requestMs: Math.round(requestMs), doneMs: session.durationMs, everyNodeStoredMs: Math.round(everyNodeStoredMs), cpuMsAllProcesses, idleCpuPercent: Math.round(idleCpuPercent), loadAverage1m, connectedMin: Math.min(...connected), connectedMedian: connected.sort((a, b) => a - b)[Math.floor(n / 2)], ...(session.phaseMs !== undefined ? { initiatorPhaseMs: session.phaseMs } : {}) }
      console.log(JSON.stringify(row))
      runs.push(row)
    }
  } catch (err) {
    console.error(`node logs in ${root}`)
    options.keepData = true
    throw err
  } finally {
    agent.destroy()
    // a profiled node writes its profile on a clean stop (SIGTERM); the others, and any that hangs, are killed
    const stopping = procs.map(async (p, i) => {
      if (options.cpuProfDir !== undefined && i < 2 && p.child.exitCode === null) {
        p.child.kill('SIGTERM')
        await Promise.race([new Promise(resolve => p.child.once('exit', resolve)), sleep(15_000)])
      }
      p.child.kill('SIGKILL')
      children.delete(p.child)
    })
    await Promise.all(stopping)
    if (options.keepData !== true) { await rm(root, { recursive: true, force: true }) } else { console.error(`data dirs and logs kept in ${root}`) }
  }
  return runs
}
