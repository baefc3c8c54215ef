/**
 * The CRDT service's delta log (node/crdt/delta-log.ts): the deltas a peer
 * lacks, given its version vector; null once one was evicted; the bounds
 * on count and bytes.
 */
import { expect } from 'aegir/chai'
import { DELTA_LOG_BYTES_MAX, DELTA_LOG_ENTRIES_MAX, DeltaLog } from '../../node/crdt/delta-log.ts'
import { contextFromDots } from '../../protocols/crdt/index.ts'

const bytes = (n: number, fill = 1): Uint8Array => new Uint8Array(n).fill(fill)
const dots = (replica: string, from: number, to: number): Array<{ replica: string, counter: number }> =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ replica, counter: from + i }))

describe('crdt delta log', () => {
  it('gives the deltas of the dots a peer lacks, cloud dots included, and nothing when it lacks none', () => {
    const log = new DeltaLog()
    for (const dot of [...dots('a', 1, 5), ...dots('b', 1, 2), { replica: 'c', counter: 7 }]) { log.add(dot, bytes(3, dot.counter)) }
    const held = contextFromDots([...dots('a', 1, 5), ...dots('b', 1, 2), { replica: 'c', counter: 7 }])
    const gap = log.gap(held, new Map([['a', 3], ['b', 2]]))
    expect(gap?.dots.map(d => `${d.replica}${d.counter}`)).to.deep.equal(['a4', 'a5', 'c7'])
    expect(gap?.deltas).to.deep.equal([bytes(3, 4), bytes(3, 5), bytes(3, 7)])
    expect(log.gap(held, new Map([['a', 5], ['b', 2], ['c', 7]]))).to.deep.equal({ dots: [], deltas: [] })
    // a dot the log never had: the state must go instead
    expect(log.gap(contextFromDots(dots('a', 1, 6)), new Map([['a', 3]]))).to.equal(null)
  })

  it('keeps the first delta of a dot', () => {
    const log = new DeltaLog()
    log.add({ replica: 'a', counter: 1 }, bytes(2, 1))
    log.add({ replica: 'a', counter: 1 }, bytes(2, 9))
    expect(log.size).to.equal(1)
    expect(log.gap(contextFromDots(dots('a', 1, 1)), new Map())?.deltas).to.deep.equal([bytes(2, 1)])
  })

  it('keeps a delta group once under each of its dots: given once, its bytes counted once, gone with its last dot', () => {
    const log = new DeltaLog()
    const group = bytes(100)
    log.addGroup(dots('a', 1, 3), group)
    expect(log.size).to.equal(3)
    expect(log.bytes).to.equal(100)
    expect(log.gap(contextFromDots(dots('a', 1, 3)), new Map([['a', 1]]))).to.deep.equal({ dots: dots('a', 2, 3), deltas: [group] })
    // fill the log with others: the group's dots go first, its bytes with the last of them
    const others = DELTA_LOG_ENTRIES_MAX - 3
    for (const dot of dots('b', 1, others)) { log.add(dot, bytes(1)) }
    expect(log.bytes).to.equal(100 + others)
    log.add({ replica: 'b', counter: others + 1 }, bytes(1))
    log.add({ replica: 'b', counter: others + 2 }, bytes(1))
    expect(log.bytes).to.equal(100 + others + 2)
    log.add({ replica: 'b', counter: others + 3 }, bytes(1))
    expect(log.bytes).to.equal(others + 3)
    expect(log.size).to.equal(DELTA_LOG_ENTRIES_MAX)
  })

  it(`holds at most ${DELTA_LOG_ENTRIES_MAX} deltas, the oldest going first`, () => {
    const log = new DeltaLog()
    for (const dot of dots('a', 1, DELTA_LOG_ENTRIES_MAX + 10)) { log.add(dot, bytes(1)) }
    expect(log.size).to.equal(DELTA_LOG_ENTRIES_MAX)
    const held = contextFromDots(dots('a', 1, DELTA_LOG_ENTRIES_MAX + 10))
    expect(log.gap(held, new Map([['a', 10]]))?.dots.length).to.equal(DELTA_LOG_ENTRIES_MAX)
    expect(log.gap(held, new Map([['a', 9]]))).to.equal(null)
  })

  it(`holds at most ${DELTA_LOG_BYTES_MAX} bytes, and never a delta larger than that`, () => {
    const log = new DeltaLog()
    const size = DELTA_LOG_BYTES_MAX / 4
    for (const dot of dots('a', 1, 6)) { log.add(dot, bytes(size)) }
    expect(log.bytes).to.equal(DELTA_LOG_BYTES_MAX)
    expect(log.size).to.equal(4)
    log.add({ replica: 'b', counter: 1 }, bytes(DELTA_LOG_BYTES_MAX + 1))
    expect(log.size).to.equal(4)
    expect(log.gap(contextFromDots(dots('b', 1, 1)), new Map())).to.equal(null)
  })
})
