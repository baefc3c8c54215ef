import { expect } from 'aegir/chai'
import { CausalDeliveryBuffer, compareClocks, contextContains, contextFromDots, deliveryStatus, Hlc, joinContexts, mergeClocks, nextDot, versionVector } from '../../protocols/crdt/index.ts'
import type { CausalOp } from '../../protocols/crdt/index.ts'

const dots = (replica: string, ...counters: number[]): Array<{ replica: string, counter: number }> => counters.map(counter => ({ replica, counter }))

describe('crdt/causal', () => {
  describe('causal context', () => {
    it('keeps non-contiguous dots in the cloud and compacts them into the version vector once contiguous', () => {
      const gappy = contextFromDots([...dots('a', 1, 2, 4, 6), ...dots('b', 2)])
      expect([...gappy.vv]).to.deep.equal([['a', 2]])
      expect([...gappy.cloud].map(([r, s]) => [r, [...s]])).to.deep.equal([['a', [4, 6]], ['b', [2]]])
      expect(contextContains(gappy, { replica: 'a', counter: 4 })).to.equal(true)
      expect(contextContains(gappy, { replica: 'a', counter: 3 })).to.equal(false)
      expect(nextDot(gappy, 'a')).to.deep.equal({ replica: 'a', counter: 7 })
      const filled = joinContexts(gappy, contextFromDots([...dots('a', 3, 5), ...dots('b', 1)]))
      expect([...versionVector(filled)]).to.deep.equal([['a', 6], ['b', 2]])
      expect(filled.cloud.size).to.equal(0)
    })

    it('vector clocks compare and merge', () => {
      const a = new Map([['a', 2], ['b', 1]])
      const b = new Map([['a', 1], ['b', 3]])
      expect(compareClocks(a, b)).to.equal('concurrent')
      expect(compareClocks(a, mergeClocks(a, b))).to.equal('before')
      expect(compareClocks(mergeClocks(a, b), b)).to.equal('after')
      expect(compareClocks(a, new Map([...a, ['c', 0]]))).to.equal('equal')
      expect(deliveryStatus(new Map([['a', 1]]), 'a', new Map([['a', 2]]))).to.equal('ready')
      expect(deliveryStatus(new Map([['a', 1]]), 'a', new Map([['a', 3]]))).to.equal('waiting')
      expect(deliveryStatus(new Map([['a', 1]]), 'b', new Map([['a', 2], ['b', 1]]))).to.equal('waiting')
      expect(deliveryStatus(new Map([['a', 1]]), 'a', new Map([['a', 1]]))).to.equal('duplicate')
    })
  })

  describe('hybrid logical clock', () => {
    it('ticks with physical time, counts logically when it stands still or goes back', () => {
      const clock = new Hlc('a')
      expect(clock.tick(100)).to.deep.equal({ wall: 100, logical: 0, replica: 'a' })
      expect(clock.tick(100)).to.deep.equal({ wall: 100, logical: 1, replica: 'a' })
      expect(clock.tick(90)).to.deep.equal({ wall: 100, logical: 2, replica: 'a' })
      expect(clock.tick(101)).to.deep.equal({ wall: 101, logical: 0, replica: 'a' })
      expect(() => clock.tick(-1)).to.throw(RangeError)
    })

    it('receive moves past the remote timestamp, and refuses one too far ahead', () => {
      const clock = new Hlc('a', 1000)
      clock.tick(100)
      expect(clock.receive({ wall: 500, logical: 7, replica: 'b' }, 200)).to.deep.equal({ ok: true, value: { wall: 500, logical: 8, replica: 'a' } })
      expect(clock.receive({ wall: 400, logical: 0, replica: 'b' }, 600)).to.deep.equal({ ok: true, value: { wall: 600, logical: 0, replica: 'a' } })
      const ahead = clock.receive({ wall: 5000, logical: 0, replica: 'b' }, 600)
      expect(ahead.ok).to.equal(false)
      expect(clock.latest).to.deep.equal({ wall: 600, logical: 0, replica: 'a' })
      expect(clock.receive({ wall: -1, logical: 0, replica: 'b' }, 600).ok).to.equal(false)
    })
  })

  describe('causal delivery buffer', () => {
    function opsFrom (origin: string, count: number, deps = new Map<string, number>()): Array<CausalOp<string>> {
      const sender = new CausalDeliveryBuffer<string>()
      for (const [replica, n] of deps) {
        for (let i = 1; i <= n; i++) { sender.receive({ origin: replica, clock: new Map([[replica, i]]), payload: '', bytes: 0 }) }
      }
      return Array.from({ length: count }, (_, i) => sender.local(origin, `${origin}${i + 1}`, 10))
    }

    it('delivers an op once its dependencies are delivered, in causal order', () => {
      const buffer = new CausalDeliveryBuffer<string>()
      const [a1, a2] = opsFrom('a', 2)
      const [b1] = opsFrom('b', 1, new Map([['a', 2]]))
      expect(buffer.receive(b1)).to.deep.equal({ status: 'buffered' })
      expect(buffer.receive(a2)).to.deep.equal({ status: 'buffered' })
      expect(buffer.bufferedOps).to.equal(2)
      expect(buffer.bufferedBytes).to.equal(20)
      const outcome = buffer.receive(a1)
      expect(outcome.status).to.equal('delivered')
      expect(outcome.status === 'delivered' ? outcome.ops.map(op => op.payload) : []).to.deep.equal(['a1', 'a2', 'b1'])
      expect(buffer.bufferedOps).to.equal(0)
      expect(buffer.bufferedBytes).to.equal(0)
      expect([...buffer.clock]).to.deep.equal([['a', 2], ['b', 1]])
    })

    it('drops duplicates, delivered or waiting', () => {
      const buffer = new CausalDeliveryBuffer<string>()
      const [a1, a2, a3] = opsFrom('a', 3)
      expect(buffer.receive(a1).status).to.equal('delivered')
      expect(buffer.receive(a1)).to.deep.equal({ status: 'duplicate' })
      expect(buffer.receive(a3)).to.deep.equal({ status: 'buffered' })
      expect(buffer.receive(a3)).to.deep.equal({ status: 'duplicate' })
      expect(buffer.bufferedOps).to.equal(1)
      expect(buffer.receive(a2).status).to.equal('delivered')
      expect(buffer.receive(a3)).to.deep.equal({ status: 'duplicate' })
    })

    it('refuses what would exceed maxBufferedOps or maxBufferedBytes, with a reason', () => {
      const ops = opsFrom('a', 6)
      const byCount = new CausalDeliveryBuffer<string>({ maxBufferedOps: 3 })
      for (const op of ops.slice(1, 4)) { expect(byCount.receive(op).status).to.equal('buffered') }
      const full = byCount.receive(ops[4])
      expect(full).to.deep.include({ status: 'refused', reason: 'buffer-full' })
      expect(byCount.bufferedOps).to.equal(3)
      // once the gap fills, the buffer drains and takes ops again
      expect(byCount.receive(ops[0]).status).to.equal('delivered')
      expect(byCount.receive(ops[5]).status).to.equal('buffered')

      const byBytes = new CausalDeliveryBuffer<string>({ maxBufferedBytes: 25 })
      expect(byBytes.receive(ops[1]).status).to.equal('buffered')
      expect(byBytes.receive(ops[2]).status).to.equal('buffered')
      expect(byBytes.receive(ops[3])).to.deep.include({ status: 'refused', reason: 'buffer-full' })
      expect(byBytes.receive({ ...ops[4], bytes: 26 })).to.deep.include({ status: 'refused', reason: 'too-large' })
      expect(byBytes.bufferedBytes).to.equal(20)
    })

    it('refuses malformed ops', () => {
      const buffer = new CausalDeliveryBuffer<string>({ maxClockEntries: 2 })
      const bad: Array<CausalOp<string>> = [
        { origin: '', clock: new Map([['', 1]]), payload: '', bytes: 0 },
        { origin: 'a', clock: new Map(), payload: '', bytes: 0 },
        { origin: 'a', clock: new Map([['a', 1.5]]), payload: '', bytes: 0 },
        { origin: 'a', clock: new Map([['a', 1], ['b', 1], ['c', 1]]), payload: '', bytes: 0 },
        { origin: 'a', clock: new Map([['a', 1]]), payload: '', bytes: -1 }
      ]
      for (const op of bad) { expect(buffer.receive(op)).to.deep.include({ status: 'refused', reason: 'malformed' }) }
    })
  })
})
