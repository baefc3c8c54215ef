/* eslint-disable no-console */
/**
 * node scripts/bench-snapshot.ts [--keys 200000] [--value-bytes 256] [--clients 64] [--seconds-after 5] [--dir /path]
 *
 * How long taking and restoring a Raft snapshot of the KV store stalls a
 * node. One voter (RaftDriver on the real RaftStorage, fsync on, 100 ms
 * ticks, election timeout 10-20 ticks), driven in-process, no network.
 *
 * Load: `keys` distinct puts, `clients` in flight (one session each). The
 * first snapshot falls due on the first entry after the load (a probe node
 * finds how many entries a fresh node logs before the first proposal), so it
 * starts right when the load ends.
 *
 * After: overwrites with `clients` in flight, for `seconds-after` seconds or
 * until the snapshot is stored, whichever is later. Measures the event-loop
 * delay (max, p99), the longest gap of a 100 ms timer beside the driver's
 * tick timer (the driver's own ticks are not observable from outside), write
 * latency (max, p99), the longest GC pause (to tell GC from our code), and
 * when driver.lastSnapshotIndex showed the snapshot stored, counted from the
 * end of the load. A stall longer than the minimum election timeout
 * (1000 ms) would cost a leader with followers its leadership.
 *
 * Restart: stop, close, reopen the storage and create a driver from what it
 * restored (as node/raft/service.ts does): time and event-loop stall of open
 * + load + create, time until the node serves a linearizable read, then
 * every key must read back its last acknowledged value (or the run throws).
 *
 * Prints a table and writes bench/results/snapshot.json. Use
 * --dir to measure a particular disk (default: the OS temp dir).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { RaftDriver } from '../node/raft/driver.ts'
import { kvApplication } from '../node/raft/kv-application.ts'
import { RaftStorage } from '../node/raft/storage/index.ts'
import { percentile } from './percentile.ts'
import type { RestoredState } from '../protocols/raft/index.ts'

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '200000' },
    'value-bytes': { type: 'string', default: '256' },
    clients: { type: 'string', default: '64' },
    'seconds-after': { type: 'string', default: '5' },
    dir: { type: 'string' }
  }
})
const keys = Number(values.keys)
const valueBytes = Number(values['value-bytes'])
const clients = Number(values.clients)
const secondsAfter = Number(values['seconds-after'])
if (!(keys >= clients && clients >= 1 && valueBytes >= 8 && secondsAfter >= 0)) {
  throw new RangeError('need --keys >= --clients >= 1, --value-bytes >= 8, --seconds-after >= 0')
}

const TICK_INTERVAL_MS = 100
const ELECTION_TIMEOUT_TICKS = 10
const ELECTION_TIMEOUT_MS_MIN = TICK_INTERVAL_MS * ELECTION_TIMEOUT_TICKS
/** Event-loop delay monitor resolution. */
const MONITOR_RESOLUTION_MS = 5
/** Phase 2 gives up waiting for the snapshot this long after its planned end. */
const SNAPSHOT_WAIT_MS_MAX = 300_000
const ID = 'bench-node'
const log = pino({ level: 'warn' })

function createDriver (storage: RaftStorage, restored: RestoredState, snapshotEveryEntries: number, tickIntervalMs: number): RaftDriver {
  const fresh = restored.hardState.term === 0 && restored.entries.length === 0 && restored.snapshot == null
  return RaftDriver.create({
    ...kvApplication(),
    id: ID,
    store: storage,
    outbox: { send: () => {} },
    restored,
    bootstrapConf: fresh ? { voters: [ID], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } : undefined,
    tickIntervalMs,
    electionTimeoutTicks: ELECTION_TIMEOUT_TICKS,
    heartbeatIntervalTicks: 1,
    readOnlyMode: 'safe',
    snapshotEveryEntries,
    // only snapshotEveryEntries decides when the snapshot falls due (900k
    // entries of 256 B would reach the default byte trigger during the load)
    snapshotLogBytesMax: Number.MAX_SAFE_INTEGER,
    autoPromoteLearners: false,
    log
  })
}

/** Until the driver leads and has applied everything committed before (a linearizable read). */
async function untilServing (driver: RaftDriver): Promise<void> {
  while (driver.status().role !== 'leader') { await sleep(5) }
  await driver.readBarrier()
}

/** Entries a fresh one-voter node logs before the first proposal (bootstrap conf, leader no-op). */
async function entriesBeforeFirstProposal (root: string): Promise<number> {
  const storage = await RaftStorage.open(join(root, 'probe'))
  const driver = createDriver(storage, await storage.load(), Number.MAX_SAFE_INTEGER, 1)
  driver.start()
  try {
    await untilServing(driver)
    return driver.status().lastIndex
  } finally {
    await driver.stop()
    await storage.close()
  }
}

const keyOf = (i: number): string => `key-${String(i).padStart(8, '0')}`
/** Key i's value as written for the generation-th time (0: the load); distinct per write so the check means something. */
function valueOf (i: number, generation: number): Uint8Array {
  const value = new Uint8Array(valueBytes)
  const view = new DataView(value.buffer)
  view.setUint32(0, i)
  view.setUint32(4, generation)
  return value
}

interface Client { clientId: string, sequence: number }

/** One put through the driver; returns its latency in ms. A failed put ends the run. */
async function put (driver: RaftDriver, client: Client, i: number, generation: number): Promise<number> {
  const started = performance.now()
  const result = await driver.propose({ type: 'put', session: { clientId: client.clientId, sequence: ++client.sequence }, key: keyOf(i), value: valueOf(i, generation) })
  if (!result.ok) { throw new Error(`put ${keyOf(i)} failed: ${result.reason}`) }
  return performance.now() - started
}

const ms = (ns: number): number => ns / 1e6

/** Garbage-collection pauses, to tell them apart from stalls in our code. */
const gcPauses: Array<{ at: number, ms: number }> = []
new PerformanceObserver(list => {
  for (const entry of list.getEntries()) { gcPauses.push({ at: entry.startTime, ms: entry.duration }) }
}).observe({ entryTypes: ['gc'] })
const gcPauseMsMax = (from: number, to: number): number =>
  Math.max(0, ...gcPauses.filter(p => p.at >= from && p.at <= to).map(p => p.ms))
/**
 * An event-loop delay monitor that has taken its first samples. Its first
 * timer callback only starts its clock, so a stall that begins right after
 * enable() (the snapshot, due on the next Ready) would not be recorded.
 */
async function startDelayMonitor (): Promise<ReturnType<typeof monitorEventLoopDelay>> {
  const monitor = monitorEventLoopDelay({ resolution: MONITOR_RESOLUTION_MS })
  monitor.enable()
  await sleep(4 * MONITOR_RESOLUTION_MS)
  return monitor
}
/** Stops a monitor once it has recorded a stall that may have just ended (it records on its next timer callback). */
async function stopDelayMonitor (monitor: ReturnType<typeof monitorEventLoopDelay>): Promise<void> {
  await sleep(4 * MONITOR_RESOLUTION_MS)
  monitor.disable()
}

const root = await mkdtemp(join(values.dir ?? tmpdir(), 'accord-bench-snapshot-'))
try {
  const base = await entriesBeforeFirstProposal(root)
  /** The first entry after the load; its apply makes the snapshot due. */
  const dueIndex = base + keys + 1
  const dir = join(root, 'raft')
  let storage = await RaftStorage.open(dir)
  let driver = createDriver(storage, await storage.load(), dueIndex, TICK_INTERVAL_MS)
  driver.start()
  await untilServing(driver)
  if (driver.status().lastIndex !== base) {
    console.warn(`warning: the node logged ${driver.status().lastIndex} entries before the load, the probe ${base}: the snapshot falls due off the load's end`)
  }
  const sessions: Client[] = Array.from({ length: clients }, (_, c) => ({ clientId: `bench-client-${c}`, sequence: 0 }))
  /** Generation of each key's last acknowledged value. */
  const generations = new Uint32Array(keys + 1)

  // 1. load
  const loadMonitor = await startDelayMonitor()
  const loadStarted = performance.now()
  let loaded = 0
  await Promise.all(sessions.map(async client => {
    while (loaded < keys) { await put(driver, client, ++loaded, 0) }
  }))
  const loadEnded = performance.now()
  await stopDelayMonitor(loadMonitor)
  const snapshotIndexAtLoadEnd = driver.lastSnapshotIndex

  // 2. after: overwrites while the snapshot is taken
  const afterMonitor = await startDelayMonitor()
  const afterStarted = performance.now()
  let snapshotStoredMs: number | null = null
  let snapshotsStored = 0
  let seenSnapshotIndex = driver.lastSnapshotIndex
  const snapshotPoll = setInterval(() => {
    if (driver.lastSnapshotIndex === seenSnapshotIndex) { return }
    seenSnapshotIndex = driver.lastSnapshotIndex
    snapshotsStored++
    if (snapshotStoredMs == null && seenSnapshotIndex >= dueIndex) { snapshotStoredMs = performance.now() - afterStarted }
  }, 5)
  let lastTick = performance.now()
  let tickGapMsMax = 0
  const ticker = setInterval(() => {
    const now = performance.now()
    tickGapMsMax = Math.max(tickGapMsMax, now - lastTick)
    lastTick = now
  }, TICK_INTERVAL_MS)
  const plannedEnd = afterStarted + secondsAfter * 1000
  const finished = (): boolean => {
    const now = performance.now()
    return now >= plannedEnd + SNAPSHOT_WAIT_MS_MAX || (now >= plannedEnd && snapshotStoredMs != null)
  }
  const latenciesMs: number[] = []
  await Promise.all(sessions.map(async (client, c) => {
    // client c alone overwrites keys c+1, c+1+clients, ...: each key's last acknowledged value is known
    for (let i = c + 1; !finished(); i = i + clients > keys ? c + 1 : i + clients) {
      latenciesMs.push(await put(driver, client, i, generations[i] + 1))
      generations[i]++
    }
  }))
  const afterEnded = performance.now()
  const afterSeconds = (afterEnded - afterStarted) / 1000
  clearInterval(snapshotPoll)
  clearInterval(ticker)
  await stopDelayMonitor(afterMonitor)
  if (snapshotStoredMs == null) { throw new Error(`no snapshot at index >= ${dueIndex} was stored within ${secondsAfter} s + ${SNAPSHOT_WAIT_MS_MAX / 1000} s after the load`) }
  latenciesMs.sort((a, b) => a - b)

  // 3. restart
  await driver.stop()
  await storage.close()
  const restartMonitor = await startDelayMonitor()
  const restartStarted = performance.now()
  storage = await RaftStorage.open(dir)
  const restored = await storage.load()
  const createStarted = performance.now()
  driver = createDriver(storage, restored, dueIndex, TICK_INTERVAL_MS)
  const createMs = performance.now() - createStarted
  const restoreMs = performance.now() - restartStarted
  await stopDelayMonitor(restartMonitor)
  driver.start()
  await untilServing(driver)
  const servingMs = performance.now() - restartStarted
  let checked = 0
  for (let i = 1; i <= keys; i++) {
    const got = driver.kv.get(keyOf(i))
    const want = valueOf(i, generations[i])
    if (got == null || Buffer.compare(got, want) !== 0) {
      throw new Error(`after restart ${keyOf(i)} reads ${got == null ? 'nothing' : `generation ${new DataView(got.buffer).getUint32(4)}`}, expected generation ${generations[i]}`)
    }
    checked++
  }
  await driver.stop()
  await storage.close()

  const result = {
    load: {
      keys,
      seconds: (loadEnded - loadStarted) / 1000,
      writesPerSecond: keys / ((loadEnded - loadStarted) / 1000),
      eventLoopDelayMsMax: ms(loadMonitor.max),
      gcPauseMsMax: gcPauseMsMax(loadStarted, loadEnded),
      /** 0 unless a snapshot was taken during the load (it should fall due just after) */
      snapshotIndexAtEnd: snapshotIndexAtLoadEnd
    },
    after: {
      seconds: afterSeconds,
      writes: latenciesMs.length,
      writesPerSecond: latenciesMs.length / afterSeconds,
      snapshotStoredMsAfterLoad: snapshotStoredMs,
      snapshotsStored,
      eventLoopDelayMsMax: ms(afterMonitor.max),
      gcPauseMsMax: gcPauseMsMax(afterStarted, afterEnded),
      eventLoopDelayMsP99: ms(afterMonitor.percentile(99)),
      timerGapMsMax: tickGapMsMax,
      writeLatencyMsP99: percentile(latenciesMs, 0.99),
      writeLatencyMsMax: latenciesMs.at(-1) ?? NaN,
      /** the longest the event loop (so the driver's tick timer) stood still */
      stallMsMax: Math.max(ms(afterMonitor.max), tickGapMsMax - TICK_INTERVAL_MS)
    },
    restart: {
      snapshotIndex: restored.snapshot?.meta.index ?? 0,
      snapshotBytes: restored.snapshot?.data.byteLength ?? 0,
      logEntriesAfterSnapshot: restored.entries.length,
      restoreMs,
      createMs,
      eventLoopDelayMsMax: ms(restartMonitor.max),
      gcPauseMsMax: gcPauseMsMax(restartStarted, restartStarted + restoreMs),
      servingMs,
      keysChecked: checked
    },
    electionTimeoutMsMin: ELECTION_TIMEOUT_MS_MIN,
    maxRssMiB: process.resourceUsage().maxRSS / 1024
  }

  const f = (n: number, digits = 0): string => n.toFixed(digits)
  const stallMs = result.after.stallMsMax
  console.log(`raft snapshot stall: ${keys} keys of ${valueBytes} B, ${clients} clients, one voter, fsync on, tick ${TICK_INTERVAL_MS} ms, dir ${values.dir ?? tmpdir()}`)
  console.log('| phase | measure | value |')
  console.log('|-------|---------|------:|')
  const rows: Array<[string, string, string]> = [
    ['load', 'writes/s', f(result.load.writesPerSecond)],
    ['load', 'event-loop delay max ms', f(result.load.eventLoopDelayMsMax)],
    ['load', 'longest GC pause ms', f(result.load.gcPauseMsMax)],
    ['load', 'snapshot index at the end (0: none yet)', String(snapshotIndexAtLoadEnd)],
    ['after', 'snapshot stored, ms after the load', f(snapshotStoredMs)],
    ['after', 'snapshots stored', String(snapshotsStored)],
    ['after', `writes/s over ${f(afterSeconds, 1)} s`, f(result.after.writesPerSecond)],
    ['after', 'event-loop delay max ms', f(result.after.eventLoopDelayMsMax)],
    ['after', 'event-loop delay p99 ms', f(result.after.eventLoopDelayMsP99)],
    ['after', 'longest GC pause ms', f(result.after.gcPauseMsMax)],
    ['after', `${TICK_INTERVAL_MS} ms timer longest gap ms`, f(result.after.timerGapMsMax)],
    ['after', 'write latency p99 ms', f(result.after.writeLatencyMsP99)],
    ['after', 'write latency max ms', f(result.after.writeLatencyMsMax)],
    ['restart', `snapshot (index ${result.restart.snapshotIndex}) MiB`, f(result.restart.snapshotBytes / 2 ** 20, 1)],
    ['restart', 'log entries after the snapshot', String(result.restart.logEntriesAfterSnapshot)],
    ['restart', 'open + load + restore ms', f(restoreMs)],
    ['restart', 'of which RaftDriver.create (restores the KV) ms', f(createMs)],
    ['restart', 'event-loop delay max ms', f(result.restart.eventLoopDelayMsMax)],
    ['restart', 'longest GC pause ms', f(result.restart.gcPauseMsMax)],
    ['restart', 'until serving reads ms (includes the election)', f(servingMs)],
    ['restart', 'keys read back correctly', `${checked}/${keys}`]
  ]
  for (const [phase, measure, value] of rows) { console.log(`| ${phase} | ${measure} | ${value} |`) }
  const verdict = stallMs > ELECTION_TIMEOUT_MS_MIN ? 'LONGER than' : 'within'
  console.log(`max stall after the load ${f(stallMs)} ms: ${verdict} the minimum election timeout (${ELECTION_TIMEOUT_MS_MIN} ms); restart stall ${f(result.restart.eventLoopDelayMsMax)} ms; max RSS ${f(result.maxRssMiB)} MiB`)

  await mkdir('bench/results', { recursive: true })
  const file = join('bench/results', 'snapshot.json')
  await writeFile(file, JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: cpus().length, dir: values.dir ?? tmpdir(), valueBytes, clients, secondsAfter, entriesBeforeLoad: base, ...result }, null, 2) + '\n')
  console.log(`saved ${file}`)
} finally {
  await rm(root, { recursive: true, force: true })
}
