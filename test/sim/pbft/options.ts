/**
 * What a PBFT simulation run does, and the named profiles CI and the sweep
 * script run. Everything follows from PbftSimOptions (which include the
 * seed), so `npm run sim:pbft -- --seed N --profile P` replays a run.
 */
import { createRng } from '../../../protocols/common/rng.ts'
import type { NetworkFaults } from '../options.ts'

/**
 * How a Byzantine replica misbehaves (at most f of them per run):
 * - 'equivocate': the production driver's own `faulty: 'equivocate'`
 * (conflicting pre-prepares as primary, conflicting prepares otherwise);
 * - 'split': equivocates without ever showing one replica both versions
 * (only certificates in a view change can reveal it);
 * - 'forge': invalid signatures, and messages signed in another replica's name;
 * - 'replay': sends again old messages it received or sent;
 * - 'silent': sends nothing;
 * - 'slow': delays its pre-prepares (a slow primary when it is one);
 * - 'flood': pre-prepares and prepares outside the watermarks and for future views;
 * - 'twins': two instances with one identity and key (the Twins paper),
 * each honest on its own, each talking to a part of the others;
 * - 'bad-partial': honest, except that its checkpoints carry partial
 * threshold signatures that do not verify (with compactCheckpoints).
 */
export type Adversary = 'equivocate' | 'split' | 'forge' | 'replay' | 'silent' | 'slow' | 'flood' | 'twins' | 'bad-partial'
/** What the 'random' profile draws from ('bad-partial' comes with compactCheckpoints, in its own profiles). */
export const ADVERSARIES: readonly Adversary[] = ['equivocate', 'split', 'forge', 'replay', 'silent', 'slow', 'flood', 'twins']

/**
 * Deliberate bugs, to show the checks catch them:
 * - 'weak-quorum': every replica takes f+1 votes for a quorum;
 * - 'double-sign': one replica equivocates (signs twice) but is counted honest;
 * - 'early-ack': the stores acknowledge appends before the fsync, so replicas
 * send what they signed before it is durable.
 */
export type PbftSabotage = 'weak-quorum' | 'double-sign' | 'early-ack'
export const PBFT_SABOTAGES: readonly PbftSabotage[] = ['weak-quorum', 'double-sign', 'early-ack']

export interface PbftSimOptions {
  seed: number
  profile: string
  /** Replicas r0..r(n-1); f = ⌊(n-1)/3⌋. */
  replicas: number
  /** One per Byzantine replica (at most f): the last ones, or r0 (the first primary) for 'slow', 'split' and the first 'equivocate'. */
  byzantine: Adversary[]
  /** Length of the fault phase, virtual ms. */
  durationMs: number
  /** After the faults stop: how long every client operation may take to complete. */
  livenessMs: number
  clients: number
  keys: number
  /** Share of gets; half of them read-only. */
  readRatio: number
  /** Virtual ms between a replica's ticks. */
  tickMs: number
  requestTimeoutTicks: number
  viewChangeTimeoutTicks: number
  checkpointInterval: number
  watermarkWindow: number
  clientRetransmitMs: number
  fsyncMsMin: number
  fsyncMsMax: number
  network: NetworkFaults
  /** Crash honest replicas (losing unsynced writes) and restart them from their disks. */
  crashes: boolean
  /** Partitions of the replicas that heal. */
  partitions: boolean
  sabotage: PbftSabotage | null
  /**
   * Reconfigure during the faults: a spare replica r<n> starts as a
   * learner; an operator adds it (epoch 1), then removes another replica
   * (epoch 2: the first Byzantine one if any, else an honest one).
   */
  reconfigure: boolean
  /**
   * Compact checkpoint certificates: the replicas hold a (simulated)
   * threshold group, threshold = the quorum, and prove stable checkpoints
   * by its signature (test/lib/fake-threshold-group.ts).
   */
  compactCheckpoints: boolean
  /**
   * With compactCheckpoints: the group is reshared during the faults (the
   * same key and group signatures, new shares), each genesis replica
   * taking the new shares at its own moment, so that for a while
   * checkpoints carry partials of both generations.
   */
  reshare: boolean
  checkerStepsMax: number
  fullTrace: boolean
}

const BASE: Omit<PbftSimOptions, 'seed' | 'profile'> = {
  replicas: 4,
  byzantine: [],
  durationMs: 1200,
  livenessMs: 8000,
  clients: 3,
  keys: 3,
  readRatio: 0.3,
  tickMs: 10,
  requestTimeoutTicks: 15,
  viewChangeTimeoutTicks: 15,
  checkpointInterval: 4,
  watermarkWindow: 16,
  clientRetransmitMs: 150,
  fsyncMsMin: 1,
  fsyncMsMax: 5,
  network: { dropRate: 0.02, duplicateRate: 0.02, delayRate: 0.03, latencyMsMin: 1, latencyMsMax: 4, delayMsMax: 100 },
  crashes: false,
  partitions: false,
  sabotage: null,
  reconfigure: false,
  compactCheckpoints: false,
  reshare: false,
  checkerStepsMax: 2_000_000,
  fullTrace: false
}

export type PbftProfileSettings = Partial<Omit<PbftSimOptions, 'seed' | 'profile'>>

const LOSSY: NetworkFaults = { ...BASE.network, dropRate: 0.06, duplicateRate: 0.05, delayRate: 0.08 }

export const PBFT_PROFILES: Record<string, PbftProfileSettings> = {
  /** Honest replicas, lossy network, crashes and partitions. */
  'honest-4': { replicas: 4, network: LOSSY, crashes: true, partitions: true },
  'honest-7': { replicas: 7, network: LOSSY, crashes: true, partitions: true },
  'equivocate-4': { replicas: 4, byzantine: ['equivocate'], crashes: true },
  'equivocate-7': { replicas: 7, byzantine: ['equivocate', 'equivocate'], crashes: true },
  'split-4': { replicas: 4, byzantine: ['split'], partitions: true },
  'split-7': { replicas: 7, byzantine: ['split', 'split'], crashes: true },
  'forge-4': { replicas: 4, byzantine: ['forge'], partitions: true },
  'replay-4': { replicas: 4, byzantine: ['replay'], crashes: true },
  'silent-4': { replicas: 4, byzantine: ['silent'], network: LOSSY },
  'slow-4': { replicas: 4, byzantine: ['slow'] },
  'flood-4': { replicas: 4, byzantine: ['flood'] },
  'twins-4': { replicas: 4, byzantine: ['twins'] },
  'twins-7': { replicas: 7, byzantine: ['twins', 'equivocate'] },
  'mixed-7': { replicas: 7, byzantine: ['forge', 'replay'], crashes: true, partitions: true },
  /** A replica added, then one removed, while honest replicas crash and partitions come and go. */
  'reconfigure-4': { replicas: 4, reconfigure: true, network: LOSSY, crashes: true, partitions: true },
  /** The same with an equivocating replica, which epoch 2 removes. */
  'reconfigure-7': { replicas: 7, reconfigure: true, byzantine: ['equivocate'], crashes: true },
  /** Compact checkpoint certificates, honest replicas, lossy network, crashes and partitions (state transfers proven by the group signature). */
  'compact-4': { replicas: 4, compactCheckpoints: true, network: LOSSY, crashes: true, partitions: true },
  /** The same with a replica whose partials do not verify: stable checkpoints fall back to the full proof when its partial is in the quorum. */
  'compact-bad-4': { replicas: 4, compactCheckpoints: true, byzantine: ['bad-partial'], crashes: true, partitions: true },
  'compact-7': { replicas: 7, compactCheckpoints: true, byzantine: ['bad-partial', 'equivocate'], crashes: true, partitions: true },
  /** Compact certificates across a reconfiguration: the group applies to the genesis set only, the next sets fall back to full proofs. */
  'compact-reconfigure-4': { replicas: 4, compactCheckpoints: true, reconfigure: true, crashes: true },
  /** Compact certificates while the group is reshared, each replica taking the new shares at its own moment, beside a replica whose partials do not verify. */
  'compact-reshare-4': { replicas: 4, compactCheckpoints: true, reshare: true, byzantine: ['bad-partial'], crashes: true, partitions: true },
  /** Adversaries and faults drawn from the seed. */
  random: {}
}

export function pbftOptionsFor (seed: number, profile = 'random', overrides: PbftProfileSettings = {}): PbftSimOptions {
  const settings = PBFT_PROFILES[profile]
  if (settings === undefined) { throw new RangeError(`unknown profile ${profile}; known: ${Object.keys(PBFT_PROFILES).join(', ')}`) }
  const derived = profile === 'random' ? randomSettings(seed) : {}
  return { ...BASE, ...derived, ...settings, ...overrides, seed, profile }
}

/** Features chosen by the seed itself (its own generator, so the run's stream is untouched). */
function randomSettings (seed: number): PbftProfileSettings {
  const rng = createRng(seed ^ 0x0bf7bf7)
  const replicas = rng.chance(0.5) ? 4 : 7
  const f = Math.floor((replicas - 1) / 3)
  const byzantine = Array.from({ length: rng.intBetween(0, f) }, () => ADVERSARIES[rng.intBetween(0, ADVERSARIES.length - 1)])
  return {
    replicas,
    // two twin pairs would be two faulty identities, which f allows, but keep one pair
    byzantine: byzantine.filter((a, i) => a !== 'twins' || byzantine.indexOf('twins') === i),
    crashes: rng.chance(0.5),
    partitions: rng.chance(0.5),
    network: { ...BASE.network, dropRate: 0.08 * rng.nextFloat(), duplicateRate: 0.05 * rng.nextFloat(), delayRate: 0.08 * rng.nextFloat() },
    // drawn last: the draws above, and so the runs of seeds without it, are as before
    compactCheckpoints: rng.chance(0.5)
  }
}

/** The command line that replays a run. */
export function pbftReplayCommand (options: PbftSimOptions): string {
  const parts = ['npm run sim:pbft --', `--seed ${options.seed}`]
  if (options.profile !== 'random') { parts.push(`--profile ${options.profile}`) }
  if (options.sabotage !== null) { parts.push(`--sabotage ${options.sabotage}`) }
  const defaults = pbftOptionsFor(options.seed, options.profile)
  const overrides: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(options)) {
    if (['seed', 'profile', 'sabotage', 'fullTrace'].includes(key)) { continue }
    if (JSON.stringify(value) !== JSON.stringify(defaults[key as keyof PbftSimOptions])) { overrides[key] = value }
  }
  if (Object.keys(overrides).length > 0) { parts.push(`--overrides '${JSON.stringify(overrides)}'`) }
  return parts.join(' ')
}

/** Parses `--overrides` JSON: an object whose keys are PbftSimOptions settings. */
export function parsePbftOverrides (json: string): PbftProfileSettings {
  const value: unknown = JSON.parse(json)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) { throw new TypeError('overrides must be a JSON object') }
  for (const key of Object.keys(value)) {
    if (!(key in BASE)) { throw new TypeError(`unknown setting ${key}; known: ${Object.keys(BASE).join(', ')}`) }
  }
  return value as PbftProfileSettings
}
