/**
 * What the simulators' command lines share (scripts/sim.ts for Raft,
 * scripts/sim-pbft.ts for PBFT): the options and their checks, the usage,
 * replaying one seed or sweeping many, and a seed sweep over worker threads
 * that prints progress and every failing seed's replay command, then exits
 * non-zero if any seed failed.
 */
import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'

/** What a sweep learns about one seed. */
export type SeedOutcome =
  | { seed: number, ok: true, events: number, /** shown with --verbose */ detail: string }
  | { seed: number, ok: false, kind: string, headline: string, replay: string }

export type SeedRunner<S> = (settings: S, seed: number) => Promise<SeedOutcome>

/** What a worker thread runs: its share of the seeds. */
export interface WorkerTask<S> {
  settings: S
  seeds: number[]
  failFast: boolean
}

export interface SweepOptions<S> {
  settings: S
  start: number
  count: number
  jobs: number
  verbose: boolean
  failFast: boolean
  runSeed: SeedRunner<S>
  /** The script itself: each worker thread runs it with a WorkerTask as workerData (see runWorker). */
  workerScript: URL
}

/** The options every simulator takes, checked; `own` holds the values of its own options. */
export interface SimulatorArgs<O> {
  profile: string
  sabotage: string | undefined
  /** --overrides, parsed by the simulator's parser. */
  overrides: O
  own: Record<string, string | undefined>
}

/** One simulator's command line. */
export interface SimulatorCommand<S, O> {
  /** The script as the usage names it, e.g. scripts/sim.ts. */
  script: string
  profiles: readonly string[]
  sabotages: readonly string[]
  /** What a sabotage breaks, for the usage ('a deliberately broken replica'). */
  sabotageBreaks: string
  /** Options of this simulator alone, each taking a value: name → what the usage shows as its value. */
  ownOptions?: Record<string, string>
  /** Parses --overrides (throws with the reason when it is bad). */
  parseOverrides(json: string): O
  /** The settings every seed of this invocation runs with. */
  settings(args: SimulatorArgs<O>): S
  /** Runs one seed and prints its outcome (--seed). */
  replay(settings: S, seed: number, verbose: boolean): Promise<void>
  runSeed: SeedRunner<S>
  /** The script itself (import.meta.url): sweep workers run it. */
  workerScript: URL
}

/**
 * The whole of a simulator script: in a sweep's worker thread, runs its
 * share of seeds; otherwise parses the command line, then replays one seed
 * (--seed) or sweeps many (--seeds). Bad arguments print why and exit 2.
 */
export async function simulatorMain<S, O> (command: SimulatorCommand<S, O>): Promise<void> {
  if (!isMainThread) {
    await runWorker(workerData as WorkerTask<S>, command.runSeed)
    return
  }
  const own = Object.fromEntries(Object.keys(command.ownOptions ?? {}).map(name => [name, { type: 'string' as const }]))
  const { values } = parseArgs({
    options: {
      ...own,
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
    process.stdout.write(usage(command))
    process.exit(values.help ? 0 : 2)
  }
  const { profile, sabotage } = values
  if (!command.profiles.includes(profile)) { usageError(`unknown profile ${profile}; known: ${command.profiles.join(', ')}`) }
  if (sabotage !== undefined && !command.sabotages.includes(sabotage)) { usageError(`--sabotage must be one of ${command.sabotages.join(', ')}`) }
  let overrides: O
  try {
    overrides = command.parseOverrides(values.overrides ?? '{}')
  } catch (err) {
    usageError(`--overrides: ${(err as Error).message}`)
  }
  const ownValues = Object.fromEntries(Object.keys(command.ownOptions ?? {}).map(name => [name, (values as Record<string, unknown>)[name] as string | undefined]))
  const settings = command.settings({ profile, sabotage, overrides, own: ownValues })
  if (values.seed !== undefined) {
    await command.replay(settings, integer('seed', values.seed), values.verbose)
    return
  }
  const start = integer('start', values.start)
  const count = integer('seeds', values.seeds ?? '0')
  const jobs = Math.max(1, Math.min(integer('jobs', values.jobs), availableParallelism(), count))
  await sweep({ settings, start, count, jobs, verbose: values.verbose, failFast: values['fail-fast'], runSeed: command.runSeed, workerScript: command.workerScript })
}

function usage (command: Pick<SimulatorCommand<unknown, unknown>, 'script' | 'profiles' | 'sabotages' | 'sabotageBreaks' | 'ownOptions'>): string {
  const own = Object.entries(command.ownOptions ?? {}).map(([name, value]) => ` [--${name} ${value}]`).join('')
  return [
    `usage: node ${command.script} --seeds COUNT [--start S] [--profile P]${own} [--jobs J] [--verbose] [--fail-fast] [--sabotage KIND] [--overrides JSON]`,
    `       node ${command.script} --seed N [--profile P]${own} [--verbose] [--sabotage KIND] [--overrides JSON]`,
    `profiles: ${command.profiles.join(', ')}`,
    `sabotage (${command.sabotageBreaks}): ${command.sabotages.join(', ')}`,
    ''
  ].join('\n')
}

const PROGRESS_INTERVAL_MS = 5000

export function usageError (message: string): never {
  process.stderr.write(`${message}\n`)
  process.exit(2)
}

export function integer (name: string, text: string): number {
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 0) { usageError(`--${name} must be a non-negative integer, got ${text}`) }
  return value
}

/** The body of a worker thread: runs its seeds, posting each outcome to the main thread. */
export async function runWorker<S> (task: WorkerTask<S>, runSeed: SeedRunner<S>): Promise<void> {
  for (const seed of task.seeds) {
    const outcome = await runSeed(task.settings, seed)
    parentPort?.postMessage(outcome)
    if (!outcome.ok && task.failFast) { return }
  }
}

export async function sweep<S> (options: SweepOptions<S>): Promise<void> {
  const { settings, start, count, jobs, verbose, failFast, runSeed } = options
  const began = performance.now()
  let lastReport = began
  let done = 0
  let events = 0
  const failures: Array<Extract<SeedOutcome, { ok: false }>> = []

  const record = (outcome: SeedOutcome): void => {
    done++
    if (outcome.ok) {
      events += outcome.events
      if (verbose) { process.stdout.write(`seed ${outcome.seed}: ok, ${outcome.detail}\n`) }
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
      record(await runSeed(settings, seed))
      if (failFast && failures.length > 0) { break }
    }
  } else {
    // seed i goes to worker i mod jobs; each worker reports every seed it ran
    const workers = Array.from({ length: jobs }, (_, job) => {
      const task: WorkerTask<S> = { settings, seeds: seeds.filter((_, i) => i % jobs === job), failFast }
      return new Worker(options.workerScript, { workerData: task })
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
