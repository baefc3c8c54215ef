import { expect } from 'aegir/chai'
import { createRng } from '../../protocols/common/rng.ts'
import { CONF_MEMBERS_MAX, encodeConfChange, RaftNode } from '../../protocols/raft/index.ts'
import { readies } from './raft-harness.ts'
import type { ConfChange, ConfState, Entry, NodeId, RestoredState } from '../../protocols/raft/index.ts'

const EMPTY: RestoredState = { hardState: { term: 0, vote: null, commit: 0 }, entries: [] }
const learnerIds = (count: number, prefix = 'l'): NodeId[] => Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(4, '0')}`)

/** 'a', the one voter, leading a group with `learners` learners; every Ready persisted into `disk`. */
function leaderWith (learners: NodeId[], disk: { entries: Entry[] } = { entries: [] }): RaftNode {
  const conf: ConfState = { voters: ['a'], votersOutgoing: [], learners, learnersNext: [], autoLeave: false }
  const node = new RaftNode({ id: 'a', rng: createRng(3) }, EMPTY, conf)
  node.campaign()
  settle(node, disk)
  expect(node.status().role).to.equal('leader')
  return node
}

function settle (node: RaftNode, disk: { entries: Entry[] } = { entries: [] }): void {
  for (const ready of readies(node)) {
    if (ready.entries.length > 0) {
      disk.entries = [...disk.entries.filter(e => e.index < ready.entries[0].index), ...ready.entries]
    }
  }
}

const members = (conf: ConfState): number => new Set([...conf.voters, ...conf.votersOutgoing, ...conf.learners]).size

describe(`raft: a configuration holds at most CONF_MEMBERS_MAX (${CONF_MEMBERS_MAX}) members`, () => {
  it('a configuration at the cap refuses one more member at proposal, and takes one once another left', () => {
    const node = leaderWith(learnerIds(CONF_MEMBERS_MAX - 1))
    expect(members(node.status().conf)).to.equal(CONF_MEMBERS_MAX)
    const refused = node.proposeConfChange({ changes: [{ type: 'add-learner', node: 'x' }] })
    expect(refused).to.deep.include({ ok: false, reason: 'too-many-members' })
    expect(refused.ok === false && refused.detail).to.equal(`the configuration would have ${CONF_MEMBERS_MAX + 1} members, more than CONF_MEMBERS_MAX (${CONF_MEMBERS_MAX})`)
    // a change that does not grow it is fine
    expect(node.proposeConfChange({ changes: [{ type: 'remove', node: 'l0001' }] })).to.deep.include({ ok: true })
    settle(node)
    expect(node.proposeConfChange({ changes: [{ type: 'add-learner', node: 'x' }] })).to.deep.include({ ok: true })
    settle(node)
    expect(members(node.status().conf)).to.equal(CONF_MEMBERS_MAX)
    expect(node.status().conf.learners).to.include('x')
    expect(node.proposeConfChange({ changes: [{ type: 'add-learner', node: 'y' }] })).to.deep.include({ ok: false, reason: 'too-many-members' })
  })

  it('counts every list together: a joint change or one that adds 64 at once may not cross the cap either', () => {
    const node = leaderWith(learnerIds(CONF_MEMBERS_MAX - 20))
    const many: ConfChange = { changes: learnerIds(64, 'n').map(id => ({ type: 'add-learner', node: id })) }
    expect(node.proposeConfChange(many)).to.deep.include({ ok: false, reason: 'too-many-members' })
    const joint: ConfChange = { changes: [...learnerIds(19, 'v').map(id => ({ type: 'add-voter' as const, node: id })), { type: 'add-voter', node: 'w' }] }
    expect(node.proposeConfChange(joint)).to.deep.include({ ok: false, reason: 'too-many-members' })
    expect(node.proposeConfChange({ changes: joint.changes.slice(1) })).to.deep.include({ ok: true })
  })

  it('a group at the cap snapshots and restarts from its snapshot', () => {
    const disk: { entries: Entry[] } = { entries: [] }
    const node = leaderWith(learnerIds(CONF_MEMBERS_MAX - 1), disk)
    const status = node.status()
    const snapshot = node.compact(status.applied, new TextEncoder().encode('state'))
    expect(snapshot).to.not.equal(null)
    if (snapshot === null) { return }
    expect(members(snapshot.meta.conf)).to.equal(CONF_MEMBERS_MAX)
    const restarted = new RaftNode({ id: 'a', rng: createRng(4) }, {
      hardState: { term: status.term, vote: status.vote, commit: status.commit },
      snapshot,
      entries: disk.entries.filter(e => e.index > snapshot.meta.index)
    })
    expect(members(restarted.status().conf)).to.equal(CONF_MEMBERS_MAX)
    // and so does force-new-cluster's rewrite of it
    const forced = RaftNode.unsafeForceNewCluster({ hardState: { term: status.term, vote: status.vote, commit: status.commit }, snapshot, entries: [] }, { voters: ['a'] })
    expect(() => new RaftNode({ id: 'a', rng: createRng(5) }, forced)).to.not.throw()
  })

  it('skips, on every node alike, a committed conf change that would cross the cap (written by a leader that did not check)', () => {
    const conf: ConfState = { voters: ['a', 'b'], votersOutgoing: [], learners: learnerIds(CONF_MEMBERS_MAX - 2), learnersNext: [], autoLeave: false }
    const snapshot = { meta: { index: 5, term: 1, conf }, data: new Uint8Array(0) }
    const node = new RaftNode({ id: 'b', rng: createRng(6) }, { hardState: { term: 1, vote: null, commit: 5 }, snapshot, entries: [] })
    const entry: Entry = { index: 6, term: 1, type: 'conf-change', data: encodeConfChange({ changes: [{ type: 'add-learner', node: 'x' }] }) }
    expect(node.step({ type: 'append', from: 'a', to: 'b', term: 1, prevIndex: 5, prevTerm: 1, entries: [entry], commit: 6 })).to.deep.equal({ ok: true })
    const applied = readies(node).flatMap(r => r.committedEntries)
    expect(applied.map(e => e.index)).to.deep.equal([6])
    expect(node.status().counters.confChangesSkipped).to.equal(1)
    expect(members(node.status().conf)).to.equal(CONF_MEMBERS_MAX)
    expect(node.status().conf.learners).to.not.include('x')
  })

  it('refuses to bootstrap or force a configuration above the cap', () => {
    const conf: ConfState = { voters: ['a'], votersOutgoing: [], learners: learnerIds(CONF_MEMBERS_MAX), learnersNext: [], autoLeave: false }
    expect(() => new RaftNode({ id: 'a', rng: createRng(1) }, EMPTY, conf)).to.throw(RangeError, /CONF_MEMBERS_MAX/)
    const restored: RestoredState = { hardState: { term: 1, vote: null, commit: 0 }, entries: [] }
    expect(() => RaftNode.unsafeForceNewCluster(restored, { voters: ['a'], learners: learnerIds(CONF_MEMBERS_MAX) })).to.throw(RangeError, /CONF_MEMBERS_MAX/)
  })
})
