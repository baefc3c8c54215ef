/**
 * Reconfiguration: an ordered request approved by a quorum of the set in
 * force changes the replica set at the first checkpoint at or above its
 * seq + watermarkWindow (protocols/pbft/reconfiguration.ts).
 */
import { expect } from 'aegir/chai'
import {
  approve, checkReconfiguration, decodeConfiguration, decodeReconfiguration, effectiveAfter, encodeConfiguration, encodeReconfiguration,
  genesisConfiguration, signRequest
} from '../../protocols/pbft/index.ts'
import { Cluster, clientRequest, testCrypto } from './pbft-harness.ts'
import type { ClientRequest, NodeId, PbftLimits } from '../../protocols/pbft/index.ts'

const limits: Partial<PbftLimits> = { checkpointInterval: 4, watermarkWindow: 8 }
let operatorTimestamp = 0

function reconfiguration (epoch: number, replicas: NodeId[], approvers: NodeId[]): ClientRequest {
  const approvals = approvers.map(replica => approve(epoch, replicas, replica, testCrypto(replica)))
  const operation = encodeReconfiguration({ epoch, replicas, approvals })
  return signRequest({ client: 'operator', timestamp: ++operatorTimestamp, operation, readOnly: false }, testCrypto('operator'))
}

/** Orders `count` client requests one batch at a time, ticking so that learners fetch and view changes complete. */
function order (cluster: Cluster, count: number, client = 'c'): void {
  for (let i = 0; i < count; i++) {
    const request = clientRequest(client, cluster.state(cluster.genesis[0]).executed.length + i + 1000)
    for (const id of cluster.ids) {
      if (!cluster.down.has(id) && cluster.replica(id).status().member) { cluster.submit(id, request) }
    }
    cluster.drain()
    cluster.tick(2)
  }
}

describe('pbft reconfiguration', () => {
  it('encodes a reconfiguration and a configuration state, and rejects trailing or truncated bytes', () => {
    const request = reconfiguration(1, ['a', 'b'], ['r0'])
    const decoded = decodeReconfiguration(request.operation)
    expect(decoded.ok && decoded.value.replicas).to.deep.equal(['a', 'b'])
    expect(decodeReconfiguration(new Uint8Array([...request.operation, 0])).ok).to.equal(false)
    expect(decodeReconfiguration(request.operation.subarray(0, request.operation.length - 3)).ok).to.equal(false)
    const state = { latest: { epoch: 2, replicas: ['x', 'y'], afterSeq: 12 }, previous: genesisConfiguration(['x']) }
    const round = decodeConfiguration(encodeConfiguration(state))
    expect(round.ok && round.state).to.deep.equal(state)
    expect(decodeConfiguration(new Uint8Array([1, 1, 0])).ok).to.equal(false)
  })

  it('takes effect at the first checkpoint at or above seq + watermarkWindow', () => {
    expect(effectiveAfter(1, { watermarkWindow: 8, checkpointInterval: 4 })).to.equal(12)
    expect(effectiveAfter(4, { watermarkWindow: 8, checkpointInterval: 4 })).to.equal(12)
    expect(effectiveAfter(5, { watermarkWindow: 8, checkpointInterval: 4 })).to.equal(16)
  })

  it('needs the next epoch, a valid set and valid approvals of a quorum of distinct current replicas', () => {
    const current = genesisConfiguration(['r0', 'r1', 'r2', 'r3'])
    const crypto = testCrypto('x')
    const next = ['r0', 'r1', 'r2', 'r3', 'r4']
    const check = (epoch: number, replicas: NodeId[], approvers: NodeId[]): string | null => {
      const approvals = approvers.map(replica => approve(epoch, replicas, replica, testCrypto(replica)))
      return checkReconfiguration({ epoch, replicas, approvals }, current, crypto)
    }
    expect(check(1, next, ['r0', 'r1', 'r2'])).to.equal(null)
    expect(check(2, next, ['r0', 'r1', 'r2'])).to.match(/epoch 2, expected 1/)
    expect(check(1, next, ['r0', 'r1'])).to.match(/2 approvals, 3 needed/)
    expect(check(1, next, ['r0', 'r1', 'r4'])).to.match(/not a replica/)
    expect(check(1, next, ['r0', 'r1', 'r1'])).to.match(/two approvals/)
    expect(check(1, [], ['r0', 'r1', 'r2'])).to.match(/empty/)
    expect(check(1, ['r0', 'r0'], ['r0', 'r1', 'r2'])).to.match(/twice/)
    // an approval of another set does not count for this one
    const approvals = ['r0', 'r1', 'r2'].map(replica => approve(1, ['r0'], replica, testCrypto(replica)))
    expect(checkReconfiguration({ epoch: 1, replicas: next, approvals }, current, crypto)).to.match(/invalid signature/)
  })

  it('adds a replica: the learner catches up, the set switches at the checkpoint, and all five agree afterwards', () => {
    const cluster = new Cluster(4, limits, testCrypto, 1)
    const next = ['r0', 'r1', 'r2', 'r3', 'r4']
    expect(cluster.replica('r4').status().member).to.equal(false)
    cluster.submit('r0', reconfiguration(1, next, ['r0', 'r1', 'r2']))
    cluster.drain()
    for (const id of cluster.genesis) {
      const [outcome] = cluster.reconfigurations.get(id) ?? []
      expect(outcome?.ok === true && outcome.state).to.deep.equal({ latest: { epoch: 1, replicas: next, afterSeq: 12 }, previous: { epoch: 0, replicas: cluster.genesis, afterSeq: 0 } })
    }
    order(cluster, 20)
    for (const id of cluster.ids) {
      const status = cluster.replica(id).status()
      expect(status, id).to.include({ epoch: 1, member: true, n: 5, f: 1, pending: null })
      expect(status.replicas).to.deep.equal(next)
    }
    // the learner executed past the switch, and votes in the new set
    expect(cluster.state('r4').lastSeq).to.be.greaterThan(12)
    expect(cluster.records.get('r4')?.some(r => r.kind === 'signed' && r.message.type === 'commit')).to.equal(true)
    expect(cluster.state('r4').lastSeq).to.equal(cluster.state('r0').lastSeq)
    cluster.expectAgreement()
  })

  it('proposes nothing past the start of the pending set before it is in force', () => {
    const cluster = new Cluster(4, limits)
    // the checkpoint at 12 never becomes stable
    cluster.filter = ({ message }) => !(message.type === 'checkpoint' && message.seq === 12)
    cluster.submit('r0', reconfiguration(1, ['r0', 'r1', 'r2', 'r3', 'r9'], ['r0', 'r1', 'r2']))
    cluster.drain()
    order(cluster, 20)
    for (const id of cluster.ids) {
      expect(cluster.replica(id).status().executed).to.equal(12)
      expect(cluster.replica(id).status().pending?.afterSeq).to.equal(12)
    }
  })

  it('removes a replica: it becomes a learner that takes no requests, and the others go on', () => {
    const cluster = new Cluster(4, limits)
    cluster.submit('r0', reconfiguration(1, ['r0', 'r1', 'r2'], ['r1', 'r2', 'r3']))
    cluster.drain()
    order(cluster, 20)
    const removed = cluster.replica('r3')
    expect(removed.status()).to.include({ member: false, epoch: 1, n: 3 })
    expect(removed.request(clientRequest('c', 99_999))).to.deep.include({ ok: false, reason: 'not-a-replica' })
    const executed = cluster.state('r0').lastSeq
    order(cluster, 5)
    expect(cluster.state('r0').lastSeq).to.be.greaterThan(executed)
    for (const id of ['r0', 'r1', 'r2']) { expect(cluster.state(id).lastSeq).to.equal(cluster.state('r0').lastSeq) }
    cluster.expectAgreement()
  })

  it('refuses, alike on every replica, a reconfiguration without a quorum, one for a wrong epoch, and a second while one is pending; repeats the decision', () => {
    const cluster = new Cluster(4, limits)
    // the checkpoint at 12 never becomes stable: epoch 1 stays pending
    cluster.filter = ({ message }) => !(message.type === 'checkpoint' && message.seq === 12)
    const next = ['r0', 'r1', 'r2', 'r3', 'r4']
    for (const request of [reconfiguration(1, next, ['r0', 'r1']), reconfiguration(2, next, ['r0', 'r1', 'r2'])]) {
      cluster.submit('r0', request)
      cluster.drain()
    }
    // one batch: nothing past the start of a pending set is ordered before it is in force
    for (const request of [
      reconfiguration(1, next, ['r0', 'r1', 'r2']),
      reconfiguration(1, ['r0', 'r1', 'r2'], ['r0', 'r1', 'r2']),
      // the decision again (a retransmission ordered twice) gets the same answer
      reconfiguration(1, next, ['r1', 'r2', 'r3'])
    ]) { cluster.submit('r0', request) }
    cluster.drain()
    const verdicts = cluster.reconfigurations.get('r0')?.map(o => o.ok ? 'ok' : o.error)
    expect(verdicts).to.have.length(5)
    expect(verdicts?.[0]).to.match(/2 approvals, 3 needed/)
    expect(verdicts?.[1]).to.match(/epoch 2, expected 1/)
    expect(verdicts?.[2]).to.equal('ok')
    expect(verdicts?.[3]).to.match(/pending until seq/)
    expect(verdicts?.[4]).to.equal('ok')
    const [, , , , again] = cluster.reconfigurations.get('r0') ?? []
    expect(again?.ok === true && again.state.latest).to.deep.equal({ epoch: 1, replicas: next, afterSeq: 12 })
    for (const id of cluster.ids) { expect(cluster.reconfigurations.get(id)?.map(o => o.ok ? 'ok' : o.error)).to.deep.equal(verdicts) }
  })

  it('a new replica away through the switch catches up by state transfer and learns the set from the state', () => {
    const cluster = new Cluster(4, limits, testCrypto, 1)
    cluster.crash('r4')
    cluster.submit('r0', reconfiguration(1, ['r0', 'r1', 'r2', 'r3', 'r4'], ['r0', 'r1', 'r2']))
    cluster.drain()
    order(cluster, 30)
    expect(cluster.replica('r0').status().stableCheckpoint).to.be.greaterThan(20)
    cluster.restart('r4')
    expect(cluster.replica('r4').status()).to.include({ member: false, epoch: 0 })
    order(cluster, 10)
    expect(cluster.replica('r4').status()).to.include({ member: true, epoch: 1, n: 5 })
    expect(cluster.state('r4').configuration?.latest.epoch).to.equal(1)
    expect(cluster.state('r4').lastSeq).to.equal(cluster.state('r0').lastSeq)
    cluster.expectAgreement()
  })

  it('a replica restarted after the switch comes back in the new set', () => {
    const cluster = new Cluster(4, limits, testCrypto, 1)
    cluster.submit('r0', reconfiguration(1, ['r0', 'r1', 'r2', 'r3', 'r4'], ['r0', 'r1', 'r2']))
    cluster.drain()
    order(cluster, 20)
    cluster.crash('r2')
    cluster.restart('r2')
    expect(cluster.replica('r2').status()).to.include({ epoch: 1, member: true, n: 5 })
    order(cluster, 10)
    expect(cluster.state('r2').lastSeq).to.equal(cluster.state('r0').lastSeq)
    cluster.expectAgreement()
  })

  it('believes a configuration only from f+1 matching replicas of its set: one liar moves nothing', () => {
    const cluster = new Cluster(4, limits)
    const replica = cluster.replica('r3')
    const state = { latest: { epoch: 1, replicas: ['r0', 'r1', 'r9'], afterSeq: 0 }, previous: genesisConfiguration(cluster.genesis) }
    const announce = (from: NodeId, knownThrough = 1_000): ReturnType<Cluster['inject']> => cluster.inject(from, 'r3', { type: 'configuration', replica: from, state, knownThrough })
    expect(announce('r1')).to.deep.equal({ ok: true })
    expect(replica.status()).to.include({ epoch: 0, pending: null })
    // the same liar again counts once
    announce('r1')
    expect(replica.status().pending).to.equal(null)
    // a stranger does not count at all
    expect(cluster.inject('r9', 'r3', { type: 'configuration', replica: 'r9', state, knownThrough: 1_000 })).to.deep.include({ ok: false, reason: 'not-a-replica' })
    expect(replica.status().pending).to.equal(null)
    // a second replica of the set says the same: one of the two is honest
    expect(announce('r2')).to.deep.equal({ ok: true })
    expect(replica.status().pending).to.deep.equal(state.latest)
  })

  it('a learner waiting for a state that its holders dropped (they moved on) asks again and installs their later checkpoint', () => {
    // the switch at seq 20: a learner can prove checkpoint 8 while it is still far
    const cluster = new Cluster(4, { checkpointInterval: 4, watermarkWindow: 16 }, testCrypto, 1)
    const holders = cluster.genesis
    const report = (seqs: number[]): void => {
      for (const id of holders) { for (const seq of seqs) { cluster.replica(id).checkpointTaken(seq, cluster.stateDigest(id, seq)) } }
      cluster.drain()
    }
    // the replicas report no checkpoints unless told: their stable checkpoint moves when this test says
    for (const id of holders) { cluster.noCheckpoints.add(id) }
    cluster.filter = ({ from, to }) => from !== 'r4' && to !== 'r4'
    cluster.submit('r0', reconfiguration(1, ['r0', 'r1', 'r2', 'r3', 'r4'], ['r0', 'r1', 'r2']))
    cluster.drain()
    report([4, 8])
    expect(cluster.replica('r0').status()).to.include({ stableCheckpoint: 8, executed: 20 })
    // their snapshots at 8 are gone, as when a driver keeps only its latest one and that one is about to move on
    for (const id of holders) { cluster.snapshots.get(id)?.delete(8) }
    cluster.filter = () => true
    cluster.tick(20)
    expect(cluster.replica('r4').status()).to.include({ member: false, lowWatermark: 8, executed: 0 })

    report([12, 16, 20])
    for (const id of holders) { cluster.noCheckpoints.delete(id) }
    cluster.tick(40)
    expect(cluster.replica('r0').status()).to.include({ epoch: 1, stableCheckpoint: 20 })
    expect(cluster.state('r4').lastSeq).to.be.at.least(20)
    expect(cluster.replica('r4').status()).to.include({ member: true, epoch: 1 })
    order(cluster, 5)
    expect(cluster.state('r4').lastSeq).to.equal(cluster.state('r0').lastSeq)
    cluster.expectAgreement()
  })

  it('answers the fetches of a member of the pending set, not those of a stranger; a learner signs nothing', () => {
    const cluster = new Cluster(4, limits, testCrypto, 2)
    const fetch = (from: NodeId): ReturnType<Cluster['inject']> => cluster.inject(from, 'r0', { type: 'fetch-committed', replica: from, fromSeq: 1, epoch: 0 })
    expect(fetch('r4')).to.deep.include({ ok: false, reason: 'not-a-replica' })
    cluster.submit('r0', reconfiguration(1, ['r0', 'r1', 'r2', 'r3', 'r4'], ['r0', 'r1', 'r2']))
    cluster.drain()
    expect(fetch('r4')).to.deep.equal({ ok: true })
    expect(fetch('r5')).to.deep.include({ ok: false, reason: 'not-a-replica' })
    // r5 is listed nowhere: it stays a learner and never signs
    order(cluster, 20)
    expect(cluster.replica('r5').status().member).to.equal(false)
    expect(cluster.records.get('r5')?.filter(r => r.kind === 'signed')).to.deep.equal([])
  })
})
