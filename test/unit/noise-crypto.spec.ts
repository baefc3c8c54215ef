import { randomBytes } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { expect } from 'aegir/chai'
import { Uint8ArrayList } from 'uint8arraylist'
import { accordNoiseCrypto, KeyObjectCache } from '../../node/noise-crypto.ts'

const bytesOf = (data: Uint8Array | Uint8ArrayList): Buffer => Buffer.from(data instanceof Uint8Array ? data : data.subarray())

// Sizes on both sides of the 1,200-byte switch between WebAssembly and node:crypto.
const SIZES = [0, 1, 100, 1183, 1199, 1200, 1201, 6000, 65_519]

describe('noise crypto', () => {
  const ours = accordNoiseCrypto()
  const nonce = Buffer.from('000000000000000000000007', 'hex')
  const ad = randomBytes(32)

  for (const size of SIZES) {
    it(`gives the default's bytes at ${size} bytes, from a buffer and from a list`, () => {
      const k = randomBytes(32)
      const plaintext = randomBytes(size)
      const list = new Uint8ArrayList(plaintext.subarray(0, 12), plaintext.subarray(12, 16), plaintext.subarray(16))
      const expected = bytesOf(defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k))
      for (const input of [plaintext, list]) {
        const sealed = ours.chaCha20Poly1305Encrypt(input, nonce, ad, k)
        expect(sealed, 'one contiguous buffer').to.be.instanceOf(Uint8Array)
        expect(bytesOf(sealed).equals(expected)).to.equal(true)
      }
    })

    it(`opens the default's messages and the default opens ours, at ${size} bytes`, () => {
      const k = randomBytes(32)
      const plaintext = randomBytes(size)
      const theirs = bytesOf(defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k))
      expect(bytesOf(ours.chaCha20Poly1305Decrypt(theirs, nonce, ad, k)).equals(plaintext)).to.equal(true)
      const sealed = bytesOf(ours.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k))
      expect(bytesOf(defaultCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, k)).equals(plaintext)).to.equal(true)
    })
  }

  for (const size of [100, 6000]) {
    it(`refuses a message with a flipped bit, a wrong key or a wrong nonce (${size} bytes)`, () => {
      const k = randomBytes(32)
      const sealed = bytesOf(ours.chaCha20Poly1305Encrypt(randomBytes(size), nonce, ad, k))
      const flipped = Buffer.from(sealed)
      flipped[flipped.byteLength >> 1] ^= 0x01
      expect(() => ours.chaCha20Poly1305Decrypt(flipped, nonce, ad, k)).to.throw()
      expect(() => ours.chaCha20Poly1305Decrypt(sealed, nonce, ad, randomBytes(32))).to.throw()
      expect(() => ours.chaCha20Poly1305Decrypt(sealed, Buffer.alloc(12), ad, k)).to.throw()
    })
  }

  it('encrypts with the right key when more keys are in use than its cache holds', () => {
    const small = accordNoiseCrypto({ keyCacheSize: 2 })
    const keys = Array.from({ length: 5 }, () => randomBytes(32))
    // two keys that share their first 8 bytes land on the same cache slot
    keys.push(Buffer.concat([keys[0].subarray(0, 8), randomBytes(24)]))
    const plaintext = randomBytes(4000)
    for (let round = 0; round < 3; round++) {
      for (const k of keys) {
        const expected = bytesOf(defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k))
        expect(bytesOf(small.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)).equals(expected)).to.equal(true)
      }
    }
  })

  it('keeps at most its limit of key objects, and the newest ones', () => {
    const cache = new KeyObjectCache(3)
    const keys = Array.from({ length: 10 }, () => randomBytes(32))
    for (const k of keys) { cache.get(k) }
    expect(cache.size).to.equal(3)
    const newest = cache.get(keys[9])
    expect(cache.get(keys[9])).to.equal(newest)
    expect(cache.size).to.equal(3)
  })

  it('follows a key changed in place', () => {
    const k = randomBytes(32)
    const plaintext = randomBytes(3000)
    ours.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
    k[31] ^= 0xff
    const expected = bytesOf(defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k))
    expect(bytesOf(ours.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)).equals(expected)).to.equal(true)
  })
})
