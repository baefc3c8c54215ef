import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { Fr, randomScalar } from '../../identity/bls.ts'
import { lagrangeAtZero, recover, split, SHARE_INDEX_MAX } from '../../identity/threshold/shamir.ts'
import { seededRandomBytes } from './threshold-helpers.ts'

/** n, t and a subset of share positions of the given size relative to t. */
const sharing = (extra: number): fc.Arbitrary<{ n: number, t: number, picks: number[], seed: number }> =>
  fc.integer({ min: 1 - extra, max: 12 }).chain(n => fc.integer({ min: 1 - extra, max: n }).chain(t =>
    fc.record({
      n: fc.constant(n),
      t: fc.constant(t),
      picks: fc.shuffledSubarray(Array.from({ length: n }, (_, i) => i), { minLength: t + extra, maxLength: t + extra }),
      seed: fc.nat()
    })))

describe('Shamir sharing over the BLS12-381 scalar field', () => {
  it('any t of n shares recover the secret, in any order', () => {
    fc.assert(fc.property(sharing(0), ({ n, t, picks, seed }) => {
      const random = seededRandomBytes(seed)
      const secret = randomScalar(random)
      const shares = split(secret, t, n, random)
      expect(recover(picks.map(i => shares[i]), t)).to.equal(secret)
    }), { numRuns: 200 })
  })

  it('t − 1 shares do not: recovery refuses, and interpolating them gives another value', () => {
    fc.assert(fc.property(sharing(-1), ({ n, t, picks, seed }) => {
      const random = seededRandomBytes(seed)
      const secret = randomScalar(random)
      const shares = split(secret, t, n, random)
      const some = picks.map(i => shares[i])
      expect(() => recover(some, t)).to.throw(RangeError, /need/)
      expect(recover(some, t - 1)).to.not.equal(secret)
    }), { numRuns: 200 })
  })

  it('Lagrange coefficients at zero sum to 1 (they interpolate the constant polynomial)', () => {
    const lambdas = lagrangeAtZero([1, 3, 4, 9])
    expect(lambdas.reduce((a, b) => Fr.add(a, b), 0n)).to.equal(1n)
    // λ_1 for {1, 2} is 2 / (2 − 1) = 2; λ_2 is 1 / (1 − 2) = −1.
    expect(lagrangeAtZero([1, 2])).to.deep.equal([2n, Fr.neg(1n)])
  })

  it('refuses repeated, zero, fractional and out-of-range indices and impossible thresholds', () => {
    const random = seededRandomBytes('bad')
    expect(() => lagrangeAtZero([1, 2, 2])).to.throw(RangeError, /distinct/)
    expect(() => lagrangeAtZero([0, 1])).to.throw(RangeError, /index/)
    expect(() => lagrangeAtZero([1.5, 2])).to.throw(RangeError, /index/)
    expect(() => lagrangeAtZero([1, SHARE_INDEX_MAX + 1])).to.throw(RangeError, /index/)
    expect(() => split(5n, 4, 3, random)).to.throw(RangeError, /n/)
    expect(() => split(5n, 0, 3, random)).to.throw(RangeError, /threshold/)
    expect(() => split(5n, 2, SHARE_INDEX_MAX + 1, random)).to.throw(RangeError)
  })
})
