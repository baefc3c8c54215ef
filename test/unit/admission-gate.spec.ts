import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { pino } from 'pino'
import { Admission } from '../../node/admission/admission.ts'
import { foundCluster } from '../../node/admission/credentials.ts'
import { Refusals } from '../../node/refusals.ts'
import { fakeAdmissionComponents } from '../lib/peers.ts'
import type { Connection, Stream } from '@libp2p/interface'

describe('admission gate', () => {
  const quiet = pino({ level: 'silent' })
  let admission: Admission
  let refusals: Refusals

  beforeEach(async () => {
    const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    refusals = new Refusals({ log: quiet })
    admission = new Admission(fakeAdmissionComponents(self), {
      cluster: 'c',
      credentials: await foundCluster('c', self, 0),
      closeUnadmitted: false,
      refusals,
      log: quiet,
      limits: { waitersMax: 2, admissionWaitMs: 200 }
    })
    await admission.start()
  })
  afterEach(async () => { await admission.stop() })

  const streamFrom = async (): Promise<{ stream: Stream, connection: Connection, aborted(): boolean }> => {
    let aborted = false
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    return {
      stream: { abort: () => { aborted = true }, pause: () => {}, resume: () => {} } as unknown as Stream,
      connection: { remotePeer: peer } as unknown as Connection,
      aborted: () => aborted
    }
  }

  it('refuses a stranger\'s stream after the admission wait, without calling the handler', async () => {
    let served = 0
    const gated = admission.gate('/p/1', () => { served++ })
    const { stream, connection, aborted } = await streamFrom()
    await gated(stream, connection)
    expect(served).to.equal(0)
    expect(aborted()).to.equal(true)
    expect(await refusals.count('/p/1', 'not-admitted')).to.equal(1)
  })

  it('holds at most waitersMax streams waiting for their peer; the next is refused at once', async () => {
    const gated = admission.gate('/p/1', () => {})
    const waiting = await Promise.all([streamFrom(), streamFrom()])
    const pending = waiting.map(async w => gated(w.stream, w.connection))
    const extra = await streamFrom()
    await gated(extra.stream, extra.connection)
    expect(extra.aborted()).to.equal(true)
    expect(await refusals.count('/p/1', 'waiters-full')).to.equal(1)
    expect(waiting.some(w => w.aborted())).to.equal(false) // still waiting
    await Promise.all(pending)
    expect(await refusals.count('/p/1', 'not-admitted')).to.equal(2)
  })

  it('refuses a revoked peer as revoked, not after a wait for its certificate', async () => {
    const { stream, connection, aborted } = await streamFrom()
    admission.setRevocationCheck(peer => peer === connection.remotePeer.toString())
    await admission.gate('/p/1', () => {})(stream, connection)
    expect(aborted()).to.equal(true)
    expect(await refusals.count('/p/1', 'revoked')).to.equal(1)
    expect(await refusals.count('/p/1', 'not-admitted')).to.equal(0)
  })
})
