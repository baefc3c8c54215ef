import { expect } from 'aegir/chai'
import { Cluster, clientRequest } from './pbft-harness.ts'
import type { CommittedBatches } from '../../protocols/pbft/index.ts'

const limits = { requestTimeoutTicks: 4, viewChangeTimeoutTicks: 4, checkpointInterval: 4, watermarkWindow: 8, batchRequestsMax: 1, certificatesPerFetchMax: 2 }

function run (cluster: Cluster, from: number, to: number): void {
  for (let t = from; t <= to; t++) {
    cluster.submit('r0', clientRequest('c1', t))
    cluster.drain()
  }
}

describe('pbft catch-up', () => {
  it('a replica that missed commits fetches the committed certificates, certificatesPerFetchMax at a time', () => {
    const cluster = new Cluster(4, limits)
    cluster.filter = e => !(e.to === 'r3' && e.message.type === 'commit' && e.message.seq <= 2)
    run(cluster, 1, 2)
    cluster.filter = () => true
    run(cluster, 3, 3)
    expect(cluster.state('r3').lastSeq).to.equal(0)
    cluster.tick(limits.requestTimeoutTicks)
    expect(cluster.state('r3').executed).to.deep.equal(['c1@1', 'c1@2', 'c1@3'])
    expect(cluster.readies.get('r3')?.some(r => r.stateWanted !== null)).to.equal(false)
    const answers = cluster.results.filter(r => r.envelope.to === 'r3' && r.envelope.message.type === 'committed-batches')
    expect(answers.length).to.be.greaterThan(0)
    for (const answer of answers) { expect((answer.envelope.message as CommittedBatches).certificates).to.have.length(2) }
  })

  it('refuses a committed certificate without a quorum of commits', () => {
    const cluster = new Cluster(4, limits)
    cluster.filter = e => !(e.to === 'r3' && e.message.type === 'commit')
    run(cluster, 1, 1)
    const certificate = cluster.records.get('r1')?.flatMap(r => r.kind === 'committed' ? [r.certificate] : [])[0]
    expect(certificate).to.not.equal(undefined)
    if (certificate === undefined) { return }
    const weak = { ...certificate, commits: certificate.commits.slice(0, 2) }
    const result = cluster.inject('r1', 'r3', { type: 'committed-batches', replica: 'r1', certificates: [weak] })
    expect(result).to.deep.include({ ok: false, reason: 'bad-signature' })
    expect(result.ok === false && result.detail).to.match(/2 commits, 3 needed/)
    expect(cluster.inject('r1', 'r3', { type: 'committed-batches', replica: 'r1', certificates: [certificate] })).to.deep.equal({ ok: true })
    cluster.drain()
    expect(cluster.state('r3').executed).to.deep.equal(['c1@1'])
  })

  it('a replica far behind learns a proven stable checkpoint and installs its state from a signer', () => {
    const cluster = new Cluster(4, limits)
    cluster.crash('r3')
    run(cluster, 1, 9)
    expect(cluster.replica('r0').status().stableCheckpoint).to.equal(8)
    cluster.restart('r3')
    run(cluster, 10, 10)
    cluster.tick(limits.requestTimeoutTicks)
    const wanted = cluster.readies.get('r3')?.map(r => r.stateWanted).find(w => w !== null)
    expect(wanted?.checkpoint.seq).to.equal(8)
    expect(wanted?.holders.length).to.be.at.least(3)
    expect(cluster.state('r3').executed).to.deep.equal(Array.from({ length: 10 }, (_, i) => `c1@${i + 1}`))
    expect(cluster.replica('r3').status()).to.deep.include({ stableCheckpoint: 8, executed: 10 })
    // durable once installed: the 'stable' record comes with stateInstalled
    expect(cluster.records.get('r3')?.some(r => r.kind === 'stable' && r.checkpoint.seq === 8)).to.equal(true)
    cluster.expectAgreement()
  })

  it('a replica restarted behind an idle cluster asks where the others are and catches up, with no traffic at all', () => {
    const cluster = new Cluster(4, limits)
    run(cluster, 1, 1)
    cluster.crash('r0')
    // the primary is gone: view 1 orders the rest, past two checkpoints (the others' logs are collected)
    for (const id of ['r1', 'r2', 'r3']) { cluster.submit(id, clientRequest('c1', 2)) }
    cluster.drain()
    cluster.tick(limits.requestTimeoutTicks)
    for (let t = 3; t <= 11; t++) {
      cluster.submit('r1', clientRequest('c1', t))
      cluster.drain()
    }
    const ahead = cluster.replica('r1').status()
    expect(ahead).to.deep.include({ view: 1, executed: 11, stableCheckpoint: 8 })
    cluster.restart('r0')
    expect(cluster.replica('r0').status()).to.deep.include({ view: 0, executed: 1 })
    // its first fetches are lost (connections still opening)
    let lost = 0
    cluster.filter = e => !(e.from === 'r0' && e.message.type === 'fetch-committed' && lost++ < 3)
    cluster.tick(3 * limits.requestTimeoutTicks)
    expect(lost).to.be.greaterThan(3)
    expect(cluster.replica('r0').status()).to.deep.include({ view: 1, viewChanging: false, executed: 11, stableCheckpoint: 8 })
    expect(cluster.state('r0').executed).to.deep.equal(cluster.state('r1').executed)
    cluster.expectAgreement()
  })

  it('after a state transfer it fetches the batches past the checkpoint, certificatesPerFetchMax at a time, with no traffic', () => {
    const cluster = new Cluster(4, limits)
    cluster.filter = e => e.to !== 'r3'
    run(cluster, 1, 11)
    expect(cluster.replica('r0').status()).to.deep.include({ executed: 11, stableCheckpoint: 8 })
    cluster.filter = () => true
    cluster.tick(limits.requestTimeoutTicks)
    expect(cluster.replica('r3').status().executed).to.equal(0)
    // only the checkpoints at 8 come again: r3 proves it and installs the state there
    for (const id of ['r0', 'r1', 'r2']) {
      const checkpoint = (cluster.readies.get(id) ?? []).flatMap(r => r.messages).find(m => m.to === 'r3' && m.message.type === 'checkpoint' && m.message.seq === 8)
      if (checkpoint !== undefined) { cluster.queue.push({ from: id, to: 'r3', message: checkpoint.message }) }
    }
    cluster.tick(2 * limits.requestTimeoutTicks)
    expect(cluster.replica('r3').status()).to.deep.include({ executed: 11, stableCheckpoint: 8 })
    expect(cluster.state('r3').executed).to.deep.equal(cluster.state('r0').executed)
  })
})
