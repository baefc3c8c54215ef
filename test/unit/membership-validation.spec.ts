import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { createRng } from '../../protocols/common/rng.ts'
import {
  createRoster, InvalidMessageError, LIST_LENGTH_MAX, MEMBERSHIP_DEFAULTS, MembershipNode, validateMessage
} from '../../protocols/membership/index.ts'
import type { Message } from '../../protocols/membership/index.ts'

/** fast-check's seed: CI runs the same cases every time (a failure prints its own seed to replay). */
const SEED = 0x5111

const limits = { messageBytesMax: MEMBERSHIP_DEFAULTS.messageBytesMax, metaBytesMax: MEMBERSHIP_DEFAULTS.metaBytesMax }
const ok = (): Record<string, unknown> => ({ type: 'ping', from: 'b', to: 'a', seq: 1, updates: [] })

/** [what, message, expected reason] */
const BAD: Array<[string, unknown, 'invalid-message' | 'too-large']> = [
  ['null', null, 'invalid-message'],
  ['a string', 'ping', 'invalid-message'],
  ['an array', [ok()], 'invalid-message'],
  ['no type', { ...ok(), type: undefined }, 'invalid-message'],
  ['an unknown type', { ...ok(), type: 'pong' }, 'invalid-message'],
  ['an empty from', { ...ok(), from: '' }, 'invalid-message'],
  ['a from of 257 characters', { ...ok(), from: 'x'.repeat(257) }, 'invalid-message'],
  ['a numeric to', { ...ok(), to: 7 }, 'invalid-message'],
  ['a negative seq', { ...ok(), seq: -1 }, 'invalid-message'],
  ['a fractional seq', { ...ok(), seq: 1.5 }, 'invalid-message'],
  ['a seq beyond 2^52', { ...ok(), seq: 2 ** 53 }, 'invalid-message'],
  ['a string seq', { ...ok(), seq: '1' }, 'invalid-message'],
  ['updates not an array', { ...ok(), updates: {} }, 'invalid-message'],
  ['an update of unknown kind', { ...ok(), updates: [{ kind: 'zombie', id: 'c', incarnation: 0 }] }, 'invalid-message'],
  ['an update without id', { ...ok(), updates: [{ kind: 'left', incarnation: 0 }] }, 'invalid-message'],
  ['a negative incarnation', { ...ok(), updates: [{ kind: 'left', id: 'c', incarnation: -1 }] }, 'invalid-message'],
  ['a NaN incarnation', { ...ok(), updates: [{ kind: 'left', id: 'c', incarnation: Number.NaN }] }, 'invalid-message'],
  ['a suspect without from', { ...ok(), updates: [{ kind: 'suspect', id: 'c', incarnation: 0 }] }, 'invalid-message'],
  ['meta as a plain array', { ...ok(), updates: [{ kind: 'alive', id: 'c', incarnation: 0, meta: [1, 2] }] }, 'invalid-message'],
  ['meta over metaBytesMax', { ...ok(), updates: [{ kind: 'alive', id: 'c', incarnation: 0, meta: new Uint8Array(4097) }] }, 'too-large'],
  ['more updates than LIST_LENGTH_MAX', { ...ok(), updates: new Array(LIST_LENGTH_MAX + 1).fill({ kind: 'left', id: 'c', incarnation: 0 }) }, 'too-large'],
  ['more bytes than messageBytesMax', { ...ok(), updates: Array.from({ length: 20 }, (_, i) => ({ kind: 'alive', id: `c${i}`, incarnation: 0, meta: new Uint8Array(4000) })) }, 'too-large'],
  ['an ack without announce', { type: 'ack', from: 'b', to: 'a', seq: 1, updates: [] }, 'invalid-message'],
  ['a ping-req without target', { type: 'ping-req', from: 'b', to: 'a', seq: 1, nack: true, updates: [] }, 'invalid-message'],
  ['a ping-req with a string nack', { type: 'ping-req', from: 'b', to: 'a', seq: 1, target: 'c', nack: 'yes', updates: [] }, 'invalid-message'],
  ['a join with a numeric cursor', { type: 'join', from: 'b', to: 'a', after: 3, updates: [] }, 'invalid-message'],
  ['a join-ack listing a suspect update', { type: 'join-ack', from: 'b', to: 'a', next: null, updates: [], members: [{ kind: 'suspect', id: 'c', incarnation: 0, from: 'b' }] }, 'invalid-message'],
  ['a join-ack without members', { type: 'join-ack', from: 'b', to: 'a', next: null, updates: [] }, 'invalid-message']
]

describe('membership/validation', () => {
  for (const [what, message, reason] of BAD) {
    it(`rejects ${what} (${reason})`, () => {
      const result = validateMessage(message, limits)
      expect(result).to.be.instanceOf(InvalidMessageError)
      expect((result as InvalidMessageError).reason).to.equal(reason)
    })
  }

  it('accepts every well-formed message type and keeps only the known fields', () => {
    const good: Message[] = [
      { type: 'ping', from: 'b', to: 'a', seq: 0, updates: [{ kind: 'alive', id: 'c', incarnation: 2, meta: Uint8Array.of(1) }] },
      { type: 'ack', from: 'b', to: 'a', seq: 2 ** 52, announce: true, updates: [{ kind: 'left', id: 'c', incarnation: 1 }] },
      { type: 'nack', from: 'b', to: 'a', seq: 5, updates: [{ kind: 'dead', id: 'c', incarnation: 1, from: 'b' }] },
      { type: 'ping-req', from: 'b', to: 'a', seq: 5, target: 'c', nack: false, updates: [{ kind: 'suspect', id: 'c', incarnation: 1, from: 'b' }] },
      { type: 'join', from: 'b', to: 'a', after: null, updates: [] },
      { type: 'join-ack', from: 'b', to: 'a', next: 'c', updates: [], members: [{ kind: 'alive', id: 'c', incarnation: 0, meta: new Uint8Array(4096) }] }
    ]
    for (const m of good) {
      const result = validateMessage({ ...m, extra: 'dropped' }, limits)
      expect(result).to.deep.equal(m)
    }
  })

  it('rejects in step() without throwing or changing anything, and counts it', () => {
    const roster = createRoster(['a', 'b', 'c'].map(id => ({ id })))
    const a = new MembershipNode({ id: 'a', roster }, createRng(1))
    a.ready() // its own alive update, published at start
    const before = JSON.stringify(a.members())
    for (const [, message, reason] of BAD) {
      expect(a.step(message)).to.deep.include({ ok: false, reason })
    }
    expect(a.status().counters.invalidMessages).to.equal(BAD.length)
    expect(a.hasReady()).to.equal(false)
    expect(JSON.stringify(a.members())).to.equal(before)
  })

  it('refuses well-formed messages it will not act on, changing nothing', () => {
    const roster = createRoster(['a', 'b', 'c'].map(id => ({ id })))
    const a = new MembershipNode({ id: 'a', roster }, createRng(1))
    const news = [{ kind: 'alive' as const, id: 'n', incarnation: 0, meta: new Uint8Array(0) }]
    expect(a.step({ ...ok(), to: 'z', updates: news })).to.deep.include({ ok: false, reason: 'wrong-recipient' })
    expect(a.step({ ...ok(), from: 'a', updates: news })).to.deep.include({ ok: false, reason: 'from-self' })
    expect(a.step({ type: 'join-ack', from: 'b', to: 'a', next: null, updates: news, members: news })).to.deep.include({ ok: false, reason: 'unexpected' })
    expect(a.member('n')).to.equal(undefined)
    expect(a.status().counters.rejectedMessages).to.equal(3)
  })

  it('never throws on arbitrary input, and a rejected input changes nothing', () => {
    const roster = createRoster(['a', 'b', 'c'].map(id => ({ id })))
    const id = fc.oneof(fc.constantFrom('a', 'b', 'c', 'd', ''), fc.string({ maxLength: 8 }), fc.integer())
    const num = fc.oneof(fc.integer({ min: -2, max: 5 }), fc.double(), fc.constant(2 ** 60), fc.string())
    const update = fc.record({
      kind: fc.oneof(fc.constantFrom('alive', 'suspect', 'dead', 'left'), fc.string()),
      id,
      incarnation: num,
      from: id,
      meta: fc.oneof(fc.uint8Array({ maxLength: 8 }), fc.constant([1]), fc.constant(undefined))
    }, { requiredKeys: [] })
    const message = fc.record({
      type: fc.oneof(fc.constantFrom('ping', 'ack', 'nack', 'ping-req', 'join', 'join-ack'), fc.string()),
      from: id,
      to: fc.oneof(fc.constant('a'), id),
      seq: num,
      announce: fc.oneof(fc.boolean(), fc.constant(1)),
      target: id,
      nack: fc.oneof(fc.boolean(), fc.constant('no')),
      after: fc.oneof(fc.constant(null), id),
      next: fc.oneof(fc.constant(null), id),
      updates: fc.oneof(fc.array(update, { maxLength: 4 }), fc.anything()),
      members: fc.oneof(fc.array(update, { maxLength: 3 }), fc.anything())
    }, { requiredKeys: [] })
    fc.assert(fc.property(fc.oneof(message, fc.anything()), input => {
      const a = new MembershipNode({ id: 'a', roster }, createRng(1))
      a.ready()
      const before = JSON.stringify(a.members(), (_, v: unknown) => v instanceof Uint8Array ? [...v] : v)
      const result = a.step(input)
      if (!result.ok) {
        expect(JSON.stringify(a.members(), (_, v: unknown) => v instanceof Uint8Array ? [...v] : v)).to.equal(before)
        expect(a.hasReady()).to.equal(false)
      }
      a.checkInvariants()
    }), { seed: SEED, numRuns: 2000 })
  })
})
