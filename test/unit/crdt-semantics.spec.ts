import { expect } from 'aegir/chai'
import { crdtType, encodeState, gCounter, lwwMap, lwwRegister, mvRegister, orMap, orSet, pnCounter, toCanonical } from '../../protocols/crdt/index.ts'
import type { Canonical, CrdtTypeName, JsonValue } from '../../protocols/crdt/index.ts'

function json (value: JsonValue): Canonical {
  const canonical = toCanonical(value)
  if (!canonical.ok) { throw new Error(canonical.error) }
  return canonical.value
}

/** Applies an op through the registry at `replica` and returns [new state, delta]. */
function apply (name: CrdtTypeName, state: unknown, replica: string, op: unknown, now = 1000): [unknown, unknown] {
  const type = crdtType(name)
  const delta = type.apply(state, op, { replica, now })
  if (!delta.ok) { throw new Error(delta.error) }
  return [type.join(state, delta.value), delta.value]
}

describe('crdt/semantics', () => {
  describe('counters', () => {
    it('a G-Counter sums per-replica maxima, its delta is one entry', () => {
      let a: gCounter.GCounter = new Map()
      const d1 = gCounter.increment(a, 'a', 3)
      a = gCounter.joinGCounters(a, d1)
      const d2 = gCounter.increment(a, 'a', 2)
      expect([...d2]).to.deep.equal([['a', 5]])
      a = gCounter.joinGCounters(a, d2)
      const b = gCounter.joinGCounters(new Map(), gCounter.increment(new Map(), 'b', 7))
      expect(gCounter.gCounterValue(gCounter.joinGCounters(a, b))).to.equal(12)
      // re-delivering an old delta changes nothing
      expect(gCounter.gCounterValue(gCounter.joinGCounters(gCounter.joinGCounters(a, b), d1))).to.equal(12)
    })

    it('increment and decrement reject non-integers, non-positive amounts and overflow with a RangeError', () => {
      const empty = pnCounter.emptyPNCounter()
      for (const by of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
        expect(() => pnCounter.increment(empty, 'a', by)).to.throw(RangeError)
        expect(() => pnCounter.decrement(empty, 'a', by)).to.throw(RangeError)
        expect(() => gCounter.increment(new Map(), 'a', by)).to.throw(RangeError)
      }
      const full = gCounter.increment(new Map(), 'a', Number.MAX_SAFE_INTEGER)
      expect(() => gCounter.increment(full, 'b', 1)).to.throw(RangeError, /exceed/)
    })

    it('a PN-Counter goes below zero', () => {
      let s: unknown = crdtType('pn-counter').empty()
      ;[s] = apply('pn-counter', s, 'a', { op: 'increment', by: 2 })
      ;[s] = apply('pn-counter', s, 'b', { op: 'decrement', by: 5 })
      expect(crdtType('pn-counter').value(s)).to.equal(-3)
    })
  })

  describe('OR-Set', () => {
    it('add wins over a concurrent remove', () => {
      let a = orSet.emptyORSet()
      a = orSet.joinORSets(a, orSet.add(a, 'a', json('x')))
      let b = orSet.joinORSets(orSet.emptyORSet(), a)
      // concurrently: b removes x (the add it saw), a adds x again
      const removal = orSet.remove(b, json('x'))
      b = orSet.joinORSets(b, removal)
      expect(orSet.orSetValue(b)).to.deep.equal([])
      a = orSet.joinORSets(a, orSet.add(a, 'a', json('x')))
      expect(orSet.orSetValue(orSet.joinORSets(a, b))).to.deep.equal(['x'])
      expect(orSet.orSetValue(orSet.joinORSets(b, a))).to.deep.equal(['x'])
    })

    it('a remove of every add seen removes the element everywhere', () => {
      let a = orSet.emptyORSet()
      a = orSet.joinORSets(a, orSet.add(a, 'a', json('x')))
      let b = orSet.joinORSets(orSet.emptyORSet(), a)
      b = orSet.joinORSets(b, orSet.add(b, 'b', json('x')))
      a = orSet.joinORSets(a, b)
      a = orSet.joinORSets(a, orSet.remove(a, json('x')))
      expect(orSet.orSetValue(orSet.joinORSets(a, b))).to.deep.equal([])
      expect(orSet.orSetValue(orSet.joinORSets(b, a))).to.deep.equal([])
    })

    it('removed elements leave no tombstone: only their dots stay, in a compact version vector', () => {
      let s = orSet.emptyORSet()
      for (let i = 0; i < 50; i++) {
        s = orSet.joinORSets(s, orSet.add(s, 'a', json(i)))
        s = orSet.joinORSets(s, orSet.remove(s, json(i)))
      }
      expect(s.entries.size).to.equal(0)
      expect([...s.context.vv]).to.deep.equal([['a', 50]])
      expect(s.context.cloud.size).to.equal(0)
      // the encoding is just the version vector and an empty store
      expect(encodeState('or-set', s).length).to.be.lessThan(10)
    })

    it('elements are JSON values compared by canonical encoding, read back sorted by that encoding ("z" before 3)', () => {
      let s: unknown = crdtType('or-set').empty()
      ;[s] = apply('or-set', s, 'a', { op: 'add', value: { b: 1, a: 2 } })
      ;[s] = apply('or-set', s, 'a', { op: 'add', value: 'z' })
      ;[s] = apply('or-set', s, 'a', { op: 'add', value: 3 })
      ;[s] = apply('or-set', s, 'a', { op: 'remove', value: { a: 2, b: 1 } })
      expect(crdtType('or-set').value(s)).to.deep.equal(['z', 3])
    })
  })

  describe('registers', () => {
    it('LWW: the later hybrid timestamp wins, and the writer always supersedes what it saw even with a slow clock', () => {
      let a: lwwRegister.LWWRegister = null
      a = lwwRegister.joinLWWRegisters(a, lwwRegister.set(a, 'a', json('first'), 5000))
      // b's physical clock is far behind, yet its write follows the one it saw
      let b = lwwRegister.joinLWWRegisters(null, a)
      b = lwwRegister.joinLWWRegisters(b, lwwRegister.set(b, 'b', json('second'), 10))
      expect(b?.stamp).to.deep.equal({ wall: 5000, logical: 1, replica: 'b' })
      expect(lwwRegister.lwwRegisterValue(lwwRegister.joinLWWRegisters(a, b))).to.equal('second')
    })

    it('LWW: equal wall and logical times are broken by replica id', () => {
      const fromA = lwwRegister.set(null, 'a', json('from a'), 100)
      const fromB = lwwRegister.set(null, 'b', json('from b'), 100)
      expect(lwwRegister.lwwRegisterValue(lwwRegister.joinLWWRegisters(fromA, fromB))).to.equal('from b')
      expect(lwwRegister.lwwRegisterValue(lwwRegister.joinLWWRegisters(fromB, fromA))).to.equal('from b')
      expect(lwwRegister.lwwRegisterValue(null)).to.equal(null)
    })

    it('MV: concurrent writes are all kept until a write that saw them', () => {
      let a = mvRegister.emptyMVRegister()
      let b = mvRegister.emptyMVRegister()
      a = mvRegister.joinMVRegisters(a, mvRegister.set(a, 'a', json('x')))
      b = mvRegister.joinMVRegisters(b, mvRegister.set(b, 'b', json('y')))
      let c = mvRegister.joinMVRegisters(a, b)
      expect(mvRegister.mvRegisterValue(c)).to.deep.equal(['x', 'y'])
      c = mvRegister.joinMVRegisters(c, mvRegister.set(c, 'c', json('z')))
      expect(mvRegister.mvRegisterValue(mvRegister.joinMVRegisters(c, a))).to.deep.equal(['z'])
      expect(mvRegister.mvRegisterValue(mvRegister.joinMVRegisters(b, c))).to.deep.equal(['z'])
    })
  })

  describe('maps', () => {
    it('OR-Map: nested counters updated at two replicas merge', () => {
      const type = crdtType('or-map')
      const inc = (by: number): unknown => ({ op: 'update', key: 'hits', type: 'pn-counter', update: { op: 'increment', by } })
      let [a] = apply('or-map', type.empty(), 'a', inc(2))
      let b = type.join(type.empty(), a)
      ;[a] = apply('or-map', a, 'a', inc(3))
      ;[b] = apply('or-map', b, 'b', inc(10))
      ;[b] = apply('or-map', b, 'b', { op: 'set', key: 'name', value: 'counter' })
      expect(type.value(type.join(a, b))).to.deep.equal({ hits: 15, name: 'counter' })
      expect(type.value(type.join(b, a))).to.deep.equal({ hits: 15, name: 'counter' })
    })

    it('OR-Map: delete removes the observed key without a tombstone; a concurrent update keeps it', () => {
      const type = crdtType('or-map')
      let [a] = apply('or-map', type.empty(), 'a', { op: 'update', key: 'tags', type: 'or-set', update: { op: 'add', value: 't1' } })
      let b = type.join(type.empty(), a)
      ;[b] = apply('or-map', b, 'b', { op: 'delete', key: 'tags' })
      expect(type.value(type.join(a, b))).to.deep.equal({})
      expect((type.join(a, b) as orMap.ORMap).entries.size).to.equal(0)
      ;[a] = apply('or-map', a, 'a', { op: 'update', key: 'tags', type: 'or-set', update: { op: 'add', value: 't2' } })
      expect(type.value(type.join(a, b))).to.deep.equal({ tags: ['t1', 't2'] })
    })

    it('OR-Map: nested maps, and ops of the wrong shape are refused', () => {
      const type = crdtType('or-map')
      const [s] = apply('or-map', type.empty(), 'a', { op: 'update', key: 'profile', type: 'or-map', update: { op: 'set', key: 'name', value: 'ann' } })
      expect(type.value(s)).to.deep.equal({ profile: { name: 'ann' } })
      const env = { replica: 'a', now: 1 }
      expect(type.apply(s, { op: 'update', key: 'x', type: 'nope', update: {} }, env)).to.deep.include({ ok: false })
      expect(type.apply(s, { op: 'update', key: 'x', type: 'g-counter', update: { op: 'add', value: 1 } }, env)).to.deep.include({ ok: false })
      let deep: unknown = { op: 'set', key: 'k', value: 1 }
      for (let i = 0; i < 20; i++) { deep = { op: 'update', key: 'k', type: 'or-map', update: deep } }
      const refused = type.apply(type.empty(), deep, env)
      expect(refused.ok).to.equal(false)
    })

    it('maps read keys like __proto__ as plain own properties', () => {
      for (const name of ['or-map', 'lww-map'] as const) {
        const [s] = apply(name, crdtType(name).empty(), 'a', { op: 'set', key: '__proto__', value: 1 })
        const value = crdtType(name).value(s) as Record<string, unknown>
        expect(Object.getPrototypeOf(value)).to.equal(Object.prototype)
        expect(Object.keys(value)).to.deep.equal(['__proto__'])
      }
    })

    it('LWW-Map: a delete is a timestamped tombstone that later sets override', () => {
      let a: lwwMap.LWWMap = new Map()
      a = lwwMap.joinLWWMaps(a, lwwMap.set(a, 'a', 'k', json(1), 100))
      a = lwwMap.joinLWWMaps(a, lwwMap.remove(a, 'a', 'k', 101))
      expect(lwwMap.lwwMapValue(a)).to.deep.equal({})
      expect(a.get('k')?.value).to.equal(null)
      const b = lwwMap.set(new Map(), 'b', 'k', json(2), 102)
      expect(lwwMap.lwwMapValue(lwwMap.joinLWWMaps(a, b))).to.deep.equal({ k: 2 })
      const stale = lwwMap.set(new Map(), 'b', 'k', json(3), 99)
      expect(lwwMap.lwwMapValue(lwwMap.joinLWWMaps(stale, a))).to.deep.equal({})
    })
  })
})
