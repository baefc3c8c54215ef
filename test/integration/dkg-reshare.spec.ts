/**
 * Resharing over libp2p (createAccordNode, TCP + Noise on loopback, in one
 * process): four nodes make a 3-of-4 key; it is reshared to 4-of-6 (two
 * new nodes join) and then to 3-of-5 (one old member leaves and deletes
 * its share), the group key staying the same, and each new group signs
 * under it. A reshare with fewer than the old threshold of old members
 * online aborts, and the old group keeps its shares and signs. An old
 * member left out that hears no confirmation of the new group keeps its
 * share.
 */
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { decodeKeystore } from '../../identity/keystore.ts'
import { decodeCommitments } from '../../identity/threshold/feldman.ts'
import { combine, partialSign, ThresholdPublicKey, verifyGroupSignature } from '../../identity/threshold/tbls.ts'
import { DKG_GROUP_FILE, DKG_GROUP_ID } from '../../node/dkg/store.ts'
import { addressOf, TestCluster } from '../lib/nodes.ts'
import { waitFor } from '../lib/wait.ts'
import type { G1Point } from '../../identity/bls.ts'
import type { BlsShareRecord } from '../../identity/keystore.ts'
import type { AccordNode } from '../../node/index.ts'

const DEADLINE_MS = 30_000

describe('dkg service: resharing a key over libp2p keeps the group key', function () {
  this.timeout(240_000)
  const cluster = new TestCluster()
  const config = { api: '127.0.0.1:0', raft: false }
  const options = { dkgSettings: { keyWaitMs: 3_000 } }
  let all: AccordNode[]
  let ids: string[]
  let groupKey: string

  const call = async (node: AccordNode, method: string, path: string, body?: unknown): Promise<{ status: number, json: any }> => {
    const response = await fetch(`${node.apiUrl ?? ''}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: body === undefined ? {} : { 'content-type': 'application/json' } })
    return { status: response.status, json: await response.json() }
  }
  const record = async (node: AccordNode): Promise<BlsShareRecord | undefined> => {
    const keystore = decodeKeystore(await readFile(join(node.config.dataDir, 'identity.key')))
    return keystore.bls.find(r => r.groupId === DKG_GROUP_ID)
  }
  const signsUnderGroupKey = async (node: AccordNode, message: string, signers: number): Promise<void> => {
    const { status, json } = await call(node, 'POST', '/v1/keys/sign', { message })
    expect(status, JSON.stringify(json)).to.equal(200)
    expect(json.signers).to.have.length(signers)
    const key = Uint8Array.from(Buffer.from(groupKey, 'hex'))
    expect(verifyGroupSignature(key, new TextEncoder().encode(message), Uint8Array.from(Buffer.from(json.signature, 'hex')))).to.equal(true)
  }

  before(async () => {
    const first = await cluster.add(config, options)
    all = [first]
    for (let i = 1; i < 6; i++) { all.push(await cluster.add({ ...config, bootstrap: [addressOf(first)] }, options)) }
    await waitFor(() => all.every(n => n.admission.admittedPeers().length >= 5), 'every node to admit the others', DEADLINE_MS)
    ids = all.map(n => n.libp2p.peerId.toString())
    const { status, json } = await call(all[0], 'POST', '/v1/keys/dkg', { members: ids.slice(0, 4), threshold: 3 })
    expect(status, JSON.stringify(json)).to.equal(200)
    groupKey = json.groupKey
    await waitFor(() => all.slice(0, 4).every(n => n.dkg.summary()?.groupKey === groupKey), 'the four to store the 3-of-4 key', DEADLINE_MS)
  })

  after(async () => { await cluster.stop() })

  it('3-of-4 reshared to 4-of-6 (two new nodes): every node stores a new share of the same group key, and 4 new shares sign under it', async () => {
    const oldShares = await Promise.all(all.slice(0, 4).map(async n => Buffer.from((await record(n))?.share ?? []).toString('hex')))
    const { status, json } = await call(all[1], 'POST', '/v1/keys/reshare', { members: ids, threshold: 4 })
    expect(status, JSON.stringify(json)).to.equal(200)
    expect(json).to.include({ kind: 'reshare', state: 'done', groupKey, threshold: 4 })
    expect(json.old).to.deep.equal({ members: [...ids.slice(0, 4)].sort(), threshold: 3 })
    expect(json.participants).to.have.length(6)
    await waitFor(() => all.every(n => n.dkg.summary()?.groupKey === groupKey && n.dkg.summary()?.threshold === 4), 'all six to store the 4-of-6 share', DEADLINE_MS)
    const sorted = [...ids].sort()
    for (const [i, node] of all.entries()) {
      const stored = await record(node)
      expect(stored).to.include({ threshold: 4, total: 6, index: sorted.indexOf(ids[i]) + 1 })
      expect(Buffer.from(stored?.groupPublicKey ?? []).toString('hex')).to.equal(groupKey)
      if (i < 4) { expect(Buffer.from(stored?.share ?? []).toString('hex')).to.not.equal(oldShares[i]) }
    }
    // by hand: the two new nodes and two old ones, against the new commitments
    const message = new TextEncoder().encode('after the reshare')
    const partials = all.slice(2, 6).map(n => partialSign(n.dkg.share() as { index: number, value: bigint }, message))
    const group = JSON.parse(await readFile(join(all[5].config.dataDir, DKG_GROUP_FILE), 'utf8'))
    const key = new ThresholdPublicKey(decodeCommitments(group.commitments.map((c: string) => Uint8Array.from(Buffer.from(c, 'hex'))), 4) as G1Point[], 6)
    expect(Buffer.from(key.groupKey).toString('hex')).to.equal(groupKey)
    const combined = combine(key, message, partials)
    expect(combined.ok).to.equal(true)
    expect(verifyGroupSignature(Uint8Array.from(Buffer.from(groupKey, 'hex')), message, (combined as { signature: Uint8Array }).signature)).to.equal(true)
    // and over the network, asked by a new node
    await signsUnderGroupKey(all[5], 'signed by the 4-of-6 group', 4)
  })

  it('4-of-6 reshared to 3-of-5 without the initiator: it deletes its share and group file, the five sign under the same key', async () => {
    const { status, json } = await call(all[0], 'POST', '/v1/keys/reshare', { members: ids.slice(1), threshold: 3 })
    expect(status, JSON.stringify(json)).to.equal(200)
    expect(json).to.include({ kind: 'reshare', state: 'done', groupKey, retired: true })
    expect(all[0].dkg.summary()).to.equal(null)
    expect(await record(all[0])).to.equal(undefined)
    await expect(stat(join(all[0].config.dataDir, DKG_GROUP_FILE))).to.eventually.be.rejected()
    await waitFor(() => all.slice(1).every(n => n.dkg.summary()?.groupKey === groupKey && n.dkg.summary()?.n === 5), 'the five to store the 3-of-5 share', DEADLINE_MS)
    await signsUnderGroupKey(all[3], 'signed by the 3-of-5 group', 3)
    const refused = await call(all[0], 'POST', '/v1/keys/reshare', { members: ids, threshold: 3 })
    expect(refused.status).to.equal(409)
    expect(refused.json.error).to.match(/holds no DKG key to reshare/)
  })

  it('with 2 of the 5 old members online (old threshold 3) the reshare aborts, saying why; the old group keeps its shares and signs', async () => {
    const before = await Promise.all(all.slice(1, 3).map(async n => record(n)))
    for (const node of all.slice(3)) { await node.stop() }
    const { status, json } = await call(all[1], 'POST', '/v1/keys/reshare', { members: ids.slice(0, 3), threshold: 2 })
    expect(status, JSON.stringify(json)).to.equal(409)
    expect(json.state).to.equal('aborted')
    expect(json.reason).to.match(/^2 of 5 old members answered, old threshold 3/)
    for (const [i, node] of all.slice(1, 3).entries()) {
      expect(node.dkg.summary()).to.include({ groupKey, threshold: 3, n: 5 })
      expect(await record(node)).to.deep.equal(before[i])
    }
    expect(all[0].dkg.summary()).to.equal(null)
    // one old member back (its share reloaded from its keystore) makes three: the old group signs
    all[3] = await cluster.restart(all[3], {}, options)
    await waitFor(() => all[1].admission.admittedPeers().includes(ids[3]) && all[3].dkg.summary()?.groupKey === groupKey, 'the restarted member to be back with its share', DEADLINE_MS)
    await signsUnderGroupKey(all[1], 'still signed by the old group', 3)
  })

  it('an old member left out deletes its share only once the new group confirmed the key: without the confirmations it keeps it', async () => {
    // online: all[1], all[2], all[3] (the old 3-of-5 group's threshold); all[3] is left out and hears no confirmation
    const kept = await record(all[3])
    const deaf = all[3].dkg
    const deliver = deaf.deliver.bind(deaf)
    deaf.deliver = (input, peer) => (input as { type?: unknown }).type === 'confirm' ? { ok: true } : deliver(input, peer)
    try {
      const { status, json } = await call(all[1], 'POST', '/v1/keys/reshare', { members: ids.slice(1, 3), threshold: 2 })
      expect(status, JSON.stringify(json)).to.equal(200)
      expect(json).to.include({ kind: 'reshare', state: 'done', groupKey })
      await waitFor(() => deaf.sessions().some(v => v.session === json.session && v.state === 'aborted'), 'the left-out member to give up', DEADLINE_MS)
      expect(deaf.sessions().find(v => v.session === json.session)?.reason).to.match(/confirmations of the new key came in time: the old key is kept$/)
      expect(await record(all[3])).to.deep.equal(kept)
      expect(deaf.summary()).to.include({ groupKey, threshold: 3, n: 5 })
      await waitFor(() => all.slice(1, 3).every(n => n.dkg.summary()?.n === 2), 'the two new members to store the 2-of-2 group', DEADLINE_MS)
    } finally {
      deaf.deliver = deliver
    }
  })
})
