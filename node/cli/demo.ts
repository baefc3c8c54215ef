/**
 * `accord demo`: a local cluster of N node processes on loopback, each
 * bootstrapped only from the first, with a live view of what they see.
 * Every node is a PBFT replica: the demo makes the nodes' identities before
 * starting them, so it knows the replica set and gives it to each; with
 * `--byzantine K` the last K replicas are deliberately faulty, and the view
 * reports when the honest ones isolate them. Once all nodes see each other
 * the demo creates two CRDTs, a counter that every node increments every few
 * seconds and a set that every node adds itself to, and the view shows each
 * node's copy converging.
 *
 * On a first run (no node has Raft state yet) the nodes start with
 * `--initial-cluster <every peer id>`: the Raft group forms with all N
 * voters at once, and the view tells when it did. Nodes brought back by a
 * later run resume the group they are in.
 *
 * The demo supervises but never restarts: a node that dies is shown as down,
 * and `accord start --data-dir <its dir>` brings it back (the view notices).
 */
import { spawn } from 'node:child_process'
import { access, mkdir, open, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { writeFileAtomic } from '../config.ts'
import { UserError } from '../errors.ts'
import { loadOrCreateIdentity } from '../identity.ts'
import { raftStorageDir } from '../raft/storage/index.ts'
import { readRuntimeInfo } from '../runtime-file.ts'
import { apiRequest } from './api-client.ts'
import { parseFlags, parseIntegerFlag } from './args.ts'
import type { NodeStatus } from '../accord-node.ts'
import type { ChildProcess } from 'node:child_process'

/** The demo's CRDTs (see DEMO_HELP), and how many poll rounds apart each node increments the counter. */
const DEMO_COUNTER = 'demo-counter'
const DEMO_SET = 'demo-set'
const CRDT_INCREMENT_ROUNDS = 5

export const DEMO_HELP = `Usage: accord demo [--nodes N] [--data-dir DIR] [--api-port-base P] [--p2p-port-base P] [--byzantine K]

Start N accord node processes on 127.0.0.1, each bootstrapped only from the
first, and show live what each one sees. Node i keeps its data in DIR/node-i
(so a second demo run reuses identities), its log in DIR/node-i/node.log, and
DIR/cluster.json lists every node and whether the Raft group formed. On a first
run the nodes start with --initial-cluster (every node's peer id), so the Raft
group forms with all N voters at once; the demo prints when. A node that dies is shown as down; bring it
back with "accord start --data-dir DIR/node-i". Ctrl-C stops them all.
Every node is a replica of the Byzantine-fault-tolerant store (accord bft).
Once all nodes see each other the demo creates two CRDTs (accord crdt):
demo-counter (a g-counter every node increments every ${CRDT_INCREMENT_ROUNDS} polls of the view)
and demo-set (an or-set every node adds its name to); the columns counter
and set show each node's copy converging.

  --nodes N           number of nodes, 1..64 (default 5)
  --data-dir DIR      default ./.accord-demo
  --api-port-base P   node i serves its HTTP API on 127.0.0.1:P+i (default 7070)
  --p2p-port-base P   node i listens for libp2p on 127.0.0.1:P+i (default 4001)
  --cluster NAME      cluster name (default "demo")
  --byzantine K       start the last K nodes as deliberately faulty PBFT replicas
                      (K at most f = (N-1)/3 rounded down); watch the others isolate them
`

// node/cli.ts in the sources, dist/node/cli.js in the built package
const CLI_PATH = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../cli.ts' : '../cli.js', import.meta.url))
const POLL_INTERVAL_MS = 1000
const NODE_START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 10_000

interface DemoNode {
  index: number
  dataDir: string
  apiUrl: string
  multiaddr: string
  child: ChildProcess | null
  pid: number | null
  state: 'starting' | 'up' | 'down'
  exitReason: string | null
  status: NodeStatus | null
  /** Started with --byzantine. */
  byzantine: boolean
  /** Peers this node's PBFT replica was seen isolating (each announced once). */
  isolatedSeen: Set<string>
  /** This node's copies of the demo CRDTs (null: not read, or not there yet). */
  counter: number | null
  set: string[] | null
}

export async function demoCommand (args: string[]): Promise<void> {
  const flags = parseFlags('demo', args, {
    nodes: { type: 'string' },
    'data-dir': { type: 'string' },
    'api-port-base': { type: 'string' },
    'p2p-port-base': { type: 'string' },
    cluster: { type: 'string' },
    byzantine: { type: 'string' }
  })
  const count = parseIntegerFlag(flags.nodes, '--nodes', 1, 64) ?? 5
  const f = Math.floor((count - 1) / 3)
  const byzantine = parseIntegerFlag(flags.byzantine, '--byzantine', 0, 64) ?? 0
  if (byzantine > f) { throw new UserError(`--byzantine ${byzantine}: ${count} replicas tolerate at most f = ${f} faulty ones`) }
  const apiBase = parseIntegerFlag(flags['api-port-base'], '--api-port-base', 1, 65535 - 64) ?? 7070
  const p2pBase = parseIntegerFlag(flags['p2p-port-base'], '--p2p-port-base', 1, 65535 - 64) ?? 4001
  const cluster = flags.cluster ?? 'demo'
  const dataDir = resolve(flags['data-dir'] ?? '.accord-demo')
  await mkdir(dataDir, { recursive: true, mode: 0o700 })

  const nodes: DemoNode[] = Array.from({ length: count }, (_, index) => ({
    index,
    dataDir: join(dataDir, `node-${index}`),
    apiUrl: `http://127.0.0.1:${apiBase + index}`,
    multiaddr: `/ip4/127.0.0.1/tcp/${p2pBase + index}`,
    child: null,
    pid: null,
    state: 'starting',
    exitReason: null,
    status: null,
    byzantine: index >= count - byzantine,
    isolatedSeen: new Set(),
    counter: null,
    set: null
  }))
  // the replica set is every node: make their identities first, to know their peer ids
  const replicas: string[] = []
  for (const node of nodes) { replicas.push((await loadOrCreateIdentity(node.dataDir)).peerId.toString()) }
  // a first run forms the Raft group with every node as a voter at once; a
  // later one resumes it (a node left out of it, say with --nodes raised,
  // joins as a learner)
  const fresh = (await Promise.all(nodes.map(async node => access(raftStorageDir(node.dataDir)).then(() => false, () => true)))).every(Boolean)
  const initialCluster = fresh ? replicas : null
  const view = new DemoView(nodes, process.stdout.isTTY === true)
  const startedAtMs = Date.now()
  view.event(`starting ${count} nodes of cluster "${cluster}" on 127.0.0.1, data in ${dataDir} (Ctrl-C stops them all)`)
  view.event(`every node is a PBFT replica (n = ${count}, f = ${f})${byzantine > 0 ? `; nodes ${nodes.filter(n => n.byzantine).map(n => n.index).join(', ')} are deliberately faulty (--byzantine)` : ''}`)

  let stopping = false
  const onChildExit = (node: DemoNode, reason: string): void => {
    node.state = 'down'
    node.child = null
    node.exitReason = reason
    if (!stopping) { view.event(`node ${node.index} is down (${reason}); restart it with: accord start --data-dir ${node.dataDir}`) }
  }

  const first = nodes[0]
  await launch(first, cluster, [], replicas, initialCluster, onChildExit)
  const firstInfo = await waitForRuntimeInfo(first)
  const bootstrap = `${first.multiaddr}/p2p/${firstInfo.peerId}`
  // the others join with a token from node 0 (the demo does what
  // "accord token create" does); nodes that joined in an earlier run ignore it
  const joinToken = await demoJoinToken(first)
  view.event(`node 0 is up as ${firstInfo.peerId}; the others bootstrap from ${bootstrap} with a join token it made`)
  await Promise.all(nodes.slice(1).map(async node => { await launch(node, cluster, [bootstrap], replicas, initialCluster, onChildExit, joinToken) }))

  const stopSignal = new Promise<string>(resolve => {
    process.once('SIGINT', () => { resolve('SIGINT') })
    process.once('SIGTERM', () => { resolve('SIGTERM') })
  })

  const raft: RaftFormation = { formed: false, formedAt: null, voters: 0 }
  let allConnectedAnnounced = false
  let crdtsCreated = false
  let round = 0
  const state = { done: false }
  void stopSignal.then(() => { state.done = true })
  while (!state.done) {
    await Promise.all(nodes.map(async node => { await poll(node) }))
    announceRaftFormation(view, nodes, raft, startedAtMs)
    await writeClusterFile(dataDir, nodes, raft)
    const upNodes = nodes.filter(n => n.state === 'up')
    const everyoneSeesEveryone = upNodes.length === count && upNodes.every(n => (n.status?.members.filter(m => m.connected).length ?? 0) === count - 1)
    if (everyoneSeesEveryone && !allConnectedAnnounced) {
      view.event(`all ${count} nodes discovered each other in ${((Date.now() - startedAtMs) / 1000).toFixed(1)} s`)
    }
    allConnectedAnnounced = everyoneSeesEveryone
    if (everyoneSeesEveryone && !crdtsCreated) {
      crdtsCreated = await createDemoCrdts(first)
      if (crdtsCreated) { view.event(`node 0 created ${DEMO_COUNTER} (g-counter) and ${DEMO_SET} (or-set): every node adds itself to the set and increments the counter every ${CRDT_INCREMENT_ROUNDS * POLL_INTERVAL_MS / 1000} s`) }
    }
    const thisRound = round++
    if (crdtsCreated) { await Promise.all(upNodes.map(async node => { await crdtRound(node, thisRound) })) }
    announceIsolations(view, upNodes, replicas)
    view.render()
    await Promise.race([stopSignal, new Promise(resolve => setTimeout(resolve, POLL_INTERVAL_MS))])
  }

  stopping = true
  view.event('stopping all nodes')
  await Promise.all(nodes.map(async node => { await stopNode(node) }))
  await writeClusterFile(dataDir, nodes, raft)
  view.event('all nodes stopped')
}

/** Creates the demo's CRDTs on `node` (the others learn them by sync); false when its API refused. */
async function createDemoCrdts (node: DemoNode): Promise<boolean> {
  for (const [name, type] of [[DEMO_COUNTER, 'g-counter'], [DEMO_SET, 'or-set']]) {
    const response = await apiRequest({ url: node.apiUrl, token: null }, 'PUT', `/v1/crdt/${name}`, { body: JSON.stringify({ type }), contentType: 'application/json', timeoutMs: 2000 }).catch(() => ({ status: 0 }))
    if (response.status !== 200 && response.status !== 201) { return false }
  }
  return true
}

/**
 * One poll round of a node's part in the CRDTs, once the names reached it:
 * it adds itself to the set (until it sees itself there) and, every
 * CRDT_INCREMENT_ROUNDS rounds, increments the counter; then it reads both.
 */
async function crdtRound (node: DemoNode, round: number): Promise<void> {
  const target = { url: node.apiUrl, token: null }
  const me = `node-${node.index}`
  const op = async (name: string, body: unknown): Promise<void> => {
    await apiRequest(target, 'POST', `/v1/crdt/${name}`, { body: JSON.stringify(body), contentType: 'application/json', timeoutMs: 800 }).catch(() => {})
  }
  if (node.set !== null && !node.set.includes(me)) { await op(DEMO_SET, { op: 'add', value: me }) }
  if (node.counter !== null && (round + node.index) % CRDT_INCREMENT_ROUNDS === 0) { await op(DEMO_COUNTER, { op: 'increment', by: 1 }) }
  const read = async (name: string): Promise<unknown> => {
    const response = await apiRequest(target, 'GET', `/v1/crdt/${name}`, { timeoutMs: 800 }).catch(() => ({ status: 0, json: null }))
    return response.status === 200 ? response.json?.value : null
  }
  const [counter, set] = await Promise.all([read(DEMO_COUNTER), read(DEMO_SET)])
  node.counter = typeof counter === 'number' ? counter : null
  node.set = Array.isArray(set) ? set.map(String) : null
}

async function demoJoinToken (node: DemoNode): Promise<string> {
  const deadline = Date.now() + NODE_START_TIMEOUT_MS
  let last = ''
  while (Date.now() < deadline && node.state !== 'down') {
    const response = await apiRequest({ url: node.apiUrl, token: null }, 'POST', '/v1/admission/tokens', { body: JSON.stringify({ ttlSeconds: 600 }) }).catch((err: Error) => ({ status: 0, json: { error: err.message } }))
    if (response.status === 200) { return String(response.json.token) }
    last = `${response.status} ${String(response.json.error ?? '')}`
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new UserError(`node ${node.index} made no join token: ${last}`)
}

async function launch (node: DemoNode, cluster: string, bootstrap: string[], replicas: string[], initialCluster: string[] | null, onExit: (node: DemoNode, reason: string) => void, joinToken?: string): Promise<void> {
  await mkdir(node.dataDir, { recursive: true, mode: 0o700 })
  const log = await open(join(node.dataDir, 'node.log'), 'a')
  const args = [
    CLI_PATH, 'start',
    '--data-dir', node.dataDir,
    '--cluster', cluster,
    '--listen', node.multiaddr,
    '--api', new URL(node.apiUrl).host,
    ...bootstrap.flatMap(b => ['--bootstrap', b]),
    '--bft-replicas', replicas.join(','),
    ...(initialCluster != null ? ['--initial-cluster', initialCluster.join(',')] : []),
    ...(node.byzantine ? ['--byzantine'] : [])
  ]
  // the token goes through the environment, where other users' ps does not show it
  const env = joinToken != null ? { ...process.env, ACCORD_JOIN_TOKEN: joinToken } : process.env
  const child = spawn(process.execPath, args, { stdio: ['ignore', log.fd, log.fd], env })
  await log.close()
  node.child = child
  node.pid = child.pid ?? null
  node.state = 'starting'
  child.once('exit', (code, signal) => { onExit(node, signal != null ? `killed by ${signal}` : `exited with code ${code}`) })
}

async function waitForRuntimeInfo (node: DemoNode): Promise<{ peerId: string }> {
  const deadline = Date.now() + NODE_START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (node.state === 'down') { break }
    const info = await readRuntimeInfo(node.dataDir)
    if (info != null && info.pid === node.pid) { return info }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  const log = await readFile(join(node.dataDir, 'node.log'), 'utf8').catch(() => '')
  const lastLine = log.trim().split('\n').at(-1) ?? ''
  throw new UserError(`node ${node.index} did not start (${node.exitReason ?? 'timed out'}): ${lastLine}`)
}

async function poll (node: DemoNode): Promise<void> {
  try {
    const { status, json } = await apiRequest({ url: node.apiUrl, token: null }, 'GET', '/v1/status', { timeoutMs: 800 })
    if (status !== 200) { throw new Error(`status ${status}`) }
    node.status = json as NodeStatus
    if (node.state !== 'up') {
      // a node brought back by hand: learn its pid from the node itself (its
      // runtime file may still be the dead process's: it is written after the API starts)
      if (node.child == null) { node.pid = node.status.pid }
      node.state = 'up'
      node.exitReason = null
    }
  } catch {
    node.status = null
    if (node.state === 'up') {
      node.state = 'down'
      node.exitReason ??= 'API unreachable'
    }
  }
}

async function stopNode (node: DemoNode): Promise<void> {
  const pid = node.child?.pid ?? (node.state === 'up' ? node.pid : null)
  if (pid == null) { return }
  try { process.kill(pid, 'SIGTERM') } catch { return }
  const deadline = Date.now() + STOP_TIMEOUT_MS
  while (Date.now() < deadline && isAlive(pid)) { await new Promise(resolve => setTimeout(resolve, 50)) }
  if (isAlive(pid)) { process.kill(pid, 'SIGKILL') }
  node.state = 'down'
  node.exitReason = 'stopped'
}

/** Whether a process with this pid exists (signal 0 checks without signalling). */
export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** What cluster.json says of the Raft group: formed (a leader, and every node a voter on a first run), when (null: resumed from an earlier run), and its voters. */
interface RaftFormation {
  formed: boolean
  formedAt: string | null
  voters: number
}

/**
 * Once a node reports the group formed, tells when (the time the node saw
 * it form, or that it resumed from an earlier run) and how many voters it has.
 */
function announceRaftFormation (view: DemoView, nodes: DemoNode[], raft: RaftFormation, startedAtMs: number): void {
  if (raft.formed) { return }
  const seen = nodes.map(n => n.status?.raft).find(r => r?.formed === true && r.leader != null)
  if (seen == null) { return }
  raft.formed = true
  raft.formedAt = seen.formedAt
  raft.voters = seen.voters.length
  view.event(seen.formedAt != null
    ? `raft group formed with ${raft.voters} voters at ${seen.formedAt.slice(11, 23)}, ${((Date.parse(seen.formedAt) - startedAtMs) / 1000).toFixed(1)} s after the demo started`
    : `raft group resumed from an earlier run with ${raft.voters} voters`)
}

async function writeClusterFile (dataDir: string, nodes: DemoNode[], raft: RaftFormation): Promise<void> {
  const cluster = {
    raft,
    nodes: nodes.map(n => ({
      index: n.index,
      peerId: n.status?.peerId ?? null,
      multiaddrs: n.status?.addresses ?? [n.multiaddr],
      api: n.apiUrl,
      dataDir: n.dataDir,
      pid: n.state === 'down' ? null : n.pid,
      state: n.state
    }))
  }
  await writeFileAtomic(join(dataDir, 'cluster.json'), JSON.stringify(cluster, null, 2) + '\n', 0o644)
}

function raftRole (s: NodeStatus): string {
  const raft = s.raft
  if (raft == null) { return '-' }
  if (!raft.formed) { return 'forming' }
  if (raft.voters.includes(s.peerId)) { return raft.role }
  return raft.learners.includes(s.peerId) ? 'learner' : 'joining'
}

/** Renders the table: redrawn in place on a terminal, printed on change otherwise. */
class DemoView {
  readonly #nodes: DemoNode[]
  readonly #tty: boolean
  #lastTable = ''
  #drawnLines = 0

  constructor (nodes: DemoNode[], tty: boolean) {
    this.#nodes = nodes
    this.#tty = tty
  }

  event (text: string): void {
    this.#erase()
    process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${text}\n`)
    this.#drawnLines = 0
    this.#lastTable = ''
  }

  render (): void {
    const table = this.#table()
    if (table === this.#lastTable) { return }
    this.#erase()
    process.stdout.write(table)
    this.#drawnLines = this.#tty ? table.split('\n').length - 1 : 0
    this.#lastTable = table
  }

  #erase (): void {
    if (this.#tty && this.#drawnLines > 0) { process.stdout.write(`\x1b[${this.#drawnLines}A\x1b[0J`) }
  }

  #table (): string {
    const peers = this.#nodes.length - 1
    const rows = [['node', 'peer id', 'state', 'pid', 'members', 'alive', 'conns', 'dht', 'raft', 'term', 'commit', 'bft view', 'primary', 'isolated', 'counter', 'set', 'api']]
    for (const n of this.#nodes) {
      const s = n.status
      rows.push([
        String(n.index),
        s != null ? `${s.peerId.slice(0, 8)}…${s.peerId.slice(-6)}` : '-',
        n.state === 'down' ? `down (${n.exitReason ?? '?'})` : n.state,
        n.state === 'down' ? '-' : String(n.pid ?? '-'),
        s != null ? `${s.members.filter(m => m.connected).length}/${peers}` : '-',
        s != null ? membershipCell(s, peers) : '-',
        s != null ? String(s.peers.length) : '-',
        s != null ? String(s.dhtRoutingTableSize) : '-',
        s?.raft != null ? raftRole(s) : '-',
        s?.raft != null ? String(s.raft.term) : '-',
        s?.raft != null ? String(s.raft.commit) : '-',
        ...bftCells(n),
        ...crdtCells(n),
        n.apiUrl
      ])
    }
    const widths = rows[0].map((_, c) => Math.max(...rows.map(r => r[c].length)))
    return rows.map(r => r.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd()).join('\n') + '\n'
  }
}

/** Tells once of each peer a node's PBFT replica isolated (by node number when it is one of the demo's). */
function announceIsolations (view: DemoView, nodes: DemoNode[], replicas: string[]): void {
  for (const node of nodes) {
    for (const { peerId, reason } of node.status?.bft?.isolated ?? []) {
      if (node.isolatedSeen.has(peerId)) { continue }
      node.isolatedSeen.add(peerId)
      const offender = replicas.indexOf(peerId)
      view.event(`node ${node.index} isolated ${offender >= 0 ? `node ${offender}` : peerId} (${reason})`)
    }
  }
}

/** The PBFT columns: view (* while changing), primary, peers isolated. */
function bftCells (n: DemoNode): string[] {
  const b = n.status?.bft
  if (b?.view == null) { return ['-', '-', b != null ? String(b.isolated.length) : '-'] }
  return [
    `${b.view}${b.viewChanging ? '*' : ''}${n.byzantine ? ' (faulty)' : ''}`,
    b.primary != null ? `${b.primary.slice(0, 8)}…${b.primary.slice(-6)}` : '-',
    String(b.isolated.length)
  ]
}

/** The CRDT columns: this node's counter value and set size. */
function crdtCells (n: DemoNode): string[] {
  if (n.state !== 'up') { return ['-', '-'] }
  return [n.counter !== null ? String(n.counter) : '-', n.set !== null ? String(n.set.length) : '-']
}

/** How many of the others this node's membership protocol sees alive, and which it suspects or declared dead. */
function membershipCell (s: NodeStatus, peers: number): string {
  const others = (s.membership ?? []).filter(m => m.peerId !== s.peerId)
  const count = (state: string): number => others.filter(m => m.state === state).length
  const extra = ['suspect', 'dead', 'left'].flatMap(state => count(state) > 0 ? [`${count(state)} ${state}`] : [])
  return [`${count('alive')}/${peers}`, ...extra].join(', ')
}
