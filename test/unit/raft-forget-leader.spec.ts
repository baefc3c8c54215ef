import { expect } from 'aegir/chai'
import { Cluster } from './raft-harness.ts'

const ABC = ['a', 'b', 'c']
const ELECTION_TIMEOUT_TICKS = 10 // RAFT_DEFAULTS
const CAMPAIGN_TICKS_MAX = 3 // RAFT_DEFAULTS.forgottenLeaderCampaignTicksMax

describe('raft: forgetLeader (the leader\'s connection closed)', () => {
  it('followers told their leader crashed elect a new one within a few ticks, not an election timeout', () => {
    // ticks here are in lockstep on every node, so two followers often pick
    // the same tick and split the vote: the quick retry must still win soon
    const ticksBySeed: number[] = []
    for (let seed = 1; seed <= 30; seed++) {
      const c = new Cluster(ABC, { seed })
      c.elect('a')
      c.crash('a')
      c.node('b').forgetLeader('a')
      c.node('c').forgetLeader('a')
      c.stabilize()
      let ticks = 0
      while (!c.leaders().some(id => id !== 'a')) {
        c.tick(1, ['b', 'c'])
        ticks++
        expect(ticks, `seed ${seed}`).to.be.below(3 * ELECTION_TIMEOUT_TICKS)
      }
      ticksBySeed.push(ticks)
    }
    ticksBySeed.sort((x, y) => x - y)
    expect(ticksBySeed[Math.floor(ticksBySeed.length / 2)]).to.be.at.most(CAMPAIGN_TICKS_MAX)
    expect(ticksBySeed.filter(t => t < ELECTION_TIMEOUT_TICKS).length).to.be.at.least(27)
  })

  it('without the hint the same crash takes at least an election timeout (the contrast)', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.crash('a')
    let ticks = 0
    while (!c.leaders().some(id => id !== 'a')) {
      c.tick(1, ['b', 'c'])
      ticks++
    }
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
    let ticks = 0
    while (!c.leaders().some(id => id !== 'a')) {
      c.tick(1, ['b', 'c'])
      ticks++
    }
    expect(ticks).to.be.at.least(ELECTION_TIMEOUT_TICKS)
  })
})
