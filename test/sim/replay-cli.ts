/* eslint-disable no-console */
/**
 * The command line every seeded simulator's replay.ts shares:
 *
 * - `--seed 42 [--verbose]`: one seed; --verbose prints the whole trace.
 * - `--seeds 1000 [--start 1]`: a sweep; prints every failing seed with its
 * replay command, then a summary.
 * - `--overrides '{"key":value}'`: changes any setting of the run.
 *
 * Sets a non-zero exit code if any seed failed.
 */
import { parseArgs } from 'node:util'
import { SeededSimError } from './seeded-error.ts'

export interface ReplayCli<O, R extends { trace: string[] | null }> {
  /** The run's settings for a seed, with overrides on top. */
  optionsFor(seed: number, overrides: Partial<O>): O
  /** Runs a seed; throws a SeededSimError when a property broke. */
  run(options: O): R
  /** One line about a passing run. */
  describe(result: R): string
  /** A line about a sweep's passing runs (default: none). */
  summarize?(results: R[]): string
}

export function replayCli<O extends { fullTrace: boolean }, R extends { trace: string[] | null }> (cli: ReplayCli<O, R>): void {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string' },
      seeds: { type: 'string' },
      start: { type: 'string', default: '1' },
      verbose: { type: 'boolean', default: false },
      overrides: { type: 'string', default: '{}' }
    }
  })
  const overrides = JSON.parse(values.overrides) as Partial<O>

  if (values.seed !== undefined) {
    const seed = Number(values.seed)
    const options = cli.optionsFor(seed, { ...overrides, fullTrace: values.verbose })
    console.log(JSON.stringify(options))
    try {
      const result = cli.run(options)
      if (values.verbose) { console.log((result.trace ?? []).join('\n')) }
      console.log(`seed ${seed}: ok (${cli.describe(result)})`)
    } catch (err) {
      if (!(err instanceof SeededSimError)) { throw err }
      if (values.verbose && err.trace !== null) { console.log(err.trace.join('\n')) }
      console.log(err.message)
      process.exitCode = 1
    }
    return
  }
  const start = Number(values.start)
  const count = Number(values.seeds ?? '100')
  const passed: R[] = []
  const began = performance.now()
  for (let seed = start; seed < start + count; seed++) {
    try {
      passed.push(cli.run(cli.optionsFor(seed, overrides)))
    } catch (err) {
      if (!(err instanceof SeededSimError)) { throw err }
      console.log(`${err.message.split('\n')[0]}\n  ${err.replay}`)
    }
  }
  const summary = cli.summarize?.(passed)
  console.log(`${passed.length}/${count} seeds passed in ${((performance.now() - began) / 1000).toFixed(1)} s${summary === undefined ? '' : `; ${summary}`}`)
  if (passed.length < count) { process.exitCode = 1 }
}
