import { expect } from 'aegir/chai'
import { PbftReplica } from '../../protocols/pbft/index.ts'
import { Cluster, clientRequest, digestOf, sign, testCrypto } from './pbft-harness.ts'
import type { PrePrepare, Prepare, SignedMessage } from '../../protocols/pbft/index.ts'

const limits = { requestTimeoutTicks: 4, viewChangeTimeoutTicks: 4, checkpointInterval: 4, watermarkWindow: 8, batchRequestsMax: 1 }

function signedBy (cluster: Cluster, id: string): SignedMessage[] {
  return (cluster.records.get(id) ?? []).flatMap(r => r.kind === 'signed' ? [r.message] : [])
}

describe('pbft restart', () => {
  it('restores the view and what it signed: it never prepares a conflicting batch for a (view, seq) it prepared', () => {
    const cluster = new Cluster(4, limits)
    cluster.filter = e => e.message.type !== 'commit'
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain()
    const prepared = signedBy(cluster, 'r1').find(m => m.type === 'prepare') as Prepare
    expect(prepared.seq).to.equal(1)
    cluster.crash('r1')
    cluster.restart('r1')
    // an equivocating primary offers the restarted replica another batch at (0, 1)
    const other = [clientRequest('c2', 1)]
    const replica = cluster.replica('r1')
    const conflicting = sign<PrePrepare>({ type: 'pre-prepare', replica: 'r0', view: 0, seq: 1, digest: digestOf(other), batch: other })
    const result = replica.step(conflicting, 'r0')
    expect(result).to.deep.include({ ok: false, reason: 'conflict' })
    const ready = replica.ready()
    expect(ready.messages.filter(m => m.message.type === 'prepare')).to.have.length(0)
  })

  it('refuses to prepare another batch where it signed a prepare, even restored from its signed records alone', () => {
    const cluster = new Cluster(4, limits)
    cluster.filter = e => e.message.type !== 'commit'
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain()
    const records = (cluster.records.get('r1') ?? []).filter(r => r.kind === 'signed' || r.kind === 'view')
    const replica = new PbftReplica({ id: 'r1', replicas: cluster.ids, crypto: testCrypto('r1'), limits }, { records })
    const other = [clientRequest('c2', 1)]
    const conflicting = sign<PrePrepare>({ type: 'pre-prepare', replica: 'r0', view: 0, seq: 1, digest: digestOf(other), batch: other })
    expect(replica.step(conflicting, 'r0')).to.deep.include({ ok: false, reason: 'conflict' })
    expect(replica.ready().messages).to.have.length(0)
  })

  it('restores the view it was changing to', () => {
    const cluster = new Cluster(4, limits)
    cluster.crash('r0')
    cluster.submit('r2', clientRequest('c1', 1))
    cluster.drain()
    for (let i = 0; i < limits.requestTimeoutTicks; i++) { cluster.replica('r2').tick() }
    cluster.drain()
    expect(cluster.replica('r2').status()).to.deep.include({ view: 1, viewChanging: true })
    cluster.crash('r2')
    cluster.restart('r2')
    expect(cluster.replica('r2').status()).to.deep.include({ view: 1, viewChanging: true })
  })

  it('re-executes the committed batches above the last stable checkpoint', () => {
    const cluster = new Cluster(4, limits)
    for (let t = 1; t <= 6; t++) {
      cluster.submit('r0', clientRequest('c1', t))
      cluster.drain()
    }
    expect(cluster.replica('r2').status().stableCheckpoint).to.equal(4)
    cluster.crash('r2')
    cluster.restart('r2')
    cluster.drain()
    expect(cluster.state('r2').lastSeq).to.equal(6)
    expect(cluster.state('r2').executed).to.deep.equal(['c1@1', 'c1@2', 'c1@3', 'c1@4', 'c1@5', 'c1@6'])
    expect(cluster.replica('r2').status()).to.deep.include({ executed: 6, stableCheckpoint: 4 })
  })

  it('a restarted primary continues after the seqs it assigned', () => {
    const cluster = new Cluster(4, limits)
    cluster.filter = e => e.message.type !== 'commit'
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain()
    cluster.crash('r0')
    cluster.restart('r0')
    cluster.filter = () => true
    cluster.submit('r0', clientRequest('c1', 2))
    cluster.drain()
    const prePrepares = (cluster.readies.get('r0') ?? []).flatMap(r => r.messages).map(m => m.message).filter(m => m.type === 'pre-prepare' && m.seq === 1)
    expect(new Set(prePrepares.map(m => (m as PrePrepare).digest)).size).to.equal(1)
    expect(cluster.replica('r0').status().executed).to.equal(0) // seq 1 never committed: no gap is skipped
  })

  it('the records round-trip through a fresh replica with the same identity', () => {
    const cluster = new Cluster(4, limits)
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain()
    const replica = new PbftReplica({ id: 'r3', replicas: cluster.ids, crypto: testCrypto('r3'), limits }, { records: cluster.records.get('r3') ?? [] })
    const ready = replica.ready()
    expect(ready.execute.map(b => b.seq)).to.deep.equal([1])
  })
})
