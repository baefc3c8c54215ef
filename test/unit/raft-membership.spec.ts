import { expect } from 'aegir/chai'
import { decodeConfChange, RaftNode } from '../../protocols/raft/index.ts'
import { Cluster, enc } from './raft-harness.ts'

const ABC = ['a', 'b', 'c']

describe('raft: membership changes', () => {
  it('adds a learner that receives the log but neither votes nor counts toward quorum', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.propose('a', 'x')
    c.start('d') // a new, empty node: it learns everything from the leader
    const result = c.node('a').proposeConfChange({ changes: [{ type: 'add-learner', node: 'd' }] })
    expect(result.ok).to.equal(true)
    c.stabilize()
    c.tick(3)
    expect(c.node('a').status().conf.learners).to.deep.equal(['d'])
    expect(c.node('a').status().progress?.d).to.include({ isLearner: true })
    expect(c.applied.get('d')).to.deep.equal(['x'])
    // Quorum is still 2 of {a,b,c}: with b and c down nothing commits although d acks.
    c.crash('b')
    c.crash('c')
    const commit = c.node('a').status().commit
    c.node('a').propose(enc('y'))
    c.stabilize()
    expect(c.node('a').status().commit).to.equal(commit)
    // A learner never campaigns.
    c.tick(60, ['d'])
    expect(c.node('d').status().role).to.equal('follower')
    expect(c.sent.some(m => m.from === 'd' && (m.type === 'vote' || m.type === 'pre-vote'))).to.equal(false)
  })

  it('promotes a learner to voter', () => {
    const c = new Cluster(ABC, { learners: ['d'] })
    c.elect('a')
    expect(c.node('a').proposeConfChange({ changes: [{ type: 'promote', node: 'b' }] }))
      .to.deep.include({ ok: false, reason: 'invalid-conf-change' })
    expect(c.node('a').proposeConfChange({ changes: [{ type: 'promote', node: 'd' }] }).ok).to.equal(true)
    c.stabilize()
    c.tick(2)
    for (const id of ['a', 'b', 'c', 'd']) {
      expect(c.node(id).status().conf).to.deep.include({ voters: ['a', 'b', 'c', 'd'], learners: [] })
    }
    // Now quorum is 3 of 4: with c and d down, a and b cannot commit.
    c.crash('c')
    c.crash('d')
    const commit = c.node('a').status().commit
    c.node('a').propose(enc('y'))
    c.stabilize()
    expect(c.node('a').status().commit).to.equal(commit)
  })

  it('allows one pending conf change at a time', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.start('d')
    c.start('e')
    expect(c.node('a').proposeConfChange({ changes: [{ type: 'add-learner', node: 'd' }] }).ok).to.equal(true)
    expect(c.node('a').proposeConfChange({ changes: [{ type: 'add-learner', node: 'e' }] }))
      .to.deep.include({ ok: false, reason: 'conf-change-pending' })
    c.stabilize()
    expect(c.node('a').proposeConfChange({ changes: [{ type: 'add-learner', node: 'e' }] }).ok).to.equal(true)
  })

  it('refuses an invalid change and removing every voter', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    const bad = [
      { changes: [{ type: 'remove', node: 'a' }, { type: 'remove', node: 'b' }, { type: 'remove', node: 'c' }] },
      { changes: [] }, // leave joint while not joint
      { changes: [{ type: 'explode', node: 'a' }] },
      { changes: [{ type: 'add-voter', node: '' }] },
      { changes: 'nope' }
    ]
    for (const change of bad) {
      expect(c.node('a').proposeConfChange(change as any)).to.deep.include({ ok: false, reason: 'invalid-conf-change' })
    }
  })

  it('enters joint consensus for a multi-voter change and leaves it automatically', () => {
    const c = new Cluster(ABC, { learners: ['d', 'e'] })
    c.elect('a')
    // Keep d and e away: the joint entry commits under the old configuration, the leave entry cannot.
    c.drop = m => ['d', 'e'].includes(m.from) || ['d', 'e'].includes(m.to)
    const change = {
      changes: [
        { type: 'promote', node: 'd' }, { type: 'promote', node: 'e' },
        { type: 'remove', node: 'b' }, { type: 'remove', node: 'c' }
      ] as const
    }
    expect(c.node('a').proposeConfChange({ changes: [...change.changes] }).ok).to.equal(true)
    c.stabilize()
    const joint = c.node('a').status()
    expect(joint.conf).to.deep.equal({ voters: ['a', 'd', 'e'], votersOutgoing: ['a', 'b', 'c'], learners: [], learnersNext: [], autoLeave: true })
    // The leader proposed the leave entry itself; it needs a majority of BOTH halves.
    expect(joint.lastIndex).to.be.greaterThan(joint.commit)
    expect(c.node('a').proposeConfChange({ changes: [{ type: 'add-learner', node: 'f' }] }))
      .to.deep.include({ ok: false, reason: 'conf-change-pending' })
    c.heal()
    c.tick(3)
    for (const id of ['a', 'd', 'e']) {
      expect(c.node(id).status().conf).to.deep.equal({ voters: ['a', 'd', 'e'], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false })
    }
    const confEntries = c.disks.get('a')!.entries.filter(e => e.type === 'conf-change').map(e => decodeConfChange(e.data))
    expect(confEntries.at(-1)).to.deep.equal({ changes: [] })
    // The new configuration works without b and c.
    c.crash('b')
    c.crash('c')
    c.propose('a', 'after')
    expect(c.applied.get('d')).to.deep.equal(['after'])
  })

  it('a joint demotion stages the voter in learnersNext until the joint config is left', () => {
    const c = new Cluster(['a', 'b', 'c'], { learners: ['d'] })
    c.elect('a')
    // With b and d unreachable the joint entry commits under {a,b,c} (a, c) but the leave cannot under {a,b,d}.
    c.drop = m => ['b', 'd'].includes(m.to) || ['b', 'd'].includes(m.from)
    c.node('a').proposeConfChange({ changes: [{ type: 'promote', node: 'd' }, { type: 'add-learner', node: 'c' }], joint: true })
    c.stabilize()
    expect(c.node('a').status().conf).to.deep.include({ voters: ['a', 'b', 'd'], votersOutgoing: ['a', 'b', 'c'], learnersNext: ['c'] })
    c.heal()
    c.tick(3)
    expect(c.node('a').status().conf).to.deep.include({ voters: ['a', 'b', 'd'], votersOutgoing: [], learners: ['c'], learnersNext: [] })
  })

  it('removes a node that is down, and the smaller cluster keeps committing', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.crash('c')
    expect(c.node('a').proposeConfChange({ changes: [{ type: 'remove', node: 'c' }] }).ok).to.equal(true)
    c.stabilize()
    expect(c.node('a').status().conf.voters).to.deep.equal(['a', 'b'])
    expect(Object.keys(c.node('a').status().progress ?? {})).to.deep.equal(['a', 'b'])
    c.propose('a', 'x')
    expect(c.applied.get('b')).to.deep.equal(['x'])
  })

  it('a removed node cannot disrupt: its votes are ignored in lease, its responses as non-member', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.node('a').proposeConfChange({ changes: [{ type: 'remove', node: 'c' }] })
    c.stabilize()
    const b = c.node('b')
    const term = b.status().term
    const r = b.step({ type: 'vote', from: 'c', to: 'b', term: term + 5, lastIndex: 100, lastTerm: term, transfer: false })
    expect(r).to.deep.equal({ ok: false, reason: 'in-lease' })
    expect(b.status().term).to.equal(term)
    const r2 = c.node('a').step({ type: 'heartbeat-response', from: 'c', to: 'a', term, readRound: 0 })
    expect(r2).to.deep.equal({ ok: false, reason: 'not-a-member' })
  })

  it('a leader that removes itself stops taking proposals and hands over once the removal is applied', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    expect(c.node('a').proposeConfChange({ changes: [{ type: 'remove', node: 'a' }] }).ok).to.equal(true)
    // Nothing may follow the removal in the leader's log.
    expect(c.node('a').propose(enc('late'))).to.deep.include({ ok: false, reason: 'leaving' })
    c.stabilize()
    expect(c.sent.filter(m => m.type === 'timeout-now' && m.from === 'a')).to.have.length(1)
    expect(c.leaders()).to.have.length(1)
    expect(c.leaders()[0]).to.not.equal('a')
    expect(c.node('a').status().role).to.equal('follower')
    for (const id of ['b', 'c']) { expect(c.node(id).status().conf.voters).to.deep.equal(['b', 'c']) }
    const sentBefore = c.sent.length
    c.tick(40)
    expect(c.sent.slice(sentBefore).some(m => m.from === 'a' && (m.type === 'vote' || m.type === 'pre-vote'))).to.equal(false)
    c.propose(c.leaders()[0], 'x')
    expect(c.applied.get('b')).to.deep.equal(['x'])
  })

  it('a removed leader steps down even if its TimeoutNow is lost; the caught-up successor wins by timeout', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.drop = m => m.type === 'timeout-now'
    expect(c.node('a').proposeConfChange({ changes: [{ type: 'remove', node: 'a' }] }).ok).to.equal(true)
    c.stabilize()
    expect(c.node('a').status().role).to.equal('follower')
    const successor = c.node('a').status().leadTransferee ?? c.sent.find(m => m.type === 'timeout-now')!.to
    expect(c.node(successor).status().lastIndex).to.equal(c.node('a').status().lastIndex)
    c.heal()
    c.tickUntil(() => c.leaders().length === 1)
    expect(c.leaders()[0]).to.not.equal('a')
  })

  it('restarted nodes rebuild their membership from snapshot and log', () => {
    const c = new Cluster(ABC, { learners: ['d'] })
    c.elect('a')
    c.node('a').proposeConfChange({ changes: [{ type: 'promote', node: 'd' }] })
    c.stabilize()
    c.spreadCommit()
    c.compact('b')
    c.node('a').proposeConfChange({ changes: [{ type: 'remove', node: 'c' }] })
    c.stabilize()
    c.tick(2)
    c.crash('b')
    const b = c.restart('b')
    c.processReady('b')
    expect(b.status().conf.voters).to.deep.equal(['a', 'b', 'd'])
    // compact() recorded the membership as of the snapshot index, not the latest.
    expect(c.disks.get('b')!.snapshot!.meta.conf.voters).to.deep.equal(['a', 'b', 'c', 'd'])
  })

  it('unsafeForceNewCluster recovers the survivors when a quorum is permanently lost', () => {
    const ids = ['a', 'b', 'c', 'd', 'e']
    const c = new Cluster(ids)
    c.elect('a')
    c.propose('a', 'x')
    for (const id of ['c', 'd', 'e']) { c.crash(id) }
    c.node('a').propose(enc('lost')) // uncommitted: cannot reach a quorum
    c.stabilize()
    c.crash('a')
    c.crash('b')
    // Operator: recover from a's disk, wipe b, restart both.
    const disk = c.disks.get('a')!
    const recovered = RaftNode.unsafeForceNewCluster({ hardState: disk.hardState, entries: disk.entries }, { voters: ['a', 'b'] })
    expect(recovered.entries.at(-1)?.type).to.equal('conf-change')
    expect(recovered.hardState.commit).to.equal(recovered.entries.at(-1)?.index)
    c.disks.set('a', { hardState: recovered.hardState, entries: recovered.entries })
    c.restart('a')
    c.start('b')
    c.processReady('a')
    expect(c.node('a').status().conf.voters).to.deep.equal(['a', 'b'])
    c.tickUntil(() => c.leaders().length === 1)
    c.propose(c.leaders()[0], 'y')
    expect(c.applied.get('a')).to.deep.equal(['x', 'y'])
    expect(c.applied.get('b')).to.deep.equal(['x', 'y'])
    expect(() => RaftNode.unsafeForceNewCluster({ hardState: disk.hardState, entries: disk.entries }, { voters: [] })).to.throw(RangeError)
  })
})
