import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { createRng } from '../../protocols/common/rng.ts'
import { decodeOps, encodeOps, encodeRga, loadRga, PENDING_OPS_MAX, Rga } from '../../protocols/crdt/rga/index.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { Op, RemoteChange } from '../../protocols/crdt/rga/index.ts'

/** Applies `op` and expects it to be accepted. */
function apply (doc: Rga, op: Op | null): void {
  if (op === null) { return }
  const result = doc.apply(op)
  expect(result.ok, result.ok ? '' : result.error).to.equal(true)
}

/** Items in the document (runs), through an encode: adjacent continuing items are one. */
function itemCount (doc: Rga): number {
  let n = 0
  for (let c: typeof doc.head | null = doc.head; c !== null; c = c.next) { n += c.items.length }
  return n
}

/** A random local edit on `doc` (insert of 1..4 units, sometimes non-ASCII, or a delete); returns its op. */
function randomEdit (doc: Rga, rng: Rng): Op | null {
  if (doc.length > 0 && rng.chance(0.35)) {
    const at = rng.intBetween(0, doc.length - 1)
    return doc.delete(at, rng.intBetween(1, Math.min(4, doc.length - at)))
  }
  const alphabet = ['a', 'b', 'c', 'é', '字', '😀', 'xy']
  let text = ''
  for (let i = rng.intBetween(1, 3); i > 0; i--) { text += alphabet[rng.intBetween(0, alphabet.length - 1)] }
  return doc.insert(rng.intBetween(0, doc.length), text)
}

describe('crdt/rga', () => {
  describe('local edits', () => {
    it('inserts and deletes like string splicing', () => {
      const doc = new Rga('a')
      doc.insert(0, 'hello')
      doc.insert(5, ' world')
      doc.insert(0, '>> ')
      doc.delete(3, 6)
      doc.insert(3, 'HI ')
      expect(doc.toString()).to.equal('>> HI world')
      expect(doc.length).to.equal(11)
    })

    it('keeps a typed run as one item and splits it on demand', () => {
      const doc = new Rga('a')
      for (const ch of 'typing along') { doc.insert(doc.length, ch) }
      expect(itemCount(doc)).to.equal(1)
      doc.insert(6, '_')
      expect(doc.toString()).to.equal('typing_ along')
      expect(itemCount(doc)).to.equal(3)
    })

    it('leaves one tombstone when backspacing through a run', () => {
      const doc = new Rga('a')
      doc.insert(0, 'abcdef')
      for (let i = 5; i >= 2; i--) { doc.delete(i, 1) }
      expect(doc.toString()).to.equal('ab')
      expect(itemCount(doc)).to.equal(2)
    })

    it('refuses positions outside the text', () => {
      const doc = new Rga('a')
      doc.insert(0, 'abc')
      expect(() => doc.insert(4, 'x')).to.throw(RangeError)
      expect(() => doc.delete(2, 2)).to.throw(RangeError)
      expect(doc.insert(1, '')).to.equal(null)
      expect(doc.delete(1, 0)).to.equal(null)
    })

    it('counts positions in UTF-16 units, like JS strings', () => {
      const doc = new Rga('a')
      doc.insert(0, 'a😀b')
      expect(doc.length).to.equal(4)
      doc.delete(1, 2)
      expect(doc.toString()).to.equal('ab')
      // splitting a surrogate pair leaves lone surrogates, as String splicing would
      doc.insert(1, '😀')
      doc.insert(2, 'x')
      expect(doc.toString()).to.equal('a\ud83dx\ude00b')
    })

    it('reports the version vector: one seq per unit inserted, one per delete', () => {
      const doc = new Rga('a')
      doc.insert(0, 'abc')
      doc.delete(0, 2)
      expect([...doc.version()]).to.deep.equal([['a', 4]])
    })
  })

  describe('remote ops', () => {
    it('replays ops on another replica', () => {
      const a = new Rga('a')
      const b = new Rga('b')
      const ops = [a.insert(0, 'hello'), a.insert(5, '!'), a.delete(0, 1), a.insert(0, 'J')]
      for (const op of ops) { apply(b, op) }
      expect(b.toString()).to.equal('Jello!')
      expect(b.version()).to.deep.equal(a.version())
    })

    it('orders concurrent inserts at one place the same way everywhere', () => {
      const a = new Rga('a')
      const b = new Rga('b')
      const c = new Rga('c')
      const base = a.insert(0, '[]')
      apply(b, base)
      apply(c, base)
      const opA = a.insert(1, 'AA')
      const opB = b.insert(1, 'BB')
      const opC = c.insert(1, 'CC')
      apply(a, opB); apply(a, opC)
      apply(b, opC); apply(b, opA)
      apply(c, opA); apply(c, opB)
      // equal timestamps: the larger replica id goes first
      expect(a.toString()).to.equal('[CCBBAA]')
      expect(b.toString()).to.equal(a.toString())
      expect(c.toString()).to.equal(a.toString())
    })

    it('makes a replica\'s later ops wait for its earlier ones', () => {
      const a = new Rga('a')
      const b = new Rga('b')
      apply(b, a.insert(0, 'x'))
      const older = b.insert(1, 'old')
      const later = [b.insert(4, '!'), b.insert(0, '?')]
      for (const op of later) { expect(a.apply(op as Op)).to.deep.equal({ ok: true, value: 'pending' }) }
      expect(a.pendingCount).to.equal(2)
      apply(a, older)
      expect(a.pendingCount).to.equal(0)
      expect(a.toString()).to.equal('?xold!')
      expect(a.toString()).to.equal(b.toString())
    })

    it('integrates an insert whose origin was deleted concurrently', () => {
      const a = new Rga('a')
      const b = new Rga('b')
      apply(b, a.insert(0, 'abc'))
      const del = a.delete(1, 1)
      const ins = b.insert(2, 'X')
      apply(a, ins)
      apply(b, del)
      expect(a.toString()).to.equal('aXc')
      expect(b.toString()).to.equal('aXc')
    })

    it('ignores duplicates and buffers ops that come before their dependencies', () => {
      const a = new Rga('a')
      const b = new Rga('b')
      const ops = [a.insert(0, 'ab'), a.insert(2, 'cd'), a.delete(1, 2)]
      expect(b.apply(ops[2] as Op)).to.deep.equal({ ok: true, value: 'pending' })
      expect(b.apply(ops[1] as Op)).to.deep.equal({ ok: true, value: 'pending' })
      expect(b.toString()).to.equal('')
      expect(b.apply(ops[0] as Op)).to.deep.equal({ ok: true, value: 'applied' })
      expect(b.toString()).to.equal('ad')
      expect(b.apply(ops[1] as Op)).to.deep.equal({ ok: true, value: 'duplicate' })
      expect(b.pendingCount).to.equal(0)
    })

    it('refuses ops once the pending buffer is full', () => {
      expect(PENDING_OPS_MAX).to.be.a('number')
      const a = new Rga('a')
      const b = new Rga('b', { pendingMax: 3 })
      const first = a.insert(0, 'x')
      const later: Op[] = []
      for (let i = 0; i < 4; i++) { later.push(a.insert(a.length, `${i}`) as Op) }
      for (const op of later.slice(0, 3)) { expect(b.apply(op)).to.deep.equal({ ok: true, value: 'pending' }) }
      const full = b.apply(later[3])
      expect(full.ok).to.equal(false)
      expect(full.ok ? '' : full.error).to.match(/pending buffer full/)
      apply(b, first)
      apply(b, later[3])
      expect(b.toString()).to.equal('x0123')
    })

    it('refuses ops once the units waiting would pass pendingUnitsMax, however few the ops', () => {
      const a = new Rga('a')
      const b = new Rga('b', { pendingUnitsMax: 10 })
      const first = a.insert(0, 'x') as Op
      const long = a.insert(1, 'abcdefgh') as Op
      const tooLong = a.insert(9, 'ijk') as Op
      expect(b.apply(long)).to.deep.equal({ ok: true, value: 'pending' })
      const full = b.apply(tooLong)
      expect(full.ok ? '' : full.error).to.match(/10 units waiting/)
      apply(b, first)
      expect(b.pendingCount).to.equal(0)
      apply(b, tooLong)
      expect(b.toString()).to.equal('xabcdefghijk')
    })

    it('holds at most PENDING_OPS_MAX ops by default', () => {
      const a = new Rga('a')
      const b = new Rga('b')
      const first = a.insert(0, 'x') as Op
      const later: Op[] = []
      for (let i = 0; i <= PENDING_OPS_MAX; i++) { later.push(a.insert(0, 'y') as Op) }
      // in reverse: the worst order for the buffer
      for (const op of later.slice(0, PENDING_OPS_MAX).reverse()) { expect(b.apply(op).ok).to.equal(true) }
      expect(b.pendingCount).to.equal(PENDING_OPS_MAX)
      expect(b.apply(later[PENDING_OPS_MAX]).ok).to.equal(false)
      apply(b, first)
      expect(b.pendingCount).to.equal(0)
      apply(b, later[PENDING_OPS_MAX])
      expect(b.toString()).to.equal(a.toString())
    })

    it('refuses malformed ops without changing anything', () => {
      const doc = new Rga('a')
      doc.insert(0, 'abc')
      const bad: any[] = [
        { kind: 'insert', replica: 'b', seq: -1, lamport: 0, origin: null, text: 'x' },
        { kind: 'insert', replica: 'b', seq: 0, lamport: 0, origin: null, text: '' },
        { kind: 'insert', replica: '', seq: 0, lamport: 0, origin: null, text: 'x' },
        { kind: 'insert', replica: 'b', seq: 0, lamport: 0, origin: { replica: 'b', seq: 0 }, text: 'x' },
        { kind: 'delete', replica: 'b', seq: 0, ranges: [] },
        { kind: 'delete', replica: 'b', seq: 0, ranges: [{ replica: 'a', seq: 0, length: 0 }] },
        { kind: 'move', replica: 'b', seq: 0 }
      ]
      for (const op of bad) { expect(doc.apply(op).ok).to.equal(false) }
      // names a seq of a delete op, not a unit
      const del = doc.delete(0, 1)
      expect(del?.seq).to.equal(3)
      expect(doc.apply({ kind: 'insert', replica: 'b', seq: 0, lamport: 9, origin: { replica: 'a', seq: 3 }, text: 'x' }).ok).to.equal(false)
      expect(doc.toString()).to.equal('bc')
    })
  })

  describe('collectStable', () => {
    it('removes stable tombstones and keeps converging', () => {
      const a = new Rga('a')
      const b = new Rga('b')
      for (const op of [a.insert(0, 'hello world'), a.delete(0, 6), a.insert(0, 'brave ')]) { apply(b, op) }
      expect(itemCount(a)).to.equal(3)
      const stable = a.stableFrontier(new Map([['b', b.version()]]))
      expect(stable).to.not.equal(null)
      expect(a.collectStable(stable as Map<string, number>)).to.equal(6)
      expect(itemCount(a)).to.equal(2)
      expect(a.toString()).to.equal('brave world')
      // concurrent edits after the collection still converge
      const opA = a.insert(6, 'new ')
      const opB = b.insert(6, 'old ')
      apply(a, opB)
      apply(b, opA)
      expect(a.toString()).to.equal(b.toString())
    })

    it('keeps tombstones a member has not seen, and refuses a frontier ahead of this replica', () => {
      const a = new Rga('a')
      const b = new Rga('b')
      apply(b, a.insert(0, 'abc'))
      a.delete(1, 1)
      expect(a.collectStable(a.stableFrontier(new Map([['b', b.version()]])) as Map<string, number>)).to.equal(0)
      b.insert(0, 'x')
      // b reports a version with its own op that has not reached a
      expect(a.stableFrontier(new Map([['b', b.version()]]))).to.equal(null)
    })
  })

  describe('convergence', () => {
    it('converges with a plain string for a single replica (property)', () => {
      fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat(), fc.nat(5), fc.string({ minLength: 1, maxLength: 4, unit: 'binary' })), { maxLength: 80 }), edits => {
        const doc = new Rga('solo')
        let model = ''
        for (const [isDelete, at, count, text] of edits) {
          if (isDelete && model.length > 0) {
            const from = at % model.length
            const n = Math.min(count + 1, model.length - from)
            doc.delete(from, n)
            model = model.slice(0, from) + model.slice(from + n)
          } else {
            const to = at % (model.length + 1)
            doc.insert(to, text)
            model = model.slice(0, to) + text + model.slice(to)
          }
        }
        expect(doc.toString()).to.equal(model)
        expect(doc.length).to.equal(model.length)
        const loaded = loadRga(encodeRga(doc), 'other')
        expect(loaded.ok && loaded.value.toString()).to.equal(model)
      }), { numRuns: 300 })
    })

    it('converges for 3 replicas under reordered and duplicated delivery (property)', () => {
      fc.assert(fc.property(fc.integer(), fc.array(fc.tuple(fc.nat(2), fc.nat(2), fc.boolean(), fc.nat(7)), { minLength: 1, maxLength: 60 }), (seed, steps) => {
        const rng = createRng(seed)
        // r2 mirrors its text from the changes it reports, as an editor would
        let mirror = ''
        const onRemoteChange = ({ index, deleted, inserted }: RemoteChange): void => {
          mirror = mirror.slice(0, index) + inserted + mirror.slice(index + deleted)
        }
        const docs = [new Rga('r0'), new Rga('r1'), new Rga('r2', { onRemoteChange })]
        const logs: Op[][] = [[], [], []]
        for (const [who, from, edit, collect] of steps) {
          if (who === 2) { expect(mirror).to.equal(docs[2].toString()) }
          if (collect === 0) {
            // read every op made so far, then collect what the others have seen
            for (const log of logs) { for (const op of log) { expect(docs[who].apply(op).ok).to.equal(true) } }
            const stable = docs[who].stableFrontier(othersVersions(docs, who))
            expect(stable).to.not.equal(null)
            docs[who].collectStable(stable as Map<string, number>)
          } else if (edit || logs[from].length === 0) {
            const op = randomEdit(docs[who], rng)
            if (op !== null) { logs[who].push(op) }
            if (who === 2) { mirror = docs[2].toString() }
          } else {
            // deliver a random op of `from`'s (maybe again, maybe early) to `who`
            const op = logs[from][rng.intBetween(0, logs[from].length - 1)]
            expect(docs[who].apply(op).ok).to.equal(true)
          }
        }
        const all = logs.flat()
        for (const doc of docs) {
          // everything, shuffled, some twice
          const order = [...all]
          for (const op of all) { if (rng.chance(0.2)) { order.push(op) } }
          for (let i = order.length - 1; i > 0; i--) {
            const j = rng.intBetween(0, i)
            const t = order[i]; order[i] = order[j]; order[j] = t
          }
          for (const op of order) { expect(doc.apply(op).ok).to.equal(true) }
          expect(doc.pendingCount).to.equal(0)
        }
        expect(docs[1].toString()).to.equal(docs[0].toString())
        expect(docs[2].toString()).to.equal(docs[0].toString())
        expect(mirror).to.equal(docs[2].toString())
        expect(docs[1].version()).to.deep.equal(docs[0].version())
      }), { numRuns: 400 })
    })

    it('converges on a seeded synthetic concurrent trace with partial syncs and collection', () => {
      const rng = createRng(20260415)
      const n = 4
      const docs = Array.from({ length: n }, (_, i) => new Rga(`peer-${i}`))
      const logs: Op[][] = docs.map(() => [])
      // how far each replica has read each other's log
      const read = docs.map(() => new Array<number>(n).fill(0))
      const sync = (to: number, from: number): void => {
        for (; read[to][from] < logs[from].length; read[to][from]++) {
          expect(docs[to].apply(encodeDecode(logs[from][read[to][from]])).ok).to.equal(true)
        }
      }
      let collected = 0
      for (let step = 0; step < 4000; step++) {
        const who = rng.intBetween(0, n - 1)
        if (rng.chance(0.1)) {
          sync(who, rng.intBetween(0, n - 1))
        } else {
          // bursts of typing at one place, like people do
          let at = rng.intBetween(0, docs[who].length)
          for (let k = rng.intBetween(1, 6); k > 0; k--) {
            const op = rng.chance(0.25) && at > 0 ? docs[who].delete(--at, 1) : docs[who].insert(at++, String.fromCharCode(97 + rng.intBetween(0, 25)))
            if (op !== null) { logs[who].push(op) }
          }
        }
        if (step % 250 === 249) {
          // a replica that has read everyone's ops collects what they have all seen
          const g = rng.intBetween(0, n - 1)
          for (let from = 0; from < n; from++) { if (from !== g) { sync(g, from) } }
          const stable = docs[g].stableFrontier(othersVersions(docs, g))
          expect(stable).to.not.equal(null)
          collected += docs[g].collectStable(stable as Map<string, number>)
        }
      }
      for (let to = 0; to < n; to++) {
        for (let from = 0; from < n; from++) { if (from !== to) { sync(to, from) } }
      }
      for (const doc of docs.slice(1)) { expect(doc.toString()).to.equal(docs[0].toString()) }
      expect(docs[0].length).to.be.greaterThan(1000)
      expect(collected).to.be.greaterThan(0)
      // a replica loaded from an encoding goes on converging
      const loaded = loadRga(encodeRga(docs[1]), 'peer-1')
      expect(loaded.ok).to.equal(true)
      const doc = (loaded as { value: Rga }).value
      const opA = doc.insert(5, 'LOADED')
      const opB = docs[2].insert(5, 'OTHER')
      apply(doc, opB)
      apply(docs[2], opA)
      expect(doc.toString()).to.equal(docs[2].toString())
    })
  })

  describe('encoding', () => {
    it('round-trips op batches, with lone surrogates', () => {
      const a = new Rga('a')
      const ops = [a.insert(0, 'héllo 😀'), a.insert(2, '\ud800'), a.delete(1, 3), a.insert(0, 'x')] as Op[]
      const decoded = decodeOps(encodeOps(ops))
      expect(decoded).to.deep.equal({ ok: true, value: ops })
    })

    it('round-trips a document and goes on editing', () => {
      const a = new Rga('a')
      const b = new Rga('b')
      for (const op of [a.insert(0, 'héllo wörld 😀'), a.delete(2, 3), a.insert(3, '\udc00lone')]) { apply(b, op) }
      apply(a, b.insert(1, 'B'))
      const loaded = loadRga(encodeRga(a), 'a')
      expect(loaded.ok).to.equal(true)
      const doc = (loaded as { value: Rga }).value
      expect(doc.toString()).to.equal(a.toString())
      expect(doc.version()).to.deep.equal(a.version())
      expect(encodeRga(doc)).to.deep.equal(encodeRga(a))
      // the loaded replica continues a's counters
      const op = doc.insert(0, '>')
      apply(b, op)
      expect(b.toString()).to.equal(doc.toString())
    })

    it('never throws on garbage, truncations or bit flips', () => {
      const a = new Rga('a')
      const ops = [a.insert(0, 'hello'), a.delete(1, 2), a.insert(2, 'wörld')] as Op[]
      const opBytes = encodeOps(ops)
      const docBytes = encodeRga(a)
      fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), bytes => {
        const ops = decodeOps(bytes)
        const doc = loadRga(bytes, 'x')
        expect(typeof ops.ok).to.equal('boolean')
        expect(typeof doc.ok).to.equal('boolean')
      }), { numRuns: 500 })
      fc.assert(fc.property(fc.nat(), fc.nat(7), fc.boolean(), (at, bit, truncate) => {
        for (const valid of [opBytes, docBytes]) {
          const i = at % valid.length
          const bytes = truncate ? valid.slice(0, i) : valid.slice()
          if (!truncate) { bytes[i] ^= 1 << bit }
          const result = valid === opBytes ? decodeOps(bytes) : loadRga(bytes, 'x')
          if (truncate) { expect(result.ok).to.equal(false) }
          if (result.ok && valid === docBytes) { expect((result.value as Rga).toString()).to.be.a('string') }
        }
      }), { numRuns: 500 })
      expect(loadRga(new Uint8Array([0xa7, 1, 0, 0, 5]), 'x').ok).to.equal(false)
    })
  })
})

/** The version vectors of all replicas but `who`, by replica id. */
function othersVersions (docs: Rga[], who: number): Map<string, Map<string, number>> {
  const reports = new Map<string, Map<string, number>>()
  docs.forEach((doc, i) => { if (i !== who) { reports.set(doc.replica, doc.version()) } })
  return reports
}

function encodeDecode (op: Op): Op {
  const decoded = decodeOps(encodeOps([op]))
  if (!decoded.ok) { throw new Error(decoded.error) }
  return decoded.value[0]
}
