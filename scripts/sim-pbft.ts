/**
 * Seed sweeps and replays of the PBFT simulator (test/sim/pbft).
 *
 * Replay: `node scripts/sim-pbft.ts --seed N [--profile P] [--verbose]`
 * runs one seed and prints its failure with the last events of its trace
 * (with --verbose: the whole trace).
 *
 * Sweep: `node scripts/sim-pbft.ts --seeds COUNT [--start S] [--profile P] [--jobs J] [--fail-fast]`
 * prints every failing seed with its replay command and exits non-zero if
 * any failed.
 *
 * Profiles are PBFT_PROFILES in test/sim/pbft/options.ts ('random', the
 * default, draws the adversaries and faults from the seed). `--sabotage
 * KIND` breaks a replica on purpose, to watch the checks fail;
 * `--overrides '{"durationMs":3000}'` changes any setting of the run.
 */
import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { isMainThread, workerData } from 'node:worker_threads'
import { parsePbftOverrides, PBFT_PROFILES, PBFT_SABOTAGES, pbftOptionsFor } from '../test/sim/pbft/options.ts'
import { PbftSimulationError, runPbftSimulation } from '../test/sim/pbft/run.ts'
import { integer, runWorker, sweep, usageError } from './seed-sweep.ts'
import type { SeedOutcome, WorkerTask } from './seed-sweep.ts'
import type { PbftProfileSettings, PbftSabotage, PbftSimOptions } from '../test/sim/pbft/options.ts'

interface RunSettings {
  profile: string
  overrides: PbftProfileSettings
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
      'usage: node scripts/sim-pbft.ts --seed N [--profile P] [--verbose] [--sabotage KIND] [--overrides JSON]',
      '       node scripts/sim-pbft.ts --seeds COUNT [--start S] [--profile P] [--jobs J] [--fail-fast] [--sabotage KIND] [--overrides JSON]',
      `profiles: ${Object.keys(PBFT_PROFILES).join(', ')}`,
      `sabotage (a deliberately broken replica): ${PBFT_SABOTAGES.join(', ')}`,
      ''
    ].join('\n'))
    process.exit(values.help ? 0 : 2)
  }
  if (!(values.profile in PBFT_PROFILES)) { usageError(`unknown profile ${values.profile}; known: ${Object.keys(PBFT_PROFILES).join(', ')}`) }
  if (values.sabotage !== undefined && !(PBFT_SABOTAGES as readonly string[]).includes(values.sabotage)) {
    usageError(`--sabotage must be one of ${PBFT_SABOTAGES.join(', ')}`)
  }
  let overrides: PbftProfileSettings = {}
  try {
    overrides = values.overrides === undefined ? {} : parsePbftOverrides(values.overrides)
  } catch (err) {
    usageError(`--overrides: ${(err as Error).message}`)
  }
  if (values.sabotage !== undefined) { overrides.sabotage = values.sabotage as PbftSabotage }
  const settings: RunSettings = { profile: values.profile, overrides }
  if (values.seed !== undefined) {
    await replay(settings, integer('seed', values.seed), values.verbose)
    return
  }
  const start = integer('start', values.start)
  const count = integer('seeds', values.seeds ?? '0')
  const jobs = Math.max(1, Math.min(integer('jobs', values.jobs), availableParallelism(), count))
  await sweep({ settings, start, count, jobs, verbose: values.verbose, failFast: values['fail-fast'], runSeed, workerScript: new URL(import.meta.url) })
}

function optionsOf (settings: RunSettings, seed: number, fullTrace: boolean): PbftSimOptions {
  return pbftOptionsFor(seed, settings.profile, { ...settings.overrides, fullTrace })
}

async function replay (settings: RunSettings, seed: number, verbose: boolean): Promise<void> {
  try {
    const { trace, ...summary } = await runPbftSimulation(optionsOf(settings, seed, verbose))
    if (verbose) { process.stdout.write(`${(trace ?? []).join('\n')}\n`) }
    process.stdout.write(`seed ${seed}: ok ${JSON.stringify(summary)}\n`)
  } catch (err) {
    if (!(err instanceof PbftSimulationError)) { throw err }
    if (verbose) { process.stdout.write(`full trace:\n${(err.trace ?? []).join('\n')}\n\n`) }
    process.stderr.write(`${err.message}\n`)
    process.exitCode = 1
  }
}

async function runSeed (settings: RunSettings, seed: number): Promise<SeedOutcome> {
  try {
    const result = await runPbftSimulation(optionsOf(settings, seed, false))
    return { seed, ok: true, events: result.events, detail: `${result.events} events` }
  } catch (err) {
    if (!(err instanceof PbftSimulationError)) { throw err }
    return { seed, ok: false, kind: err.kind, headline: err.message.split('\n')[0], replay: err.replay }
  }
}
