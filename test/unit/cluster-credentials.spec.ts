import { generateKeyPair } from '@libp2p/crypto/keys'
import { expect } from 'aegir/chai'
import { encode } from 'cborg'
import {
  clusterPublicKey, createJoinToken, issueCertificate, JOIN_TOKEN_PREFIX, parseJoinToken, verifyCertificate, verifyJoinToken
} from '../../identity/cluster-credentials.ts'
import type { PrivateKey } from '@libp2p/interface'

const PEER = '12D3KooWBgGPPFcyRAPbLGWXLFjcjikNTyadCcc145S32zMsXm7p'
const OTHER_PEER = '12D3KooWJuF5P5wRMT2T6XaUxhkqLkoBfnaseXN4BcSmz6YeXzPq'
const NONCE = new Uint8Array(16).fill(7)

describe('cluster credentials', () => {
  let key: PrivateKey
  let otherKey: PrivateKey
  before(async () => {
    key = await generateKeyPair('Ed25519')
    otherKey = await generateKeyPair('Ed25519')
  })

  describe('membership certificates', () => {
    it('verifies for the cluster, key and peer it was issued to', async () => {
      const cert = await issueCertificate(key, { cluster: 'prod', peer: PEER, issuedAtMs: 1000 })
      const checked = await verifyCertificate(cert, { cluster: 'prod', clusterKey: clusterPublicKey(key), peer: PEER })
      expect(checked).to.deep.include({ cluster: 'prod', peer: PEER, issuedAtMs: 1000 })
    })

    it('is refused for another peer, cluster or cluster key', async () => {
      const cert = await issueCertificate(key, { cluster: 'prod', peer: PEER, issuedAtMs: 1000 })
      const ck = clusterPublicKey(key)
      expect(await verifyCertificate(cert, { cluster: 'prod', clusterKey: ck, peer: OTHER_PEER })).to.equal('certificate of another peer')
      expect(await verifyCertificate(cert, { cluster: 'dev', clusterKey: ck, peer: PEER })).to.equal('certificate of another cluster')
      expect(await verifyCertificate(cert, { cluster: 'prod', clusterKey: clusterPublicKey(otherKey), peer: PEER })).to.equal('certificate signed by another cluster key')
    })

    it('is refused when signed by a key other than the one it names (a forgery)', async () => {
      // body names the real cluster key, signature made by another key
      const body = encode({ v: 1, cluster: 'prod', ck: clusterPublicKey(key), peer: PEER, iat: 1 })
      const sig = await otherKey.sign(new Uint8Array([...new TextEncoder().encode('accord-member-cert-v1\0'), ...body]))
      const forged = encode([body, sig])
      expect(await verifyCertificate(forged, { cluster: 'prod', clusterKey: clusterPublicKey(key), peer: PEER })).to.equal('bad certificate signature')
    })

    it('refuses every single-byte corruption, without throwing', async () => {
      const cert = await issueCertificate(key, { cluster: 'prod', peer: PEER, issuedAtMs: 1000 })
      const expectations = { cluster: 'prod', clusterKey: clusterPublicKey(key), peer: PEER }
      for (let i = 0; i < cert.byteLength; i++) {
        const bad = cert.slice()
        bad[i] ^= 0x01
        expect(await verifyCertificate(bad, expectations)).to.be.a('string', `byte ${i}`)
      }
      expect(await verifyCertificate(new Uint8Array(2000), expectations)).to.equal('too large')
      expect(await verifyCertificate(new Uint8Array([0xff]), expectations)).to.equal('not CBOR')
    })
  })

  describe('join tokens', () => {
    it('verifies until it expires', async () => {
      const token = await createJoinToken(key, { cluster: 'prod', expiresAtMs: 5000, nonce: NONCE })
      expect(token.startsWith(JOIN_TOKEN_PREFIX)).to.equal(true)
      const expect1 = { cluster: 'prod', clusterKey: clusterPublicKey(key) }
      expect(await verifyJoinToken(token, { ...expect1, nowMs: 4999 })).to.deep.include({ cluster: 'prod', expiresAtMs: 5000 })
      expect(await verifyJoinToken(token, { ...expect1, nowMs: 5000 })).to.equal('join token expired')
    })

    it('tells the joiner which cluster key it names', async () => {
      const token = await createJoinToken(key, { cluster: 'prod', expiresAtMs: 5000, nonce: NONCE })
      const parsed = parseJoinToken(token)
      if (typeof parsed === 'string') { throw new Error(parsed) }
      expect(parsed.clusterKey).to.deep.equal(clusterPublicKey(key))
    })

    it('is refused when made with another key, or for another cluster', async () => {
      const foreign = await createJoinToken(otherKey, { cluster: 'prod', expiresAtMs: 5000, nonce: NONCE })
      const expectations = { cluster: 'prod', clusterKey: clusterPublicKey(key), nowMs: 0 }
      expect(await verifyJoinToken(foreign, expectations)).to.equal('join token signed by another cluster key')
      const otherCluster = await createJoinToken(key, { cluster: 'dev', expiresAtMs: 5000, nonce: NONCE })
      expect(await verifyJoinToken(otherCluster, expectations)).to.equal('join token of another cluster')
    })

    it('refuses a token whose body names our key but whose signature is another key\'s', async () => {
      const body = encode({ v: 1, cluster: 'prod', ck: clusterPublicKey(key), exp: 10_000, n: NONCE })
      const sig = await otherKey.sign(new Uint8Array([...new TextEncoder().encode('accord-join-token-v1\0'), ...body]))
      const forged = JOIN_TOKEN_PREFIX + Buffer.from(encode([body, sig])).toString('base64url')
      expect(await verifyJoinToken(forged, { cluster: 'prod', clusterKey: clusterPublicKey(key), nowMs: 0 })).to.equal('bad join token signature')
    })

    it('never takes a certificate\'s signature for a token\'s (domain separation)', async () => {
      // a certificate body shaped as a token body, signed under the certificate domain
      const body = encode({ v: 1, cluster: 'prod', ck: clusterPublicKey(key), exp: 10_000, n: NONCE })
      const sig = await key.sign(new Uint8Array([...new TextEncoder().encode('accord-member-cert-v1\0'), ...body]))
      const crossed = JOIN_TOKEN_PREFIX + Buffer.from(encode([body, sig])).toString('base64url')
      expect(await verifyJoinToken(crossed, { cluster: 'prod', clusterKey: clusterPublicKey(key), nowMs: 0 })).to.equal('bad join token signature')
    })

    it('refuses malformed text with a reason', async () => {
      const expectations = { cluster: 'prod', clusterKey: clusterPublicKey(key), nowMs: 0 }
      expect(await verifyJoinToken('hello', expectations)).to.match(/not an accord join token/)
      expect(await verifyJoinToken(JOIN_TOKEN_PREFIX + '!!!', expectations)).to.equal('join token is not base64url')
      expect(await verifyJoinToken(JOIN_TOKEN_PREFIX + 'A'.repeat(2000), expectations)).to.equal('join token too long')
      expect(await verifyJoinToken(JOIN_TOKEN_PREFIX + 'AAAA', expectations)).to.be.a('string')
    })
  })
})
