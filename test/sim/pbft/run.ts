/**
 * The phases of a PBFT simulation run and its verdict:
 *
 * 1. faults (durationMs): clients issue KV operations while the schedule
 * crashes, partitions and re-partitions, and the Byzantine replicas do
 * their worst; safety is checked on every send and execution;
 * 2. the faults stop (links heal, every replica runs, the network stays as
 * lossy as it was): every client operation must complete;
 * 3. a final client writes and reads every key, ordered;
 * 4. every honest replica converges on one executed seq and identical KV
 * state;
 * 5. the history must be linearizable (test/lib/linearizability.ts).
 */
import { AssertionError } from '../../../protocols/common/assert.ts'
import { checkOperations, kvModel } from '../../lib/linearizability.ts'
import { runUntilAsync } from '../runtime.ts'
import { SeededSimError } from '../seeded-error.ts'
import { describeInput } from './clients.ts'
import { PbftSimCluster } from './cluster.ts'
import { PbftFaults } from './faults.ts'
import { pbftReplayCommand } from './options.ts'
import { PbftReconfigurer } from './reconfigurations.ts'
import type { PbftSimOptions } from './options.ts'

const TRACE_LINES_REPORTED = 50
const POLL_MS = 20

export class PbftSimulationError extends SeededSimError {
  override name = 'PbftSimulationError'
}

export interface PbftSimResult {
  seed: number
  profile: string
  virtualMs: number
  events: number
  operations: number
  pendingOperations: number
  executedSeq: number
  trace: string[] | null
  stats: Record<string, number>
}

export async function runPbftSimulation (options: PbftSimOptions): Promise<PbftSimResult> {
  const cluster = new PbftSimCluster(options)
  try {
    const result = await runPhases(cluster)
    if (cluster.failure !== null) { throw failed(cluster) }
    return result
  } catch (err) {
    if (err instanceof PbftSimulationError) { throw err }
    if (cluster.failure === null) {
      const error = err instanceof Error ? err : new Error(String(err))
      cluster.fail(error instanceof AssertionError ? 'core-assertion' : 'error', `${error.message}\n${error.stack ?? ''}`)
    }
    throw failed(cluster)
  }
}

function failed (cluster: PbftSimCluster): PbftSimulationError {
  const { kind, message } = cluster.failure ?? { kind: 'error', message: 'unknown failure' }
  const { options } = cluster
  return new PbftSimulationError(pbftReplayCommand(options), options.seed, `${kind} (profile ${options.profile}, n = ${options.replicas}${options.byzantine.length > 0 ? `, byzantine ${options.byzantine.join('+')}` : ''})`,
    message, cluster.trace.tail(TRACE_LINES_REPORTED), cluster.trace.full)
}

/** Runs until `until` (virtual ms), or until `done()`, or until something failed; throws on a failure. */
async function runUntil (cluster: PbftSimCluster, until: number, done: () => boolean = () => false): Promise<void> {
  await runUntilAsync(cluster.scheduler, until, () => cluster.failure !== null || cluster.honestFailed() || done())
  if (cluster.failure !== null) { throw failed(cluster) }
}

async function runPhases (cluster: PbftSimCluster): Promise<PbftSimResult> {
  const { options, scheduler } = cluster
  const faults = new PbftFaults(cluster, cluster.rng.fork())
  cluster.start()
  const clients = cluster.addClients(options.clients, { thinkMsMax: 20 })
  for (const client of clients) { client.start() }
  const reconfigurer = options.reconfigure ? new PbftReconfigurer(cluster, cluster.rng.fork()) : null
  reconfigurer?.start()
  faults.start()
  await runUntil(cluster, options.durationMs)

  faults.stopAndHeal()
  for (const client of clients) { client.stop() }
  const quiet = (): boolean => clients.every(c => c.idle) && (reconfigurer?.done ?? true)
  await runUntil(cluster, scheduler.now + options.livenessMs, quiet)
  if (reconfigurer !== null && !reconfigurer.done) {
    cluster.fail('liveness', `the reconfigurations did not complete within ${options.livenessMs} ms after the faults stopped (epoch ${reconfigurer.configured} configured)\n${replicaStates(cluster)}`)
    throw failed(cluster)
  }
  if (!clients.every(c => c.idle)) {
    const pending = cluster.history.filter(op => op.return === Infinity).map(op => `${op.clientId}: ${describeInput(op.input)} since ${op.call} ms`)
    cluster.fail('liveness', `client operations did not complete within ${options.livenessMs} ms after the faults stopped:\n${pending.join('\n')}\n${replicaStates(cluster)}`)
    throw failed(cluster)
  }

  const [final] = cluster.addClients(1, { thinkMsMax: 0 })
  final.stop()
  final.start()
  final.enqueue(Array.from({ length: options.keys }, (_, i) => ({ op: 'get' as const, key: `k${i}` })))
  await runUntil(cluster, scheduler.now + options.livenessMs, () => final.idle)
  if (!final.idle) {
    cluster.fail('liveness', `the final write and reads did not complete within ${options.livenessMs} ms\n${replicaStates(cluster)}`)
    throw failed(cluster)
  }

  const executedSeq = await awaitConvergence(cluster, scheduler.now + options.livenessMs)
  if (reconfigurer !== null) {
    const behind = cluster.honestInstances().filter(i => i.driver?.status().member === true && i.driver.status().epoch !== reconfigurer.configured)
    if (behind.length > 0) {
      cluster.fail('liveness', `epoch ${reconfigurer.configured} was decided but is not in force at ${behind.map(i => i.name).join(', ')}\n${replicaStates(cluster)}`)
      throw failed(cluster)
    }
  }

  // a bad partial under the group (the simulator's checkpoints always name it) is evidence: one named by an honest replica must have been published
  const unaccused = [...cluster.liarsNamed].filter(liar => !cluster.accused.has(liar))
  if (unaccused.length > 0) {
    cluster.fail('protocol', `the bad checkpoint partials of ${unaccused.join(', ')} were named by honest replicas, but none published evidence\n${replicaStates(cluster)}`)
    throw failed(cluster)
  }

  const verdict = checkOperations(kvModel, cluster.history, { maxSteps: options.checkerStepsMax })
  if (verdict.ok === 'unknown') {
    cluster.fail('checker-unknown', `${verdict.reason} (${cluster.history.length} operations)`)
    throw failed(cluster)
  }
  if (!verdict.ok) {
    cluster.fail('not-linearizable', verdict.explanation.text)
    throw failed(cluster)
  }
  for (const client of cluster.clients) { client.driver.stop() }
  reconfigurer?.stop()
  return {
    seed: options.seed,
    profile: options.profile,
    virtualMs: scheduler.now,
    events: scheduler.executed,
    operations: cluster.history.length,
    pendingOperations: cluster.history.filter(op => op.return === Infinity).length,
    executedSeq,
    trace: cluster.trace.full,
    stats: {
      ...cluster.stats,
      ...cluster.network.stats,
      ...cluster.invariants.stats,
      epochs: reconfigurer?.configured ?? 0,
      // (honest replica, bad-partial liar) pairs where the replica holds the liar isolated at the end
      liarsIsolated: cluster.honestInstances().reduce((pairs, i) => pairs + (i.driver?.status().isolated.filter(x => cluster.liars.has(x.peer)).length ?? 0), 0),
      // replicas whose durable snapshot is proven by a compact certificate (from their own votes or a state transfer)
      compactSnapshots: cluster.instances.filter(i => i.disk.durable.snapshot?.checkpoint.groupSignature !== undefined).length
    }
  }
}

/**
 * Waits until every honest replica of the set in force runs and has
 * executed the same seq (a replica a reconfiguration removed stops where it
 * left), then checks their KV states are identical.
 */
async function awaitConvergence (cluster: PbftSimCluster, deadline: number): Promise<number> {
  const honest = cluster.honestInstances().filter(i => i.driver?.status().member !== false)
  const converged = (): boolean => {
    const executed = honest.map(i => i.driver === null ? -1 : i.driver.executed)
    // (and no replica set waits to take over)
    return executed.every(e => e >= 0 && e === executed[0]) && honest.every(i => i.driver?.status().executed === executed[0] && i.driver.status().pending === null)
  }
  while (!converged() && cluster.scheduler.now < deadline) {
    await runUntil(cluster, Math.min(deadline, cluster.scheduler.now + POLL_MS))
  }
  if (!converged()) {
    cluster.fail('liveness', `the honest replicas did not converge on one executed seq\n${replicaStates(cluster)}`)
    throw failed(cluster)
  }
  const [first, ...rest] = honest
  const reference = first.driver?.kv.snapshot() ?? new Uint8Array()
  for (const other of rest) {
    const state = other.driver?.kv.snapshot() ?? new Uint8Array()
    if (state.length !== reference.length || state.some((byte, i) => byte !== reference[i])) {
      cluster.fail('safety', `agreement: ${other.name} and ${first.name} both executed through s${first.driver?.executed ?? 0} but their KV states differ: ${JSON.stringify(other.driver?.kv.stats())} and ${JSON.stringify(first.driver?.kv.stats())}`)
      throw failed(cluster)
    }
  }
  return first.driver?.executed ?? 0
}

function replicaStates (cluster: PbftSimCluster): string {
  return cluster.instances.map(i => {
    if (!i.alive || i.driver === null) { return `${i.name}: down` }
    const s = i.driver.status()
    return `${i.name}${i.honest ? '' : ' (byzantine)'}: epoch ${s.epoch}${s.member ? '' : ' (learner)'}, view ${s.view}${s.viewChanging ? ' (changing)' : ''}, executed ${i.driver.executed} (core ${s.executed}), stable ${s.stableCheckpoint}, watermarks ${s.lowWatermark}-${s.highWatermark}, isolated ${s.isolated.map(x => x.peer).join(',') || '-'}`
  }).join('\n')
}
