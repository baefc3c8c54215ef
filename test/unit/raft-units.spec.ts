import { expect } from 'aegir/chai'
import { AssertionError } from '../../protocols/common/assert.ts'
import { RaftLog } from '../../protocols/raft/log.ts'
import { applyConfChange, decodeConfChange, encodeConfChange, Membership } from '../../protocols/raft/membership.ts'
import { Inflights, Progress } from '../../protocols/raft/progress.ts'
import { jointValue, jointVoteResult, majorityValue, majorityVoteResult } from '../../protocols/raft/quorum.ts'
import type { ConfChange, Entry } from '../../protocols/raft/index.ts'

const set = (...ids: string[]): Set<string> => new Set(ids)
const entries = (terms: number[], from = 1): Entry[] =>
  terms.map((term, i) => ({ term, index: from + i, type: 'normal', data: new Uint8Array(0) }))

describe('raft/quorum', () => {
  it('computes the value a majority reached', () => {
    const match = new Map([['a', 5], ['b', 3], ['c', 9], ['d', 1], ['e', 7]])
    expect(majorityValue(set('a', 'b', 'c'), id => match.get(id)!)).to.equal(5)
    expect(majorityValue(set('a', 'b', 'c', 'd'), id => match.get(id)!)).to.equal(3)
    expect(majorityValue(set('a', 'b', 'c', 'd', 'e'), id => match.get(id)!)).to.equal(5)
    expect(majorityValue(set(), () => 0)).to.equal(Number.POSITIVE_INFINITY)
    // Joint: the smaller of the two halves.
    expect(jointValue(set('a', 'b', 'c'), set('c', 'd', 'e'), id => match.get(id)!)).to.equal(5)
    expect(jointValue(set('a', 'b', 'c'), set('b', 'd'), id => match.get(id)!)).to.equal(1)
  })

  it('decides elections in simple and joint configurations', () => {
    const votes = new Map([['a', true], ['b', false]])
    expect(majorityVoteResult(set('a', 'b', 'c'), votes)).to.equal('pending')
    expect(majorityVoteResult(set('a', 'b', 'c'), new Map([...votes, ['c', true]]))).to.equal('won')
    expect(majorityVoteResult(set('a', 'b', 'c'), new Map([...votes, ['c', false]]))).to.equal('lost')
    expect(majorityVoteResult(set(), votes)).to.equal('won')
    const all = new Map([['a', true], ['b', true], ['c', true], ['d', false], ['e', false]])
    expect(jointVoteResult(set('a', 'b', 'c'), set('c', 'd', 'e'), all)).to.equal('lost')
    expect(jointVoteResult(set('a', 'b', 'c'), set('a', 'b', 'd'), all)).to.equal('won')
    expect(jointVoteResult(set('a', 'b', 'c'), set('c', 'd', 'f'), new Map([['a', true], ['b', true], ['c', true]]))).to.equal('pending')
  })
})

describe('raft/inflights and progress', () => {
  it('bounds the window by count and bytes and frees acknowledged messages', () => {
    const w = new Inflights(3, 100)
    w.add(1, 10)
    w.add(2, 10)
    expect(w.full()).to.equal(false)
    w.add(5, 10)
    expect(w.full()).to.equal(true)
    expect(() => w.add(6, 1)).to.throw(AssertionError)
    w.freeLE(2)
    expect(w.length).to.equal(1)
    w.add(7, 95)
    expect(w.full()).to.equal(true) // 105 bytes >= 100
    w.freeFirstOne()
    expect([w.length, w.inflightBytes]).to.deep.equal([1, 95])
    // Wraps around the ring.
    w.freeLE(100)
    for (let i = 10; i < 13; i++) { w.add(i, 1) }
    w.freeLE(11)
    w.add(13, 1)
    expect(w.length).to.equal(2)
  })

  it('moves between probe, replicate and snapshot', () => {
    const pr = new Progress(10, false, new Inflights(4, 1000), false)
    expect(pr.state).to.equal('probe')
    pr.sentEntries(2, 11, 0)
    expect(pr.isPaused()).to.equal(true) // one probe at a time
    expect(pr.maybeDecrTo(8, 5)).to.equal(false) // stale: not the probe we sent
    expect(pr.maybeDecrTo(9, 5)).to.equal(true)
    expect(pr.next).to.equal(6)
    expect(pr.isPaused()).to.equal(false)
    expect(pr.maybeUpdate(7)).to.equal(true)
    pr.becomeReplicate()
    expect(pr.next).to.equal(8)
    for (let i = 0; i < 4; i++) { pr.sentEntries(1, 8 + i, 1) }
    expect(pr.isPaused()).to.equal(true)
    expect(pr.maybeDecrTo(7, 0)).to.equal(false) // below match: stale
    expect(pr.maybeDecrTo(9, 0)).to.equal(true)
    expect(pr.next).to.equal(8)
    pr.becomeSnapshot(50)
    expect(pr.isPaused()).to.equal(true)
    pr.becomeProbe()
    expect(pr.next).to.equal(51) // probe after the snapshot
  })
})

describe('raft/log', () => {
  it('finds where a follower log may match by term (etcd findConflictByTerm)', () => {
    const log = new RaftLog(undefined, entries([1, 1, 2, 2, 5, 5, 5]))
    expect(log.findConflictByTerm(7, 4)).to.deep.equal({ index: 4, term: 2 })
    expect(log.findConflictByTerm(7, 5)).to.deep.equal({ index: 7, term: 5 })
    expect(log.findConflictByTerm(10, 5)).to.deep.equal({ index: 7, term: 5 })
    expect(log.findConflictByTerm(3, 1)).to.deep.equal({ index: 2, term: 1 })
    expect(log.findConflictByTerm(7, 0)).to.deep.equal({ index: 0, term: 0 })
  })

  it('appends, truncates conflicting suffixes and tracks what is unstable', () => {
    const log = new RaftLog(undefined, entries([1, 1, 1]))
    expect(log.maybeAppend(3, 1, 0, entries([2, 2], 4))).to.equal(5)
    expect(log.unstableEntries().map(e => e.index)).to.deep.equal([4, 5])
    log.stableTo(5, 2)
    expect(log.maybeAppend(3, 1, 4, entries([3], 4))).to.equal(4)
    expect(log.lastIndex()).to.equal(4)
    expect(log.unstableEntries().map(e => [e.index, e.term])).to.deep.equal([[4, 3]])
    expect(log.committed).to.equal(4)
    expect(log.maybeAppend(4, 9, 4, [])).to.equal('mismatch')
    expect(() => log.append(entries([3], 2))).to.throw(AssertionError) // would rewrite committed
  })

  it('is up to date by last term first, then by length', () => {
    const log = new RaftLog(undefined, entries([1, 2, 2]))
    expect(log.isUpToDate(1, 3)).to.equal(true)
    expect(log.isUpToDate(3, 2)).to.equal(true)
    expect(log.isUpToDate(2, 2)).to.equal(false)
    expect(log.isUpToDate(9, 1)).to.equal(false)
  })
})

describe('raft/membership', () => {
  const abc = new Membership({ voters: ['a', 'b', 'c'], votersOutgoing: [], learners: ['l'], learnersNext: [], autoLeave: false })
  const apply = (m: Membership, cc: ConfChange): Membership | string => applyConfChange(m, cc)

  it('applies one-voter changes directly and refuses two without joint consensus', () => {
    const added = apply(abc, { changes: [{ type: 'add-voter', node: 'd' }] })
    expect(added).to.be.instanceOf(Membership)
    expect((added as Membership).toConfState().voters).to.deep.equal(['a', 'b', 'c', 'd'])
    const swapped = apply(abc, { changes: [{ type: 'remove', node: 'c' }, { type: 'add-voter', node: 'd' }] })
    // Two voter changes: joint consensus automatically.
    expect((swapped as Membership).toConfState()).to.deep.equal({ voters: ['a', 'b', 'd'], votersOutgoing: ['a', 'b', 'c'], learners: ['l'], learnersNext: [], autoLeave: true })
    expect(apply(swapped as Membership, { changes: [{ type: 'add-voter', node: 'e' }] })).to.equal('configuration is already joint')
    const left = apply(swapped as Membership, { changes: [] }) as Membership
    expect(left.toConfState()).to.deep.equal({ voters: ['a', 'b', 'd'], votersOutgoing: [], learners: ['l'], learnersNext: [], autoLeave: false })
    expect(apply(left, { changes: [] })).to.equal('cannot leave a non-joint configuration')
  })

  it('promotes learners, demotes voters and removes members', () => {
    const promoted = apply(abc, { changes: [{ type: 'promote', node: 'l' }] }) as Membership
    expect(promoted.toConfState()).to.deep.include({ voters: ['a', 'b', 'c', 'l'], learners: [] })
    expect(apply(abc, { changes: [{ type: 'promote', node: 'z' }] })).to.equal('z is not a learner')
    const demoted = apply(abc, { changes: [{ type: 'add-learner', node: 'c' }] }) as Membership
    expect(demoted.toConfState()).to.deep.include({ voters: ['a', 'b'], learners: ['c', 'l'] })
    const removed = apply(abc, { changes: [{ type: 'remove', node: 'l' }, { type: 'remove', node: 'nobody' }] }) as Membership
    expect(removed.toConfState()).to.deep.include({ voters: ['a', 'b', 'c'], learners: [] })
    expect(apply(new Membership({ voters: ['a'], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }),
      { changes: [{ type: 'remove', node: 'a' }] })).to.equal('removed all voters')
  })

  it('encodes conf changes deterministically and decodes them defensively', () => {
    const cc: ConfChange = { changes: [{ type: 'add-voter', node: 'd' }], joint: true }
    expect(decodeConfChange(encodeConfChange(cc))).to.deep.equal(cc)
    expect(encodeConfChange(cc)).to.deep.equal(encodeConfChange({ joint: true, changes: [{ node: 'd', type: 'add-voter' }] }))
    expect(decodeConfChange(encodeConfChange({ force: { voters: ['b', 'a'], learners: [] } }))).to.deep.equal({ force: { voters: ['a', 'b'], learners: [] } })
    expect(decodeConfChange(new Uint8Array([0xff, 0xfe]))).to.be.a('string')
    expect(decodeConfChange(new TextEncoder().encode('{"changes":[{"type":"nuke","node":"a"}]}'))).to.be.a('string')
  })
})
