import { expect } from 'aegir/chai'
import { Cluster, clientRequest } from './pbft-harness.ts'

const limits = { checkpointInterval: 4, watermarkWindow: 8, batchRequestsMax: 1, pipelineMax: 8 }

function run (cluster: Cluster, from: number, to: number, client = 'c1'): void {
  for (let t = from; t <= to; t++) {
    cluster.submit(cluster.replica('r0').status().primary, clientRequest(client, t))
    cluster.drain()
  }
}

describe('pbft checkpoints', () => {
  it('asks for the state digest every checkpointInterval seqs, and a quorum of checkpoints makes it stable', () => {
    const cluster = new Cluster(4, limits)
    run(cluster, 1, 5)
    const due = cluster.readies.get('r1')?.flatMap(r => r.checkpointsDue)
    expect(due).to.deep.equal([4])
    for (const id of cluster.ids) {
      const status = cluster.replica(id).status()
      expect(status.stableCheckpoint, id).to.equal(4)
      expect(status.lowWatermark).to.equal(4)
      expect(status.highWatermark).to.equal(12)
    }
    const stable = cluster.readies.get('r2')?.map(r => r.stable).find(s => s !== null)
    expect(stable?.seq).to.equal(4)
    expect(stable?.proof).to.have.length(3)
    expect(new Set(stable?.proof.map(c => c.replica)).size).to.equal(3)
    expect(cluster.records.get('r2')?.some(r => r.kind === 'stable' && r.checkpoint.seq === 4)).to.equal(true)
  })

  it('does not become stable without a quorum of matching checkpoints', () => {
    const cluster = new Cluster(4, limits)
    cluster.noCheckpoints.add('r2')
    cluster.noCheckpoints.add('r3')
    run(cluster, 1, 4)
    expect(cluster.replica('r0').status().stableCheckpoint).to.equal(0)
  })

  it('the primary stops at the high watermark until a checkpoint is stable', () => {
    const cluster = new Cluster(4, limits)
    cluster.noCheckpoints.add('r1')
    cluster.noCheckpoints.add('r2')
    cluster.noCheckpoints.add('r3')
    run(cluster, 1, 10)
    expect(cluster.replica('r1').status().executed).to.equal(8)
    // the state machines catch up and report: the checkpoint at 4 becomes stable and the last two go through
    for (const id of ['r1', 'r2', 'r3']) {
      cluster.noCheckpoints.delete(id)
      cluster.replica(id).checkpointTaken(4, cluster.stateDigest(id, 4))
      cluster.replica(id).checkpointTaken(8, cluster.stateDigest(id, 8))
    }
    cluster.drain()
    expect(cluster.replica('r1').status().executed).to.equal(10)
    expect(cluster.replica('r1').status().stableCheckpoint).to.equal(8)
  })

  it('garbage-collects the log: messages at or below the stable checkpoint are refused', () => {
    const cluster = new Cluster(4, limits)
    run(cluster, 1, 4)
    const old = cluster.readies.get('r0')?.flatMap(r => r.messages).find(m => m.message.type === 'pre-prepare')
    expect(old).to.not.equal(undefined)
    if (old === undefined || old.message.type !== 'pre-prepare') { return }
    expect(cluster.inject('r0', 'r1', old.message)).to.deep.include({ ok: false, reason: 'outside-watermarks' })
  })

  it('a replica whose state digest differs from the proven one asks for the state', () => {
    const cluster = new Cluster(4, limits)
    cluster.noCheckpoints.add('r3')
    run(cluster, 1, 4)
    const wrong = 'f'.repeat(64)
    cluster.replica('r3').checkpointTaken(4, wrong)
    const ready = cluster.replica('r3').ready()
    cluster.replica('r3').advance()
    expect(ready.stateWanted?.checkpoint.seq).to.equal(4)
    expect(ready.stable).to.equal(null)
  })
})
