import { expect } from 'aegir/chai'
import { checkBatch } from '../../protocols/pbft/certificates.ts'
import { PbftClient, REQUEST_BUNDLE_MAX, batchDigest, decodeMessage, encodeMessage, resolvePbftLimits, signRequests, verifyRequest } from '../../protocols/pbft/index.ts'
import { testCrypto } from './pbft-harness.ts'
import type { ClientRequest, PrePrepare, Reply } from '../../protocols/pbft/index.ts'

const replicas = ['r0', 'r1', 'r2', 'r3']
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

function client (overrides: Partial<ConstructorParameters<typeof PbftClient>[0]> = {}): PbftClient {
  return new PbftClient({ id: 'c1', replicas, crypto: testCrypto('c1'), retransmitTicks: 3, outstandingMax: 2, firstTimestamp: 10, ...overrides })
}

function reply (replica: string, timestamp: number, result: string, options: { view?: number, readOnly?: boolean } = {}): Reply {
  return { type: 'reply', replica, client: 'c1', view: options.view ?? 0, timestamp, readOnly: options.readOnly ?? false, result: bytes(result) }
}

describe('pbft client', () => {
  it('sends a signed ordered request to the primary and accepts f+1 matching replies', () => {
    const c = client()
    const submitted = c.submit(bytes('put x'), false)
    expect(submitted).to.deep.equal({ ok: true, timestamp: 10 })
    const { messages } = c.ready()
    expect(messages.map(m => m.to)).to.deep.equal(['r0'])
    const request = messages[0].message as ClientRequest
    expect(request).to.deep.include({ client: 'c1', timestamp: 10, readOnly: false })
    expect(verifyRequest(request, testCrypto('r2'))).to.equal(true)
    expect(c.receiveReply(reply('r1', 10, 'ok'), 'r1').ok).to.equal(true)
    expect(c.hasReady()).to.equal(false)
    expect(c.receiveReply(reply('r2', 10, 'ok'), 'r2').ok).to.equal(true)
    expect(c.ready().results).to.deep.equal([{ timestamp: 10, result: bytes('ok') }])
    // late replies to an answered request
    expect(c.receiveReply(reply('r3', 10, 'ok'), 'r3')).to.deep.include({ ok: false, reason: 'stale' })
  })

  it('a lying replica cannot make up a result: f+1 must match', () => {
    const c = client()
    c.submit(bytes('get x'), false)
    c.ready()
    c.receiveReply(reply('r3', 10, 'lie'), 'r3')
    c.receiveReply(reply('r1', 10, 'truth'), 'r1')
    expect(c.ready().results).to.deep.equal([])
    // the liar repeating itself does not count twice
    c.receiveReply(reply('r3', 10, 'lie'), 'r3')
    expect(c.ready().results).to.deep.equal([])
    c.receiveReply(reply('r2', 10, 'truth'), 'r2')
    expect(c.ready().results).to.deep.equal([{ timestamp: 10, result: bytes('truth') }])
  })

  it('refuses replies from outside the replicas, from another link than the replica named, or for another client', () => {
    const c = client()
    c.submit(bytes('x'), false)
    expect(c.receiveReply(reply('r9', 10, 'ok'), 'r9')).to.deep.include({ ok: false, reason: 'not-a-replica' })
    expect(c.receiveReply(reply('r1', 10, 'ok'), 'r2')).to.deep.include({ ok: false, reason: 'wrong-sender' })
    expect(c.receiveReply({ ...reply('r1', 10, 'ok'), client: 'c2' }, 'r1')).to.deep.include({ ok: false, reason: 'malformed' })
    expect(c.receiveReply(reply('r1', 99, 'ok'), 'r1')).to.deep.include({ ok: false, reason: 'stale' })
  })

  it('follows a new replica set: a waiting request goes to each new replica, replies of removed ones no longer count, f is the new set\'s', () => {
    const c = client()
    c.submit(bytes('x'), false)
    c.ready()
    // r3 answered before it was removed; its reply is dropped with it
    c.receiveReply(reply('r3', 10, 'ok'), 'r3')
    const next = ['r0', 'r1', 'r2', 'r4', 'r5', 'r6', 'r7']
    c.setReplicas(next)
    expect(c.ready().messages.map(m => m.to)).to.deep.equal(next)
    expect(c.receiveReply(reply('r3', 10, 'ok'), 'r3')).to.deep.include({ ok: false, reason: 'not-a-replica' })
    // n = 7: f = 2, so three matching replies
    c.receiveReply(reply('r4', 10, 'ok'), 'r4')
    c.receiveReply(reply('r5', 10, 'ok'), 'r5')
    expect(c.ready().results).to.deep.equal([])
    c.receiveReply(reply('r6', 10, 'ok'), 'r6')
    expect(c.ready().results).to.deep.equal([{ timestamp: 10, result: bytes('ok') }])
  })

  it('retransmits an unanswered request to every replica every retransmitTicks', () => {
    const c = client()
    c.submit(bytes('x'), false)
    c.ready()
    c.tick()
    c.tick()
    expect(c.hasReady()).to.equal(false)
    c.tick()
    const { messages } = c.ready()
    expect(messages.map(m => m.to)).to.deep.equal(replicas)
    expect(messages.every(m => (m.message as ClientRequest).timestamp === 10)).to.equal(true)
  })

  it('refuses beyond outstandingMax and operations beyond operationBytesMax', () => {
    const c = client({ operationBytesMax: 4 })
    expect(c.submit(bytes('12345'), false)).to.deep.equal({ ok: false, reason: 'too-large' })
    expect(c.submit(bytes('a'), false).ok).to.equal(true)
    expect(c.submit(bytes('b'), false).ok).to.equal(true)
    expect(c.submit(bytes('c'), false)).to.deep.equal({ ok: false, reason: 'busy' })
  })

  it('learns the view from accepted replies and sends to its primary', () => {
    const c = client()
    c.submit(bytes('x'), false)
    c.ready()
    c.receiveReply(reply('r1', 10, 'ok', { view: 5 }), 'r1')
    c.receiveReply(reply('r2', 10, 'ok', { view: 5 }), 'r2')
    expect(c.view).to.equal(5)
    c.ready()
    c.submit(bytes('y'), false)
    expect(c.ready().messages.map(m => m.to)).to.deep.equal(['r1'])
  })

  it('one replica claiming a high view does not move the client', () => {
    const c = client()
    c.submit(bytes('x'), false)
    c.receiveReply(reply('r1', 10, 'ok', { view: 1000 }), 'r1')
    c.receiveReply(reply('r2', 10, 'ok', { view: 0 }), 'r2')
    expect(c.view).to.equal(0)
  })

  it('read-only: sent to all, accepted on a quorum of matching replies', () => {
    const c = client()
    c.submit(bytes('get x'), true)
    const { messages } = c.ready()
    expect(messages.map(m => m.to)).to.deep.equal(replicas)
    c.receiveReply(reply('r0', 10, 'v', { readOnly: true }), 'r0')
    c.receiveReply(reply('r1', 10, 'v', { readOnly: true }), 'r1')
    expect(c.ready().results).to.deep.equal([])
    c.receiveReply(reply('r2', 10, 'v', { readOnly: true }), 'r2')
    expect(c.ready().results).to.deep.equal([{ timestamp: 10, result: bytes('v') }])
  })

  it('read-only: replies that cannot reach a quorum send it again as ordered, under a new timestamp, answered under the first', () => {
    const c = client()
    c.submit(bytes('get x'), true)
    c.ready()
    c.receiveReply(reply('r0', 10, 'old', { readOnly: true }), 'r0')
    c.receiveReply(reply('r1', 10, 'new', { readOnly: true }), 'r1')
    expect(c.hasReady()).to.equal(false)
    c.receiveReply(reply('r2', 10, 'newer', { readOnly: true }), 'r2')
    const { messages } = c.ready()
    expect(messages.map(m => m.to)).to.deep.equal(['r0'])
    expect(messages[0].message).to.deep.include({ timestamp: 11, readOnly: false })
    c.receiveReply(reply('r1', 11, 'new'), 'r1')
    c.receiveReply(reply('r2', 11, 'new'), 'r2')
    expect(c.ready().results).to.deep.equal([{ timestamp: 10, result: bytes('new') }])
  })

  it('read-only: a timeout sends it again as ordered', () => {
    const c = client()
    c.submit(bytes('get x'), true)
    c.ready()
    for (let i = 0; i < 3; i++) { c.tick() }
    const { messages } = c.ready()
    expect(messages.map(m => [m.to, (m.message as ClientRequest).readOnly])).to.deep.equal([['r0', false]])
  })
})

describe('pbft request bundles', () => {
  const unsigned = (client: string, timestamp: number): ClientRequest => ({ type: 'request', client, timestamp, operation: bytes(`op ${timestamp}`), readOnly: false, signature: new Uint8Array(0) })

  it('signs the requests made since the last ready() with one signature over their digests, each verifiable alone', () => {
    const c = client({ outstandingMax: 8 })
    for (let i = 0; i < 3; i++) { c.submit(bytes(`put ${i}`), false) }
    const requests = c.ready().messages.map(m => m.message as ClientRequest)
    expect(requests).to.have.length(3)
    expect(requests.every(r => r.bundle?.byteLength === 3 * 32 && r.signature === requests[0].signature)).to.equal(true)
    for (const request of requests) {
      expect(verifyRequest(request, testCrypto('r1'))).to.equal(true)
      const decoded = decodeMessage(encodeMessage(request))
      expect(decoded.ok && decoded.message).to.deep.equal(request)
      expect(decoded.ok && verifyRequest(decoded.message as ClientRequest, testCrypto('r1'))).to.equal(true)
    }
    // a lone request is signed alone, as before bundles
    c.submit(bytes('put 3'), false)
    const [alone] = c.ready().messages.map(m => m.message as ClientRequest)
    expect(alone.bundle).to.equal(undefined)
    expect(verifyRequest(alone, testCrypto('r1'))).to.equal(true)
  })

  it('refuses a bundled request that is not in its bundle, a tampered bundle, another client\'s bundle, and a forged one', () => {
    const requests = [1, 2, 3].map(t => unsigned('c1', t))
    signRequests(requests, testCrypto('c1'))
    const verifier = testCrypto('r1')
    const [first, second] = requests
    expect(verifyRequest({ ...first, operation: bytes('other') }, verifier)).to.equal(false)
    const tampered = first.bundle?.slice() ?? new Uint8Array(0)
    tampered[40] ^= 1
    expect(verifyRequest({ ...first, bundle: tampered }, verifier)).to.equal(false)
    expect(verifyRequest({ ...second, bundle: tampered }, verifier)).to.equal(false)
    expect(verifyRequest({ ...first, client: 'c2' }, verifier)).to.equal(false)
    const forged = [1, 2].map(t => unsigned('c1', t))
    signRequests(forged, testCrypto('c2'))
    expect(verifyRequest(forged[0], verifier)).to.equal(false)
    // a bundle signature does not pass for the request's own signature, nor the other way round
    expect(verifyRequest({ ...first, bundle: undefined }, verifier)).to.equal(false)
    const single = [unsigned('c1', 9)]
    signRequests(single, testCrypto('c1'))
    expect(verifyRequest({ ...single[0], bundle: first.bundle }, verifier)).to.equal(false)
  })

  it('checks bundled requests in a pre-prepare\'s batch, and cuts bundles at REQUEST_BUNDLE_MAX', () => {
    const requests = Array.from({ length: REQUEST_BUNDLE_MAX + 2 }, (_, i) => unsigned('c1', i + 1))
    signRequests(requests, testCrypto('c1'))
    expect(requests[0].bundle?.byteLength).to.equal(REQUEST_BUNDLE_MAX * 32)
    expect(requests[REQUEST_BUNDLE_MAX].bundle?.byteLength).to.equal(2 * 32)
    const crypto = testCrypto('r1')
    const prePrepare: PrePrepare = { type: 'pre-prepare', replica: 'r0', view: 0, seq: 1, digest: batchDigest(requests, crypto), batch: requests, signature: new Uint8Array(0) }
    const limits = resolvePbftLimits()
    expect(checkBatch(prePrepare, crypto, limits, true)).to.equal(null)
    const bad = requests.map((r, i) => i === 3 ? { ...r, signature: requests[REQUEST_BUNDLE_MAX].signature } : r)
    expect(checkBatch({ ...prePrepare, batch: bad }, crypto, limits, true)).to.match(/invalid client signature/)
  })

  it('decodes only bundles of 2 to REQUEST_BUNDLE_MAX digests', () => {
    const requests = [1, 2].map(t => unsigned('c1', t))
    signRequests(requests, testCrypto('c1'))
    for (const bundle of [new Uint8Array(32), new Uint8Array(65), new Uint8Array((REQUEST_BUNDLE_MAX + 1) * 32)]) {
      expect(decodeMessage(encodeMessage({ ...requests[0], bundle })).ok).to.equal(false)
    }
  })
})
