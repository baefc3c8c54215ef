/**
 * A new DKG key under group admission, over real libp2p on loopback:
 * three members admit with a 2-of-3 key, then make a new key (a fresh DKG,
 * not a reshare) and switch to it one by one (`use-group-key`). Meanwhile
 * a switched member and one that has not switched still admit each other,
 * since both are members of the DKG group: each takes the other's
 * certificate under the DKG's current key, or under the key it admitted
 * with before its switch. A stranger's certificate under the old key is
 * still refused by a switched node.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { encodeGroupCertificate, groupCertificateMessage } from '../../identity/group-certificate.ts'
import { decodeCommitments } from '../../identity/threshold/feldman.ts'
import { combine, partialSign, ThresholdPublicKey } from '../../identity/threshold/tbls.ts'
import { ADMISSION_PROTOCOL } from '../../node/admission/admission.ts'
import { refusalCount } from '../lib/metrics.ts'
import { addressOf, TestCluster } from '../lib/nodes.ts'
import { plainPeer, showCertificate } from '../lib/peers.ts'
import { waitFor } from '../lib/wait.ts'
import type { G1Point } from '../../identity/bls.ts'
import type { AccordNode } from '../../node/index.ts'
import type { Libp2p } from '@libp2p/interface'

const idOf = (node: AccordNode): string => node.libp2p.peerId.toString()

const DEADLINE_MS = 30_000
const OPTIONS = { dkgSettings: { keyWaitMs: 3_000, signTimeoutMs: 2_000 } }

describe('admission moving to a new DKG key, member by member (real libp2p over TCP on loopback)', function () {
  this.timeout(180_000)
  const cluster = new TestCluster()
  const strangers: Libp2p[] = []
  after(async () => {
    await Promise.all(strangers.map(async s => { await s.stop() }))
    await cluster.stop()
  })

  it('switched and unswitched members admit each other; the old key admits no stranger at a switched node', async () => {
    const a = await cluster.add({ raft: false }, OPTIONS)
    let b = await cluster.add({ raft: false, bootstrap: [addressOf(a)] }, OPTIONS)
    const c = await cluster.add({ raft: false, bootstrap: [addressOf(a)] }, OPTIONS)
    const members = (): AccordNode[] => [a, b, c]
    await waitFor(() => members().every(n => n.admission.admittedPeers().length >= 2), 'the three to admit each other', DEADLINE_MS)
    const first = await a.dkg.run({ members: members().map(idOf), threshold: 2 })
    expect(first.state, first.reason).to.equal('done')
    await waitFor(() => members().every(n => n.dkg.summary()?.groupKey === first.groupKey), 'every member to store the first key', DEADLINE_MS)
    for (const node of members()) { await node.admission.useGroupKey() }
    const oldKey = a.admission.groupKey as Uint8Array
    // what two members of the old group could still sign once they hold new shares: a certificate for a stranger, by hand
    const stranger = await plainPeer()
    strangers.push(stranger)
    const cert = { cluster: a.config.cluster, groupKey: oldKey, peer: stranger.peerId.toString(), issuedAtMs: Date.now(), expiresAtMs: Date.now() + 3600_000 }
    const message = groupCertificateMessage(cert)
    const oldGroup = JSON.parse(await readFile(join(a.config.dataDir, 'dkg-group.json'), 'utf8'))
    const oldPublic = new ThresholdPublicKey(decodeCommitments(oldGroup.commitments.map((h: string) => Uint8Array.from(Buffer.from(h, 'hex'))), 2) as G1Point[], 3)
    const combined = combine(oldPublic, message, [partialSign(a.dkg.share()!, message), partialSign(b.dkg.share()!, message)])
    const strangerCert = encodeGroupCertificate(cert, (combined as { signature: Uint8Array }).signature)

    // a new key, and only a switches to it
    const second = await a.dkg.run({ members: members().map(idOf), threshold: 2 })
    expect(second.state, second.reason).to.equal('done')
    await waitFor(() => members().every(n => n.dkg.summary()?.groupKey === second.groupKey), 'every member to store the new key', DEADLINE_MS)
    await a.admission.useGroupKey()
    expect(Buffer.from(a.admission.groupKey as Uint8Array).toString('hex')).to.equal(second.groupKey)
    expect(a.admission.credentials?.previousGroupKey).to.deep.equal(oldKey)

    // b comes back with its certificate under the old key; a shows one under the new key: they admit each other
    b = await cluster.restart(b, {}, OPTIONS)
    expect(b.admission.groupKey).to.deep.equal(oldKey)
    await waitFor(() => a.admission.isAdmitted(idOf(b)) && b.admission.isAdmitted(idOf(a)), 'the switched and the unswitched member to admit each other', DEADLINE_MS)

    // a restarted a remembers the key it switched from
    const restartedA = await cluster.restart(a, {}, OPTIONS)
    expect(restartedA.admission.credentials?.previousGroupKey).to.deep.equal(oldKey)
    await waitFor(() => restartedA.admission.isAdmitted(idOf(b)) && restartedA.admission.isAdmitted(idOf(c)), 'the restarted switched member to admit both', DEADLINE_MS)

    // the stranger's certificate under the old key: c, not switched, admits with that key and takes it; the switched a refuses it
    expect(await showCertificate(c, stranger, strangerCert)).to.include({ ok: true })
    expect(await showCertificate(restartedA, stranger, strangerCert)).to.deep.include({ ok: false, reason: 'certificate signed by another group key' })
    expect(restartedA.admission.isAdmitted(stranger.peerId.toString())).to.equal(false)
    expect(await refusalCount(restartedA, ADMISSION_PROTOCOL, 'bad-certificate')).to.equal(1)
  })
})
