/**
 * A checkpoint whose partial does not verify under its signer's public
 * share, in the group the checkpoint names, is evidence
 * ('bad-checkpoint-partial'): checked, encoded, produced where partials
 * fail to combine, acted on by the replicas that hold that group, and
 * refused as unjudgeable by the others. The deterministic stand-in group
 * (test/lib/fake-threshold-group.ts) plays the DKG; another seed is another
 * group (a reshare or a new DKG).
 */
import { expect } from 'aegir/chai'
import { silentLogger } from '../../node/logger.ts'
import { EvidenceTopic } from '../../node/pbft/evidence-topic.ts'
import { checkEvidence, checkpointGroupPayload, decodeEvidence, decodeMessage, encodeEvidence, encodeMessage, NODE_ID_LENGTH_MAX, SCORE_MAX, signingPayload } from '../../protocols/pbft/index.ts'
import { FakeThresholdGroup } from '../lib/fake-threshold-group.ts'
import { Cluster, clientRequest, sign, testCrypto } from './pbft-harness.ts'
import type { BadCheckpointPartialEvidence, Checkpoint, Evidence, PbftThresholdGroup, Prepare, ViewChange } from '../../protocols/pbft/index.ts'
import type { GossipSub, Message } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'

const limits = { requestTimeoutTicks: 4, viewChangeTimeoutTicks: 4, checkpointInterval: 4, watermarkWindow: 8, batchRequestsMax: 1 }
const replicas = ['r0', 'r1', 'r2', 'r3']
const stateDigest = 'ab'.repeat(32)
const crypto = testCrypto('x')
const garbage = new Uint8Array(96).fill(9)

/** r1's checkpoint at seq 4 carrying `partial`, naming `group`'s id. */
function checkpointOf (group: FakeThresholdGroup, partial: Uint8Array, replica = 'r1'): Checkpoint {
  return sign<Checkpoint>({ type: 'checkpoint', replica, seq: 4, stateDigest, partial, groupId: group.id })
}

function badPartial (checkpoint: Checkpoint): BadCheckpointPartialEvidence {
  return { kind: 'bad-checkpoint-partial', offender: checkpoint.replica, checkpoint }
}

function run (cluster: Cluster, from: number, to: number): void {
  for (let t = from; t <= to; t++) {
    cluster.submit('r0', clientRequest('c1', t))
    cluster.drain()
  }
}

describe('pbft bad-checkpoint-partial evidence', () => {
  describe('checkEvidence', () => {
    const group = new FakeThresholdGroup(replicas, 3)
    const held = group.for('r0')
    const lie = checkpointOf(group, garbage)

    it('convicts a validly signed checkpoint whose partial fails under the offender\'s share in the group held here', () => {
      expect(checkEvidence(badPartial(lie), replicas, crypto, held)).to.deep.equal({ ok: true })
    })

    it('refuses evidence against an honest partial, a forged or misattributed signature, and a checkpoint without a partial or its group', () => {
      const honest = checkpointOf(group, group.partial('r1', checkpointGroupPayload(4, stateDigest)))
      const { partial: _partial, groupId: _groupId, ...plain } = lie
      const cases: Array<[Evidence, RegExp]> = [
        [badPartial(honest), /verifies under the offender's public share/],
        [badPartial({ ...lie, signature: new Uint8Array(32) }), /not validly signed/],
        // r2's name on r1's signature
        [badPartial({ ...lie, replica: 'r2' }), /not validly signed/],
        [{ ...badPartial(lie), offender: 'r2' }, /not a checkpoint from the offender/],
        [{ ...badPartial(lie), offender: 'x9' }, /not a replica/],
        [badPartial(sign<Checkpoint>(plain)), /no partial/],
        [badPartial(sign<Checkpoint>({ ...plain, partial: garbage })), /names no threshold group/],
        [badPartial({ ...lie, partial: new Uint8Array(95) }), /no partial of 96 bytes/],
        [{ ...badPartial(lie), checkpoint: sign<Prepare>({ type: 'prepare', replica: 'r1', view: 0, seq: 4, digest: stateDigest }) as never }, /not a checkpoint/],
        [{ kind: 'other', offender: 'r1' } as never, /unknown evidence kind/]
      ]
      for (const [evidence, error] of cases) {
        const checked = checkEvidence(evidence, replicas, crypto, held)
        expect(checked.ok, error.source).to.equal(false)
        expect(checked.ok === false && checked.error, error.source).to.match(error)
        expect(checked.ok === false && checked.unjudgeable, error.source).to.equal(undefined)
      }
    })

    it('is unjudgeable without a group, or with one whose members are not the replicas', () => {
      for (const none of [undefined, null]) {
        expect(checkEvidence(badPartial(lie), replicas, crypto, none)).to.deep.include({ ok: false, unjudgeable: true })
      }
      // the same id with a stranger among the members: a group of other nodes judges no replica
      const outsiders: PbftThresholdGroup = { ...held, members: ['r0', 'r1', 'r2', 'x9'] }
      expect(checkEvidence(badPartial(lie), replicas, crypto, outsiders)).to.deep.include({ ok: false, unjudgeable: true })
      const withoutOffender: PbftThresholdGroup = { ...held, members: ['r0', 'r2', 'r3'] }
      expect(checkEvidence(badPartial(lie), replicas, crypto, withoutOffender)).to.deep.include({ ok: false, unjudgeable: true })
      // a forgery is refused (not merely unjudgeable) whatever group is held: it costs its sender
      const forged = checkEvidence(badPartial({ ...lie, signature: new Uint8Array(32) }), replicas, crypto, null)
      expect(forged.ok === false && forged.unjudgeable).to.equal(undefined)
    })

    it('never convicts an honest replica across a group change (reshare or new DKG): its partial names the group it was made under', () => {
      const before = new FakeThresholdGroup(replicas, 3, { seed: 'before the reshare' })
      const after = new FakeThresholdGroup(replicas, 3, { seed: 'after the reshare' })
      const honest = checkpointOf(before, before.partial('r1', checkpointGroupPayload(4, stateDigest)))
      // what a checker that ignored the group would see: the old partial fails under the new shares
      expect(after.for('r0').verifyPartial('r1', checkpointGroupPayload(4, stateDigest), honest.partial as Uint8Array)).to.equal(false)
      const checked = checkEvidence(badPartial(honest), replicas, crypto, after.for('r0'))
      expect(checked).to.deep.include({ ok: false, unjudgeable: true })
      expect(checked.ok === false && checked.error).to.match(/made under threshold group/)
      // and the group id cannot be swapped: it is under the replica's signature
      expect(checkEvidence(badPartial({ ...honest, groupId: after.id }), replicas, crypto, after.for('r0'))).to.deep.include({ ok: false, error: 'a message is not validly signed by the offender' })
      // a checker still on the old group judges it, and finds it honest
      expect(checkEvidence(badPartial(honest), replicas, crypto, before.for('r0')).ok).to.equal(false)
    })
  })

  describe('encoding', () => {
    const group = new FakeThresholdGroup(replicas, 3)
    const lie = checkpointOf(group, garbage)

    it('round-trips the evidence and a checkpoint naming its group (version 3); one without stays version 2, signed apart', () => {
      const bytes = encodeEvidence(badPartial(lie))
      expect(bytes[0]).to.equal(3)
      const decoded = decodeEvidence(bytes)
      expect(decoded.ok && decoded.evidence).to.deep.equal(badPartial(lie))
      const message = decodeMessage(encodeMessage(lie))
      expect(message.ok && message.message).to.deep.equal(lie)
      const { groupId: _groupId, ...unbound } = lie
      expect(encodeMessage(unbound)[0]).to.equal(2)
      expect(signingPayload(unbound)).to.not.deep.equal(signingPayload(lie).subarray(0, signingPayload(unbound).length))
      // a mix in one stable checkpoint: both forms in the version 3 layout
      const viewChange = sign<ViewChange>({ type: 'view-change', replica: 'r1', view: 1, stable: { seq: 4, stateDigest, proof: [lie, { ...unbound, replica: 'r2' }] }, prepared: [] })
      const vc = decodeMessage(encodeMessage(viewChange))
      expect(vc.ok && vc.message).to.deep.equal(viewChange)
    })

    it('refuses malformed evidence: cut short, trailing bytes, another message, bad presence byte, unknown kind, oversize ids', () => {
      const bytes = encodeEvidence(badPartial(lie))
      const refused = (data: Uint8Array): string => {
        const decoded = decodeEvidence(data)
        expect(decoded.ok).to.equal(false)
        return decoded.ok ? '' : decoded.error
      }
      refused(bytes.subarray(0, bytes.length - 1))
      refused(Uint8Array.from([...bytes, 0]))
      const unknownKind = Uint8Array.from(bytes)
      unknownKind[1] = 3
      expect(refused(unknownKind)).to.match(/unknown evidence kind 3/)
      const prepare = sign<Prepare>({ type: 'prepare', replica: 'r1', view: 0, seq: 4, digest: stateDigest })
      // version 1, kind 2, offender 'r1', then the prepare (tag and body)
      const notCheckpoint = Uint8Array.from([1, 2, 2, ...new TextEncoder().encode('r1'), ...encodeMessage(prepare).subarray(1)])
      expect(refused(notCheckpoint)).to.match(/carries a prepare, not a checkpoint/)
      // presence byte of the partial: 0, 1 or 2 in version 3
      const presence = Uint8Array.from(bytes)
      presence[bytes.length - 96 - 32 - 1] = 3
      expect(refused(presence)).to.match(/must be 0, 1 or 2/)
      // presence 2 means nothing in version 2
      const v2 = Uint8Array.from(bytes)
      v2[0] = 2
      expect(refused(v2)).to.match(/must be 0 or 1/)
      const longName = 'r'.repeat(NODE_ID_LENGTH_MAX + 1)
      expect(refused(encodeEvidence({ ...badPartial(lie), offender: longName }))).to.match(/offender/)
      expect(() => encodeMessage({ ...lie, partial: undefined })).to.throw(RangeError, /comes with a partial only/)
    })
  })

  describe('replicas', () => {
    it('a lying replica\'s bad partial: evidence, published once, and every replica holding the group isolates it; one without refuses it', () => {
      const group = new FakeThresholdGroup(replicas, 3, { liar: 'r3' })
      const cluster = new Cluster(4, limits)
      const given = new Map(replicas.map(id => [id, group.for(id)]))
      // r2 holds no share (yet): r0, r1 and the liar's partials are all there are
      cluster.setGroup(id => given.get(id) as PbftThresholdGroup, ['r0', 'r1', 'r3'])
      // and r2's checkpoint at 4 is lost: the quorum there is r0, r1 and the liar
      cluster.filter = e => !(e.from === 'r2' && e.message.type === 'checkpoint' && e.message.seq === 4)
      run(cluster, 1, 9)
      for (const id of ['r0', 'r1']) {
        const produced = cluster.evidence.get(id) ?? []
        // once: isolated, its later checkpoints (seq 8) are refused
        expect(produced.map(e => [e.kind, e.offender]), id).to.deep.equal([['bad-checkpoint-partial', 'r3']])
        expect(checkEvidence(produced[0], replicas, crypto, given.get('r2')).ok, id).to.equal(true)
        expect(cluster.replica(id).status().isolated, id).to.deep.equal([{ peer: 'r3', reason: 'bad-checkpoint-partial' }])
        expect(cluster.replica(id).status().stableCheckpoint, id).to.equal(8)
      }
      const evidence = cluster.evidence.get('r0')?.[0] as Evidence
      // r2 holds no group: it cannot judge, convicts no one
      expect(cluster.replica('r2').receiveEvidence(evidence)).to.deep.include({ ok: false, reason: 'unknown-set' })
      expect(cluster.replica('r2').status().isolated).to.deep.equal([])
      // once it holds the group, the same evidence isolates the liar, as equivocation evidence does
      cluster.setGroup(id => given.get(id) as PbftThresholdGroup, ['r2'])
      expect(cluster.replica('r2').receiveEvidence(evidence)).to.deep.equal({ ok: true })
      expect(cluster.replica('r2').status().isolated).to.deep.equal([{ peer: 'r3', reason: 'bad-checkpoint-partial' }])
      expect(cluster.replica('r2').receiveEvidence(evidence)).to.deep.include({ ok: false, reason: 'duplicate' })
      // the liar itself cannot isolate itself
      expect(cluster.replica('r3').receiveEvidence(evidence)).to.deep.include({ ok: false, reason: 'conflict' })
    })

    it('a bad partial naming no group (an older node\'s layout) proves nothing to others: only suspected, no evidence', () => {
      const group = new FakeThresholdGroup(replicas, 3, { liar: 'r3' })
      const cluster = new Cluster(4, limits)
      const given = new Map(replicas.map(id => [id, group.for(id)]))
      // r3 signs its checkpoints as a node before version 3 did: the partial alone
      cluster.setGroup(id => id === 'r3' ? { ...(given.get(id) as PbftThresholdGroup), id: undefined as never } : given.get(id) as PbftThresholdGroup, ['r0', 'r1', 'r3'])
      cluster.filter = e => !(e.from === 'r2' && e.message.type === 'checkpoint' && e.message.seq === 4)
      run(cluster, 1, 5)
      expect(given.get('r0')?.bad).to.include('r3')
      expect(cluster.evidence.get('r0')).to.deep.equal([])
      expect(cluster.replica('r0').status().isolated).to.deep.equal([])
      expect(cluster.replica('r0').status().scores.find(s => s.peer === 'r3')?.score).to.be.below(SCORE_MAX)
    })

    it('an honest replica still on the group before a reshare is neither convicted nor suspected, nor its partial named bad', () => {
      const before = new FakeThresholdGroup(replicas, 3, { seed: 'before the reshare' })
      const after = new FakeThresholdGroup(replicas, 3, { seed: 'after the reshare' })
      const given = new Map(replicas.map(id => [id, id === 'r1' ? before.for(id) : after.for(id)]))
      const cluster = new Cluster(4, limits)
      cluster.setGroup(id => given.get(id) as PbftThresholdGroup)
      run(cluster, 1, 9)
      for (const id of cluster.ids) {
        expect(cluster.evidence.get(id), id).to.deep.equal([])
        expect(cluster.replica(id).status().isolated, id).to.deep.equal([])
        expect(cluster.replica(id).status().scores.filter(s => s.score < SCORE_MAX), id).to.deep.equal([])
        expect(cluster.replica(id).status().stableCheckpoint, id).to.equal(8)
      }
      // r1's partials were made under the old group, named it, and were left out of the new group's combinations
      const sent = cluster.readies.get('r1')?.flatMap(r => r.messages).find(m => m.message.type === 'checkpoint')?.message as Checkpoint
      expect(sent.partial).to.deep.equal(before.partial('r1', checkpointGroupPayload(4, sent.stateDigest)))
      expect(sent.groupId).to.equal(before.id)
      for (const id of ['r0', 'r2', 'r3']) { expect(given.get(id)?.bad, id).to.deep.equal([]) }
    })
  })

  describe('the evidence topic', () => {
    const group = new FakeThresholdGroup(replicas, 3)
    const data = encodeEvidence(badPartial(checkpointOf(group, garbage)))

    function topic (held: PbftThresholdGroup | null): { validate(data: Uint8Array): string, delivered: Evidence[], invalid: string[], unjudgeable: string[] } {
      const validators = new Map<string, (source: PeerId, msg: Message) => string>()
      const pubsub = { topicValidators: validators, addEventListener: () => {}, subscribe: () => {} } as unknown as GossipSub
      const delivered: Evidence[] = []
      const invalid: string[] = []
      const unjudgeable: string[] = []
      const evidenceTopic = new EvidenceTopic({
        pubsub,
        cluster: 'c',
        replicas: () => replicas,
        crypto,
        group: () => held,
        log: silentLogger(),
        onEvidence: e => { delivered.push(e) },
        onInvalid: (_source, error) => { invalid.push(error) },
        onUnjudgeable: (_source, error) => { unjudgeable.push(error) }
      })
      evidenceTopic.start()
      const validator = validators.get(evidenceTopic.topic) as (source: PeerId, msg: Message) => string
      return { validate: data => validator({ toString: () => 'peer' } as PeerId, { data } as Message), delivered, invalid, unjudgeable }
    }

    it('accepts what it can judge, ignores (without blaming the sender) what it cannot, rejects forgeries', () => {
      expect(topic(group.for('r0')).validate(data)).to.equal('accept')
      const without = topic(null)
      expect(without.validate(data)).to.equal('ignore')
      expect(without.unjudgeable).to.have.length(1)
      expect(without.invalid).to.deep.equal([])
      const forged = Uint8Array.from(data)
      forged[forged.length - 96 - 32 - 2] ^= 1 // in the signature
      const withGroup = topic(group.for('r0'))
      expect(withGroup.validate(forged)).to.equal('reject')
      expect(withGroup.invalid).to.have.length(1)
    })
  })
})
