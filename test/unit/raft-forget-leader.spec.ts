import { expect } from 'aegir/chai'
import { Cluster } from './raft-harness.ts'

const ABC = ['a', 'b', 'c']
const ELECTION_TIMEOUT_TICKS = 10 // RAFT_DEFAULTS
const CAMPAIGN_TICKS_MAX = 3 // RAFT_DEFAULTS.forgottenLeaderCampaignTicksMax

/** Ticks b and c until one of them leads (a is down); bounded, so a regression fails rather than spins. */
function ticksUntilNewLeader (c: Cluster): number {
  for (let ticks = 0; ticks <= 1000; ticks++) {
    if (c.leaders().some(id => id !== 'a')) { return ticks }
    c.tick(1, ['b', 'c'])
  }
  throw new Error('no new leader within 1000 ticks')
}

/** b and c are told that a is gone, then both campaign in the same step. */
function bothLoseLeaderAndCampaign (c: Cluster): void {
  c.node('b').forgetLeader('a')
  c.node('c').forgetLeader('a')
  c.stabilize()
  c.node('b').campaign()
  c.node('c').campaign()
  c.stabilize()
}

describe('raft: forgetLeader (the leader\'s connection closed)', () => {
  it('followers told their leader crashed elect a new one within a few ticks, not an election timeout', () => {
    // ticks run in lockstep here, so both followers often campaign at the
    // same tick: the pre-vote tie-break keeps that from splitting the vote
    for (let seed = 1; seed <= 50; seed++) {
      const c = new Cluster(ABC, { seed })
      c.elect('a')
      c.crash('a')
      c.node('b').forgetLeader('a')
      c.node('c').forgetLeader('a')
      c.stabilize()
      const ticks = ticksUntilNewLeader(c)
      expect(ticks, `seed ${seed}`).to.be.at.most(CAMPAIGN_TICKS_MAX)
    }
  })

  it('two pre-candidates with the same log: the smaller id wins, without a split vote', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.crash('a')
    const term = c.node('b').status().term
    bothLoseLeaderAndCampaign(c)
    expect(c.leaders()).to.deep.equal(['b'])
    expect(c.node('b').status().term).to.equal(term + 1) // one election, no split
    expect(c.node('c').status().leader).to.equal('b')
  })

  it('a pre-candidate whose log is behind still grants the one ahead', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.partition(['a', 'c'], ['b']) // b misses the next entry
    c.propose('a', 'x')
    c.heal()
    c.crash('a')
    bothLoseLeaderAndCampaign(c)
    expect(c.leaders()).to.deep.equal(['c'])
  })

  it('without the hint the same crash takes at least an election timeout (the contrast)', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.crash('a')
    const ticks = ticksUntilNewLeader(c)
    expect(ticks).to.be.at.least(ELECTION_TIMEOUT_TICKS)
  })

  it('a wrong hint does not depose a live leader: the other follower, still in its lease, refuses the pre-vote', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    const term = c.node('a').status().term
    c.node('b').forgetLeader('a')
    expect(c.node('b').status().leader).to.equal(null)
    c.tick(CAMPAIGN_TICKS_MAX + 2)
    expect(c.leaders()).to.deep.equal(['a'])
    expect(c.node('a').status().term).to.equal(term)
    expect(c.node('b').status().leader).to.equal('a') // the next heartbeat brought it back
  })

  it('is ignored unless it names the leader this node follows', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.node('b').forgetLeader('c')
    expect(c.node('b').status().leader).to.equal('a')
    c.node('a').forgetLeader('a')
    expect(c.node('a').status().role).to.equal('leader')
  })

  it('is ignored in lease mode, whose reads rely on followers waiting out the election timeout', () => {
    const c = new Cluster(ABC, { config: { readOnlyMode: 'lease' } })
    c.elect('a')
    c.crash('a')
    c.node('b').forgetLeader('a')
    c.node('c').forgetLeader('a')
    expect(c.node('b').status().leader).to.equal('a')
    const ticks = ticksUntilNewLeader(c)
    expect(ticks).to.be.at.least(ELECTION_TIMEOUT_TICKS)
  })
})
