/**
 * Membership certificates signed by a 2-of-3 threshold group key (a
 * dealer's key here; a DKG makes the same shape): t partials make one, a
 * partial alone, another group's signature, a cluster-key certificate or a
 * signature under another domain do not.
 */
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { expect } from 'aegir/chai'
import { encode } from 'cborg'
import { randomScalar, sign } from '../../identity/bls.ts'
import { clusterPublicKey, issueCertificate } from '../../identity/cluster-credentials.ts'
import {
  decodeGroupCertificate, encodeGroupCertificate, GROUP_CERT_DOMAIN, GROUP_CERT_TTL_MS_MAX, groupCertificateMessage, isGroupCertificateMessage, parseGroupCertificateMessage, verifyGroupCertificate
} from '../../identity/group-certificate.ts'
import { combine, commit, partialSign, randomPolynomial, sharesOf, ThresholdPublicKey } from '../../identity/threshold/index.ts'
import type { GroupCertificate } from '../../identity/group-certificate.ts'
import type { Share } from '../../identity/threshold/index.ts'

const PEER = '12D3KooWBgGPPFcyRAPbLGWXLFjcjikNTyadCcc145S32zMsXm7p'
const OTHER_PEER = '12D3KooWJuF5P5wRMT2T6XaUxhkqLkoBfnaseXN4BcSmz6YeXzPq'
const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n))

function group (threshold: number, total: number): { key: ThresholdPublicKey, shares: Share[] } {
  const coefficients = randomPolynomial(randomScalar(random), threshold, random)
  return { key: new ThresholdPublicKey(commit(coefficients), total), shares: sharesOf(coefficients, total) }
}

function groupSigned (key: ThresholdPublicKey, shares: Share[], cert: GroupCertificate): Uint8Array {
  const message = groupCertificateMessage(cert)
  const result = combine(key, message, shares.map(s => partialSign(s, message)))
  if (!result.ok) { throw new Error(result.reason) }
  return encodeGroupCertificate(cert, result.signature)
}

describe('group certificates', () => {
  const { key, shares } = group(2, 3)
  const cert: GroupCertificate = { cluster: 'prod', groupKey: key.groupKey, peer: PEER, issuedAtMs: 1000, expiresAtMs: 1000 + 3600_000 }
  const expect2 = { cluster: 'prod', groupKey: key.groupKey, peer: PEER, nowMs: 2000 }

  it('t partials make a certificate that verifies for its cluster, group key and peer', () => {
    const bytes = groupSigned(key, [shares[0], shares[2]], cert)
    expect(verifyGroupCertificate(bytes, expect2)).to.deep.equal(cert)
    const decoded = decodeGroupCertificate(bytes)
    expect(decoded).to.not.be.a('string')
  })

  it('is refused for another peer, cluster or group key, and once expired', () => {
    const bytes = groupSigned(key, [shares[0], shares[1]], cert)
    expect(verifyGroupCertificate(bytes, { ...expect2, peer: OTHER_PEER })).to.equal('certificate of another peer')
    expect(verifyGroupCertificate(bytes, { ...expect2, cluster: 'dev' })).to.equal('certificate of another cluster')
    expect(verifyGroupCertificate(bytes, { ...expect2, groupKey: group(2, 3).key.groupKey })).to.equal('certificate signed by another group key')
    expect(verifyGroupCertificate(bytes, { ...expect2, nowMs: cert.expiresAtMs })).to.equal('certificate expired')
  })

  it('one member\'s partial signature alone is not a certificate (threshold 2)', () => {
    const message = groupCertificateMessage(cert)
    const partial = partialSign(shares[0], message)
    const bytes = encodeGroupCertificate(cert, partial.signature)
    expect(verifyGroupCertificate(bytes, expect2)).to.equal('bad group signature')
    expect(combine(key, message, [partial]).ok).to.equal(false)
  })

  it('a forged signature is refused: another group\'s, or the body changed after signing (another peer spliced in)', () => {
    const other = group(2, 3)
    const forged = groupSigned(other.key, other.shares, { ...cert, groupKey: other.key.groupKey })
    expect(verifyGroupCertificate(forged, expect2)).to.equal('certificate signed by another group key')
    // the other group's signature over a body naming our group key
    const message = groupCertificateMessage(cert)
    const theirs = combine(other.key, message, other.shares.map(s => partialSign(s, message)))
    expect(theirs.ok).to.equal(true)
    expect(verifyGroupCertificate(encodeGroupCertificate(cert, (theirs as { signature: Uint8Array }).signature), expect2)).to.equal('bad group signature')
    // a signature for PEER under a certificate naming OTHER_PEER
    const signedForPeer = decodeGroupCertificate(groupSigned(key, shares, cert)) as { signature: Uint8Array }
    const spliced = encodeGroupCertificate({ ...cert, peer: OTHER_PEER }, signedForPeer.signature)
    expect(verifyGroupCertificate(spliced, { ...expect2, peer: OTHER_PEER })).to.equal('bad group signature')
  })

  it('a group signature under another domain (a generic signing round over the same body) is refused', () => {
    const message = groupCertificateMessage(cert)
    const body = message.subarray(GROUP_CERT_DOMAIN.byteLength)
    const result = combine(key, body, shares.map(s => partialSign(s, body)))
    expect(result.ok).to.equal(true)
    expect(verifyGroupCertificate(encodeGroupCertificate(cert, (result as { signature: Uint8Array }).signature), expect2)).to.equal('bad group signature')
    // and the body under the cluster-key certificate's domain
    const clusterDomain = new TextEncoder().encode('accord-member-cert-v1\0')
    const wrong = new Uint8Array([...clusterDomain, ...body])
    const signed = combine(key, wrong, shares.map(s => partialSign(s, wrong)))
    expect(verifyGroupCertificate(encodeGroupCertificate(cert, (signed as { signature: Uint8Array }).signature), expect2)).to.equal('bad group signature')
  })

  it('a cluster-key certificate is not a group certificate', async () => {
    const clusterKey = await generateKeyPair('Ed25519')
    const bytes = await issueCertificate(clusterKey, { cluster: 'prod', peer: PEER, issuedAtMs: 1000 })
    expect(verifyGroupCertificate(bytes, expect2)).to.equal('not a group signature')
    expect(clusterPublicKey(clusterKey)).to.have.length(32)
  })

  it('a signing request is parsed back into the certificate it asks for; other messages are not certificate requests', () => {
    const message = groupCertificateMessage(cert)
    expect(isGroupCertificateMessage(message)).to.equal(true)
    expect(parseGroupCertificateMessage(message)).to.deep.equal(cert)
    expect(isGroupCertificateMessage(new TextEncoder().encode('hello group'))).to.equal(false)
    expect(parseGroupCertificateMessage(new TextEncoder().encode('hello group'))).to.equal('not a group certificate message')
    // a non-canonical body (a field added) is refused
    const extra = new Uint8Array([...GROUP_CERT_DOMAIN, ...encode({ v: 2, cluster: 'prod', gk: key.groupKey, peer: PEER, iat: 1000, exp: 2000, x: 1 })])
    expect(parseGroupCertificateMessage(extra)).to.equal('unknown certificate fields')
  })

  it('bounds its input: size, lifetime, names, signature length', () => {
    expect(() => groupCertificateMessage({ ...cert, expiresAtMs: cert.issuedAtMs + GROUP_CERT_TTL_MS_MAX + 1 })).to.throw(RangeError, /lifetime/)
    expect(() => groupCertificateMessage({ ...cert, expiresAtMs: cert.issuedAtMs })).to.throw(RangeError, /lifetime/)
    expect(() => groupCertificateMessage({ ...cert, peer: 'x'.repeat(129) })).to.throw(RangeError, /peer/)
    expect(() => groupCertificateMessage({ ...cert, groupKey: new Uint8Array(32) })).to.throw(RangeError, /group key/)
    expect(() => encodeGroupCertificate(cert, new Uint8Array(64))).to.throw(RangeError)
    expect(verifyGroupCertificate(new Uint8Array(2000), expect2)).to.equal('too large')
    expect(verifyGroupCertificate(new Uint8Array([1, 2, 3]), expect2)).to.be.a('string')
    expect(verifyGroupCertificate(encode([new Uint8Array(4), sign(1n, new Uint8Array(1))]), expect2)).to.be.a('string')
  })
})
