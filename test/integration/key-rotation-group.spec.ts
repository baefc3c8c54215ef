/**
 * Node key rotation under the DKG group key, over real libp2p on loopback:
 * four members make a 3-of-4 key and admit with it; one rotates its key
 * and starts again. No member may certify a peer id alone, so the others
 * admit the new peer id by its hand-over, and the group signs its
 * certificate once they did. The rotated member keeps its share: it gives
 * partials under its new peer id (a signature that needs it succeeds), asks
 * for them, and deals in a reshare that writes its new peer id into the
 * group while the group key stays.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { groupCertificateMessage, verifyGroupCertificate } from '../../identity/group-certificate.ts'
import { loadPredecessorCertificate } from '../../node/admission/credentials.ts'
import { createAccordNode } from '../../node/index.ts'
import { rotateDataDirNodeKey } from '../../node/key-rotation.ts'
import { addressOf, silentLogger, TestCluster, waitFor } from '../lib/nodes.ts'
import type { AccordNode } from '../../node/index.ts'

const idOf = (node: AccordNode): string => node.libp2p.peerId.toString()
const DEADLINE_MS = 30_000
const OPTIONS = { admissionLimits: { recertifyFirstDelayMs: 200 }, dkgSettings: { keyWaitMs: 3_000, signTimeoutMs: 2_000 } }

describe('node key rotation under the DKG group key (real libp2p over TCP on loopback)', function () {
  this.timeout(180_000)
  const cluster = new TestCluster()
  after(async () => { await cluster.stop() })

  it('the rotated member is re-certified by the group, keeps its share, and a reshare names its new peer id', async () => {
    const first = await cluster.add({ raft: false }, OPTIONS)
    const members = [first]
    for (let i = 1; i < 4; i++) { members.push(await cluster.add({ raft: false, bootstrap: [addressOf(first)] }, OPTIONS)) }
    await waitFor(() => members.every(n => n.admission.admittedPeers().length >= 3), 'the four members to admit each other', DEADLINE_MS)
    const session = await first.dkg.run({ members: members.map(idOf), threshold: 3 })
    expect(session.state, session.reason).to.equal('done')
    await waitFor(() => members.every(n => n.dkg.summary()?.groupKey === session.groupKey), 'every member to store the key', DEADLINE_MS)
    for (const node of members) { await node.admission.useGroupKey() }
    const groupKey = members[0].admission.groupKey as Uint8Array
    const [a, b, c, d] = members
    const oldId = idOf(d)
    const oldIndex = d.dkg.summary()?.index as number

    await d.stop()
    const rotated = await rotateDataDirNodeKey(d.config.dataDir)
    const newId = rotated.newPeerId
    // before any member accepted the hand-over, none gives a partial to the new peer id's certificate
    const message = groupCertificateMessage({ cluster: a.config.cluster, groupKey, peer: newId, issuedAtMs: Date.now(), expiresAtMs: Date.now() + 3600_000 })
    expect(a.admission.mayCertify(message, idOf(b))).to.match(/has not approved/)

    const d2 = await createAccordNode({ dataDir: d.config.dataDir }, { ...OPTIONS, logger: silentLogger })
    cluster.nodes.push(d2)
    expect(idOf(d2)).to.equal(newId)
    await waitFor(() => [a, b, c].every(m => m.admission.isAdmitted(newId) && m.admission.isRevoked(oldId)), 'the members to admit the new peer id by its hand-over', DEADLINE_MS)
    expect(a.dkg.groupInfo()?.members).to.include(newId).and.not.include(oldId)
    expect(a.admission.mayCertify(message, idOf(b))).to.equal(null)

    // the group signs the new peer id's certificate: saved, and shown from then on
    await waitFor(() => !d2.admission.awaitingGroupCertificate, 'the group to certify the new peer id', DEADLINE_MS)
    const certificate = d2.admission.credentials?.certificate as Uint8Array
    expect(verifyGroupCertificate(certificate, { cluster: a.config.cluster, groupKey, peer: newId, nowMs: Date.now() })).to.not.be.a('string')
    expect(new Uint8Array(await readFile(join(d.config.dataDir, 'admission', 'member.cert')))).to.deep.equal(certificate)
    const predecessor = await loadPredecessorCertificate(d.config.dataDir) as Uint8Array
    expect(verifyGroupCertificate(predecessor, { cluster: a.config.cluster, groupKey, peer: oldId, nowMs: Date.now() })).to.not.be.a('string')
    expect(d2.dkg.summary()?.index).to.equal(oldIndex)

    // with c stopped, a 3-of-4 signature needs the rotated member's partial, asked by a member or by it
    await c.stop()
    const signed = await a.dkg.thresholdSign(new TextEncoder().encode('after the rotation'))
    expect(signed.signers).to.include(oldIndex)
    const own = await d2.dkg.thresholdSign(new TextEncoder().encode('asked by the rotated member'))
    expect(own.signers).to.include(oldIndex)

    // a reshare to a, b and the rotated member: it deals its share, and the group key stays
    const reshared = await a.dkg.reshare({ members: [idOf(a), idOf(b), newId], threshold: 2 })
    expect(reshared.state, reshared.reason).to.equal('done')
    expect(reshared.groupKey).to.equal(session.groupKey)
    await waitFor(() => [a, b, d2].every(n => n.dkg.summary()?.members.join(',') === [idOf(a), idOf(b), newId].sort().join(',') && n.dkg.summary()?.threshold === 2), 'the three to store the reshared group', DEADLINE_MS)
    const after = await d2.dkg.thresholdSign(new TextEncoder().encode('after the reshare'))
    expect(after.signers).to.have.length(2)
  })
})
