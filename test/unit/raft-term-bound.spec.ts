import { expect } from 'aegir/chai'
import { COUNT_MAX, TERM_ADOPT_MAX } from '../../protocols/raft/index.ts'
import { Cluster } from './raft-harness.ts'

// Found by the protocol fuzzer (seed 20261203): one heartbeat at term 2^52
// moved a follower there, the leader followed, and nobody could campaign
// again (term + 1 fails validation) for good, since the term is durable.
describe('raft: terms near the largest a message may carry', () => {
  for (const term of [COUNT_MAX, TERM_ADOPT_MAX + 1]) {
    it(`a heartbeat at term ${term} is ignored, and the group still elects`, () => {
      const c = new Cluster(['a', 'b', 'c'], { seed: 1 })
      c.elect('a')
      const before = c.node('b').status().term
      const result = c.node('b').step({ type: 'heartbeat', from: 'a', to: 'b', term, commit: 0, readRound: 0 })
      expect(result.ok).to.equal(false)
      c.stabilize()
      expect(c.node('b').status().term).to.equal(before)
      // an election still works: hand leadership to c
      c.node('a').transferLeadership('c')
      c.stabilize()
      expect(c.leaders()).to.deep.equal(['c'])
      expect(c.node('c').status().term).to.equal(before + 1)
    })
  }

  it('a term at TERM_ADOPT_MAX is still adopted (the bound leaves 2^32 elections of headroom)', () => {
    const c = new Cluster(['a', 'b', 'c'], { seed: 1 })
    c.elect('a')
    c.node('b').step({ type: 'heartbeat', from: 'a', to: 'b', term: TERM_ADOPT_MAX, commit: 0, readRound: 0 })
    expect(c.node('b').status().term).to.equal(TERM_ADOPT_MAX)
    c.stabilize()
    // the leader stepped down on hearing the term; someone is elected above it
    for (let ticks = 0; ticks < 1000 && c.leaders().length === 0; ticks++) { c.tick(1) }
    expect(c.leaders()).to.have.length(1)
    expect(c.node(c.leaders()[0]).status().term).to.be.above(TERM_ADOPT_MAX)
  })
})
