/**
 * A node rotated under the group key asks the group for its new peer id's
 * certificate again and again, and gives up after recertifyAttemptsMax
 * signing rounds, saying what to run.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { pino } from 'pino'
import { Admission } from '../../node/admission/admission.ts'
import { foundCluster } from '../../node/admission/credentials.ts'
import { Refusals } from '../../node/refusals.ts'
import { fakeAdmissionComponents } from '../lib/peers.ts'
import { waitFor } from '../lib/wait.ts'
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
