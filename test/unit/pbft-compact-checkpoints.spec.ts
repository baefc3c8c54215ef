/**
 * Compact checkpoint certificates: a stable checkpoint proven by the DKG
 * group's threshold signature (protocols/pbft/group.ts), with a
 * deterministic stand-in group (test/lib/fake-threshold-group.ts).
 */
import { expect } from 'aegir/chai'
import {
  checkStableCheckpoint, checkViewChange, checkpointGroupPayload, decodeEvidence, decodeMessage, decodeRecord, encodeEvidence, encodeMessage, encodeRecord, isCheckpointGroupMessage
} from '../../protocols/pbft/index.ts'
import { FakeThresholdGroup } from '../lib/fake-threshold-group.ts'
import { Cluster, clientRequest, sign, testCrypto } from './pbft-harness.ts'
import type { Checkpoint, StableCheckpoint, ViewChange } from '../../protocols/pbft/index.ts'

const limits = { requestTimeoutTicks: 4, viewChangeTimeoutTicks: 4, checkpointInterval: 4, watermarkWindow: 8, batchRequestsMax: 1 }
const replicas = ['r0', 'r1', 'r2', 'r3']
const digest = 'ab'.repeat(32)
const crypto = testCrypto('x')

function run (cluster: Cluster, from: number, to: number, primary = 'r0'): void {
  for (let t = from; t <= to; t++) {
    cluster.submit(primary, clientRequest('c1', t))
    cluster.drain()
  }
}

function stableOf (cluster: Cluster, id: string, seq: number): StableCheckpoint | undefined {
  return cluster.readies.get(id)?.map(r => r.stable).find(s => s?.seq === seq) ?? undefined
}

function compact (group: FakeThresholdGroup, seq = 4, stateDigest = digest): StableCheckpoint {
  return { seq, stateDigest, proof: [], groupSignature: group.signature(checkpointGroupPayload(seq, stateDigest)) }
}

function checkpoint (replica: string, seq = 4, partial?: Uint8Array): Checkpoint {
  return sign<Checkpoint>({ type: 'checkpoint', replica, seq, stateDigest: digest, ...(partial !== undefined ? { partial } : {}) })
}

describe('pbft compact checkpoint certificates', () => {
  describe('checkStableCheckpoint', () => {
    const group = new FakeThresholdGroup(replicas, 3)
    const known = group.for('r0')

    it('accepts a compact certificate whose group signature verifies under a group that applies', () => {
      expect(checkStableCheckpoint(compact(group), replicas, crypto, known)).to.equal(null)
      // the full form still holds, with or without the group
      const full = { seq: 4, stateDigest: digest, proof: ['r0', 'r1', 'r2'].map(r => checkpoint(r)) }
      expect(checkStableCheckpoint(full, replicas, crypto, known)).to.equal(null)
      expect(checkStableCheckpoint(full, replicas, crypto)).to.equal(null)
    })

    it('refuses a forged signature, one for another seq or digest, and one of another group', () => {
      const forged = { ...compact(group), groupSignature: new Uint8Array(96).fill(7) }
      expect(checkStableCheckpoint(forged, replicas, crypto, known)).to.match(/does not verify/)
      expect(checkStableCheckpoint({ ...compact(group, 8), seq: 4 }, replicas, crypto, known)).to.match(/does not verify/)
      expect(checkStableCheckpoint({ ...compact(group, 4, 'cd'.repeat(32)), stateDigest: digest }, replicas, crypto, known)).to.match(/does not verify/)
      const stranger = new FakeThresholdGroup(replicas, 3, { seed: 'stranger' })
      expect(checkStableCheckpoint(compact(stranger), replicas, crypto, known)).to.match(/does not verify/)
    })

    it('refuses a compact certificate when no group is known here, or the group does not apply to the provers', () => {
      expect(checkStableCheckpoint(compact(group), replicas, crypto)).to.match(/no threshold group known/)
      expect(checkStableCheckpoint(compact(group), replicas, crypto, null)).to.match(/no threshold group known/)
      // a removed member's group, or one with a member outside the set: its signature proves nothing of these provers
      const outsider = new FakeThresholdGroup(['r0', 'r1', 'r2', 'x9'], 3)
      expect(checkStableCheckpoint(compact(outsider), replicas, crypto, outsider.for('r0'))).to.match(/members are not the replicas/)
      const smaller = new FakeThresholdGroup(['r0', 'r1', 'r2'], 3)
      expect(checkStableCheckpoint(compact(smaller), replicas, crypto, smaller.for('r0'))).to.match(/members are not the replicas/)
      const twice = new FakeThresholdGroup(['r0', 'r1', 'r2', 'r2'], 3)
      expect(checkStableCheckpoint(compact(twice), ['r0', 'r1', 'r2', 'r2'], crypto, twice.for('r0'))).to.match(/members are not the replicas/)
    })

    it('refuses a group whose threshold is below the quorum: f + 1 signers are not a quorum', () => {
      const weak = new FakeThresholdGroup(replicas, 2)
      expect(checkStableCheckpoint(compact(weak), replicas, crypto, weak.for('r0'))).to.match(/threshold 2 is not between the quorum 3 and 4/)
      const impossible = new FakeThresholdGroup(replicas, 5)
      expect(checkStableCheckpoint(compact(impossible), replicas, crypto, impossible.for('r0'))).to.match(/threshold 5/)
    })

    it('refuses a group signature beside a proof, of the wrong size, or on the genesis', () => {
      const both = { ...compact(group), proof: ['r0', 'r1', 'r2'].map(r => checkpoint(r)) }
      expect(checkStableCheckpoint(both, replicas, crypto, known)).to.match(/carries no checkpoint messages/)
      expect(checkStableCheckpoint({ ...compact(group), groupSignature: compact(group).groupSignature?.subarray(0, 95) }, replicas, crypto, known)).to.match(/96 bytes/)
      expect(checkStableCheckpoint({ ...compact(group), groupSignature: new Uint8Array(97) }, replicas, crypto, known)).to.match(/96 bytes/)
      expect(checkStableCheckpoint({ seq: 0, stateDigest: '0'.repeat(64), proof: [], groupSignature: new Uint8Array(96) }, replicas, crypto, known)).to.match(/malformed genesis/)
    })

    it('a view change carrying a compact stable checkpoint is checked with the group', () => {
      const viewChange = sign<ViewChange>({ type: 'view-change', replica: 'r1', view: 1, stable: compact(group), prepared: [] })
      const window = { ...limits, watermarkWindow: 8 } as never
      expect(checkViewChange(viewChange, replicas, crypto, window, () => replicas, { group: known })).to.equal(null)
      expect(checkViewChange(viewChange, replicas, crypto, window, () => replicas)).to.match(/no threshold group/)
      // without the group (or with one that no longer applies), only as the checker's own proven stable checkpoint
      expect(checkViewChange(viewChange, replicas, crypto, window, () => replicas, { proven: compact(group) })).to.equal(null)
      expect(checkViewChange(viewChange, replicas, crypto, window, () => replicas, { proven: compact(group, 4, 'cd'.repeat(32)) })).to.match(/no threshold group/)
    })

    it('the payload is domain-separated and names seq and digest', () => {
      const payload = checkpointGroupPayload(4, digest)
      expect(isCheckpointGroupMessage(payload)).to.equal(true)
      expect(isCheckpointGroupMessage(new TextEncoder().encode('accord/pbft/checkpoint-group/'))).to.equal(false)
      expect(payload).to.not.deep.equal(checkpointGroupPayload(5, digest))
      expect(payload).to.not.deep.equal(checkpointGroupPayload(4, 'cd'.repeat(32)))
    })
  })

  describe('replicas', () => {
    it('form compact stable checkpoints once they hold the group, and persist them', () => {
      const group = new FakeThresholdGroup(replicas, 3)
      const cluster = new Cluster(4, limits)
      cluster.setGroup(id => group.for(id))
      expect(cluster.replica('r0').status().compactCheckpoints).to.equal(true)
      run(cluster, 1, 5)
      for (const id of cluster.ids) {
        expect(cluster.replica(id).status().stableCheckpoint, id).to.equal(4)
        const stable = stableOf(cluster, id, 4)
        expect(stable?.proof, id).to.deep.equal([])
        expect(stable?.groupSignature, id).to.deep.equal(group.signature(checkpointGroupPayload(4, stable?.stateDigest ?? '')))
        const record = cluster.records.get(id)?.find(r => r.kind === 'stable' && r.checkpoint.seq === 4)
        expect(record?.kind === 'stable' && record.checkpoint.groupSignature?.length, id).to.equal(96)
      }
      // every checkpoint carried its sender's partial, covered by its signature
      const sent = cluster.readies.get('r1')?.flatMap(r => r.messages).find(m => m.message.type === 'checkpoint')?.message as Checkpoint
      expect(sent.partial).to.deep.equal(group.partial('r1', checkpointGroupPayload(4, sent.stateDigest)))
      expect(cluster.inject('r1', 'r2', { ...checkpoint('r1', 8), partial: new Uint8Array(96) })).to.deep.include({ ok: false, reason: 'bad-signature' })
    })

    it('without the group, or with a threshold below the quorum, stable checkpoints keep their full proof', () => {
      const cluster = new Cluster(4, limits)
      run(cluster, 1, 4)
      expect(stableOf(cluster, 'r1', 4)?.proof).to.have.length(3)
      expect(stableOf(cluster, 'r1', 4)?.groupSignature).to.equal(undefined)
      const weak = new Cluster(4, limits)
      const group = new FakeThresholdGroup(replicas, 2)
      weak.setGroup(id => group.for(id))
      expect(weak.replica('r0').status().compactCheckpoints).to.equal(false)
      run(weak, 1, 4)
      expect(stableOf(weak, 'r1', 4)?.proof).to.have.length(3)
      expect(weak.readies.get('r1')?.flatMap(r => r.messages).some(m => m.message.type === 'checkpoint' && m.message.partial !== undefined)).to.equal(false)
    })

    it('a lying replica\'s bad partial: too few valid ones, the full proof as before, and the liar named', () => {
      const group = new FakeThresholdGroup(replicas, 3, { liar: 'r3' })
      const cluster = new Cluster(4, limits)
      const given = new Map(replicas.map(id => [id, group.for(id)]))
      // r2 holds no share (yet): r0, r1 and the liar's partials are all there are
      cluster.setGroup(id => given.get(id) as never, ['r0', 'r1', 'r3'])
      // and r2's checkpoints are lost: the quorum is r0, r1 and the liar
      cluster.filter = e => !(e.from === 'r2' && e.message.type === 'checkpoint')
      run(cluster, 1, 5)
      for (const id of cluster.ids) {
        expect(cluster.replica(id).status().stableCheckpoint, id).to.equal(4)
        expect(stableOf(cluster, id, 4)?.proof, id).to.have.length(3)
        expect(stableOf(cluster, id, 4)?.groupSignature, id).to.equal(undefined)
      }
      expect(given.get('r0')?.bad).to.include('r3')
      // its checkpoint names the group: proof of the lie (pbft-bad-partial-evidence.spec.ts)
      expect(cluster.replica('r0').status().isolated).to.deep.equal([{ peer: 'r3', reason: 'bad-checkpoint-partial' }])
    })

    it('a view change carrying a compact stable checkpoint is accepted and the new view starts', () => {
      const group = new FakeThresholdGroup(replicas, 3)
      const cluster = new Cluster(4, limits)
      cluster.setGroup(id => group.for(id))
      run(cluster, 1, 5)
      cluster.crash('r0')
      for (const id of ['r1', 'r2', 'r3']) { cluster.submit(id, clientRequest('c1', 6)) }
      cluster.drain()
      cluster.tick(2 * limits.requestTimeoutTicks)
      const viewChanges = ['r1', 'r2', 'r3'].flatMap(id => cluster.readies.get(id)?.flatMap(r => r.messages) ?? [])
        .filter(m => m.message.type === 'view-change').map(m => m.message as ViewChange)
      expect(viewChanges.length).to.be.greaterThan(0)
      for (const vc of viewChanges) { expect(vc.stable.groupSignature?.length).to.equal(96) }
      const accepted = cluster.results.filter(r => r.envelope.message.type === 'view-change' && r.result.ok)
      expect(accepted.length).to.be.greaterThan(0)
      for (const id of ['r1', 'r2', 'r3']) { expect(cluster.replica(id).status(), id).to.deep.include({ view: 1, viewChanging: false, executed: 6 }) }
      // a replica that no longer knows the group (reshared to other members, say) still takes its own stable checkpoint in a view change,
      // and refuses a compact one it cannot check
      cluster.setGroup(null, ['r2'])
      const vc = viewChanges.find(v => v.replica === 'r1') as ViewChange
      expect(cluster.inject('r1', 'r2', sign<ViewChange>({ type: 'view-change', replica: 'r1', view: 2, stable: vc.stable, prepared: [] }))).to.deep.equal({ ok: true })
      const unknown = sign<ViewChange>({ type: 'view-change', replica: 'r3', view: 2, stable: compact(group, 4, 'cd'.repeat(32)), prepared: [] })
      const refused = cluster.inject('r3', 'r2', unknown)
      expect(refused).to.deep.include({ ok: false, reason: 'malformed' })
      expect(refused.ok === false && refused.detail).to.match(/no threshold group/)
    })

    it('a replica that missed the checkpoints adopts the compact stable checkpoint a view change carries', () => {
      const group = new FakeThresholdGroup(replicas, 3)
      const cluster = new Cluster(4, limits)
      cluster.setGroup(id => group.for(id))
      cluster.filter = e => !(e.to === 'r3' && e.message.type === 'checkpoint')
      run(cluster, 1, 5)
      expect(cluster.replica('r3').status().stableCheckpoint).to.equal(0)
      cluster.filter = () => true
      cluster.crash('r0')
      for (const id of ['r1', 'r2', 'r3']) { cluster.submit(id, clientRequest('c1', 6)) }
      cluster.drain()
      cluster.tick(2 * limits.requestTimeoutTicks)
      expect(cluster.replica('r3').status()).to.deep.include({ stableCheckpoint: 4, view: 1, viewChanging: false, executed: 6 })
      expect(stableOf(cluster, 'r3', 4)?.groupSignature?.length).to.equal(96)
    })

    it('a replica without the group: a compact stable checkpoint above its own is unknown (it catches up), one below it bounds nothing it relies on', () => {
      const group = new FakeThresholdGroup(replicas, 3)
      const cluster = new Cluster(4, limits)
      cluster.setGroup(id => group.for(id))
      run(cluster, 1, 9)
      expect(cluster.replica('r2').status().stableCheckpoint).to.equal(8)
      cluster.setGroup(null, ['r2'])
      const above = cluster.inject('r3', 'r2', sign<ViewChange>({ type: 'view-change', replica: 'r3', view: 1, stable: compact(group, 12, 'cd'.repeat(32)), prepared: [] }))
      expect(above).to.deep.include({ ok: false, reason: 'unknown-set' })
      // a lagging replica's view change, its stable checkpoint compact and below this one's: taken, its prepared certificates checked as always
      const below = sign<ViewChange>({ type: 'view-change', replica: 'r3', view: 1, stable: compact(group, 4, stableOf(cluster, 'r0', 4)?.stateDigest), prepared: [] })
      expect(cluster.inject('r3', 'r2', below)).to.deep.equal({ ok: true })
      // a full one below is still checked
      const forgedFull = sign<ViewChange>({ type: 'view-change', replica: 'r1', view: 1, stable: { seq: 4, stateDigest: digest, proof: [checkpoint('r0')] }, prepared: [] })
      expect(cluster.inject('r1', 'r2', forgedFull)).to.deep.include({ ok: false, reason: 'malformed' })
    })

    it('a replica far behind installs the state proven by a compact certificate', () => {
      const group = new FakeThresholdGroup(replicas, 3)
      const cluster = new Cluster(4, limits)
      cluster.setGroup(id => group.for(id))
      cluster.crash('r3')
      run(cluster, 1, 9)
      expect(stableOf(cluster, 'r0', 8)?.groupSignature?.length).to.equal(96)
      cluster.restart('r3')
      run(cluster, 10, 10)
      cluster.tick(limits.requestTimeoutTicks)
      const wanted = cluster.readies.get('r3')?.map(r => r.stateWanted).find(w => w !== null)
      expect(wanted?.checkpoint.seq).to.equal(8)
      expect(wanted?.checkpoint.groupSignature?.length).to.equal(96)
      expect(wanted?.checkpoint.proof).to.deep.equal([])
      // a compact certificate names no signers: the provers hold the state
      expect(wanted?.holders).to.have.members(['r0', 'r1', 'r2'])
      expect(cluster.replica('r3').status()).to.deep.include({ stableCheckpoint: 8, executed: 10 })
      expect(cluster.state('r3').executed).to.deep.equal(cluster.state('r0').executed)
      cluster.expectAgreement()
    })
  })

  describe('encoding', () => {
    const group = new FakeThresholdGroup(replicas, 3)
    const partial = group.partial('r1', checkpointGroupPayload(4, digest))

    it('round-trips partials and group signatures, in messages and records', () => {
      const withPartial = checkpoint('r1', 4, partial)
      const decoded = decodeMessage(encodeMessage(withPartial))
      expect(decoded.ok && decoded.message).to.deep.equal(withPartial)
      const viewChange = sign<ViewChange>({ type: 'view-change', replica: 'r1', view: 1, stable: compact(group), prepared: [] })
      const vc = decodeMessage(encodeMessage(viewChange))
      expect(vc.ok && vc.message).to.deep.equal(viewChange)
      const record = decodeRecord(encodeRecord({ kind: 'stable', checkpoint: compact(group) }))
      expect(record.ok && record.record).to.deep.equal({ kind: 'stable', checkpoint: compact(group) })
      const full = { seq: 4, stateDigest: digest, proof: [checkpoint('r0', 4, partial), checkpoint('r1')] }
      const fullRecord = decodeRecord(encodeRecord({ kind: 'stable', checkpoint: full }))
      expect(fullRecord.ok && fullRecord.record).to.deep.equal({ kind: 'stable', checkpoint: full })
      // evidence of two checkpoints with partials
      const evidence = { kind: 'equivocation' as const, offender: 'r1', first: withPartial, second: checkpoint('r1', 4, new Uint8Array(96).fill(1)) }
      const decodedEvidence = decodeEvidence(encodeEvidence(evidence))
      expect(decodedEvidence.ok && decodedEvidence.evidence).to.deep.equal(evidence)
      // the signature covers the partial: another partial breaks it
      expect(checkStableCheckpoint({ ...full, proof: [{ ...full.proof[0], partial: new Uint8Array(96) }, full.proof[1]] }, ['r0', 'r1'], crypto)).to.match(/invalid signature/)
    })

    it('writes what carries no partial nor group signature as version 1, as before, and still reads version 1', () => {
      const plain = checkpoint('r1')
      const bytes = encodeMessage(plain)
      expect(bytes[0]).to.equal(1)
      expect(encodeMessage(checkpoint('r1', 4, partial))[0]).to.equal(2)
      const decoded = decodeMessage(bytes)
      expect(decoded.ok && decoded.message).to.deep.equal(plain)
    })

    it('bounds the new fields: exact sizes, presence bytes 0 or 1, no group signature beside a proof', () => {
      expect(() => encodeMessage(checkpoint('r1', 4, new Uint8Array(95)))).to.throw(RangeError)
      const bytes = encodeMessage(checkpoint('r1', 4, partial))
      expect(decodeMessage(bytes.subarray(0, bytes.length - 1)).ok).to.equal(false)
      expect(decodeMessage(Uint8Array.from([...bytes, 0])).ok).to.equal(false)
      const presence = Uint8Array.from(bytes)
      presence[bytes.length - 97] = 2
      const badPresence = decodeMessage(presence)
      expect(badPresence.ok === false && badPresence.error).to.match(/must be 0 or 1/)
      // both a proof and a group signature: written by hand, refused on reading
      const both = encodeRecord({ kind: 'stable', checkpoint: { seq: 4, stateDigest: digest, proof: [checkpoint('r0', 4, partial)] } })
      const patched = Uint8Array.from([...both.subarray(0, both.length - 1), 1, ...new Uint8Array(96)])
      const refused = decodeRecord(patched)
      expect(refused.ok === false && refused.error).to.match(/without checkpoints/)
    })
  })
})
