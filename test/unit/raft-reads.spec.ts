import { expect } from 'aegir/chai'
import { Cluster, dec, drain, enc } from './raft-harness.ts'
import type { HeartbeatMessage } from '../../protocols/raft/index.ts'

const ABC = ['a', 'b', 'c']

describe('raft: linearizable reads', () => {
  it('ReadIndex on the leader answers after a quorum confirms leadership by heartbeat', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.propose('a', 'x')
    const a = c.node('a')
    expect(a.readIndex(enc('r1'))).to.deep.equal({ ok: true })
    const rd = a.ready()
    expect(rd.readStates).to.deep.equal([]) // not before the heartbeat round
    const heartbeats = rd.messages.filter((m): m is HeartbeatMessage => m.type === 'heartbeat')
    expect(heartbeats.map(m => m.to)).to.deep.equal(['b', 'c'])
    expect(heartbeats[0].readRound).to.be.greaterThan(0)
    a.advance()
    c.queue.push(...rd.messages)
    c.stabilize()
    const states = c.readStates.get('a')!
    expect(states.map(s => [s.index, dec(s.requestCtx)])).to.deep.equal([[a.status().commit, 'r1']])
  })

  it('reads made between two ready() calls share one heartbeat round', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    const a = c.node('a')
    for (const r of ['r1', 'r2', 'r3']) { a.readIndex(enc(r)) }
    const rd = a.ready()
    expect(rd.messages.filter(m => m.type === 'heartbeat')).to.have.length(2)
    a.advance()
    c.queue.push(...rd.messages)
    c.stabilize()
    expect(c.readStates.get('a')!.map(s => dec(s.requestCtx))).to.deep.equal(['r1', 'r2', 'r3'])
  })

  it('a leader that cannot reach a quorum never answers a safe read', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.isolate('a')
    c.node('a').readIndex(enc('r'))
    c.tick(5, ['a'])
    expect(c.readStates.get('a')).to.deep.equal([])
    expect(c.node('a').status().pendingReads).to.equal(1)
    c.tick(20, ['a']) // check-quorum: it steps down and drops the read
    expect(c.node('a').status().role).to.equal('follower')
    expect(c.node('a').status().pendingReads).to.equal(0)
    expect(c.node('a').status().counters.readsDropped).to.equal(1)
  })

  it('a new leader defers reads until it has committed an entry of its term', () => {
    const c = new Cluster(ABC)
    c.node('a').campaign()
    c.processAllReady()
    for (let i = 0; i < 4; i++) { c.deliverRound() } // pre-votes, their answers, votes, their answers
    const a = c.node('a')
    expect(a.status().role).to.equal('leader')
    const inTerm = a.status().lastIndex
    expect(a.status().commit).to.be.lessThan(inTerm)
    a.readIndex(enc('early'))
    expect(a.status().pendingReads).to.equal(1)
    c.stabilize()
    const [state] = c.readStates.get('a')!
    expect(state.index).to.be.at.least(inTerm)
  })

  it('a follower forwards ReadIndex to the leader and gets the read state back', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.propose('a', 'x')
    expect(c.node('b').readIndex(enc('fr'))).to.deep.equal({ ok: true })
    c.stabilize()
    expect(c.sent.filter(m => m.type === 'read-index').map(m => [m.from, m.to])).to.deep.equal([['b', 'a']])
    const states = c.readStates.get('b')!
    expect(states.map(s => [s.index, dec(s.requestCtx)])).to.deep.equal([[c.node('a').status().commit, 'fr']])
  })

  it('a node without a leader refuses reads', () => {
    const c = new Cluster(ABC)
    expect(c.node('b').readIndex(enc('r'))).to.deep.equal({ ok: false, reason: 'no-leader', leader: null })
  })

  it('lease reads are answered at once, without a heartbeat round', () => {
    const c = new Cluster(ABC, { config: { readOnlyMode: 'lease' } })
    c.elect('a')
    const a = c.node('a')
    a.readIndex(enc('lease'))
    const out = drain(a)
    expect(out.messages.filter(m => m.type === 'heartbeat')).to.deep.equal([])
    expect(out.readStates.map(s => dec(s.requestCtx))).to.deep.equal(['lease'])
  })

  it('a single-voter cluster answers reads at once', () => {
    const c = new Cluster(['solo'])
    c.elect('solo')
    c.node('solo').readIndex(enc('r'))
    c.stabilize()
    expect(c.readStates.get('solo')).to.have.length(1)
  })

  it('bounds pending reads by readIndexQueueMax, locally and for forwarded requests', () => {
    const c = new Cluster(ABC, { config: { readIndexQueueMax: 3 } })
    c.elect('a')
    c.isolate('a') // no acks: reads stay pending
    const a = c.node('a')
    for (let i = 0; i < 3; i++) { expect(a.readIndex(enc(`r${i}`)).ok).to.equal(true) }
    expect(a.readIndex(enc('r3'))).to.deep.equal({ ok: false, reason: 'busy', leader: 'a' })
    const term = a.status().term
    expect(a.step({ type: 'read-index', from: 'b', to: 'a', term, context: enc('remote') }))
      .to.deep.equal({ ok: false, reason: 'read-queue-full' })
    expect(a.status().counters.readsDropped).to.equal(2)
  })

  it('bounds unconsumed read states on a follower', () => {
    const c = new Cluster(ABC, { config: { readIndexQueueMax: 2 } })
    c.elect('a')
    const b = c.node('b')
    const term = b.status().term
    for (let i = 0; i < 5; i++) { b.step({ type: 'read-index-response', from: 'a', to: 'b', term, index: 1, context: enc(`${i}`) }) }
    expect(b.ready().readStates).to.have.length(2)
    b.advance()
    expect(b.status().counters.readsDropped).to.equal(3)
  })
})
