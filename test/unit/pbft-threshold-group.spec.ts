/**
 * The node's threshold group for compact PBFT checkpoints
 * (node/pbft/threshold-group.ts) with real threshold BLS: partials signed
 * per member, combined into the group signature, bad partials named, and a
 * cluster of PBFT cores proving its checkpoints with it.
 */
import { expect } from 'aegir/chai'
import { randomScalar } from '../../identity/bls.ts'
import { commit } from '../../identity/threshold/feldman.ts'
import { randomPolynomial, sharesOf } from '../../identity/threshold/shamir.ts'
import { partialSign, ThresholdPublicKey, verifyGroupSignature } from '../../identity/threshold/tbls.ts'
import { checkpointGroupId, checkpointThresholdGroup, GROUP_SIGNATURES_VERIFIED_KEPT } from '../../node/pbft/threshold-group.ts'
import { checkpointGroupPayload, checkStableCheckpoint } from '../../protocols/pbft/index.ts'
import { Cluster, clientRequest, testCrypto } from './pbft-harness.ts'
import { seededRandomBytes } from './threshold-helpers.ts'
import type { CheckpointSigner } from '../../node/pbft/threshold-group.ts'

const members = ['r0', 'r1', 'r2', 'r3']

/** A group from `seed`; with `secret`, a reshare of a group with that secret (the same group key, other shares). */
function dkgStandIn (seed: string, secret?: bigint): { key: ThresholdPublicKey, secret: bigint, signerOf(member: string): CheckpointSigner } {
  const random = seededRandomBytes(seed)
  const polynomial = randomPolynomial(secret ?? randomScalar(random), 3, random)
  const shares = sharesOf(polynomial, members.length)
  const key = new ThresholdPublicKey(commit(polynomial), members.length)
  return {
    key,
    secret: polynomial[0],
    signerOf: (member) => ({
      checkpointGroup: () => ({ key, members }),
      signCheckpointPartial: (payload) => partialSign(shares[members.indexOf(member)], payload).signature,
      onGroupChange: () => () => {}
    })
  }
}

describe('pbft threshold group (BLS)', () => {
  const { key, signerOf } = dkgStandIn('pbft-threshold-group')
  const payload = checkpointGroupPayload(64, 'ab'.repeat(32))

  it('combines a quorum of partials into the group signature, and names a member whose partial fails', () => {
    const bad: string[] = []
    const group = checkpointThresholdGroup(signerOf('r0'), { onBadPartial: member => { bad.push(member) } })
    expect(group).to.not.equal(null)
    if (group === null) { return }
    expect(group.threshold).to.equal(3)
    expect(group.groupKey).to.deep.equal(key.groupKey)
    const partials = new Map(members.slice(0, 3).map(m => [m, signerOf(m).signCheckpointPartial(payload) as Uint8Array]))
    const combined = group.combine(partials, payload)
    expect(combined.ok).to.equal(true)
    if (!combined.ok) { return }
    expect(verifyGroupSignature(key, payload, combined.signature)).to.equal(true)
    expect(group.verifyGroup(payload, combined.signature)).to.equal(true)
    expect(group.verifyGroup(checkpointGroupPayload(128, 'ab'.repeat(32)), combined.signature)).to.equal(false)
    // r2's partial made by r1's share: r2 is named, two valid ones are too few
    const lying = new Map(partials).set('r2', signerOf('r1').signCheckpointPartial(payload) as Uint8Array)
    expect(group.combine(lying, payload)).to.deep.equal({ ok: false, bad: ['r2'] })
    expect(bad).to.deep.equal(['r2'])
    // a stranger's partial counts for nothing
    expect(group.combine(new Map(partials).set('x9', partials.get('r0') as Uint8Array), payload)).to.deep.include({ ok: true, bad: ['x9'] })
  })

  it('remembers the last GROUP_SIGNATURES_VERIFIED_KEPT valid group signatures, oldest out first, and no invalid one', () => {
    let pairings = 0
    const group = checkpointThresholdGroup(signerOf('r0'), {
      onBadPartial: () => {},
      verifyGroupSignature: (k, p, sig) => { pairings++; return verifyGroupSignature(k, p, sig) }
    })
    if (group === null) { throw new Error('no group') }
    const signed = Array.from({ length: GROUP_SIGNATURES_VERIFIED_KEPT + 1 }, (_, i) => {
      const p = checkpointGroupPayload(64 * (i + 1), 'ab'.repeat(32))
      const partials = new Map(members.slice(0, 3).map(m => [m, signerOf(m).signCheckpointPartial(p) as Uint8Array]))
      const combined = group.combine(partials, p)
      if (!combined.ok) { throw new Error('combine failed') }
      return { payload: p, signature: combined.signature }
    })
    expect(group.verifyGroup(signed[0].payload, signed[0].signature)).to.equal(true)
    expect(group.verifyGroup(signed[0].payload, signed[0].signature)).to.equal(true)
    expect(pairings).to.equal(1)
    // an invalid one is checked every time
    expect(group.verifyGroup(signed[1].payload, signed[0].signature)).to.equal(false)
    expect(group.verifyGroup(signed[1].payload, signed[0].signature)).to.equal(false)
    expect(pairings).to.equal(3)
    // the bound: GROUP_SIGNATURES_VERIFIED_KEPT more push the first out
    for (const { payload: p, signature } of signed.slice(1)) { expect(group.verifyGroup(p, signature)).to.equal(true) }
    expect(pairings).to.equal(3 + GROUP_SIGNATURES_VERIFIED_KEPT)
    expect(group.verifyGroup(signed[GROUP_SIGNATURES_VERIFIED_KEPT].payload, signed[GROUP_SIGNATURES_VERIFIED_KEPT].signature)).to.equal(true)
    expect(pairings).to.equal(3 + GROUP_SIGNATURES_VERIFIED_KEPT)
    expect(group.verifyGroup(signed[0].payload, signed[0].signature)).to.equal(true)
    expect(pairings).to.equal(4 + GROUP_SIGNATURES_VERIFIED_KEPT)
  })

  it('names the group by its whole public side: a reshare (same key, other shares) or a new DKG is another group; a partial is made only under the group named', () => {
    const reshared = dkgStandIn('pbft-threshold-group reshared', dkgStandIn('pbft-threshold-group').secret)
    const other = dkgStandIn('another DKG')
    const ids = [signerOf('r0'), reshared.signerOf('r0'), other.signerOf('r0')].map(signer => checkpointThresholdGroup(signer, { onBadPartial: () => {} })?.id)
    expect(reshared.key.groupKey).to.deep.equal(key.groupKey)
    expect(new Set(ids).size).to.equal(3)
    expect(ids[0]).to.equal(checkpointGroupId({ key, members }))
    expect(checkpointGroupId({ key, members: [...members].reverse() })).to.not.equal(ids[0])
    // one member's partial under its public share
    const group = checkpointThresholdGroup(signerOf('r0'), { onBadPartial: () => {} })
    if (group === null) { throw new Error('no group') }
    const partial = signerOf('r1').signCheckpointPartial(payload) as Uint8Array
    expect(group.verifyPartial('r1', payload, partial)).to.equal(true)
    expect(group.verifyPartial('r2', payload, partial)).to.equal(false)
    expect(group.verifyPartial('x9', payload, partial)).to.equal(false)
    expect(group.verifyPartial('r1', payload, reshared.signerOf('r1').signCheckpointPartial(payload) as Uint8Array)).to.equal(false)
    expect(group.verifyPartial('r1', payload, new Uint8Array(96).fill(1))).to.equal(false)
    // the signer moves to the reshared group before PBFT is given it: the old group's object signs nothing (its checkpoint would name the old group)
    let current = signerOf('r0')
    const changing: CheckpointSigner = { checkpointGroup: () => current.checkpointGroup(), signCheckpointPartial: p => current.signCheckpointPartial(p), onGroupChange: () => () => {} }
    const held = checkpointThresholdGroup(changing, { onBadPartial: () => {} })
    expect(held?.signPartial(payload)).to.deep.equal(signerOf('r0').signCheckpointPartial(payload))
    current = reshared.signerOf('r0')
    expect(held?.signPartial(payload)).to.equal(null)
  })

  it('no group: null', () => {
    const none = { checkpointGroup: () => null, signCheckpointPartial: () => null, onGroupChange: () => () => {} }
    expect(checkpointThresholdGroup(none, { onBadPartial: () => {} })).to.equal(null)
  })

  it('PBFT cores prove their checkpoints with one BLS group signature', () => {
    const limits = { checkpointInterval: 4, watermarkWindow: 8, batchRequestsMax: 1 }
    const cluster = new Cluster(4, limits)
    cluster.setGroup(id => checkpointThresholdGroup(signerOf(id), { onBadPartial: () => {} }) as never)
    for (let t = 1; t <= 4; t++) {
      cluster.submit('r0', clientRequest('c1', t))
      cluster.drain()
    }
    const stable = cluster.readies.get('r2')?.map(r => r.stable).find(s => s !== null)
    expect(stable?.seq).to.equal(4)
    expect(stable?.proof).to.deep.equal([])
    expect(verifyGroupSignature(key, checkpointGroupPayload(4, stable?.stateDigest ?? ''), stable?.groupSignature ?? new Uint8Array())).to.equal(true)
    expect(checkStableCheckpoint(stable!, members, testCrypto('x'), cluster.groups.get('r3'))).to.equal(null)
  })
})
