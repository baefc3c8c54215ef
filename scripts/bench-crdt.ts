/* eslint-disable no-console */
/**
 * npm run bench:crdt [-- --trace FILE --runs 5 --yjs on --automerge on]
 * npm run bench:crdt -- --delta [--delta-ops 10000 --delta-clients 16 --delta-sync-ms 5000]
 *
 * B4 (dmonad/crdt-benchmarks): the automerge-paper editing trace (259,778
 * single-character edits by one author) replayed through accord's RGA
 * (protocols/crdt/rga), Yjs (Y.Text insert/delete, one transaction per edit
 * as in Y.Text's own calls) and Automerge 3 (splice on a text field, all in
 * one change, its fastest path). For each: edits/s (the median of --runs
 * replays), the encoded document's size (RGA: encodeRga; Yjs:
 * encodeStateAsUpdate; Automerge: save), load time (median of decoding it
 * into a fresh document and reading the text) and the heap the replayed
 * document holds (heapUsed after a GC, minus before; run with --expose-gc,
 * as the npm script does). The RGA also reports its size after
 * collectStable (every tombstone is stable with one author) and, in the same
 * run, the friendsforever concurrent trace (one replica per agent).
 *
 * --trace FILE replays that trace (sequential or concurrent, .json or
 * .json.gz) through the RGA alone and prints the same figures. Traces are
 * read from $ACCORD_TRACES_DIR or ../shared/data/editing-traces next to the
 * repository. Writes bench/results/crdt.json (--trace: crdt-trace.json); exits non-zero when a replay
 * does not reach the trace's endContent (not when a target is missed).
 *
 * Delta sync (after the traces, or alone with --delta; --delta-ops 0 skips
 * it): 5 `accord start` processes on loopback (Raft off), a pn-counter and
 * an or-set created on node 0; --delta-ops counter ops (increments, every
 * fourth a decrement) and as many set ops (adds; every fifth removes, on the
 * node that added it, an element added earlier) spread round-robin over the
 * 5 nodes by --delta-clients keep-alive HTTP clients. Reports the ops/s,
 * the CRDT bytes: delta payloads published and received (the service's
 * accord_crdt_delta_bytes_total, summed over the nodes; sync exchanges have
 * no byte metric of their own), and every byte of the TCP connections
 * between the nodes (ss's per-socket counters: encrypted, with gossipsub's
 * framing and fan-out, sync, and the nodes' background traffic, measured
 * alone beforehand for as long as the ops take and given beside);
 * and the time to converge: from the last op acknowledged until every node's
 * GET of both CRDTs answers the same (expected) value. Merged into
 * bench/results/crdt.json as `delta` (the trace figures are kept).
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { Agent } from 'node:http'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import * as Automerge from '@automerge/automerge'
import * as Y from 'yjs'
import { encodeRga, loadRga } from '../protocols/crdt/rga/index.ts'
import { isConcurrent, patchCount, replayConcurrent, replaySequential } from '../protocols/crdt/rga/trace.ts'
import { checkRunning, children, httpCall, randomPortBase, saveResults, spawnAccord, waitUntil } from './bench-lib.ts'
import type { Trace } from '../protocols/crdt/rga/trace.ts'

const { values } = parseArgs({
  options: {
    trace: { type: 'string' },
    runs: { type: 'string', default: '5' },
    yjs: { type: 'string', default: 'on' },
    automerge: { type: 'string', default: 'on' },
    delta: { type: 'boolean', default: false },
    'delta-ops': { type: 'string', default: '10000' },
    'delta-clients': { type: 'string', default: '16' },
    'delta-sync-ms': { type: 'string', default: '5000' }
  }
})
const RUNS = Math.max(1, Number(values.runs))
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url))
const TRACES_DIR = process.env.ACCORD_TRACES_DIR ?? join(REPO_ROOT, '..', 'shared', 'data', 'editing-traces')
const LOAD_RUNS = 15

/** The issue's targets for B4. */
const TARGET = { yjsSpeedRatioMin: 1.0, bytesMax: 129 * 1024, loadMsMax: 30 }

interface Figures {
  name: string
  edits: number
  editsPerSecond: number
  replayMs: number
  bytes: number
  loadMs: number
  heapBytes: number
  bytesCollected?: number
}

function readTrace (file: string): Trace {
  const raw = readFileSync(file)
  const text = raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw).toString('utf8') : raw.toString('utf8')
  return JSON.parse(text)
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

const gc = (): void => { (globalThis as { gc?(): void }).gc?.() }

function heapNow (): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

/**
 * Runs `replay` RUNS times (the median time counts) and keeps the last
 * document to measure its heap, `encode` it and time `load` of the bytes.
 */
function measure<D> (name: string, edits: number, runs: number, replay: () => D, check: (doc: D) => boolean, encode: (doc: D) => Uint8Array, load: (bytes: Uint8Array) => string): Figures {
  const times: number[] = []
  let doc: D | null = null
  let heapBytes = 0
  for (let r = 0; r < runs; r++) {
    doc = null
    const before = heapNow()
    const t = performance.now()
    doc = replay()
    times.push(performance.now() - t)
    heapBytes = heapNow() - before
  }
  if (doc === null || !check(doc)) { throw new Error(`${name}: the replay does not reach endContent`) }
  const bytes = encode(doc)
  const loads: number[] = []
  let expected = ''
  for (let r = 0; r < LOAD_RUNS; r++) {
    const t = performance.now()
    const text = load(bytes)
    loads.push(performance.now() - t)
    expected = text
  }
  if (expected.length === 0 && edits > 0) { throw new Error(`${name}: load gave an empty text`) }
  const replayMs = median(times)
  return { name, edits, editsPerSecond: edits / (replayMs / 1000), replayMs, bytes: bytes.length, loadMs: median(loads), heapBytes }
}

function rgaFigures (trace: Trace, name: string): Figures {
  const edits = patchCount(trace)
  if (isConcurrent(trace)) {
    return measure(name, edits, RUNS, () => replayConcurrent(trace), docs => docs.every(d => d.toString() === trace.endContent), docs => encodeRga(docs[0]), bytes => {
      const loaded = loadRga(bytes, 'load')
      if (!loaded.ok) { throw new Error(loaded.error) }
      return loaded.value.toString()
    })
  }
  const figures = measure(name, edits, RUNS, () => replaySequential(trace), doc => doc.toString() === trace.endContent, encodeRga, bytes => {
    const loaded = loadRga(bytes, 'load')
    if (!loaded.ok) { throw new Error(loaded.error) }
    return loaded.value.toString()
  })
  const doc = replaySequential(trace)
  doc.collectStable(doc.version())
  figures.bytesCollected = encodeRga(doc).length
  return figures
}

function yjsFigures (trace: Trace): Figures {
  return measure('Yjs 13', patchCount(trace), Math.min(RUNS, 3), () => {
    const doc = new Y.Doc()
    const text = doc.getText('text')
    for (const txn of trace.txns) {
      for (const [pos, del, ins] of txn.patches) {
        if (del > 0) { text.delete(pos, del) }
        if (ins.length > 0) { text.insert(pos, ins) }
      }
    }
    return doc
  }, doc => doc.getText('text').toString() === trace.endContent, doc => Y.encodeStateAsUpdate(doc), bytes => {
    const doc = new Y.Doc()
    Y.applyUpdate(doc, bytes)
    return doc.getText('text').toString()
  })
}

function automergeFigures (trace: Trace): Figures {
  return measure('Automerge 3', patchCount(trace), 1, () => {
    let doc = Automerge.from<{ text: string }>({ text: '' })
    doc = Automerge.change(doc, d => {
      for (const txn of trace.txns) {
        for (const [pos, del, ins] of txn.patches) { Automerge.splice(d, ['text'], pos, del, ins) }
      }
    })
    return doc
  }, doc => doc.text === trace.endContent, doc => Automerge.save(doc), bytes => Automerge.load<{ text: string }>(bytes).text)
}

const kb = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KB`

function printTable (rows: Figures[], base: Figures): void {
  console.log('| implementation | edits/s | replay time vs RGA | encoded | size vs RGA | load ms | heap |')
  console.log('|---|---:|---:|---:|---:|---:|---:|')
  for (const f of rows) {
    console.log(`| ${f.name} | ${Math.round(f.editsPerSecond).toLocaleString('en')} | ${(base.editsPerSecond / f.editsPerSecond).toFixed(2)}x | ${kb(f.bytes)} (${f.bytes.toLocaleString('en')} B) | ${(f.bytes / base.bytes).toFixed(2)}x | ${f.loadMs.toFixed(1)} | ${(f.heapBytes / 1048576).toFixed(1)} MB |`)
  }
}

async function main (): Promise<void> {
  if (!values.delta) { await traces() }
  if (values.trace === undefined && Number(values['delta-ops']) > 0) { await deltaSync() }
}

async function traces (): Promise<void> {
  const results: Record<string, unknown> = { runs: RUNS }
  if (values.trace !== undefined) {
    const trace = readTrace(values.trace)
    const f = rgaFigures(trace, `RGA ${values.trace}`)
    console.log(`${values.trace}: ${isConcurrent(trace) ? 'concurrent' : 'sequential'}, ${f.edits.toLocaleString('en')} edits, endContent reached`)
    printTable([f], f)
    if (f.bytesCollected !== undefined) { console.log(`after collectStable: ${kb(f.bytesCollected)} (${f.bytesCollected} B)`) }
    // beside, not over, the B4 figures
    await saveResults('crdt-trace', { ...results, trace: values.trace, rga: f })
    return
  }
  const b4File = join(TRACES_DIR, 'automerge-paper.json.gz')
  if (!existsSync(b4File)) { throw new Error(`no ${b4File}: set ACCORD_TRACES_DIR`) }
  const b4 = readTrace(b4File)
  console.log(`B4 automerge-paper: ${patchCount(b4).toLocaleString('en')} edits, ${b4.endContent.length.toLocaleString('en')} characters at the end; node ${process.version}${typeof (globalThis as { gc?: unknown }).gc === 'function' ? '' : ' (no --expose-gc: heap figures are rough)'}`)
  const rows: Figures[] = []
  const rga = rgaFigures(b4, 'accord RGA')
  rows.push(rga)
  if (values.yjs === 'on') { rows.push(yjsFigures(b4)) }
  if (values.automerge === 'on') { rows.push(automergeFigures(b4)) }
  printTable(rows, rga)
  console.log(`RGA after collectStable (no tombstones): ${kb(rga.bytesCollected ?? 0)} (${rga.bytesCollected} B)`)
  const yjs = rows.find(r => r.name.startsWith('Yjs'))
  const checks = {
    speedVsYjs: yjs === undefined ? null : rga.editsPerSecond / yjs.editsPerSecond,
    bytes: rga.bytes,
    loadMs: rga.loadMs
  }
  console.log(`targets: >= ${TARGET.yjsSpeedRatioMin}x Yjs edits/s: ${checks.speedVsYjs === null ? 'not measured' : `${checks.speedVsYjs.toFixed(1)}x ${checks.speedVsYjs >= TARGET.yjsSpeedRatioMin ? 'met' : 'MISSED'}`}; ` +
    `encoded <= ${kb(TARGET.bytesMax)}: ${kb(rga.bytes)} ${rga.bytes <= TARGET.bytesMax ? 'met' : 'MISSED'}; load <= ${TARGET.loadMsMax} ms: ${rga.loadMs.toFixed(1)} ms ${rga.loadMs <= TARGET.loadMsMax ? 'met' : 'MISSED'}`)
  const ffFile = join(TRACES_DIR, 'friendsforever.json.gz')
  let concurrent: Figures | null = null
  if (existsSync(ffFile)) {
    const ff = readTrace(ffFile)
    concurrent = rgaFigures(ff, 'accord RGA, friendsforever')
    console.log(`friendsforever (concurrent, ${ff.numAgents} agents, ${concurrent.edits.toLocaleString('en')} edits): ${Math.round(concurrent.editsPerSecond).toLocaleString('en')} edits/s (all replicas, syncing included), encoded ${kb(concurrent.bytes)}, load ${concurrent.loadMs.toFixed(1)} ms; every replica reached endContent`)
  }
  // the delta-sync figures of an earlier run stay (this run's replace them when it measures them)
  const earlier = await readResults('crdt')
  await saveResults('crdt', { ...results, b4: rows, targets: TARGET, checks, friendsforever: concurrent, ...(earlier.delta !== undefined ? { delta: earlier.delta } : {}) })
}

// ---------------------------------------------------------------- delta sync over 5 processes

const DELTA_NODES = 5
const COUNTER = 'bench-counter'
const SET = 'bench-set'

async function readResults (name: string): Promise<Record<string, unknown>> {
  return readFile(`bench/results/${name}.json`, 'utf8').then(text => JSON.parse(text), () => ({}))
}

/** Sets `key` of bench/results/<name>.json to `value`, the rest of the file as it was. */
async function mergeResults (name: string, key: string, value: unknown): Promise<void> {
  const earlier = await readResults(name)
  await mkdir('bench/results', { recursive: true })
  await writeFile(`bench/results/${name}.json`, JSON.stringify({ ...earlier, [key]: value }, null, 2) + '\n')
  console.log(`saved bench/results/${name}.json (${key})`)
}

/** Sum over the nodes of a Prometheus sample `name{labels}` (labels as written in /metrics, e.g. 'direction="out"'). */
function metricSum (texts: string[], name: string, labels = ''): number {
  let sum = 0
  const pattern = new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm')
  for (const text of texts) {
    for (const m of text.matchAll(pattern)) {
      if (labels === '' || (m[1] ?? '').split(',').includes(labels)) { sum += Number(m[2]) }
    }
  }
  return sum
}

const execFileP = promisify(execFile)

/**
 * Bytes both ways so far on the established TCP connections between the
 * nodes: each connection counted once, at the end that holds a node's
 * listen port (ss -ti: bytes_sent + bytes_received of that socket).
 */
async function wireBytes (listenPorts: number[]): Promise<number> {
  const filter = listenPorts.map(p => `sport = :${p}`).join(' or ')
  const { stdout } = await execFileP('ss', ['-tinH', 'state', 'established', `( ${filter} )`], { maxBuffer: 16 * 1024 * 1024 })
  let total = 0
  for (const m of stdout.matchAll(/bytes_(?:sent|received):(\d+)/g)) { total += Number(m[1]) }
  return total
}

interface DeltaFigures {
  date: string
  node: string
  cpus: number
  nodes: number
  syncIntervalMs: number
  clients: number
  counterOps: number
  setOps: number
  opsSeconds: number
  opsPerSecond: number
  /** Ops with no 200 answer (each may or may not have taken effect: the final values may differ from the expected by them). */
  errors: number
  errorReasons: string[]
  counterValue: number
  setSize: number
  /** accord_crdt_delta_bytes_total, summed over the nodes. */
  deltaBytesOut: number
  deltaBytesIn: number
  /** Every byte of the TCP connections between the nodes during the ops and until converged. */
  wireBytes: number
  /** The same, with no ops, for as long as the ops and convergence took (measured before). */
  wireBytesIdle: number
  wireBytesPerOp: number
  convergeMs: number
  syncRoundsOk: number
  syncRoundsFailed: number
  merges: number
  /** accord_crdt_state_bytes of each CRDT (node 0's). */
  stateBytes: Record<string, number>
}

async function deltaSync (): Promise<void> {
  const opsEach = Math.max(1, Number(values['delta-ops']))
  const clients = Math.max(1, Number(values['delta-clients']))
  const syncMs = values['delta-sync-ms']
  const root = await mkdtemp(join(tmpdir(), 'accord-bench-crdt-'))
  const base = randomPortBase(24_000)
  const apis = Array.from({ length: DELTA_NODES }, (_, i) => `http://127.0.0.1:${base + i}`)
  const listenPorts = Array.from({ length: DELTA_NODES }, (_, i) => base + 100 + i)
  // fifo: every pooled socket stays busy, so none sits idle until the server's keep-alive timeout races a request on it
  const agent = new Agent({ keepAlive: true, maxSockets: clients, scheduling: 'fifo' })
  const launch = (i: number, extra: string[]): ReturnType<typeof spawnAccord> => spawnAccord(join(root, `node-${i}`), [
    '--listen', `/ip4/127.0.0.1/tcp/${listenPorts[i]}`, '--api', `127.0.0.1:${base + i}`, '--raft', 'off', '--log-level', 'warn', '--crdt-sync-interval-ms', syncMs, ...extra
  ], { logFile: join(root, `node-${i}.log`) })
  const procs = [launch(0, [])]
  const servers = (): Array<[string, ReturnType<typeof spawnAccord>]> => procs.map((c, i) => [`node ${i}`, c])
  const call = async (i: number, method: string, path: string, body = ''): Promise<{ status: number, text: string }> =>
    httpCall(agent, apis[i], method, path, body, body === '' ? undefined : 'application/json')
  try {
    console.log(`\ndelta sync: ${DELTA_NODES} accord processes on loopback, --crdt-sync-interval-ms ${syncMs}, ${opsEach.toLocaleString('en')} counter ops + ${opsEach.toLocaleString('en')} set ops by ${clients} clients`)
    await waitUntil(async () => (await call(0, 'GET', '/v1/status')).status === 200, 60_000, 'node 0 to start')
    const bootstrap = JSON.parse((await call(0, 'GET', '/v1/status')).text).addresses[0]
    const { token } = JSON.parse((await call(0, 'POST', '/v1/admission/tokens', '{}')).text)
    for (let i = 1; i < DELTA_NODES; i++) { procs.push(launch(i, ['--bootstrap', bootstrap, '--join-token', token])) }
    await waitUntil(async () => {
      checkRunning('accord', servers(), 'at start')
      const connected = await Promise.all(apis.map(async (_, i) => JSON.parse((await call(i, 'GET', '/v1/status')).text).members.filter((m: { connected: boolean }) => m.connected).length))
      return connected.every(n => n === DELTA_NODES - 1)
    }, 90_000, 'every node to connect to every other')
    for (const [name, type] of [[COUNTER, 'pn-counter'], [SET, 'or-set']]) {
      const { status, text } = await call(0, 'PUT', `/v1/crdt/${name}`, JSON.stringify({ type }))
      if (status !== 201) { throw new Error(`PUT /v1/crdt/${name}: ${status} ${text}`) }
    }
    await waitUntil(async () => (await Promise.all(apis.map(async (_, i) => (await call(i, 'GET', `/v1/crdt/${SET}`)).status))).every(s => s === 200), 60_000, 'every node to hold both CRDTs')

    // the nodes' own background traffic, for as long as a first guess of the run
    const idleMs = 3000
    const idleStart = await wireBytes(listenPorts)
    await sleep(idleMs)
    const idleRate = (await wireBytes(listenPorts) - idleStart) / idleMs

    const metricsBefore = await Promise.all(apis.map(async (_, i) => (await call(i, 'GET', '/metrics')).text))
    const wireBefore = await wireBytes(listenPorts)
    let counterValue = 0
    const setElements = new Set<string>()
    let errors = 0
    const errorReasons: string[] = []
    const t0 = performance.now()
    // op k (0-based) of each kind goes to node k mod 5; each client takes every clients-th op, in order
    const counterOp = (k: number): { node: number, body: string } => {
      const by = 1 + (k % 5)
      const decrement = k % 4 === 3
      counterValue += decrement ? -by : by
      return { node: k % DELTA_NODES, body: JSON.stringify({ op: decrement ? 'decrement' : 'increment', by }) }
    }
    // every fifth set op removes, on the node that added it, the element its client added last and has not removed
    // (that add was acknowledged before: a client sends its ops one after the other)
    const added: Array<Array<{ value: string, node: number }>> = Array.from({ length: clients }, () => [])
    const setOp = (k: number, c: number): { node: number, body: string } => {
      const last = k % 5 === 4 ? added[c].pop() : undefined
      if (last !== undefined) {
        setElements.delete(last.value)
        return { node: last.node, body: JSON.stringify({ op: 'remove', value: last.value }) }
      }
      added[c].push({ value: `e${k}`, node: k % DELTA_NODES })
      setElements.add(`e${k}`)
      return { node: k % DELTA_NODES, body: JSON.stringify({ op: 'add', value: `e${k}` }) }
    }
    await Promise.all(Array.from({ length: clients }, async (_, c) => {
      for (let k = c; k < opsEach; k += clients) {
        for (const [name, op] of [[COUNTER, counterOp(k)], [SET, setOp(k, c)]] as const) {
          const answer = await call(op.node, 'POST', `/v1/crdt/${name}`, op.body).catch((err: Error) => ({ status: 0, text: err.message }))
          if (answer.status !== 200) {
            errors++
            if (errorReasons.length < 10) { errorReasons.push(`${name} ${op.body} on node ${op.node}: ${answer.status} ${answer.text.slice(0, 200)}`) }
          }
        }
      }
    }))
    const lastAck = performance.now()
    checkRunning('accord', servers(), 'during the ops')
    const expectedSet = createHash('sha256').update(JSON.stringify([...setElements].sort())).digest('hex')
    const digestOf = async (i: number): Promise<string> => {
      const [counter, set] = await Promise.all([COUNTER, SET].map(async name => JSON.parse((await call(i, 'GET', `/v1/crdt/${name}`)).text).value))
      return `${counter} ${createHash('sha256').update(JSON.stringify((set as string[]).sort())).digest('hex')}`
    }
    let digests = await Promise.all(apis.map(async (_, i) => digestOf(i)))
    while (new Set(digests).size > 1) {
      if (performance.now() - lastAck > 120_000) { throw new Error(`no convergence within 120 s: ${digests.join(' | ')}`) }
      await sleep(10)
      digests = await Promise.all(apis.map(async (_, i) => digestOf(i)))
    }
    const convergeMs = performance.now() - lastAck
    const wireAfter = await wireBytes(listenPorts)
    const runMs = performance.now() - t0
    if (digests[0] !== `${counterValue} ${expectedSet}`) { console.error(`converged, but not to the values of the acknowledged ops: ${digests[0]} vs ${counterValue} ${expectedSet}${errors > 0 ? ` (${errors} ops were not acknowledged)` : ''}`) }
    const metricsAfter = await Promise.all(apis.map(async (_, i) => (await call(i, 'GET', '/metrics')).text))
    const diff = (name: string, labels = ''): number => metricSum(metricsAfter, name, labels) - metricSum(metricsBefore, name, labels)
    const opsSeconds = (lastAck - t0) / 1000
    const wire = wireAfter - wireBefore
    const figures: DeltaFigures = {
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      nodes: DELTA_NODES,
      syncIntervalMs: Number(syncMs),
      clients,
      counterOps: opsEach,
      setOps: opsEach,
      opsSeconds,
      opsPerSecond: (2 * opsEach) / opsSeconds,
      errors,
      errorReasons,
      counterValue,
      setSize: setElements.size,
      deltaBytesOut: diff('accord_crdt_delta_bytes_total', 'direction="out"'),
      deltaBytesIn: diff('accord_crdt_delta_bytes_total', 'direction="in"'),
      wireBytes: wire,
      wireBytesIdle: Math.round(idleRate * runMs),
      wireBytesPerOp: wire / (2 * opsEach),
      convergeMs,
      syncRoundsOk: diff('accord_crdt_sync_rounds_total', 'result="ok"'),
      syncRoundsFailed: diff('accord_crdt_sync_rounds_total', 'result="failed"'),
      merges: diff('accord_crdt_merge_seconds_count'),
      stateBytes: Object.fromEntries([COUNTER, SET].map(name => [name, metricSum([metricsAfter[0]], 'accord_crdt_state_bytes', `name="${name}"`)]))
    }
    const mb = (bytes: number): string => `${(bytes / 1048576).toFixed(2)} MB (${Math.round(bytes).toLocaleString('en')} B)`
    console.log('| figure | value |')
    console.log('|---|---:|')
    for (const [label, value] of [
      ['ops (counter + set), acknowledged', `${(2 * opsEach - errors).toLocaleString('en')} of ${(2 * opsEach).toLocaleString('en')} in ${opsSeconds.toFixed(2)} s (${Math.round(figures.opsPerSecond).toLocaleString('en')} ops/s)`],
      ['final values', `counter ${counterValue}, set of ${setElements.size.toLocaleString('en')} elements${digests[0] === `${counterValue} ${expectedSet}` ? ' (as expected)' : ` (converged to ${digests[0].split(' ')[0]}: not as the acknowledged ops)`}`],
      ['delta payload bytes published (all nodes)', mb(figures.deltaBytesOut)],
      ['delta payload bytes received (all nodes)', mb(figures.deltaBytesIn)],
      ['TCP bytes between the nodes, ops until converged', `${mb(wire)}, ${Math.round(figures.wireBytesPerOp)} B/op`],
      ['of which background (idle rate x run time)', mb(figures.wireBytesIdle)],
      ['time to converge after the last ack', `${convergeMs.toFixed(0)} ms`],
      ['sync rounds ok / failed, joins', `${figures.syncRoundsOk} / ${figures.syncRoundsFailed}, ${figures.merges.toLocaleString('en')}`],
      ['state bytes (node 0)', Object.entries(figures.stateBytes).map(([n, b]) => `${n} ${b.toLocaleString('en')} B`).join(', ')]
    ]) { console.log(`| ${label} | ${value} |`) }
    if (errors > 0) { console.log(`ops with no 200 answer (they may have taken effect):\n  ${errorReasons.join('\n  ')}`) }
    await mergeResults('crdt', 'delta', figures)
  } finally {
    agent.destroy()
    for (const child of children) { child.kill('SIGKILL') }
    await rm(root, { recursive: true, force: true })
  }
}

main().catch(err => {
  console.error(err)
  process.exitCode = 1
})
