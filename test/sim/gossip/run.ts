/**
 * One seeded anti-entropy run and its verdict.
 *
 * 1. Writes (writePhaseMs): random sets and deletes on random nodes,
 * under message loss, duplication and slow paths; partitions that cut the
 * cluster in two for a while and heal; some nodes crash and restart as a
 * fresh core, either from a persisted version counter (and keep writing)
 * or from nothing (and stay silent, so the others' copies of their old
 * entries are all that is left of them); now and then a node crashes for
 * good; in some seeds a liar relays others' entries with changed values,
 * jumped versions, or entries it made up (liar.ts).
 * 2. Settle: writes stop, the network heals and turns calm; run until the
 * stores agree, at most settleRoundsMax rounds (at the longest interval
 * the node may tune to).
 *
 * The verdict, every seed:
 * - converged: every running honest node holds the same store (the same
 * digest, the same values, tombstones and floors), and for every running
 * node that store holds exactly that node's own entries;
 * - genuine: no entry in an honest store, ever, is anything but what its
 * owner signed (checked on every update and over whole stores each
 * virtual second);
 * - every core's invariants hold after every input (checkInvariants()).
 */
import { createRng } from '../../../protocols/common/rng.ts'
import { GOSSIP_MODES } from '../../../protocols/gossip/index.ts'
import { SeededSimError } from '../seeded-error.ts'
import { GossipCluster } from './cluster.ts'
import { storeText } from './harness.ts'
import { liarTamper } from './liar.ts'
import type { NodeConfig } from './cluster.ts'
import type { Rng } from '../../../protocols/common/rng.ts'
import type { AntiEntropyNode, GossipMode, NodeId } from '../../../protocols/gossip/index.ts'
import type { NetworkFaults } from '../options.ts'

export interface GossipSimOptions {
  seed: number
  nodes: number
  mode: GossipMode
  adaptive: boolean
  tickMs: number
  network: NetworkFaults
  writePhaseMs: number
  /** Writes per virtual second, over the whole cluster. */
  writesPerSecond: number
  /** Keys each node draws from (k0..). */
  keys: number
  /** Largest value written (most are far smaller). */
  valueBytesMax: number
  partitions: number
  partitionMsMax: number
  liar: boolean
  /** Share of the liar's deltas it lies in. */
  lieRate: number
  /** Crash-and-restarts. */
  restarts: number
  /** Crashes for good. */
  crashes: number
  settleRoundsMax: number
  /** Sabotage for the spec's teeth: verify() accepts any signature. */
  acceptForgeries: boolean
  /** Core settings (small limits in some seeds, so that replies are cut short, pages split and tombstones compact). */
  config: NodeConfig
  deepChecks: boolean
  fullTrace: boolean
}

export const CALM: NetworkFaults = { dropRate: 0, duplicateRate: 0, delayRate: 0, latencyMsMin: 1, latencyMsMax: 5, delayMsMax: 5 }

/** Limits small enough that a dozen nodes hit them: replies cut short, digests in pages of 4, compaction after 4 tombstones. */
export const SMALL_LIMITS: NodeConfig = {
  keysPerNodeMax: 4,
  keyLengthMax: 16,
  valueBytesMax: 512,
  bytesPerNodeMax: 2048,
  digestEntriesMax: 4,
  digestBytesMax: 2400,
  messageBytesMax: 6000
}

/** The run's settings, all drawn from the seed (overrides apply on top, for experiments and replays). */
export function gossipOptionsFor (seed: number, overrides: Partial<GossipSimOptions> = {}): GossipSimOptions {
  const rng = createRng(seed ^ 0x6055)
  const nodes = rng.intBetween(3, 12)
  const latencyMsMax = rng.intBetween(2, 20)
  const small = rng.chance(0.3)
  return {
    seed,
    nodes,
    mode: GOSSIP_MODES[seed % GOSSIP_MODES.length],
    adaptive: rng.chance(0.5),
    tickMs: 20,
    network: {
      dropRate: rng.intBetween(0, 10) / 100,
      duplicateRate: rng.intBetween(0, 5) / 100,
      delayRate: rng.intBetween(0, 5) / 100,
      latencyMsMin: 1,
      latencyMsMax,
      delayMsMax: rng.intBetween(latencyMsMax, 300)
    },
    writePhaseMs: 12_000,
    writesPerSecond: rng.intBetween(2, 20),
    keys: rng.intBetween(2, small ? 8 : 12),
    valueBytesMax: small ? 512 : 4096,
    partitions: rng.intBetween(0, 2),
    partitionMsMax: 4000,
    liar: nodes >= 4 && rng.chance(0.35),
    lieRate: 0.3,
    restarts: rng.chance(0.5) ? rng.intBetween(1, 2) : 0,
    crashes: rng.chance(0.2) ? 1 : 0,
    settleRoundsMax: 40,
    acceptForgeries: false,
    config: small ? SMALL_LIMITS : {},
    deepChecks: true,
    fullTrace: false,
    ...overrides
  }
}

export function replayCommand (seed: number): string {
  return `node test/sim/gossip/replay.ts --seed ${seed} --verbose`
}

export class GossipSimError extends SeededSimError {
  override name = 'GossipSimError'

  constructor (seed: number, kind: string, detail: string, traceTail: string[], trace: string[] | null) {
    super(replayCommand(seed), seed, kind, detail, traceTail, trace)
  }
}

export interface GossipSimResult {
  seed: number
  nodes: number
  mode: GossipMode
  /** Rounds (of the configured interval) from the heal until every store agreed. */
  settleRounds: number
  messages: number
  bytes: number
  /** Messages the liar rewrote, and the entries honest nodes refused as forged. */
  tampered: number
  forgedRefused: number
  versionRaises: number
  trace: string[] | null
}

export function runGossipSim (options: GossipSimOptions): GossipSimResult {
  const scenario = createRng(options.seed ^ 0x3c3c)
  const cluster = new GossipCluster({
    seed: options.seed,
    tickMs: options.tickMs,
    network: options.network,
    config: { mode: options.mode, adaptive: options.adaptive, ...options.config },
    deepChecks: options.deepChecks,
    fullTrace: options.fullTrace,
    traceLines: 120,
    acceptForgeries: options.acceptForgeries
  })
  const fail = (kind: string, detail: string): never => {
    throw new GossipSimError(options.seed, kind, detail, cluster.trace.tail(120), cluster.trace.full)
  }
  const ids = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`)
  const liar = options.liar ? ids[scenario.intBetween(0, ids.length - 1)] : null
  /** Nodes that restarted from nothing: they write no more. */
  const silent = new Set<NodeId>()
  for (const id of ids) {
    const tamper = id === liar ? liarTamper(id, cluster.keyring.authFor(id), ids, options.lieRate) : undefined
    cluster.addNode(id, { tamper })
  }
  cluster.connectAll()
  const honest = (): AntiEntropyNode[] => [...cluster.nodes.values()].filter(n => n.up && n.id !== liar).map(n => n.core)

  // Genuine entries only, on every update and over whole stores.
  cluster.onEvent((observer, event) => {
    if (observer === liar || event.type !== 'entry:update' || event.deleted) { return }
    const value = cluster.get(observer).core.get(event.node, event.key) ?? null
    if (!cluster.isGenuine({ node: event.node, key: event.key, value, version: event.version, signature: new Uint8Array(0) })) {
      fail('forged-entry-taken', `${observer} took ${event.node}/${event.key}@${event.version}, which ${event.node} never signed`)
    }
  })
  const checkGenuine = (): void => {
    for (const core of honest()) {
      for (const e of core.snapshot()) {
        if (!cluster.isGenuine(e)) { fail('forged-entry-held', `${core.id} holds ${e.node}/${e.key}@${e.version}, which ${e.node} never signed`) }
      }
    }
  }
  const everySecond = (): void => {
    checkGenuine()
    cluster.scheduler.after(1000, everySecond)
  }
  cluster.scheduler.after(1000, everySecond)

  scheduleWrites(cluster, scenario, options, ids, silent)
  scheduleCrashes(cluster, scenario, options, ids.filter(id => id !== liar), silent)
  schedulePartitions(cluster, scenario, options, ids)

  runChecked(cluster, options.writePhaseMs, () => false, fail)

  // Settle: writes stopped; heal and calm the network.
  cluster.heal()
  cluster.setNetworkFaults(CALM)
  const t0 = cluster.now
  const converged = (): string | null => convergenceProblem(cluster, honest(), liar)
  const intervalTicksMax = options.adaptive ? (options.config.intervalTicksMax ?? 50) : (options.config.intervalTicks ?? 10)
  const capMs = options.settleRoundsMax * intervalTicksMax * options.tickMs
  runChecked(cluster, t0 + capMs, () => cluster.now % 100 === 0 && converged() === null, fail)
  const problem = converged()
  if (problem !== null) { fail('convergence', `${problem} (${options.settleRoundsMax} rounds of ${intervalTicksMax} ticks after the heal)`) }
  checkGenuine()

  let forgedRefused = 0
  let versionRaises = 0
  for (const core of honest()) {
    forgedRefused += core.status().counters.forgedEntries
    versionRaises += core.status().counters.versionRaises
  }
  return {
    seed: options.seed,
    nodes: options.nodes,
    mode: options.mode,
    settleRounds: (cluster.now - t0) / ((options.config.intervalTicks ?? 10) * options.tickMs),
    messages: cluster.stats.messages,
    bytes: cluster.stats.bytes,
    tampered: cluster.stats.tampered,
    forgedRefused,
    versionRaises,
    trace: cluster.trace.full
  }
}

/** null when every running honest node holds the same store, and that store holds every running node's own entries as they are. */
function convergenceProblem (cluster: GossipCluster, honest: AntiEntropyNode[], liar: NodeId | null): string | null {
  if (honest.length === 0) { return null }
  const reference = storeText(honest[0])
  for (const core of honest.slice(1)) {
    if (storeText(core) !== reference) { return `${core.id} and ${honest[0].id} hold different stores` }
  }
  const held = honest[0].snapshot()
  for (const node of cluster.nodes.values()) {
    if (!node.up || node.id === liar) { continue }
    const own = node.core.snapshot().filter(e => e.node === node.id)
    const theirs = held.filter(e => e.node === node.id)
    if (JSON.stringify(own.map(describeEntry)) !== JSON.stringify(theirs.map(describeEntry))) {
      return `the stores hold ${theirs.length} entries of ${node.id}, which holds ${own.length} of its own differently`
    }
  }
  return null
}

function describeEntry (e: { key: string, value: Uint8Array | null, version: number }): string {
  return `${e.key}@${e.version}=${e.value === null ? '-' : Buffer.from(e.value).toString('hex')}`
}

function scheduleWrites (cluster: GossipCluster, rng: Rng, options: GossipSimOptions, ids: NodeId[], silent: Set<NodeId>): void {
  const count = Math.round(options.writesPerSecond * options.writePhaseMs / 1000)
  for (let i = 0; i < count; i++) {
    cluster.scheduler.at(rng.intBetween(0, options.writePhaseMs - 1), () => {
      const writers = ids.filter(id => cluster.get(id).up && !silent.has(id))
      if (writers.length === 0) { return }
      const id = writers[rng.intBetween(0, writers.length - 1)]
      const key = `k${rng.intBetween(0, options.keys - 1)}`
      if (rng.chance(0.3) && cluster.get(id).core.get(id, key) !== undefined) {
        cluster.write(id, key, null)
        return
      }
      const large = rng.chance(0.1)
      const size = rng.intBetween(0, large ? options.valueBytesMax : Math.min(64, options.valueBytesMax))
      cluster.write(id, key, Uint8Array.from({ length: size }, () => rng.intBetween(0, 255)))
    })
  }
}

/**
 * Restarts: down for 0.5-3 s, then a fresh core: from the counter it had
 * (persisted), or, half the time, from nothing (and silent from then on).
 * Crashes for good: down from a random moment to the end.
 */
function scheduleCrashes (cluster: GossipCluster, rng: Rng, options: GossipSimOptions, candidates: NodeId[], silent: Set<NodeId>): void {
  const pool = [...candidates]
  shuffle(rng, pool)
  for (let i = 0; i < options.restarts && pool.length > 1; i++) {
    const id = pool.pop() as NodeId
    const at = rng.intBetween(500, options.writePhaseMs - 4000)
    const forgets = rng.chance(0.5)
    let persisted = 0
    cluster.scheduler.at(at, () => {
      persisted = cluster.get(id).core.status().version
      cluster.crash(id)
    })
    cluster.scheduler.at(at + rng.intBetween(500, 3000), () => {
      if (forgets) { silent.add(id) }
      cluster.restart(id, forgets ? 0 : persisted)
    })
  }
  for (let i = 0; i < options.crashes && pool.length > 1; i++) {
    const id = pool.pop() as NodeId
    cluster.scheduler.at(rng.intBetween(500, options.writePhaseMs - 1000), () => { cluster.crash(id) })
  }
}

/**
 * Partitions one after another, each cutting the cluster in two for 1 s to
 * partitionMsMax; half the time the last one lasts to the end of the
 * writes, and only the settle phase heals it.
 */
function schedulePartitions (cluster: GossipCluster, rng: Rng, options: GossipSimOptions, ids: NodeId[]): void {
  let from = 0
  for (let i = 0; i < options.partitions; i++) {
    const span = Math.floor(options.writePhaseMs / options.partitions)
    const start = from + rng.intBetween(0, Math.max(0, span - options.partitionMsMax))
    const end = Math.min(start + rng.intBetween(1000, options.partitionMsMax), options.writePhaseMs - 100)
    const shuffled = [...ids]
    shuffle(rng, shuffled)
    const cut = rng.intBetween(1, ids.length - 1)
    cluster.scheduler.at(start, () => { cluster.partition([shuffled.slice(0, cut), shuffled.slice(cut)]) })
    const last = i === options.partitions - 1
    if (!last || rng.chance(0.5)) { cluster.scheduler.at(end, () => { cluster.heal() }) }
    from += span
  }
}

/** Runs the cluster; a core assertion becomes a failure with the seed and the trace. */
function runChecked (cluster: GossipCluster, untilMs: number, stop: () => boolean, fail: (kind: string, detail: string) => never): void {
  try {
    cluster.run(untilMs, stop)
  } catch (err) {
    if (err instanceof Error && err.name === 'GossipSimError') { throw err }
    fail('core-assertion', err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ''}` : String(err))
  }
}

function shuffle<T> (rng: Rng, items: T[]): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.intBetween(0, i)
    const item = items[i]
    items[i] = items[j]
    items[j] = item
  }
}
