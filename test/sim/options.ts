/**
 * What a simulation run does, and the named profiles CI and the sweep
 * script run. Everything a run does follows from its SimOptions (which
 * include the seed), so `npm run sim -- --seed N --profile P` replays it.
 */
import { createRng } from '../../protocols/common/rng.ts'

export interface NetworkFaults {
  /** Probability that a message is lost. */
  dropRate: number
  /** Probability that a message is delivered twice. */
  duplicateRate: number
  /** Probability that a message takes the slow path (reordering it past later ones). */
  delayRate: number
  latencyMsMin: number
  latencyMsMax: number
  /** Upper bound of a slow message's latency. */
  delayMsMax: number
}

/**
 * Deliberate bugs around the driver:
 * - 'ack-before-durable': the log store reports a write durable before its
 * fsync, so the driver's messages leave early and a crash can take back
 * votes and acknowledged entries;
 * - 'stale-reads': reads are served from the local state machine at once,
 * without the driver's readBarrier (ReadIndex).
 */
export type Sabotage = 'ack-before-durable' | 'stale-reads'
export const SABOTAGES: readonly Sabotage[] = ['ack-before-durable', 'stale-reads']

export interface SimOptions {
  seed: number
  /** The profile name, for the replay command. */
  profile: string
  /** Founding voters (n1..nN). */
  nodes: number
  /** Length of the fault phase in virtual milliseconds. */
  durationMs: number
  /** After the faults stop: how long in-flight client operations may take to finish. */
  settleMs: number
  /** How long the final write (the liveness check) may take once everything is healed. */
  livenessMs: number
  clients: number
  keys: number
  /** Share of client operations that are reads. */
  readRatio: number
  /** A client retries (elsewhere) when a request has no answer after this long. */
  clientTimeoutMs: number
  /** Virtual milliseconds per Raft tick on a clock without skew. */
  tickMs: number
  electionTimeoutTicks: number
  heartbeatIntervalTicks: number
  fsyncMsMin: number
  fsyncMsMax: number
  network: NetworkFaults
  /** Symmetric and asymmetric partitions that heal later. */
  partitions: boolean
  /** Crash (losing unsynced writes) and restart from the simulated disk. */
  crashes: boolean
  /** Freeze a node's process for a while (GC pause, SIGSTOP); incompatible with lease reads. */
  pauses: boolean
  /** Add learners, promote them, remove voters, joint swaps. */
  membership: boolean
  transfers: boolean
  /**
   * Connection-loss hints (RaftNode.forgetLeader): when a node crashes, most
   * of the others are told soon after (its OS resets their connections);
   * now and then a node is told its leader is gone while it is not (a
   * connection closed for another reason).
   */
  leaderLossHints: boolean
  /**
   * Pass every message through the node's RaftPeerFilter (node/raft/peer-filter.ts)
   * before the core sees it, as the production service does.
   */
  peerFilter: boolean
  /**
   * A removed node keeps running (campaigning, answering) for up to this
   * long before it is shut down, as a removed member that has not heard of
   * its removal does. 0: shut down at once.
   */
  removedLingerMs: number
  /**
   * An outsider (a peer id no node admitted) sends hostile messages:
   * terms far ahead, appends carrying writes, garbage snapshots, votes. The
   * simulated network drops them where admission would (the gate in front
   * of every handler), and counts them.
   */
  outsider: boolean
  /** The drivers' snapshotEveryEntries: a node snapshots and compacts its log about this many entries past its last snapshot. */
  compactEntries: number
  /** Each node's clock runs at a rate in [1 - skew, 1 + skew]. */
  clockSkew: number
  readOnlyMode: 'safe' | 'lease'
  /**
   * Count, instead of failing on, acknowledgements of a term older than the
   * sender's current one whose entries are not on its disk. Off: the core
   * drops its queued append-responses of older terms when its term changes
   * (a newer leader may overwrite the entries they acknowledge before they
   * are persisted), so every acknowledgement must be durable. Kept as a
   * switch for experiments (stats.staleTermAcks counts them when on).
   */
  tolerateStaleTermAcks: boolean
  /** BROKEN ON PURPOSE, to show the checkers can fail (see Sabotage). */
  sabotage: Sabotage | null
  /** Search budget of the linearizability checker; 'unknown' beyond it fails the run. */
  checkerStepsMax: number
  /** Record every trace line (replays, determinism test), not just the last ones. */
  fullTrace: boolean
}

const BASE: Omit<SimOptions, 'seed' | 'profile'> = {
  nodes: 3,
  durationMs: 2500,
  settleMs: 3000,
  livenessMs: 5000,
  clients: 4,
  keys: 3,
  readRatio: 0.35,
  clientTimeoutMs: 60,
  tickMs: 10,
  electionTimeoutTicks: 10,
  heartbeatIntervalTicks: 2,
  fsyncMsMin: 1,
  fsyncMsMax: 6,
  network: { dropRate: 0.02, duplicateRate: 0.02, delayRate: 0.03, latencyMsMin: 1, latencyMsMax: 4, delayMsMax: 150 },
  partitions: false,
  crashes: false,
  pauses: false,
  membership: false,
  transfers: false,
  leaderLossHints: false,
  peerFilter: true,
  removedLingerMs: 0,
  outsider: false,
  compactEntries: 40,
  clockSkew: 0.05,
  readOnlyMode: 'safe',
  tolerateStaleTermAcks: false,
  sabotage: null,
  checkerStepsMax: 2_000_000,
  fullTrace: false
}

export type ProfileSettings = Partial<Omit<SimOptions, 'seed' | 'profile'>>

/** Lease reads: read-heavy, many clients, so a stale leader gets asked. */
const LEASE: ProfileSettings = { partitions: true, crashes: true, leaderLossHints: true, readOnlyMode: 'lease', clockSkew: 0, clients: 8, readRatio: 0.7, clientTimeoutMs: 50 }

/** The named configurations. 'random' derives its features from the seed. */
export const PROFILES: Record<string, ProfileSettings> = {
  /** Message loss, duplication, reordering and delay only. */
  'network-3': { nodes: 3, network: { ...BASE.network, dropRate: 0.08, duplicateRate: 0.05, delayRate: 0.1 }, transfers: true },
  'network-5': { nodes: 5, network: { ...BASE.network, dropRate: 0.08, duplicateRate: 0.05, delayRate: 0.1 }, transfers: true },
  /** Crashes with lost unsynced writes, partitions, skewed clocks. */
  'crash-3': { nodes: 3, crashes: true, leaderLossHints: true, pauses: true, partitions: true, transfers: true, clockSkew: 0.3 },
  'crash-5': { nodes: 5, crashes: true, leaderLossHints: true, pauses: true, partitions: true, transfers: true, clockSkew: 0.3 },
  /** Everything, plus membership changes. */
  'membership-3': { nodes: 3, crashes: true, leaderLossHints: true, pauses: true, partitions: true, transfers: true, membership: true, removedLingerMs: 600, outsider: true },
  'membership-5': { nodes: 5, crashes: true, leaderLossHints: true, pauses: true, partitions: true, transfers: true, membership: true, removedLingerMs: 600, outsider: true },
  /** Lease reads; see the clock-skew note in faults.ts. */
  'lease-3': { ...LEASE, nodes: 3 },
  'lease-5': { ...LEASE, nodes: 5 },
  random: {}
}

export function optionsFor (seed: number, profile = 'random', overrides: ProfileSettings = {}): SimOptions {
  const settings = PROFILES[profile]
  if (settings === undefined) { throw new RangeError(`unknown profile ${profile}; known: ${Object.keys(PROFILES).join(', ')}`) }
  const derived = profile === 'random' ? randomSettings(seed) : {}
  return { ...BASE, ...derived, ...settings, ...overrides, seed, profile }
}

/** Features chosen by the seed itself (its own generator, so the run's stream is untouched). */
function randomSettings (seed: number): ProfileSettings {
  const rng = createRng(seed ^ 0x5eed5eed)
  return {
    nodes: rng.chance(0.5) ? 3 : 5,
    crashes: rng.chance(0.7),
    pauses: rng.chance(0.5),
    partitions: rng.chance(0.7),
    membership: rng.chance(0.4),
    transfers: rng.chance(0.5),
    clockSkew: rng.chance(0.5) ? 0.3 * rng.nextFloat() : 0,
    compactEntries: rng.intBetween(10, 80),
    network: {
      ...BASE.network,
      dropRate: 0.1 * rng.nextFloat(),
      duplicateRate: 0.05 * rng.nextFloat(),
      delayRate: 0.1 * rng.nextFloat()
    },
    leaderLossHints: rng.chance(0.5),
    removedLingerMs: rng.chance(0.5) ? rng.intBetween(0, 1000) : 0,
    outsider: rng.chance(0.5)
  }
}

/** The command line that replays a run. */
export function replayCommand (options: SimOptions): string {
  const parts = ['npm run sim --', `--seed ${options.seed}`]
  if (options.profile !== 'random') { parts.push(`--profile ${options.profile}`) }
  const defaults = optionsFor(options.seed, options.profile)
  if (options.nodes !== defaults.nodes) { parts.push(`--nodes ${options.nodes}`) }
  if (options.sabotage !== null) { parts.push(`--sabotage ${options.sabotage}`) }
  const overrides = settingsOverridden(options, defaults)
  if (Object.keys(overrides).length > 0) { parts.push(`--overrides '${JSON.stringify(overrides)}'`) }
  return parts.join(' ')
}

/** Settings that differ from the profile's, other than those with their own flag. */
function settingsOverridden (options: SimOptions, defaults: SimOptions): ProfileSettings {
  const flagged = new Set(['seed', 'profile', 'nodes', 'sabotage', 'fullTrace'])
  const overrides: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(options)) {
    if (!flagged.has(key) && JSON.stringify(value) !== JSON.stringify(defaults[key as keyof SimOptions])) { overrides[key] = value }
  }
  return overrides
}

/** Parses `--overrides` JSON: an object whose keys are SimOptions settings. */
export function parseOverrides (json: string): ProfileSettings {
  const value: unknown = JSON.parse(json)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) { throw new TypeError('overrides must be a JSON object') }
  for (const key of Object.keys(value)) {
    if (!(key in BASE)) { throw new TypeError(`unknown setting ${key}; known: ${Object.keys(BASE).join(', ')}`) }
  }
  return value as ProfileSettings
}
