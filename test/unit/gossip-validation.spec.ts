import { expect } from 'aegir/chai'
import fc from 'fast-check'
import {
  DELTAS_PER_MESSAGE_MAX, entriesPerDeltaMax, entryPayload, gossipMessageBytes, InvalidMessageError,
  limitsOf, resolveConfig, validateGossipMessage
} from '../../protocols/gossip/index.ts'
import { GossipHarness, storeText } from '../sim/gossip/harness.ts'
import type { GossipMessage } from '../../protocols/gossip/index.ts'

/** fast-check's seed: CI runs the same cases every time (a failure prints its own seed to replay). */
const SEED = 0x6055

const limits = limitsOf(resolveConfig({ id: 'a', auth: { sign: () => new Uint8Array(64), verify: () => true } }))
const entry = (overrides: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ key: 'k', value: Uint8Array.of(1), version: 1, signature: new Uint8Array(64), ageTicks: 0, ...overrides })
const digest = (overrides: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ type: 'digest', from: 'b', to: 'a', page: { after: null, until: null, versions: [] }, want: 'entries', ...overrides })
const delta = (entries: unknown[] = [entry()], overrides: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ type: 'delta', from: 'b', to: 'a', deltas: [{ node: 'c', after: 0, entries }], page: null, ...overrides })
const page = (versions: unknown[], after: string | null = null, until: string | null = null): Record<string, unknown> => ({ after, until, versions })

/** [what, message, expected reason] */
const BAD: Array<[string, unknown, 'invalid-message' | 'too-large']> = [
  ['null', null, 'invalid-message'],
  ['a string', 'digest', 'invalid-message'],
  ['an array', [digest()], 'invalid-message'],
  ['an unknown type', digest({ type: 'gossip' }), 'invalid-message'],
  ['no from', digest({ from: undefined }), 'invalid-message'],
  ['an empty to', digest({ to: '' }), 'invalid-message'],
  ['a from of 257 characters', digest({ from: 'x'.repeat(257) }), 'invalid-message'],
  ['an unknown want', digest({ want: 'all' }), 'invalid-message'],
  ['a digest without page', digest({ page: undefined }), 'invalid-message'],
  ['a numeric page bound', digest({ page: page([], 3 as unknown as string) }), 'invalid-message'],
  ['a page whose until is not after its after', digest({ page: page([], 'm', 'm') }), 'invalid-message'],
  ['versions not an array', digest({ page: { after: null, until: null, versions: {} } }), 'invalid-message'],
  ['versions out of order', digest({ page: page([{ node: 'd', version: 1 }, { node: 'c', version: 1 }]) }), 'invalid-message'],
  ['a node listed twice', digest({ page: page([{ node: 'c', version: 1 }, { node: 'c', version: 2 }]) }), 'invalid-message'],
  ['a version outside the range', digest({ page: page([{ node: 'c', version: 1 }], 'm') }), 'invalid-message'],
  ['a version 0', digest({ page: page([{ node: 'c', version: 0 }]) }), 'invalid-message'],
  ['a version beyond 2^52', digest({ page: page([{ node: 'c', version: 2 ** 53 }]) }), 'invalid-message'],
  ['a fractional version', digest({ page: page([{ node: 'c', version: 1.5 }]) }), 'invalid-message'],
  ['more versions than digestEntriesMax', digest({ page: page(Array.from({ length: limits.digestEntriesMax + 1 }, (_, i) => ({ node: `n${String(i).padStart(5, '0')}`, version: 1 }))) }), 'too-large'],
  ['deltas not an array', delta([], { deltas: {} }), 'invalid-message'],
  ['more deltas than DELTAS_PER_MESSAGE_MAX', delta([], { deltas: new Array(DELTAS_PER_MESSAGE_MAX + 1).fill({ node: 'c', after: 0, entries: [entry()] }) }), 'too-large'],
  ['a node named by two deltas', delta([], { deltas: [{ node: 'c', after: 0, entries: [entry()] }, { node: 'c', after: 0, entries: [entry()] }] }), 'invalid-message'],
  ['a node delta without entries', delta([]), 'invalid-message'],
  ['a negative after', delta([entry()], { deltas: [{ node: 'c', after: -1, entries: [entry()] }] }), 'invalid-message'],
  ['more entries than a node delta holds', delta(Array.from({ length: entriesPerDeltaMax(limits.keysPerNodeMax) + 1 }, (_, i) => entry({ key: `k${i}`, version: i + 1 }))), 'too-large'],
  ['a numeric key', delta([entry({ key: 7 })]), 'invalid-message'],
  ['a key over keyLengthMax', delta([entry({ key: 'k'.repeat(limits.keyLengthMax + 1) })]), 'invalid-message'],
  ['a value as a plain array', delta([entry({ value: [1] })]), 'invalid-message'],
  ['a value over valueBytesMax', delta([entry({ value: new Uint8Array(limits.valueBytesMax + 1) })]), 'too-large'],
  ['an entry at the delta\'s after', delta([entry()], { deltas: [{ node: 'c', after: 1, entries: [entry()] }] }), 'invalid-message'],
  ['entries out of version order', delta([entry({ key: 'x', version: 2 }), entry({ key: 'y', version: 2 })]), 'invalid-message'],
  ['a key twice in one node delta', delta([entry({ version: 1 }), entry({ version: 2 })]), 'invalid-message'],
  ['a floor with a value', delta([entry({ key: '' })]), 'invalid-message'],
  ['a floor after an entry', delta([entry({ version: 1 }), entry({ key: '', value: null, version: 2 })]), 'invalid-message'],
  ['an empty signature', delta([entry({ signature: new Uint8Array(0) })]), 'invalid-message'],
  ['a signature over 128 bytes', delta([entry({ signature: new Uint8Array(129) })]), 'too-large'],
  ['a signature as a string', delta([entry({ signature: 'sig' })]), 'invalid-message'],
  ['a negative age', delta([entry({ ageTicks: -1 })]), 'invalid-message'],
  ['an age beyond 2^31-1', delta([entry({ ageTicks: 2 ** 31 })]), 'invalid-message'],
  ['a delta page of the wrong shape', delta([entry()], { page: [] }), 'invalid-message'],
  ['more bytes than messageBytesMax', delta([], { deltas: Array.from({ length: 5 }, (_, i) => ({ node: `c${i}`, after: 0, entries: [entry({ value: new Uint8Array(limits.valueBytesMax) })] })) }), 'too-large']
]

describe('gossip/entry payload', () => {
  it('is unambiguous: length prefixes keep node/key boundaries, null and empty values, and versions apart', () => {
    const encode = (node: string, key: string, value: Uint8Array | null, version: number): string => Buffer.from(entryPayload(node, key, value, version)).toString('hex')
    const payloads = [
      encode('ab', 'c', null, 1),
      encode('a', 'bc', null, 1),
      encode('a', 'bc', new Uint8Array(0), 1),
      encode('a', 'bc', Uint8Array.of(0), 1),
      encode('a', 'bc', null, 2),
      encode('a', 'bc', null, 2 ** 32 + 1),
      encode('a', 'bc', null, 2 ** 52)
    ]
    expect(new Set(payloads).size).to.equal(payloads.length)
    expect(encode('a', 'bc', null, 2)).to.equal(encode('a', 'bc', null, 2))
  })

  it('starts with a domain prefix and ends with the version as 8 big-endian bytes', () => {
    const payload = entryPayload('n', 'k', Uint8Array.of(9), 2 ** 40 + 5)
    expect(new TextDecoder().decode(payload.subarray(0, 22))).to.equal('accord/gossip/entry/1\n')
    expect(Buffer.from(payload.subarray(-8)).readBigUInt64BE()).to.equal(2n ** 40n + 5n)
  })
})

describe('gossip/validation', () => {
  for (const [what, message, reason] of BAD) {
    it(`rejects ${what} (${reason})`, () => {
      const result = validateGossipMessage(message, limits)
      expect(result).to.be.instanceOf(InvalidMessageError)
      expect((result as InvalidMessageError).reason).to.equal(reason)
    })
  }

  it('accepts every well-formed message and keeps only the known fields', () => {
    const wire = { key: 'k', value: Uint8Array.of(1), version: 3, signature: new Uint8Array(64), ageTicks: 7 }
    const good: GossipMessage[] = [
      { type: 'digest', from: 'b', to: 'a', want: 'entries', page: { after: null, until: null, versions: [] } },
      { type: 'digest', from: 'b', to: 'a', want: 'both', page: { after: 'c', until: 'f', versions: [{ node: 'd', version: 2 }, { node: 'f', version: 2 ** 52 }] } },
      { type: 'digest', from: 'b', to: 'a', want: 'digest', page: { after: null, until: 'm', versions: [] } },
      { type: 'delta', from: 'b', to: 'a', page: null, deltas: [{ node: 'c', after: 2, entries: [wire] }] },
      {
        type: 'delta',
        from: 'b',
        to: 'a',
        page: { after: null, until: null, versions: [{ node: 'c', version: 3 }] },
        deltas: [{ node: 'c', after: 0, entries: [{ ...wire, key: '', value: null, version: 1 }, { ...wire, key: 'x', value: null, version: 2 }, wire] }]
      }
    ]
    for (const m of good) {
      const withExtra = { ...m, extra: 'dropped', ...(m.type === 'delta' ? { deltas: m.deltas.map(d => ({ ...d, extra: 1, entries: d.entries.map(e => ({ ...e, extra: 2 })) })) } : {}) }
      expect(validateGossipMessage(withExtra, limits)).to.deep.equal(m)
    }
  })

  it('refuses malformed input in step() without throwing or changing anything, and counts it', () => {
    const h = new GossipHarness()
    const a = h.add('a')
    a.set('k', Uint8Array.of(1))
    a.ready()
    const before = storeText(a)
    for (const [, message, reason] of BAD) {
      expect(a.step(message)).to.deep.include({ ok: false, reason })
    }
    expect(a.status().counters.invalidMessages).to.equal(BAD.length)
    expect(a.hasReady()).to.equal(false)
    expect(storeText(a)).to.equal(before)
  })

  it('refuses well-formed messages not meant for it, changing nothing', () => {
    const h = new GossipHarness()
    const a = h.add('a')
    const b = h.add('b')
    b.set('k', Uint8Array.of(1))
    const entries = b.snapshot().map(e => ({ key: e.key, value: e.value, version: e.version, signature: e.signature, ageTicks: 0 }))
    const message = { type: 'delta' as const, from: 'b', to: 'a', page: null, deltas: [{ node: 'b', after: 0, entries }] }
    expect(a.step({ ...message, to: 'z' })).to.deep.include({ ok: false, reason: 'wrong-recipient' })
    expect(a.step({ ...message, from: 'a' })).to.deep.include({ ok: false, reason: 'from-self' })
    expect(a.nodes()).to.deep.equal([])
    expect(a.status().counters.refusedMessages).to.equal(2)
    expect(a.step(message)).to.deep.equal({ ok: true })
    expect(a.get('b', 'k')).to.deep.equal(Uint8Array.of(1))
  })

  it('never throws on arbitrary input, and a rejected input changes nothing', () => {
    const h = new GossipHarness()
    const a = h.add('a')
    a.set('mine', Uint8Array.of(1))
    const id = fc.oneof(fc.constantFrom('a', 'b', 'c', ''), fc.string({ maxLength: 6 }), fc.integer())
    const num = fc.oneof(fc.integer({ min: -2, max: 6 }), fc.double(), fc.constant(2 ** 60), fc.string())
    const wire = fc.record({
      key: fc.oneof(fc.constantFrom('', 'k', 'mine'), fc.string({ maxLength: 4 }), fc.integer()),
      value: fc.oneof(fc.constant(null), fc.uint8Array({ maxLength: 4 }), fc.constant([1])),
      version: num,
      signature: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.constant('sig')),
      ageTicks: num
    }, { requiredKeys: [] })
    const nodeDelta = fc.record({ node: id, after: num, entries: fc.oneof(fc.array(wire, { maxLength: 3 }), fc.anything()) }, { requiredKeys: [] })
    const digestPage = fc.record({
      after: fc.oneof(fc.constant(null), id),
      until: fc.oneof(fc.constant(null), id),
      versions: fc.oneof(fc.array(fc.record({ node: id, version: num }), { maxLength: 3 }), fc.anything())
    }, { requiredKeys: [] })
    const message = fc.record({
      type: fc.oneof(fc.constantFrom('digest', 'delta'), fc.string()),
      from: id,
      to: fc.oneof(fc.constant('a'), id),
      want: fc.oneof(fc.constantFrom('entries', 'digest', 'both'), fc.string()),
      page: fc.oneof(fc.constant(null), digestPage, fc.anything()),
      deltas: fc.oneof(fc.array(nodeDelta, { maxLength: 3 }), fc.anything())
    }, { requiredKeys: [] })
    fc.assert(fc.property(fc.oneof(message, fc.anything()), input => {
      const before = storeText(a)
      const result = a.step(input)
      if (!result.ok) { expect(storeText(a)).to.equal(before) }
      a.checkInvariants()
      a.ready()
    }), { seed: SEED, numRuns: 2000 })
  })

  it('sizes messages by the byte model it checks them against', () => {
    const m = validateGossipMessage(delta([entry({ value: new Uint8Array(100) })]), limits) as GossipMessage
    // tag + from + to + count + page flag, node delta head, entry (key, value, version, signature, age)
    const expected = (1 + 3 + 3 + 2 + 1) + (3 + 8 + 2) + (3 + 1 + 4 + 100 + 8 + 2 + 64 + 4)
    expect(gossipMessageBytes(m)).to.equal(expected)
  })
})
