import { expect } from 'aegir/chai'
import { RaftPeerFilter } from '../../node/raft/peer-filter.ts'
import type { ConfState, Message } from '../../protocols/raft/index.ts'

const conf = (voters: string[], learners: string[] = []): ConfState => ({ voters, votersOutgoing: [], learners, learnersNext: [], autoLeave: false })

describe('RaftPeerFilter', () => {
  let state: { conf: ConfState, leader: string | null, lastIndex: number }
  let nowMs: number
  let reads: number
  let filter: RaftPeerFilter
  beforeEach(() => {
    state = { conf: conf(['a', 'b', 'c'], ['l']), leader: 'a', lastIndex: 10 }
    nowMs = 0
    reads = 0
    filter = new RaftPeerFilter({ state: () => { reads++; return state } }, { refreshMs: 100, now: () => nowMs })
  })

  const vote = (from: string, lastIndex: number, type: 'vote' | 'pre-vote' = 'vote'): Message => ({ type, from, to: 'b', term: 9, lastIndex, lastTerm: 3, transfer: false })
  const heartbeat = (from: string): Message => ({ type: 'heartbeat', from, to: 'b', term: 9, commit: 0, readRound: 0 })
  const voteResponse = (from: string): Message => ({ type: 'vote-response', from, to: 'b', term: 9, reject: false })

  it('takes every message from voters, learners and the leader', () => {
    for (const from of ['a', 'c', 'l']) {
      expect(filter.accepts(vote(from, 0))).to.equal(true)
      expect(filter.accepts(voteResponse(from))).to.equal(true)
    }
  })

  it('takes only leader traffic, and votes from a candidate ahead of us, from a peer in no configuration it knows', () => {
    expect(filter.accepts(heartbeat('x'))).to.equal(true)
    expect(filter.accepts({ type: 'append', from: 'x', to: 'b', term: 9, prevIndex: 0, prevTerm: 0, entries: [], commit: 0 })).to.equal(true)
    expect(filter.accepts(vote('x', 11))).to.equal(true)
    expect(filter.accepts(vote('x', 11, 'pre-vote'))).to.equal(true)
    expect(filter.accepts(vote('x', 10))).to.equal(false)
    expect(filter.accepts(voteResponse('x'))).to.equal(false)
    expect(filter.accepts({ type: 'timeout-now', from: 'x', to: 'b', term: 9 })).to.equal(false)
    expect(filter.accepts({ type: 'read-index', from: 'x', to: 'b', term: 9, context: new Uint8Array(1) })).to.equal(false)
  })

  it('refuses a removed member once the configuration is read again', () => {
    expect(filter.accepts(vote('c', 0))).to.equal(true)
    state = { ...state, conf: conf(['a', 'b']) }
    nowMs = 50
    expect(filter.accepts(vote('c', 0))).to.equal(true) // not read again yet
    nowMs = 100
    expect(filter.accepts(vote('c', 0))).to.equal(false)
  })

  it('reads the configuration at most once per refresh interval, however many messages arrive', () => {
    for (let i = 0; i < 1000; i++) { filter.accepts(vote('x', 0)) }
    expect(reads).to.equal(1)
    nowMs = 250
    for (let i = 0; i < 1000; i++) { filter.accepts(vote('a', 0)) }
    expect(reads).to.equal(2)
  })

  it('reads the configuration again at once when the source\'s version changes: a new member is taken in before refreshMs', () => {
    let version = 0
    filter = new RaftPeerFilter({ state: () => { reads++; return state }, version: () => version }, { refreshMs: 100, now: () => nowMs })
    // as a joining node starts: no configuration, no leader
    state = { conf: conf([]), leader: null, lastIndex: 0 }
    expect(filter.accepts(voteResponse('a'))).to.equal(false)
    // 10 ms later it follows leader a in a configuration with it
    state = { conf: conf(['a', 'b', 'c']), leader: 'a', lastIndex: 7 }
    nowMs = 10
    const readIndexResponse: Message = { type: 'read-index-response', from: 'a', to: 'b', term: 9, index: 7, context: new Uint8Array(16) }
    expect(filter.accepts(readIndexResponse)).to.equal(false) // the version did not change: the cache stands
    version++
    expect(filter.accepts(readIndexResponse)).to.equal(true)
    const before = reads
    for (let i = 0; i < 1000; i++) { filter.accepts(readIndexResponse) }
    expect(reads).to.equal(before)
  })

  it('follows a new leader that is in no configuration it knows', () => {
    state = { ...state, leader: 'n' }
    nowMs = 100
    expect(filter.accepts(voteResponse('n'))).to.equal(true)
  })
})
