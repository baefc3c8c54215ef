import { expect } from 'aegir/chai'
import { createRng } from '../../protocols/common/rng.ts'
import { RaftNode } from '../../protocols/raft/index.ts'
import { Cluster, drain, enc } from './raft-harness.ts'

const ABC = ['a', 'b', 'c']

describe('raft: leader election', () => {
  it('elects exactly one leader after randomized timeouts and appends an empty entry', () => {
    const c = new Cluster(ABC)
    c.tickUntil(() => c.leaders().length === 1)
    const leader = c.leaders()[0]
    const st = c.node(leader).status()
    expect(st.term).to.equal(2) // bootstrap term 1, first election term 2 (pre-vote does not bump)
    // 3 bootstrap conf entries + the leader's empty entry, all committed everywhere.
    expect(st.commit).to.equal(4)
    c.tick(3)
    for (const id of ABC) {
      expect(c.node(id).status().leader).to.equal(leader)
      expect(c.node(id).status().commit).to.equal(4)
    }
  })

  it('uses timeouts in [e, 2e): a follower never campaigns before electionTimeoutTicks', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const node = new RaftNode({ id: 'a', rng: createRng(seed), electionTimeoutTicks: 10 },
        { hardState: { term: 0, vote: null, commit: 0 }, entries: [] },
        { voters: ['a', 'b', 'c'], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false })
      drain(node)
      let ticks = 0
      while (node.status().role === 'follower') {
        node.tick()
        if (++ticks > 1000) { throw new Error('the follower never campaigned') }
      }
      expect(ticks).to.be.within(10, 19)
      expect(node.status().role).to.equal('pre-candidate')
      expect(drain(node).messages.map(m => m.type)).to.deep.equal(['pre-vote', 'pre-vote'])
    }
  })

  it('a single-voter cluster elects itself and commits alone', () => {
    const c = new Cluster(['solo'])
    c.elect('solo')
    c.propose('solo', 'x')
    expect(c.applied.get('solo')).to.deep.equal(['x'])
  })

  it('a candidate whose log is behind loses (§5.4.1) and steps back to follower', () => {
    const c = new Cluster(ABC, { config: { preVote: false, checkQuorum: false } })
    c.elect('a')
    c.propose('a', 'x')
    // c misses 'y' and campaigns at a higher term: a and b reject (log not up to date).
    c.crash('c')
    c.propose('a', 'y')
    c.restart('c')
    c.processReady('c')
    c.drop = m => m.type === 'append' || m.type === 'heartbeat' // keep c behind
    c.node('c').campaign()
    c.stabilize()
    // §5.4.1: both refuse a candidate whose log is behind theirs.
    const answers = c.sent.filter(m => m.type === 'vote-response' && m.to === 'c')
    expect(answers.map(m => [m.from, m.type === 'vote-response' && m.reject])).to.deep.equal([['a', true], ['b', true]])
    expect(c.node('c').status().role).to.equal('follower')
    expect(c.leaders()).to.deep.equal([]) // a stepped down on the higher term
    c.heal()
    c.tickUntil(() => c.leaders().length === 1)
    expect(c.leaders()[0]).to.not.equal('c')
  })

  it('pre-vote: a partitioned node rejoining does not disrupt a healthy leader', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    const term = c.node('a').status().term
    c.isolate('c')
    c.tick(50) // c pre-campaigns again and again without raising its term
    expect(c.node('c').status().term).to.equal(term)
    expect(c.node('c').status().role).to.equal('pre-candidate')
    c.heal()
    c.tick(5)
    expect(c.leaders()).to.deep.equal(['a'])
    expect(c.node('a').status().term).to.equal(term)
    expect(c.node('c').status().leader).to.equal('a')
  })

  it('without pre-vote the same rejoin disrupts the leader (the contrast)', () => {
    const c = new Cluster(ABC, { config: { preVote: false, checkQuorum: false } })
    c.elect('a')
    const term = c.node('a').status().term
    c.isolate('c')
    c.tick(50)
    expect(c.node('c').status().term).to.be.greaterThan(term + 1)
    c.heal()
    c.tick(30)
    expect(c.node('a').status().term).to.be.greaterThan(term)
  })

  it('check-quorum: a leader that loses its quorum steps down', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.isolate('a')
    // Only a ticks. The first check still sees the answers from before the
    // partition; the second finds no one.
    c.tick(10, ['a'])
    expect(c.node('a').status().role).to.equal('leader')
    c.tick(10, ['a'])
    expect(c.node('a').status().role).to.equal('follower')
    expect(c.node('a').status().leader).to.equal(null)
  })

  it('check-quorum: with checkQuorumTicks of two election timeouts, a leader steps down only after that long', () => {
    const c = new Cluster(ABC, { config: { checkQuorumTicks: 20 } })
    c.elect('a')
    c.isolate('a')
    // The check at 20 ticks still sees the answers from before the partition; the one at 40 finds no one.
    c.tick(39, ['a'])
    expect(c.node('a').status().role).to.equal('leader')
    c.tick(1, ['a'])
    expect(c.node('a').status().role).to.equal('follower')
  })

  it('check-quorum: checkQuorumTicks shorter than the election timeout is refused', () => {
    expect(() => new Cluster(ABC, { config: { checkQuorumTicks: 9 } })).to.throw(RangeError, /checkQuorumTicks/)
  })

  it('check-quorum: votes are ignored while in lease (a follower heard from the leader recently)', () => {
    const c = new Cluster(ABC, { config: { preVote: false } })
    c.elect('a')
    const term = c.node('a').status().term
    // b campaigns on its own (e.g. a spurious timeout): c and a are in lease and ignore it.
    c.node('b').campaign()
    c.stabilize()
    expect(c.node('b').status().role).to.equal('candidate')
    expect(c.node('a').status().role).to.equal('leader')
    expect(c.node('c').status().term).to.equal(term)
    expect(c.node('c').status().counters.ignoredMessages).to.be.greaterThan(0)
  })

  it('a stale leader learns the new term from its followers and steps down', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.isolate('a')
    // a new leader on the majority side; the isolated one steps down by check-quorum
    c.tickUntil(() => c.leaders().some(id => id !== 'a') && c.node('a').status().role === 'follower', 200)
    const newLeader = c.leaders().find(id => id !== 'a')!
    expect(c.node('a').status().term).to.be.below(c.node(newLeader).status().term)
    c.heal()
    c.tick(3)
    expect(c.leaders()).to.deep.equal([newLeader])
    expect(c.node('a').status().leader).to.equal(newLeader)
  })

  it('a stale leader without check-quorum is told the term by the followers it contacts', () => {
    const c = new Cluster(ABC, { config: { checkQuorum: false } })
    c.elect('a')
    c.isolate('a')
    c.elect('b')
    expect(c.leaders().sort()).to.deep.equal(['a', 'b'])
    c.heal()
    c.tick(1, ['a']) // a heartbeats at its old term; b/c answer with their term
    expect(c.node('a').status().role).to.equal('follower')
    expect(c.node('a').status().term).to.equal(c.node('b').status().term)
  })

  it('votes at most once per term and persists the vote before answering', () => {
    const node = new RaftNode({ id: 'c', rng: createRng(3), preVote: false },
      { hardState: { term: 0, vote: null, commit: 0 }, entries: [] },
      { voters: ['a', 'b', 'c'], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false })
    drain(node)
    node.step({ type: 'vote', from: 'a', to: 'c', term: 5, lastIndex: 3, lastTerm: 1, transfer: false })
    const rd = node.ready()
    expect(rd.hardState).to.deep.equal({ term: 5, vote: 'a', commit: 3 })
    expect(rd.mustSync).to.equal(true)
    expect(rd.messages).to.deep.equal([{ type: 'vote-response', from: 'c', to: 'a', term: 5, reject: false }])
    node.advance()
    node.step({ type: 'vote', from: 'b', to: 'c', term: 5, lastIndex: 9, lastTerm: 1, transfer: false })
    expect(drain(node).messages).to.deep.equal([{ type: 'vote-response', from: 'c', to: 'b', term: 5, reject: true }])
    // A repeated request from the same candidate is granted again (lost response).
    node.step({ type: 'vote', from: 'a', to: 'c', term: 5, lastIndex: 3, lastTerm: 1, transfer: false })
    expect(drain(node).messages[0]).to.include({ type: 'vote-response', reject: false })
  })

  it('a restarted node keeps its term and vote', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.propose('a', 'x')
    const before = c.node('b').status()
    c.crash('b')
    const b = c.restart('b')
    expect(b.status().term).to.equal(before.term)
    expect(b.status().vote).to.equal(before.vote)
    expect(b.status().commit).to.equal(before.commit)
    c.stabilize()
    c.tick(2)
    expect(c.applied.get('b')).to.deep.equal(['x'])
  })

  it('a restarted node does not campaign before re-applying committed conf changes', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.crash('b')
    const b = c.restart('b')
    // Committed conf entries (the bootstrap) are not applied yet: no membership, no campaign.
    expect(b.status().conf.voters).to.deep.equal([])
    b.campaign()
    expect(b.status().role).to.equal('follower')
    c.processReady('b')
    expect(b.status().conf.voters).to.deep.equal(ABC)
  })

  it('elects a leader with the most up-to-date log among a quorum (no lost commits)', () => {
    const c = new Cluster(['a', 'b', 'c', 'd', 'e'])
    c.elect('a')
    c.partition(['a', 'b', 'c'], ['d', 'e'])
    c.propose('a', 'x')
    c.crash('a')
    c.heal()
    c.tickUntil(() => c.leaders().length === 1, 300)
    const leader = c.leaders()[0]
    expect(['b', 'c']).to.include(leader)
    c.propose(leader, 'y')
    expect(c.applied.get('d')).to.deep.equal(['x', 'y'])
  })

  it('follower proposals are refused with the leader id', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    const result = c.node('b').propose(enc('x'))
    expect(result).to.deep.equal({ ok: false, reason: 'not-leader', leader: 'a' })
  })
})
