import { sha256 } from '@noble/hashes/sha2.js'
import { expect } from 'aegir/chai'
import { AssertionError } from '../../protocols/common/assert.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { KvStateMachine, encodeCommand } from '../../protocols/kv/index.ts'
import { mutate, randomBytes } from '../lib/bytes-fuzz.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { KvApplyResult, KvCommand, KvLimits, KvRejection } from '../../protocols/kv/index.ts'

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (value: Uint8Array | null): string | null => value === null ? null : new TextDecoder().decode(value)

/** Encoded commands, for brevity. */
const put = (clientId: string, sequence: number, key: string, value: string): Uint8Array =>
  encodeCommand({ type: 'put', session: { clientId, sequence }, key, value: bytes(value) })
const del = (clientId: string, sequence: number, key: string): Uint8Array =>
  encodeCommand({ type: 'delete', session: { clientId, sequence }, key })
const cas = (clientId: string, sequence: number, key: string, expected: string | null, value: string): Uint8Array =>
  encodeCommand({ type: 'cas', session: { clientId, sequence }, key, expected: expected === null ? null : bytes(expected), value: bytes(value) })

/** A state machine fed with consecutive indexes. */
class Replica {
  readonly sm: KvStateMachine
  constructor (limits: Partial<KvLimits> = {}) {
    this.sm = new KvStateMachine(limits)
  }

  apply (command: Uint8Array): KvApplyResult {
    return this.sm.apply(this.sm.appliedIndex + 1, command)
  }

  value (key: string): string | null {
    return text(this.sm.get(key))
  }
}

describe('kv state machine', () => {
  describe('commands', () => {
    it('put, get, overwrite', () => {
      const r = new Replica()
      expect(r.value('k')).to.equal(null)
      expect(r.apply(put('c', 1, 'k', 'v1'))).to.deep.equal({ ok: true, index: 1, type: 'put' })
      expect(r.value('k')).to.equal('v1')
      expect(r.apply(put('c', 2, 'k', 'v2'))).to.deep.equal({ ok: true, index: 2, type: 'put' })
      expect(r.value('k')).to.equal('v2')
      expect(r.sm.appliedIndex).to.equal(2)
    })

    it('delete says whether the key existed', () => {
      const r = new Replica()
      r.apply(put('c', 1, 'k', 'v'))
      expect(r.apply(del('c', 2, 'k'))).to.deep.equal({ ok: true, index: 2, type: 'delete', deleted: true })
      expect(r.value('k')).to.equal(null)
      expect(r.apply(del('c', 3, 'k'))).to.deep.equal({ ok: true, index: 3, type: 'delete', deleted: false })
    })

    it('cas swaps on a match and reports the current value on a mismatch', () => {
      const r = new Replica()
      expect(r.apply(cas('c', 1, 'k', 'x', 'y'))).to.deep.equal({ ok: false, index: 1, reason: 'cas-mismatch', current: null })
      expect(r.apply(cas('c', 2, 'k', null, 'a'))).to.deep.equal({ ok: true, index: 2, type: 'cas' })
      expect(r.apply(cas('c', 3, 'k', null, 'b'))).to.deep.equal({ ok: false, index: 3, reason: 'cas-mismatch', current: bytes('a') })
      expect(r.apply(cas('c', 4, 'k', 'a', 'b'))).to.deep.equal({ ok: true, index: 4, type: 'cas' })
      expect(r.value('k')).to.equal('b')
      expect(r.apply(cas('c', 5, 'k', '', 'z'))).to.deep.include({ reason: 'cas-mismatch' })
      expect(r.value('k')).to.equal('b')
    })

    it('distinguishes an empty value from an absent key', () => {
      const r = new Replica()
      r.apply(put('c', 1, 'k', ''))
      expect(r.sm.get('k')).to.deep.equal(new Uint8Array(0))
      expect(r.apply(cas('c', 2, 'k', null, 'x'))).to.deep.include({ reason: 'cas-mismatch', current: new Uint8Array(0) })
      expect(r.apply(cas('c', 3, 'k', '', 'x'))).to.deep.include({ ok: true, type: 'cas' })
    })

    it('treats an empty entry as a no-op and skip() as an entry applied elsewhere', () => {
      const r = new Replica()
      expect(r.apply(new Uint8Array(0))).to.deep.equal({ ok: true, index: 1, type: 'noop' })
      r.sm.skip(2)
      expect(r.sm.appliedIndex).to.equal(2)
      expect(r.sm.apply(5, put('c', 1, 'k', 'v'))).to.deep.include({ ok: true, index: 5 })
      expect(r.sm.stats()).to.deep.equal({ appliedIndex: 5, keys: 1, dataBytes: 2, sessions: 1 })
    })

    it('asserts that indexes increase (a caller bug, not bad input)', () => {
      const r = new Replica()
      r.apply(put('c', 1, 'k', 'v'))
      expect(() => r.sm.apply(1, put('c', 2, 'k', 'w'))).to.throw(AssertionError)
      expect(() => r.sm.apply(0, new Uint8Array(0))).to.throw(AssertionError)
      expect(() => r.sm.skip(1.5)).to.throw(AssertionError)
      expect(r.value('k')).to.equal('v')
    })

    it('returns copies, and holds a written value as a view into the entry bytes (which nobody may change)', () => {
      const r = new Replica()
      const entry = put('c', 1, 'k', 'abc')
      r.apply(entry)
      r.sm.get('k')?.fill(0)
      expect(r.value('k')).to.equal('abc')
      // the contract of apply(): no copy is made, so changing the entry shows
      entry.fill(0x7a, entry.length - 3)
      expect(r.value('k')).to.equal('zzz')
    })
  })

  describe('invalid entries in the log', () => {
    it('yield invalid-command deterministically, advance the index and change nothing', () => {
      const entries = [
        Uint8Array.from([0xff]),
        Uint8Array.from([1, 1, 1]),
        put('c', 1, 'k', 'v').subarray(0, 5),
        put('c', 0, 'k', 'v'), // sequence 0
        encodeCommand({ type: 'put', session: { clientId: 'c', sequence: 1 }, key: 'k', value: new Uint8Array(65) }) // over this replica's valueBytesMax
      ]
      const a = new Replica({ valueBytesMax: 64 })
      const b = new Replica({ valueBytesMax: 64 })
      for (const entry of entries) {
        const result = a.apply(entry)
        expect(result).to.deep.include({ ok: false, reason: 'invalid-command' })
        expect(b.apply(entry)).to.deep.equal(result)
      }
      expect(a.sm.stats()).to.deep.equal({ appliedIndex: entries.length, keys: 0, dataBytes: 0, sessions: 0 })
      expect(a.sm.snapshot()).to.deep.equal(b.sm.snapshot())
    })

    it('an invalid command does not consume its sequence number', () => {
      const r = new Replica({ valueBytesMax: 4 })
      expect(r.apply(put('c', 1, 'k', 'too long'))).to.deep.include({ reason: 'invalid-command' })
      expect(r.apply(put('c', 1, 'k', 'ok'))).to.deep.include({ ok: true, type: 'put' })
    })

    it('never throw on 5,000 random and 5,000 mutated entries', () => {
      const rng = createRng(11)
      const r = new Replica({ sessionsMax: 8 })
      const valid = [put('a', 1, 'k', 'v'), del('b', 1, 'k'), cas('c', 1, 'k', null, 'v'), cas('c', 2, 'k', 'v', 'w')]
      let applied = 0
      for (let i = 0; i < 10_000; i++) {
        const entry = i % 2 === 0
          ? randomBytes(rng, rng.intBetween(1, 30))
          : mutate(rng, valid[rng.intBetween(0, valid.length - 1)], valid)
        const result = r.apply(entry)
        expect(r.sm.appliedIndex).to.equal(i + 1)
        if (result.ok) { applied++ }
      }
      expect(r.sm.appliedIndex).to.equal(10_000)
      expect(applied).to.be.greaterThan(50)
      expect(r.sm.stats().sessions).to.be.at.most(8)
    })
  })

  describe('exactly-once sessions', () => {
    it('a retry returns the saved result and does not apply again', () => {
      const r = new Replica()
      const first = r.apply(put('alice', 1, 'k', 'from alice'))
      r.apply(put('bob', 1, 'k', 'from bob'))
      // alice's retry of sequence 1 arrives late: same answer, bob's write stands
      expect(r.apply(put('alice', 1, 'k', 'from alice'))).to.deep.equal(first)
      expect(r.value('k')).to.equal('from bob')
    })

    it('a retried cas keeps its outcome even though the state changed since', () => {
      const r = new Replica()
      r.apply(put('a', 1, 'k', 'v0'))
      const swapped = r.apply(cas('b', 1, 'k', 'v0', 'v1'))
      expect(swapped).to.deep.equal({ ok: true, index: 2, type: 'cas' })
      r.apply(put('a', 2, 'k', 'v0'))
      expect(r.apply(cas('b', 1, 'k', 'v0', 'v1'))).to.deep.equal(swapped)
      expect(r.value('k')).to.equal('v0')
    })

    it('a retried cas mismatch comes back without the value it saw', () => {
      const r = new Replica()
      r.apply(put('a', 1, 'k', 'now'))
      expect(r.apply(cas('b', 1, 'k', 'then', 'x'))).to.deep.equal({ ok: false, index: 2, reason: 'cas-mismatch', current: bytes('now') })
      expect(r.apply(cas('b', 1, 'k', 'then', 'x'))).to.deep.equal({ ok: false, index: 2, reason: 'cas-mismatch' })
    })

    it('a retried delete keeps its deleted flag', () => {
      const r = new Replica()
      r.apply(put('a', 1, 'k', 'v'))
      const deleted = r.apply(del('b', 1, 'k'))
      expect(r.apply(del('b', 1, 'k'))).to.deep.equal(deleted)
    })

    it('rejects an older sequence as stale', () => {
      const r = new Replica()
      r.apply(put('c', 1, 'k', 'v1'))
      r.apply(put('c', 2, 'k', 'v2'))
      expect(r.apply(put('c', 1, 'k', 'v1'))).to.deep.include({ ok: false, index: 3, reason: 'stale-sequence' })
      expect(r.value('k')).to.equal('v2')
    })

    it('allows gaps in a session sequence', () => {
      const r = new Replica()
      r.apply(put('c', 1, 'k', 'v1'))
      expect(r.apply(put('c', 5, 'k', 'v5'))).to.deep.include({ ok: true })
      expect(r.apply(put('c', 3, 'k', 'v3'))).to.deep.include({ reason: 'stale-sequence' })
    })

    it('a session starts at sequence 1: an unknown client with a later sequence is session-expired', () => {
      const r = new Replica()
      expect(r.apply(put('stranger', 2, 'k', 'v'))).to.deep.include({ ok: false, reason: 'session-expired' })
      expect(r.value('k')).to.equal(null)
      expect(r.sm.stats().sessions).to.equal(0)
    })

    it('the session table is bounded by sessionsMax and evicts the least recently used by index', () => {
      const r = new Replica({ sessionsMax: 3 })
      r.apply(put('a', 1, 'ka', '1')) // index 1
      r.apply(put('b', 1, 'kb', '1')) // index 2
      r.apply(put('c', 1, 'kc', '1')) // index 3
      r.apply(put('a', 2, 'ka', '2')) // index 4: a is now the most recent, b the least
      r.apply(put('d', 1, 'kd', '1')) // index 5: evicts b
      expect(r.sm.stats().sessions).to.equal(3)
      expect(r.apply(put('b', 2, 'kb', '2'))).to.deep.include({ reason: 'session-expired' })
      expect(r.apply(put('c', 2, 'kc', '2'))).to.deep.include({ ok: true })
      expect(r.apply(put('a', 3, 'ka', '3'))).to.deep.include({ ok: true })
      for (let i = 0; i < 50; i++) { r.apply(put(`extra-${i}`, 1, 'k', `${i}`)) }
      expect(r.sm.stats().sessions).to.equal(3)
    })

    it('a retry counts as use for the LRU order', () => {
      const r = new Replica({ sessionsMax: 2 })
      r.apply(put('a', 1, 'k', '1')) // index 1
      r.apply(put('b', 1, 'k', '2')) // index 2
      r.apply(put('a', 1, 'k', '1')) // index 3: retry touches a
      r.apply(put('c', 1, 'k', '3')) // evicts b, not a
      expect(r.apply(put('a', 1, 'k', '1'))).to.deep.include({ ok: true, index: 1 })
      expect(r.apply(put('b', 2, 'k', '2'))).to.deep.include({ reason: 'session-expired' })
    })

    it('an evicted client\'s very old retry is rejected as session-expired, never re-applied', () => {
      const r = new Replica({ sessionsMax: 2 })
      r.apply(put('old', 1, 'k', 'first'))
      r.apply(put('old', 2, 'k', 'second')) // the command that will be retried
      r.apply(put('x', 1, 'k', 'x'))
      r.apply(put('y', 1, 'k', 'y')) // evicts old
      const retried = r.apply(put('old', 2, 'k', 'second'))
      expect(retried).to.deep.include({ ok: false, reason: 'session-expired' })
      expect(r.value('k')).to.equal('y')
      // and the client cannot carry on in that session either
      expect(r.apply(put('old', 3, 'k', 'third'))).to.deep.include({ reason: 'session-expired' })
    })

    it('the documented gap: a sequence-1 retry after eviction starts a new session', () => {
      const r = new Replica({ sessionsMax: 1 })
      r.apply(put('old', 1, 'k', 'first'))
      r.apply(put('x', 1, 'k', 'x')) // evicts old
      expect(r.apply(put('old', 1, 'k', 'first'))).to.deep.include({ ok: true, index: 3 })
      expect(r.value('k')).to.equal('first')
    })
  })

  describe('data quota', () => {
    it('refuses writes that would exceed dataBytesMax, saves that outcome, and allows shrinking', () => {
      const r = new Replica({ dataBytesMax: 10 })
      expect(r.apply(put('c', 1, 'k1', '12345678'))).to.deep.include({ ok: true }) // 10 bytes
      expect(r.sm.stats().dataBytes).to.equal(10)
      const refused = r.apply(put('c', 2, 'k2', ''))
      expect(refused).to.deep.equal({ ok: false, index: 2, reason: 'quota-exceeded' })
      expect(r.apply(put('c', 2, 'k2', ''))).to.deep.equal(refused) // a retry gets the same answer
      expect(r.apply(cas('c', 3, 'k1', '12345678', '123456789'))).to.deep.include({ reason: 'quota-exceeded' })
      expect(r.apply(put('c', 4, 'k1', '1234'))).to.deep.include({ ok: true }) // shrinking is fine
      expect(r.apply(put('c', 5, 'k2', '12'))).to.deep.include({ ok: true })
      expect(r.sm.stats().dataBytes).to.equal(10)
      expect(r.apply(del('c', 6, 'k1'))).to.deep.include({ deleted: true })
      expect(r.sm.stats().dataBytes).to.equal(4)
    })

    it('counts keys in UTF-8 bytes', () => {
      const r = new Replica({ dataBytesMax: 4 })
      expect(r.apply(put('c', 1, '🔑', ''))).to.deep.include({ ok: true })
      expect(r.apply(put('c', 2, '🔑', 'x'))).to.deep.include({ reason: 'quota-exceeded' })
    })
  })

  describe('snapshots', () => {
    function populated (limits: Partial<KvLimits> = {}): Replica {
      const r = new Replica(limits)
      r.apply(put('a', 1, 'zeta', 'last key'))
      r.apply(put('b', 1, 'alpha', 'first key'))
      r.apply(put('a', 2, 'é', 'non-ascii'))
      r.apply(cas('c', 1, 'alpha', 'nope', 'x')) // a saved cas-mismatch
      r.apply(del('d', 1, 'missing'))
      r.apply(put('a', 3, 'empty', ''))
      r.sm.skip(10)
      return r
    }

    it('round-trips data, sessions and appliedIndex', () => {
      const source = populated()
      const target = new Replica()
      expect(target.sm.restore(source.sm.snapshot())).to.deep.equal({ ok: true })
      expect(target.sm.stats()).to.deep.equal(source.sm.stats())
      for (const key of ['zeta', 'alpha', 'é', 'empty', 'missing']) { expect(target.value(key)).to.equal(source.value(key)) }
      // sessions came along: retries get their saved results, stale ones are refused
      expect(target.apply(cas('c', 1, 'alpha', 'nope', 'x'))).to.deep.equal({ ok: false, index: 4, reason: 'cas-mismatch' })
      expect(target.apply(put('a', 2, 'é', 'non-ascii'))).to.deep.include({ reason: 'stale-sequence' })
      expect(target.apply(del('d', 1, 'missing'))).to.deep.equal({ ok: true, index: 5, type: 'delete', deleted: false })
    })

    it('is canonical: the same state gives the same bytes, whatever order it was built in', () => {
      const source = populated()
      const copy = new Replica()
      copy.sm.restore(source.sm.snapshot())
      expect(copy.sm.snapshot()).to.deep.equal(source.sm.snapshot())
      // the copy's maps are in snapshot order, the source's in apply order;
      // after the same further entries they still agree byte for byte
      for (const r of [source, copy]) {
        r.apply(put('e', 1, 'middle', 'm'))
        r.apply(del('a', 4, 'zeta'))
        r.apply(put('a', 5, 'zeta', 'back'))
      }
      expect(copy.sm.snapshot()).to.deep.equal(source.sm.snapshot())
      expect(new Replica().sm.snapshot()).to.deep.equal(new Replica().sm.snapshot())
    })

    it('orders keys by UTF-8 bytes, which UTF-16 order gets wrong past U+D7FF', () => {
      // UTF-16 puts U+1F600 (a surrogate pair, D83D DE00) before U+FF5E; UTF-8 after it
      const source = new Replica()
      const keys = ['z', '\u{1F600}', '\uFF5E', 'a', '\uD7FF']
      keys.forEach((key, i) => { source.apply(put(`k${i}`, 1, key, 'v')) })
      const copy = new Replica()
      expect(copy.sm.restore(source.sm.snapshot())).to.deep.equal({ ok: true }) // the decoder refuses keys out of byte order
      expect(copy.sm.snapshot()).to.deep.equal(source.sm.snapshot())
      const asciiOnly = new Replica()
      ;['b', 'a', 'c'].forEach((key, i) => { asciiOnly.apply(put(`k${i}`, 1, key, 'v')) })
      expect(new Replica().sm.restore(asciiOnly.sm.snapshot())).to.deep.equal({ ok: true })
    })

    it('restores the LRU order: eviction after a restore picks the same victim', () => {
      const source = new Replica({ sessionsMax: 3 })
      source.apply(put('a', 1, 'k', '1'))
      source.apply(put('b', 1, 'k', '2'))
      source.apply(put('c', 1, 'k', '3'))
      source.apply(put('a', 2, 'k', '4')) // b is now least recently used
      const copy = new Replica({ sessionsMax: 3 })
      copy.sm.restore(source.sm.snapshot())
      for (const r of [source, copy]) {
        r.apply(put('d', 1, 'k', '5'))
        expect(r.apply(put('b', 2, 'k', '6'))).to.deep.include({ reason: 'session-expired' })
        expect(r.apply(put('c', 2, 'k', '6'))).to.deep.include({ ok: true })
      }
      expect(copy.sm.snapshot()).to.deep.equal(source.sm.snapshot())
    })

    it('refuses a snapshot taken under different limits', () => {
      const snapshot = populated({ valueBytesMax: 100 }).sm.snapshot()
      const r = new Replica()
      const result = r.sm.restore(snapshot)
      expect(result.ok).to.equal(false)
      if (!result.ok) { expect(result.error).to.include('valueBytesMax = 100') }
    })

    it('detects every single-bit corruption and leaves the state untouched', () => {
      const snapshot = populated().sm.snapshot()
      const r = new Replica()
      r.apply(put('mine', 1, 'k', 'keep me'))
      const before = r.sm.snapshot()
      for (let bit = 0; bit < snapshot.length * 8; bit++) {
        const corrupt = snapshot.slice()
        corrupt[bit >> 3] ^= 1 << (bit & 7)
        expect(r.sm.restore(corrupt).ok, `bit ${bit}`).to.equal(false)
      }
      expect(r.sm.snapshot()).to.deep.equal(before)
    })

    it('refuses truncated, extended and foreign bytes', () => {
      const snapshot = populated().sm.snapshot()
      const r = new Replica()
      for (let length = 0; length < snapshot.length; length++) {
        expect(r.sm.restore(snapshot.subarray(0, length)).ok, `cut at ${length}`).to.equal(false)
      }
      expect(r.sm.restore(Uint8Array.from([...snapshot, 0])).ok).to.equal(false)
      expect(r.sm.restore(new Uint8Array(64)).ok).to.equal(false)
      expect(r.sm.restore('snapshot' as unknown as Uint8Array).ok).to.equal(false)
    })

    describe('validates content even under a correct checksum', () => {
      // Rebuild a snapshot body by hand and seal it with a valid checksum.
      const limits = { keyBytesMax: 8, valueBytesMax: 8, clientIdBytesMax: 4, sessionsMax: 2, dataBytesMax: 20 }
      const header = (appliedIndex: number): number[] => [0x41, 0x4b, 0x56, 0x53, 1, appliedIndex, 8, 8, 4, 2, 20]
      const str = (s: string): number[] => { const b = bytes(s); return [b.length, ...b] }
      const seal = (body: number[]): Uint8Array => {
        const b = Uint8Array.from(body)
        return Uint8Array.from([...b, ...sha256(b)])
      }
      const restore = (body: number[]): string => {
        const result = new KvStateMachine(limits).restore(seal(body))
        return result.ok ? 'ok' : result.error
      }

      it('accepts a well-formed hand-built snapshot', () => {
        expect(restore([...header(9), 2, ...str('a'), ...str('1'), ...str('b'), ...str('2'), 1, ...str('c'), 1, 9, 1, 9])).to.equal('ok')
      })

      const cases: Array<[string, number[], string]> = [
        ['keys out of order', [...header(9), 2, ...str('b'), ...str('1'), ...str('a'), ...str('2'), 0], 'out of order'],
        ['a repeated key', [...header(9), 2, ...str('a'), ...str('1'), ...str('a'), ...str('2'), 0], 'out of order or repeated'],
        ['an empty key', [...header(9), 1, 0, ...str('1'), 0], 'empty key'],
        ['an oversize key', [...header(9), 1, ...str('123456789'), ...str('1'), 0], 'more than 8'],
        ['an oversize value', [...header(9), 1, ...str('k'), ...str('123456789'), 0], 'more than 8'],
        ['data over the quota', [...header(9), 3, ...str('a'), ...str('1234567'), ...str('b'), ...str('1234567'), ...str('c'), ...str('1234567'), 0], 'dataBytesMax'],
        ['too many sessions', [...header(9), 0, 3, ...str('a'), 1, 1, 1, 1, ...str('b'), 1, 2, 1, 2, ...str('c'), 1, 3, 1, 3], 'more than sessionsMax'],
        ['a repeated session', [...header(9), 0, 2, ...str('a'), 1, 1, 1, 1, ...str('a'), 1, 2, 1, 2], 'repeated'],
        ['sessions out of LRU order', [...header(9), 0, 2, ...str('a'), 1, 5, 1, 5, ...str('b'), 1, 4, 1, 4], 'out of order'],
        ['a session used after appliedIndex', [...header(3), 0, 1, ...str('a'), 1, 4, 1, 4], 'beyond appliedIndex'],
        ['a session with sequence 0', [...header(9), 0, 1, ...str('a'), 0, 1, 1, 1], 'sequence 0'],
        ['a result index after lastIndex', [...header(9), 0, 1, ...str('a'), 1, 2, 1, 3], 'result index 3'],
        ['an unknown result code', [...header(9), 0, 1, ...str('a'), 1, 2, 7, 2], 'result code 7'],
        ['an unknown version', [0x41, 0x4b, 0x56, 0x53, 2, 9, 8, 8, 4, 2, 20, 0, 0], 'version 2'],
        ['trailing bytes', [...header(9), 0, 0, 0], 'trailing']
      ]
      for (const [name, body, message] of cases) {
        it(name, () => {
          expect(restore(body)).to.include(message)
        })
      }
    })

    it('never throws on 5,000 random and 5,000 mutated snapshots', () => {
      const rng = createRng(12)
      const valid = [populated().sm.snapshot(), new Replica().sm.snapshot()]
      const r = new Replica()
      for (let i = 0; i < 10_000; i++) {
        const input = i % 2 === 0 ? randomBytes(rng, rng.intBetween(0, 80)) : mutate(rng, valid[i % 4 === 1 ? 0 : 1], valid)
        expect(r.sm.restore(input).ok).to.be.a('boolean')
      }
    })
  })

  describe('against a reference model', () => {
    it('random workloads with retries, stale and expired sessions, snapshots mid-way (50 seeds)', () => {
      for (let seed = 0; seed < 50; seed++) { runAgainstModel(createRng(seed), seed) }
    })
  })
})

/**
 * Clients issue random commands (some over the value limit), retry some
 * (soon or much later, so some retries are stale), and the log is applied to
 * a state machine that is snapshotted and restored into a fresh one at
 * random points. A tiny reference model (Map + per-client last sequence; no
 * eviction, the clients are fewer than sessionsMax) predicts every result.
 */
function runAgainstModel (rng: Rng, seed: number): void {
  const limits = { sessionsMax: 16, valueBytesMax: 8 }
  let sm = new KvStateMachine(limits)
  const model = new Map<string, string>()
  const sessions = new Map<string, { sequence: number, result: KvApplyResult }>()
  const clients = ['c0', 'c1', 'c2', 'c3', 'c4']
  const nextSequence = new Map(clients.map(c => [c, 1]))
  const sent: KvCommand[] = []
  const keys = ['k0', 'k1', 'k2']
  const values = ['', 'a', 'b', 'long-val']
  const pick = <T>(items: T[]): T => items[rng.intBetween(0, items.length - 1)]

  for (let step = 0; step < 300; step++) {
    let command: KvCommand
    if (rng.chance(0.15) && sent.length > 0) {
      command = pick(sent) // a retry, or a stale replay
    } else {
      const clientId = pick(clients)
      const sequence = nextSequence.get(clientId) ?? 1
      const session = { clientId, sequence }
      const key = pick(keys)
      const value = bytes(pick(values) + (rng.chance(0.1) ? '-too-long' : ''))
      const kinds: KvCommand[] = [
        { type: 'put', session, key, value },
        { type: 'delete', session, key },
        { type: 'cas', session, key, expected: rng.chance(0.3) ? null : bytes(pick(values)), value }
      ]
      command = pick(kinds)
      // an invalid command does not consume its sequence
      if (command.type === 'delete' || command.value.length <= limits.valueBytesMax) { nextSequence.set(clientId, sequence + 1) }
      sent.push(command)
    }

    const index = sm.appliedIndex + 1
    const got = sm.apply(index, encodeCommand(command))
    const expected = predict(command, index)
    if ('reason' in expected && (expected.reason === 'invalid-command' || expected.reason === 'stale-sequence' || expected.reason === 'session-expired')) {
      expect(got, `seed ${seed} step ${step}`).to.deep.include({ ok: false, index, reason: expected.reason })
    } else {
      expect(got, `seed ${seed} step ${step}`).to.deep.equal(expected)
    }

    if (rng.chance(0.05)) {
      const copy = new KvStateMachine(limits)
      expect(copy.restore(sm.snapshot()).ok).to.equal(true)
      expect(copy.snapshot()).to.deep.equal(sm.snapshot())
      sm = copy
    }
  }
  for (const key of keys) { expect(text(sm.get(key)), `seed ${seed} key ${key}`).to.equal(model.get(key) ?? null) }

  function predict (command: KvCommand, index: number): KvApplyResult {
    const reject = (reason: KvRejection): KvApplyResult => ({ ok: false, index, reason, message: '' })
    if ((command.type === 'put' || command.type === 'cas') && command.value.length > limits.valueBytesMax) { return reject('invalid-command') }
    const { clientId, sequence } = command.session
    const session = sessions.get(clientId)
    if (session === undefined && sequence !== 1) { return reject('session-expired') }
    if (session !== undefined && sequence < session.sequence) { return reject('stale-sequence') }
    if (session !== undefined && sequence === session.sequence) {
      const saved = { ...session.result }
      if ('current' in saved) { delete saved.current }
      return saved
    }
    const current = model.get(command.key) ?? null
    let result: KvApplyResult
    if (command.type === 'put') {
      model.set(command.key, text(command.value) ?? '')
      result = { ok: true, index, type: 'put' }
    } else if (command.type === 'delete') {
      model.delete(command.key)
      result = { ok: true, index, type: 'delete', deleted: current !== null }
    } else if (current !== text(command.expected)) {
      result = { ok: false, index, reason: 'cas-mismatch', current: current === null ? null : bytes(current) }
    } else {
      model.set(command.key, text(command.value) ?? '')
      result = { ok: true, index, type: 'cas' }
    }
    sessions.set(clientId, { sequence, result })
    return result
  }
}
