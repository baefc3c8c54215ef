import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { createRng } from '../../protocols/common/rng.ts'
import { createRoster, MembershipNode, resolveConfig } from '../../protocols/membership/index.ts'
import { ProbeOrder } from '../../protocols/membership/probe-order.ts'
import { Harness } from '../sim/membership/harness.ts'
import type { MembershipEvent } from '../../protocols/membership/index.ts'

/** fast-check's seed: CI runs the same cases every time (a failure prints its own seed to replay). */
const SEED = 0x5111

function types (events: MembershipEvent[], id?: string): string[] {
  return events.filter(e => id === undefined || ('id' in e && e.id === id)).map(e => e.type)
}

describe('membership/join', () => {
  it('transfers the seed\'s member list page by page, and the cluster learns of the joiner', () => {
    const ids = Array.from({ length: 300 }, (_, i) => `member-with-a-longish-id-${String(i).padStart(4, '0')}`)
    const roster = createRoster(ids.map(id => ({ id })))
    const h = new Harness()
    const config = { joinPageBytesMax: 5000 }
    h.add(ids[0], { roster, ...config })
    const joiner = h.add('joiner', config)
    expect(joiner.join([ids[0], 'joiner'])).to.equal(true)
    h.deliver()
    const done = h.takeEvents('joiner').filter(e => e.type === 'join:done')
    expect(done).to.have.length(1)
    expect(done[0]).to.deep.include({ seed: ids[0] })
    expect((done[0] as { pages: number }).pages).to.be.above(1)
    expect(joiner.members().filter(m => m.state === 'alive')).to.have.length(301)
    expect(h.node(ids[0]).member('joiner')?.state).to.equal('alive')
    joiner.checkInvariants()
  })

  it('spreads the news of the joiner to every member', () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f']
    const roster = createRoster(ids.map(id => ({ id })))
    const h = new Harness()
    for (const id of ids) { h.add(id, { roster }) }
    h.add('joiner').join(['c'])
    h.run(100)
    for (const id of ids) {
      expect(h.node(id).member('joiner')?.state, id).to.equal('alive')
      expect(types(h.events.get(id) ?? [], 'joiner'), id).to.deep.equal(['member:join'])
    }
    expect(h.node('joiner').members().filter(m => m.state === 'alive')).to.have.length(7)
  })

  it('brings a crashed member back when it restarts at incarnation 0 and joins again', () => {
    const ids = ['a', 'b', 'c', 'd']
    const roster = createRoster(ids.map(id => ({ id })))
    const h = new Harness()
    for (const id of ids) { h.add(id, { roster }) }
    for (let t = 0; t < 400; t++) {
      h.tick(1, ['a', 'b', 'c'])
      h.deliver(m => m.to !== 'd')
    }
    for (const id of ['a', 'b', 'c']) { expect(h.node(id).member('d')?.state, id).to.equal('dead') }
    // A fresh process with the same id and no memory of its past: the others
    // hold it dead at incarnation 0, so its alive(0) alone would be ignored;
    // the seed's answer carries the death notice, and it refutes.
    const d = h.add('d')
    d.join(['a'])
    h.run(100)
    for (const id of ['a', 'b', 'c']) {
      expect(h.node(id).member('d')?.state, id).to.equal('alive')
      expect(types(h.events.get(id) ?? [], 'd').at(-1), id).to.equal('member:join')
    }
    expect(d.member('d')?.incarnation).to.be.at.least(1)
    expect(d.members().filter(m => m.state === 'alive')).to.have.length(4)
  })

  it('tries the next seed when one does not answer, and fails after joinAttemptsMax', () => {
    const h = new Harness()
    const a = h.add('a', { joinTimeoutTicks: 5, joinAttemptsMax: 3 })
    h.add('b')
    a.join(['x', 'y'])
    for (let t = 0; t < 20; t++) {
      h.tick(1, ['a'])
      h.inflight = []
    }
    expect(types(h.takeEvents('a'))).to.include('join:failed')
    // with a live seed among them it succeeds
    const c = h.add('c', { joinTimeoutTicks: 5 })
    c.join(['x', 'b'])
    for (let t = 0; t < 20 && !types(h.events.get('c') ?? []).includes('join:done'); t++) {
      h.tick(1, ['c'])
      h.deliver()
    }
    expect(types(h.takeEvents('c'))).to.include('join:done')
    expect(c.member('b')?.state).to.equal('alive')
  })

  it('refuses bad seeds as a programming error, and does nothing with no seed but itself', () => {
    const a = new MembershipNode({ id: 'a' }, createRng(1))
    a.ready() // its own alive update, published at start
    expect(() => a.join([''])).to.throw(RangeError)
    expect(() => a.join(Array.from({ length: 65 }, (_, i) => `s${i}`))).to.throw(RangeError)
    expect(a.join(['a'])).to.equal(false)
    expect(a.hasReady()).to.equal(false)
  })

  it('answers at most joinRepliesPerPeriodMax join requests per period', () => {
    const a = new MembershipNode({ id: 'a', joinRepliesPerPeriodMax: 2 }, createRng(1))
    const join = (from: string): unknown => ({ type: 'join', from, to: 'a', after: null, updates: [] })
    expect(a.step(join('x')).ok).to.equal(true)
    expect(a.step(join('y')).ok).to.equal(true)
    expect(a.step(join('z'))).to.deep.include({ ok: false, reason: 'busy' })
    for (let t = 0; t < 10; t++) { a.tick() }
    expect(a.step(join('z')).ok).to.equal(true)
  })
})

describe('membership/leave', () => {
  const roster = createRoster(['a', 'b', 'c', 'd'].map(id => ({ id })))

  it('spreads `left`, reports leave:done, then stops; nobody declares it dead', () => {
    const h = new Harness()
    for (const id of ['a', 'b', 'c', 'd']) { h.add(id, { roster }) }
    h.node('b').leave()
    expect(h.node('b').member('b')?.state).to.equal('left')
    const stopped = (): boolean => types(h.events.get('b') ?? []).includes('leave:done')
    const running = ['a', 'b', 'c', 'd']
    for (let t = 0; t < 300; t++) {
      if (stopped() && running.includes('b')) { running.splice(running.indexOf('b'), 1) }
      h.tick(1, running)
      h.deliver(m => running.includes(m.to))
    }
    expect(stopped()).to.equal(true)
    for (const id of ['a', 'c', 'd']) {
      expect(h.node(id).member('b')?.state, id).to.equal('left')
      const about = types(h.events.get(id) ?? [], 'b')
      expect(about, id).to.deep.equal(['member:leave'])
    }
    expect(h.node('b').step({ type: 'ping', from: 'a', to: 'b', seq: 1, updates: [] })).to.deep.include({ ok: false, reason: 'left' })
    expect(h.node('b').setMeta(Uint8Array.of(1))).to.deep.include({ ok: false, reason: 'left' })
  })

  it('is done at once when there is nobody to tell', () => {
    const a = new MembershipNode({ id: 'a' }, createRng(1))
    a.leave()
    expect(types(a.ready().events)).to.deep.equal(['member:leave', 'leave:done'])
  })
})

describe('membership/metadata', () => {
  it('accepts up to metaBytesMax (at least 4 KiB) and raises the incarnation', () => {
    const a = new MembershipNode({ id: 'a' }, createRng(1))
    expect(a.setMeta(new Uint8Array(4096))).to.deep.equal({ ok: true, incarnation: 1 })
    expect(a.setMeta(new Uint8Array(4097))).to.deep.include({ ok: false, reason: 'too-large' })
    expect(a.member('a')?.meta.byteLength).to.equal(4096)
    const big = new MembershipNode({ id: 'a', metaBytesMax: 16384 }, createRng(1))
    expect(big.setMeta(new Uint8Array(16384)).ok).to.equal(true)
  })

  it('refuses a configuration that allows less than 4 KiB, or meta over the limit', () => {
    expect(() => resolveConfig({ id: 'a', metaBytesMax: 1024 })).to.throw(RangeError)
    expect(() => resolveConfig({ id: 'a', meta: new Uint8Array(4097) })).to.throw(RangeError)
    expect(() => resolveConfig({ id: 'a', probeTimeoutTicks: 10, probeIntervalTicks: 10 })).to.throw(RangeError)
    expect(() => resolveConfig({ id: 'a', piggybackBytesMax: 1000 })).to.throw(RangeError)
  })

  it('reaches the other members as member:update, copied (not shared with the caller)', () => {
    const roster = createRoster(['a', 'b', 'c'].map(id => ({ id })))
    const h = new Harness()
    for (const id of ['a', 'b', 'c']) { h.add(id, { roster }) }
    const meta = new TextEncoder().encode('{"role":"db"}')
    h.node('a').setMeta(meta)
    meta[0] = 0
    h.run(60)
    for (const id of ['b', 'c']) {
      const seen = h.node(id).member('a')
      expect(seen?.incarnation).to.equal(1)
      expect(new TextDecoder().decode(seen?.meta)).to.equal('{"role":"db"}')
      expect(types(h.events.get(id) ?? [], 'a')).to.deep.equal(['member:update'])
    }
  })
})

describe('membership/limits', () => {
  it('refuses new members beyond membersMax', () => {
    const a = new MembershipNode({ id: 'a', membersMax: 3 }, createRng(1))
    const news = ['b', 'c', 'd'].map(id => ({ kind: 'alive' as const, id, incarnation: 0, meta: new Uint8Array(0) }))
    a.step({ type: 'ping', from: 'b', to: 'a', seq: 1, updates: news })
    expect(a.members().map(m => m.id).sort()).to.deep.equal(['a', 'b', 'c'])
    expect(a.status().counters.membersRefused).to.equal(1)
  })

  it('forgets old tombstones to make room', () => {
    const a = new MembershipNode({ id: 'a', membersMax: 3, deadRetentionTicks: 10 }, createRng(1))
    const alive = (id: string): { kind: 'alive', id: string, incarnation: number, meta: Uint8Array } => ({ kind: 'alive', id, incarnation: 0, meta: new Uint8Array(0) })
    a.step({ type: 'ping', from: 'b', to: 'a', seq: 1, updates: [alive('b'), alive('c'), { kind: 'dead', id: 'c', incarnation: 0, from: 'b' }] })
    for (let t = 0; t < 11; t++) { a.tick() }
    a.step({ type: 'ping', from: 'b', to: 'a', seq: 2, updates: [alive('d')] })
    expect(a.member('d')?.state).to.equal('alive')
    expect(a.member('c')).to.equal(undefined)
    a.checkInvariants()
  })

  it('drops messages beyond outboxMessagesMax and events beyond eventsMax, counting them', () => {
    const a = new MembershipNode({ id: 'a', outboxMessagesMax: 2, eventsMax: 2 }, createRng(1))
    const news = ['b', 'c', 'd'].map(id => ({ kind: 'alive' as const, id, incarnation: 0, meta: new Uint8Array(0) }))
    a.step({ type: 'ping', from: 'b', to: 'a', seq: 1, updates: news })
    for (let i = 2; i < 5; i++) { a.step({ type: 'ping', from: 'b', to: 'a', seq: i, updates: [] }) }
    const { messages, events } = a.ready()
    expect(messages).to.have.length(2)
    expect(events).to.have.length(2)
    expect(a.status().counters).to.include({ outboxDropped: 2, eventsDropped: 1 })
  })
})

describe('membership/probe order', () => {
  it('probes every member once per round, in a new random order each round', () => {
    const ids = Array.from({ length: 20 }, (_, i) => `m${i}`)
    const order = new ProbeOrder(ids)
    const rng = createRng(4)
    const rounds: string[][] = []
    for (let r = 0; r < 3; r++) {
      order.startRound(() => true)
      const round: string[] = []
      for (let id = order.draw(rng); id !== undefined; id = order.draw(rng)) { round.push(id) }
      expect([...round].sort()).to.deep.equal([...ids].sort())
      rounds.push(round)
    }
    expect(rounds[0]).to.not.deep.equal(rounds[1])
    expect(ids, 'the borrowed array is never written').to.deep.equal(Array.from({ length: 20 }, (_, i) => `m${i}`))
  })

  it('keeps every member exactly once through inserts and removals mid-round, and draws none twice a round', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 10_000 }), fc.array(fc.constantFrom('draw', 'insert', 'filter', 'round'), { maxLength: 80 }), (seed, ops) => {
      const rng = createRng(seed)
      const base = Array.from({ length: 12 }, (_, i) => `m${i}`)
      const order = new ProbeOrder(base)
      const members = new Set(base)
      const drawnThisRound = new Set<string>()
      let next = 0
      for (const op of ops) {
        if (op === 'draw') {
          const id = order.draw(rng)
          if (id !== undefined) {
            expect(drawnThisRound.has(id)).to.equal(false)
            drawnThisRound.add(id)
          }
        } else if (op === 'insert') {
          const id = `n${next++}`
          order.insert(id, rng)
          members.add(id)
        } else if (op === 'filter') {
          const victim = [...members][rng.intBetween(0, members.size - 1)]
          order.filter(id => id !== victim)
          members.delete(victim)
        } else {
          order.startRound(() => true)
          drawnThisRound.clear()
        }
        expect([...order.toArray()].sort()).to.deep.equal([...members].sort())
      }
    }), { numRuns: 1000, seed: SEED })
    fc.assert(fc.property(fc.integer({ min: 1, max: 10_000 }), seed => {
      // a round after inserts draws every member exactly once
      const rng = createRng(seed)
      const order = new ProbeOrder(['a', 'b', 'c'])
      order.startRound(() => true)
      order.draw(rng)
      for (let i = 0; i < 5; i++) { order.insert(`n${i}`, rng) }
      const drawn: string[] = []
      for (let id = order.draw(rng); id !== undefined; id = order.draw(rng)) { drawn.push(id) }
      order.startRound(() => true)
      const next: string[] = []
      for (let id = order.draw(rng); id !== undefined; id = order.draw(rng)) { next.push(id) }
      expect(new Set(drawn).size).to.equal(drawn.length)
      expect(next.sort()).to.deep.equal(['a', 'b', 'c', 'n0', 'n1', 'n2', 'n3', 'n4'])
    }), { seed: SEED, numRuns: 300 })
  })
})

describe('membership/roster and determinism', () => {
  it('lets many nodes share one roster, each keeping its own changes', () => {
    const roster = createRoster(['a', 'b', 'c'].map(id => ({ id })))
    const a = new MembershipNode({ id: 'a', roster }, createRng(1))
    const b = new MembershipNode({ id: 'b', roster }, createRng(2))
    a.step({ type: 'ping', from: 'b', to: 'a', seq: 1, updates: [{ kind: 'dead', id: 'c', incarnation: 0, from: 'b' }] })
    expect(a.member('c')?.state).to.equal('dead')
    expect(b.member('c')?.state).to.equal('alive')
    expect(roster.records.get('c')?.state).to.equal('alive')
    expect(() => createRoster([{ id: 'a' }, { id: 'a' }])).to.throw(RangeError)
  })

  it('gives the same outputs for the same inputs and seed', () => {
    const run = (): string => {
      const roster = createRoster(['a', 'b', 'c', 'd', 'e'].map(id => ({ id })))
      const h = new Harness()
      for (const id of ['a', 'b', 'c', 'd', 'e']) { h.add(id, { roster }) }
      const log: string[] = []
      for (let t = 0; t < 200; t++) {
        h.tick(1, ['a', 'b', 'c', 'd'])
        log.push(...h.inflight.map(m => JSON.stringify(m, (_, v: unknown) => v instanceof Uint8Array ? [...v] : v)))
        h.deliver(m => m.to !== 'e')
      }
      return log.join('\n')
    }
    expect(run()).to.equal(run())
  })
})
