/**
 * Replays anti-entropy simulator seeds (test/sim/gossip/run.ts).
 *
 * - `node test/sim/gossip/replay.ts --seed 42 [--verbose]`: one seed;
 * --verbose prints the whole trace.
 * - `node test/sim/gossip/replay.ts --seeds 1000 [--start 1]`: a sweep;
 * prints every failing seed with its replay command.
 * - `--overrides '{"lieRate":1}'` changes any GossipSimOptions setting.
 *
 * Exits non-zero if any seed failed.
 */
import { replayCli } from '../replay-cli.ts'
import { gossipOptionsFor, runGossipSim } from './run.ts'

replayCli({
  optionsFor: gossipOptionsFor,
  run: runGossipSim,
  describe: (result) => `${result.mode}, ${result.nodes} nodes: converged ${result.settleRounds.toFixed(1)} rounds after the heal; ` +
    `${result.messages} messages, ${result.tampered} tampered, ${result.forgedRefused} forged entries refused, ${result.versionRaises} version raises`,
  summarize: (results) => {
    const settle = results.map(r => r.settleRounds).sort((a, b) => a - b)
    const at = (p: number): string => settle.length === 0 ? '-' : settle[Math.min(settle.length - 1, Math.floor(p * settle.length))].toFixed(1)
    return `rounds to converge after the heal: p50 ${at(0.5)}, p99 ${at(0.99)}, max ${at(1)}`
  }
})
