import { expect } from 'aegir/chai'
import { decodeOperation, decodeResult, encodeOperation, encodeResult, kvResult, sessionCommand } from '../../node/pbft/operations.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { encodeCommand, KvStateMachine } from '../../protocols/kv/index.ts'
import { mutate, randomBytes } from '../lib/bytes-fuzz.ts'
import type { DecodedOperation, PbftOperation, PbftResult } from '../../node/pbft/operations.ts'

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

const operations: DecodedOperation[] = [
  { type: 'kv', command: { type: 'put', key: 'k', value: bytes('v') } },
  { type: 'kv', command: { type: 'put', key: 'ключ/🔑', value: new Uint8Array(0) } },
  { type: 'kv', command: { type: 'delete', key: 'gone' } },
  { type: 'kv', command: { type: 'cas', key: 'k', expected: null, value: bytes('first') } },
  { type: 'kv', command: { type: 'cas', key: 'k', expected: bytes('old'), value: bytes('new') } },
  { type: 'get', key: 'k' },
  { type: 'null' }
]

const results: PbftResult[] = [
  { type: 'kv', result: { ok: true, index: 1, type: 'put' } },
  { type: 'kv', result: { ok: true, index: 2 ** 53 - 1, type: 'cas' } },
  { type: 'kv', result: { ok: true, index: 3, type: 'delete', deleted: true } },
  { type: 'kv', result: { ok: true, index: 3, type: 'delete', deleted: false } },
  { type: 'kv', result: { ok: false, index: 4, reason: 'cas-mismatch' } },
  { type: 'kv', result: { ok: false, index: 5, reason: 'quota-exceeded' } },
  { type: 'kv', result: { ok: false, index: 6, reason: 'stale-sequence', message: 'sequence 1 is older than 2' } },
  { type: 'kv', result: { ok: false, index: 7, reason: 'session-expired', message: 'no session' } },
  { type: 'value', value: bytes('v') },
  { type: 'value', value: new Uint8Array(0) },
  { type: 'value', value: null },
  { type: 'null' },
  { type: 'invalid', message: 'a put operation cannot be read-only' },
  { type: 'configured', epoch: 2, afterSeq: 320 }
]

/** Decoded views into the input are compared as plain arrays. */
const plain = (value: unknown): unknown => JSON.parse(JSON.stringify(value, (_key, v: unknown) => v instanceof Uint8Array ? [...v] : v))

describe('pbft operations: encoding', () => {
  it('every operation round-trips', () => {
    for (const operation of operations) {
      const decoded = decodeOperation(encodeOperation(operation))
      expect(decoded.ok, JSON.stringify(plain(operation))).to.equal(true)
      if (decoded.ok) { expect(plain(decoded.operation)).to.deep.equal(plain(operation)) }
    }
  })

  it('a session given with a KV command is not encoded: the request supplies it', () => {
    const withSession: PbftOperation = { type: 'kv', command: { type: 'put', session: { clientId: 'someone-else', sequence: 9 }, key: 'k', value: bytes('v') } }
    const without: PbftOperation = { type: 'kv', command: { type: 'put', key: 'k', value: bytes('v') } }
    expect(encodeOperation(withSession)).to.deep.equal(encodeOperation(without))
    const decoded = decodeOperation(encodeOperation(withSession))
    if (!decoded.ok || decoded.operation.type !== 'kv') { throw new Error('expected a kv operation') }
    expect(sessionCommand(decoded.operation.command, { client: 'c1', timestamp: 4 }).session).to.deep.equal({ clientId: 'c1', sequence: 4 })
  })

  it('every result round-trips', () => {
    for (const result of results) {
      const decoded = decodeResult(encodeResult(result))
      expect(decoded.ok, JSON.stringify(plain(result))).to.equal(true)
      if (decoded.ok) { expect(plain(decoded.result)).to.deep.equal(plain(result)) }
    }
  })

  it('rejects a wrong version, an unknown kind, bad flags and trailing bytes with a reason', () => {
    const put = encodeOperation(operations[0])
    expect(decodeOperation(Uint8Array.of(2, ...put.subarray(1)))).to.deep.include({ ok: false, error: 'malformed operation: unsupported operation version 2' })
    expect(decodeOperation(Uint8Array.of(1, 9))).to.deep.include({ ok: false, error: 'malformed operation: unknown operation kind 9' })
    expect(decodeOperation(Uint8Array.of(...put, 0))).to.deep.include({ ok: false, error: 'malformed operation: 1 trailing bytes after operation' })
    const cas = encodeOperation(operations[3])
    const badFlag = cas.slice()
    badFlag[4] = 2 // version, kind, key length 1, 'k', then the flag
    expect(decodeOperation(badFlag)).to.deep.include({ ok: false, error: 'malformed operation: cas expected flag must be 0 or 1, got 2' })
    expect(decodeOperation(new Uint8Array(0))).to.deep.include({ ok: false, error: 'malformed operation: truncated before version' })
    expect(decodeResult(Uint8Array.of(1, 6, 1, 9, 0))).to.deep.include({ ok: false, error: 'malformed result: unknown rejection 9' })
    expect(decodeResult(Uint8Array.of(1, 7, 3))).to.deep.include({ ok: false, error: 'malformed result: value flag must be 0 or 1, got 3' })
  })

  it('never throws on random or mutated bytes, and what decodes re-encodes to the same bytes', () => {
    const rng = createRng(13)
    const samples = [...operations.map(encodeOperation), ...results.map(encodeResult)]
    for (let i = 0; i < 3000; i++) {
      const input = i % 2 === 0 ? randomBytes(rng, rng.intBetween(0, 24)) : mutate(rng, samples[i % samples.length], samples)
      const operation = decodeOperation(input)
      if (operation.ok) { expect(encodeOperation(operation.operation)).to.deep.equal(input) }
      const result = decodeResult(input)
      if (result.ok) { expect(encodeResult(result.result)).to.deep.equal(input) }
    }
  })
})

describe('pbft operations: KV results', () => {
  it('a cas mismatch reports no current value, so a first execution and a retry answered from the session match', () => {
    const kv = new KvStateMachine()
    const request = { client: 'c1', timestamp: 1 }
    const cas = sessionCommand({ type: 'cas', key: 'k', expected: bytes('x'), value: bytes('y') }, request)
    const first = kv.apply(1, encodeCommand(cas))
    const retry = kv.apply(2, encodeCommand(cas))
    expect(first).to.have.property('current')
    expect(encodeResult(kvResult(first))).to.deep.equal(encodeResult(kvResult(retry)))
    expect(kvResult(first)).to.deep.equal({ type: 'kv', result: { ok: false, index: 1, reason: 'cas-mismatch' } })
  })

  it('rejections keep their reason and message', () => {
    const kv = new KvStateMachine()
    const expired = kv.apply(1, encodeCommand(sessionCommand({ type: 'delete', key: 'k' }, { client: 'c1', timestamp: 5 })))
    const result = kvResult(expired)
    expect(result).to.have.nested.property('result.reason', 'session-expired')
    expect(result).to.have.nested.property('result.message').that.includes('c1')
  })
})
