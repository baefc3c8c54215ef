import { expect } from 'aegir/chai'
import { G1, randomScalar } from '../../identity/bls.ts'
import { boxKey, openShare, sealShare, SEALED_SHARE_BYTES } from '../../identity/threshold/share-box.ts'
import { seededRandomBytes } from './threshold-helpers.ts'

describe('share boxes (ECIES to a G1 key)', () => {
  const random = seededRandomBytes('box')
  const recipientSecret = randomScalar(random)
  const recipientKey = G1.BASE.multiply(recipientSecret)
  const r = randomScalar(random)
  const ephemeral = G1.BASE.multiply(r)
  const context = new TextEncoder().encode('session 1, dealer a, member b')
  const share = randomScalar(random)
  const sealed = sealShare(r, ephemeral, recipientKey, share, context)

  it('opens for the recipient, with the key it computes or one revealed to others', () => {
    expect(sealed).to.have.length(SEALED_SHARE_BYTES)
    expect(openShare(boxKey(recipientSecret, ephemeral), ephemeral, recipientKey, sealed, context)).to.equal(share)
    expect(openShare(recipientKey.multiply(r), ephemeral, recipientKey, sealed, context)).to.equal(share)
  })

  it('does not open with another key, in another context, or tampered', () => {
    const other = randomScalar(random)
    expect(openShare(boxKey(other, ephemeral), ephemeral, recipientKey, sealed, context)).to.equal('the sealed share does not open')
    expect(openShare(boxKey(recipientSecret, ephemeral), ephemeral, recipientKey, sealed, new TextEncoder().encode('session 2, dealer a, member b'))).to.equal('the sealed share does not open')
    const tampered = Uint8Array.from(sealed)
    tampered[3] ^= 1
    expect(openShare(boxKey(recipientSecret, ephemeral), ephemeral, recipientKey, tampered, context)).to.equal('the sealed share does not open')
    expect(openShare(boxKey(recipientSecret, ephemeral), ephemeral, recipientKey, sealed.subarray(1), context)).to.equal('a sealed share is 48 bytes')
  })
})
