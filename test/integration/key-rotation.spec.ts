/**
 * Node key rotation over real libp2p on loopback: a member of a 3-node
 * cluster rotates its key (`accord keys rotate`'s library call) and starts
 * again with the new peer id; the others admit the new id as that member
 * and refuse the old one, also after a restart, and a second hand-over
 * from the old key is refused as evidence that it leaked.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { decode, encode } from 'cborg'
import { createHandover } from '../../identity/keystore-rotation.ts'
import { ADMISSION_PROTOCOL, HANDOVER_PROTOCOL, HANDOVER_REQUEST_BYTES_MAX } from '../../node/admission/admission.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { createAccordNode } from '../../node/index.ts'
import { rotateDataDirNodeKey } from '../../node/key-rotation.ts'
import { refusalCount } from '../lib/metrics.ts'
import { addressOf, silentLogger, TestCluster, waitFor } from '../lib/nodes.ts'
import { plainPeer } from '../lib/peers.ts'
import type { AccordNode } from '../../node/index.ts'
import type { Libp2p } from '@libp2p/interface'

const idOf = (node: AccordNode): string => node.libp2p.peerId.toString()

/** One request on `protocol` from `peer` to `node`: the decoded answer, or null when the stream failed. */
async function ask (peer: Libp2p, node: AccordNode, protocol: string, frame: Uint8Array): Promise<Record<string, unknown> | null> {
  try {
    const stream = await peer.dialProtocol(multiaddr(addressOf(node)), protocol)
    const lp = lpStream(stream)
    await lp.write(frame)
    return decode((await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray()) as Record<string, unknown>
  } catch {
    return null
  }
}

describe('node key rotation (real libp2p over TCP on loopback)', function () {
  this.timeout(120_000)
  let cluster: TestCluster
  const peers: Libp2p[] = []

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => {
    await Promise.all(peers.splice(0).map(async p => { await p.stop() }))
    await cluster.stop()
  })

  it('a member rotates and restarts: the others admit its new peer id as that member and refuse the old one', async () => {
    const a = await cluster.add({ raft: false })
    const b = await cluster.add({ raft: false, bootstrap: [addressOf(a)] })
    const c = await cluster.add({ raft: false, bootstrap: [addressOf(a)] })
    await waitFor(() => a.admission.isAdmitted(idOf(b)) && a.admission.isAdmitted(idOf(c)) && b.admission.isAdmitted(idOf(c)), 'the three to admit each other')

    // what a thief of C's old data dir would hold: its old key and certificate
    const dataDir = c.config.dataDir
    const oldKey = (await loadOrCreateIdentity(dataDir, { create: false })).privateKey
    const oldCert = c.admission.credentials!.certificate
    const oldId = idOf(c)
    await c.stop()
    const rotated = await rotateDataDirNodeKey(dataDir)
    expect(rotated).to.include({ oldPeerId: oldId, sequence: 1 })

    const c2 = await createAccordNode({ dataDir }, { logger: silentLogger })
    cluster.nodes.push(c2)
    const newId = idOf(c2)
    expect(newId).to.equal(rotated.newPeerId)
    await waitFor(() => [a, b].every(m => m.admission.isAdmitted(newId) && m.admission.isRevoked(oldId) && m.admission.successorOf(oldId) === newId),
      'A and B to accept the hand-over')
    await waitFor(() => c2.admission.isAdmitted(idOf(a)) && c2.admission.isAdmitted(idOf(b)), 'the rotated node to admit A and B')
    expect(a.admission.isAdmitted(oldId)).to.equal(false)
    expect(a.admission.handovers()).to.deep.equal([{ oldPeer: oldId, newPeer: newId, sequence: 1 }])
    expect(c2.admission.ownHandover).to.deep.equal({ predecessor: oldId, sequence: 1 })

    // the old key with its valid certificate is refused as revoked
    const thief = await plainPeer(false, oldKey)
    peers.push(thief)
    const answer = await ask(thief, a, ADMISSION_PROTOCOL, encode({ v: 1, cert: oldCert }))
    // A answers, then closes the connection: the answer can be lost with it, the count cannot
    if (answer !== null) { expect(answer).to.deep.equal({ ok: false, reason: 'revoked' }) }
    expect(await refusalCount(a, ADMISSION_PROTOCOL, 'revoked')).to.be.at.least(1)
    expect(a.admission.isAdmitted(oldId)).to.equal(false)

    // the thief signs a second hand-over from the old key to a key of its own: refused as a conflict, counted
    const thiefNewKey = await generateKeyPair('Ed25519')
    const forged = await createHandover(oldKey, thiefNewKey, { clusterId: a.config.cluster, sequence: 1, timestampMs: Date.now() })
    const impostor = await plainPeer(false, thiefNewKey)
    peers.push(impostor)
    const refused = await ask(impostor, b, HANDOVER_PROTOCOL, encode({ v: 1, handover: forged, cert: oldCert }))
    expect(refused?.ok).to.equal(false)
    expect(String(refused?.reason)).to.match(/^conflict/)
    expect(await refusalCount(b, HANDOVER_PROTOCOL, 'conflict')).to.equal(1)
    expect(b.admission.isAdmitted(impostor.peerId.toString())).to.equal(false)
    expect(b.admission.successorOf(oldId)).to.equal(newId)

    // an oversize request is refused before it is read
    const big = await ask(impostor, b, HANDOVER_PROTOCOL, new Uint8Array(HANDOVER_REQUEST_BYTES_MAX + 1))
    expect(big).to.equal(null)
    await waitFor(async () => await refusalCount(b, HANDOVER_PROTOCOL, 'oversize') >= 1, 'the oversize request to be counted')

    // A remembers the hand-over across a restart: the old id stays refused
    const a2 = await cluster.restart(a)
    expect(a2.admission.isRevoked(oldId)).to.equal(true)
    expect(a2.admission.successorOf(oldId)).to.equal(newId)
    await waitFor(() => a2.admission.isAdmitted(newId), 'the restarted A to admit the new peer id')
  })

  it('a member that accepted a hand-over passes it on: a member the rotated node never reached retires the old key too', async () => {
    const a = await cluster.add({ raft: false })
    const b = await cluster.add({ raft: false, bootstrap: [addressOf(a)] })
    const c = await cluster.add({ raft: false, bootstrap: [addressOf(a)] })
    await waitFor(() => a.admission.isAdmitted(idOf(b)) && a.admission.isAdmitted(idOf(c)), 'A to admit B and C')
    const dataDir = c.config.dataDir
    const oldCert = c.admission.credentials!.certificate
    const oldId = idOf(c)
    await c.stop()
    const rotated = await rotateDataDirNodeKey(dataDir)
    const statement = (await loadOrCreateIdentity(dataDir, { create: false })).keystore.handover!

    // the rotated node does not start: A gets the statement (as from it) and B hears of it from A alone
    const verdict = await a.admission.acceptHandover(rotated.newPeerId, statement, oldCert)
    expect(verdict).to.deep.include({ ok: true, fresh: true })
    await waitFor(() => b.admission.isRevoked(oldId) && b.admission.successorOf(oldId) === rotated.newPeerId, 'B to accept the hand-over A passed on')
    // passed on, it admits no one: the new peer id shows itself when it connects
    expect(b.admission.isAdmitted(rotated.newPeerId)).to.equal(false)
    expect(b.admission.handoversAccepted).to.equal(1)
  })
})
