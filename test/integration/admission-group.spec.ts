/**
 * Admission with the cluster's DKG group key, over real libp2p on loopback:
 * three members make a 2-of-3 key, switch to group-signed certificates,
 * and then a newcomer is admitted only once two members' operators
 * approved it; certificates signed by the cluster key, by one member's
 * share alone, for another peer or another cluster are refused and
 * counted. Joins with a proof of work are at the end.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { decode, encode } from 'cborg'
import { issueCertificate } from '../../identity/cluster-credentials.ts'
import { decodeGroupCertificate, encodeGroupCertificate, groupCertificateMessage } from '../../identity/group-certificate.ts'
import { verifyProofOfWork } from '../../identity/proof-of-work.ts'
import { decodeCommitments } from '../../identity/threshold/feldman.ts'
import { combine, partialSign, ThresholdPublicKey } from '../../identity/threshold/index.ts'
import { ADMISSION_PROTOCOL } from '../../node/admission/admission.ts'
import { JOIN_PROTOCOL, joinCluster } from '../../node/admission/join.ts'
import { DKG_PROTOCOL } from '../../node/dkg/constants.ts'
import { UserError } from '../../node/errors.ts'
import { refusalCount } from '../lib/metrics.ts'
import { addressOf, TestCluster, waitFor } from '../lib/nodes.ts'
import { plainPeer, showCertificate } from '../lib/peers.ts'
import type { G1Point } from '../../identity/bls.ts'
import type { AccordNode } from '../../node/index.ts'
import type { Libp2p } from '@libp2p/interface'

const idOf = (node: AccordNode): string => node.libp2p.peerId.toString()
const DEADLINE_MS = 30_000

describe('admission with the DKG group key (real libp2p over TCP on loopback)', function () {
  this.timeout(180_000)
  const cluster = new TestCluster()
  const strangers: Libp2p[] = []
  let members: AccordNode[]
  let groupKey: Uint8Array
  let newcomer: AccordNode

  before(async () => {
    // grace long enough that a stranger's connection stays while it presents
    const options = { admissionLimits: { graceMs: 60_000 }, dkgSettings: { keyWaitMs: 3_000, signTimeoutMs: 2_000 } }
    const first = await cluster.add({ raft: false, api: '127.0.0.1:0' }, options)
    members = [first]
    for (let i = 1; i < 3; i++) { members.push(await cluster.add({ raft: false, api: '127.0.0.1:0', bootstrap: [addressOf(first)] }, options)) }
    await waitFor(() => members.every(n => n.admission.admittedPeers().length >= 2), 'the three members to admit each other', DEADLINE_MS)
    const session = await members[0].dkg.run({ members: members.map(idOf), threshold: 2 })
    expect(session.state, session.reason).to.equal('done')
    await waitFor(() => members.every(n => n.dkg.summary()?.groupKey === session.groupKey), 'every member to store the key', DEADLINE_MS)
    groupKey = Uint8Array.from(Buffer.from(session.groupKey as string, 'hex'))
  })

  after(async () => {
    await Promise.all(strangers.splice(0).map(async s => { await s.stop() }))
    await cluster.stop()
  })

  it('no member can mint a certificate through a generic signing round, nor without approvals', async () => {
    const [a, b] = members
    const message = groupCertificateMessage({ cluster: 'accord', groupKey, peer: idOf(a), issuedAtMs: Date.now(), expiresAtMs: Date.now() + 3600_000 })
    await expect(a.dkg.thresholdSign(message)).to.eventually.be.rejectedWith(/signed by admission only/)
    const reserved = await fetch(`${a.apiUrl ?? ''}/v1/keys/sign`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messageHex: Buffer.from(message).toString('hex') }) })
    expect(reserved.status).to.equal(400)
    // a certificate for a peer nobody approved: every other member refuses its partial
    const stranger = await plainPeer()
    strangers.push(stranger)
    await expect(a.admission.groupCertificateFor(stranger.peerId.toString())).to.eventually.be.rejectedWith(/0 valid partial signatures, 2 needed/)
    await waitFor(async () => await refusalCount(b, DKG_PROTOCOL, 'not-approved') >= 1, 'b to refuse its partial', DEADLINE_MS)
  })

  it('each member switches: the group signs its certificate, and the members still admit each other', async () => {
    // one after the other: a node that has not switched yet accepts the group's certificates, and a
    // switched one still takes the cluster key's from a member of the DKG group (so that it can switch too)
    for (const node of members) {
      const switched = await node.admission.useGroupKey()
      expect(Buffer.from(switched.groupKey).toString('hex')).to.equal(Buffer.from(groupKey).toString('hex'))
      expect(switched.threshold).to.equal(2)
      expect(node.admission.groupKey).to.deep.equal(groupKey)
    }
    const admitsTheOthers = (n: AccordNode): boolean => members.every(m => m === n || n.admission.isAdmitted(idOf(m)))
    await waitFor(() => members.every(admitsTheOthers), 'the members to admit each other with group certificates', DEADLINE_MS)
    const status = await (await fetch(`${members[0].apiUrl ?? ''}/v1/admission`)).json()
    expect(status.groupKey).to.equal(Buffer.from(groupKey).toString('hex'))
  })

  it('a newcomer with a join token is admitted only once two members\' operators approved it', async () => {
    const [a, b, c] = members
    const newcomerNode = await plainPeer(false)
    strangers.push(newcomerNode)
    const peer = newcomerNode.peerId.toString()
    const { token } = await a.admission.createJoinToken()
    // no approvals: the token is not enough
    await expect(joinCluster(newcomerNode, 'accord', async () => [addressOf(a)], token, 1000))
      .to.eventually.be.rejectedWith(UserError, /the group did not certify this peer/)
    // one member's approval (its own operator's): still one partial of two
    a.admission.approve(peer, 600_000)
    await expect(joinCluster(newcomerNode, 'accord', async () => [addressOf(a)], token, 1000))
      .to.eventually.be.rejectedWith(UserError, /1 valid partial signatures, 2 needed/)
    expect(await refusalCount(a, JOIN_PROTOCOL, 'not-certified')).to.be.at.least(2)
    // a second member approves it: the join through a succeeds
    b.admission.approve(peer, 600_000)
    const credentials = await joinCluster(newcomerNode, 'accord', async () => [addressOf(a)], token, 1000)
    expect(credentials.groupKey).to.deep.equal(groupKey)
    const cert = decodeGroupCertificate(credentials.certificate)
    expect(cert).to.not.be.a('string')
    expect((cert as { peer: string }).peer).to.equal(peer)
    // c never approved it, and admits it: the certificate verifies under the group key
    expect(await showCertificate(c, newcomerNode, credentials.certificate)).to.include({ ok: true })
    expect(c.admission.isAdmitted(peer)).to.equal(true)
  })

  it('an accord node joins the switched cluster with two approvals and is admitted by every member', async () => {
    const [a, b, c] = members
    // the node's peer id is made by createAccordNode: approve it from its data dir's identity before it joins
    const { loadOrCreateIdentity } = await import('../../node/identity.ts')
    const dataDir = await cluster.newDataDir()
    const identity = await loadOrCreateIdentity(dataDir)
    b.admission.approve(identity.peerId.toString(), 600_000)
    c.admission.approve(identity.peerId.toString(), 600_000)
    const { createAccordNode } = await import('../../node/index.ts')
    const { silentLogger } = await import('../lib/nodes.ts')
    newcomer = await createAccordNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], api: null, raft: false, bootstrap: [addressOf(a)] }, { logger: silentLogger, joinToken: (await a.admission.createJoinToken()).token })
    cluster.nodes.push(newcomer)
    expect(newcomer.admission.groupKey).to.deep.equal(groupKey)
    await waitFor(() => members.every(m => m.admission.isAdmitted(idOf(newcomer)) && newcomer.admission.isAdmitted(idOf(m))), 'every member and the newcomer to admit each other', DEADLINE_MS)
  })

  it('refuses, with a counted and logged reason: the cluster key\'s certificate, one member\'s share alone, another peer\'s certificate, another cluster\'s', async () => {
    const [a, b, c] = members
    const forger = await plainPeer()
    strangers.push(forger)
    const peer = forger.peerId.toString()
    const before = await refusalCount(c, ADMISSION_PROTOCOL, 'bad-certificate')

    // a member signs with the cluster key alone, as any member could before the switch
    const clusterSigned = await issueCertificate(a.admission.credentials!.clusterKey, { cluster: 'accord', peer, issuedAtMs: Date.now() })
    expect(await showCertificate(c, forger, clusterSigned)).to.deep.include({ ok: false, reason: 'a certificate signed by the cluster key: this node admits with the group key only' })

    // a member signs with its own share alone (threshold 2)
    const cert = { cluster: 'accord', groupKey, peer, issuedAtMs: Date.now(), expiresAtMs: Date.now() + 3600_000 }
    const message = groupCertificateMessage(cert)
    const alone = partialSign(a.dkg.share()!, message)
    expect(await showCertificate(c, forger, encodeGroupCertificate(cert, alone.signature))).to.deep.include({ ok: false, reason: 'bad group signature' })

    // the newcomer's valid certificate, replayed by another peer id
    expect(await showCertificate(c, forger, newcomer.admission.credentials!.certificate)).to.deep.include({ ok: false, reason: 'certificate of another peer' })

    // two shares do sign, but for another cluster: not this one's certificate
    const stored = JSON.parse(await readFile(join(a.config.dataDir, 'dkg-group.json'), 'utf8'))
    const key = new ThresholdPublicKey(decodeCommitments(stored.commitments.map((h: string) => Uint8Array.from(Buffer.from(h, 'hex'))), 2) as G1Point[], stored.members.length)
    const other = { ...cert, cluster: 'elsewhere' }
    const otherMessage = groupCertificateMessage(other)
    const combined = combine(key, otherMessage, [partialSign(a.dkg.share()!, otherMessage), partialSign(b.dkg.share()!, otherMessage)])
    expect(combined.ok).to.equal(true)
    expect(await showCertificate(c, forger, encodeGroupCertificate(other, (combined as { signature: Uint8Array }).signature))).to.deep.include({ ok: false, reason: 'certificate of another cluster' })

    expect(c.admission.isAdmitted(peer)).to.equal(false)
    expect(await refusalCount(c, ADMISSION_PROTOCOL, 'bad-certificate')).to.equal(before + 4)
  })

  it('a switched node restarts with its group certificate and the group key', async () => {
    const c = members[2]
    const restarted = await cluster.restart(c, {}, { dkgSettings: { keyWaitMs: 3_000 } })
    members[2] = restarted
    expect(restarted.admission.groupKey).to.deep.equal(groupKey)
    await waitFor(() => members.every(m => m === restarted || (restarted.admission.isAdmitted(idOf(m)) && m.admission.isAdmitted(idOf(restarted)))), 'the restarted node to be admitted again', DEADLINE_MS)
  })

  it('a group-certified node outside the DKG group cannot rotate its key: the group could not re-certify it', async () => {
    await newcomer.stop()
    const { rotateDataDirNodeKey } = await import('../../node/key-rotation.ts')
    await expect(rotateDataDirNodeKey(newcomer.config.dataDir)).to.eventually.be.rejectedWith(UserError, /holds no share of it/)
    // nothing was written: the node starts again with its key and certificate
    const again = await cluster.restart(newcomer)
    expect(idOf(again)).to.equal(idOf(newcomer))
    await waitFor(() => members.every(m => m.admission.isAdmitted(idOf(again))), 'the members to admit it again', DEADLINE_MS)
  })
})

describe('joins with a proof of work (real libp2p over TCP on loopback)', function () {
  this.timeout(120_000)
  const cluster = new TestCluster()
  after(async () => { await cluster.stop() })

  it('a join without the proof is refused before the token is read; the joiner solves it and joins', async () => {
    const founder = await cluster.add({ raft: false, joinPowBits: 12 })
    const { token } = await founder.admission.createJoinToken()
    // a raw request without a proof, and one with a proof for another peer id
    const stranger = await plainPeer(false)
    try {
      const ask = async (request: Record<string, unknown>): Promise<Record<string, unknown>> => {
        const stream = await stranger.dialProtocol(multiaddr(addressOf(founder)), JOIN_PROTOCOL)
        const lp = lpStream(stream)
        await lp.write(encode(request))
        const answer = decode((await lp.read()).subarray())
        await stream.close()
        return answer
      }
      // the token is garbage: refused for the missing proof, not for the token (the proof comes first)
      expect(await ask({ v: 1, token: 'not a token' })).to.deep.include({ ok: false, reason: 'proof of work needed', powBits: 12 })
      const { solveJoinProofOfWork } = await import('../../node/admission/join.ts')
      const theirs = await solveJoinProofOfWork('accord', founder.libp2p.peerId.toString(), 12)
      expect(await ask({ v: 1, token, pow: theirs })).to.deep.include({ ok: false, reason: 'proof of work needed' })
      const weak = await solveJoinProofOfWork('accord', stranger.peerId.toString(), 4)
      expect(verifyProofOfWork({ cluster: 'accord', peer: stranger.peerId.toString() }, 12, weak.nonce)).to.equal(false)
      expect(await ask({ v: 1, token, pow: weak })).to.deep.include({ ok: false, reason: 'proof of work needed' })
      expect(await refusalCount(founder, JOIN_PROTOCOL, 'no-pow')).to.equal(3)
      expect(await refusalCount(founder, JOIN_PROTOCOL, 'bad-token')).to.equal(0)
      const ours = await solveJoinProofOfWork('accord', stranger.peerId.toString(), 12)
      expect(await ask({ v: 1, token, pow: ours })).to.include({ ok: true })
    } finally {
      await stranger.stop()
    }
    // an accord node is told the difficulty, solves it and joins
    const joined = await cluster.add({ raft: false, bootstrap: [addressOf(founder)] })
    await waitFor(() => founder.admission.isAdmitted(idOf(joined)), 'the new node to be admitted', DEADLINE_MS)
    expect(await refusalCount(founder, JOIN_PROTOCOL, 'no-pow')).to.equal(4)
  })
})
