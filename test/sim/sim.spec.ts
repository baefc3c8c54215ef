import { expect } from 'aegir/chai'
import { SimDisk } from './disk.ts'
import { InvariantChecker, InvariantViolation } from './invariants.ts'
import { optionsFor } from './options.ts'
import { runSimulation, SimulationError } from './run.ts'
import type { SimOptions } from './options.ts'
import type { Entry, Message, Ready } from '../../protocols/raft/index.ts'

/**
 * The deterministic cluster simulator over fixed seed ranges. A failure
 * names every failing seed of its chunk and prints the first one's replay
 * command and trace tail; replay with `npm run sim -- --seed N --profile P`.
 * Longer sweeps: `npm run sim -- --seeds 10000 --profile P --jobs 2`.
 */
const RANGES: Array<{ profile: string, first: number, last: number }> = [
  { profile: 'network-3', first: 1, last: 120 },
  { profile: 'network-5', first: 1, last: 100 },
  { profile: 'crash-3', first: 1, last: 200 },
  { profile: 'crash-5', first: 1, last: 150 },
  { profile: 'membership-3', first: 1, last: 150 },
  { profile: 'membership-5', first: 1, last: 150 },
  { profile: 'lease-3', first: 1, last: 100 },
  { profile: 'lease-5', first: 1, last: 100 },
  { profile: 'random', first: 1, last: 200 }
]
const CHUNK_SEEDS = 25

describe('sim: seeded cluster runs', function () {
  this.timeout(120_000)
  for (const { profile, first, last } of RANGES) {
    for (let from = first; from <= last; from += CHUNK_SEEDS) {
      const to = Math.min(last, from + CHUNK_SEEDS - 1)
      it(`${profile}: seeds ${from}-${to} are safe, live and linearizable`, async () => {
        await runSeeds(profile, from, to)
      })
    }
  }
})

async function runSeeds (profile: string, from: number, to: number): Promise<void> {
  const failures: SimulationError[] = []
  for (let seed = from; seed <= to; seed++) {
    try {
      await runSimulation(optionsFor(seed, profile))
    } catch (err) {
      if (!(err instanceof SimulationError)) { throw err }
      failures.push(err)
    }
  }
  if (failures.length > 0) {
    const summary = failures.map(f => `  ${f.replay}  # ${f.kind}`).join('\n')
    throw new Error(`${failures.length} failing seed(s):\n${summary}\n\nfirst failure:\n${failures[0].message}`)
  }
}

describe('sim: determinism', function () {
  this.timeout(30_000)

  it('the same seed replays the identical trace and outcome', async () => {
    const options = optionsFor(7, 'membership-5', { fullTrace: true })
    const first = await runSimulation(options)
    const second = await runSimulation(options)
    expect(first.trace).to.have.length.greaterThan(1000)
    expect(second.trace).to.deep.equal(first.trace)
    expect(second).to.deep.equal(first)
  })

  it('the checkers observe the run (leaders, commits, applies, snapshots)', async () => {
    const { stats } = await runSimulation(optionsFor(3, 'crash-3'))
    for (const counter of ['leaders', 'commits', 'applies', 'snapshots', 'crashes']) {
      expect(stats[counter], counter).to.be.greaterThan(0)
    }
    expect(stats.applies).to.equal(stats.commits)
  })

  it('another seed gives another trace', async () => {
    const a = await runSimulation(optionsFor(7, 'crash-3', { fullTrace: true }))
    const b = await runSimulation(optionsFor(8, 'crash-3', { fullTrace: true }))
    expect(a.trace).to.not.deep.equal(b.trace)
  })
})

describe('sim: the checkers can fail', function () {
  this.timeout(60_000)

  it('a log store that reports writes durable before their fsync is caught, with seed and replay command', async () => {
    // Slow fsyncs widen the window in which a crash takes back acknowledged writes.
    const failure = await firstFailure(seed => optionsFor(seed, 'crash-3', { sabotage: 'ack-before-durable', fsyncMsMin: 20, fsyncMsMax: 60 }), 1, 60)
    expect(failure.kind).to.equal('safety')
    // a vote, an acknowledgement or an application of entries, whichever came first
    expect(failure.message).to.match(/durability: n\d (grants its vote to n\d in term \d+ but its disk holds term \d+, vote \S+|(acknowledges index \d+ to n\d \(term \d+\)|applies entry \d+) but its disk ends at \d+)/)
    const lines = failure.message.split('\n')
    expect(lines[0]).to.match(new RegExp(`^seed ${failure.seed} \\(profile crash-3, 3 nodes\\): safety: `))
    expect(lines[1]).to.equal(`replay: npm run sim -- --seed ${failure.seed} --profile crash-3 --sabotage ack-before-durable --overrides '{"fsyncMsMin":20,"fsyncMsMax":60}'`)
    // The last 50 events of the trace (fewer if the run failed early).
    const shown = Number(/^last (\d+) events:$/.exec(lines[2])?.[1])
    expect(shown).to.be.within(1, 50)
    expect(lines.slice(3)).to.have.length(shown)
  })

  it('reads served without ReadIndex are caught by the linearizability checker', async () => {
    const failure = await firstFailure(seed => optionsFor(seed, 'network-3', { sabotage: 'stale-reads' }), 1, 20)
    expect(failure.kind).to.equal('not-linearizable')
    expect(failure.message).to.include('not linearizable (key ')
  })

  it('a history the checker cannot decide within its budget is reported as checker-unknown, not as a pass', async () => {
    const failure = await firstFailure(seed => optionsFor(seed, 'network-3', { checkerStepsMax: 1 }), 1, 1)
    expect(failure.kind).to.equal('checker-unknown')
    expect(failure.message).to.include('step budget of 1 exhausted')
  })

  it('election safety: a second leader in the same term', () => {
    const checker = startedChecker()
    checker.observeReady('n1', ready({ softState: { role: 'leader', leader: 'n1' }, hardState: { term: 2, vote: 'n1', commit: 0 } }))
    expect(() => {
      checker.observeReady('n2', ready({ softState: { role: 'leader', leader: 'n2' }, hardState: { term: 2, vote: 'n2', commit: 0 } }))
    }).to.throw(InvariantViolation, 'election safety: n1 and n2 are both leaders of term 2')
  })

  it('log matching: two different entries at the same index and term', () => {
    const checker = startedChecker()
    checker.observeReady('n1', ready({ entries: [entry(1, 1, 'a')] }))
    expect(() => { checker.observeReady('n2', ready({ entries: [entry(1, 1, 'b')] })) }).to.throw(InvariantViolation, 'log matching')
  })

  it('log matching: the same entry after different histories', () => {
    const checker = startedChecker()
    checker.observeReady('n1', ready({ entries: [entry(1, 1, 'a'), entry(2, 3, 'x')] }))
    expect(() => {
      checker.observeReady('n2', ready({ entries: [entry(1, 2, 'b'), entry(2, 3, 'x')] }))
    }).to.throw(InvariantViolation, 'entry 2/3 follows term 2 on n2 but term 1 on n1')
  })

  it('leader completeness: a leader without a committed entry', () => {
    const checker = startedChecker()
    checker.observeReady('n1', ready({ entries: [entry(1, 1, 'a')], hardState: { term: 1, vote: 'n1', commit: 1 } }))
    expect(() => {
      checker.observeReady('n2', ready({ softState: { role: 'leader', leader: 'n2' }, hardState: { term: 2, vote: 'n2', commit: 0 }, entries: [entry(1, 2, '')] }))
    }).to.throw(InvariantViolation, 'leader completeness: n2 leads term 2')
  })

  it('durability: a vote granted before it is on disk', () => {
    const checker = startedChecker()
    const vote: Message = { type: 'vote-response', from: 'n1', to: 'n2', term: 2, reject: false }
    expect(() => { checker.observeSend(vote, { hardState: { term: 1, vote: null, commit: 0 }, entries: [] }) })
      .to.throw(InvariantViolation, 'durability: n1 grants its vote to n2 in term 2 but its disk holds term 1, vote -')
    expect(() => { checker.observeSend(vote, { hardState: { term: 2, vote: 'n2', commit: 0 }, entries: [] }) }).to.not.throw()
  })

  it('durability: entries acknowledged before they are on disk', () => {
    const checker = startedChecker()
    const ack: Message = { type: 'append-response', from: 'n1', to: 'n2', term: 1, index: 2, reject: false, rejectHint: 0, hintTerm: 0 }
    const durable = { hardState: { term: 1, vote: 'n2', commit: 0 }, entries: [entry(1, 1, 'a')] }
    expect(() => { checker.observeSend(ack, durable) }).to.throw(InvariantViolation, 'durability: n1 acknowledges index 2 to n2 (term 1) but its disk ends at 1')
    durable.entries.push(entry(2, 1, 'b'))
    expect(() => { checker.observeSend(ack, durable) }).to.not.throw()
  })

  it('state machine safety: two nodes apply different entries at one index', () => {
    const checker = startedChecker()
    checker.observeApply('n1', entry(1, 1, 'a'))
    expect(() => { checker.observeApply('n2', entry(1, 1, 'b')) }).to.throw(InvariantViolation, 'state machine safety')
  })

  it('state machine safety: a node skips an index', () => {
    const checker = startedChecker()
    expect(() => { checker.observeApply('n1', entry(2, 1, 'a')) }).to.throw(InvariantViolation, 'n1 applied entry 2 right after 0')
  })
})

describe('sim: disk model', () => {
  it('a crash loses the writes no fsync covered, and only those', () => {
    const disk = new SimDisk()
    const first = disk.write({ kind: 'ready', entries: [entry(1, 1, 'a')], hardState: { term: 1, vote: 'n1', commit: 0 } })
    disk.write({ kind: 'ready', entries: [entry(2, 1, 'b')] })
    disk.syncThrough(first)
    expect(disk.crash()).to.equal(1)
    expect(disk.durable.entries.map(e => e.index)).to.deep.equal([1])
    expect(disk.restoredState().hardState).to.deep.equal({ term: 1, vote: 'n1', commit: 0 })
  })

  it('a later write overwrites a conflicting suffix, and compaction drops what the snapshot covers', () => {
    const disk = new SimDisk()
    disk.write({ kind: 'ready', entries: [entry(1, 1, 'a'), entry(2, 1, 'b'), entry(3, 1, 'c')] })
    disk.write({ kind: 'ready', entries: [entry(2, 2, 'x')] })
    disk.write({ kind: 'compact', snapshot: { meta: { index: 1, term: 1, conf: { voters: ['n1'], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data: new Uint8Array() } })
    disk.syncThrough(disk.lastWrite)
    expect(disk.durable.entries.map(e => `${e.index}/${e.term}`)).to.deep.equal(['2/2'])
    expect(disk.durable.snapshot?.meta.index).to.equal(1)
  })
})

async function firstFailure (optionsForSeed: (seed: number) => SimOptions, from: number, to: number): Promise<SimulationError> {
  for (let seed = from; seed <= to; seed++) {
    try {
      await runSimulation(optionsForSeed(seed))
    } catch (err) {
      if (err instanceof SimulationError) { return err }
      throw err
    }
  }
  throw new Error(`no seed in ${from}-${to} failed`)
}

function startedChecker (): InvariantChecker {
  const checker = new InvariantChecker()
  for (const id of ['n1', 'n2', 'n3']) {
    checker.startNode(id, { hardState: { term: 0, vote: null, commit: 0 }, entries: [] })
  }
  return checker
}

function ready (fields: Partial<Ready>): Ready {
  return { entries: [], committedEntries: [], messages: [], readStates: [], mustSync: false, ...fields }
}

function entry (index: number, term: number, data: string): Entry {
  return { index, term, type: 'normal', data: new TextEncoder().encode(data) }
}
