import { expect } from 'aegir/chai'
import { assert, AssertionError } from '../../protocols/common/assert.ts'
import { createRng } from '../../protocols/common/rng.ts'

describe('common/rng', () => {
  it('replays the same sequence from the same seed', () => {
    const a = createRng(42)
    const b = createRng(42)
    const seqA = Array.from({ length: 100 }, () => a.nextUint32())
    const seqB = Array.from({ length: 100 }, () => b.nextUint32())
    expect(seqA).to.deep.equal(seqB)
  })

  it('differs between seeds', () => {
    const a = Array.from({ length: 8 }, createRng(1).nextUint32)
    const b = Array.from({ length: 8 }, createRng(2).nextUint32)
    expect(a).to.not.deep.equal(b)
  })

  it('keeps intBetween within bounds and reaches both ends', () => {
    const rng = createRng(7)
    const seen = new Set<number>()
    for (let i = 0; i < 2000; i++) {
      const v = rng.intBetween(3, 9)
      expect(v).to.be.within(3, 9)
      seen.add(v)
    }
    expect([...seen].sort()).to.deep.equal([3, 4, 5, 6, 7, 8, 9])
  })

  it('rejects an empty range', () => {
    expect(() => createRng(1).intBetween(5, 4)).to.throw(RangeError)
  })
})

describe('common/assert', () => {
  it('throws AssertionError on a false condition and passes on a true one', () => {
    expect(() => { assert(false, 'boom') }).to.throw(AssertionError, 'boom')
    expect(() => { assert(true) }).to.not.throw()
  })
})
