import { expect } from 'aegir/chai'
import { Cluster, enc } from './raft-harness.ts'

const ABC = ['a', 'b', 'c']

describe('raft: leadership transfer', () => {
  it('hands leadership to an up-to-date follower with MsgTimeoutNow, despite leases', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    const term = c.node('a').status().term
    expect(c.node('a').transferLeadership('b')).to.deep.equal({ ok: true })
    c.stabilize()
    expect(c.sent.filter(m => m.type === 'timeout-now').map(m => m.to)).to.deep.equal(['b'])
    expect(c.leaders()).to.deep.equal(['b'])
    expect(c.node('b').status().term).to.equal(term + 1)
    expect(c.node('a').status().leader).to.equal('b')
  })

  it('catches a lagging target up first and refuses proposals meanwhile', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.crash('c')
    c.propose('a', 'x')
    c.restart('c')
    c.drop = m => m.to === 'c' // c cannot catch up yet
    expect(c.node('a').transferLeadership('c').ok).to.equal(true)
    c.stabilize()
    expect(c.sent.some(m => m.type === 'timeout-now')).to.equal(false)
    expect(c.node('a').propose(enc('y'))).to.deep.include({ ok: false, reason: 'transferring', leader: 'a' })
    c.heal()
    c.tick(1)
    expect(c.leaders()).to.deep.equal(['c'])
    expect(c.applied.get('c')).to.deep.equal(['x'])
  })

  it('abandons a transfer after an election timeout and accepts proposals again', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.crash('c')
    c.propose('a', 'x')
    expect(c.node('a').transferLeadership('c').ok).to.equal(true)
    expect(c.node('a').status().leadTransferee).to.equal('c')
    c.tick(10, ['a', 'b'])
    expect(c.node('a').status().leadTransferee).to.equal(null)
    expect(c.leaders()).to.deep.equal(['a'])
    expect(c.node('a').propose(enc('y')).ok).to.equal(true)
  })

  it('refuses bad targets', () => {
    const c = new Cluster(ABC, { learners: ['d'] })
    c.elect('a')
    expect(c.node('a').transferLeadership('a')).to.deep.include({ ok: false, reason: 'self' })
    expect(c.node('a').transferLeadership('zz')).to.deep.include({ ok: false, reason: 'unknown-node' })
    expect(c.node('a').transferLeadership('d')).to.deep.include({ ok: false, reason: 'learner' })
    expect(c.node('b').transferLeadership('c')).to.deep.include({ ok: false, reason: 'not-leader', leader: 'a' })
  })

  it('ignores MsgTimeoutNow that does not come from the leader', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    const term = c.node('b').status().term
    expect(c.node('b').step({ type: 'timeout-now', from: 'c', to: 'b', term })).to.deep.equal({ ok: false, reason: 'not-from-leader' })
    expect(c.node('b').status().role).to.equal('follower')
  })
})
