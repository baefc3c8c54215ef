/**
 * What the simulators' command lines share (scripts/sim.ts for Raft,
 * scripts/sim-pbft.ts for PBFT): argument checks, and a seed sweep over
 * worker threads that prints progress and every failing seed's replay
 * command, then exits non-zero if any seed failed.
 */
import { parentPort, Worker } from 'node:worker_threads'

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
