/* eslint-disable no-console */
/**
 * node scripts/bench-gossip.ts [--sizes 100,1000] [--modes push,pull,push-pull] [--loss 0.01] [--json out.json]
 *
 * The anti-entropy core (protocols/gossip) at scale, in the simulator
 * (test/sim/gossip/cluster.ts: real cores, virtual time, 20 ms ticks so a
 * 10-tick round is 200 ms, 1-5 ms latency and `--loss` message loss). Every
 * node starts from the same converged store, one 32-byte `addr` entry per
 * node with a ~52-character id (a PeerId string's length), and gossips with
 * all the others. Per size, mode, and with adaptive tuning off and on:
 *
 * 1. warm-up (WARMUP_MS, nothing written: adaptive tuning settles on a
 * quiet cluster's longer interval), then an idle window (IDLE_MS): bytes
 * per node per second when there is nothing to spread;
 * 2. one node writes a new value: the rounds (of the configured 200 ms
 * interval) and simulated seconds until every node holds it;
 * 3. the cluster splits in two halves for PARTITION_MS while WRITERS nodes
 * on each side write; the seconds from the heal until every node holds
 * every one of those writes;
 * and the bytes per node per second over 2 and 3.
 *
 * Bytes are counted by the core's byte model (size.ts: what a compact
 * binary codec would send, before framing and encryption). Signatures are
 * a 64-byte keyed checksum standing in for Ed25519 (same size on the wire;
 * verifying millions of real signatures would dominate the wall time
 * without changing the simulated figures).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { parseArgs } from 'node:util'
import { entryPayload } from '../protocols/gossip/index.ts'
import { GossipCluster } from '../test/sim/gossip/cluster.ts'
import { Keyring } from '../test/sim/gossip/keyring.ts'
import type { Entry, GossipMode, NodeId } from '../protocols/gossip/index.ts'

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100,1000' },
    modes: { type: 'string', default: 'push,pull,push-pull' },
    loss: { type: 'string', default: '0.01' },
    seed: { type: 'string', default: '1' },
    json: { type: 'string', default: 'bench/results/gossip.json' }
  }
})

const TICK_MS = 20
const INTERVAL_TICKS = 10
const ROUND_MS = TICK_MS * INTERVAL_TICKS
/** Adaptive tuning needs ~15 s of quiet to reach its longest interval; fixed parameters need no warm-up. */
const WARMUP_MS = { adaptive: 16_000, fixed: 1000 }
const IDLE_MS = 3000
const PARTITION_MS = 4000
const WRITERS = 5
/** A spread not done by then is reported as not done. */
const CAP_MS = 30_000

interface Result {
  nodes: number
  mode: GossipMode
  adaptive: boolean
  /** Rounds of the configured interval, and seconds, until every node holds one new write. */
  writeRounds: number | null
  writeSeconds: number | null
  /** Seconds from the heal until every node holds every write made during the partition. */
  healSeconds: number | null
  idleBytesPerNodePerSecond: number
  bytesPerNodePerSecond: number
  fanoutEnd: number
  intervalTicksEnd: number
  wallSeconds: number
}

function nodeIds (n: number): NodeId[] {
  return Array.from({ length: n }, (_, i) => `12D3KooW${i.toString(36).padStart(44, 'A')}`)
}

/** Every node's `addr` entry, signed as the cluster's keyring signs (same seed, same kind). */
function converged (ids: NodeId[], seed: number): Entry[] {
  const keyring = new Keyring(seed, 'checksum')
  return ids.map((node, i) => {
    const value = new Uint8Array(32).fill(i & 0xff)
    return { node, key: 'addr', value, version: 1, signature: keyring.authFor(node).sign(entryPayload(node, 'addr', value, 1)) }
  })
}

function run (n: number, mode: GossipMode, adaptive: boolean, loss: number, seed: number): Result {
  const began = performance.now()
  const ids = nodeIds(n)
  const cluster = new GossipCluster({
    seed,
    tickMs: TICK_MS,
    network: { dropRate: loss, duplicateRate: 0, delayRate: 0, latencyMsMin: 1, latencyMsMax: 5, delayMsMax: 5 },
    config: { mode, adaptive, intervalTicks: INTERVAL_TICKS, snapshot: converged(ids, seed) },
    signatures: 'checksum',
    recordSignatures: false,
    traceLines: 1
  })
  for (const id of ids) { cluster.addNode(id) }
  cluster.connectAll()

  // Who holds which write: writer -> the version to reach, and the nodes that hold it.
  const wanted = new Map<NodeId, { version: number, holders: Set<NodeId> }>()
  let covered = 0
  cluster.onEvent((observer, event) => {
    if (event.type !== 'entry:update') { return }
    const want = wanted.get(event.node)
    if (want === undefined || event.version < want.version || want.holders.has(observer)) { return }
    want.holders.add(observer)
    if (want.holders.size === n) { covered++ }
  })
  const write = (id: NodeId, key: string): void => {
    cluster.write(id, key, new Uint8Array(32).fill(cluster.rng.intBetween(0, 255)))
    wanted.set(id, { version: cluster.get(id).core.versionOf(id), holders: new Set([id]) })
  }
  const allCovered = (): boolean => covered === wanted.size

  // 1. Warm-up and idle window.
  const warmupMs = adaptive ? WARMUP_MS.adaptive : WARMUP_MS.fixed
  cluster.run(warmupMs)
  let bytes = cluster.stats.bytes
  cluster.run(warmupMs + IDLE_MS)
  const idleBytesPerNodePerSecond = (cluster.stats.bytes - bytes) / n / (IDLE_MS / 1000)
  bytes = cluster.stats.bytes
  const measuredFrom = cluster.now

  // 2. One write.
  const writeAt = cluster.now
  write(ids[cluster.rng.intBetween(0, n - 1)], 'k')
  cluster.run(writeAt + CAP_MS, allCovered)
  const writeMs = allCovered() ? cluster.now - writeAt : null

  // 3. A partition with writes on both sides, then the heal.
  wanted.clear()
  covered = 0
  const shuffled = [...ids]
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = cluster.rng.intBetween(0, i);
    [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]]
  }
  const halves = [shuffled.slice(0, n / 2), shuffled.slice(n / 2)]
  cluster.partition(halves)
  const cutAt = cluster.now
  for (const half of halves) {
    for (const id of half.slice(0, WRITERS)) {
      cluster.scheduler.at(cutAt + cluster.rng.intBetween(0, PARTITION_MS / 2), () => { write(id, 'p') })
    }
  }
  cluster.run(cutAt + PARTITION_MS)
  cluster.heal()
  const healAt = cluster.now
  cluster.run(healAt + CAP_MS, allCovered)
  const healMs = allCovered() ? cluster.now - healAt : null
  const bytesPerNodePerSecond = (cluster.stats.bytes - bytes) / n / ((cluster.now - measuredFrom) / 1000)

  const status = cluster.get(ids[0]).core.status()
  return {
    nodes: n,
    mode,
    adaptive,
    writeRounds: writeMs === null ? null : writeMs / ROUND_MS,
    writeSeconds: writeMs === null ? null : writeMs / 1000,
    healSeconds: healMs === null ? null : healMs / 1000,
    idleBytesPerNodePerSecond,
    bytesPerNodePerSecond,
    fanoutEnd: status.fanout,
    intervalTicksEnd: status.intervalTicks,
    wallSeconds: (performance.now() - began) / 1000
  }
}

const loss = Number(values.loss)
const seed = Number(values.seed)
const results: Result[] = []
console.log(`anti-entropy, simulated: ${ROUND_MS} ms interval (20 ms ticks), 1-5 ms latency, ${(loss * 100).toFixed(1)}% loss`)
for (const n of values.sizes.split(',').map(Number)) {
  for (const mode of values.modes.split(',') as GossipMode[]) {
    for (const adaptive of [false, true]) {
      const r = run(n, mode, adaptive, loss, seed)
      results.push(r)
      console.log(`  ${n} ${mode} adaptive=${String(adaptive)}: ${r.wallSeconds.toFixed(1)} s wall, heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB`)
    }
  }
}

const fixed = (v: number | null, digits: number): string => v === null ? `> ${CAP_MS / 1000} s` : v.toFixed(digits)
console.log()
console.log('| nodes | mode | adaptive | write at every node: rounds / s | heal to every node (s) | idle B/node/s | B/node/s (write + heal) | fanout / interval at the end |')
console.log('|---:|---|---|---:|---:|---:|---:|---|')
for (const r of results) {
  const write = r.writeRounds === null ? fixed(null, 0) : `${r.writeRounds.toFixed(1)} / ${fixed(r.writeSeconds, 2)}`
  console.log(`| ${r.nodes} | ${r.mode} | ${r.adaptive ? 'on' : 'off'} | ${write} | ${fixed(r.healSeconds, 2)} | ${r.idleBytesPerNodePerSecond.toFixed(0)} | ${r.bytesPerNodePerSecond.toFixed(0)} | ${r.fanoutEnd} / ${r.intervalTicksEnd * TICK_MS} ms |`)
}
mkdirSync(dirname(values.json), { recursive: true })
writeFileSync(values.json, JSON.stringify({ tickMs: TICK_MS, intervalTicks: INTERVAL_TICKS, loss, seed, results }, null, 2))
console.log(`\nwrote ${values.json}`)
