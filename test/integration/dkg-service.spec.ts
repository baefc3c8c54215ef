/**
 * The DKG service in accord nodes (createAccordNode, TCP + Noise on
 * loopback, in one process): seven nodes, one stopped before the DKG; the
 * six live ones make a 5-of-7 key over /accord/dkg/1.1.0 (the same group
 * key everywhere, each share in its node's keystore file), then five of
 * them sign: over HTTP (a signing round over the network) and by hand from
 * five nodes' shares. A stranger is refused; a malformed frame and a
 * forged signature from a member are refused and counted.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { lpStream } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { encode } from 'cborg'
import { decodeKeystore } from '../../identity/keystore.ts'
import { decodeCommitments } from '../../identity/threshold/feldman.ts'
import { combine, partialSign, ThresholdPublicKey, verifyGroupSignature } from '../../identity/threshold/tbls.ts'
import { DKG_PROTOCOL } from '../../node/dkg/constants.ts'
import { DKG_GROUP_ID } from '../../node/dkg/store.ts'
import { addressOf, TestCluster } from '../lib/nodes.ts'
import { plainPeer } from '../lib/peers.ts'
import { waitFor } from '../lib/wait.ts'
import type { G1Point } from '../../identity/bls.ts'
import type { AccordNode } from '../../node/index.ts'

const DEADLINE_MS = 30_000

describe('dkg service (createAccordNode): a 5-of-7 key made by 6 live nodes over libp2p, then a threshold signature', function () {
  this.timeout(180_000)
  const cluster = new TestCluster()
  let all: AccordNode[]
  let live: AccordNode[]
  let members: string[]

  const call = async (node: AccordNode, method: string, path: string, body?: unknown): Promise<{ status: number, json: any }> => {
    const response = await fetch(`${node.apiUrl ?? ''}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: body === undefined ? {} : { 'content-type': 'application/json' } })
    return { status: response.status, json: await response.json() }
  }

  before(async () => {
    const config = { api: '127.0.0.1:0', raft: false }
    const options = { dkgSettings: { keyWaitMs: 3_000 } }
    const first = await cluster.add(config, options)
    all = [first]
    for (let i = 1; i < 7; i++) { all.push(await cluster.add({ ...config, bootstrap: [addressOf(first)] }, options)) }
    await waitFor(() => all.every(n => n.admission.admittedPeers().length >= 6), 'every node to admit the others', DEADLINE_MS)
    members = all.map(n => n.libp2p.peerId.toString())
    await all[6].stop()
    live = all.slice(0, 6)
  })

  after(async () => { await cluster.stop() })

  it('the six live nodes make one 5-of-7 key; each stores its share in its keystore; status and GET /v1/keys show it', async () => {
    const { status, json } = await call(live[0], 'POST', '/v1/keys/dkg', { members, threshold: 5 })
    expect(status, JSON.stringify(json)).to.equal(200)
    expect(json.state).to.equal('done')
    expect(json.participants).to.have.length(6)
    expect(json.participants).to.not.include(members[6])
    const groupKey: string = json.groupKey
    await waitFor(() => live.every(n => n.dkg.summary()?.groupKey === groupKey), 'every live node to store the key', DEADLINE_MS)
    const sorted = [...members].sort()
    for (const node of live) {
      const keystore = decodeKeystore(await readFile(join(node.config.dataDir, 'identity.key')))
      const record = keystore.bls.find(r => r.groupId === DKG_GROUP_ID)
      expect(Buffer.from(record?.groupPublicKey ?? []).toString('hex')).to.equal(groupKey)
      expect(record?.threshold).to.equal(5)
      expect(record?.total).to.equal(7)
      expect(record?.index).to.equal(sorted.indexOf(node.libp2p.peerId.toString()) + 1)
      const keys = await call(node, 'GET', '/v1/keys')
      expect(keys.json.key).to.include({ groupKey, threshold: 5, n: 7, index: record?.index })
      expect((await node.status()).keys).to.include({ groupKey, threshold: 5, n: 7, index: record?.index })
    }
  })

  it('a signing round over the network combines 5 partials into a signature that verifies under the group key', async () => {
    const { status, json } = await call(live[2], 'POST', '/v1/keys/sign', { message: 'hello group' })
    expect(status, JSON.stringify(json)).to.equal(200)
    expect(json.signers).to.have.length(5)
    expect(json.bad).to.deep.equal([])
    const groupKey = Uint8Array.from(Buffer.from(json.groupKey, 'hex'))
    expect(verifyGroupSignature(groupKey, new TextEncoder().encode('hello group'), Uint8Array.from(Buffer.from(json.signature, 'hex')))).to.equal(true)
    expect(verifyGroupSignature(groupKey, new TextEncoder().encode('another message'), Uint8Array.from(Buffer.from(json.signature, 'hex')))).to.equal(false)
  })

  it('five nodes\' shares, read through the service, sign by hand and combine (tbls.combine)', async () => {
    const message = new TextEncoder().encode('by hand')
    const partials = live.slice(1, 6).map(n => partialSign(n.dkg.share() as { index: number, value: bigint }, message))
    const summary = live[0].dkg.summary()
    const stored = JSON.parse(await readFile(join(live[0].config.dataDir, 'dkg-group.json'), 'utf8'))
    const key = new ThresholdPublicKey(decodeCommitments(stored.commitments.map((c: string) => Uint8Array.from(Buffer.from(c, 'hex'))), 5) as G1Point[], 7)
    const result = combine(key, message, partials)
    expect(result.ok).to.equal(true)
    expect(Buffer.from(key.groupKey).toString('hex')).to.equal(summary?.groupKey)
    expect(verifyGroupSignature(key, message, (result as { signature: Uint8Array }).signature)).to.equal(true)
  })

  it('refuses a stranger (not admitted), and counts a malformed frame and a forged signature from a member', async () => {
    const target = live[0]
    const stranger = await plainPeer()
    try {
      const stream = await stranger.dialProtocol(target.libp2p.getMultiaddrs()[0], DKG_PROTOCOL)
      await lpStream(stream).write(encode({ type: 'start', from: stranger.peerId.toString(), to: target.libp2p.peerId.toString() })).catch(() => {})
      await waitFor(async () => await target.admission.refusals.count(DKG_PROTOCOL, 'not-admitted') >= 1, 'the stranger to be refused', DEADLINE_MS)
    } finally {
      await stranger.stop()
    }
    const sender = live[1]
    const from = sender.libp2p.peerId.toString()
    const to = target.libp2p.peerId.toString()
    const send = async (frame: Uint8Array): Promise<void> => {
      const stream = await sender.libp2p.dialProtocol(target.libp2p.peerId, DKG_PROTOCOL)
      await lpStream(stream).write(frame)
      await stream.close()
    }
    await send(new Uint8Array([0xff, 0x00, 0x13]))
    await waitFor(async () => await target.admission.refusals.count(DKG_PROTOCOL, 'malformed') >= 1, 'the malformed frame to be refused', DEADLINE_MS)
    const forged = { kind: 'start', signer: from, body: encode({ session: new Uint8Array(16), members: [from, to], threshold: 2 }), sig: new Uint8Array(64) }
    await send(encode({ type: 'start', from, to, env: forged }))
    await waitFor(async () => await target.admission.refusals.count(DKG_PROTOCOL, 'bad-signature') >= 1, 'the forged signature to be refused', DEADLINE_MS)
    expect(target.dkg.sessions().map(s => s.session)).to.not.include('00'.repeat(16))
  })

  it('a new key is stored only once T members confirmed it: a member that gets no confirmations keeps its old key, and says why', async () => {
    const oldKey = live[5].dkg.summary()?.groupKey
    // live[5] hears nothing of the others' confirmations (as if its view of the new key differed from theirs)
    const deaf = live[5].dkg
    const deliver = deaf.deliver.bind(deaf)
    deaf.deliver = (input, peer) => (input as { type?: unknown }).type === 'confirm' ? { ok: true } : deliver(input, peer)
    try {
      const { status, json } = await call(live[0], 'POST', '/v1/keys/dkg', { members, threshold: 5 })
      expect(status, JSON.stringify(json)).to.equal(200)
      expect(json.state).to.equal('done')
      expect(json.groupKey).to.not.equal(oldKey)
      expect(Object.keys(json.phaseMs)).to.include('confirm')
      await waitFor(() => live.slice(0, 5).every(n => n.dkg.summary()?.groupKey === json.groupKey), 'the five that heard the confirmations to store the new key', DEADLINE_MS)
      await waitFor(() => deaf.sessions().some(v => v.session === json.session && v.state === 'aborted'), 'the deaf member to give up', DEADLINE_MS)
      const ended = deaf.sessions().find(v => v.session === json.session)
      expect(ended?.reason).to.match(/^1 of the 5 confirmations of the new key came in time: the old key is kept$/)
      expect(deaf.summary()?.groupKey).to.equal(oldKey)
    } finally {
      deaf.deliver = deliver
    }
  })
})
