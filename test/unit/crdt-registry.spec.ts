import { expect } from 'aegir/chai'
import { CRDT_TYPE_NAMES, createReplica, crdtType, decodeState, encodeState, isCrdtTypeName } from '../../protocols/crdt/index.ts'
import type { CrdtTypeName } from '../../protocols/crdt/index.ts'

describe('crdt/registry', () => {
  it('knows every type by name', () => {
    expect([...CRDT_TYPE_NAMES]).to.deep.equal(['g-counter', 'pn-counter', 'g-set', 'or-set', 'lww-register', 'mv-register', 'or-map', 'lww-map', 'rga'])
    for (const name of CRDT_TYPE_NAMES) { expect(crdtType(name).name).to.equal(name) }
    expect(isCrdtTypeName('rga')).to.equal(true)
    expect(isCrdtTypeName('text')).to.equal(false)
    expect(() => createReplica('nope' as CrdtTypeName, 'a')).to.throw(RangeError)
    expect(() => createReplica('g-set', '')).to.throw(RangeError)
  })

  it('reads every type generically as JSON', () => {
    const cases: Array<[CrdtTypeName, unknown[], unknown]> = [
      ['g-counter', [{ op: 'increment', by: 2 }, { op: 'increment', by: 3 }], 5],
      ['pn-counter', [{ op: 'increment', by: 2 }, { op: 'decrement', by: 3 }], -1],
      ['g-set', [{ op: 'add', value: 'b' }, { op: 'add', value: 1 }, { op: 'add', value: 'b' }], ['b', 1]],
      ['or-set', [{ op: 'add', value: 'b' }, { op: 'add', value: 'a' }, { op: 'remove', value: 'b' }], ['a']],
      ['lww-register', [{ op: 'set', value: { x: 1 } }, { op: 'set', value: [true] }], [true]],
      ['mv-register', [{ op: 'set', value: 1 }, { op: 'set', value: 2 }], [2]],
      ['or-map', [{ op: 'set', key: 'b', value: 1 }, { op: 'set', key: 'a', value: null }, { op: 'delete', key: 'b' }], { a: null }],
      ['lww-map', [{ op: 'set', key: 'b', value: 1 }, { op: 'set', key: 'a', value: 'x' }, { op: 'delete', key: 'b' }], { a: 'x' }],
      ['rga', [{ op: 'insert', index: 0, text: 'hello' }, { op: 'insert', index: 5, text: ' world' }, { op: 'delete', index: 0, length: 1 }], 'ello world']
    ]
    for (const [name, ops, value] of cases) {
      const replica = createReplica(name, 'r1')
      const peer = createReplica(name, 'r2')
      for (const op of ops) {
        const delta = replica.apply(op, 1000)
        if (!delta.ok) { throw new Error(`${name}: ${delta.error}`) }
        expect(peer.joinEncoded(encodeState(name, delta.value))).to.deep.equal({ ok: true, value: undefined })
      }
      expect(replica.value()).to.deep.equal(value)
      expect(peer.value()).to.deep.equal(value)
      expect(peer.encode()).to.deep.equal(replica.encode())
    }
  })

  it('refuses malformed ops and ops of another type with an error', () => {
    const env = { replica: 'a', now: 1 }
    const bad: Array<[CrdtTypeName, unknown]> = [
      ['g-counter', null],
      ['g-counter', 'increment'],
      ['g-counter', { op: 'decrement', by: 1 }],
      ['g-counter', { op: 'increment', by: 1.5 }],
      ['pn-counter', { op: 'decrement', by: -2 }],
      ['g-set', { op: 'remove', value: 1 }],
      ['g-set', { op: 'add' }],
      ['g-set', { op: 'add', value: Number.NaN }],
      ['or-set', { op: 'add', value: () => 1 }],
      ['or-set', { op: 'add', value: new Date(0) }],
      // eslint-disable-next-line no-sparse-arrays
      ['or-set', { op: 'add', value: [, 1] }],
      ['or-set', { op: 'add', value: { a: undefined } }],
      ['lww-register', { op: 'set', value: undefined }],
      ['lww-register', { op: 'delete', key: 'k' }],
      ['mv-register', { op: 'increment', by: 1 }],
      ['or-map', { op: 'set', value: 1 }],
      ['lww-map', { op: 'delete', key: 7 }],
      ['lww-map', { op: 'set', key: 'x'.repeat(2000), value: 1 }],
      ['rga', { op: 'insert', index: 1, text: 'x' }],
      ['rga', { op: 'insert', index: 0, text: '' }],
      ['rga', { op: 'delete', index: 0, length: 1 }],
      ['rga', { op: 'set', value: 'x' }]
    ]
    for (const [name, op] of bad) {
      const type = crdtType(name)
      const result = type.apply(type.empty(), op, env)
      expect(result.ok, `${name} ${String(JSON.stringify(op))}`).to.equal(false)
    }
    expect(crdtType('lww-register').apply(null, { op: 'set', value: 1 }, { replica: 'a', now: -5 })).to.deep.include({ ok: false })
  })

  it('refuses values nested too deep and decodes another type\'s encoding as an error', () => {
    let deep: unknown = 1
    for (let i = 0; i < 40; i++) { deep = [deep] }
    expect(crdtType('g-set').apply(new Map(), { op: 'add', value: deep }, { replica: 'a', now: 1 }).ok).to.equal(false)
    const counter = createReplica('g-counter', 'a')
    counter.apply({ op: 'increment', by: 1 }, 0)
    const wrong = decodeState('pn-counter', counter.encode())
    expect(wrong.ok).to.equal(false)
    expect(decodeState('g-counter', 'not bytes' as unknown as Uint8Array).ok).to.equal(false)
  })
})
