/**
 * The RGA as a registry type (protocols/crdt/rga-type.ts): ops through the
 * registry, refusals, join properties over concurrent edits of three
 * replicas, encodings, deltas against full states, and the op history
 * (opsSince, run-length, slicing) it rests on.
 */
import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { createReplica, crdtType, decodeState, encodeState } from '../../protocols/crdt/index.ts'
import { encodeOps, OpHistory, Rga } from '../../protocols/crdt/rga/index.ts'
import { absorbRga, cloneRgaDoc, compactRgaDoc, emptyRgaDoc, RGA_INSERT_LENGTH_MAX, rgaJoinStats } from '../../protocols/crdt/rga-type.ts'
import type { CrdtType } from '../../protocols/crdt/index.ts'
import type { Op } from '../../protocols/crdt/rga/index.ts'

const type = crdtType('rga') as unknown as CrdtType<Rga>
const REPLICAS = ['a', 'b', 'c']

/** Text and version vector: what join must agree on. */
const view = (doc: Rga): string => JSON.stringify([doc.toString(), [...doc.version()].sort()])
const hex = (doc: Rga): string => Buffer.from(encodeState('rga', doc)).toString('hex')

type Edit = [replica: number, insert: boolean, at: number, n: number, text: string]

/** Random concurrent edits at three replicas that now and then receive some of the others' deltas. */
function edit (edits: Edit[], deliveries: number[]): Rga[] {
  let states = REPLICAS.map(() => type.empty())
  const sent: Rga[][] = REPLICAS.map(() => [])
  edits.forEach(([r, insert, at, n, text], k) => {
    const state = states[r]
    const length = state.length
    const op = insert || length === 0
      ? { op: 'insert', index: at % (length + 1), text }
      : { op: 'delete', index: at % length, length: 1 + n % (length - at % length) }
    const delta = type.apply(state, op, { replica: REPLICAS[r], now: 0 })
    if (!delta.ok) { throw new Error(delta.error) }
    states[r] = type.join(state, delta.value)
    sent[r].push(delta.value)
    // some replica takes some of another's deltas (in any order: some wait in its pending buffer)
    const d = deliveries[k % Math.max(1, deliveries.length)] ?? 0
    const to = d % 3
    const from = (to + 1 + (d >> 2) % 2) % 3
    const pick = sent[from].filter((_x, i) => (i + d) % 3 !== 0)
    for (const x of pick.reverse()) { states = states.map((s, i) => i === to ? type.join(s, x) : s) }
  })
  return states
}

const editsArbitrary = fc.array(fc.tuple(fc.nat(2), fc.boolean(), fc.nat(), fc.nat(4), fc.string({ minLength: 1, maxLength: 5 })), { maxLength: 40 })

describe('crdt/rga through the registry', () => {
  it('applies insert and delete ops and ships them as deltas', () => {
    const a = createReplica('rga', 'peer-a')
    const b = createReplica('rga', 'peer-b')
    const ship = (op: unknown): void => {
      const delta = a.apply(op, 0)
      if (!delta.ok) { throw new Error(delta.error) }
      expect(b.joinEncoded(encodeState('rga', delta.value)).ok).to.equal(true)
    }
    ship({ op: 'insert', index: 0, text: 'hello' })
    ship({ op: 'insert', index: 5, text: ' world' })
    ship({ op: 'delete', index: 0, length: 1 })
    ship({ op: 'insert', index: 0, text: 'H' })
    expect(a.value()).to.equal('Hello world')
    expect(b.value()).to.equal('Hello world')
    expect(b.encode()).to.deep.equal(a.encode())
    expect([...(a.state as Rga).version()]).to.deep.equal([['peer-a', 13]])
  })

  it('refuses malformed ops with an error and changes nothing', () => {
    const replica = createReplica('rga', 'a')
    replica.apply({ op: 'insert', index: 0, text: 'abc' }, 0)
    const before = replica.encode()
    const bad: unknown[] = [
      null, 'insert', { op: 'append', text: 'x' },
      { op: 'insert', text: 'x' }, { op: 'insert', index: -1, text: 'x' }, { op: 'insert', index: 1.5, text: 'x' },
      { op: 'insert', index: 4, text: 'x' }, { op: 'insert', index: '0', text: 'x' }, { op: 'insert', index: 0, text: '' },
      { op: 'insert', index: 0, text: 7 }, { op: 'insert', index: 0, text: 'x'.repeat(RGA_INSERT_LENGTH_MAX + 1) },
      { op: 'delete', index: 0 }, { op: 'delete', index: 0, length: 0 }, { op: 'delete', index: 0, length: 4 },
      { op: 'delete', index: 3, length: 1 }, { op: 'delete', index: -1, length: 1 }, { op: 'delete', index: 0, length: Number.NaN },
      { op: 'insert', index: 0, text: 'x', length: 1 }, { op: 'delete', index: 0, length: 1, text: 'a' }
    ]
    for (const op of bad) {
      const result = replica.apply(op, 0)
      expect(result.ok, JSON.stringify(op)).to.equal(false)
    }
    expect(replica.encode()).to.deep.equal(before)
    expect(replica.value()).to.equal('abc')
    expect(type.apply(type.empty(), { op: 'insert', index: 0, text: 'x' }, { replica: '', now: 0 }).ok).to.equal(false)
  })

  it('join is commutative, associative and idempotent on the text and version, and leaves its arguments alone', () => {
    fc.assert(fc.property(editsArbitrary, fc.array(fc.nat(), { maxLength: 8 }), (edits, deliveries) => {
      const [a, b, c] = edit(edits, deliveries)
      const before = [a, b, c].map(hex)
      expect(view(type.join(a, b))).to.equal(view(type.join(b, a)))
      expect(hex(type.join(a, b))).to.equal(hex(type.join(b, a)))
      expect(view(type.join(type.join(a, b), c))).to.equal(view(type.join(a, type.join(b, c))))
      expect(view(type.join(a, a))).to.equal(view(a))
      expect(hex(type.join(a, a))).to.equal(hex(a))
      expect(hex(type.join(a, type.empty()))).to.equal(hex(a))
      expect([a, b, c].map(hex)).to.deep.equal(before)
      // absorb (in place) gives what join gives
      expect(hex(absorbRga(cloneRgaDoc(a), b))).to.equal(hex(type.join(a, b)))
      // everyone converges to one text once all is joined
      const all = type.join(type.join(a, b), c)
      expect(all.pendingCount).to.equal(0)
      expect(view(type.join(c, type.join(b, a)))).to.equal(view(all))
    }), { numRuns: 150 })
  })

  it('round-trips its encoding and refuses non-canonical or damaged ones', () => {
    fc.assert(fc.property(editsArbitrary, fc.array(fc.nat(), { maxLength: 8 }), (edits, deliveries) => {
      for (const state of edit(edits, deliveries)) {
        const bytes = encodeState('rga', state)
        const decoded = decodeState('rga', bytes)
        if (!decoded.ok) { throw new Error(decoded.error) }
        const doc = decoded.value as Rga
        expect(doc.toString()).to.equal(state.toString())
        expect(view(doc)).to.equal(view(state))
        expect(doc.pendingCount).to.equal(state.pendingCount)
        expect(encodeState('rga', doc)).to.deep.equal(bytes)
      }
    }), { numRuns: 100 })
    // the same ops in another (causal) order: refused, so equal states have equal bytes
    const doc = emptyRgaDoc()
    doc.apply({ kind: 'insert', replica: 'b', seq: 0, lamport: 0, origin: null, text: 'x' })
    doc.apply({ kind: 'insert', replica: 'a', seq: 0, lamport: 0, origin: null, text: 'y' })
    const ops = doc.opsSince()
    expect(ops.map(o => o.replica)).to.deep.equal(['a', 'b'])
    const body = encodeOps([ops[1], ops[0]])
    const framed = Uint8Array.from([1, 9, body.length, ...body])
    expect(decodeState('rga', framed)).to.deep.include({ ok: false })
    const good = encodeOps(ops)
    expect(decodeState('rga', Uint8Array.from([1, 9, good.length, ...good])).ok).to.equal(true)
  })

  it('deltas, in any order, give what full states give, and ops with missing dependencies are kept', () => {
    fc.assert(fc.property(editsArbitrary, fc.array(fc.nat(), { maxLength: 8 }), fc.integer(), (edits, deliveries, seed) => {
      // one replica's deltas, every delta of it
      let state = type.empty()
      const deltas: Rga[] = []
      for (const [, insert, at, n, text] of edits) {
        const length = state.length
        const op = insert || length === 0 ? { op: 'insert', index: at % (length + 1), text } : { op: 'delete', index: at % length, length: 1 + n % (length - at % length) }
        const delta = type.apply(state, op, { replica: 'a', now: 0 })
        if (!delta.ok) { throw new Error(delta.error) }
        deltas.push(delta.value)
        state = type.join(state, delta.value)
      }
      const shuffled = deltas.map((d, i) => ({ d, k: (i * 7919 + seed) % 1009 })).sort((x, y) => x.k - y.k).map(x => x.d)
      // encoded and decoded, as the service ships them
      let joined = type.empty()
      for (const d of shuffled) {
        const decoded = decodeState('rga', encodeState('rga', d))
        if (!decoded.ok) { throw new Error(decoded.error) }
        joined = type.join(joined, decoded.value as Rga)
      }
      expect(hex(joined)).to.equal(hex(state))
      expect(joined.toString()).to.equal(state.toString())
      // and a full state or the deltas, joined into other edits, agree
      const [other] = edit(edits.slice(0, 10).map(e => [1, ...e.slice(1)] as Edit), deliveries)
      expect(hex(deltas.reduce((s, d) => type.join(s, d), other))).to.equal(hex(type.join(other, state)))
    }), { numRuns: 100 })
    // a delta whose dependency is missing waits (and is encoded) until it comes
    const a = createReplica('rga', 'a')
    const first = a.apply({ op: 'insert', index: 0, text: 'ab' }, 0)
    const second = a.apply({ op: 'insert', index: 1, text: 'X' }, 0)
    if (!first.ok || !second.ok) { throw new Error('refused') }
    const b = createReplica('rga', 'b')
    b.join(second.value)
    expect(b.value()).to.equal('')
    const waiting = decodeState('rga', b.encode())
    if (!waiting.ok) { throw new Error(waiting.error) }
    expect((waiting.value as Rga).pendingCount).to.equal(1)
    b.join(waiting.value)
    b.join(first.value)
    expect(b.value()).to.equal('aXb')
    expect(b.encode()).to.deep.equal(a.encode())
  })
})

describe('crdt/rga op history (opsSince)', () => {
  it('keeps a typed run as one op and hands another replica only what it lacks', () => {
    const a = new Rga('a', { history: new OpHistory() })
    for (let i = 0; i < 100; i++) { a.insert(i, 'x') }
    expect(a.history?.size).to.equal(1)
    expect(a.opsSince()).to.have.length(1)
    a.delete(10, 5)
    a.insert(3, 'yz')
    expect(a.history?.size).to.equal(3)
    const b = new Rga('b', { history: new OpHistory() })
    for (const op of a.opsSince(new Map([['a', 0]]))) { expect(b.apply(op)).to.deep.equal({ ok: true, value: 'applied' }) }
    expect(b.toString()).to.equal(a.toString())
    expect(a.opsSince(b.version())).to.deep.equal([])
    // a replica holding a prefix of a run gets the rest, sliced
    const partial = new Rga('p')
    const sliced = a.opsSince(new Map([['a', 40]]))
    expect(sliced[0]).to.deep.include({ kind: 'insert', seq: 40, origin: { replica: 'a', seq: 39 } })
    expect((sliced[0] as Op & { text: string }).text).to.have.length(60)
    // a merged run applied over its own prefix: the prefix is a duplicate, the rest integrates
    partial.apply({ kind: 'insert', replica: 'a', seq: 0, lamport: 0, origin: null, text: 'x'.repeat(40) })
    for (const op of a.opsSince()) { expect(partial.apply(op).ok).to.equal(true) }
    expect(partial.toString()).to.equal(a.toString())
    expect(() => partial.opsSince()).to.throw(TypeError)
  })

  it('keeps one pending op per (replica, seq), the longer insert', () => {
    const doc = new Rga('z')
    const early = { kind: 'insert' as const, replica: 'a', seq: 2, lamport: 2, origin: { replica: 'a', seq: 1 }, text: 'c' }
    expect(doc.apply(early)).to.deep.equal({ ok: true, value: 'pending' })
    expect(doc.apply(early)).to.deep.equal({ ok: true, value: 'pending' })
    expect(doc.pendingCount).to.equal(1)
    expect(doc.apply({ ...early, text: 'cd' })).to.deep.equal({ ok: true, value: 'pending' })
    expect(doc.pendingOps()).to.deep.equal([{ ...early, text: 'cd' }])
    expect(doc.apply({ kind: 'insert', replica: 'a', seq: 0, lamport: 0, origin: null, text: 'ab' })).to.deep.equal({ ok: true, value: 'applied' })
    expect(doc.toString()).to.equal('abcd')
    expect(doc.pendingCount).to.equal(0)
    // a pending insert whose prefix came meanwhile is cut to the rest
    const other = new Rga('y')
    other.apply({ kind: 'insert', replica: 'a', seq: 1, lamport: 1, origin: { replica: 'a', seq: 0 }, text: 'bcd' })
    other.apply({ kind: 'insert', replica: 'a', seq: 0, lamport: 0, origin: null, text: 'a' })
    expect(other.toString()).to.equal('abcd')
    const third = new Rga('x')
    third.apply({ kind: 'insert', replica: 'a', seq: 2, lamport: 2, origin: { replica: 'a', seq: 1 }, text: 'cd' })
    third.apply({ kind: 'insert', replica: 'a', seq: 0, lamport: 0, origin: null, text: 'abc' })
    expect(third.toString()).to.equal('abcd')
    expect(third.pendingCount).to.equal(0)
  })

  it('lists concurrent edits in a causal order a fresh replica integrates without buffering', () => {
    fc.assert(fc.property(editsArbitrary, fc.array(fc.nat(), { maxLength: 8 }), (edits, deliveries) => {
      const all = edit(edits, deliveries).reduce((x, y) => type.join(x, y))
      const fresh = new Rga('z')
      for (const op of all.opsSince()) { expect(fresh.apply(op)).to.deep.equal({ ok: true, value: 'applied' }) }
      expect(fresh.toString()).to.equal(all.toString())
    }), { numRuns: 100 })
  })
})

describe('crdt/rga compaction by causal stability (compactRgaDoc)', () => {
  /** Every replica holds every op (the text of all three joined, each with its own pending ops drained). */
  function converged (edits: Edit[], deliveries: number[]): Rga[] {
    const states = edit(edits, deliveries)
    const all = states.reduce((x, y) => type.join(x, y))
    return states.map(s => type.join(s, all))
  }
  const decoded = (doc: Rga): Rga => {
    const result = decodeState('rga', encodeState('rga', doc))
    if (!result.ok) { throw new Error(result.error) }
    return result.value as Rga
  }
  const local = (doc: Rga, op: unknown, replica: string): Rga => {
    const delta = type.apply(doc, op, { replica, now: 0 })
    if (!delta.ok) { throw new Error(delta.error) }
    return delta.value
  }

  it('keeps the text, collects stable tombstones, round-trips its encoding and goes on joining edits of every replica', () => {
    fc.assert(fc.property(editsArbitrary, fc.array(fc.nat(), { maxLength: 8 }), editsArbitrary, (edits, deliveries, later) => {
      const [a, b, c] = converged(edits, deliveries)
      const text = a.toString()
      const stable = a.stableFrontier(new Map([['b', b.version()], ['c', c.version()]]))
      if (stable === null) { throw new Error('no frontier though every replica holds every op') }
      compactRgaDoc(a, stable)
      expect(a.toString()).to.equal(text)
      expect(a.history?.size).to.equal(0)
      // the encoding round-trips to the same bytes, and equal compactions encode equally
      const again = decoded(a)
      expect(hex(again)).to.equal(hex(a))
      expect(view(again)).to.equal(view(a))
      compactRgaDoc(b, stable)
      expect(hex(b)).to.equal(hex(a))
      // later edits of the compacted replica and of one that did not compact (c), joined both ways, converge
      let [x, z] = [again, c]
      for (const [r, insert, at, n, t] of later) {
        const [doc, id] = r === 0 ? [x, 'a'] : [z, 'c']
        const length = doc.length
        const op = insert || length === 0 ? { op: 'insert', index: at % (length + 1), text: t } : { op: 'delete', index: at % length, length: 1 + n % (length - at % length) }
        const delta = local(doc, op, id)
        if (r === 0) { x = type.join(x, delta) } else { z = type.join(z, delta) }
      }
      const xz = decoded(absorbRga(cloneRgaDoc(x), z))
      const zx = absorbRga(cloneRgaDoc(z), x)
      expect(xz.toString()).to.equal(zx.toString())
      expect(view(xz)).to.equal(view(zx))
    }), { numRuns: 100 })
  })

  it('drops tombstones only once every reported member holds them, and a replica with nothing adopts a compacted state', () => {
    const a = createReplica('rga', 'a')
    a.apply({ op: 'insert', index: 0, text: 'hello world' }, 0)
    a.apply({ op: 'delete', index: 5, length: 6 }, 0)
    const doc = a.state as Rga
    // b has not seen the delete: nothing is stable beyond what b holds
    const behind = new Map([['a', 11]])
    const partial = doc.stableFrontier(new Map([['b', behind]]))
    expect(compactRgaDoc(doc, partial as Map<string, number>)).to.equal(0)
    const full = doc.stableFrontier(new Map([['b', doc.version()]]))
    expect(compactRgaDoc(doc, full as Map<string, number>)).to.equal(6)
    expect(doc.history?.size).to.equal(0)
    const fresh = createReplica('rga', 'z')
    fresh.join(decoded(doc))
    expect(fresh.value()).to.equal('hello')
    expect((fresh.state as Rga).version()).to.deep.equal(doc.version())
    fresh.apply({ op: 'insert', index: 5, text: '!' }, 0)
    const back = createReplica('rga', 'a2')
    back.join(decoded(doc))
    back.join(decoded(fresh.state as Rga))
    expect(back.value()).to.equal('hello!')
  })

  it('restarts a replica behind the base from the document, keeping its ops that still fit and counting those that do not', () => {
    const a = createReplica('rga', 'a')
    const c = createReplica('rga', 'c')
    const typed = a.apply({ op: 'insert', index: 0, text: 'hello' }, 0)
    if (!typed.ok) { throw new Error(typed.error) }
    c.join(typed.value)
    // c, cut off: one insert at the start, then one after a unit that a deletes
    c.apply({ op: 'insert', index: 0, text: '>' }, 0)
    c.apply({ op: 'insert', index: 4, text: 'X' }, 0)
    a.apply({ op: 'delete', index: 1, length: 3 }, 0)
    const doc = a.state as Rga
    // a and b (say) hold everything a did: c is not a member any more
    compactRgaDoc(doc, doc.stableFrontier(new Map([['b', doc.version()]])) as Map<string, number>)
    expect(doc.toString()).to.equal('ho')
    const dropped = rgaJoinStats.dropped
    c.join(decoded(doc))
    expect(c.value()).to.equal('>ho')
    expect(rgaJoinStats.dropped - dropped).to.equal(1)
  })

  it('refuses a damaged compacted encoding', () => {
    const a = createReplica('rga', 'a')
    a.apply({ op: 'insert', index: 0, text: 'abc' }, 0)
    a.apply({ op: 'delete', index: 1, length: 1 }, 0)
    const doc = a.state as Rga
    compactRgaDoc(doc, new Map([['a', 3]]))
    const bytes = encodeState('rga', doc)
    expect(decodeState('rga', bytes).ok).to.equal(true)
    // the base is the last field: a base past the document's version
    const pastBase = Uint8Array.from(bytes)
    pastBase[pastBase.length - 1] = 9
    expect(decodeState('rga', pastBase)).to.deep.include({ ok: false })
    for (let cut = 1; cut < bytes.length; cut++) {
      expect(decodeState('rga', bytes.subarray(0, cut)).ok, `cut at ${cut}`).to.equal(false)
    }
  })
})
