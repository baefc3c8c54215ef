import { expect } from 'aegir/chai'
import { AssertionError } from '../../protocols/common/assert.ts'
import { PbftReplica, quorumSize } from '../../protocols/pbft/index.ts'
import { Cluster, clientRequest, digestOf, sign, testCrypto } from './pbft-harness.ts'
import type { Commit, PersistRecord, PrePrepare } from '../../protocols/pbft/index.ts'

describe('pbft normal case', () => {
  it('orders a request through pre-prepare, prepare and commit, and every replica executes it', () => {
    const cluster = new Cluster(4)
    expect(cluster.submit('r0', clientRequest('c1', 1)).ok).to.equal(true)
    cluster.drain()
    for (const id of cluster.ids) {
      expect(cluster.state(id).executed, id).to.deep.equal(['c1@1'])
      expect(cluster.replica(id).status().executed).to.equal(1)
    }
    cluster.expectAgreement()
  })

  it('a backup relays a request to the primary', () => {
    const cluster = new Cluster(4)
    cluster.submit('r2', clientRequest('c1', 1))
    cluster.drain()
    for (const id of cluster.ids) { expect(cluster.state(id).executed, id).to.deep.equal(['c1@1']) }
  })

  it('puts the requests pending when it cuts a batch into one batch', () => {
    const cluster = new Cluster(4, { pipelineMax: 1 })
    for (let t = 1; t <= 5; t++) { cluster.submit('r0', clientRequest('c1', t)) }
    cluster.drain()
    const executed = cluster.readies.get('r1')?.flatMap(r => r.execute) ?? []
    // all five requests were pending at the first ready: one batch
    expect(executed.map(b => b.requests.length)).to.deep.equal([5])
    for (const id of cluster.ids) { expect(cluster.state(id).executed).to.have.length(5) }
  })

  it('cuts batches at batchRequestsMax and batchBytesMax', () => {
    const cluster = new Cluster(4, { batchRequestsMax: 2, pipelineMax: 16 })
    for (let t = 1; t <= 5; t++) { cluster.submit('r0', clientRequest('c1', t)) }
    cluster.drain()
    const sizes = cluster.readies.get('r1')?.flatMap(r => r.execute).map(b => b.requests.length)
    expect(sizes).to.deep.equal([2, 2, 1])

    const bytes = new Cluster(4, { batchBytesMax: 2 * 1024, operationBytesMax: 1024, pipelineMax: 16 })
    for (let t = 1; t <= 3; t++) { bytes.submit('r0', clientRequest('c1', t, 'x'.repeat(1000))) }
    bytes.drain()
    expect(bytes.readies.get('r1')?.flatMap(r => r.execute).map(b => b.requests.length)).to.deep.equal([2, 1])
  })

  it('keeps at most pipelineMax batches pre-prepared and not committed', () => {
    const cluster = new Cluster(4, { pipelineMax: 2, batchRequestsMax: 1 })
    // r1..r3 hear nothing: nothing commits
    cluster.filter = () => false
    for (let t = 1; t <= 5; t++) { cluster.submit('r0', clientRequest('c1', t)) }
    cluster.drain()
    const prePrepares = (cluster.readies.get('r0') ?? []).flatMap(r => r.messages).filter(m => m.message.type === 'pre-prepare' && m.to === 'r1')
    expect(prePrepares).to.have.length(2)
  })

  it('executes in seq order with no gap, even when commits arrive out of order', () => {
    const cluster = new Cluster(4, { pipelineMax: 4, batchRequestsMax: 1 })
    // hold r3's incoming commits for seq 1 until the end
    const held: typeof cluster.queue = []
    cluster.filter = e => {
      if (e.to === 'r3' && e.message.type === 'commit' && e.message.seq === 1) { held.push(e); return false }
      return true
    }
    for (let t = 1; t <= 3; t++) { cluster.submit('r0', clientRequest('c1', t)) }
    cluster.drain()
    expect(cluster.state('r3').lastSeq).to.equal(0)
    cluster.filter = () => true
    cluster.queue.push(...held)
    cluster.drain()
    expect(cluster.state('r3').executed).to.deep.equal(['c1@1', 'c1@2', 'c1@3'])
  })

  it('persists every message it signs in the Ready that sends it, and its certificates', () => {
    const cluster = new Cluster(4)
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain() // the harness checks signed-before-sent on every Ready
    const kinds = (id: string): Array<PersistRecord['kind']> => (cluster.records.get(id) ?? []).map(r => r.kind)
    expect(kinds('r1')).to.include.members(['accepted', 'signed', 'prepared', 'committed'])
    const signedTypes = (cluster.records.get('r1') ?? []).filter(r => r.kind === 'signed').map(r => (r as { message: { type: string } }).message.type)
    expect(signedTypes).to.deep.equal(['prepare', 'commit'])
    const prepared = (cluster.records.get('r1') ?? []).find(r => r.kind === 'prepared')
    expect(prepared?.kind === 'prepared' && prepared.certificate.prepares.length).to.equal(quorumSize(4) - 1)
  })

  it('works for n = 7 with two silent replicas', () => {
    const cluster = new Cluster(7)
    cluster.crash('r5')
    cluster.crash('r6')
    for (let t = 1; t <= 3; t++) { cluster.submit('r0', clientRequest('c1', t)) }
    cluster.drain()
    for (const id of ['r0', 'r1', 'r2', 'r3', 'r4']) { expect(cluster.state(id).executed, id).to.have.length(3) }
    cluster.expectAgreement()
  })

  it('does not order a request that is already in flight twice', () => {
    const cluster = new Cluster(4)
    cluster.filter = e => e.message.type !== 'commit'
    const request = clientRequest('c1', 1)
    cluster.submit('r0', request)
    cluster.drain()
    expect(cluster.submit('r0', request)).to.deep.include({ ok: false, reason: 'duplicate' })
  })

  it('refuses a request with a bad client signature, a read-only request and an operation beyond operationBytesMax', () => {
    const cluster = new Cluster(4)
    const request = clientRequest('c1', 1)
    expect(cluster.submit('r0', { ...request, timestamp: 2 })).to.deep.include({ ok: false, reason: 'bad-signature' })
    expect(cluster.submit('r0', { ...request, readOnly: true })).to.deep.include({ ok: false, reason: 'malformed' })
    const small = new Cluster(4, { operationBytesMax: 8 })
    const large = small.submit('r0', clientRequest('c1', 1, 'nine bytes'))
    expect(large).to.deep.include({ ok: false, reason: 'malformed' })
    expect(large.ok === false && large.detail).to.match(/operationBytesMax/)
  })

  it('sabotageQuorum (simulator sabotage runs only) makes a replica act on fewer votes', () => {
    const batch = [clientRequest('c1', 1)]
    const prePrepare = sign<PrePrepare>({ type: 'pre-prepare', replica: 'r0', view: 0, seq: 1, digest: digestOf(batch), batch })
    const commit = sign<Commit>({ type: 'commit', replica: 'r2', view: 0, seq: 1, digest: digestOf(batch) })
    const broken = new PbftReplica({ id: 'r1', replicas: ['r0', 'r1', 'r2', 'r3'], crypto: testCrypto('r1'), sabotageQuorum: 2 })
    broken.step(prePrepare, 'r0')
    broken.step(commit, 'r2')
    expect(broken.ready().execute.map(b => b.seq)).to.deep.equal([1])
    const honest = new PbftReplica({ id: 'r1', replicas: ['r0', 'r1', 'r2', 'r3'], crypto: testCrypto('r1') })
    honest.step(prePrepare, 'r0')
    honest.step(commit, 'r2')
    expect(honest.ready().execute).to.deep.equal([])
  })

  it('one Ready at a time: a second ready() before advance() is a programming error', () => {
    const cluster = new Cluster(4)
    cluster.submit('r0', clientRequest('c1', 1))
    const replica = cluster.replica('r0')
    replica.ready()
    expect(replica.hasReady()).to.equal(false)
    expect(() => replica.ready()).to.throw(AssertionError)
    replica.advance()
    expect(() => { replica.advance() }).to.throw(AssertionError)
  })
})
