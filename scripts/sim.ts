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
import { optionsFor, parseOverrides, PROFILES, SABOTAGES } from '../test/sim/options.ts'
import { runSimulation, SimulationError } from '../test/sim/run.ts'
import { integer, simulatorMain } from './seed-sweep.ts'
import type { SeedOutcome } from './seed-sweep.ts'
import type { ProfileSettings, Sabotage, SimOptions } from '../test/sim/options.ts'

interface RunSettings {
  profile: string
  nodes: number | undefined
  sabotage: Sabotage | undefined
  overrides: ProfileSettings
}

await simulatorMain<RunSettings, ProfileSettings>({
  script: 'scripts/sim.ts',
  profiles: Object.keys(PROFILES),
  sabotages: SABOTAGES,
  sabotageBreaks: 'a deliberately broken store or read path',
  ownOptions: { nodes: 'N' },
  parseOverrides,
  settings: ({ profile, sabotage, overrides, own }) => ({
    profile,
    nodes: own.nodes === undefined ? undefined : integer('nodes', own.nodes),
    sabotage: sabotage as Sabotage | undefined,
    overrides
  }),
  replay,
  runSeed,
  workerScript: new URL(import.meta.url)
})

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
