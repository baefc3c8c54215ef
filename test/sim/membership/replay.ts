/* eslint-disable no-console */
/**
 * Replays membership simulator seeds (test/sim/membership/run.ts).
 *
 * - `node test/sim/membership/replay.ts --seed 42 [--verbose]`: one seed;
 * --verbose prints the whole trace.
 * - `node test/sim/membership/replay.ts --seeds 1000 [--start 1]`: a sweep;
 * prints every failing seed with its replay command.
 * - `--overrides '{"slowMsMax":600}'` changes any MembershipSimOptions setting.
 *
 * Exits non-zero if any seed failed.
 */
import { parseArgs } from 'node:util'
import { membershipOptionsFor, MembershipSimError, runMembershipSim } from './run.ts'
import type { MembershipSimOptions } from './run.ts'

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    seeds: { type: 'string' },
    start: { type: 'string', default: '1' },
    verbose: { type: 'boolean', default: false },
    overrides: { type: 'string', default: '{}' }
  }
})
const overrides = JSON.parse(values.overrides) as Partial<MembershipSimOptions>

if (values.seed !== undefined) {
  const seed = Number(values.seed)
  const options = membershipOptionsFor(seed, { ...overrides, fullTrace: values.verbose })
  console.log(JSON.stringify(options))
  try {
    const result = runMembershipSim(options)
    if (values.verbose) { console.log((result.trace ?? []).join('\n')) }
    console.log(`seed ${seed}: ok (settled ${result.settleMs} ms after the faults; ${result.messages} messages, ${result.refutations} refutations)`)
  } catch (err) {
    if (!(err instanceof MembershipSimError)) { throw err }
    if (values.verbose && err.trace !== null) { console.log(err.trace.join('\n')) }
    console.log(err.message)
    process.exitCode = 1
  }
} else {
  const start = Number(values.start)
  const count = Number(values.seeds ?? '100')
  let failed = 0
  const began = performance.now()
  for (let seed = start; seed < start + count; seed++) {
    try {
      runMembershipSim(membershipOptionsFor(seed, overrides))
    } catch (err) {
      if (!(err instanceof MembershipSimError)) { throw err }
      failed++
      console.log(`${err.message.split('\n')[0]}\n  ${err.replay}`)
    }
  }
  console.log(`${count - failed}/${count} seeds passed in ${((performance.now() - began) / 1000).toFixed(1)} s`)
  if (failed > 0) { process.exitCode = 1 }
}
