/**
 * A Jepsen-style scenario runner for accord's Raft KV over real processes:
 * clients keep writing and reading through the HTTP API while a nemesis
 * kills, pauses, partitions and restarts nodes; every operation goes into a
 * history that the linearizability checker judges at the end.
 *
 * Writes carry unique values, so a read pins down which write it saw. A
 * write whose answer never came (timeout, 5xx, connection reset) may or may
 * not have taken effect: it is recorded as pending. A failed read had no
 * effect and is left out.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { API_TOKEN_FILE } from '../../node/http-api.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { percentile } from '../../scripts/percentile.ts'
import { checkOperations, kvModel } from './linearizability.ts'
import { waitFor } from './nodes.ts'
import { BusyLoops, cpusOf, DaemonProcess, joinTokenFrom, pinToCpus } from './processes.ts'
import type { CheckResult, KvInput, KvOperation, KvOutput } from './linearizability.ts'
import type { MemberView } from '../../node/membership/routes.ts'

/** The history's client id of the writes compactPast() makes (the clients are 0, 1, ...; the final reads -1). */
const FILLER_CLIENT = 'filler'
/** compactPast() checks the nodes' snapshots after this many writes. */
const FILL_WRITES_PER_CHECK = 20

export interface ScenarioNode {
  index: number
  dataDir: string
  /** start arguments after --data-dir (listen, api, bootstrap...) */
  args: string[]
  /** e.g. ['ip', 'netns', 'exec', name] */
  wrap?: string[]
  apiUrl: string
  daemon: DaemonProcess | null
  peerId: string
}

export interface ClientOptions {
  clients: number
  keys: number
  seed: number
  requestTimeoutMs: number
  /** pause between a client's operations */
  thinkMs: number
}

/** The part of `GET /v1/raft/members` the scenarios read. */
export interface RaftMembers {
  role: string
  leader: string | null
  voters: string[]
  /** In a joint configuration (a membership change under way). */
  joint: boolean
  term: number
  commit: number
  applied: number
  lastIndex: number
  lastSnapshotIndex: number
}

export class RaftScenario {
  readonly nodes: ScenarioNode[] = []
  readonly history: KvOperation[] = []
  readonly log: string[] = []
  readonly #t0 = performance.now()
  #running = false
  #clientLoops: Array<Promise<void>> = []
  #writeCounter = 0
  #acknowledgedWrites = 0
  #clientOptions: ClientOptions | null = null
  #fillerSequence = 0

  note (text: string): void {
    this.log.push(`${((performance.now() - this.#t0) / 1000).toFixed(2)}s ${text}`)
  }

  /**
   * Start node 0 (it founds the group), then the others bootstrapped from
   * it; wait for all to be voters (unless `waitForVoters` is false: nodes
   * started with `--raft off` only wait until each runs).
   */
  async startCluster (specs: Array<Omit<ScenarioNode, 'daemon' | 'peerId' | 'index'>>, options: { waitForVoters?: boolean } = {}): Promise<void> {
    const first = await this.#launch({ ...specs[0], index: 0, daemon: null, peerId: '' })
    const info = await first.daemon?.ready()
    first.peerId = info?.peerId ?? ''
    this.nodes.push(first)
    const bootstrap = info?.multiaddrs[0] ?? ''
    const token = await joinTokenFrom(first.daemon?.dataDir ?? '')
    for (const [i, spec] of specs.slice(1).entries()) {
      this.nodes.push(await this.#launch({ ...spec, index: i + 1, daemon: null, peerId: '', args: [...spec.args, '--bootstrap', bootstrap, '--join-token', token] }))
    }
    for (const node of this.nodes.slice(1)) { node.peerId = (await node.daemon?.ready())?.peerId ?? '' }
    if (options.waitForVoters === false) {
      this.note(`${this.nodes.length} nodes started`)
      return
    }
    // every node must know the final configuration: while the change that made it is joint (or not
    // yet known to a node), the group still needs the old voters, and stopping one stalls it
    await waitFor(async () => {
      const statuses = await Promise.all(this.nodes.map(async node => this.raftStatus(node)))
      return statuses.every(status => status?.voters.length === this.nodes.length && !status.joint && status.leader != null)
    }, `all ${this.nodes.length} nodes to become voters`, 90_000)
    this.note(`cluster of ${this.nodes.length} formed`)
  }

  async #launch (node: ScenarioNode): Promise<ScenarioNode> {
    node.daemon = new DaemonProcess(node.dataDir, node.args, { wrap: node.wrap })
    return node
  }

  async #token (node: ScenarioNode): Promise<string | null> {
    return readFile(join(node.dataDir, API_TOKEN_FILE), 'utf8').then(t => t.trim(), () => null)
  }

  async request (node: ScenarioNode, method: string, path: string, body?: string, timeoutMs = 3000): Promise<{ status: number, json: any }> {
    const token = await this.#token(node)
    const response = await fetch(`${node.apiUrl}${path}`, {
      method,
      body,
      headers: { ...(token != null ? { authorization: `Bearer ${token}` } : {}), ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
      signal: AbortSignal.timeout(timeoutMs)
    })
    return { status: response.status, json: await response.json().catch(() => ({})) }
  }

  async raftStatus (node: ScenarioNode): Promise<RaftMembers | null> {
    try {
      const { status, json } = await this.request(node, 'GET', '/v1/raft/members', undefined, 2000)
      return status === 200 ? json : null
    } catch {
      return null
    }
  }

  /** The index of the current leader among running nodes but `except` (asks them), or -1. */
  async leaderIndex (except: number[] = []): Promise<number> {
    for (const node of this.nodes) {
      if (node.daemon == null || except.includes(node.index)) { continue }
      const status = await this.raftStatus(node)
      if (status?.role === 'leader') { return node.index }
    }
    return -1
  }

  /** Waits for a leader other than `except`; nodes in `except` are not asked (they may be cut off). */
  async waitForLeader (what: string, except: number | number[] = []): Promise<number> {
    const excluded = typeof except === 'number' ? [except] : except
    let leader = -1
    await waitFor(async () => {
      leader = await this.leaderIndex(excluded)
      return leader >= 0
    }, what, 60_000)
    this.note(`leader is node ${leader}`)
    return leader
  }

  /**
   * The highest last index among the running nodes but `except`, asked
   * once a new leader is elected after `except` were killed or cut off:
   * their logs can match a later leader's only up to here (every later
   * entry has a newer term), and everything they applied is at or below it.
   */
  async lastIndexOfOthers (except: number[]): Promise<number> {
    let highest = -1
    for (const node of this.nodes) {
      if (node.daemon == null || except.includes(node.index)) { continue }
      const status = await this.raftStatus(node)
      if (status == null) { throw new Error(`node ${node.index} did not answer its status`) }
      highest = Math.max(highest, status.lastIndex)
    }
    this.note(`log of nodes ${except.join(',')} matches the others' at most up to index ${highest}`)
    return highest
  }

  /**
   * Wait until every running node but `except` has snapshotted and
   * compacted its log beyond `index`, writing through node `via`
   * meanwhile: while a node is down or cut off, the clients' requests to it
   * hang until they time out, and they alone would write too slowly. These
   * writes are one client's (one at a time, its own session), go to the
   * clients' keys and are part of the history.
   */
  async compactPast (index: number, except: number[], via: number): Promise<void> {
    const options = this.#clientOptions
    if (options == null) { throw new Error('compactPast needs the clients started') }
    const others = this.nodes.filter(node => node.daemon != null && !except.includes(node.index))
    const compacted = async (): Promise<boolean> => {
      const statuses = await Promise.all(others.map(async node => this.raftStatus(node)))
      return statuses.every(status => status != null && status.lastSnapshotIndex > index)
    }
    const what = `nodes ${others.map(n => n.index).join(',')} to compact their logs past index ${index}`
    let writes = 0
    await waitFor(async () => {
      if (await compacted()) { return true }
      for (let i = 0; i < FILL_WRITES_PER_CHECK; i++) {
        const input: KvInput = { op: 'put', key: `k${this.#fillerSequence % options.keys}`, value: `fill-${++this.#writeCounter}` }
        await this.#write(this.nodes[via], input, FILLER_CLIENT, `scenario-${options.seed}-filler`, ++this.#fillerSequence, options)
        writes++
      }
      return false
    }, what, 60_000, 0)
    this.note(`${what}: done, with ${writes} writes through node ${via}`)
  }

  /**
   * Wait until node `index`'s last snapshot is beyond `logBound`, the
   * highest index its log could match (see lastIndexOfOthers): once the
   * others compacted past it too, only a snapshot from the leader
   * (InstallSnapshot) brings it there.
   */
  async waitForSnapshotPast (index: number, logBound: number): Promise<void> {
    const what = `node ${index} to install a snapshot past index ${logBound}`
    let last: RaftMembers | null = null
    await waitFor(async () => {
      last = await this.raftStatus(this.nodes[index])
      return last != null && last.lastSnapshotIndex > logBound
    }, what, 60_000).catch(() => {
      throw new Error(`gave up waiting for ${what}: ${last == null ? 'it does not answer its status' : `its last status: ${JSON.stringify(last)}`}`)
    })
    this.note(`node ${index} installed a snapshot past index ${logBound}`)
  }

  /**
   * Wait until every running node answers and has applied all that the
   * leader had committed when this was called. The history alone does not
   * notice a node that stopped serving: its requests just time out.
   */
  async waitForAllCaughtUp (): Promise<void> {
    const leader = await this.waitForLeader('a leader')
    const commit = (await this.raftStatus(this.nodes[leader]))?.commit ?? Infinity
    const running = this.nodes.filter(node => node.daemon != null)
    const behind = new Set<number>()
    const what = `every node to answer and apply up to index ${commit}`
    await waitFor(async () => {
      behind.clear()
      for (const node of running) {
        const status = await this.raftStatus(node)
        if (status == null || status.applied < commit) { behind.add(node.index) }
      }
      return behind.size === 0
    }, what, 30_000).catch(() => {
      throw new Error(`gave up waiting for ${what}: nodes ${[...behind].join(',')} did not`)
    })
    this.note(`every node applied up to index ${commit}`)
  }

  startClients (options: ClientOptions): void {
    this.#running = true
    this.#clientOptions = options
    const rng = createRng(options.seed)
    for (let c = 0; c < options.clients; c++) {
      this.#clientLoops.push(this.#client(c, options, rng.fork()))
    }
  }

  async stopClients (): Promise<void> {
    this.#running = false
    await Promise.all(this.#clientLoops)
    this.#clientLoops = []
  }

  get acknowledgedWrites (): number {
    return this.#acknowledgedWrites
  }

  async #client (clientIndex: number, options: ClientOptions, rng: ReturnType<typeof createRng>): Promise<void> {
    const clientId = `scenario-${options.seed}-${clientIndex}`
    let sequence = 0
    while (this.#running) {
      const node = this.nodes[rng.intBetween(0, this.nodes.length - 1)]
      const key = `k${rng.intBetween(0, options.keys - 1)}`
      const roll = rng.nextFloat()
      if (roll < 0.5) {
        await this.#read(node, key, clientIndex, options)
      } else {
        const value = `c${clientIndex}-${++this.#writeCounter}`
        sequence++
        const input: KvInput = roll < 0.85 ? { op: 'put', key, value } : { op: 'cas', key, expected: null, value }
        await this.#write(node, input, clientIndex, clientId, sequence, options)
      }
      await new Promise(resolve => setTimeout(resolve, options.thinkMs))
    }
  }

  async #read (node: ScenarioNode, key: string, clientIndex: number, options: ClientOptions): Promise<void> {
    const call = performance.now()
    try {
      const { status, json } = await this.request(node, 'GET', `/v1/kv/${key}?consistency=linearizable`, undefined, options.requestTimeoutMs)
      const ret = performance.now()
      if (status === 200 || status === 404) {
        this.history.push({ clientId: clientIndex, input: { op: 'get', key }, call, output: status === 200 ? json.value : null, return: ret })
      }
    } catch { /* no answer: a read without effect */ }
  }

  async #write (node: ScenarioNode, input: KvInput, clientIndex: number | string, clientId: string, sequence: number, options: ClientOptions): Promise<void> {
    if (input.op === 'get') { return }
    const call = performance.now()
    let output: KvOutput | undefined
    try {
      const token = await this.#token(node)
      const headers: Record<string, string> = { 'x-accord-client-id': clientId, 'x-accord-sequence': String(sequence) }
      if (token != null) { headers.authorization = `Bearer ${token}` }
      const request = input.op === 'put'
        ? { method: 'PUT', path: `/v1/kv/${input.key}`, body: input.value }
        : { method: 'POST', path: `/v1/kv/${input.key}/cas`, body: JSON.stringify({ expected: input.op === 'cas' ? input.expected : null, value: input.op === 'cas' ? input.value : '' }) }
      if (request.method === 'POST') { headers['content-type'] = 'application/json' }
      const response = await fetch(`${node.apiUrl}${request.path}`, { method: request.method, body: request.body, headers, signal: AbortSignal.timeout(options.requestTimeoutMs) })
      const json = await response.json().catch(() => ({}))
      if (response.status === 200) { output = input.op === 'cas' ? true : null } else if (response.status === 409 && json.error === 'cas-mismatch') { output = false }
    } catch { /* timeout or reset: unknown outcome */ }
    if (output === undefined) {
      this.history.push({ clientId: clientIndex, input, call, return: Infinity })
    } else {
      this.#acknowledgedWrites++
      this.history.push({ clientId: clientIndex, input, call, output, return: performance.now() })
    }
  }

  /** Final linearizable reads of every key from one node, as part of the history. */
  async finalReads (keys: number): Promise<void> {
    const leader = await this.waitForLeader('a leader after healing')
    for (let k = 0; k < keys; k++) {
      const call = performance.now()
      const { status, json } = await this.request(this.nodes[leader], 'GET', `/v1/kv/k${k}`, undefined, 10_000)
      if (status !== 200 && status !== 404) { throw new Error(`final read of k${k} failed: ${status} ${JSON.stringify(json)}`) }
      this.history.push({ clientId: -1, input: { op: 'get', key: `k${k}` }, call, output: status === 200 ? json.value : null, return: performance.now() })
    }
  }

  check (): CheckResult<KvInput, KvOutput> {
    return checkOperations(kvModel, this.history, { maxSteps: 20_000_000 })
  }

  // ------------------------------------------------------------ nemesis

  async kill (index: number): Promise<void> {
    const node = this.nodes[index]
    await node.daemon?.stop('SIGKILL')
    node.daemon = null
    this.note(`kill -9 node ${index}`)
  }

  async restart (index: number): Promise<void> {
    const node = this.nodes[index]
    node.daemon = new DaemonProcess(node.dataDir, [], { wrap: node.wrap })
    await node.daemon.ready()
    this.note(`restarted node ${index}`)
  }

  pause (index: number): void {
    this.nodes[index].daemon?.child.kill('SIGSTOP')
    this.note(`SIGSTOP node ${index}`)
  }

  resume (index: number): void {
    this.nodes[index].daemon?.child.kill('SIGCONT')
    this.note(`SIGCONT node ${index}`)
  }

  /**
   * Starve nodes `indices` of CPU: pin them to one CPU (the last this
   * process may use) beside `busyLoops` processes spinning there, and every
   * other node to the remaining CPUs, so that only they slow down. The loops
   * exit by themselves after `boundMs` at the latest. end() stops them and
   * gives every node back the CPUs it had.
   */
  async starve (indices: number[], busyLoops: number, boundMs: number): Promise<{ end(): Promise<void> }> {
    const cpus = await cpusOf(process.pid)
    if (cpus.length < 2) { throw new Error('starving nodes needs two CPUs: one for them and their busy loops, one for the others') }
    const starvedCpu = cpus[cpus.length - 1]
    // this process too stays off the starved CPU: it measures
    const running = [
      ...this.nodes.flatMap(node => node.daemon?.child.pid != null ? [{ pid: node.daemon.child.pid, starved: indices.includes(node.index) }] : []),
      { pid: process.pid, starved: false }
    ]
    const before = await Promise.all(running.map(async ({ pid }) => cpusOf(pid)))
    for (const { pid, starved } of running) { await pinToCpus(pid, starved ? [starvedCpu] : cpus.slice(0, -1)) }
    const loops = new BusyLoops(busyLoops, starvedCpu, boundMs)
    this.note(`starving nodes ${indices.join(',')}: pinned to CPU ${starvedCpu} with ${busyLoops} busy loops`)
    return {
      end: async () => {
        await loops.stop()
        for (const [i, { pid }] of running.entries()) { await pinToCpus(pid, before[i]).catch(() => { /* exited meanwhile */ }) }
        this.note(`starvation of nodes ${indices.join(',')} ended`)
      }
    }
  }

  /**
   * For a post-mortem: each running node's Raft status goes into the
   * scenario log, its log so far (stderr) into `<dataDir>/stderr.log` and
   * its metrics into `<dataDir>/metrics.txt`.
   */
  async keepEvidence (): Promise<void> {
    for (const node of this.nodes) {
      if (node.daemon == null) { continue }
      this.note(`node ${node.index} status ${JSON.stringify(await this.raftStatus(node))}`)
      await writeFile(join(node.dataDir, 'stderr.log'), node.daemon.logSoFar)
      const token = await this.#token(node)
      const metrics = await fetch(`${node.apiUrl}/metrics`, { headers: token != null ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(2000) })
        .then(async response => response.text(), err => String(err))
      await writeFile(join(node.dataDir, 'metrics.txt'), metrics)
      await writeFile(join(node.dataDir, 'status.json'), JSON.stringify((await this.request(node, 'GET', '/v1/status').catch(err => ({ json: String(err) }))).json, null, 1))
    }
  }

  async stopAll (): Promise<void> {
    this.#running = false
    await Promise.all(this.nodes.map(async n => {
      n.daemon?.child.kill('SIGCONT')
      await n.daemon?.stop('SIGKILL')
      n.daemon = null
    }))
  }
}

// ------------------------------------------------------------ membership

/** Where a tally of membership changes starts: each node's own incarnation and how much of its log was written. */
export interface MembershipMark {
  incarnations: number[]
  logs: Array<{ daemon: DaemonProcess | null, offset: number }>
}

/** What the nodes' views went through since a mark. */
export interface MembershipTally {
  /**
   * Refutations: the steps by which the nodes raised their own incarnations
   * (a member raises it only to refute a suspicion, or to change its
   * metadata, which accord's daemon does only as it starts).
   */
  refutations: number
  /**
   * Each time a node's view marked a member suspect or dead, from the
   * node's log: the service logs every such change at info level as
   * `membership: suspect` / `membership: dead` with the member's `peer`
   * (its own probe's verdict or news it took from another).
   */
  changes: Array<{ observer: number, subject: number, state: 'suspect' | 'dead' }>
}

/** Starving nodes of CPU for a while (RaftScenario.starve), and what it did to membership. */
export interface StarvationReport extends MembershipTally {
  victims: number[]
  busyLoops: number
  durationMs: number
  /** Round trips of GET /v1/members sampled while it lasted: how slow the victims were, and the others. */
  apiMs: { victims: number[], others: number[] }
  /** Samples that got no answer within API_SAMPLE_TIMEOUT_MS. */
  apiTimeouts: { victims: number, others: number }
}

/** A sample of a node's API round trip while it is starved: no answer within this counts as a timeout. */
const API_SAMPLE_TIMEOUT_MS = 5000

/** The nodes that held `subject` dead at some point in `tally`. */
export function heldDeadBy (tally: MembershipTally, subject: number): Set<number> {
  return new Set(tally.changes.filter(c => c.subject === subject && c.state === 'dead').map(c => c.observer))
}

/** Membership (SWIM) as the running nodes of a scenario see it. */
export class MembershipWatch {
  readonly #scenario: RaftScenario

  constructor (scenario: RaftScenario) {
    this.#scenario = scenario
  }

  async members (node: ScenarioNode): Promise<MemberView[]> {
    return (await this.#scenario.request(node, 'GET', '/v1/members')).json.members
  }

  /**
   * Where the running nodes' views differ from `expected(observer,
   * subject)`, over every pair of running nodes: "node i holds node j
   * suspect" (or "node i does not answer").
   */
  async differences (expected: (observer: number, subject: number) => MemberView['state']): Promise<string[]> {
    const running = this.#scenario.nodes.filter(node => node.daemon != null)
    const wrong: string[] = []
    for (const node of running) {
      const members = await this.members(node).catch(() => null)
      if (members == null) { wrong.push(`node ${node.index} does not answer`); continue }
      for (const other of running) {
        const state = members.find(m => m.peerId === other.peerId)?.state ?? 'unknown'
        if (state !== expected(node.index, other.index)) { wrong.push(`node ${node.index} holds node ${other.index} ${state}`) }
      }
    }
    return wrong
  }

  /** Views not all alive: differences() from every running node alive everywhere. */
  async notAlive (): Promise<string[]> {
    return this.differences(() => 'alive')
  }

  /** Wait until the running nodes' views are `expected(observer, subject)`, naming the differences left if they never are. */
  async waitForStates (expected: (observer: number, subject: number) => MemberView['state'], what: string, deadlineMs: number): Promise<void> {
    let wrong: string[] = []
    await waitFor(async () => {
      wrong = await this.differences(expected)
      return wrong.length === 0
    }, what, deadlineMs, 250).catch(() => {
      throw new Error(`gave up waiting for ${what}: ${wrong.join('; ')}`)
    })
    this.#scenario.note(what)
  }

  /** Wait until every running node holds every running node alive. */
  async waitForAllAlive (deadlineMs: number): Promise<void> {
    await this.waitForStates(() => 'alive', 'every running node to hold every running node alive', deadlineMs)
  }

  async mark (): Promise<MembershipMark> {
    return {
      incarnations: await Promise.all(this.#scenario.nodes.map(async node => this.#incarnation(node))),
      logs: this.#scenario.nodes.map(node => ({ daemon: node.daemon, offset: node.daemon?.logSoFar.length ?? 0 }))
    }
  }

  /** What happened since `mark`. A node down now adds no refutations. */
  async since (mark: MembershipMark): Promise<MembershipTally> {
    const { nodes } = this.#scenario
    const incarnations = await Promise.all(nodes.map(async node => this.#incarnation(node)))
    const indexOf = new Map(nodes.map(node => [node.peerId, node.index]))
    const changes: MembershipTally['changes'] = []
    for (const node of nodes) {
      const { daemon, offset } = mark.logs[node.index]
      // a node restarted since the mark: its whole log is new
      const text = node.daemon == null ? '' : node.daemon.logSoFar.slice(node.daemon === daemon ? offset : 0)
      for (const line of text.split('\n')) {
        if (!line.includes('"membership: ')) { continue }
        const entry = parseJsonLine(line)
        const subject = indexOf.get(String(entry?.peer))
        if (subject === undefined || subject === node.index) { continue }
        if (entry?.msg === 'membership: dead' || entry?.msg === 'membership: suspect') {
          changes.push({ observer: node.index, subject, state: entry.msg === 'membership: dead' ? 'dead' : 'suspect' })
        }
      }
    }
    const refutations = nodes.reduce((total, node) => total + Math.max(0, incarnations[node.index] - mark.incarnations[node.index]), 0)
    return { refutations, changes }
  }

  /**
   * Starve `victims` of CPU for `durationMs` beside `busyLoops` busy loops
   * (RaftScenario.starve), sampling every node's API round trip each
   * second; then wait until every member is alive everywhere again, and
   * tally what membership went through from the start until then. Throws if
   * the members do not all come back alive within `settleMs`.
   */
  async starvationRun (options: { victims: number[], busyLoops: number, durationMs: number, settleMs: number }): Promise<StarvationReport> {
    const { victims, busyLoops, durationMs, settleMs } = options
    const mark = await this.mark()
    const apiMs: StarvationReport['apiMs'] = { victims: [], others: [] }
    const apiTimeouts = { victims: 0, others: 0 }
    const starvation = await this.#scenario.starve(victims, busyLoops, durationMs + settleMs)
    try {
      const end = Date.now() + durationMs
      while (Date.now() < end) {
        await Promise.all(this.#scenario.nodes.filter(node => node.daemon != null).map(async node => {
          const side = victims.includes(node.index) ? 'victims' : 'others'
          const sent = performance.now()
          const answered = await this.#scenario.request(node, 'GET', '/v1/members', undefined, API_SAMPLE_TIMEOUT_MS).then(() => true, () => false)
          if (answered) { apiMs[side].push(performance.now() - sent) } else { apiTimeouts[side]++ }
        }))
        await sleep(Math.max(0, Math.min(1000, end - Date.now())))
      }
    } finally {
      await starvation.end()
    }
    await this.waitForAllAlive(settleMs)
    return { ...await this.since(mark), victims, busyLoops, durationMs, apiMs, apiTimeouts }
  }

  /** A running node's incarnation in its own view (0 for one down). */
  async #incarnation (node: ScenarioNode): Promise<number> {
    if (node.daemon == null) { return 0 }
    return (await this.members(node)).find(m => m.peerId === node.peerId)?.incarnation ?? 0
  }
}

/** One line of figures: what starving `report.victims` did to a cluster of `clusterSize`. */
export function describeStarvation (report: StarvationReport, clusterSize: number): string {
  const majority = Math.floor(clusterSize / 2) + 1
  const suspect = report.changes.filter(c => c.state === 'suspect')
  const dead = report.changes.filter(c => c.state === 'dead')
  const deadByMajority = [...new Set(dead.map(c => c.subject))].filter(subject => heldDeadBy(report, subject).size >= majority)
  const ms = (values: number[]): string => {
    const sorted = [...values].sort((a, b) => a - b)
    return sorted.length === 0 ? '-' : `${percentile(sorted, 0.5).toFixed(0)}/${sorted[sorted.length - 1].toFixed(0)}`
  }
  return `nodes ${report.victims.join(',')} of ${clusterSize} starved by ${report.busyLoops} busy loops for ${(report.durationMs / 1000).toFixed(0)} s: ` +
    `false suspicions: a live member suspect in ${suspect.length} views (of ${new Set(suspect.map(c => c.subject)).size} members); ` +
    `false deaths: a live member dead in ${dead.length} views, ${deadByMajority.length} held dead by a majority; refutations ${report.refutations}; ` +
    `GET /v1/members p50/max ms: starved ${ms(report.apiMs.victims)} (${report.apiTimeouts.victims} unanswered), others ${ms(report.apiMs.others)} (${report.apiTimeouts.others} unanswered)`
}

function parseJsonLine (line: string): Record<string, unknown> | null {
  try { return JSON.parse(line) } catch { return null }
}

export function describeFailure (scenario: RaftScenario, result: CheckResult<KvInput, KvOutput>): string {
  const explanation = result.ok === false ? result.explanation.text : result.ok === 'unknown' ? result.reason : ''
  return `history of ${scenario.history.length} ops is ${result.ok === false ? 'NOT linearizable' : 'undecided'}:\n${explanation}\nnemesis log:\n${scenario.log.join('\n')}`
}
