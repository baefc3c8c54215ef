/**
 * Seed sweeps and replays of the deterministic cluster simulator (test/sim).
 *
 * Sweep: `node scripts/sim.ts --seeds 100000 [--start S] [--profile P] [--nodes N] [--jobs J] [--verbose] [--fail-fast]`
 * prints progress and every failing seed with its replay command, and exits
 * non-zero if any seed failed.
 *
 * Replay: `node scripts/sim.ts --seed N [--profile P] [--nodes N] [--verbose]`
 * runs one seed and prints its failure with the end of the trace (with
 * --verbose: the whole trace).
 *
 * Profiles are PROFILES in test/sim/options.ts ('random', the default,
 * derives the features from the seed). `--sabotage KIND` breaks the
 * simulated service layer on purpose, to watch the checkers fail.
 * `--overrides '{"fsyncMsMax":50}'` changes any SimOptions setting; a
 * failure's replay command includes whatever its run overrode.
 */
import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { optionsFor, parseOverrides, PROFILES, SABOTAGES } from '../test/sim/options.ts'
import { runSimulation, SimulationError } from '../test/sim/run.ts'
import type { ProfileSettings, Sabotage, SimOptions } from '../test/sim/options.ts'

interface RunSettings {
  profile: string
  nodes: number | undefined
  sabotage: Sabotage | undefined
  overrides: ProfileSettings
}

/** What a sweep learns about one seed. */
type SeedOutcome =
  | { seed: number, ok: true, events: number, operations: number, virtualMs: number }
  | { seed: number, ok: false, kind: string, headline: string, replay: string }

interface WorkerTask {
  settings: RunSettings
  seeds: number[]
  failFast: boolean
}

const PROGRESS_INTERVAL_MS = 5000

if (isMainThread) {
  await main()
} else {
  runWorker(workerData as WorkerTask)
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string' },
      seeds: { type: 'string' },
      start: { type: 'string', default: '1' },
      profile: { type: 'string', default: 'random' },
      nodes: { type: 'string' },
      jobs: { type: 'string', default: '1' },
      sabotage: { type: 'string' },
      overrides: { type: 'string' },
      verbose: { type: 'boolean', default: false },
      'fail-fast': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false }
    }
  })
  if (values.help || (values.seed === undefined && values.seeds === undefined)) {
    process.stdout.write([
      'usage: node scripts/sim.ts --seeds COUNT [--start S] [--profile P] [--nodes N] [--jobs J] [--verbose] [--fail-fast] [--sabotage KIND] [--overrides JSON]',
      '       node scripts/sim.ts --seed N [--profile P] [--nodes N] [--verbose] [--sabotage KIND] [--overrides JSON]',
      `profiles: ${Object.keys(PROFILES).join(', ')}`,
      `sabotage (a deliberately broken service layer): ${SABOTAGES.join(', ')}`,
      ''
    ].join('\n'))
    process.exit(values.help ? 0 : 2)
  }
  if (!(values.profile in PROFILES)) { usageError(`unknown profile ${values.profile}; known: ${Object.keys(PROFILES).join(', ')}`) }
  if (values.sabotage !== undefined && !(SABOTAGES as readonly string[]).includes(values.sabotage)) {
    usageError(`--sabotage must be one of ${SABOTAGES.join(', ')}`)
  }
  let overrides: ProfileSettings = {}
  try {
    overrides = values.overrides === undefined ? {} : parseOverrides(values.overrides)
  } catch (err) {
    usageError(`--overrides: ${(err as Error).message}`)
  }
  const settings: RunSettings = {
    profile: values.profile,
    nodes: values.nodes === undefined ? undefined : integer('nodes', values.nodes),
    sabotage: values.sabotage as Sabotage | undefined,
    overrides
  }
  if (values.seed !== undefined) {
    replay(settings, integer('seed', values.seed), values.verbose)
    return
  }
  const start = integer('start', values.start)
  const count = integer('seeds', values.seeds ?? '0')
  const jobs = Math.max(1, Math.min(integer('jobs', values.jobs), availableParallelism(), count))
  await sweep(settings, start, count, jobs, values.verbose, values['fail-fast'])
}

function usageError (message: string): never {
  process.stderr.write(`${message}\n`)
  process.exit(2)
}

function integer (name: string, text: string): number {
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 0) { usageError(`--${name} must be a non-negative integer, got ${text}`) }
  return value
}

function optionsOf (settings: RunSettings, seed: number, fullTrace: boolean): SimOptions {
  const overrides: Partial<SimOptions> = { ...settings.overrides, fullTrace }
  if (settings.nodes !== undefined) { overrides.nodes = settings.nodes }
  if (settings.sabotage !== undefined) { overrides.sabotage = settings.sabotage }
  return optionsFor(seed, settings.profile, overrides)
}

function replay (settings: RunSettings, seed: number, verbose: boolean): void {
  try {
    const { trace, ...summary } = runSimulation(optionsOf(settings, seed, true))
    if (verbose) { process.stdout.write(`${(trace ?? []).join('\n')}\n`) }
    process.stdout.write(`seed ${seed}: ok ${JSON.stringify(summary)}\n`)
  } catch (err) {
    if (!(err instanceof SimulationError)) { throw err }
    if (verbose) { process.stdout.write(`full trace:\n${(err.fullTrace ?? []).join('\n')}\n\n`) }
    process.stderr.write(`${err.message}\n`)
    process.exit(1)
  }
}

function runSeed (settings: RunSettings, seed: number): SeedOutcome {
  try {
    const result = runSimulation(optionsOf(settings, seed, false))
    return { seed, ok: true, events: result.events, operations: result.operations, virtualMs: result.virtualMs }
  } catch (err) {
    if (!(err instanceof SimulationError)) { throw err }
    return { seed, ok: false, kind: err.kind, headline: err.message.split('\n')[0], replay: err.replay }
  }
}

function runWorker (task: WorkerTask): void {
  for (const seed of task.seeds) {
    const outcome = runSeed(task.settings, seed)
    parentPort?.postMessage(outcome)
    if (!outcome.ok && task.failFast) { return }
  }
}

async function sweep (settings: RunSettings, start: number, count: number, jobs: number, verbose: boolean, failFast: boolean): Promise<void> {
  const began = performance.now()
  let lastReport = began
  let done = 0
  let events = 0
  const failures: Array<Extract<SeedOutcome, { ok: false }>> = []

  const record = (outcome: SeedOutcome): void => {
    done++
    if (outcome.ok) {
      events += outcome.events
      if (verbose) { process.stdout.write(`seed ${outcome.seed}: ok, ${outcome.operations} ops, ${outcome.events} events, ${Math.round(outcome.virtualMs)} virtual ms\n`) }
    } else {
      failures.push(outcome)
      process.stdout.write(`FAIL ${outcome.headline}\n  replay: ${outcome.replay}\n`)
    }
    const now = performance.now()
    if (now - lastReport > PROGRESS_INTERVAL_MS) {
      lastReport = now
      process.stdout.write(`${done}/${count} seeds, ${failures.length} failed, ${(done / ((now - began) / 1000)).toFixed(1)} seeds/s\n`)
    }
  }

  const seeds = Array.from({ length: count }, (_, i) => start + i)
  if (jobs === 1) {
    for (const seed of seeds) {
      record(runSeed(settings, seed))
      if (failFast && failures.length > 0) { break }
    }
  } else {
    // Seed i goes to worker i mod jobs; each worker reports every seed it ran.
    const workers = Array.from({ length: jobs }, (_, job) => {
      const task: WorkerTask = { settings, seeds: seeds.filter((_, i) => i % jobs === job), failFast }
      return new Worker(new URL(import.meta.url), { workerData: task })
    })
    await Promise.all(workers.map(async worker => {
      worker.on('message', (outcome: SeedOutcome) => {
        record(outcome)
        // the first failure stops every worker, not only the one that found it
        if (failFast && !outcome.ok) { for (const w of workers) { void w.terminate() } }
      })
      await new Promise<void>((resolve, reject) => {
        worker.on('error', reject)
        worker.on('exit', () => { resolve() })
      })
    }))
  }

  const seconds = (performance.now() - began) / 1000
  process.stdout.write(`done: ${done} seeds in ${seconds.toFixed(1)} s with ${jobs} job(s) (${(done / seconds).toFixed(1)} seeds/s, ${Math.round(events / seconds)} events/s), ${failures.length} failed\n`)
  for (const failure of failures.sort((a, b) => a.seed - b.seed)) { process.stdout.write(`  ${failure.replay}  # ${failure.kind}\n`) }
  process.exitCode = failures.length > 0 ? 1 : 0
}
