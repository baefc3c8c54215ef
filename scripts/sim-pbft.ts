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
import { parsePbftOverrides, PBFT_PROFILES, PBFT_SABOTAGES, pbftOptionsFor } from '../test/sim/pbft/options.ts'
import { PbftSimulationError, runPbftSimulation } from '../test/sim/pbft/run.ts'
import { simulatorMain } from './seed-sweep.ts'
import type { SeedOutcome } from './seed-sweep.ts'
import type { PbftProfileSettings, PbftSabotage, PbftSimOptions } from '../test/sim/pbft/options.ts'

interface RunSettings {
  profile: string
  overrides: PbftProfileSettings
}

await simulatorMain<RunSettings, PbftProfileSettings>({
  script: 'scripts/sim-pbft.ts',
  profiles: Object.keys(PBFT_PROFILES),
  sabotages: PBFT_SABOTAGES,
  sabotageBreaks: 'a deliberately broken replica',
  parseOverrides: parsePbftOverrides,
  settings: ({ profile, sabotage, overrides }) => ({
    profile,
    overrides: sabotage === undefined ? overrides : { ...overrides, sabotage: sabotage as PbftSabotage }
  }),
  replay,
  runSeed,
  workerScript: new URL(import.meta.url)
})

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
