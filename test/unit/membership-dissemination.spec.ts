import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { createRng } from '../../protocols/common/rng.ts'
import { BroadcastQueue } from '../../protocols/membership/broadcast-queue.ts'
import { createRoster, MembershipNode, messageBytes, retransmitLimit, updateBytes } from '../../protocols/membership/index.ts'
import type { AliveUpdate, Message, Update } from '../../protocols/membership/index.ts'

/** fast-check's seed: CI runs the same cases every time (a failure prints its own seed to replay). */
const SEED = 0x5111

function alive (id: string, incarnation = 0, metaBytes = 0): AliveUpdate {
  return { kind: 'alive', id, incarnation, meta: new Uint8Array(metaBytes) }
}

describe('membership/broadcast queue', () => {
  it('limits retransmissions to retransmitMult * ceil(log10(N + 1))', () => {
    expect(retransmitLimit(4, 1)).to.equal(4)
    expect(retransmitLimit(4, 9)).to.equal(4)
    expect(retransmitLimit(4, 10)).to.equal(8)
    expect(retransmitLimit(4, 99)).to.equal(8)
    expect(retransmitLimit(4, 100)).to.equal(12)
    expect(retransmitLimit(4, 10_000)).to.equal(20)
    expect(retransmitLimit(3, 1000)).to.equal(12)
  })

  it('hands each update out at most `limit` times, then forgets it', () => {
    const q = new BroadcastQueue(100)
    q.enqueue(alive('x'))
    q.enqueue(alive('y'))
    let x = 0
    let y = 0
    for (let i = 0; i < 10; i++) {
      for (const u of q.take(10_000, 3)) {
        if (u.id === 'x') { x++ } else { y++ }
      }
      q.checkInvariants()
    }
    expect([x, y]).to.deep.equal([3, 3])
    expect(q.size).to.equal(0)
  })

  it('serves the least transmitted first, the newest first among equals', () => {
    const q = new BroadcastQueue(100)
    q.enqueue(alive('old'))
    expect(q.take(10_000, 5).map(u => u.id)).to.deep.equal(['old'])
    q.enqueue(alive('a'))
    q.enqueue(alive('b'))
    // budget for two updates: the two never sent, newest first
    const two = updateBytes(alive('a')) * 2
    expect(q.take(two, 5).map(u => u.id)).to.deep.equal(['b', 'a'])
    q.enqueue(alive('c'))
    expect(q.take(10_000, 5).map(u => u.id)).to.deep.equal(['c', 'b', 'a', 'old'])
  })

  it('keeps within the byte budget, skipping what does not fit for smaller updates behind it', () => {
    const q = new BroadcastQueue(100)
    q.enqueue(alive('small-1'))
    q.enqueue(alive('big', 0, 1000))
    q.enqueue(alive('small-2'))
    const budget = updateBytes(alive('small-1')) * 2 + 10
    const taken = q.take(budget, 5)
    expect(taken.map(u => u.id)).to.deep.equal(['small-2', 'small-1'])
    expect(taken.reduce((n, u) => n + updateBytes(u), 0)).to.be.at.most(budget)
    expect(q.take(10_000, 5).map(u => u.id)).to.deep.equal(['big', 'small-2', 'small-1'])
  })

  it('replaces a queued update with newer news about the same member, with a fresh count', () => {
    const q = new BroadcastQueue(100)
    q.enqueue(alive('x', 0))
    q.take(10_000, 3)
    q.take(10_000, 3)
    q.enqueue({ kind: 'suspect', id: 'x', incarnation: 0, from: 'y' })
    expect(q.size).to.equal(1)
    expect(q.transmitsOf('x')).to.equal(0)
    expect(q.take(10_000, 3)).to.deep.equal([{ kind: 'suspect', id: 'x', incarnation: 0, from: 'y' }])
  })

  it('drops the most transmitted, oldest updates beyond its limit', () => {
    const q = new BroadcastQueue(3)
    q.enqueue(alive('a'))
    q.take(10_000, 10) // a: 1 transmission
    q.enqueue(alive('b'))
    q.enqueue(alive('c'))
    q.enqueue(alive('d'))
    expect(q.size).to.equal(3)
    expect(q.get('a')).to.equal(undefined)
    expect(q.dropped).to.equal(1)
    q.enqueue(alive('e'))
    expect(q.get('b')).to.equal(undefined)
    q.checkInvariants()
  })

  it('keeps its invariants and its limits under any sequence of operations', () => {
    const op = fc.oneof(
      fc.record({ op: fc.constant('enqueue' as const), id: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), meta: fc.integer({ min: 0, max: 300 }) }),
      fc.record({ op: fc.constant('take' as const), budget: fc.integer({ min: 0, max: 800 }), limit: fc.integer({ min: 1, max: 6 }) }),
      fc.record({ op: fc.constant('remove' as const), id: fc.constantFrom('a', 'b', 'c') })
    )
    fc.assert(fc.property(fc.array(op, { maxLength: 60 }), ops => {
      const q = new BroadcastQueue(4)
      const sent = new Map<Update, number>()
      for (const o of ops) {
        if (o.op === 'enqueue') {
          q.enqueue(alive(o.id, 0, o.meta))
        } else if (o.op === 'remove') {
          q.remove(o.id)
        } else {
          const taken = q.take(o.budget, o.limit)
          expect(taken.reduce((n, u) => n + updateBytes(u), 0)).to.be.at.most(o.budget)
          expect(new Set(taken.map(u => u.id)).size).to.equal(taken.length)
          for (const u of taken) {
            const count = (sent.get(u) ?? 0) + 1
            sent.set(u, count)
            expect(count).to.be.at.most(6)
          }
        }
        q.checkInvariants()
      }
    }), { seed: SEED, numRuns: 300 })
  })
})

describe('membership/piggybacking', () => {
  const roster = createRoster(['a', 'b', 'c', 'd', 'e'].map(id => ({ id })))

  function ping (from: string, seq: number, updates: Update[] = []): Message {
    return { type: 'ping', from, to: 'a', seq, updates }
  }

  it('sends each update on at most retransmitMult * ceil(log10(N + 1)) messages', () => {
    const a = new MembershipNode({ id: 'a', roster, retransmitMult: 3 }, createRng(1))
    expect(a.setMeta(Uint8Array.of(1)).ok).to.equal(true)
    let carried = 0
    for (let i = 0; i < 30; i++) {
      a.step(ping('b', i))
      for (const m of a.ready().messages) {
        if (m.updates.some(u => u.id === 'a' && u.incarnation === 1)) { carried++ }
      }
    }
    // 5 live members: 3 * ceil(log10 6) = 3
    expect(carried).to.equal(3)
  })

  it('fills each message up to piggybackBytesMax and never past messageBytesMax', () => {
    const config = { id: 'a', roster, piggybackBytesMax: 6000, messageBytesMax: 6000 + 4096 + 4096 + 1024, joinPageBytesMax: 4096 + 1024 }
    const a = new MembershipNode(config, createRng(1))
    // 300 new members, each with 100 bytes of metadata, arrive and are queued to spread.
    const news = Array.from({ length: 300 }, (_, i) => alive(`new-${i}`, 0, 100))
    for (let i = 0; i < news.length; i += 20) { a.step({ type: 'ack', from: 'c', to: 'a', seq: 0, announce: false, updates: news.slice(i, i + 20) }) }
    a.ready()
    expect(a.step(ping('b', 1)).ok).to.equal(true)
    const ack = a.ready().messages.find(m => m.type === 'ack')
    expect(ack).to.not.equal(undefined)
    const piggyback = (ack as Message).updates.reduce((n, u) => n + updateBytes(u), 0)
    expect(piggyback).to.be.at.most(6000)
    expect(piggyback).to.be.above(6000 - updateBytes(news[0]))
    expect(messageBytes(ack as Message)).to.be.at.most(config.messageBytesMax)
  })
})
