import { expect } from 'aegir/chai'
import { createRng } from '../../protocols/common/rng.ts'
import { RaftNode } from '../../protocols/raft/index.ts'
import { enc, readies } from './raft-harness.ts'
import type { ConfState, Message, Snapshot, SnapshotMessage } from '../../protocols/raft/index.ts'

const conf: ConfState = { voters: ['a', 'b'], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }

/** Follower 'b' of a two-voter group after its bootstrap (term 1, commit 2), with the given snapshot check. */
function follower (checkSnapshot?: (snapshot: Snapshot) => string | null): RaftNode {
  const node = new RaftNode({ id: 'b', rng: createRng(7), checkSnapshot }, { hardState: { term: 0, vote: null, commit: 0 }, entries: [] }, conf)
  readies(node)
  return node
}

const snapshotMessage = (term: number, index: number, data = enc('64 bytes of garbage')): SnapshotMessage =>
  ({ type: 'snapshot', from: 'a', to: 'b', term, snapshot: { meta: { index, term: term - 1, conf }, data } })

describe('raft: checkSnapshot (the data of a snapshot from the leader is checked before anything happens)', () => {
  it('drops a snapshot the check refuses, whole: no term change, nothing to persist or send, and counts it', () => {
    const seen: Snapshot[] = []
    const node = follower(snapshot => { seen.push(snapshot); return 'not a KV snapshot (bad magic)' })
    const before = node.status()
    const message = snapshotMessage(before.term + 4, 16)
    expect(node.step(message)).to.deep.equal({ ok: false, reason: 'invalid-snapshot', detail: 'not a KV snapshot (bad magic)' })
    expect(seen.map(s => s.data)).to.deep.equal([message.snapshot.data])
    const after = node.status()
    expect(after.term, 'the term stays').to.equal(before.term)
    expect(after.leader).to.equal(before.leader)
    expect(after.commit).to.equal(before.commit)
    expect(after.counters.snapshotsRejected).to.equal(1)
    expect(node.hasReady(), 'nothing to persist, send or apply').to.equal(false)
  })

  it('installs a snapshot the check accepts, at its term', () => {
    const node = follower(() => null)
    const message = snapshotMessage(5, 16)
    expect(node.step(message)).to.deep.equal({ ok: true })
    const [ready] = readies(node)
    expect(ready.snapshot?.meta.index).to.equal(16)
    expect(ready.hardState?.term).to.equal(5)
    expect(node.status()).to.deep.include({ term: 5, commit: 16, leader: 'a' })
    expect(node.status().counters.snapshotsRejected).to.equal(0)
  })

  it('does not ask about a snapshot it would not install (at or below its commit index): it only answers it', () => {
    let asked = 0
    const node = follower(() => { asked++; return 'refused' })
    expect(node.step(snapshotMessage(3, 2))).to.deep.equal({ ok: true })
    expect(asked).to.equal(0)
    const sent: Message[] = readies(node).flatMap(r => r.messages)
    expect(sent).to.deep.include({ type: 'append-response', from: 'b', to: 'a', term: 3, index: 2, reject: false, rejectHint: 0, hintTerm: 0 })
  })

  it('refuses a check that is not a function', () => {
    expect(() => new RaftNode({ id: 'b', rng: createRng(1), checkSnapshot: 'yes' as unknown as () => null }, { hardState: { term: 0, vote: null, commit: 0 }, entries: [] }))
      .to.throw(RangeError, /checkSnapshot/)
  })
})
