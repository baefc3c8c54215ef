/**
 * The membership core's broadcast side: the updates it originates come out
 * in Ready.publish (and nothing it merely learnt), and receiveGossip()
 * applies a broadcast batch exactly as a piggyback, after the same checks.
 */
import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { createRng } from '../../protocols/common/rng.ts'
import { createRoster, INCARNATION_JUMP_MAX, LIST_LENGTH_MAX, MembershipNode } from '../../protocols/membership/index.ts'
import { Harness } from '../sim/membership/harness.ts'
import type { AliveUpdate, MembershipEvent, Update } from '../../protocols/membership/index.ts'

/** fast-check's seed: CI runs the same cases every time (a failure prints its own seed to replay). */
const SEED = 0x5111

function alive (id: string, incarnation = 0, meta = new Uint8Array(0)): AliveUpdate {
  return { kind: 'alive', id, incarnation, meta }
}

function describeUpdate (u: Update): string {
  return `${u.kind} ${u.id}@${u.incarnation}${'from' in u ? ` by ${u.from}` : ''}`
}

function node (id = 'a', members = ['a', 'b', 'c']): MembershipNode {
  const n = new MembershipNode({ id, roster: createRoster(members.map(m => ({ id: m }))) }, createRng(1))
  n.ready()
  return n
}

function eventTypes (events: MembershipEvent[], id: string): string[] {
  return events.filter(e => 'id' in e && e.id === id).map(e => e.type)
}

describe('membership/publish: the updates a member originates', () => {
  it('its own alive update at start, join() and setMeta(), and its left update on leave()', () => {
    const a = new MembershipNode({ id: 'a' }, createRng(1))
    expect(a.hasReady()).to.equal(true)
    expect(a.ready().publish.map(describeUpdate)).to.deep.equal(['alive a@0'])
    a.join(['seed'])
    expect(a.ready().publish.map(describeUpdate)).to.deep.equal(['alive a@0'])
    expect(a.setMeta(Uint8Array.of(1))).to.deep.equal({ ok: true, incarnation: 1 })
    expect(a.ready().publish).to.deep.equal([alive('a', 1, Uint8Array.of(1))])
    a.leave()
    expect(a.ready().publish.map(describeUpdate)).to.deep.equal(['left a@1'])
    expect(a.status().counters.updatesPublished).to.equal(4)
  })

  it('keeps only the newest news about one member between two ready() calls', () => {
    const a = node()
    a.setMeta(Uint8Array.of(1))
    a.setMeta(Uint8Array.of(2))
    expect(a.ready().publish).to.deep.equal([alive('a', 2, Uint8Array.of(2))])
  })

  it('a refutation: the member that hears itself suspected publishes its new incarnation', () => {
    const b = node('b')
    const result = b.receiveGossip('a', [{ kind: 'suspect', id: 'b', incarnation: 0, from: 'a' }])
    expect(result).to.deep.equal({ ok: true })
    const { publish, events } = b.ready()
    expect(publish.map(describeUpdate)).to.deep.equal(['alive b@1'])
    expect(events).to.deep.include({ type: 'member:alive', id: 'b', incarnation: 1 })
    expect(b.status().counters.refutations).to.equal(1)
  })

  it('the suspicions and deaths it declares, never the news it learnt from others', () => {
    const ids = ['a', 'b', 'c', 'd']
    const roster = createRoster(ids.map(id => ({ id })))
    const h = new Harness()
    for (const id of ids) { h.add(id, { roster }) }
    // d is gone: its messages are lost both ways
    for (let t = 0; t < 400; t++) {
      h.tick(1, ['a', 'b', 'c'])
      h.deliver(m => m.to !== 'd' && m.from !== 'd')
    }
    for (const id of ['a', 'b', 'c']) { expect(h.node(id).member('d')?.state, id).to.equal('dead') }
    const declared = ['a', 'b', 'c'].flatMap(id => h.published.get(id) ?? [])
    expect(declared.some(u => u.kind === 'suspect' && u.id === 'd'), 'a suspicion of d was published').to.equal(true)
    // exactly one member's suspicion timed out first; the others learnt of the death from it
    const deaths = declared.filter(u => u.kind === 'dead' && u.id === 'd')
    expect(deaths.length).to.be.within(1, 3)
    for (const id of ['a', 'b', 'c']) {
      for (const u of h.published.get(id) ?? []) {
        const own = u.id === id || (('from' in u) && u.from === id)
        expect(own, `${id} published ${describeUpdate(u)}, which it did not originate`).to.equal(true)
      }
    }
  })

  it('holds at most publishUpdatesMax updates, dropping the oldest and counting them', () => {
    const members = ['a', 'b', 'c', 'd', 'e', 'f']
    const a = new MembershipNode({ id: 'a', roster: createRoster(members.map(id => ({ id }))), publishUpdatesMax: 2, awarenessMax: 0 }, createRng(3))
    // nobody answers and nothing is drained: a suspects one member per period (awarenessMax 0: periods do not stretch)
    for (let t = 0; t < 60; t++) { a.tick() }
    const { publish } = a.ready()
    const suspected = members.filter(id => a.stateOf(id) === 'suspect')
    expect(suspected.length).to.be.at.least(3)
    expect(publish).to.have.length(2)
    expect(publish.every(u => u.kind === 'suspect')).to.equal(true)
    // its own alive update from the start, and the first suspicions, were dropped
    expect(a.status().counters.publishDropped).to.equal(1 + suspected.length - 2)
    a.checkInvariants()
  })
})

describe('membership/receiveGossip: a broadcast batch, applied as a piggyback', () => {
  it('applies the news (a newcomer, a death), reports it, piggybacks it, and does not publish it again', () => {
    const a = node()
    const result = a.receiveGossip('b', [alive('n', 3, Uint8Array.of(9)), { kind: 'dead', id: 'c', incarnation: 0, from: 'b' }])
    expect(result).to.deep.equal({ ok: true })
    expect(a.member('n')).to.deep.include({ state: 'alive', incarnation: 3 })
    expect(a.stateOf('c')).to.equal('dead')
    const { events, publish } = a.ready()
    expect(eventTypes(events, 'n')).to.deep.equal(['member:join'])
    expect(eventTypes(events, 'c')).to.deep.equal(['member:dead'])
    expect(publish).to.deep.equal([])
    expect(a.status().counters).to.deep.include({ gossipBatches: 1, gossipNews: 2 })
    // the next messages carry it on
    for (let t = 0; t < 20; t++) { a.tick() }
    const carried = a.ready().messages.flatMap(m => m.updates).map(describeUpdate)
    expect(carried).to.include.members(['alive n@3', 'dead c@0 by b'])
  })

  it('counts only what changed its view: old news is no news', () => {
    const a = node()
    expect(a.receiveGossip('b', [alive('c', 0)])).to.deep.equal({ ok: true })
    expect(a.status().counters).to.deep.include({ gossipBatches: 1, gossipNews: 0 })
    expect(a.hasReady()).to.equal(false)
  })

  it('lets the author raise its own incarnation, but drops news about others more than INCARNATION_JUMP_MAX ahead', () => {
    const a = node()
    const far = INCARNATION_JUMP_MAX + 1
    expect(a.receiveGossip('b', [alive('b', far), { kind: 'suspect', id: 'c', incarnation: far, from: 'b' }])).to.deep.equal({ ok: true })
    expect(a.member('b')?.incarnation).to.equal(far)
    expect(a.member('c')).to.deep.include({ state: 'alive', incarnation: 0 })
    expect(a.status().counters.updatesImplausible).to.equal(1)
  })

  it('rejects a batch whole on any bad field, or too large, changing nothing and counting it', () => {
    const a = node()
    const before = JSON.stringify(a.members())
    const bad: Array<[string, unknown, unknown, string]> = [
      ['author not an id', '', [alive('n')], 'invalid-message'],
      ['author not a string', 7, [alive('n')], 'invalid-message'],
      ['updates not a list', 'b', { 0: alive('n') }, 'invalid-message'],
      ['one bad update among good ones', 'b', [alive('n'), { kind: 'dead', id: 'c', incarnation: -1, from: 'b' }], 'invalid-message'],
      ['unknown kind', 'b', [alive('n'), { kind: 'gone', id: 'c', incarnation: 1 }], 'invalid-message'],
      ['metadata over metaBytesMax', 'b', [alive('n', 0, new Uint8Array(4097))], 'too-large'],
      ['more than LIST_LENGTH_MAX updates', 'b', Array.from({ length: LIST_LENGTH_MAX + 1 }, (_, i) => ({ kind: 'left', id: `m${i}`, incarnation: 0 })), 'too-large'],
      ['over messageBytesMax', 'b', Array.from({ length: 20 }, (_, i) => alive(`m${i}`, 0, new Uint8Array(4096))), 'too-large']
    ]
    for (const [what, from, updates, reason] of bad) {
      expect(a.receiveGossip(from as string, updates), what).to.deep.include({ ok: false, reason })
    }
    expect(a.status().counters.invalidMessages).to.equal(bad.length)
    expect(a.hasReady()).to.equal(false)
    expect(JSON.stringify(a.members())).to.equal(before)
  })

  it('refuses its own broadcasts coming back, and everything once it has left', () => {
    const a = node()
    expect(a.receiveGossip('a', [alive('n')])).to.deep.include({ ok: false, reason: 'from-self' })
    a.leave()
    const done = (): boolean => a.status().left
    for (let t = 0; t < 2000 && !done(); t++) { a.tick(); a.ready() }
    expect(done()).to.equal(true)
    expect(a.receiveGossip('b', [alive('n')])).to.deep.include({ ok: false, reason: 'left' })
    expect(a.member('n')).to.equal(undefined)
    expect(a.status().counters.rejectedMessages).to.equal(2)
  })

  it('never throws on arbitrary input, and a rejected batch changes nothing', () => {
    const id = fc.oneof(fc.constantFrom('a', 'b', 'c', 'd', ''), fc.string({ maxLength: 8 }), fc.integer())
    const num = fc.oneof(fc.integer({ min: -2, max: 5 }), fc.double(), fc.constant(2 ** 60), fc.constant(INCARNATION_JUMP_MAX + 1), fc.string())
    const update = fc.record({
      kind: fc.oneof(fc.constantFrom('alive', 'suspect', 'dead', 'left'), fc.string()),
      id,
      incarnation: num,
      from: id,
      meta: fc.oneof(fc.uint8Array({ maxLength: 8 }), fc.constant([1]), fc.constant(undefined))
    }, { requiredKeys: [] })
    const updates = fc.oneof(fc.array(update, { maxLength: 5 }), fc.anything())
    fc.assert(fc.property(fc.oneof(id, fc.anything()), updates, (from, batch) => {
      const a = node()
      const before = JSON.stringify(a.members(), (_, v: unknown) => v instanceof Uint8Array ? [...v] : v)
      const result = a.receiveGossip(from as string, batch)
      if (!result.ok) {
        expect(JSON.stringify(a.members(), (_, v: unknown) => v instanceof Uint8Array ? [...v] : v)).to.equal(before)
        expect(a.hasReady()).to.equal(false)
      }
      a.checkInvariants()
    }), { seed: SEED, numRuns: 2000 })
  })
})
