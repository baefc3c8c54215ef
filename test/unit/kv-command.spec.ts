import { expect } from 'aegir/chai'
import { AssertionError } from '../../protocols/common/assert.ts'
import { createRng } from '../../protocols/common/rng.ts'
import {
  KV_DEFAULTS,
  commandBytesMax,
  decodeCommand,
  encodeCommand,
  resolveKvLimits,
  validateCommand
} from '../../protocols/kv/index.ts'
import { mutate, randomBytes } from '../lib/bytes-fuzz.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { KvCommand } from '../../protocols/kv/index.ts'

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const session = { clientId: 'c1', sequence: 1 }

const samples: KvCommand[] = [
  { type: 'put', session, key: 'k', value: bytes('v') },
  { type: 'put', session: { clientId: 'client-é', sequence: 2 ** 53 - 1 }, key: 'ключ/🔑', value: new Uint8Array(0) },
  { type: 'put', session, key: '\uFEFFbom-first', value: new Uint8Array(300).fill(7) },
  { type: 'delete', session: { clientId: 'x', sequence: 128 }, key: 'gone' },
  { type: 'cas', session, key: 'k', expected: null, value: bytes('first') },
  { type: 'cas', session, key: 'k', expected: bytes('old'), value: bytes('new') },
  { type: 'cas', session, key: 'k', expected: new Uint8Array(0), value: new Uint8Array(0) }
]

function decodeOk (encoded: Uint8Array): KvCommand {
  const decoded = decodeCommand(encoded)
  if (!decoded.ok) { throw new Error(decoded.error) }
  return decoded.command
}

describe('kv command encoding', () => {
  it('round-trips every command shape', () => {
    for (const command of samples) {
      expect(decodeOk(encodeCommand(command))).to.deep.equal(command)
    }
  })

  it('has a stable byte layout (version, type, clientId, sequence, key, payload)', () => {
    const put = encodeCommand({ type: 'put', session: { clientId: 'c', sequence: 300 }, key: 'k', value: bytes('vv') })
    expect([...put]).to.deep.equal([1, 1, 1, 0x63, 0xac, 0x02, 1, 0x6b, 2, 0x76, 0x76])
    const del = encodeCommand({ type: 'delete', session: { clientId: 'c', sequence: 1 }, key: 'k' })
    expect([...del]).to.deep.equal([1, 2, 1, 0x63, 1, 1, 0x6b])
    const casAbsent = encodeCommand({ type: 'cas', session: { clientId: 'c', sequence: 1 }, key: 'k', expected: null, value: bytes('v') })
    expect([...casAbsent]).to.deep.equal([1, 3, 1, 0x63, 1, 1, 0x6b, 0, 1, 0x76])
    const cas = encodeCommand({ type: 'cas', session: { clientId: 'c', sequence: 1 }, key: 'k', expected: bytes('e'), value: bytes('v') })
    expect([...cas]).to.deep.equal([1, 3, 1, 0x63, 1, 1, 0x6b, 1, 1, 0x65, 1, 0x76])
  })

  it('returns views into the input rather than copies', () => {
    const encoded = encodeCommand(samples[0])
    const command = decodeOk(encoded)
    if (command.type !== 'put') { throw new Error('expected put') }
    expect(command.value.buffer).to.equal(encoded.buffer)
  })

  it('refuses to encode strings that are not well-formed UTF-16', () => {
    expect(() => encodeCommand({ type: 'delete', session, key: 'bad\uD800' })).to.throw(AssertionError)
    expect(() => encodeCommand({ type: 'delete', session: { clientId: '\uDC00', sequence: 1 }, key: 'k' })).to.throw(AssertionError)
  })

  describe('rejects malformed bytes with an error, never an exception', () => {
    const valid = encodeCommand(samples[5])
    const cases: Array<[string, Uint8Array, string]> = [
      ['empty input', new Uint8Array(0), 'truncated before version'],
      ['an unknown version', Uint8Array.from([2, 1]), 'unsupported command version 2'],
      ['an unknown type', Uint8Array.from([1, 9, 1, 0x63, 1, 1, 0x6b]), 'unknown command type 9'],
      ['trailing bytes', Uint8Array.from([...valid, 0]), '1 trailing bytes'],
      ['a non-minimal varint', Uint8Array.from([1, 2, 1, 0x63, 0x81, 0x00, 1, 0x6b]), 'not in shortest form'],
      ['a varint above 2^53 - 1', Uint8Array.from([1, 2, 1, 0x63, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 0x6b]), 'exceeds 2^53 - 1'],
      ['an endless varint', Uint8Array.from([1, 2, 1, 0x63, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), 'too long'],
      ['a length past the end', Uint8Array.from([1, 2, 1, 0x63, 1, 200, 0x6b]), 'runs past the end'],
      ['invalid UTF-8 in the key', Uint8Array.from([1, 2, 1, 0x63, 1, 2, 0xc3, 0x28]), 'key is not valid UTF-8'],
      ['a cas expected flag of 2', Uint8Array.from([1, 3, 1, 0x63, 1, 1, 0x6b, 2, 1, 0x76]), 'flag must be 0 or 1']
    ]
    for (const [name, input, message] of cases) {
      it(name, () => {
        const decoded = decodeCommand(input)
        expect(decoded.ok).to.equal(false)
        if (!decoded.ok) { expect(decoded.error).to.include(message) }
      })
    }

    it('every truncation of a valid encoding', () => {
      for (const command of samples) {
        const encoded = encodeCommand(command)
        for (let length = 0; length < encoded.length; length++) {
          expect(decodeCommand(encoded.subarray(0, length)).ok, `${command.type} cut at ${length}`).to.equal(false)
        }
      }
    })

    it('a value that is not a Uint8Array', () => {
      expect(decodeCommand('nope' as unknown as Uint8Array).ok).to.equal(false)
    })
  })

  describe('fuzz', () => {
    // Any input: decode never throws, and whatever decodes re-encodes to the
    // very same bytes (the encoding is canonical).
    function checkCanonical (input: Uint8Array): boolean {
      const decoded = decodeCommand(input)
      if (!decoded.ok) { return false }
      expect([...encodeCommand(decoded.command)]).to.deep.equal([...input])
      return true
    }

    it('20,000 random byte strings', () => {
      const rng = createRng(1)
      let decodedCount = 0
      for (let i = 0; i < 20_000; i++) {
        // mostly small bytes, so that lengths often fit, and plausible headers,
        // so that the fuzz gets past the first bytes
        const input = Uint8Array.from({ length: rng.intBetween(0, 24) }, () => rng.chance(0.7) ? rng.intBetween(0, 4) : rng.intBetween(0, 255))
        if (input.length > 0 && rng.chance(0.8)) { input[0] = 1 }
        if (input.length > 1 && rng.chance(0.8)) { input[1] = rng.intBetween(1, 3) }
        if (checkCanonical(input)) { decodedCount++ }
      }
      expect(decodedCount).to.be.greaterThan(50)
    })

    it('20,000 mutations of valid encodings (bit flips, byte edits, insertions, deletions, splices)', () => {
      const rng = createRng(2)
      const valid = samples.map(encodeCommand)
      let decodedCount = 0
      for (let i = 0; i < 20_000; i++) {
        const input = mutate(rng, valid[rng.intBetween(0, valid.length - 1)], valid)
        if (checkCanonical(input)) { decodedCount++ }
      }
      expect(decodedCount).to.be.greaterThan(1000)
    })

    it('random valid commands round-trip', () => {
      const rng = createRng(3)
      for (let i = 0; i < 2000; i++) {
        const command = randomCommand(rng)
        expect(validateCommand(command).ok).to.equal(true)
        const encoded = encodeCommand(command)
        expect(decodeOk(encoded)).to.deep.equal(command)
        expect(encoded.length).to.be.at.most(commandBytesMax())
      }
    })
  })
})

describe('kv command validation', () => {
  const limits = resolveKvLimits({ keyBytesMax: 8, valueBytesMax: 16, clientIdBytesMax: 4 })
  const problem = (command: unknown): string => {
    const validation = validateCommand(command as KvCommand, limits)
    return validation.ok ? 'ok' : validation.message
  }

  it('accepts commands exactly at every limit', () => {
    expect(problem({ type: 'put', session: { clientId: 'abcd', sequence: 2 ** 53 - 1 }, key: 'kkkkkkkk', value: new Uint8Array(16) })).to.equal('ok')
    expect(problem({ type: 'cas', session, key: 'k', expected: new Uint8Array(16), value: new Uint8Array(16) })).to.equal('ok')
    expect(problem({ type: 'cas', session, key: 'k', expected: null, value: new Uint8Array(0) })).to.equal('ok')
  })

  it('counts key and clientId limits in UTF-8 bytes, not characters', () => {
    expect(problem({ type: 'delete', session, key: 'éééé' })).to.equal('ok') // 8 bytes
    expect(problem({ type: 'delete', session, key: 'ééééa' })).to.equal('key is 9 bytes, more than 8')
    expect(problem({ type: 'delete', session, key: '🔑🔑' })).to.equal('ok') // 8 bytes
    expect(problem({ type: 'delete', session: { clientId: 'éé', sequence: 1 }, key: 'k' })).to.equal('ok')
    expect(problem({ type: 'delete', session: { clientId: 'ééa', sequence: 1 }, key: 'k' })).to.equal('clientId is 5 bytes, more than 4')
  })

  it('rejects one byte over each limit', () => {
    expect(problem({ type: 'delete', session, key: 'kkkkkkkkk' })).to.equal('key is 9 bytes, more than 8')
    expect(problem({ type: 'put', session, key: 'k', value: new Uint8Array(17) })).to.equal('value is 17 bytes, more than 16')
    expect(problem({ type: 'cas', session, key: 'k', expected: new Uint8Array(17), value: new Uint8Array(1) })).to.equal('expected is 17 bytes, more than 16')
    expect(problem({ type: 'cas', session, key: 'k', expected: null, value: new Uint8Array(17) })).to.equal('value is 17 bytes, more than 16')
    expect(problem({ type: 'delete', session: { clientId: 'abcde', sequence: 1 }, key: 'k' })).to.equal('clientId is 5 bytes, more than 4')
  })

  it('rejects bad shapes and types', () => {
    expect(problem(null)).to.equal('command must be an object')
    expect(problem({ type: 'put', key: 'k', value: new Uint8Array() })).to.equal('session is missing')
    expect(problem({ type: 'get', session, key: 'k' })).to.equal('unknown command type "get"')
    expect(problem({ type: 'delete', session, key: '' })).to.equal('key must not be empty')
    expect(problem({ type: 'delete', session, key: 5 })).to.equal('key must be a string')
    expect(problem({ type: 'delete', session, key: 'a\uD800' })).to.include('lone surrogate')
    expect(problem({ type: 'delete', session: { clientId: '', sequence: 1 }, key: 'k' })).to.equal('clientId must not be empty')
    expect(problem({ type: 'put', session, key: 'k', value: 'v' })).to.equal('value must be a Uint8Array')
    expect(problem({ type: 'put', session, key: 'k', value: [1, 2] })).to.equal('value must be a Uint8Array')
    expect(problem({ type: 'cas', session, key: 'k', expected: 'old', value: new Uint8Array() })).to.equal('expected must be a Uint8Array')
    expect(problem({ type: 'cas', session, key: 'k', value: new Uint8Array() })).to.equal('expected must be a Uint8Array')
  })

  it('rejects sequences that are not integers from 1 to 2^53 - 1', () => {
    for (const sequence of [0, -1, 1.5, 2 ** 53, Number.NaN, Infinity, '1']) {
      expect(problem({ type: 'delete', session: { clientId: 'c', sequence }, key: 'k' }), String(sequence)).to.include('sequence must be')
    }
  })

  it('defaults to KV_DEFAULTS (1 KiB keys, 1 MiB values)', () => {
    expect(KV_DEFAULTS.keyBytesMax).to.equal(1024)
    expect(KV_DEFAULTS.valueBytesMax).to.equal(1024 * 1024)
    expect(validateCommand({ type: 'put', session, key: 'k'.repeat(1024), value: new Uint8Array(1024 * 1024) }).ok).to.equal(true)
    expect(validateCommand({ type: 'put', session, key: 'k'.repeat(1025), value: new Uint8Array(0) }).ok).to.equal(false)
    expect(validateCommand({ type: 'put', session, key: 'k', value: new Uint8Array(1024 * 1024 + 1) }).ok).to.equal(false)
  })

  it('bounds the encoded size of any valid command', () => {
    const biggest: KvCommand = {
      type: 'cas',
      session: { clientId: 'c'.repeat(4), sequence: 2 ** 53 - 1 },
      key: 'k'.repeat(8),
      expected: new Uint8Array(16),
      value: new Uint8Array(16)
    }
    expect(encodeCommand(biggest).length).to.equal(commandBytesMax(limits))
  })

  it('refuses nonsensical limits', () => {
    expect(() => resolveKvLimits({ keyBytesMax: 0 })).to.throw(RangeError)
    expect(() => resolveKvLimits({ sessionsMax: 1.5 })).to.throw(RangeError)
    expect(resolveKvLimits()).to.deep.equal(KV_DEFAULTS)
  })
})

function randomCommand (rng: Rng): KvCommand {
  const alphabet = ['a', 'b', 'é', '🔑', '/', '\u0000', 'z']
  const text = (lengthMax: number): string => {
    let out = ''
    const length = rng.intBetween(1, lengthMax)
    for (let i = 0; i < length; i++) { out += alphabet[rng.intBetween(0, alphabet.length - 1)] }
    return out
  }
  const s = { clientId: text(10), sequence: rng.chance(0.1) ? 2 ** 53 - 1 : rng.intBetween(1, 1_000_000) }
  const key = text(20)
  const value = randomBytes(rng, rng.intBetween(0, 50))
  switch (rng.intBetween(0, 2)) {
    case 0: return { type: 'put', session: s, key, value }
    case 1: return { type: 'delete', session: s, key }
    default: return { type: 'cas', session: s, key, expected: rng.chance(0.3) ? null : randomBytes(rng, rng.intBetween(0, 20)), value }
  }
}
