/**
 * A node under the group key keeps its own certificate current
 * (node/admission/certificate-keeper.ts): rotated, it asks the group for
 * its new peer id's certificate again and again and gives up after
 * recertifyAttemptsMax signing rounds, saying what to run; near its
 * certificate's expiry it asks for a new one.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { pino } from 'pino'
import { randomScalar } from '../../identity/bls.ts'
import { decodeGroupCertificate, encodeGroupCertificate, groupCertificateMessage } from '../../identity/group-certificate.ts'
import { commit } from '../../identity/threshold/feldman.ts'
import { evaluatePolynomial, randomPolynomial } from '../../identity/threshold/shamir.ts'
import { combine, partialSign, ThresholdPublicKey } from '../../identity/threshold/tbls.ts'
import { Admission } from '../../node/admission/admission.ts'
import { foundCluster } from '../../node/admission/credentials.ts'
import { Refusals } from '../../node/refusals.ts'
import { fakeAdmissionComponents } from '../lib/peers.ts'
import { waitFor } from '../lib/wait.ts'
import { seededRandomBytes } from './threshold-helpers.ts'
import type { GroupSigner } from '../../node/admission/admission.ts'

describe('admission: re-certification after a rotation under the group key', () => {
  it('tries recertifyAttemptsMax signing rounds, then stops and logs what to run', async () => {
    const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const groupKey = new Uint8Array(48).fill(7)
    const records: Array<{ level: number, msg: string }> = []
    const log = pino({ level: 'info' }, { write (line: string) { records.push(JSON.parse(line)) } })
    const founded = await foundCluster('c', self, 0)
    const admission = new Admission(fakeAdmissionComponents(self), {
      cluster: 'c',
      credentials: { ...founded, groupKey, awaitingGroupCertificate: true },
      closeUnadmitted: false,
      refusals: new Refusals({ log: pino({ level: 'silent' }) }),
      log,
      limits: { recertifyFirstDelayMs: 5, recertifyAttemptsMax: 3 }
    })
    let rounds = 0
    const signer: GroupSigner = {
      groupInfo: () => ({ groupKey, threshold: 2, members: [self.toString()] }),
      signGroupCertificate: async () => {
        rounds++
        throw new Error('1 valid partial signatures, 2 needed')
      }
    }
    admission.setGroupSigner(signer)
    await admission.start()
    try {
      expect(admission.awaitingGroupCertificate).to.equal(true)
      await waitFor(() => records.some(r => r.level === 50 && /did not certify this node's new peer id.*use-group-key/.test(r.msg)), 'the give-up to be logged')
      expect(rounds).to.equal(3)
      // nothing is scheduled after it: a further wait leaves the count where it is
      await new Promise(resolve => setTimeout(resolve, 100))
      expect(rounds).to.equal(3)
      expect(admission.awaitingGroupCertificate).to.equal(true)
    } finally {
      await admission.stop()
    }
  })
})

describe('admission: renewing its own group certificate before it expires', () => {
  const DAY_MS = 24 * 3600_000

  /** A node admitting with a 1-of-1 group key whose certificate was issued `ageMs` ago, and a signer that counts its rounds. */
  async function node (ageMs: number, withShare = true): Promise<{ admission: Admission, rounds(): number, records: Array<{ level: number, msg: string }> }> {
    const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const random = seededRandomBytes(`renew-${ageMs}`)
    const polynomial = randomPolynomial(randomScalar(random), 1, random)
    const key = new ThresholdPublicKey(commit(polynomial), 1)
    const share = { index: 1, value: evaluatePolynomial(polynomial, 1n) }
    const sign = (message: Uint8Array): Uint8Array => (combine(key, message, [partialSign(share, message)]) as { signature: Uint8Array }).signature
    const issuedAtMs = Date.now() - ageMs
    const cert = { cluster: 'c', groupKey: key.groupKey, peer: self.toString(), issuedAtMs, expiresAtMs: issuedAtMs + 90 * DAY_MS }
    const records: Array<{ level: number, msg: string }> = []
    const admission = new Admission(fakeAdmissionComponents(self), {
      cluster: 'c',
      credentials: { ...await foundCluster('c', self, 0), certificate: encodeGroupCertificate(cert, sign(groupCertificateMessage(cert))), groupKey: key.groupKey },
      closeUnadmitted: false,
      refusals: new Refusals({ log: pino({ level: 'silent' }) }),
      log: pino({ level: 'info' }, { write (line: string) { records.push(JSON.parse(line)) } }),
      limits: { recertifyFirstDelayMs: 5 }
    })
    let rounds = 0
    admission.setGroupSigner({
      groupInfo: () => withShare ? { groupKey: key.groupKey, threshold: 1, members: [self.toString()] } : null,
      signGroupCertificate: async (message) => { rounds++; return sign(message) }
    })
    await admission.start()
    return { admission, rounds: () => rounds, records }
  }

  it('renews a certificate within groupCertRenewBeforeMs (30 days) of its expiry, and keeps the new one', async () => {
    const { admission, rounds } = await node(80 * DAY_MS)
    try {
      const before = admission.credentials?.certificate
      await waitFor(() => admission.credentials?.certificate !== before, 'the certificate to be renewed')
      const renewed = decodeGroupCertificate(admission.credentials?.certificate as Uint8Array)
      if (typeof renewed === 'string') { throw new Error(renewed) }
      expect(renewed.expiresAtMs - Date.now()).to.be.above(89 * DAY_MS)
      expect(rounds()).to.equal(1)
    } finally {
      await admission.stop()
    }
  })

  it('leaves a certificate with more than 30 days to run alone', async () => {
    const { admission, rounds } = await node(30 * DAY_MS)
    try {
      const before = admission.credentials?.certificate
      await new Promise(resolve => setTimeout(resolve, 100))
      expect(rounds()).to.equal(0)
      expect(admission.credentials?.certificate).to.equal(before)
    } finally {
      await admission.stop()
    }
  })

  it('without a share of the group key it cannot renew: it says what to do, once, and runs no round', async () => {
    const { admission, rounds, records } = await node(80 * DAY_MS, false)
    try {
      await waitFor(() => records.some(r => r.level === 50 && /holds no share of the group key.*before this one expires/.test(r.msg)), 'the error to be logged')
      await new Promise(resolve => setTimeout(resolve, 100))
      expect(records.filter(r => r.level === 50)).to.have.length(1)
      expect(rounds()).to.equal(0)
    } finally {
      await admission.stop()
    }
  })
})
