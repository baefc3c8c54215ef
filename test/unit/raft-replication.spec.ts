import { expect } from 'aegir/chai'
import { createRng } from '../../protocols/common/rng.ts'
import { RaftNode } from '../../protocols/raft/index.ts'
import { Cluster, drain, enc } from './raft-harness.ts'
import type { AppendMessage, ConfState, Entry, Message, RestoredState } from '../../protocols/raft/index.ts'

const ABC = ['a', 'b', 'c']
const appendsTo = (messages: Message[], to: string): AppendMessage[] =>
  messages.filter((m): m is AppendMessage => m.type === 'append' && m.to === to)

describe('raft: log replication', () => {
  it('replicates proposals to every node and applies them in order', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    for (const v of ['x', 'y', 'z']) { c.propose('a', v) }
    for (const id of ABC) { expect(c.applied.get(id)).to.deep.equal(['x', 'y', 'z']) }
    const st = c.node('a').status()
    expect(st.progress?.b).to.include({ state: 'replicate', match: st.lastIndex, next: st.lastIndex + 1 })
  })

  it('batches the proposals made between two ready() calls into one MsgApp per follower', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    const a = c.node('a')
    for (const v of ['1', '2', '3', '4', '5']) { expect(a.propose(enc(v)).ok).to.equal(true) }
    const rd = a.ready()
    expect(rd.entries).to.have.length(5)
    const toB = appendsTo(rd.messages, 'b')
    expect(toB).to.have.length(1)
    expect(toB[0].entries).to.have.length(5)
    a.advance()
  })

  it('sends no message only to announce a commit: the next heartbeat carries it', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.propose('a', 'x')
    const a = c.node('a')
    const sentBefore = c.sent.length
    expect(a.propose(enc('y')).ok).to.equal(true)
    c.stabilize()
    expect(a.status().commit).to.equal(a.status().lastIndex)
    // one append with y to each follower, one acknowledgement from each, nothing else
    expect(c.sent.slice(sentBefore).map(m => `${m.type} ${m.from}>${m.to}`).sort()).to.deep.equal([
      'append a>b', 'append a>c', 'append-response b>a', 'append-response c>a'
    ])
    for (const id of ['b', 'c']) {
      expect(c.node(id).status().commit).to.be.lessThan(a.status().commit)
      expect(c.applied.get(id)).to.deep.equal(['x'])
    }
    c.tick(1, ['a'])
    for (const id of ['b', 'c']) {
      expect(c.node(id).status().commit).to.equal(a.status().commit)
      expect(c.applied.get(id)).to.deep.equal(['x', 'y'])
    }
  })

  it('pipelines MsgApps up to inflightMessagesMax, then waits for acks', () => {
    const c = new Cluster(ABC, { config: { inflightMessagesMax: 3 } })
    c.elect('a')
    const a = c.node('a')
    const sent: Message[] = []
    for (let i = 0; i < 6; i++) {
      a.propose(enc(`v${i}`))
      const rd = a.ready()
      sent.push(...rd.messages)
      a.advance()
    }
    // Three MsgApps in flight to b without any ack; the other three wait.
    expect(appendsTo(sent, 'b')).to.have.length(3)
    expect(a.status().progress?.b).to.include({ state: 'replicate', inflight: 3 })
    // Acks free the window and the rest follows.
    c.queue.push(...sent)
    c.stabilize()
    c.spreadCommit()
    for (const id of ABC) { expect(c.applied.get(id)).to.have.length(6) }
    expect(a.status().progress?.b.inflight).to.equal(0)
  })

  it('stops pipelining when inflightBytesMax bytes are in flight', () => {
    const c = new Cluster(ABC, { config: { inflightBytesMax: 100 } })
    c.elect('a')
    const a = c.node('a')
    const sent: Message[] = []
    for (let i = 0; i < 5; i++) {
      a.propose(new Uint8Array(40))
      const rd = a.ready()
      sent.push(...rd.messages)
      a.advance()
    }
    // 40 + 40 + 40 >= 100: the third message fills the window.
    expect(appendsTo(sent, 'b')).to.have.length(3)
    c.queue.push(...sent)
    c.stabilize()
    c.spreadCommit()
    expect(c.node('b').status().commit).to.equal(a.status().lastIndex)
  })

  it('a heartbeat response frees one slot of a full window (lost acks cannot stall replication)', () => {
    const c = new Cluster(ABC, { config: { inflightMessagesMax: 2 } })
    c.elect('a')
    c.drop = m => m.type === 'append-response' && m.from === 'b'
    // no ticks yet (Cluster.propose would tick): heartbeats are what frees the window
    for (let i = 0; i < 4; i++) {
      expect(c.node('a').propose(enc(`v${i}`)).ok).to.equal(true)
      c.stabilize()
    }
    expect(c.node('a').status().progress?.b.inflight).to.equal(2)
    c.heal()
    c.tick(3)
    expect(c.node('a').status().progress?.b).to.include({ inflight: 0, match: c.node('a').status().lastIndex })
  })

  it('limits each MsgApp by messageEntriesBytesMax and messageEntriesMax', () => {
    const c = new Cluster(ABC, { config: { messageEntriesBytesMax: 100, proposalBytesMax: 100, messageEntriesMax: 4 } })
    c.elect('a')
    const a = c.node('a')
    for (let i = 0; i < 3; i++) { a.propose(new Uint8Array(60)) }
    for (let i = 0; i < 6; i++) { a.propose(new Uint8Array(0)) }
    c.stabilize()
    c.spreadCommit()
    const toB = appendsTo(c.sent, 'b').filter(m => m.entries.length > 0 && m.term === a.status().term)
    expect(toB).to.have.length.above(0)
    for (const m of toB) {
      const bytes = m.entries.reduce((n, e) => n + e.data.byteLength, 0)
      expect(m.entries.length).to.be.at.most(4)
      expect(bytes <= 100 || m.entries.length === 1).to.equal(true)
    }
    expect(c.node('b').status().commit).to.equal(a.status().lastIndex)
  })

  it('a new leader probes each follower, then switches it to replicate', () => {
    const c = new Cluster(ABC)
    c.node('a').campaign()
    c.processAllReady()
    c.deliverRound() // pre-votes
    c.deliverRound() // pre-vote responses -> votes
    c.deliverRound() // votes -> responses
    c.deliverRound() // a becomes leader
    expect(c.node('a').status().role).to.equal('leader')
    expect(c.node('a').status().progress?.b.state).to.equal('probe')
    c.stabilize()
    expect(c.node('a').status().progress?.b.state).to.equal('replicate')
  })

  it('does not pipeline while probing: one MsgApp per heartbeat interval', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.crash('c')
    c.tick(2)
    c.node('a').reportUnreachable('c')
    expect(c.node('a').status().progress?.c.state).to.equal('probe')
    const before = appendsTo(c.sent, 'c').length
    for (let i = 0; i < 5; i++) { c.propose('a', `v${i}`) }
    expect(appendsTo(c.sent, 'c').length - before).to.equal(1)
  })

  it('commits only entries of the current term by counting (§5.4.2)', () => {
    // a: [conf@1 t1 (snapshot), 2:t2]; b has 2:t2; c has nothing beyond the snapshot.
    const conf: ConfState = { voters: ABC, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }
    const snapshot = { meta: { index: 1, term: 1, conf }, data: enc('[]') }
    const old: Entry = { term: 2, index: 2, type: 'normal', data: enc('old') }
    const mk = (id: string, entries: Entry[], term: number): RaftNode =>
      new RaftNode({ id, rng: createRng(id.charCodeAt(0)), preVote: false }, { hardState: { term, vote: null, commit: 1 }, snapshot, entries })
    const a = mk('a', [old], 2)
    const b = mk('b', [old], 2)
    a.campaign()
    drain(a)
    b.step({ type: 'vote', from: 'a', to: 'b', term: 3, lastIndex: 2, lastTerm: 2, transfer: false })
    for (const m of drain(b).messages) { a.step(m) }
    expect(a.status().role).to.equal('leader')
    drain(a)
    // b acknowledges index 2 (term 2): a majority holds it, but it is from an older term.
    a.step({ type: 'append-response', from: 'b', to: 'a', term: 3, index: 2, reject: false, rejectHint: 0, hintTerm: 0 })
    expect(a.status().commit).to.equal(1)
    // Once the leader's own entry (3:t3) is on a majority, both commit.
    a.step({ type: 'append-response', from: 'b', to: 'a', term: 3, index: 3, reject: false, rejectHint: 0, hintTerm: 0 })
    expect(a.status().commit).to.equal(3)
  })

  it('Figure 8: an old-term entry on a majority is not committed, and is safely overwritten', () => {
    const ids = ['s1', 's2', 's3', 's4', 's5']
    const c = new Cluster(ids, { config: { preVote: false, checkQuorum: false, messageEntriesMax: 1 } })
    const win = (id: string): void => {
      for (let i = 0; i < 3 && c.node(id).status().role !== 'leader'; i++) {
        c.node(id).campaign()
        c.stabilize()
      }
      expect(c.node(id).status().role).to.equal('leader')
    }
    c.elect('s1')
    const base = c.node('s1').status().lastIndex
    // (a) s1 (term 2) replicates x only to s2, then crashes.
    c.partition(['s1', 's2'], ['s3', 's4', 's5'])
    c.propose('s1', 'x')
    c.crash('s1')
    // (b) s5 wins term 3 with s3 and s4, appends its own entry at the same index, alone; crashes.
    c.drop = m => m.from === 's2' || m.to === 's2' || (m.from === 's5' && m.type === 'append')
    win('s5')
    expect(c.disks.get('s5')!.entries.at(-1)).to.include({ index: base + 1, term: 3 })
    c.crash('s5')
    // (c) s1 restarts and wins term 4 with s2 and s3; x (term 2) reaches s3, s1's own
    // entry reaches s2 but not s3.
    c.restart('s1')
    c.processReady('s1')
    c.drop = m => m.from === 's4' || m.to === 's4' ||
      (m.to === 's3' && m.type === 'append' && m.entries.some(e => e.term === 4) && c.node('s3').status().lastIndex >= base + 1)
    win('s1')
    c.tick(2, ['s1'])
    expect(c.disks.get('s3')!.entries.at(-1)).to.include({ index: base + 1, term: 2 })
    expect(c.node('s1').status().progress?.s2.match).to.equal(base + 2)
    // x is on a majority (s1, s2, s3) but it is from an older term: not committed.
    expect(c.node('s1').status().commit).to.equal(base)
    c.crash('s1')
    // (d) s5 restarts and wins (term 5) with s3 and s4: it overwrites x.
    c.restart('s5')
    c.processReady('s5')
    c.heal()
    c.drop = m => m.from === 's1' || m.to === 's1'
    win('s5')
    c.propose('s5', 'y')
    for (const id of ids) { expect(c.applied.get(id)).to.not.include('x') }
    for (const id of ['s2', 's3', 's4', 's5']) { expect(c.applied.get(id)).to.deep.equal(['y']) }
  })

  describe('Figure 7: a new leader brings every follower log in line, skipping whole terms', () => {
    // Terms of entries 2..; entry 1 is a snapshot (term 1) carrying the configuration.
    const leaderTerms = [1, 1, 4, 4, 5, 5, 6, 6, 6]
    const followers: Record<string, number[]> = {
      a: [1, 1, 4, 4, 5, 5, 6, 6],
      b: [1, 1, 4],
      c: [1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
      d: [1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
      e: [1, 1, 4, 4, 4, 4],
      f: [1, 1, 2, 2, 2, 3, 3, 3, 3, 3]
    }
    const conf: ConfState = { voters: ['L', 'F', 'X'], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }
    const snapshot = { meta: { index: 1, term: 1, conf }, data: enc('[]') }
    const restored = (terms: number[]): RestoredState => ({
      hardState: { term: Math.max(1, ...terms), vote: null, commit: 1 },
      snapshot,
      entries: terms.map((term, i) => ({ term, index: i + 2, type: 'normal' as const, data: enc(`${term}`) }))
    })

    for (const [name, terms] of Object.entries(followers)) {
      it(`case (${name})`, () => {
        // The leader's term (7, elected at 8) exceeds every term in the followers' logs.
        const leaderState = restored(leaderTerms)
        leaderState.hardState.term = 7
        const nodes = new Map([
          ['L', new RaftNode({ id: 'L', rng: createRng(1), preVote: false }, leaderState)],
          ['F', new RaftNode({ id: 'F', rng: createRng(2), preVote: false }, restored(terms))],
          ['X', new RaftNode({ id: 'X', rng: createRng(3), preVote: false }, restored([]))]
        ])
        const L = nodes.get('L')!
        let rejections = 0
        const exchange = (queue: Message[]): void => {
          while (queue.length > 0) {
            const m = queue.shift()!
            if (m.type === 'append-response' && m.reject) { rejections++ }
            nodes.get(m.to)!.step(m)
            queue.push(...drain(nodes.get(m.to)!).messages)
          }
        }
        L.campaign()
        exchange(drain(L).messages)
        // the commit index reaches followers with the next heartbeat
        L.tick()
        exchange(drain(L).messages)
        expect(L.status().role).to.equal('leader')
        const F = nodes.get('F')!
        expect(F.status().lastIndex).to.equal(L.status().lastIndex)
        expect(F.status().commit).to.equal(L.status().commit)
        expect(L.status().progress?.F.match).to.equal(L.status().lastIndex)
        // One probe rejection at most per diverging term in the follower's tail.
        expect(rejections).to.be.at.most(2)
      })
    }
  })

  it('a follower rejects an append that does not match, hinting at (index, term) to retry from', () => {
    const conf: ConfState = { voters: ['a', 'b'], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }
    const entries = [2, 2, 3, 3, 3].map((term, i) => ({ term, index: i + 2, type: 'normal' as const, data: enc('') }))
    const b = new RaftNode({ id: 'b', rng: createRng(1) }, { hardState: { term: 3, vote: null, commit: 1 }, snapshot: { meta: { index: 1, term: 1, conf }, data: enc('[]') }, entries })
    b.step({ type: 'append', from: 'a', to: 'b', term: 5, prevIndex: 9, prevTerm: 4, entries: [], commit: 1 })
    const [resp] = drain(b).messages
    // Our last entry is 6 (term 3 <= 4): the leader can skip straight to it.
    expect(resp).to.deep.include({ type: 'append-response', reject: true, index: 9, rejectHint: 6, hintTerm: 3 })
  })
})

describe('raft: snapshots and compaction', () => {
  it('compact() drops applied entries and returns the snapshot to persist', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    for (const v of ['x', 'y']) { c.propose('a', v) }
    const applied = c.appliedIndex.get('a')!
    const snap = c.compact('a')
    expect(snap?.meta).to.deep.include({ index: applied })
    expect(snap?.meta.conf.voters).to.deep.equal(ABC)
    expect(c.node('a').status().firstIndex).to.equal(applied + 1)
    expect(c.compact('a')).to.equal(null) // nothing new to compact
    expect(() => c.node('a').compact(applied + 5, enc(''))).to.throw(RangeError)
  })

  it('a follower behind the compaction point catches up by snapshot', () => {
    const c = new Cluster(ABC)
    c.autoReportSnapshots = false
    c.elect('a')
    c.crash('c')
    for (const v of ['x', 'y', 'z']) { c.propose('a', v) }
    c.compact('a')
    c.restart('c')
    c.drop = m => m.from === 'c' && m.type === 'append-response' && !m.reject // c's acks are lost for now
    c.tick(3)
    expect(c.sent.filter(m => m.type === 'snapshot' && m.to === 'c')).to.have.length(1)
    expect(c.node('a').status().progress?.c.state).to.equal('snapshot')
    expect(c.applied.get('c')).to.deep.equal(['x', 'y', 'z'])
    c.heal()
    c.node('a').reportSnapshot('c', 'success')
    expect(c.node('a').status().progress?.c.state).to.equal('probe')
    c.tick(3)
    expect(c.node('a').status().progress?.c.state).to.equal('replicate')
    c.propose('a', 'w')
    expect(c.applied.get('c')).to.deep.equal(['x', 'y', 'z', 'w'])
    // c restarts from the snapshot it persisted.
    c.crash('c')
    c.restart('c')
    c.stabilize()
    c.tick(2)
    expect(c.applied.get('c')).to.deep.equal(['x', 'y', 'z', 'w'])
    expect(c.node('c').status().firstIndex).to.equal(c.disks.get('c')!.snapshot!.meta.index + 1)
  })

  it('a failed snapshot is retried after a report of failure', () => {
    const c = new Cluster(ABC)
    c.autoReportSnapshots = false
    c.elect('a')
    c.crash('c')
    c.propose('a', 'x')
    c.compact('a')
    c.restart('c')
    c.drop = m => m.type === 'snapshot'
    c.tick(3)
    const snaps = (): number => c.sent.filter(m => m.type === 'snapshot' && m.to === 'c').length
    expect(snaps()).to.equal(1)
    c.tick(3)
    expect(snaps()).to.equal(1) // paused in snapshot state until reported
    c.node('a').reportSnapshot('c', 'failure')
    expect(c.node('a').status().progress?.c.state).to.equal('probe')
    c.heal()
    c.tick(3)
    expect(snaps()).to.equal(2)
    expect(c.applied.get('c')).to.deep.equal(['x'])
  })

  it('a follower ignores a snapshot older than its commit index', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.propose('a', 'x')
    const b = c.node('b')
    const commit = b.status().commit
    const result = b.step({
      type: 'snapshot',
      from: 'a',
      to: 'b',
      term: b.status().term,
      snapshot: { meta: { index: 2, term: 1, conf: b.status().conf }, data: enc('[]') }
    })
    expect(result.ok).to.equal(true)
    expect(b.status().commit).to.equal(commit)
    expect(b.ready().snapshot).to.equal(undefined)
    b.advance()
  })

  it('restarts correctly from a snapshot plus later entries', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.propose('a', 'x')
    c.compact('b')
    c.propose('a', 'y')
    c.crash('b')
    const b = c.restart('b')
    expect(b.status().firstIndex).to.equal(c.disks.get('b')!.snapshot!.meta.index + 1)
    c.stabilize()
    expect(c.applied.get('b')).to.deep.equal(['x', 'y'])
    expect(b.status().conf.voters).to.deep.equal(ABC)
  })
})

describe('raft: entries overwritten while a Ready is being persisted', () => {
  const entries = (term: number, first: number, last: number): Entry[] =>
    Array.from({ length: last - first + 1 }, (_, i) => ({ term, index: first + i, type: 'normal' as const, data: enc(`${term}/${first + i}`) }))
  const append = (from: string, term: number, prevIndex: number, prevTerm: number, sent: Entry[], commit: number): Message =>
    ({ type: 'append', from, to: 'b', term, prevIndex, prevTerm, entries: sent, commit })

  /** Follower b of a, c, b: entries 1-3 are the committed bootstrap entries of term 1. */
  function follower (): RaftNode {
    const b = new RaftNode({ id: 'b', rng: createRng(1) }, { hardState: { term: 0, vote: null, commit: 0 }, entries: [] },
      { voters: ABC, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false })
    drain(b)
    return b
  }

  it('advance() keeps the persisted prefix that was not overwritten as stable (compact at applied works)', () => {
    const b = follower()
    b.step(append('a', 2, 3, 1, entries(2, 4, 6), 4))
    const persisted = b.ready()
    expect(persisted.entries.map(e => e.index)).to.deep.equal([4, 5, 6])
    expect(persisted.committedEntries.at(-1)?.index).to.equal(4)
    // Before advance(), a leader of term 3 overwrites 5-6.
    expect(b.step(append('c', 3, 4, 2, entries(3, 5, 5), 4))).to.deep.equal({ ok: true })
    b.advance()
    expect(b.status().applied).to.equal(4)
    expect(b.compact(4, enc('state at 4'))?.meta).to.deep.include({ index: 4, term: 2 })
    // Only the replacement is persisted next, not entry 4 again.
    const next = b.ready()
    expect(next.entries.map(e => `${e.index}/${e.term}`)).to.deep.equal(['5/3'])
    b.advance()
    expect(b.hasReady()).to.equal(false)
  })

  it('drops a queued acknowledgement of an older term when a newer leader overwrites the entries it promised', () => {
    const b = follower()
    b.step(append('a', 2, 3, 1, entries(2, 4, 6), 4))
    const inFlight = b.ready() // persisting 4-6; its ack of 6 is sent after that
    expect(inFlight.messages).to.deep.include({ type: 'append-response', from: 'b', to: 'a', term: 2, index: 6, reject: false, rejectHint: 0, hintTerm: 0 })
    // a resends 4-6 (a retry): b acknowledges 6 again, into the next Ready.
    b.step(append('a', 2, 3, 1, entries(2, 4, 6), 4))
    // A leader of term 3 overwrites 5-6 before that Ready is built.
    b.step(append('c', 3, 4, 2, entries(3, 5, 5), 4))
    b.advance()
    const next = b.ready()
    expect(next.entries.map(e => `${e.index}/${e.term}`)).to.deep.equal(['5/3'])
    const acks = next.messages.filter(m => m.type === 'append-response')
    expect(acks).to.deep.equal([{ type: 'append-response', from: 'b', to: 'c', term: 3, index: 5, reject: false, rejectHint: 0, hintTerm: 0 }])
    b.advance()
  })
})
