/**
 * One seeded membership run and its verdict.
 *
 * 1. Join: the members start over two virtual seconds, each joining through
 * one or two members already running; every member must come to know
 * every other.
 * 2. Faults (20 virtual seconds): message loss, duplication and slow paths
 * throughout; some members crash for good; some are slow (process every
 * message late) from here to the end; often a partition cuts a minority
 * off for a few seconds and heals; sometimes a member leaves gracefully.
 * 3. Settle: the network turns calm (slow members stay slow); run until the
 * verdict holds or a cap passes.
 *
 * The verdict, every seed:
 * - every crashed member is dead (or already forgotten) in every live view;
 * - no slow member is ever held dead by more than half of the other live
 * members, and at the end every live view holds it live;
 * - every live member's set of live members (alive or suspect) is exactly
 * the set of members still running (so the partitions have healed in
 * every view, and the member that left is gone from all of them);
 * - every core's invariants hold after every input (checkInvariants()).
 */
import { createRng } from '../../../protocols/common/rng.ts'
import { isLive } from '../../../protocols/membership/index.ts'
import { SeededSimError } from '../seeded-error.ts'
import { MembershipCluster } from './cluster.ts'
import type { Rng } from '../../../protocols/common/rng.ts'
import type { MemberId, MembershipConfigInit } from '../../../protocols/membership/index.ts'
import type { NetworkFaults } from '../options.ts'

export interface MembershipSimOptions {
  seed: number
  nodes: number
  tickMs: number
  network: NetworkFaults
  crashes: number
  slow: number
  /** Each slow member's processing delay is drawn from [slowMsMin, slowMsMax]. */
  slowMsMin: number
  slowMsMax: number
  partition: boolean
  partitionMsMax: number
  leave: boolean
  faultPhaseMs: number
  joinPhaseMsMax: number
  settleMsMax: number
  deepChecks: boolean
  fullTrace: boolean
  /** Core settings for every member (experiments, and the spec's deliberately weakened runs). */
  config?: Omit<MembershipConfigInit, 'id'>
  /** Also deliver what the cores publish, as the gossipsub topic would (cluster.ts); off when absent. */
  topic?: { latencyMs: number, fanout: number }
}

export const CALM: NetworkFaults = { dropRate: 0, duplicateRate: 0, delayRate: 0, latencyMsMin: 1, latencyMsMax: 5, delayMsMax: 5 }

/** The run's settings, all drawn from the seed (overrides apply on top, for experiments and replays). */
export function membershipOptionsFor (seed: number, overrides: Partial<MembershipSimOptions> = {}): MembershipSimOptions {
  const rng = createRng(seed ^ 0x5a17)
  const nodes = rng.intBetween(5, 16)
  const latencyMsMax = rng.intBetween(2, 10)
  return {
    seed,
    nodes,
    tickMs: 20,
    network: {
      dropRate: rng.intBetween(0, 5) / 100,
      duplicateRate: rng.intBetween(0, 2) / 100,
      delayRate: rng.intBetween(0, 5) / 100,
      latencyMsMin: 1,
      latencyMsMax,
      delayMsMax: rng.intBetween(latencyMsMax, 150)
    },
    crashes: rng.intBetween(1, Math.max(1, Math.floor(nodes / 4))),
    slow: rng.intBetween(1, 2),
    slowMsMin: 50,
    slowMsMax: 600,
    partition: rng.chance(0.7),
    partitionMsMax: 8000,
    leave: rng.chance(0.5),
    faultPhaseMs: 20_000,
    joinPhaseMsMax: 60_000,
    settleMsMax: 60_000,
    deepChecks: true,
    fullTrace: false,
    ...overrides
  }
}

export function replayCommand (seed: number): string {
  return `node test/sim/membership/replay.ts --seed ${seed} --verbose`
}

export class MembershipSimError extends SeededSimError {
  override name = 'MembershipSimError'

  constructor (seed: number, kind: string, detail: string, traceTail: string[], trace: string[] | null) {
    super(replayCommand(seed), seed, kind, detail, traceTail, trace)
  }
}

export interface MembershipSimResult {
  seed: number
  nodes: number
  /** Virtual ms from the end of the fault phase until the verdict held. */
  settleMs: number
  messages: number
  bytes: number
  /** Most live members holding a slow member dead at once, and the majority it had to stay under. */
  slowDeadViewsMax: number
  falseDeadDeclarations: number
  refutations: number
  trace: string[] | null
}

export function runMembershipSim (options: MembershipSimOptions): MembershipSimResult {
  const scenario = createRng(options.seed ^ 0x3c3c)
  const cluster = new MembershipCluster({
    seed: options.seed,
    tickMs: options.tickMs,
    network: options.network,
    deepChecks: options.deepChecks,
    fullTrace: options.fullTrace,
    traceLines: 80,
    config: options.config,
    ...(options.topic !== undefined ? { topic: options.topic } : {})
  })
  const fail = (kind: string, detail: string): never => {
    throw new MembershipSimError(options.seed, kind, detail, cluster.trace.tail(80), cluster.trace.full)
  }
  const ids = Array.from({ length: options.nodes }, (_, i) => `m${i + 1}`)
  const crashed = new Set<MemberId>()
  const slow = new Set<MemberId>()
  let leaver: MemberId | null = null

  // Who holds whom dead, for the slow-member majority check. A member that
  // declares another dead while a partition separates them (or after a
  // suspicion that a partition cut across) is right to: the subject was
  // unreachable, or its refutation was. Its
  // notice spreads after the heal and is refuted like any other. Views that
  // come from such a declaration are a partition's doing, not slowness's,
  // and are left out of the count.
  const deadViews = new Map<MemberId, Set<MemberId>>()
  const cutOffDeclarations = new Set<string>()
  let slowDeadViewsMax = 0
  let falseDeadDeclarations = 0
  const othersLive = (subject: MemberId): number => cluster.live().filter(m => m.id !== subject).length
  const cutOff = (a: MemberId, b: MemberId): boolean => cluster.isCut(a, b) || cluster.isCut(b, a)
  const cutOffSuspicions = new Set<string>()
  cluster.onEvent((observer, event) => {
    if (event.type === 'member:suspect' && cutOff(observer, event.id)) {
      cutOffSuspicions.add(`${observer}>${event.id}@${event.incarnation}`)
    }
    if (event.type === 'member:dead' || event.type === 'member:leave') {
      if (event.id === observer) { return }
      let views = deadViews.get(event.id)
      if (views === undefined) { deadViews.set(event.id, views = new Set()) }
      views.add(observer)
      if (event.type === 'member:dead' && event.from === observer) {
        if (!crashed.has(event.id)) { falseDeadDeclarations++ }
        const key = `${observer}>${event.id}@${event.incarnation}`
        if (cutOff(observer, event.id) || cutOffSuspicions.has(key)) { cutOffDeclarations.add(key) }
      }
      if (event.type === 'member:dead' && cutOffDeclarations.has(`${event.from}>${event.id}@${event.incarnation}`)) {
        views.delete(observer)
        return
      }
      if (slow.has(event.id)) {
        const holding = [...views].filter(id => cluster.get(id).up && !cluster.get(id).left).length
        slowDeadViewsMax = Math.max(slowDeadViewsMax, holding)
        const others = othersLive(event.id)
        if (holding > others / 2) {
          fail('slow-member-dead', `slow member ${event.id} (${cluster.get(event.id).slowMs} ms) is held dead by ${holding} of the ${others} other live members`)
        }
      }
    } else if (event.type === 'member:join') {
      deadViews.get(event.id)?.delete(observer)
    }
  })

  // 1. Join.
  const startedAt = new Map<MemberId, number>()
  for (const [i, id] of ids.entries()) {
    const at = i === 0 ? 0 : scenario.intBetween(1, 2000)
    startedAt.set(id, at)
  }
  const order = [...ids].sort((a, b) => (startedAt.get(a) ?? 0) - (startedAt.get(b) ?? 0))
  for (const [i, id] of order.entries()) {
    cluster.scheduler.at(startedAt.get(id) ?? 0, () => {
      const running = order.slice(0, i)
      const seeds = running.length === 0 ? [] : pick(scenario, running, scenario.intBetween(1, 2))
      cluster.addMember(id, { seeds })
    })
  }
  const everyoneKnowsEveryone = (): boolean => cluster.members.size === ids.length &&
    cluster.live().every(m => ids.every(id => m.core.stateOf(id) === 'alive'))
  runChecked(cluster, options.joinPhaseMsMax, everyoneKnowsEveryone, fail)
  if (!everyoneKnowsEveryone()) {
    const missing = cluster.live().flatMap(m => ids.filter(id => m.core.stateOf(id) !== 'alive').map(id => `${m.id} holds ${id} ${m.core.stateOf(id) ?? 'unknown'}`))
    fail('join', `not every member knows every other after ${options.joinPhaseMsMax} ms: ${missing.join(', ')}`)
  }

  // 2. Faults.
  const t0 = cluster.now
  const candidates = [...ids]
  shuffle(scenario, candidates)
  for (let i = 0; i < options.crashes; i++) { crashed.add(candidates.pop() as MemberId) }
  for (let i = 0; i < options.slow; i++) { slow.add(candidates.pop() as MemberId) }
  if (options.leave && candidates.length > 2) { leaver = candidates.pop() as MemberId }
  for (const id of crashed) {
    cluster.scheduler.at(t0 + scenario.intBetween(1000, options.faultPhaseMs - 5000), () => { cluster.crash(id) })
  }
  for (const id of slow) { cluster.setSlow(id, scenario.intBetween(options.slowMsMin, options.slowMsMax)) }
  if (leaver !== null) {
    const id = leaver
    cluster.scheduler.at(t0 + scenario.intBetween(1000, options.faultPhaseMs - 5000), () => { cluster.leave(id) })
  }
  if (options.partition) {
    // The minority never holds a slow member: cut off, it would rightly be declared dead.
    const pool = ids.filter(id => !slow.has(id))
    shuffle(scenario, pool)
    const minority = pool.slice(0, scenario.intBetween(1, Math.max(1, Math.floor((ids.length - 1) / 2))))
    const majority = ids.filter(id => !minority.includes(id))
    const start = t0 + scenario.intBetween(500, options.faultPhaseMs - options.partitionMsMax - 1000)
    cluster.scheduler.at(start, () => {
      cluster.partition([minority, majority])
      // Suspicions running across the cut can no longer be refuted: they count as the partition's.
      for (const m of cluster.live()) {
        for (const other of m.core.members()) {
          if (other.state === 'suspect' && cutOff(m.id, other.id)) { cutOffSuspicions.add(`${m.id}>${other.id}@${other.incarnation}`) }
        }
      }
    })
    cluster.scheduler.at(start + scenario.intBetween(1000, options.partitionMsMax), () => { cluster.heal() })
  }
  cluster.scheduler.at(t0 + options.faultPhaseMs, () => { cluster.setNetworkFaults(CALM) })
  runChecked(cluster, t0 + options.faultPhaseMs, () => false, fail)

  // 3. Settle and verdict.
  const t1 = cluster.now
  const verdict = (): string | null => {
    const running = cluster.live().map(m => m.id).sort()
    for (const m of cluster.live()) {
      for (const id of crashed) {
        if (isLive(m.core.stateOf(id))) { return `${m.id} still holds crashed ${id} as ${m.core.stateOf(id) ?? '?'}` }
      }
      const view = m.core.members().filter(r => isLive(r.state)).map(r => r.id).sort()
      if (view.join(' ') !== running.join(' ')) { return `${m.id} sees live [${view.join(' ')}], running are [${running.join(' ')}]` }
    }
    return null
  }
  runChecked(cluster, t1 + options.settleMsMax, () => cluster.now % 500 === 0 && verdict() === null, fail)
  const problem = verdict()
  if (problem !== null) { fail('convergence', `${problem} (${options.settleMsMax} ms after the faults stopped)`) }
  if (leaver !== null && !cluster.get(leaver).left) { fail('leave', `${leaver} left but never reported leave:done`) }

  let refutations = 0
  for (const m of cluster.members.values()) { refutations += m.core.status().counters.refutations }
  return {
    seed: options.seed,
    nodes: options.nodes,
    settleMs: cluster.now - t1,
    messages: cluster.stats.messages,
    bytes: cluster.stats.bytes,
    slowDeadViewsMax,
    falseDeadDeclarations,
    refutations,
    trace: cluster.trace.full
  }
}

/** Runs the cluster; a core assertion becomes a failure with the seed and the trace. */
function runChecked (cluster: MembershipCluster, untilMs: number, stop: () => boolean, fail: (kind: string, detail: string) => never): void {
  try {
    cluster.run(untilMs, stop)
  } catch (err) {
    if (err instanceof Error && err.name === 'MembershipSimError') { throw err }
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

function pick<T> (rng: Rng, items: readonly T[], count: number): T[] {
  const copy = [...items]
  shuffle(rng, copy)
  return copy.slice(0, Math.min(count, copy.length))
}
