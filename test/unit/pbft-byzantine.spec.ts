import { expect } from 'aegir/chai'
import { checkEvidence, decodeEvidence, encodeEvidence } from '../../protocols/pbft/index.ts'
import { Cluster, clientRequest, digestOf, sign, testCrypto } from './pbft-harness.ts'
import type { Checkpoint, Commit, Evidence, PrePrepare, Prepare } from '../../protocols/pbft/index.ts'

const limits = { requestTimeoutTicks: 4, viewChangeTimeoutTicks: 4, checkpointInterval: 4, watermarkWindow: 8 }
const batchA = [clientRequest('c1', 1)]
const batchB = [clientRequest('c2', 1)]

function prePrepare (batch = batchA, seq = 1, view = 0, replica = 'r0'): PrePrepare {
  return sign<PrePrepare>({ type: 'pre-prepare', replica, view, seq, digest: digestOf(batch), batch })
}

function vote<T extends Prepare | Commit> (type: T['type'], replica: string, digest: string, seq = 1, view = 0): T {
  return sign<T>({ type, replica, view, seq, digest } as Omit<T, 'signature'>)
}

describe('pbft byzantine handling', () => {
  it('an equivocating primary: two pre-prepares for one (view, seq) become evidence, the primary is isolated and replaced', () => {
    const cluster = new Cluster(4, limits)
    expect(cluster.inject('r0', 'r1', prePrepare(batchA))).to.deep.equal({ ok: true })
    expect(cluster.inject('r0', 'r1', prePrepare(batchB))).to.deep.include({ ok: false, reason: 'conflict' })
    const ready = cluster.replica('r1').ready()
    cluster.replica('r1').advance()
    expect(ready.evidence).to.have.length(1)
    expect(ready.evidence[0].offender).to.equal('r0')
    expect(checkEvidence(ready.evidence[0], cluster.ids, testCrypto('r2'))).to.deep.equal({ ok: true })
    expect(ready.isolated).to.deep.equal([{ peer: 'r0', reason: 'equivocation' }])
    // an isolated primary: a view change at once
    expect(ready.messages.some(m => m.message.type === 'view-change' && m.message.view === 1)).to.equal(true)
    expect(ready.messages.some(m => m.to === 'r0')).to.equal(false)
    expect(cluster.inject('r0', 'r1', prePrepare(batchA, 2))).to.deep.include({ ok: false, reason: 'isolated' })
  })

  it('conflicting prepares, commits and checkpoints from one replica are evidence too', () => {
    const cluster = new Cluster(4, limits)
    cluster.inject('r0', 'r1', prePrepare(batchA))
    cluster.inject('r2', 'r1', vote<Prepare>('prepare', 'r2', digestOf(batchA)))
    expect(cluster.inject('r2', 'r1', vote<Prepare>('prepare', 'r2', digestOf(batchB)))).to.deep.include({ ok: false, reason: 'conflict' })
    cluster.inject('r3', 'r1', vote<Commit>('commit', 'r3', digestOf(batchA)))
    expect(cluster.inject('r3', 'r1', vote<Commit>('commit', 'r3', digestOf(batchB)))).to.deep.include({ ok: false, reason: 'conflict' })
    const other = new Cluster(4, limits)
    const checkpoint = (digest: string): Checkpoint => sign<Checkpoint>({ type: 'checkpoint', replica: 'r2', seq: 4, stateDigest: digest })
    other.inject('r2', 'r1', checkpoint('a'.repeat(64)))
    expect(other.inject('r2', 'r1', checkpoint('b'.repeat(64)))).to.deep.include({ ok: false, reason: 'conflict' })
    const evidence = [...cluster.replica('r1').ready().evidence, ...other.replica('r1').ready().evidence]
    expect(evidence.map(e => [e.offender, e.kind === 'equivocation' && e.first.type])).to.deep.equal([['r2', 'prepare'], ['r3', 'commit'], ['r2', 'checkpoint']])
    for (const e of evidence) { expect(checkEvidence(e, cluster.ids, testCrypto('r0')).ok).to.equal(true) }
  })

  it('evidence from others is checked: valid evidence isolates, invalid evidence is refused with a reason', () => {
    const cluster = new Cluster(4, limits)
    const first = vote<Prepare>('prepare', 'r2', digestOf(batchA))
    const second = vote<Prepare>('prepare', 'r2', digestOf(batchB))
    const valid: Evidence = { kind: 'equivocation', offender: 'r2', first, second }
    const cases: Array<[Evidence, RegExp]> = [
      [{ ...valid, second: first }, /do not conflict/],
      [{ ...valid, second: { ...second, signature: new Uint8Array(32) } }, /not validly signed/],
      [{ ...valid, offender: 'r3' }, /not both from the offender/],
      [{ ...valid, offender: 'x9' }, /not a replica/],
      [{ ...valid, second: vote<Prepare>('prepare', 'r2', digestOf(batchB), 2) }, /do not conflict/]
    ]
    for (const [evidence, error] of cases) {
      const result = cluster.replica('r1').receiveEvidence(evidence)
      expect(result.ok).to.equal(false)
      expect(result.ok === false && result.detail).to.match(error)
    }
    expect(cluster.replica('r1').status().isolated).to.deep.equal([])
    const decoded = decodeEvidence(encodeEvidence(valid))
    expect(decoded.ok).to.equal(true)
    if (!decoded.ok) { return }
    expect(cluster.replica('r1').receiveEvidence(decoded.evidence)).to.deep.equal({ ok: true })
    expect(cluster.replica('r1').status().isolated).to.deep.equal([{ peer: 'r2', reason: 'equivocation' }])
  })

  it('an invalid signature on a message its link claims to have signed isolates the link', () => {
    const cluster = new Cluster(4, limits)
    const forged = { ...vote<Prepare>('prepare', 'r2', digestOf(batchA)), signature: new Uint8Array(32) }
    expect(cluster.inject('r2', 'r1', forged)).to.deep.include({ ok: false, reason: 'bad-signature' })
    expect(cluster.replica('r1').status().isolated).to.deep.equal([{ peer: 'r2', reason: 'invalid-signature' }])
  })

  it('a message claiming another replica than its link is refused as wrong-sender, without isolating anyone', () => {
    const cluster = new Cluster(4, limits)
    expect(cluster.inject('r3', 'r1', vote<Prepare>('prepare', 'r2', digestOf(batchA)))).to.deep.include({ ok: false, reason: 'wrong-sender' })
    expect(cluster.inject('r3', 'r1', prePrepare())).to.deep.include({ ok: false, reason: 'wrong-sender' })
    expect(cluster.inject('x9', 'r1', vote<Prepare>('prepare', 'x9', digestOf(batchA)))).to.deep.include({ ok: false, reason: 'not-a-replica' })
    expect(cluster.replica('r1').status().isolated).to.deep.equal([])
  })

  it('a pre-prepare from a replica that is not the primary of its view is refused', () => {
    const cluster = new Cluster(4, limits)
    expect(cluster.inject('r2', 'r1', prePrepare(batchA, 1, 0, 'r2'))).to.deep.include({ ok: false, reason: 'not-primary' })
  })

  it('a pre-prepare with a forged client signature or a batch that does not match its digest is refused', () => {
    const cluster = new Cluster(4, limits)
    const forgedRequest = { ...clientRequest('c1', 1), signature: new Uint8Array(32) }
    expect(cluster.inject('r0', 'r1', prePrepare([forgedRequest]))).to.deep.include({ ok: false, reason: 'malformed' })
    const mismatched = sign<PrePrepare>({ type: 'pre-prepare', replica: 'r0', view: 0, seq: 1, digest: digestOf(batchB), batch: batchA })
    expect(cluster.inject('r0', 'r1', mismatched)).to.deep.include({ ok: false, reason: 'malformed' })
  })

  it('more than outsideWatermarksMax messages below the low watermark from one peer isolate it', () => {
    const cluster = new Cluster(4, { ...limits, outsideWatermarksMax: 3, batchRequestsMax: 1 })
    for (let t = 1; t <= 4; t++) {
      cluster.submit('r0', clientRequest('c1', t))
      cluster.drain()
    }
    expect(cluster.replica('r1').status().lowWatermark).to.equal(4)
    // replays of old prepares
    for (let seq = 1; seq <= 3; seq++) {
      expect(cluster.inject('r2', 'r1', vote<Prepare>('prepare', 'r2', digestOf(batchA), seq))).to.deep.include({ ok: false, reason: 'outside-watermarks' })
    }
    expect(cluster.replica('r1').status().isolated).to.deep.equal([])
    const result = cluster.inject('r2', 'r1', vote<Prepare>('prepare', 'r2', digestOf(batchA), 4))
    expect(result).to.deep.include({ ok: false, reason: 'outside-watermarks' })
    expect(result.ok === false && result.detail).to.match(/isolated/)
    expect(cluster.replica('r1').status().isolated).to.deep.equal([{ peer: 'r2', reason: 'watermark-flood' }])
  })

  it('messages above the high watermark are buffered, not counted against the peer (it may be ahead)', () => {
    const cluster = new Cluster(4, { ...limits, outsideWatermarksMax: 1, futureMessagesMax: 400 })
    for (let seq = 9; seq < 20; seq++) {
      expect(cluster.inject('r2', 'r1', vote<Prepare>('prepare', 'r2', digestOf(batchA), seq)).ok).to.equal(true)
    }
    expect(cluster.replica('r1').status().isolated).to.deep.equal([])
  })

  it('refuses a checkpoint at a seq that is no multiple of checkpointInterval', () => {
    const cluster = new Cluster(4, limits)
    const odd = sign<Checkpoint>({ type: 'checkpoint', replica: 'r2', seq: 5, stateDigest: 'a'.repeat(64) })
    expect(cluster.inject('r2', 'r1', odd)).to.deep.include({ ok: false, reason: 'malformed' })
  })

  it('buffers messages of future views up to its share of futureMessagesMax, then refuses them', () => {
    // 8 slots over 4 replicas: 2 per peer
    const cluster = new Cluster(4, { ...limits, futureMessagesMax: 8 })
    const results = [1, 2, 3].map(seq => cluster.inject('r2', 'r1', vote<Prepare>('prepare', 'r2', digestOf(batchA), seq, 1)))
    expect(results.map(r => r.ok)).to.deep.equal([true, true, false])
    expect(results[2]).to.deep.include({ reason: 'buffer-full' })
    // another peer still has its share
    expect(cluster.inject('r3', 'r1', vote<Prepare>('prepare', 'r3', digestOf(batchA), 1, 1)).ok).to.equal(true)
  })

  it('buffers messages of future views up to its share of futureBytesMax: a peer cannot park megabytes of batches', () => {
    const big = (client: string): ReturnType<typeof clientRequest> => clientRequest(client, 1, 'x'.repeat(10_000))
    // 48 KB over 4 replicas: 12 KB per peer, one 10 KB pre-prepare fits, a second does not
    const cluster = new Cluster(4, { ...limits, futureBytesMax: 48_000, operationBytesMax: 12_000, batchBytesMax: 12_000, pendingBytesMax: 12_000 })
    const early = (client: string): PrePrepare => prePrepare([big(client)], 1, 5, 'r1')
    expect(cluster.inject('r1', 'r2', early('c1')).ok).to.equal(true)
    expect(cluster.inject('r1', 'r2', early('c2'))).to.deep.include({ ok: false, reason: 'buffer-full' })
    // small messages from the same peer still fit its share
    expect(cluster.inject('r1', 'r2', vote<Commit>('commit', 'r1', digestOf(batchA), 1, 5)).ok).to.equal(true)
  })

  it('buffered messages of a later view count once that view is installed', () => {
    const cluster = new Cluster(4, limits)
    cluster.crash('r0')
    // r2 gets the NEW-VIEW only after r3's prepare and the commits for view 1
    const held: typeof cluster.queue = []
    cluster.filter = e => {
      if (e.to === 'r2' && e.message.type === 'new-view') { held.push(e); return false }
      return true
    }
    for (const id of ['r1', 'r2', 'r3']) { cluster.submit(id, clientRequest('c1', 1)) }
    cluster.drain()
    cluster.tick(limits.requestTimeoutTicks)
    const early = cluster.results.filter(r => r.envelope.to === 'r2' && r.envelope.message.type === 'prepare')
    expect(early.map(r => r.result)).to.deep.equal([{ ok: true }])
    expect(cluster.state('r2').executed).to.deep.equal([])
    cluster.filter = () => true
    cluster.queue.push(...held)
    cluster.drain()
    // r2 prepared with r3's buffered prepare (nobody sent it again)
    expect(cluster.state('r2').executed).to.deep.equal(['c1@1'])
  })

  it('bounds pending requests over all clients and per client', () => {
    const cluster = new Cluster(4, { ...limits, pendingRequestsMax: 3, pendingPerClientMax: 2 })
    cluster.filter = () => false
    expect(cluster.submit('r1', clientRequest('c1', 1)).ok).to.equal(true)
    expect(cluster.submit('r1', clientRequest('c1', 2)).ok).to.equal(true)
    expect(cluster.submit('r1', clientRequest('c1', 3))).to.deep.include({ ok: false, reason: 'client-limit' })
    expect(cluster.submit('r1', clientRequest('c2', 1)).ok).to.equal(true)
    expect(cluster.submit('r1', clientRequest('c3', 1))).to.deep.include({ ok: false, reason: 'buffer-full' })
  })

  it('bounds the bytes of pending requests over all clients (any key can sign as a new client)', () => {
    const cluster = new Cluster(4, { ...limits, pendingBytesMax: 25_000, operationBytesMax: 10_000, batchBytesMax: 10_000 })
    cluster.filter = () => false
    const big = (client: string): ReturnType<typeof clientRequest> => clientRequest(client, 1, 'x'.repeat(10_000))
    expect(cluster.submit('r1', big('c1')).ok).to.equal(true)
    expect(cluster.submit('r1', big('c2')).ok).to.equal(true)
    expect(cluster.submit('r1', big('c3'))).to.deep.include({ ok: false, reason: 'buffer-full' })
    // a small one still fits
    expect(cluster.submit('r1', clientRequest('c4', 1)).ok).to.equal(true)
  })

  it('ignores messages from isolated peers and stops sending to them', () => {
    const cluster = new Cluster(4, limits)
    cluster.replica('r1').isolate('r3', 'operator')
    expect(cluster.inject('r3', 'r1', vote<Prepare>('prepare', 'r3', digestOf(batchA)))).to.deep.include({ ok: false, reason: 'isolated' })
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain()
    const toR3 = (cluster.readies.get('r1') ?? []).flatMap(r => r.messages).filter(m => m.to === 'r3')
    expect(toR3).to.have.length(0)
    expect(cluster.state('r1').executed).to.deep.equal(['c1@1'])
  })

  it('an operator readmits an isolated peer: its messages count again, and it is sent to again', () => {
    const cluster = new Cluster(4, limits)
    cluster.replica('r1').isolate('r3', 'operator')
    expect(cluster.replica('r1').readmit('r3')).to.equal(true)
    expect(cluster.replica('r1').readmit('r3')).to.equal(false)
    expect(cluster.replica('r1').status().isolated).to.deep.equal([])
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain()
    const toR3 = (cluster.readies.get('r1') ?? []).flatMap(r => r.messages).filter(m => m.to === 'r3')
    expect(toR3).to.not.have.length(0)
    expect(cluster.inject('r3', 'r1', vote<Prepare>('prepare', 'r3', digestOf(batchA), 9))).to.not.deep.include({ reason: 'isolated' })
  })

  it('a replica that signs conflicting prepares is caught by the honest ones, and the cluster keeps agreeing', () => {
    const cluster = new Cluster(4, limits)
    // r3 answers each pre-prepare with a prepare for another digest to r1, and the right one to the others
    cluster.filter = e => {
      if (e.from === 'r3' && e.to === 'r1' && e.message.type === 'prepare') {
        cluster.inject('r3', 'r1', vote<Prepare>('prepare', 'r3', digestOf(batchB), e.message.seq, e.message.view))
      }
      return true
    }
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain()
    expect(cluster.replica('r1').status().isolated).to.deep.equal([{ peer: 'r3', reason: 'equivocation' }])
    expect(cluster.evidence.get('r1')?.[0]?.offender).to.equal('r3')
    for (const id of ['r0', 'r1', 'r2']) { expect(cluster.state(id).executed, id).to.deep.equal(['c1@1']) }
    // the evidence convinces the others
    const evidence = cluster.evidence.get('r1')?.[0]
    if (evidence === undefined) { return }
    expect(cluster.replica('r2').receiveEvidence(evidence)).to.deep.equal({ ok: true })
  })

  it('keeps checkpoint votes for at most watermarkWindow / checkpointInterval + 1 seqs per replica', () => {
    // window 8, interval 4: three seqs per replica
    const cluster = new Cluster(4, limits)
    const checkpoint = (seq: number): Checkpoint => sign<Checkpoint>({ type: 'checkpoint', replica: 'r2', seq, stateDigest: 'a'.repeat(64) })
    for (const seq of [40, 44, 48, 52]) { expect(cluster.inject('r2', 'r1', checkpoint(seq)).ok).to.equal(true) }
    // 40 was dropped to make room for 52: an older one than those held is refused
    expect(cluster.inject('r2', 'r1', checkpoint(36))).to.deep.include({ ok: false, reason: 'buffer-full' })
    expect(cluster.inject('r2', 'r1', checkpoint(44))).to.deep.include({ ok: false, reason: 'duplicate' })
    expect(cluster.inject('r2', 'r1', checkpoint(40)).ok).to.equal(false)
  })
})
