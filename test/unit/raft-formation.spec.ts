/**
 * Forming a Raft group with its whole initial cluster: the core's late
 * bootstrap (a founder that waits for its members), the driver's promotion
 * of learners in pairs (1 to 3 voters in one joint change, never through
 * 2), and the --initial-cluster setting.
 */
import { expect } from 'aegir/chai'
import { parseInitialCluster, resolveConfig } from '../../node/config.ts'
import { learnersToPromote, PROMOTIONS_MAX } from '../../node/raft/driver.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { RaftNode } from '../../protocols/raft/index.ts'
import { waitFor } from '../lib/wait.ts'
import { testDriver } from './raft-driver-helpers.ts'
import { Cluster } from './raft-harness.ts'
import type { RaftDriver } from '../../node/raft/driver.ts'
import type { ConfState, Message } from '../../protocols/raft/index.ts'

const EMPTY = { hardState: { term: 0, vote: null, commit: 0 }, entries: [] }
const votersConf = (voters: string[], learners: string[] = []): ConfState => ({ voters, votersOutgoing: [], learners, learnersNext: [], autoLeave: false })
const PEER_A = '12D3KooWCVxi1Y4PAaK923azKpsL3r9wU8tktK3SaCTFR2T3cRqd'
const PEER_B = '12D3KooWRFgcJvmnd7TKC6PVtpbyLLAFLKvEKb4YafEmEEFSvx49'

describe('raft formation: a late bootstrap in the core', () => {
  it('bootstraps a new node with the same committed entries as a bootstrapConf given at construction', () => {
    const atStart = new RaftNode({ id: 'a', rng: createRng(1) }, EMPTY, votersConf(['a', 'b', 'c']))
    const late = new RaftNode({ id: 'a', rng: createRng(1) }, EMPTY)
    expect(late.status().conf.voters).to.deep.equal([])
    expect(late.bootstrapNew(votersConf(['c', 'a', 'b']))).to.equal(true)
    const expected = atStart.ready()
    const got = late.ready()
    expect(got.entries).to.deep.equal(expected.entries)
    expect(got.committedEntries).to.deep.equal(expected.committedEntries)
    expect(got.hardState).to.deep.equal({ term: 1, vote: null, commit: 3 })
    expect(late.status().conf.voters).to.deep.equal(['a', 'b', 'c'])
  })

  it('forms a group of three voters whose members started empty: they learn the configuration from the founder', () => {
    const c = new Cluster([])
    for (const id of ['a', 'b', 'c']) { c.start(id) }
    expect(c.node('a').bootstrapNew(votersConf(['a', 'b', 'c']))).to.equal(true)
    c.tickUntil(() => c.leaders().length === 1)
    expect(c.leaders()).to.deep.equal(['a'])
    c.propose('a', 'first')
    c.stabilize()
    for (const id of ['a', 'b', 'c']) {
      expect(c.node(id).status().conf.voters, id).to.deep.equal(['a', 'b', 'c'])
      expect(c.applied.get(id), id).to.deep.equal(['first'])
    }
    // the founder down, the two others elect a leader and commit
    c.crash('a')
    c.tickUntil(() => c.leaders().some(id => id !== 'a'))
    const successor = c.leaders().find(id => id !== 'a')!
    c.propose(successor, 'second')
    c.stabilize()
    expect(c.applied.get(successor)).to.deep.equal(['first', 'second'])
  })

  it('refuses once the node holds a term (it heard of a group), and while a Ready is outstanding', () => {
    const node = new RaftNode({ id: 'b', rng: createRng(1) }, EMPTY)
    node.step({ type: 'heartbeat', from: 'x', to: 'b', term: 3, commit: 0, readRound: 0 } satisfies Message)
    expect(node.bootstrapNew(votersConf(['b', 'c', 'd']))).to.equal(false)
    expect(node.status()).to.deep.include({ term: 3, lastIndex: 0 })
    expect(node.status().conf.voters).to.deep.equal([])

    const other = new RaftNode({ id: 'b', rng: createRng(1) }, EMPTY)
    // a pre-vote answered: a Ready (its response) without a term of its own
    other.step({ type: 'pre-vote', from: 'x', to: 'b', term: 1, lastIndex: 5, lastTerm: 1, transfer: false } satisfies Message)
    const outstanding = other.ready()
    expect(outstanding.messages.map(m => m.type)).to.deep.equal(['pre-vote-response'])
    expect(other.bootstrapNew(votersConf(['b']))).to.equal(false)
    other.advance()
    expect(other.bootstrapNew(votersConf(['b']))).to.equal(true)
  })
})

describe('raft formation: a late bootstrap in the driver', () => {
  it('founds the group between two Readies and campaigns at once, once only', async () => {
    const sent: Message[] = []
    const driver = testDriver({
      id: 'a',
      outbox: { send: (_to, message) => { sent.push(message) } },
      // no election timeout runs out during the test: only bootstrap() campaigns
      electionTimeoutTicks: 1_000_000
    })
    driver.start()
    try {
      expect(await driver.bootstrap(votersConf(['a', 'b', 'c']))).to.equal(true)
      expect(driver.status().conf.voters).to.deep.equal(['a', 'b', 'c'])
      await waitFor(() => sent.filter(m => m.type === 'pre-vote').length === 2, 'pre-votes to b and c', 5000, 5)
      expect(await driver.bootstrap(votersConf(['a']))).to.equal(false)
      expect(driver.status().conf.voters).to.deep.equal(['a', 'b', 'c'])
    } finally {
      await driver.stop()
    }
  })
})

describe('raft formation: promoting learners', () => {
  it('keeps the voter count odd where it can', () => {
    // from one voter: two caught-up learners together (1 to 3)
    expect(learnersToPromote(1, ['b', 'c'], 2)).to.deep.equal(['b', 'c'])
    // a lone caught-up learner waits for another active one to catch up
    expect(learnersToPromote(1, ['b'], 2)).to.deep.equal([])
    // and is promoted alone when no other learner is active
    expect(learnersToPromote(1, ['b'], 1)).to.deep.equal(['b'])
    // from an even count one (2 to 3), from an odd one pairs (3 to 5)
    expect(learnersToPromote(2, ['b', 'c'], 2)).to.deep.equal(['b'])
    expect(learnersToPromote(3, ['b', 'c', 'd'], 3)).to.deep.equal(['b', 'c'])
    expect(learnersToPromote(3, [], 3)).to.deep.equal([])
    // at most PROMOTIONS_MAX in one change, still leaving the count odd
    const many = Array.from({ length: PROMOTIONS_MAX + 8 }, (_, i) => `l${i}`)
    expect(learnersToPromote(1, many, many.length)).to.deep.equal(many.slice(0, PROMOTIONS_MAX))
    expect(learnersToPromote(2, many, many.length)).to.deep.equal(many.slice(0, PROMOTIONS_MAX - 1))
  })

  it('grows a one-voter group to three voters in one joint change, never through two', async () => {
    const drivers = new Map<string, RaftDriver>()
    const voterCounts: number[] = []
    const create = (id: string, bootstrapConf?: ConfState): RaftDriver => testDriver({
      id,
      outbox: { send: (to, message) => { setImmediate(() => { drivers.get(to)?.step(message) }) } },
      bootstrapConf,
      autoPromoteLearners: id === 'a',
      observer: id === 'a' ? { ready: () => { voterCounts.push(drivers.get('a')?.status().conf.voters.length ?? 0) } } : undefined
    })
    drivers.set('a', create('a', votersConf(['a'], ['b', 'c'])))
    drivers.set('b', create('b'))
    drivers.set('c', create('c'))
    for (const driver of drivers.values()) { driver.start() }
    try {
      const a = drivers.get('a')!
      await waitFor(() => a.status().conf.voters.length === 3 && a.status().conf.votersOutgoing.length === 0, 'a, b and c to be voters', 10_000, 5)
      expect(a.status().conf.learners).to.deep.equal([])
      expect(voterCounts).to.include(1)
      expect(voterCounts, 'voter counts seen on the leader').to.not.include(2)
    } finally {
      await Promise.all([...drivers.values()].map(async d => { await d.stop() }))
    }
  })
})

describe('raft formation: --initial-cluster', () => {
  it('parses a count or a list of peer ids', () => {
    expect(parseInitialCluster(undefined)).to.equal(undefined)
    expect(parseInitialCluster('3')).to.equal(3)
    expect(parseInitialCluster(` ${PEER_A}, ${PEER_B} `)).to.deep.equal([PEER_A, PEER_B])
    expect(resolveConfig('/tmp/x', {}, { raftInitialCluster: 3 }).raftInitialCluster).to.equal(3)
    expect(resolveConfig('/tmp/x', {}, {}).raftInitialCluster).to.equal(null)
  })

  it('refuses a bad count, a bad peer id and a peer listed twice, with a clear error', () => {
    const bad = (value: number | string[]): () => unknown => () => resolveConfig('/tmp/x', {}, { raftInitialCluster: value })
    expect(bad(0)).to.throw(/--initial-cluster must be a count in 1\.\.1024 or a list of peer ids/)
    expect(bad(1025)).to.throw(/--initial-cluster must be a count/)
    expect(bad(2.5)).to.throw(/--initial-cluster must be a count/)
    expect(bad([])).to.throw(/--initial-cluster must be a count/)
    expect(bad(['nope'])).to.throw(/--initial-cluster: "nope" is not a peer id/)
    expect(bad([PEER_A, PEER_A])).to.throw(/--initial-cluster lists a peer twice/)
  })
})
