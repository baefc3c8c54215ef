import { expect } from 'aegir/chai'
import { Cluster, dec, drain, enc } from './raft-harness.ts'
import type { HeartbeatMessage, HeartbeatResponseMessage } from '../../protocols/raft/index.ts'

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

  it('a follower learns the commit index its read waits for, though commits are not broadcast', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.propose('a', 'x')
    const a = c.node('a')
    // y reaches b and c; their acknowledgements are held back
    expect(a.propose(enc('y')).ok).to.equal(true)
    c.processReady('a')
    for (const m of c.queue.splice(0)) {
      c.deliver(m)
      c.processReady(m.to)
    }
    const acks = c.queue.splice(0)
    // a's own read opens a heartbeat round, not sent yet; then y commits
    expect(a.readIndex(enc('ra')).ok).to.equal(true)
    for (const m of acks) { c.deliver(m) }
    const yIndex = a.status().commit
    expect(c.node('b').status().commit).to.be.lessThan(yIndex)
    // b's read joins that round, whose heartbeats carry the older commit index
    expect(c.node('b').readIndex(enc('rb')).ok).to.equal(true)
    c.processReady('b')
    for (const m of c.queue.splice(0)) { c.deliver(m) }
    c.stabilize()
    expect(c.readStates.get('b')!.map(s => s.index)).to.deep.equal([yIndex])
    // no tick has passed, yet b can serve the read: it applied up to its index
    expect(c.node('b').status().commit).to.equal(yIndex)
    expect(c.applied.get('b')).to.deep.equal(['x', 'y'])
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

describe('raft: lease reads', () => {
  const LEASE = { readOnlyMode: 'lease' as const }

  it('an isolated leader stops answering lease reads before another leader can be elected', () => {
    const c = new Cluster(ABC, { seed: 2, config: LEASE })
    c.elect('a')
    c.propose('a', 'x')
    c.isolate('a')
    const a = c.node('a')
    let otherLeaderTick = -1
    for (let tick = 1; tick <= 60 && otherLeaderTick < 0; tick++) {
      c.tick()
      if (c.leaders().some(id => id !== 'a')) { otherLeaderTick = tick }
      if (a.status().role === 'leader') {
        a.readIndex(enc(`${tick}`))
        c.processReady('a')
      }
    }
    expect(otherLeaderTick, 'another leader was elected').to.be.greaterThan(0)
    expect(a.status().role, 'a still believes it leads').to.equal('leader')
    const answeredAt = c.readStates.get('a')!.map(s => Number(dec(s.requestCtx)))
    expect(answeredAt, 'the lease still served reads right after the cut').to.include(1)
    expect(Math.max(...answeredAt)).to.be.lessThan(otherLeaderTick)
    // Fewer than electionTimeoutTicks - 1 - leaseSafetyMarginTicks ticks after the last acknowledged heartbeat.
    expect(Math.max(...answeredAt)).to.be.lessThan(10 - 1 - 2)
  })

  it('measures the lease from when the heartbeat was sent, not from when its acknowledgement arrived', () => {
    const c = new Cluster(ABC, { config: LEASE })
    c.elect('a')
    const a = c.node('a')
    const held: HeartbeatResponseMessage[] = []
    c.drop = m => {
      if (m.type !== 'heartbeat-response') { return false }
      held.push(m)
      return true
    }
    c.tick(8, ['a']) // one heartbeat round per tick; the followers do not time out
    c.heal()
    // The acknowledgements of the first round arrive now, 8 ticks after it was sent.
    for (const m of held.filter(m => m.readRound === held[0].readRound)) { c.deliver(m) }
    a.readIndex(enc('late'))
    c.processReady('a')
    expect(c.readStates.get('a')).to.deep.equal([])
    // The newest round's acknowledgements renew the lease: the waiting read is answered.
    for (const m of held.slice(-2)) { c.deliver(m) }
    c.processReady('a')
    expect(c.readStates.get('a')!.map(s => dec(s.requestCtx))).to.deep.equal(['late'])
  })

  it('a leader without a lease falls back to confirming its leadership by a heartbeat round', () => {
    const c = new Cluster(ABC, { config: LEASE })
    c.elect('a')
    c.isolate('a')
    c.tick(9, ['a'])
    const a = c.node('a')
    a.readIndex(enc('r'))
    c.processReady('a')
    expect(c.readStates.get('a')).to.deep.equal([])
    c.heal()
    c.tick(1, ['a'])
    expect(c.readStates.get('a')!.map(s => [s.index, dec(s.requestCtx)])).to.deep.equal([[a.status().commit, 'r']])
  })

  it('a leader that sent MsgTimeoutNow serves no more lease reads in its term', () => {
    const c = new Cluster(ABC, { config: LEASE })
    c.elect('a')
    c.drop = m => m.type === 'timeout-now' // b never campaigns, a stays leader
    const a = c.node('a')
    expect(a.transferLeadership('b')).to.deep.equal({ ok: true })
    c.stabilize()
    a.readIndex(enc('r'))
    c.processReady('a')
    expect(c.readStates.get('a')).to.deep.equal([])
    c.tick(1, ['a']) // a heartbeat round sent after the read confirms it
    expect(c.readStates.get('a')!.map(s => dec(s.requestCtx))).to.deep.equal(['r'])
  })

  it('a restarted voter honours a lease it may have granted before the crash', () => {
    const c = new Cluster(ABC, { config: LEASE })
    c.elect('a')
    c.propose('a', 'x')
    c.drop = m => (m.from === 'a' && m.to === 'c') || (m.from === 'c' && m.to === 'a')
    c.tick(1)
    c.crash('b')
    c.restart('b')
    // c cannot hear a and campaigns at once; b forgot it acknowledged a's lease.
    c.node('c').campaign()
    c.stabilize()
    expect(c.leaders()).to.deep.equal(['a'])
    const a = c.node('a')
    a.readIndex(enc('r'))
    c.processReady('a')
    expect(c.readStates.get('a')!.map(s => dec(s.requestCtx))).to.deep.equal(['r'])
  })
})
