import { expect } from 'aegir/chai'
import { gossipOptionsFor, GossipSimError, runGossipSim } from './run.ts'
import type { GossipSimOptions, GossipSimResult } from './run.ts'

/**
 * The anti-entropy simulator over a fixed seed range (see run.ts for what a
 * run does and checks); the mode is the seed's (seed % 3: push-pull, push,
 * pull), so every chunk runs all three. A failure lists every failing seed
 * of its chunk with its replay command, and prints the first one's trace
 * tail. Longer sweeps: `node test/sim/gossip/replay.ts --seeds 10000`.
 */
const FIRST_SEED = 1
const LAST_SEED = 300
const CHUNK_SEEDS = 50

describe('sim: anti-entropy (Scuttlebutt) seeded runs', function () {
  this.timeout(120_000)
  for (let from = FIRST_SEED; from <= LAST_SEED; from += CHUNK_SEEDS) {
    const to = Math.min(LAST_SEED, from + CHUNK_SEEDS - 1)
    it(`seeds ${from}-${to}: every mode converges once partitions heal, and no forged entry is ever taken`, () => {
      const results = runSeeds(from, to)
      expect(new Set(results.map(r => r.mode)).size, 'modes run').to.equal(3)
      // The chunk exercised the liar and the restarts it claims to survive.
      expect(results.some(r => r.forgedRefused > 0), 'a liar\'s forgeries refused').to.equal(true)
      expect(results.some(r => r.versionRaises > 0), 'a restarted node raised its version').to.equal(true)
    })
  }
})

function runSeeds (from: number, to: number): GossipSimResult[] {
  const failures: GossipSimError[] = []
  const results: GossipSimResult[] = []
  for (let seed = from; seed <= to; seed++) {
    try {
      results.push(runGossipSim(gossipOptionsFor(seed)))
    } catch (err) {
      if (!(err instanceof GossipSimError)) { throw err }
      failures.push(err)
    }
  }
  if (failures.length > 0) {
    const summary = failures.map(f => `  seed ${f.seed} (${f.kind}): ${f.replay}`).join('\n')
    throw new Error(`${failures.length} failing seed(s):\n${summary}\n\nfirst failure:\n${failures[0].message}`)
  }
  return results
}

function failureKinds (from: number, to: number, overrides: Partial<GossipSimOptions>): string[] {
  const kinds: string[] = []
  for (let seed = from; seed <= to; seed++) {
    try {
      runGossipSim(gossipOptionsFor(seed, overrides))
    } catch (err) {
      if (!(err instanceof GossipSimError)) { throw err }
      expect(err.message).to.include(`seed ${seed}`)
      expect(err.message).to.include(err.replay)
      kinds.push(err.kind)
    }
  }
  return kinds
}

describe('sim: anti-entropy checks have teeth', function () {
  this.timeout(60_000)

  it('catches forged entries taken when signatures go unchecked', () => {
    const kinds = failureKinds(1, 12, { liar: true, acceptForgeries: true })
    expect(kinds.length).to.be.above(6)
    expect(kinds.every(k => k.startsWith('forged-entry'))).to.equal(true)
  })

  it('catches stores that have not converged', () => {
    const kinds = failureKinds(1, 6, { partitions: 1, partitionMsMax: 11_000, settleRoundsMax: 0 })
    expect(kinds).to.include('convergence')
  })

  it('replays a seed exactly', () => {
    const a = runGossipSim(gossipOptionsFor(7, { fullTrace: true }))
    const b = runGossipSim(gossipOptionsFor(7, { fullTrace: true }))
    expect(a.trace).to.not.equal(null)
    expect((a.trace ?? []).length).to.be.above(1000)
    expect(a.trace).to.deep.equal(b.trace)
  })
})
