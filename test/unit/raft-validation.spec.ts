import { expect } from 'aegir/chai'
import { createRng } from '../../protocols/common/rng.ts'
import { checkConfChange, CONF_CHANGES_MAX, CONF_MEMBERS_MAX, InvalidMessageError, MESSAGE_ENTRIES_MAX, RaftNode, resolveConfig, validateMessage } from '../../protocols/raft/index.ts'
import { Cluster, drain, enc } from './raft-harness.ts'
import type { Message } from '../../protocols/raft/index.ts'

const ABC = ['a', 'b', 'c']
const conf = { voters: ABC, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }

const goodAppend = (): Record<string, unknown> => ({
  type: 'append',
  from: 'a',
  to: 'b',
  term: 3,
  prevIndex: 4,
  prevTerm: 2,
  commit: 4,
  entries: [{ term: 3, index: 5, type: 'normal', data: enc('x') }]
})

describe('raft: message validation', () => {
  it('accepts a well-formed message and strips unknown fields', () => {
    const m = validateMessage({ ...goodAppend(), extra: 'ignored' })
    expect(m).to.not.be.instanceOf(InvalidMessageError)
    expect(m).to.not.have.property('extra')
  })

  const cases: Array<[string, unknown]> = [
    ['null', null],
    ['a string', 'append'],
    ['an array', []],
    ['an unknown type', { ...goodAppend(), type: 'propose' }],
    ['a missing type', { ...goodAppend(), type: undefined }],
    ['an empty from', { ...goodAppend(), from: '' }],
    ['a huge node id', { ...goodAppend(), to: 'x'.repeat(1000) }],
    ['a negative term', { ...goodAppend(), term: -1 }],
    ['a term past 2^52 (term + 1 must stay a safe integer)', { ...goodAppend(), term: Number.MAX_SAFE_INTEGER }],
    ['a commit index past 2^52', { ...goodAppend(), commit: 2 ** 52 + 1 }],
    ['a NaN index', { ...goodAppend(), prevIndex: Number.NaN }],
    ['a fractional index', { ...goodAppend(), commit: 1.5 }],
    ['an infinite index', { ...goodAppend(), commit: Number.POSITIVE_INFINITY }],
    ['a string term', { ...goodAppend(), term: '3' }],
    ['a prevTerm newer than the term', { ...goodAppend(), prevTerm: 9 }],
    ['entries that are not an array', { ...goodAppend(), entries: {} }],
    ['a gap in entry indexes', { ...goodAppend(), entries: [{ term: 3, index: 6, type: 'normal', data: enc('') }] }],
    ['an entry term newer than the message', { ...goodAppend(), entries: [{ term: 4, index: 5, type: 'normal', data: enc('') }] }],
    ['an entry term older than prevTerm', { ...goodAppend(), entries: [{ term: 1, index: 5, type: 'normal', data: enc('') }] }],
    ['entry data that is not bytes', { ...goodAppend(), entries: [{ term: 3, index: 5, type: 'normal', data: 'x' }] }],
    ['an unknown entry type', { ...goodAppend(), entries: [{ term: 3, index: 5, type: 'weird', data: enc('') }] }],
    ['a vote with a string reject', { type: 'vote-response', from: 'a', to: 'b', term: 1, reject: 'no' }],
    ['a vote at term 0', { type: 'vote', from: 'a', to: 'b', term: 0, lastIndex: 0, lastTerm: 0, transfer: false }],
    ['a vote missing transfer', { type: 'vote', from: 'a', to: 'b', term: 2, lastIndex: 0, lastTerm: 0 }],
    ['a read context too long', { type: 'read-index', from: 'a', to: 'b', term: 1, context: new Uint8Array(5000) }],
    ['a snapshot without voters', { type: 'snapshot', from: 'a', to: 'b', term: 2, snapshot: { meta: { index: 3, term: 1, conf: { ...conf, voters: [] } }, data: enc('') } }],
    ['a snapshot with a broken conf', { type: 'snapshot', from: 'a', to: 'b', term: 2, snapshot: { meta: { index: 3, term: 1, conf: { ...conf, learners: ['a'] } }, data: enc('') } }],
    ['a snapshot from the future', { type: 'snapshot', from: 'a', to: 'b', term: 2, snapshot: { meta: { index: 3, term: 5, conf }, data: enc('') } }],
    ['a snapshot without data', { type: 'snapshot', from: 'a', to: 'b', term: 2, snapshot: { meta: { index: 3, term: 1, conf } } }]
  ]
  it('bounds entries per message, members per conf and changes per conf change', () => {
    const many = Array.from({ length: MESSAGE_ENTRIES_MAX + 1 }, (_, i) => ({ term: 3, index: 5 + i, type: 'normal', data: new Uint8Array(0) }))
    expect(validateMessage({ ...goodAppend(), entries: many })).to.be.instanceOf(InvalidMessageError)
    const crowd = Array.from({ length: CONF_MEMBERS_MAX + 1 }, (_, i) => `n${i}`)
    expect(validateMessage({ type: 'snapshot', from: 'a', to: 'b', term: 2, snapshot: { meta: { index: 3, term: 1, conf: { ...conf, voters: crowd } }, data: enc('') } }))
      .to.be.instanceOf(InvalidMessageError)
    const changes = Array.from({ length: CONF_CHANGES_MAX + 1 }, (_, i) => ({ type: 'add-learner', node: `n${i}` }))
    expect(checkConfChange({ changes })).to.be.a('string')
  })

  for (const [what, value] of cases) {
    it(`rejects ${what}`, () => {
      expect(validateMessage(value)).to.be.instanceOf(InvalidMessageError)
    })
  }
})

describe('raft: restored state', () => {
  const hardState = { term: 3, vote: null, commit: 2 }
  const snapshot = (meta: Record<string, unknown>): unknown => ({ meta: { index: 2, term: 2, conf, ...meta }, data: enc('state') })
  const restore = (restored: unknown): RaftNode => new RaftNode({ id: 'a', rng: createRng(1) }, restored as any)

  it('restarts from a well-formed snapshot plus entries', () => {
    const node = restore({ hardState, snapshot: snapshot({}), entries: [{ index: 3, term: 3, type: 'normal', data: enc('x') }] })
    expect(node.status()).to.include({ firstIndex: 3, lastIndex: 3, term: 3 })
  })

  it('refuses a malformed one with a RangeError naming it', () => {
    for (const bad of [
      { hardState: { term: -1, vote: null, commit: 0 }, entries: [] },
      { hardState, entries: 'none' },
      { hardState, snapshot: snapshot({ term: 4 }), entries: [] },
      { hardState, snapshot: snapshot({ index: 0 }), entries: [] },
      { hardState, snapshot: snapshot({ conf: { ...conf, voters: [] } }), entries: [] },
      { hardState, snapshot: { meta: { index: 2, term: 2, conf }, data: 'state' }, entries: [] }
    ]) {
      expect(() => restore(bad), JSON.stringify(bad)).to.throw(RangeError, /^raft: restored/)
    }
  })
})

describe('raft: bad input to step()', () => {
  it('rejects malformed messages without throwing or changing state', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.propose('a', 'x')
    for (const id of ABC) {
      const node = c.node(id)
      const before = JSON.stringify(node.status())
      for (const bad of [null, 42, { type: 'heartbeat' }, { ...goodAppend(), to: id, term: 1e300 }, { type: 'append', from: 'a', to: id, term: Number.NaN }]) {
        const result = node.step(bad as unknown as Message)
        expect(result).to.deep.include({ ok: false, reason: 'invalid-message' })
      }
      expect(node.hasReady()).to.equal(false)
      const after = JSON.parse(JSON.stringify(node.status()))
      expect(after.counters.invalidMessages).to.equal(5)
      after.counters.invalidMessages = 0
      expect(JSON.stringify(after)).to.equal(before)
    }
  })

  it('rejects messages for someone else, from itself, and stale ones', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    const b = c.node('b')
    const term = b.status().term
    expect(b.step({ type: 'heartbeat', from: 'a', to: 'c', term, commit: 0, readRound: 0 })).to.deep.equal({ ok: false, reason: 'wrong-recipient' })
    expect(b.step({ type: 'heartbeat', from: 'b', to: 'b', term, commit: 0, readRound: 0 })).to.deep.include({ ok: false, reason: 'unexpected' })
    expect(b.step({ type: 'heartbeat', from: 'a', to: 'b', term: term - 1, commit: 0, readRound: 0 })).to.deep.equal({ ok: false, reason: 'stale-term' })
  })

  it('never lets an append rewrite committed entries', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.propose('a', 'x')
    const b = c.node('b')
    const { term, commit } = b.status()
    const before = c.disks.get('b')!.entries.map(e => e.index + ':' + e.term)
    const rewrite = { type: 'append' as const, from: 'a', to: 'b', term: term + 1, prevIndex: commit - 1, prevTerm: term, commit: 0, entries: [{ term: term + 1, index: commit, type: 'normal' as const, data: enc('evil') }] }
    expect(b.step(rewrite).ok).to.equal(true) // answered with our commit index, entries dropped
    c.processReady('b')
    expect(c.disks.get('b')!.entries.map(e => e.index + ':' + e.term)).to.deep.equal(before)
    expect(c.applied.get('b')).to.deep.equal(['x'])
  })

  it('ignores acknowledgements of entries the leader does not have', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    const a = c.node('a')
    const { term, lastIndex, commit } = a.status()
    expect(a.step({ type: 'append-response', from: 'b', to: 'a', term, index: lastIndex + 100, reject: false, rejectHint: 0, hintTerm: 0 }))
      .to.deep.include({ ok: false, reason: 'unexpected' })
    expect(a.status().commit).to.equal(commit)
    expect(a.status().progress?.b.match).to.equal(lastIndex)
  })

  it('ignores heartbeat acks for read rounds that were never issued', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.isolate('a')
    const a = c.node('a')
    a.readIndex(enc('r'))
    drain(a)
    const term = a.status().term
    a.step({ type: 'heartbeat-response', from: 'b', to: 'a', term, readRound: 1e9 })
    expect(drain(a).readStates).to.deep.equal([])
  })

  it('survives a flood of random garbage and keeps working', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    const rng = createRng(7)
    const types = ['append', 'append-response', 'vote', 'pre-vote', 'vote-response', 'pre-vote-response', 'heartbeat',
      'heartbeat-response', 'snapshot', 'timeout-now', 'read-index', 'read-index-response', 'bogus']
    const values = [0, 1, 2, -1, 1e12, Number.NaN, 'x', null, true, undefined, [], {}, enc('z')]
    const anyValue = (): unknown => values[rng.intBetween(0, values.length - 1)]
    for (let i = 0; i < 3000; i++) {
      const to = ABC[rng.intBetween(0, 2)]
      const m: Record<string, unknown> = {
        type: types[rng.intBetween(0, types.length - 1)],
        from: rng.chance(0.5) ? ABC[rng.intBetween(0, 2)] : 'stranger',
        to,
        term: rng.chance(0.5) ? c.node(to).status().term : anyValue()
      }
      for (const key of ['index', 'prevIndex', 'prevTerm', 'commit', 'lastIndex', 'lastTerm', 'readRound', 'rejectHint', 'hintTerm', 'reject', 'transfer', 'entries', 'context', 'snapshot']) {
        if (rng.chance(0.6)) { m[key] = anyValue() }
      }
      expect(() => c.node(to).step(m as unknown as Message)).to.not.throw()
    }
    c.stabilize()
    c.tickUntil(() => c.leaders().length === 1)
    c.propose(c.leaders()[0], 'still-alive')
    for (const id of ABC) { expect(c.applied.get(id)).to.include('still-alive') }
  })
})

describe('raft: bounds', () => {
  it('refuses a proposal larger than proposalBytesMax', () => {
    const c = new Cluster(ABC, { config: { proposalBytesMax: 10, messageEntriesBytesMax: 100 } })
    c.elect('a')
    expect(c.node('a').propose(new Uint8Array(11))).to.deep.include({ ok: false, reason: 'too-large' })
    expect(c.node('a').propose(new Uint8Array(10)).ok).to.equal(true)
  })

  it('refuses proposals beyond uncommittedEntriesBytesMax until entries commit', () => {
    const c = new Cluster(ABC, { config: { uncommittedEntriesBytesMax: 100 } })
    c.elect('a')
    c.isolate('a')
    const a = c.node('a')
    let accepted = 0
    while (a.propose(new Uint8Array(30)).ok) {
      if (++accepted > 100) { throw new Error('the uncommitted-bytes bound never refused a proposal') }
    }
    expect(accepted).to.equal(3) // 90 bytes pending; 120 would exceed 100
    expect(a.propose(new Uint8Array(30))).to.deep.include({ ok: false, reason: 'uncommitted-limit' })
    c.heal()
    c.tick(2)
    expect(a.propose(new Uint8Array(30)).ok).to.equal(true)
  })

  it('drops outbound messages beyond outboxMessagesMax', () => {
    const c = new Cluster(ABC, { config: { outboxMessagesMax: 5 } })
    c.elect('a')
    const b = c.node('b')
    const term = b.status().term
    for (let i = 0; i < 8; i++) { b.step({ type: 'heartbeat', from: 'a', to: 'b', term, commit: 0, readRound: 0 }) }
    expect(b.ready().messages).to.have.length(5)
    b.advance()
    expect(b.status().counters.outboxDropped).to.equal(3)
  })

  it('hands out committed entries in batches of readyCommittedBytesMax', () => {
    const c = new Cluster(['solo'], { config: { readyCommittedBytesMax: 25 } })
    c.elect('solo')
    const node = c.node('solo')
    for (let i = 0; i < 4; i++) { node.propose(new Uint8Array(10)) }
    const sizes: number[] = []
    while (node.hasReady()) {
      const rd = node.ready()
      if (rd.committedEntries.length > 0) { sizes.push(rd.committedEntries.reduce((n, e) => n + e.data.byteLength, 0)) }
      node.advance()
    }
    expect(sizes.every(n => n <= 25)).to.equal(true)
    expect(sizes.reduce((a, b) => a + b, 0)).to.equal(40)
  })

  it('rejects invalid configurations and corrupt restored state (caller errors throw)', () => {
    const rng = createRng(1)
    expect(() => resolveConfig({ id: 'a', rng, readOnlyMode: 'lease', checkQuorum: false })).to.throw(RangeError)
    expect(() => resolveConfig({ id: 'a', rng, leaseSafetyMarginTicks: -1 })).to.throw(RangeError)
    // A lease must last at least one tick: electionTimeoutTicks - 1 - leaseSafetyMarginTicks >= 1.
    expect(() => resolveConfig({ id: 'a', rng, readOnlyMode: 'lease', electionTimeoutTicks: 3, heartbeatIntervalTicks: 1, leaseSafetyMarginTicks: 2 })).to.throw(RangeError)
    expect(resolveConfig({ id: 'a', rng, readOnlyMode: 'lease', electionTimeoutTicks: 5, heartbeatIntervalTicks: 1, leaseSafetyMarginTicks: 3 }).readOnlyMode).to.equal('lease')
    expect(() => resolveConfig({ id: 'a', rng, electionTimeoutTicks: 2, heartbeatIntervalTicks: 2 })).to.throw(RangeError)
    expect(() => resolveConfig({ id: 'a', rng, inflightMessagesMax: 0 })).to.throw(RangeError)
    expect(() => resolveConfig({ id: '', rng })).to.throw(RangeError)
    expect(resolveConfig({ id: 'a', rng, inflightMessagesMax: undefined }).inflightMessagesMax).to.equal(256)
    expect(() => new RaftNode({ id: 'a', rng }, { hardState: { term: 1, vote: null, commit: 5 }, entries: [] })).to.throw(RangeError)
    expect(() => new RaftNode({ id: 'a', rng }, {
      hardState: { term: 1, vote: null, commit: 0 },
      entries: [{ term: 1, index: 2, type: 'normal', data: enc('') }]
    })).to.throw(RangeError)
  })

  it('ready() twice without advance() is a caller bug', () => {
    const c = new Cluster(['solo'])
    const node = c.node('solo')
    node.ready()
    expect(node.hasReady()).to.equal(false)
    expect(() => node.ready()).to.throw()
  })
})
