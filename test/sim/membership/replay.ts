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
import { replayCli } from '../replay-cli.ts'
import { membershipOptionsFor, runMembershipSim } from './run.ts'

replayCli({
  optionsFor: membershipOptionsFor,
  run: runMembershipSim,
  describe: (result) => `settled ${result.settleMs} ms after the faults; ${result.messages} messages, ${result.refutations} refutations`
})
