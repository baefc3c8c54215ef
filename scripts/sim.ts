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
 * simulated store or read path on purpose, to watch the checkers fail.
 * `--overrides '{"fsyncMsMax":50}'` changes any SimOptions setting; a
 * failure's replay command includes whatever its run overrode.
 */
import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { isMainThread, workerData } from 'node:worker_threads'
import { optionsFor, parseOverrides, PROFILES, SABOTAGES } from '../test/sim/options.ts'
import { runSimulation, SimulationError } from '../test/sim/run.ts'
import { integer, runWorker, sweep, usageError } from './seed-sweep.ts'
import type { SeedOutcome, WorkerTask } from './seed-sweep.ts'
import type { ProfileSettings, Sabotage, SimOptions } from '../test/sim/options.ts'

interface RunSettings {
  profile: string
  nodes: number | undefined
  sabotage: Sabotage | undefined
  overrides: ProfileSettings
}

if (isMainThread) {
  await main()
} else {
  await runWorker(workerData as WorkerTask<RunSettings>, runSeed)
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
      `sabotage (a deliberately broken store or read path): ${SABOTAGES.join(', ')}`,
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
    await replay(settings, integer('seed', values.seed), values.verbose)
    return
  }
  const start = integer('start', values.start)
  const count = integer('seeds', values.seeds ?? '0')
  const jobs = Math.max(1, Math.min(integer('jobs', values.jobs), availableParallelism(), count))
  await sweep({ settings, start, count, jobs, verbose: values.verbose, failFast: values['fail-fast'], runSeed, workerScript: new URL(import.meta.url) })
}

function optionsOf (settings: RunSettings, seed: number, fullTrace: boolean): SimOptions {
  const overrides: Partial<SimOptions> = { ...settings.overrides, fullTrace }
  if (settings.nodes !== undefined) { overrides.nodes = settings.nodes }
  if (settings.sabotage !== undefined) { overrides.sabotage = settings.sabotage }
  return optionsFor(seed, settings.profile, overrides)
}

async function replay (settings: RunSettings, seed: number, verbose: boolean): Promise<void> {
  try {
    const { trace, ...summary } = await runSimulation(optionsOf(settings, seed, true))
    if (verbose) { process.stdout.write(`${(trace ?? []).join('\n')}\n`) }
    process.stdout.write(`seed ${seed}: ok ${JSON.stringify(summary)}\n`)
  } catch (err) {
    if (!(err instanceof SimulationError)) { throw err }
    if (verbose) { process.stdout.write(`full trace:\n${(err.fullTrace ?? []).join('\n')}\n\n`) }
    process.stderr.write(`${err.message}\n`)
    process.exit(1)
  }
}

async function runSeed (settings: RunSettings, seed: number): Promise<SeedOutcome> {
  try {
    const result = await runSimulation(optionsOf(settings, seed, false))
    return { seed, ok: true, events: result.events, detail: `${result.operations} ops, ${result.events} events, ${Math.round(result.virtualMs)} virtual ms` }
  } catch (err) {
    if (!(err instanceof SimulationError)) { throw err }
    return { seed, ok: false, kind: err.kind, headline: err.message.split('\n')[0], replay: err.replay }
  }
}
