import { expect } from 'aegir/chai'
import fc from 'fast-check'
import {
  PBFT_DEFAULTS, decodeEvidence, decodeMessage, decodeRecord, encodeEvidence, encodeMessage, encodeRecord, faultsTolerated,
  quorumSize, resolvePbftLimits, signingPayload
} from '../../protocols/pbft/index.ts'
import { clientRequest, sign } from './pbft-harness.ts'
import type {
  Checkpoint, ClientRequest, Commit, CommittedCertificate, Evidence, NewView, PbftMessage, PersistRecord, PrePrepare, Prepare,
  PreparedCertificate, Reply, SignedMessage, StableCheckpoint, ViewChange
} from '../../protocols/pbft/index.ts'

const id = fc.string({ minLength: 1, maxLength: 12 })
const digest = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(bytes => [...bytes].map(b => b.toString(16).padStart(2, '0')).join(''))
const signature = fc.uint8Array({ maxLength: 64 })
const counter = fc.nat({ max: Number.MAX_SAFE_INTEGER })
const seq = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })

const request: fc.Arbitrary<ClientRequest> = fc.record({
  type: fc.constant('request' as const), client: id, timestamp: counter, operation: fc.uint8Array({ maxLength: 40 }), readOnly: fc.boolean(), signature
})
const vote = <T extends 'prepare' | 'commit'>(type: T): fc.Arbitrary<{ type: T, replica: string, view: number, seq: number, digest: string, signature: Uint8Array }> =>
  fc.record({ type: fc.constant(type), replica: id, view: counter, seq, digest, signature })
const prePrepare: fc.Arbitrary<PrePrepare> = fc.record({
  type: fc.constant('pre-prepare' as const), replica: id, view: counter, seq, digest, signature, batch: fc.array(request, { maxLength: 3 })
})
const checkpoint: fc.Arbitrary<Checkpoint> = fc.record({ type: fc.constant('checkpoint' as const), replica: id, seq, stateDigest: digest, signature })
const stable: fc.Arbitrary<StableCheckpoint> = fc.record({ seq: counter, stateDigest: digest, proof: fc.array(checkpoint, { maxLength: 3 }) })
const prepared: fc.Arbitrary<PreparedCertificate> = fc.record({ prePrepare, prepares: fc.array(vote('prepare'), { maxLength: 3 }) as fc.Arbitrary<Prepare[]> })
const committed: fc.Arbitrary<CommittedCertificate> = fc.record({ prePrepare, commits: fc.array(vote('commit'), { maxLength: 3 }) as fc.Arbitrary<Commit[]> })
const viewChange: fc.Arbitrary<ViewChange> = fc.record({
  type: fc.constant('view-change' as const), replica: id, view: counter, stable, prepared: fc.array(prepared, { maxLength: 2 }), signature
})
const newView: fc.Arbitrary<NewView> = fc.record({
  type: fc.constant('new-view' as const), replica: id, view: counter, viewChanges: fc.array(viewChange, { maxLength: 2 }), prePrepares: fc.array(prePrepare, { maxLength: 2 }), signature
})
const reply: fc.Arbitrary<Reply> = fc.record({
  type: fc.constant('reply' as const), replica: id, view: counter, client: id, timestamp: counter, readOnly: fc.boolean(), result: fc.uint8Array({ maxLength: 40 })
})
const signedMessage: fc.Arbitrary<SignedMessage> = fc.oneof(prePrepare, vote('prepare') as fc.Arbitrary<Prepare>, vote('commit') as fc.Arbitrary<Commit>, checkpoint, viewChange, newView)
const message: fc.Arbitrary<PbftMessage> = fc.oneof(
  request, signedMessage, reply,
  fc.record({ type: fc.constant('fetch-committed' as const), replica: id, fromSeq: seq, epoch: counter }),
  fc.record({
    type: fc.constant('configuration' as const),
    replica: id,
    state: fc.record({
      latest: fc.record({ epoch: counter, replicas: fc.uniqueArray(id, { minLength: 1, maxLength: 3 }), afterSeq: counter }),
      previous: fc.option(fc.record({ epoch: counter, replicas: fc.uniqueArray(id, { minLength: 1, maxLength: 3 }), afterSeq: counter }), { nil: null })
    }),
    knownThrough: counter
  }),
  fc.record({ type: fc.constant('committed-batches' as const), replica: id, certificates: fc.array(committed, { maxLength: 2 }) })
)
const record: fc.Arbitrary<PersistRecord> = fc.oneof(
  fc.record({ kind: fc.constant('view' as const), view: counter, changing: fc.boolean() }),
  fc.record({ kind: fc.constant('signed' as const), message: signedMessage }),
  fc.record({ kind: fc.constant('accepted' as const), prePrepare }),
  fc.record({ kind: fc.constant('prepared' as const), certificate: prepared }),
  fc.record({ kind: fc.constant('committed' as const), certificate: committed }),
  fc.record({ kind: fc.constant('stable' as const), checkpoint: stable })
)
const evidence: fc.Arbitrary<Evidence> = fc.record({ kind: fc.constant('equivocation' as const), offender: id, first: signedMessage, second: signedMessage })

describe('pbft encoding', () => {
  it('every message round-trips', () => {
    fc.assert(fc.property(message, m => {
      const decoded = decodeMessage(encodeMessage(m))
      expect(decoded).to.deep.equal({ ok: true, message: m })
    }), { numRuns: 300 })
  })

  it('every record and evidence round-trips', () => {
    fc.assert(fc.property(record, r => { expect(decodeRecord(encodeRecord(r))).to.deep.equal({ ok: true, record: r }) }), { numRuns: 200 })
    fc.assert(fc.property(evidence, e => { expect(decodeEvidence(encodeEvidence(e))).to.deep.equal({ ok: true, evidence: e }) }), { numRuns: 100 })
  })

  it('decoding never throws on random or mutated bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), bytes => {
      for (const decode of [decodeMessage, decodeRecord, decodeEvidence]) {
        const result = decode(bytes)
        if (!result.ok) { expect(result.error).to.be.a('string') }
      }
    }), { numRuns: 2000 })
    fc.assert(fc.property(message, fc.nat(), fc.nat({ max: 255 }), (m, at, byte) => {
      const bytes = encodeMessage(m)
      bytes[at % bytes.length] = byte
      const result = decodeMessage(bytes)
      if (!result.ok) { expect(result.error).to.be.a('string') }
      const truncated = decodeMessage(bytes.subarray(0, at % bytes.length))
      expect(truncated.ok).to.equal(false)
    }), { numRuns: 500 })
  })

  it('refuses fields beyond the limits, trailing bytes, unknown tags and versions', () => {
    const big = clientRequest('c1', 1, 'x'.repeat(100))
    expect(decodeMessage(encodeMessage(big), { operationBytesMax: 99, batchBytesMax: 99 })).to.deep.include({ ok: false })
    const batch = [clientRequest('c1', 1), clientRequest('c1', 2), clientRequest('c1', 3)]
    const pp = sign<PrePrepare>({ type: 'pre-prepare', replica: 'r0', view: 0, seq: 1, digest: '0'.repeat(64), batch })
    const tooMany = decodeMessage(encodeMessage(pp), { batchRequestsMax: 2 })
    expect(tooMany.ok === false && tooMany.error).to.match(/3 batch requests, more than 2/)
    const tooLarge = decodeMessage(encodeMessage(pp), { batchBytesMax: 20, operationBytesMax: 20 })
    expect(tooLarge.ok === false && tooLarge.error).to.match(/exceed 20 bytes/)
    const bytes = encodeMessage(pp)
    expect(decodeMessage(Uint8Array.from([...bytes, 0])).ok).to.equal(false)
    // versions 1 to 3 exist
    expect(decodeMessage(Uint8Array.from([4, ...bytes.subarray(1)])).ok).to.equal(false)
    expect(decodeMessage(Uint8Array.from([1, 99])).ok).to.equal(false)
    const zeroSeq = Uint8Array.from(encodeMessage({ type: 'fetch-committed', replica: 'r', fromSeq: 1, epoch: 0 }))
    zeroSeq[zeroSeq.length - 2] = 0
    expect(decodeMessage(zeroSeq).ok).to.equal(false)
    const certificates = decodeMessage(encodeMessage({ type: 'committed-batches', replica: 'r', certificates: [{ prePrepare: pp, commits: [] }, { prePrepare: pp, commits: [] }] }), { certificatesPerFetchMax: 1 })
    expect(certificates.ok).to.equal(false)
    // a reply or a request is no signed message: not evidence
    const notSigned = encodeEvidence({ kind: 'equivocation', offender: 'r', first: pp, second: pp })
    notSigned[4] = 1 // first message's tag: request
    expect(decodeEvidence(notSigned).ok).to.equal(false)
  })

  it('the signing payload is domain-separated by type and leaves out the signature and the batch of a pre-prepare', () => {
    const prepare = sign<Prepare>({ type: 'prepare', replica: 'r1', view: 0, seq: 1, digest: 'a'.repeat(64) })
    const commit = { ...prepare, type: 'commit' as const }
    expect(signingPayload(prepare)).to.not.deep.equal(signingPayload(commit))
    expect(signingPayload({ ...prepare, signature: new Uint8Array(5) })).to.deep.equal(signingPayload(prepare))
    const pp = sign<PrePrepare>({ type: 'pre-prepare', replica: 'r0', view: 0, seq: 1, digest: 'a'.repeat(64), batch: [] })
    expect(signingPayload({ ...pp, batch: [clientRequest('c', 1)] })).to.deep.equal(signingPayload(pp))
    expect(signingPayload({ ...pp, view: 1 })).to.not.deep.equal(signingPayload(pp))
  })
})

describe('pbft config', () => {
  it('fills defaults and refuses limits that cannot work', () => {
    expect(resolvePbftLimits()).to.deep.equal(PBFT_DEFAULTS)
    expect(resolvePbftLimits({ pipelineMax: 3 }).pipelineMax).to.equal(3)
    const bad: Array<Record<string, number>> = [
      { pipelineMax: 0 }, { checkpointInterval: 1.5 }, { watermarkWindow: 100, checkpointInterval: 64 },
      { batchBytesMax: 10, operationBytesMax: 11 }, { viewChangeTimeoutTicks: 10, viewChangeTimeoutTicksMax: 5 },
      { pendingPerClientMax: 10, pendingRequestsMax: 5 }, { pipelineMax: 1000, watermarkWindow: 256 }, { unknownLimit: 1 }
    ]
    for (const limits of bad) { expect(() => resolvePbftLimits(limits), JSON.stringify(limits)).to.throw(RangeError) }
  })

  it('f = ⌊(n−1)/3⌋ and quorums of ⌈(n+f+1)/2⌉', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 10].map(faultsTolerated)).to.deep.equal([0, 0, 0, 1, 1, 1, 2, 3])
    expect([1, 4, 5, 6, 7, 10].map(quorumSize)).to.deep.equal([1, 3, 4, 4, 5, 7])
    expect(() => faultsTolerated(0)).to.throw(RangeError)
    // any two quorums intersect in at least f+1 replicas
    for (let n = 1; n <= 40; n++) { expect(2 * quorumSize(n) - n).to.be.at.least(faultsTolerated(n) + 1) }
  })
})
