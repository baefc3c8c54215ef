import { expect } from 'aegir/chai'
import { membershipOptionsFor, MembershipSimError, runMembershipSim } from './run.ts'
import type { MembershipSimOptions } from './run.ts'

/**
 * The membership simulator over a fixed seed range (see run.ts for what a
 * run does and checks). A failure lists every failing seed of its chunk with
 * its replay command, and prints the first one's trace tail. Longer sweeps:
 * `node test/sim/membership/replay.ts --seeds 10000`.
 */
const FIRST_SEED = 1
const LAST_SEED = 400
const CHUNK_SEEDS = 50

describe('sim: membership (SWIM + Lifeguard) seeded runs', function () {
  this.timeout(120_000)
  for (let from = FIRST_SEED; from <= LAST_SEED; from += CHUNK_SEEDS) {
    const to = Math.min(LAST_SEED, from + CHUNK_SEEDS - 1)
    it(`seeds ${from}-${to}: crashed members die everywhere, slow ones survive, partitions heal into one view`, () => {
      runSeeds(from, to)
    })
  }

  it('seeds 1-100 with the gossip topic (cluster.ts): the same verdict when what the cores publish also reaches everyone at once', () => {
    const topic = { latencyMs: 50, fanout: 6 }
    try {
      runSeeds(1, 100, { topic })
    } catch (err) {
      throw new Error(`${(err as Error).message}\n(replay with --overrides '${JSON.stringify({ topic })}')`)
    }
  })
})

function runSeeds (from: number, to: number, overrides: Partial<MembershipSimOptions> = {}): void {
  const failures: MembershipSimError[] = []
  for (let seed = from; seed <= to; seed++) {
    try {
      runMembershipSim(membershipOptionsFor(seed, overrides))
    } catch (err) {
      if (!(err instanceof MembershipSimError)) { throw err }
      failures.push(err)
    }
  }
  if (failures.length > 0) {
    const summary = failures.map(f => `  seed ${f.seed} (${f.kind}): ${f.replay}`).join('\n')
    throw new Error(`${failures.length} failing seed(s):\n${summary}\n\nfirst failure:\n${failures[0].message}`)
  }
}

function failureKinds (from: number, to: number, overrides: Partial<MembershipSimOptions>): string[] {
  const kinds: string[] = []
  for (let seed = from; seed <= to; seed++) {
    try {
      runMembershipSim(membershipOptionsFor(seed, overrides))
    } catch (err) {
      if (!(err instanceof MembershipSimError)) { throw err }
      expect(err.message).to.include(`seed ${seed}`)
      expect(err.message).to.include(err.replay)
      kinds.push(err.kind)
    }
  }
  return kinds
}

describe('sim: membership checks have teeth', function () {
  this.timeout(60_000)

  it('catches slow members killed by a suspicion timeout shorter than their slowness', () => {
    const kinds = failureKinds(1, 20, {
      slowMsMin: 500,
      slowMsMax: 600,
      config: { suspicionMult: 1, suspicionMaxTimeoutMult: 1, notifySuspect: false }
    })
    expect(kinds).to.include('slow-member-dead')
  })

  it('catches crashed members that are never declared dead', () => {
    const kinds = failureKinds(1, 3, { settleMsMax: 5000, partition: false, config: { suspicionMult: 1000 } })
    expect(kinds).to.deep.equal(['convergence', 'convergence', 'convergence'])
  })

  it('replays a seed exactly', () => {
    const a = runMembershipSim(membershipOptionsFor(7, { fullTrace: true }))
    const b = runMembershipSim(membershipOptionsFor(7, { fullTrace: true }))
    expect(a.trace).to.not.equal(null)
    expect((a.trace ?? []).length).to.be.above(1000)
    expect(a.trace).to.deep.equal(b.trace)
  })
})
