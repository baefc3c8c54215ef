import { expect } from 'aegir/chai'
import { encode as cborEncode } from 'cborg'
import fc from 'fast-check'
import {
  decodeFrame, decodeMessage, DECODE_DEPTH_MAX, DECODE_ITEMS_MAX, encodeFrame, encodeMessage, FRAME_BYTES_MAX,
  snapshotFrames, WIRE_VERSION
} from '../../node/raft/codec.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { COUNT_MAX, InvalidMessageError, MESSAGE_ENTRIES_MAX, MESSAGE_TYPES } from '../../protocols/raft/index.ts'
import { mutate, randomBytes } from '../lib/bytes-fuzz.ts'
import type { Frame } from '../../node/raft/codec.ts'
import type { ConfState, Entry, Message, SnapshotMessage } from '../../protocols/raft/index.ts'

const SEED = 20240611
const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const conf: ConfState = { voters: ['a', 'b', 'c'], votersOutgoing: [], learners: ['d'], learnersNext: [], autoLeave: false }
const jointConf: ConfState = { voters: ['a', 'b', 'e'], votersOutgoing: ['a', 'b', 'c'], learners: [], learnersNext: ['c'], autoLeave: true }

const snapshotMessage = (data: Uint8Array, c: ConfState = conf): SnapshotMessage =>
  ({ type: 'snapshot', from: 'a', to: 'd', term: 3, snapshot: { meta: { index: 6, term: 3, conf: c }, data } })

/** One or more samples of every message type in protocols/raft/types.ts. */
const SAMPLES: Message[] = [
  {
    type: 'append',
    from: 'a',
    to: 'b',
    term: 3,
    prevIndex: 4,
    prevTerm: 2,
    commit: 4,
    entries: [{ term: 3, index: 5, type: 'normal', data: enc('x') }, { term: 3, index: 6, type: 'conf-change', data: new Uint8Array([0, 1, 255]) }]
  },
  { type: 'append', from: 'a', to: 'b', term: 1, prevIndex: 0, prevTerm: 0, commit: 0, entries: [] },
  { type: 'append-response', from: 'b', to: 'a', term: 3, index: 6, reject: false, rejectHint: 0, hintTerm: 0 },
  { type: 'append-response', from: 'b', to: 'a', term: 3, index: 6, reject: true, rejectHint: 3, hintTerm: 2 },
  { type: 'vote', from: 'c', to: 'a', term: 4, lastIndex: 6, lastTerm: 3, transfer: false },
  { type: 'pre-vote', from: 'c', to: 'a', term: 5, lastIndex: 6, lastTerm: 3, transfer: true },
  { type: 'vote-response', from: 'a', to: 'c', term: 4, reject: false },
  { type: 'pre-vote-response', from: 'a', to: 'c', term: 5, reject: true },
  { type: 'heartbeat', from: 'a', to: 'b', term: 3, commit: 6, readRound: 9 },
  { type: 'heartbeat', from: 'a', to: 'b', term: COUNT_MAX, commit: COUNT_MAX, readRound: 2 ** 32 },
  { type: 'heartbeat-response', from: 'b', to: 'a', term: 3, readRound: 9 },
  snapshotMessage(enc('state machine bytes')),
  snapshotMessage(new Uint8Array(0), jointConf),
  { type: 'timeout-now', from: 'a', to: 'b', term: 3 },
  { type: 'read-index', from: 'b', to: 'a', term: 3, context: new Uint8Array(16).fill(7) },
  { type: 'read-index-response', from: 'a', to: 'b', term: 3, index: 6, context: new Uint8Array(0) },
  { type: 'heartbeat', from: '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo', to: 'ünïcødé ✓ 節点', term: 1, commit: 0, readRound: 0 }
]

const SAMPLE_FRAMES: Uint8Array[] = [
  ...SAMPLES.map(encodeMessage),
  ...snapshotFrames(snapshotMessage(new Uint8Array(300).fill(1)), 128)
]

interface RawAppend {
  from: string
  to: string
  prevIndex: number
  prevTerm: number
  termStep: number
  commit: number
  entries: Array<{ step: number, type: 'normal' | 'conf-change', data: Uint8Array }>
}

/** An append whose entry indexes follow prevIndex and whose terms never decrease. */
function consistentAppend ({ from, to, prevIndex, prevTerm, termStep, commit, entries }: RawAppend): Message {
  let term = prevTerm
  const es: Entry[] = []
  for (const [i, e] of entries.entries()) {
    term += e.step
    es.push({ term, index: prevIndex + 1 + i, type: e.type, data: e.data })
  }
  return { type: 'append', from, to, term: term + termStep, prevIndex, prevTerm, commit, entries: es }
}

/** The decoder's contract on any input: no throw; a success re-encodes to exactly the input. */
function checkDecodeContract (bytes: Uint8Array): ReturnType<typeof decodeFrame> {
  const result = decodeFrame(bytes)
  if (result.ok) {
    expect(encodeFrame(result.frame)).to.deep.equal(bytes)
  } else {
    expect(result.error).to.be.a('string')
  }
  return result
}

/** cborg-encodes an arbitrary wire object, bypassing our encoder's checks. */
function rawFrame (wire: unknown): Uint8Array {
  return cborEncode(wire)
}

function hex (s: string): Uint8Array {
  return Uint8Array.from(s.match(/../g) ?? [], b => parseInt(b, 16))
}

describe('raft codec', () => {
  describe('round trip', () => {
    it('the samples cover every message type', () => {
      expect(new Set(SAMPLES.map(m => m.type))).to.deep.equal(new Set(MESSAGE_TYPES))
    })

    for (const [i, message] of SAMPLES.entries()) {
      it(`${message.type} #${i} decodes to an equal message`, () => {
        const bytes = encodeMessage(message)
        expect(bytes.byteLength).to.be.at.most(FRAME_BYTES_MAX)
        const decoded = decodeMessage(bytes)
        expect(decoded).to.deep.equal({ ok: true, message })
      })
    }

    it('random heartbeats, votes, read-index and appends round-trip (fast-check, seeded)', () => {
      const id = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 64 })
      const count = fc.integer({ min: 0, max: COUNT_MAX })
      const heartbeat = fc.record({ type: fc.constant('heartbeat' as const), from: id, to: id, term: count, commit: count, readRound: count })
      const vote = fc.record({ type: fc.constantFrom('vote' as const, 'pre-vote' as const), from: id, to: id, term: fc.integer({ min: 1, max: 2 ** 40 }), lastIndex: count, lastTerm: fc.constant(0), transfer: fc.boolean() })
      const readIndex = fc.record({ type: fc.constant('read-index' as const), from: id, to: id, term: count, context: fc.uint8Array({ maxLength: 1024 }) })
      const append = fc.record({
        from: id,
        to: id,
        prevIndex: fc.integer({ min: 1, max: 2 ** 40 }),
        prevTerm: fc.integer({ min: 1, max: 100 }),
        termStep: fc.integer({ min: 0, max: 100 }),
        commit: count,
        entries: fc.array(fc.record({ step: fc.integer({ min: 0, max: 1 }), type: fc.constantFrom('normal' as const, 'conf-change' as const), data: fc.uint8Array({ maxLength: 64 }) }), { maxLength: 20 })
      }).map(consistentAppend)
      fc.assert(fc.property(fc.oneof(heartbeat, vote, readIndex, append), (message: Message) => {
        const bytes = encodeMessage(message)
        expect(decodeMessage(bytes)).to.deep.equal({ ok: true, message })
        expect(encodeMessage(message)).to.deep.equal(bytes)
      }), { seed: SEED, numRuns: 500 })
    })

    it('a snapshot travels as a begin frame and chunks that reassemble to the original', () => {
      const data = randomBytes(createRng(SEED), 10_000)
      const message = snapshotMessage(data)
      const frames = [...snapshotFrames(message, 4096)]
      expect(frames).to.have.length(1 + 3)
      const decoded = frames.map(f => decodeFrame(f))
      const [begin, ...chunks] = decoded.map(d => { if (!d.ok) { throw new Error(d.error) } return d.frame })
      expect(begin).to.deep.include({ kind: 'snapshot-begin', dataBytes: 10_000 })
      expect((begin as Frame & { kind: 'snapshot-begin' }).message.snapshot.data).to.have.length(0)
      const parts = chunks.map(c => (c as Frame & { kind: 'snapshot-chunk' }).data)
      expect(parts.map(p => p.byteLength)).to.deep.equal([4096, 4096, 1808])
      const whole = new Uint8Array(10_000)
      let at = 0
      for (const p of parts) { whole.set(p, at); at += p.byteLength }
      expect(whole).to.deep.equal(data)
    })

    it('an empty snapshot is a begin frame alone', () => {
      expect([...snapshotFrames(snapshotMessage(new Uint8Array(0)))]).to.have.length(1)
    })

    it('the largest legal MsgApp (MESSAGE_ENTRIES_MAX entries) fits the frame and the item bound', () => {
      const entries: Entry[] = Array.from({ length: MESSAGE_ENTRIES_MAX }, (_, i) => ({ term: 2, index: 11 + i, type: 'normal', data: new Uint8Array(0) }))
      const message: Message = { type: 'append', from: 'a', to: 'b', term: 2, prevIndex: 10, prevTerm: 2, commit: 10, entries }
      const bytes = encodeMessage(message)
      expect(bytes.byteLength).to.be.below(FRAME_BYTES_MAX)
      const decoded = decodeMessage(bytes)
      expect(decoded.ok).to.equal(true)
    })
  })

  describe('determinism', () => {
    it('field order does not change the bytes', () => {
      for (const message of SAMPLES) {
        const reversed = Object.fromEntries(Object.entries(message).reverse()) as unknown as Message
        expect(encodeMessage(reversed)).to.deep.equal(encodeMessage(message))
      }
    })

    it('decode then encode gives back the same bytes', () => {
      for (const bytes of SAMPLE_FRAMES) {
        const decoded = decodeFrame(bytes)
        if (!decoded.ok) { throw new Error(decoded.error) }
        expect(encodeFrame(decoded.frame)).to.deep.equal(bytes)
      }
    })

    it('unknown fields of an outbound message are not written', () => {
      const message = { ...SAMPLES[8], note: 'internal' } as unknown as Message
      expect(encodeMessage(message)).to.deep.equal(encodeMessage(SAMPLES[8]))
    })

    it('an invalid outbound message is a caller bug and throws', () => {
      expect(() => encodeMessage({ ...SAMPLES[8], term: -1 } as unknown as Message)).to.throw(InvalidMessageError)
    })
  })

  describe('rejects bad input without throwing', () => {
    const heartbeat = { type: 'heartbeat', from: 'a', to: 'b', term: 3, commit: 6, readRound: 9 }
    const good = encodeMessage(heartbeat as Message)
    const cases: Array<[string, Uint8Array, string]> = [
      ['empty input', new Uint8Array(0), 'cbor'],
      ['a bare integer', rawFrame(7), 'shape'],
      ['an array', rawFrame([WIRE_VERSION, 'message', heartbeat]), 'shape'],
      ['a byte string', rawFrame(new Uint8Array(4)), 'shape'],
      ['no version', rawFrame({ kind: 'message', message: heartbeat }), 'shape'],
      ['a future version', rawFrame({ v: 2, kind: 'message', message: heartbeat }), 'version'],
      ['an unknown kind', rawFrame({ v: 1, kind: 'gossip', message: heartbeat }), 'shape'],
      ['an extra envelope field', rawFrame({ v: 1, kind: 'message', message: heartbeat, x: 1 }), 'shape'],
      ['an extra message field', rawFrame({ v: 1, kind: 'message', message: { ...heartbeat, x: 1 } }), 'non-canonical'],
      ['a missing message field', rawFrame({ v: 1, kind: 'message', message: { type: 'heartbeat', from: 'a', to: 'b', term: 3, readRound: 9 } }), 'invalid-message'],
      ['an undefined field', rawFrame({ v: 1, kind: 'message', message: { ...heartbeat, commit: undefined } }), 'cbor'],
      ['a message of the wrong shape', rawFrame({ v: 1, kind: 'message', message: { ...heartbeat, term: 'three' } }), 'invalid-message'],
      ['a float where an integer belongs', rawFrame({ v: 1, kind: 'message', message: { ...heartbeat, commit: 6.5 } }), 'invalid-message'],
      ['a negative term', rawFrame({ v: 1, kind: 'message', message: { ...heartbeat, term: -3 } }), 'invalid-message'],
      ['trailing bytes', Uint8Array.from([...good, 0]), 'cbor'],
      ['two frames in one', Uint8Array.from([...good, ...good]), 'cbor'],
      ['a non-minimal integer (strict)', hex('1900' + '07'), 'cbor'],
      ['an indefinite-length map', hex('bf6176' + '01' + 'ff'), 'cbor'],
      ['an indefinite-length byte string', hex('5f4101ff'), 'cbor'],
      ['a tag', hex('c1' + '1a00000001'), 'cbor'],
      ['undefined', hex('f7'), 'cbor'],
      ['NaN', hex('f97e00'), 'cbor'],
      ['Infinity', hex('f97c00'), 'cbor'],
      ['a 64-bit integer beyond 2^53', hex('1b0020000000000000'), 'cbor'],
      ['a duplicate map key', hex('a2' + '6176' + '01' + '6176' + '01'), 'cbor'],
      ['a non-string map key', hex('a1' + '01' + '01'), 'cbor'],
      ['a byte string claiming 4 GiB', hex('5affffffff' + '00'.repeat(16)), 'cbor'],
      ['a byte string claiming 2^53 bytes', hex('5b001fffffffffffff' + '00'.repeat(16)), 'cbor'],
      ['a text string claiming 4 GiB', hex('7affffffff' + '61'.repeat(16)), 'cbor'],
      ['an array claiming 2^32 items', hex('9affffffff' + '00'.repeat(16)), 'cbor'],
      ['a map claiming 2^53 entries', hex('bb001fffffffffffff' + '00'.repeat(16)), 'cbor'],
      ['nesting deeper than DECODE_DEPTH_MAX', new Uint8Array(DECODE_DEPTH_MAX + 1).fill(0x81), 'too-complex'],
      ['a frame above FRAME_BYTES_MAX', new Uint8Array(FRAME_BYTES_MAX + 1), 'too-large'],
      ['a snapshot-begin with data', rawFrame({ v: 1, kind: 'snapshot-begin', message: snapshotMessage(enc('x')), dataBytes: 1 }), 'shape'],
      ['a snapshot-begin with a negative size', rawFrame({ v: 1, kind: 'snapshot-begin', message: snapshotMessage(new Uint8Array(0)), dataBytes: -1 }), 'shape'],
      ['a snapshot-begin carrying a heartbeat', rawFrame({ v: 1, kind: 'snapshot-begin', message: heartbeat, dataBytes: 1 }), 'shape'],
      ['an empty snapshot chunk', rawFrame({ v: 1, kind: 'snapshot-chunk', data: new Uint8Array(0) }), 'shape'],
      ['a snapshot chunk of text', rawFrame({ v: 1, kind: 'snapshot-chunk', data: 'abc' }), 'shape'],
      ['a snapshot with a duplicated voter', rawFrame({ v: 1, kind: 'message', message: snapshotMessage(enc('x'), { ...conf, voters: ['a', 'a', 'b'] }) }), 'non-canonical']
    ]
    for (const [what, bytes, reason] of cases) {
      it(`${what} (${reason})`, () => {
        const result = decodeFrame(bytes)
        expect(result.ok).to.equal(false)
        if (!result.ok) { expect(result.reason).to.equal(reason) }
      })
    }

    it('unsorted map keys are refused as non-canonical', () => {
      // cborg sorts keys on encode (shortest first), so build the map by hand with "message" before "kind"
      const inner = rawFrame(heartbeat)
      const bytes = Uint8Array.from([0xa3, ...rawFrame('v'), 0x01, ...rawFrame('message'), ...inner, ...rawFrame('kind'), ...rawFrame('message')])
      const result = decodeFrame(bytes)
      expect(result.ok).to.equal(false)
      if (!result.ok) { expect(result.reason).to.equal('non-canonical') }
    })

    it('decodeMessage refuses snapshot frames', () => {
      const [begin] = snapshotFrames(snapshotMessage(enc('abc')))
      expect(decodeMessage(begin)).to.include({ ok: false, reason: 'shape' })
    })

    it('a frame of a million tiny maps is cut off at DECODE_ITEMS_MAX', () => {
      const bytes = new Uint8Array(DECODE_ITEMS_MAX + 16).fill(0xa0)
      bytes.set([0x9a, 0x00, 0x20, 0x00, 0x00]) // an array of 2^21 items
      expect(decodeFrame(bytes)).to.include({ ok: false, reason: 'too-complex' })
    })
  })

  describe('fuzz (seeded; a failure prints its seed and path)', () => {
    it('random bytes', () => {
      fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), bytes => { checkDecodeContract(bytes) }), { seed: SEED, numRuns: 3000 })
    })

    it('random bytes behind a valid envelope prefix', () => {
      const prefixes = SAMPLE_FRAMES.map(f => f.subarray(0, Math.max(1, f.byteLength >> 1)))
      fc.assert(fc.property(fc.constantFrom(...prefixes), fc.uint8Array({ maxLength: 512 }), (prefix, tail) => {
        checkDecodeContract(Uint8Array.from([...prefix, ...tail]))
      }), { seed: SEED, numRuns: 3000 })
    })

    it('every truncation of every valid frame is rejected', () => {
      for (const frame of SAMPLE_FRAMES) {
        for (let length = 0; length < frame.byteLength; length++) {
          const result = checkDecodeContract(frame.subarray(0, length))
          expect(result.ok, `prefix of ${length}/${frame.byteLength} bytes`).to.equal(false)
        }
      }
    })

    it('bit flips of valid frames never throw and only yield canonical, valid frames', () => {
      fc.assert(fc.property(fc.nat({ max: SAMPLE_FRAMES.length - 1 }), fc.nat(), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 1, max: 4 }), (which, at, bit, flips) => {
        const bytes = Uint8Array.from(SAMPLE_FRAMES[which])
        for (let i = 0; i < flips; i++) { bytes[(at + i * 7919) % bytes.byteLength] ^= 1 << ((bit + i) % 8) }
        checkDecodeContract(bytes)
      }), { seed: SEED, numRuns: 5000 })
    })

    it('insertions, deletions and splices (test/lib/bytes-fuzz) never throw', () => {
      const rng = createRng(SEED)
      for (let i = 0; i < 5000; i++) {
        let bytes = SAMPLE_FRAMES[rng.intBetween(0, SAMPLE_FRAMES.length - 1)]
        for (let edits = rng.intBetween(1, 4); edits > 0; edits--) { bytes = mutate(rng, bytes, SAMPLE_FRAMES) }
        checkDecodeContract(bytes)
      }
    })

    it('wrong types in any field are rejected', () => {
      type Kind = 'integer' | 'float' | 'string' | 'boolean' | 'null' | 'bytes' | 'array' | 'map'
      const kindOf = (v: unknown): Kind => {
        if (v === null) { return 'null' }
        if (v instanceof Uint8Array) { return 'bytes' }
        if (Array.isArray(v)) { return 'array' }
        if (typeof v === 'number') { return Number.isInteger(v) ? 'integer' : 'float' }
        if (typeof v === 'string') { return 'string' }
        if (typeof v === 'boolean') { return 'boolean' }
        return 'map'
      }
      const values = fc.oneof(
        fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }).filter(d => !Number.isInteger(d)), fc.string(), fc.boolean(), fc.constant(null),
        fc.uint8Array({ maxLength: 8 }), fc.array(fc.integer(), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 4 }), fc.integer(), { maxKeys: 3 })
      )
      // every path to a leaf or container inside the wire object
      const paths = (value: unknown, prefix: string[] = []): string[][] => {
        const kind = kindOf(value)
        if (kind !== 'map' && kind !== 'array') { return [prefix] }
        const children = Object.entries(value as object).flatMap(([k, v]) => paths(v, [...prefix, k]))
        return prefix.length === 0 ? children : [prefix, ...children]
      }
      const wires = SAMPLES.map(message => ({ v: WIRE_VERSION, kind: 'message', message }))
      const targets = wires.flatMap((wire, w) => paths(wire).map(path => ({ w, path })))
      fc.assert(fc.property(fc.constantFrom(...targets), values, ({ w, path }, replacement) => {
        const wire = structuredClone(wires[w]) as Record<string, unknown>
        let parent = wire as Record<string, unknown>
        for (const key of path.slice(0, -1)) { parent = parent[key] as Record<string, unknown> }
        const last = path[path.length - 1]
        fc.pre(kindOf(parent[last]) !== kindOf(replacement))
        parent[last] = replacement
        const result = checkDecodeContract(rawFrame(wire))
        expect(result.ok, `${path.join('.')} = ${fc.stringify(replacement)}`).to.equal(false)
      }), { seed: SEED, numRuns: 3000 })
    })

    it('huge declared lengths anywhere in a frame allocate nothing', () => {
      const headers = ['5affffffff', '5b001fffffffffffff', '7affffffff', '9affffffff', 'baffffffff', '59ffff', '99ffff']
      const before = process.memoryUsage().arrayBuffers
      fc.assert(fc.property(fc.nat({ max: SAMPLE_FRAMES.length - 1 }), fc.nat(), fc.constantFrom(...headers), (which, at, header) => {
        const frame = SAMPLE_FRAMES[which]
        const cut = at % frame.byteLength
        const bytes = Uint8Array.from([...frame.subarray(0, cut), ...hex(header), ...frame.subarray(cut)])
        const result = checkDecodeContract(bytes)
        expect(result.ok).to.equal(false)
      }), { seed: SEED, numRuns: 2000 })
      // a decoder that believed any of these lengths would have allocated gigabytes
      expect(process.memoryUsage().arrayBuffers - before).to.be.below(64 * 1024 * 1024)
    })
  })
})
