/**
 * A new key's confirmation (node/dkg/confirmation.ts): T valid partials of
 * the confirmation message under the public shares this node computed
 * confirm it; partials made under another key (a member whose view of the
 * DKG differs) are named bad and confirm nothing.
 */
import { expect } from 'aegir/chai'
import { randomScalar } from '../../identity/bls.ts'
import { commit } from '../../identity/threshold/feldman.ts'
import { evaluatePolynomial, randomPolynomial } from '../../identity/threshold/shamir.ts'
import { partialSign, ThresholdPublicKey } from '../../identity/threshold/tbls.ts'
import { confirmationMessage, isConfirmationMessage, KeyConfirmation } from '../../node/dkg/confirmation.ts'
import { seededRandomBytes } from './threshold-helpers.ts'

/** A 3-of-5 key: its public side and the five shares. */
function threshold3of5 (seed: string): { key: ThresholdPublicKey, shares: Array<{ index: number, value: bigint }> } {
  const random = seededRandomBytes(seed)
  const polynomial = randomPolynomial(randomScalar(random), 3, random)
  const shares = [1, 2, 3, 4, 5].map(index => ({ index, value: evaluatePolynomial(polynomial, BigInt(index)) }))
  return { key: new ThresholdPublicKey(commit(polynomial), 5), shares }
}

describe('dkg: a new key\'s confirmation', () => {
  const session = new Uint8Array(16).fill(9)

  it('is confirmed by T valid partials, each index counted once, checked once T are at hand', () => {
    const { key, shares } = threshold3of5('confirm-a')
    const message = confirmationMessage(session, key.groupKey)
    const check = new KeyConfirmation(key, message, 0)
    check.add(partialSign(shares[0], message))
    check.add(partialSign(shares[0], message))
    check.add(partialSign(shares[1], message))
    expect(check.received).to.equal(2)
    expect(check.check()).to.deep.equal({ confirmed: false, bad: [] })
    expect(check.valid).to.equal(0)
    check.add(partialSign(shares[4], message))
    expect(check.check()).to.deep.equal({ confirmed: true, bad: [] })
    expect(check.valid).to.equal(3)
  })

  it('names the partials made under another key, and is not confirmed by them', () => {
    const ours = threshold3of5('confirm-b')
    const theirs = threshold3of5('confirm-c')
    const message = confirmationMessage(session, ours.key.groupKey)
    const check = new KeyConfirmation(ours.key, message, 0)
    check.add(partialSign(ours.shares[0], message))
    check.add(partialSign(theirs.shares[1], message))
    check.add(partialSign(theirs.shares[2], message))
    expect(check.check()).to.deep.equal({ confirmed: false, bad: [2, 3] })
    expect(check.valid).to.equal(1)
    // a bad index stays bad: the same member's second partial does not count
    check.add(partialSign(ours.shares[1], message))
    expect(check.received).to.equal(1)
    // good ones from the others confirm it
    check.add(partialSign(ours.shares[3], message))
    check.add(partialSign(ours.shares[4], message))
    expect(check.check()).to.deep.equal({ confirmed: true, bad: [] })
    expect(check.bad).to.deep.equal([2, 3])
    // a partial of another session's confirmation does not count either
    const other = new KeyConfirmation(ours.key, message, 0)
    for (const share of ours.shares.slice(0, 3)) { other.add(partialSign(share, confirmationMessage(new Uint8Array(16), ours.key.groupKey))) }
    expect(other.check()).to.deep.equal({ confirmed: false, bad: [1, 2, 3] })
  })

  it('has a domain of its own, which binds the session id and the group key', () => {
    const { key } = threshold3of5('confirm-d')
    const message = confirmationMessage(session, key.groupKey)
    expect(isConfirmationMessage(message)).to.equal(true)
    expect(isConfirmationMessage(new TextEncoder().encode('hello'))).to.equal(false)
    expect(message).to.not.deep.equal(confirmationMessage(new Uint8Array(17).fill(9), key.groupKey))
    expect(message).to.not.deep.equal(confirmationMessage(session, threshold3of5('confirm-e').key.groupKey))
  })
})
