import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ed25519 } from '@noble/curves/ed25519.js'
import { expect } from 'aegir/chai'
import { PeerKeyVerifier, peerKeyPbftCrypto, sha256Hex } from '../../node/pbft/crypto.ts'

const payload = new TextEncoder().encode('pre-prepare view 3 seq 17')

describe('pbft crypto (Ed25519 peer keys)', () => {
  it('verifies its own signature against its peer id, and signatures match @noble/curves', async () => {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    const crypto = peerKeyPbftCrypto(key)
    const signature = crypto.sign(payload)
    expect(signature.byteLength).to.equal(64)
    expect(crypto.verify(id, payload, signature)).to.equal(true)
    // the same bytes a noble signer makes (Ed25519 is deterministic)
    expect(signature).to.deep.equal(ed25519.sign(payload, key.raw.subarray(0, 32)))
  })

  it('rejects a forged signature, another payload and another signer', async () => {
    const key = await generateKeyPair('Ed25519')
    const other = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    const crypto = peerKeyPbftCrypto(key)
    const signature = crypto.sign(payload)
    const forged = signature.slice()
    forged[10] ^= 1
    expect(crypto.verify(id, payload, forged)).to.equal(false)
    expect(crypto.verify(id, new TextEncoder().encode('another'), signature)).to.equal(false)
    expect(crypto.verify(peerIdFromPrivateKey(other).toString(), payload, signature)).to.equal(false)
    expect(crypto.verify(id, payload, peerKeyPbftCrypto(other).sign(payload))).to.equal(false)
  })

  it('rejects malformed and non-Ed25519 peer ids and short signatures without throwing', async () => {
    const key = await generateKeyPair('Ed25519')
    const crypto = peerKeyPbftCrypto(key)
    const signature = crypto.sign(payload)
    const secp = peerIdFromPrivateKey(await generateKeyPair('secp256k1')).toString()
    for (const signer of ['', 'not-a-peer-id', 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N', secp]) {
      expect(crypto.verify(signer, payload, signature)).to.equal(false)
    }
    expect(crypto.verify(peerIdFromPrivateKey(key).toString(), payload, signature.subarray(0, 63))).to.equal(false)
  })

  it('refuses to sign with a non-Ed25519 key', async () => {
    expect(() => peerKeyPbftCrypto(generateKeyPairSyncLike())).to.throw(/Ed25519/)
  })

  it('keeps at most the configured number of parsed keys', async () => {
    const verifier = new PeerKeyVerifier(2)
    const keys = await Promise.all([0, 1, 2].map(async () => generateKeyPair('Ed25519')))
    for (const key of keys) {
      const id = peerIdFromPrivateKey(key).toString()
      expect(verifier.verify(id, payload, peerKeyPbftCrypto(key).sign(payload))).to.equal(true)
      expect(verifier.cachedKeys).to.be.at.most(2)
    }
  })

  it('digests with SHA-256 as lowercase hex', () => {
    expect(sha256Hex(new TextEncoder().encode('abc'))).to.equal('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })
})

/** A key of another type, as a libp2p node with an RSA or secp256k1 identity would have. */
function generateKeyPairSyncLike (): Parameters<typeof peerKeyPbftCrypto>[0] {
  return { type: 'secp256k1', raw: new Uint8Array(32) } as unknown as Parameters<typeof peerKeyPbftCrypto>[0]
}
