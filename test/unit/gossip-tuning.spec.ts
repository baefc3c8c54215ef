import { expect } from 'aegir/chai'
import fc from 'fast-check'
import {
  DUPLICATE_RATE_HIGH, GossipMeter, LAG_FACTOR, onNews, predictedRounds, QUIET_ROUNDS, retune, sizeFanout, TUNE_EVERY_ROUNDS
} from '../../protocols/gossip/index.ts'
import { GossipHarness } from '../sim/gossip/harness.ts'
import type { TuningObservations } from '../../protocols/gossip/index.ts'

/** fast-check's seed: CI runs the same cases every time (a failure prints its own seed to replay). */
const SEED = 0x7e57

const bounds = { fanoutMin: 1, fanoutMax: 8, intervalTicksMin: 5, intervalTicksMax: 50 }
const base = { fanout: 3, intervalTicks: 10 }
const calm: TuningObservations = { peers: 99, duplicateRate: 0.2, convergenceTicks: 20, quietRounds: 0 }

describe('gossip/tuning', () => {
  it('takes its fanout from the cluster size: 1 + round(log10(N + 1))', () => {
    expect([0, 9, 99, 999, 9999].map(sizeFanout)).to.deep.equal([1, 2, 3, 4, 5])
    expect(predictedRounds(99, 3)).to.equal(5)
  })

  it('steps the fanout toward the size\'s fanout, one at a time, and keeps the configured interval', () => {
    expect(retune({ fanout: 1, intervalTicks: 10 }, base, { ...calm, peers: 999 }, bounds)).to.deep.equal({ fanout: 2, intervalTicks: 10 })
    expect(retune({ fanout: 8, intervalTicks: 10 }, base, { ...calm, peers: 9 }, bounds)).to.deep.equal({ fanout: 7, intervalTicks: 10 })
    expect(retune({ fanout: 3, intervalTicks: 10 }, base, calm, bounds)).to.deep.equal({ fanout: 3, intervalTicks: 10 })
  })

  it('lowers the fanout when most received entries are duplicates', () => {
    const next = retune({ fanout: 5, intervalTicks: 10 }, base, { ...calm, peers: 999, duplicateRate: DUPLICATE_RATE_HIGH + 0.1 }, bounds)
    expect(next).to.deep.equal({ fanout: 4, intervalTicks: 10 })
  })

  it('raises the fanout and shortens the interval when news lags behind what epidemic spreading predicts', () => {
    const predictedTicks = predictedRounds(99, 3) * 10
    const next = retune({ fanout: 3, intervalTicks: 10 }, base, { ...calm, convergenceTicks: LAG_FACTOR * predictedTicks + 1, duplicateRate: 0.9 }, bounds)
    expect(next).to.deep.equal({ fanout: 4, intervalTicks: 7 })
    const notLagging = retune({ fanout: 3, intervalTicks: 10 }, base, { ...calm, convergenceTicks: LAG_FACTOR * predictedTicks }, bounds)
    expect(notLagging).to.deep.equal({ fanout: 3, intervalTicks: 10 })
  })

  it('lengthens the interval of a quiet cluster toward its maximum, and returns to the configured one on news', () => {
    let current = { fanout: 3, intervalTicks: 10 }
    const intervals: number[] = []
    for (let i = 0; i < 12; i++) {
      current = retune(current, base, { ...calm, quietRounds: QUIET_ROUNDS, convergenceTicks: 10_000 }, bounds)
      intervals.push(current.intervalTicks)
    }
    expect(intervals).to.deep.equal([13, 17, 22, 28, 35, 44, 50, 50, 50, 50, 50, 50])
    expect(retune(current, base, calm, bounds)).to.deep.equal({ fanout: 3, intervalTicks: 10 })
  })

  it('on news, returns an interval stretched by quiet to the configured one, and leaves a shortened one', () => {
    expect(onNews({ fanout: 2, intervalTicks: 50 }, base)).to.deep.equal({ fanout: 2, intervalTicks: 10 })
    expect(onNews({ fanout: 5, intervalTicks: 7 }, base)).to.deep.equal({ fanout: 5, intervalTicks: 7 })
  })

  it('never leaves its bounds, whatever it observes', () => {
    const parameters = fc.record({ fanout: fc.integer({ min: 1, max: 64 }), intervalTicks: fc.integer({ min: 1, max: 1000 }) })
    const limits = fc.tuple(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 0, max: 63 }), fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 0, max: 999 }))
      .map(([fanoutMin, fanoutSpan, intervalTicksMin, intervalSpan]) => ({ fanoutMin, fanoutMax: fanoutMin + fanoutSpan, intervalTicksMin, intervalTicksMax: intervalTicksMin + intervalSpan }))
    const observed = fc.record({
      peers: fc.integer({ min: 0, max: 20_000 }),
      duplicateRate: fc.oneof(fc.constant(null), fc.double({ min: 0, max: 1, noNaN: true })),
      convergenceTicks: fc.oneof(fc.constant(null), fc.double({ min: 0, max: 1e9, noNaN: true })),
      quietRounds: fc.integer({ min: 0, max: 100 })
    })
    fc.assert(fc.property(limits, parameters, parameters, observed, (b, current, configured, o) => {
      const next = retune(current, configured, o, b)
      expect(next.fanout).to.be.within(b.fanoutMin, b.fanoutMax)
      expect(next.intervalTicks).to.be.within(b.intervalTicksMin, b.intervalTicksMax)
      expect(Number.isInteger(next.fanout) && Number.isInteger(next.intervalTicks)).to.equal(true)
    }), { seed: SEED, numRuns: 2000 })
  })

  it('meters duplicates and ages as moving averages over the rounds that saw any, and counts quiet rounds', () => {
    const meter = new GossipMeter()
    meter.noteReceived(4, 1)
    meter.noteFresh(10)
    meter.noteFresh(30)
    meter.endRound()
    expect(meter).to.deep.include({ duplicateRate: 0.25, convergenceTicks: 20, quietRounds: 0 })
    meter.noteReceived(2, 2)
    meter.endRound()
    expect(meter.duplicateRate).to.equal(0.25 + 0.25 * (1 - 0.25))
    expect(meter).to.deep.include({ convergenceTicks: 20, quietRounds: 1 })
    meter.endRound()
    meter.noteWrite()
    meter.endRound()
    expect(meter.quietRounds).to.equal(0)
  })

  it('adaptive: a quiet cluster settles on the size\'s fanout and the longest interval; a write brings the writer back', () => {
    const h = new GossipHarness()
    const ids = Array.from({ length: 12 }, (_, i) => `n${i}`)
    for (const id of ids) { h.add(id, { fanout: 6 }) }
    h.connectAll()
    h.node('n0').set('k', Uint8Array.of(1))
    h.run(3000)
    for (const id of ids) {
      expect(h.node(id).status(), id).to.deep.include({ fanout: sizeFanout(11), intervalTicks: 50 })
    }
    // News brings the interval back at once (not at the next retune), at the writer and then at every node it reaches.
    const writer = h.node('n3')
    writer.set('k', Uint8Array.of(2))
    expect(writer.status().intervalTicks).to.equal(10)
    h.run(10 * TUNE_EVERY_ROUNDS)
    expect(h.converged()).to.equal(true)
    for (const id of ids) { expect(h.node(id).status().intervalTicks, id).to.equal(10) }
  })

  it('adaptive: false pins fanout and interval', () => {
    const h = new GossipHarness()
    const ids = Array.from({ length: 12 }, (_, i) => `n${i}`)
    for (const id of ids) { h.add(id, { fanout: 6, intervalTicks: 7, adaptive: false }) }
    h.connectAll()
    for (const id of ids) { h.node(id).set('k', Uint8Array.of(1)) }
    h.run(2000)
    for (const id of ids) {
      expect(h.node(id).status(), id).to.deep.include({ fanout: 6, intervalTicks: 7 })
      expect(h.node(id).status().rounds, id).to.be.within(280, 286)
    }
  })
})
