/**
 * One simulation run, start to verdict:
 *
 * 1. fault phase (durationMs): clients run random operations while the
 * fault schedule crashes, partitions, delays and reconfigures;
 * 2. the faults stop: the network heals, every node restarts, the clients
 * finish what they have in flight (settleMs);
 * 3. liveness: a final write and a read of every key must complete within
 * livenessMs, and every member must converge to the same state;
 * 4. the whole history must be linearizable.
 *
 * Safety invariants are checked on every Ready, message sent, entry applied
 * and snapshot throughout. The nodes run the production driver, whose work
 * is asynchronous: the run is too (see runUntilAsync). Any failure throws a SimulationError whose message starts
 * with the seed and the replay command, followed by the end of the trace.
 */
import { AssertionError } from '../../protocols/common/assert.ts'
import { checkOperations, kvModel } from '../lib/linearizability.ts'
import { SimCluster, SimulationFailure } from './cluster.ts'
import { FaultInjector } from './faults.ts'
import { InvariantViolation } from './invariants.ts'
import { replayCommand } from './options.ts'
import type { SimOptions } from './options.ts'

const TRACE_LINES_REPORTED = 50
const POLL_MS = 10

export type FailureKind =
  | 'safety'
  | 'core-assertion'
  | 'liveness'
  | 'not-linearizable'
  | 'checker-unknown'
  | 'protocol'
  | 'error'

export class SimulationError extends Error {
  override name = 'SimulationError'
  readonly seed: number
  readonly kind: FailureKind
  readonly replay: string
  readonly traceTail: string[]
  /** Every trace line, when options.fullTrace is set. */
  fullTrace: string[] | null = null

  constructor (options: SimOptions, kind: FailureKind, detail: string, traceTail: string[], cause?: unknown) {
    const replay = replayCommand(options)
    super([
      `seed ${options.seed} (profile ${options.profile}, ${options.nodes} nodes): ${kind}: ${detail}`,
      `replay: ${replay}`,
      `last ${traceTail.length} events:`,
      ...traceTail.map(line => `  ${line}`)
    ].join('\n'), cause === undefined ? undefined : { cause })
    this.seed = options.seed
    this.kind = kind
    this.replay = replay
    this.traceTail = traceTail
  }
}

export interface SimResult {
  seed: number
  profile: string
  virtualMs: number
  events: number
  operations: number
  pendingOperations: number
  checkerSteps: number
  /** Every trace line, when options.fullTrace is set. */
  trace: string[] | null
  stats: Record<string, number>
}

export async function runSimulation (options: SimOptions): Promise<SimResult> {
  const cluster = new SimCluster(options)
  try {
    return await runPhases(cluster)
  } catch (err) {
    const error = toSimulationError(options, err, cluster.trace.tail(TRACE_LINES_REPORTED))
    error.fullTrace = cluster.trace.full
    throw error
  }
}

async function runPhases (cluster: SimCluster): Promise<SimResult> {
  const { options, scheduler } = cluster
  const faults = new FaultInjector(cluster, cluster.rng.fork())
  const keys = Array.from({ length: options.keys }, (_, i) => `k${i}`)
  const clients = cluster.addClients(options.clients, keys)
  for (const client of clients) { client.start() }
  faults.start()
  await cluster.run(options.durationMs)

  faults.stopAndHeal()
  for (const client of clients) { client.stop() }
  poll(cluster, () => { faults.retireRemoved() })
  await cluster.run(scheduler.now + options.settleMs, () => clients.every(c => c.idle))

  // Liveness: a final write, then a read of every key, must complete.
  const [final] = cluster.addClients(1, keys, Infinity)
  final.enqueue([{ op: 'put', key: keys[0], value: 'final' }, ...keys.map(key => ({ op: 'get' as const, key }))])
  const livenessDeadline = scheduler.now + options.livenessMs
  await cluster.run(livenessDeadline, () => final.idle)
  if (!final.idle) {
    throw new SimulationFailure(`liveness: the final write and reads did not complete within ${options.livenessMs} ms after the faults stopped`)
  }
  const convergedAtIndex = await awaitConvergence(cluster, scheduler.now + options.livenessMs)

  for (const client of clients) { client.abandon() }
  const history = cluster.history
  const verdict = checkOperations(kvModel, history, { maxSteps: options.checkerStepsMax })
  if (verdict.ok === 'unknown') {
    throw new SimulationFailure(`checker-unknown: ${verdict.reason} (${history.length} operations)`)
  }
  if (!verdict.ok) {
    throw new SimulationFailure(`not-linearizable: ${verdict.explanation.text}`)
  }
  return {
    seed: options.seed,
    profile: options.profile,
    virtualMs: scheduler.now,
    events: scheduler.executed,
    operations: history.length,
    pendingOperations: history.filter(op => op.return === Infinity).length,
    checkerSteps: verdict.steps,
    trace: cluster.trace.full,
    stats: {
      ...cluster.stats,
      clientAttempts: sum(cluster.clients.map(c => c.stats.attempts)),
      clientTimeouts: sum(cluster.clients.map(c => c.stats.timeouts)),
      clientRedirects: sum(cluster.clients.map(c => c.stats.redirects)),
      ...cluster.network.stats,
      ...cluster.checker.stats,
      convergedAtIndex
    }
  }
}

/** Runs `action` every POLL_MS of virtual time from now on. */
function poll (cluster: SimCluster, action: () => void): void {
  cluster.scheduler.after(POLL_MS, () => {
    action()
    poll(cluster, action)
  })
}

/**
 * Waits until every member of the leader's configuration is up and has
 * applied exactly the leader's commit index, then checks their state
 * machines are identical. Returns that index.
 */
async function awaitConvergence (cluster: SimCluster, deadlineMs: number): Promise<number> {
  let converged: { index: number, members: string[] } | null = null
  const check = (): void => {
    const leader = cluster.leader()
    if (leader === null || leader.status.applied !== leader.status.commit) { return }
    const { conf, commit } = leader.status
    const members = [...new Set([...conf.voters, ...conf.votersOutgoing, ...conf.learners, ...conf.learnersNext])]
    if (members.every(id => cluster.isUp(id) && cluster.node(id).kv.appliedIndex === commit)) {
      converged = { index: commit, members }
    }
  }
  const poller = (): void => {
    check()
    if (converged === null) { cluster.scheduler.after(POLL_MS, poller) }
  }
  poller()
  await cluster.run(deadlineMs, () => converged !== null)
  const result = converged as { index: number, members: string[] } | null
  if (result === null) {
    const states = cluster.servers().map(id => `${id}: ${cluster.isUp(id) ? JSON.stringify(summary(cluster, id)) : 'down'}`)
    throw new SimulationFailure(`liveness: the members did not converge on one applied index\n${states.join('\n')}`)
  }
  const [first, ...rest] = result.members
  const reference = cluster.node(first).kv.snapshot()
  for (const id of rest) {
    if (!bytesEqual(cluster.node(id).kv.snapshot(), reference)) {
      throw new InvariantViolation(`state machine safety: ${id} and ${first} both applied up to ${result.index} but their KV states differ`)
    }
  }
  return result.index
}

function summary (cluster: SimCluster, id: string): object {
  const status = cluster.node(id).status()
  return { role: status.role, term: status.term, leader: status.leader, commit: status.commit, applied: status.applied, last: status.lastIndex, voters: status.conf.voters, learners: status.conf.learners }
}

function sum (values: number[]): number {
  return values.reduce((a, b) => a + b, 0)
}

function bytesEqual (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i])
}

function toSimulationError (options: SimOptions, err: unknown, tail: string[]): SimulationError {
  if (err instanceof SimulationError) { return err }
  if (err instanceof InvariantViolation) { return new SimulationError(options, 'safety', err.message, tail, err) }
  if (err instanceof AssertionError) { return new SimulationError(options, 'core-assertion', `${err.message}\n${err.stack ?? ''}`, tail, err) }
  if (err instanceof SimulationFailure) {
    const kind = (['liveness', 'not-linearizable', 'checker-unknown'] as const).find(k => err.message.startsWith(`${k}:`)) ?? 'protocol'
    const detail = kind === 'protocol' ? err.message : err.message.slice(kind.length + 2)
    return new SimulationError(options, kind, detail, tail, err)
  }
  const error = err instanceof Error ? err : new Error(String(err))
  return new SimulationError(options, 'error', `${error.message}\n${error.stack ?? ''}`, tail, err)
}
