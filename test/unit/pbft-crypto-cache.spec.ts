/**
 * The cache of verified signatures in node/pbft/crypto.ts
 * (PBFT_VERIFIED_CACHED_MAX): the same signed bytes are verified once,
 * forgeries are never cached, and the cache stays within its bound.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { PBFT_VERIFIED_CACHED_MAX, PeerKeyVerifier, peerKeyPbftCrypto } from '../../node/pbft/crypto.ts'

const utf8 = new TextEncoder()

describe('pbft crypto: verified-signature cache', () => {
  it('verifies the same signed bytes once; another payload, signer or signature is checked afresh', async () => {
    const key = await generateKeyPair('Ed25519')
    const other = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    const signer = peerKeyPbftCrypto(key)
    const payload = utf8.encode('request c1@1 put x')
    const signature = signer.sign(payload)
    const verifier = new PeerKeyVerifier()
    expect(verifier.verify(id, payload, signature)).to.equal(true)
    expect(verifier.verifications).to.equal(1)
    // a request checked on arrival, then inside a pre-prepare: answered from the cache
    expect(verifier.verify(id, payload, signature)).to.equal(true)
    expect(verifier.verify(id, payload.slice(), signature.slice())).to.equal(true)
    expect(verifier.verifications).to.equal(1)
    expect(verifier.cachedVerified).to.equal(1)
    // not the same bytes: verified, and refused
    expect(verifier.verify(id, utf8.encode('request c1@1 put y'), signature)).to.equal(false)
    expect(verifier.verify(peerIdFromPrivateKey(other).toString(), payload, signature)).to.equal(false)
    const forged = signature.slice()
    forged[0] ^= 1
    expect(verifier.verify(id, payload, forged)).to.equal(false)
    expect(verifier.verify(id, payload, forged)).to.equal(false)
    expect(verifier.verifications).to.equal(5)
    // positives only: the failures left nothing behind
    expect(verifier.cachedVerified).to.equal(1)
  })

  it('keeps at most its limit of signatures, the oldest going first, and none with a limit of 0', async () => {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    const signer = peerKeyPbftCrypto(key)
    const signed = [0, 1, 2, 3].map(i => {
      const payload = utf8.encode(`prepare seq ${i}`)
      return { payload, signature: signer.sign(payload) }
    })
    const verifier = new PeerKeyVerifier(undefined, 3)
    for (const { payload, signature } of signed) {
      expect(verifier.verify(id, payload, signature)).to.equal(true)
      expect(verifier.cachedVerified).to.be.at.most(3)
    }
    expect(verifier.cachedVerified).to.equal(3)
    expect(verifier.verifications).to.equal(4)
    // the newest three are remembered; the first went out and is verified again
    for (const { payload, signature } of signed.slice(1)) { verifier.verify(id, payload, signature) }
    expect(verifier.verifications).to.equal(4)
    verifier.verify(id, signed[0].payload, signed[0].signature)
    expect(verifier.verifications).to.equal(5)
    expect(verifier.cachedVerified).to.equal(3)

    const uncached = new PeerKeyVerifier(undefined, 0)
    uncached.verify(id, signed[0].payload, signed[0].signature)
    uncached.verify(id, signed[0].payload, signed[0].signature)
    expect(uncached.verifications).to.equal(2)
    expect(uncached.cachedVerified).to.equal(0)
  })

  it('what this node signs itself (its client\'s requests) is not verified again when it comes back', async () => {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    const verifier = new PeerKeyVerifier()
    const crypto = peerKeyPbftCrypto(key, { verifier })
    const payload = utf8.encode('request self@1')
    const signature = crypto.sign(payload)
    expect(crypto.verify(id, payload, signature)).to.equal(true)
    expect(verifier.verifications).to.equal(0)
    // another signer claiming the same bytes is still checked, and refused
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    expect(crypto.verify(other, payload, signature)).to.equal(false)
    expect(verifier.verifications).to.equal(1)
  })

  it('the default bound is the named limit', async () => {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    const signer = peerKeyPbftCrypto(key)
    const verifier = new PeerKeyVerifier()
    const payload = utf8.encode('x')
    const signature = signer.sign(payload)
    // fill past the limit with cheap entries: the same key, distinct payloads
    for (let i = 0; i <= PBFT_VERIFIED_CACHED_MAX; i++) {
      const p = utf8.encode(`commit ${i}`)
      verifier.verify(id, p, signer.sign(p))
    }
    expect(verifier.cachedVerified).to.equal(PBFT_VERIFIED_CACHED_MAX)
    expect(verifier.verify(id, payload, signature)).to.equal(true)
    expect(verifier.cachedVerified).to.equal(PBFT_VERIFIED_CACHED_MAX)
  })
})
