/**
 * The PBFT service in real libp2p nodes (TCP, Noise, yamux on loopback, in
 * one process): four admitted replicas order KV commands from a client
 * with f+1 matching replies, a node outside the replica set runs a client
 * only, a stranger's frames are refused by admission, and a deliberately
 * faulty replica is detected and isolated by every honest one.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import { Registry } from 'prom-client'
import { clusterAdmission } from '../../node/admission/admission.ts'
import { accordGossipsubOptions } from '../../node/membership/topic.ts'
import { peerKeyPbftCrypto } from '../../node/pbft/crypto.ts'
import { evidenceTopic } from '../../node/pbft/evidence-topic.ts'
import { pbft } from '../../node/pbft/service.ts'
import { PBFT_PROTOCOL } from '../../node/pbft/transport.ts'
import { encodeEvidence, encodeMessage, signingPayload } from '../../protocols/pbft/index.ts'
import { identityFor } from '../lib/identities.ts'
import { addressOf, TestCluster } from '../lib/nodes.ts'
import { componentsOf, plainPeer } from '../lib/peers.ts'
import { waitFor } from '../lib/wait.ts'
import type { AccordNode } from '../../node/accord-node.ts'
import type { Admission } from '../../node/admission/admission.ts'
import type { PbftInit, PbftService } from '../../node/pbft/service.ts'
import type { Evidence, Prepare } from '../../protocols/pbft/types.ts'
import type { GossipSub } from '@libp2p/gossipsub'
import type { Identify } from '@libp2p/identify'
import type { Libp2p, PrivateKey } from '@libp2p/interface'

const DEADLINE_MS = 30_000
const CLUSTER = 'bft-test'
type BftNode = Libp2p<{ identify: Identify, pubsub: GossipSub, admission: Admission, pbft: PbftService }>

const text = (bytes: Uint8Array | null): string | null => bytes === null ? null : new TextDecoder().decode(bytes)

describe('pbft service (4 replicas over TCP + Noise, in one process)', function () {
  this.timeout(120_000)
  let root: string
  const nodes: Libp2p[] = []

  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'accord-pbft-service-')) })
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map(async node => { await node.stop() }))
    await rm(root, { recursive: true, force: true })
  })

  async function bftNode (name: string, privateKey: PrivateKey, replicas: string[], joining: boolean, init: Partial<PbftInit> = {}): Promise<BftNode> {
    const dataDir = join(root, name)
    const node = await createLibp2p({
      privateKey,
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionManager: { inboundConnectionThreshold: 1000 },
      services: {
        identify: identify(),
        pubsub: gossipsub({ ...accordGossipsubOptions(CLUSTER), allowPublishToZeroTopicPeers: true, emitSelf: false }),
        admission: clusterAdmission({ cluster: CLUSTER, dataDir, join: joining }),
        pbft: pbft({ dataDir, replicas, settings: { tickIntervalMs: 20 }, ...init })
      }
    })
    nodes.push(node)
    return node
  }

  /** `count` nodes admitted to one cluster and connected to each other; the replicas are the first `replicaCount`. */
  async function cluster (count: number, replicaCount: number, init: (index: number) => Partial<PbftInit> = () => ({})): Promise<BftNode[]> {
    const keys = await Promise.all(Array.from({ length: count }, async () => generateKeyPair('Ed25519')))
    const replicas = keys.slice(0, replicaCount).map(k => peerIdFromPrivateKey(k).toString())
    const first = await bftNode('n0', keys[0], replicas, false, init(0))
    const firstAddress = first.getMultiaddrs()[0].toString()
    const { token } = await first.services.admission.createJoinToken()
    const all = [first]
    for (let i = 1; i < count; i++) {
      const node = await bftNode(`n${i}`, keys[i], replicas, true, init(i))
      await node.services.admission.join(token, [firstAddress])
      all.push(node)
    }
    for (const a of all) {
      for (const b of all) {
        if (a !== b) { await a.dial(b.getMultiaddrs()[0]) }
      }
    }
    for (const a of all) {
      await waitFor(() => all.every(b => b === a || a.services.admission.isAdmitted(b.peerId.toString())), `${a.peerId.toString()} to admit every other node`, DEADLINE_MS)
    }
    return all
  }

  it('orders put, get, cas and delete through the replicas, exactly once, from a replica and from a client-only node', async () => {
    const all = await cluster(5, 4)
    const client = all[4].services.pbft
    expect(client.isReplica).to.equal(false)
    expect(client.summary()).to.include({ role: 'client', n: 4, f: 1 })

    const put = await client.put('colour', 'blue')
    expect(put).to.include({ ok: true, type: 'put' })
    expect(text(await client.get('colour'))).to.equal('blue')
    // every replica executed it
    await waitFor(() => all.slice(0, 4).every(n => text(n.services.pbft.localValue('colour')) === 'blue'), 'every replica to hold colour=blue', DEADLINE_MS)

    const mismatch = await client.cas('colour', new TextEncoder().encode('red'), new TextEncoder().encode('green'))
    expect(mismatch).to.include({ ok: false, reason: 'cas-mismatch' })
    const swapped = await client.cas('colour', new TextEncoder().encode('blue'), new TextEncoder().encode('green'))
    expect(swapped).to.include({ ok: true, type: 'cas' })

    // a replica is a client too, with its own key; its first operation a read
    const replica = all[1].services.pbft
    expect(text(await replica.get('colour'))).to.equal('green')
    expect(await replica.put('shape', 'round')).to.include({ ok: true })
    const deleted = await client.delete('colour')
    expect(deleted).to.include({ ok: true, type: 'delete', deleted: true })
    expect(await client.get('colour')).to.equal(null)
    expect(text(await client.get('shape'))).to.equal('round')

    const summary = all[0].services.pbft.summary()
    expect(summary).to.include({ role: 'replica', view: 0, n: 4, f: 1 })
    expect(summary.primary).to.equal(summary.replicas[0])
    expect(summary.isolated).to.deep.equal([])
  })

  it('refuses a stranger\'s PBFT stream (not admitted), and counts it', async () => {
    const all = await cluster(4, 4)
    const stranger = await plainPeer()
    nodes.push(stranger)
    const target = all[0]
    const stream = await stranger.dialProtocol(target.getMultiaddrs()[0], PBFT_PROTOCOL)
    const lp = lpStream(stream)
    const forged = { type: 'prepare' as const, view: 0, seq: 1, digest: '0'.repeat(64), replica: all[1].peerId.toString(), signature: new Uint8Array(64) }
    await lp.write(encodeMessage(forged)).catch(() => {})
    await waitFor(async () => (await target.services.admission.refusals.count(PBFT_PROTOCOL, 'not-admitted')) >= 1, 'the stranger to be refused', DEADLINE_MS)
    expect(target.services.pbft.transportStats().messagesReceived).to.equal(0)
  })

  it('evidence published on the topic makes every other replica isolate the offender; invalid evidence is rejected', async () => {
    const all = await cluster(4, 4)
    const [publisher, , , offender] = all
    const offenderId = offender.peerId.toString()
    const crypto = peerKeyPbftCrypto((componentsOf(offender) as unknown as { privateKey: PrivateKey }).privateKey)
    const prepare = (digest: string): Prepare => {
      const unsigned: Prepare = { type: 'prepare', view: 0, seq: 1, digest, replica: offenderId, signature: new Uint8Array(0) }
      return { ...unsigned, signature: crypto.sign(signingPayload(unsigned)) }
    }
    const topic = evidenceTopic(CLUSTER)
    await waitFor(() => all.slice(1, 3).every(n => publisher.services.pubsub.getSubscribers(topic).some(p => p.equals(n.peerId))), 'the publisher to see the others on the evidence topic', DEADLINE_MS)
    // a forged "second" message: rejected by the validators, nobody isolates
    const forged: Evidence = { kind: 'equivocation', offender: offenderId, first: prepare('a'.repeat(64)), second: { ...prepare('b'.repeat(64)), signature: new Uint8Array(64) } }
    await publisher.services.pubsub.publish(topic, encodeEvidence(forged))
    const evidence: Evidence = { kind: 'equivocation', offender: offenderId, first: prepare('a'.repeat(64)), second: prepare('b'.repeat(64)) }
    await publisher.services.pubsub.publish(topic, encodeEvidence(evidence))
    for (const node of all.slice(1, 3)) {
      await waitFor(() => node.services.pbft.summary().isolated.some(e => e.peerId === offenderId), `${node.peerId.toString()} to isolate the offender`, DEADLINE_MS)
      expect(node.services.pbft.summary().isolated).to.deep.equal([{ peerId: offenderId, reason: 'equivocation' }])
    }
    // the publisher acts on evidence it received, not on what it published
    expect(publisher.services.pbft.summary().isolated).to.deep.equal([])
  })

  it('isolates a deliberately faulty replica on every honest one, with evidence, and keeps serving', async () => {
    // the node made last equivocates: as primary or as a backup, depending on where its id sorts
    const registries = [0, 1, 2, 3].map(() => new Registry())
    const all = await cluster(4, 4, (i) => ({ registry: registries[i], ...(i === 3 ? { faulty: 'equivocate' as const } : {}) }))
    const faulty = all[3].peerId.toString()
    const honest = all.slice(0, 3)
    const client = honest[0].services.pbft
    for (let i = 0; i < 5; i++) { await client.put(`k${i}`, `v${i}`) }
    await waitFor(() => honest.every(n => n.services.pbft.summary().isolated.some(e => e.peerId === faulty)), 'every honest replica to isolate the faulty one', DEADLINE_MS)
    for (const node of honest) {
      expect(node.services.pbft.summary().isolated).to.deep.include({ peerId: faulty, reason: 'equivocation' })
    }
    // evidence was produced by at least one honest replica (the others may have received it on the topic)
    const evidence = await Promise.all(registries.slice(0, 3).map(async r => (await r.getSingleMetric('accord_pbft_evidence_total')?.get())?.values ?? []))
    expect(evidence.flat().filter(v => v.labels.direction === 'produced').reduce((n, v) => n + v.value, 0)).to.be.at.least(1)
    expect(await client.put('after', 'isolation')).to.include({ ok: true })
  })
})

describe('pbft in accord nodes (createAccordNode): HTTP, status, operator isolation and the gater', function () {
  this.timeout(120_000)
  let cluster: TestCluster

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => { await cluster.stop() })

  async function fourReplicas (): Promise<AccordNode[]> {
    const dirs = await Promise.all([0, 1, 2, 3].map(async () => identityFor(await cluster.newDataDir())))
    const config = { api: '127.0.0.1:0', raft: false, bftReplicas: dirs.map(d => d.peerId) }
    const first = await cluster.add({ ...config, dataDir: dirs[0].dataDir })
    const nodes = [first]
    for (const { dataDir } of dirs.slice(1)) { nodes.push(await cluster.add({ ...config, dataDir, bootstrap: [addressOf(first)] })) }
    return nodes
  }

  const call = async (node: AccordNode, method: string, path: string, body?: string): Promise<{ status: number, json: any }> => {
    // a KV value is raw bytes; every other body is JSON
    const contentTypes: Record<string, string> = { POST: 'application/json', PUT: path.startsWith('/v1/bft/kv/') ? 'application/octet-stream' : 'application/json' }
    const headers: Record<string, string> = method in contentTypes ? { 'content-type': contentTypes[method] } : {}
    const response = await fetch(`${node.apiUrl ?? ''}${path}`, { method, body, headers })
    return { status: response.status, json: await response.json() }
  }

  it('serves the BFT KV over HTTP (200, 404, 409) and reports bft in the status', async () => {
    const nodes = await fourReplicas()
    const via = nodes[2]
    await waitFor(async () => (await call(via, 'PUT', '/v1/bft/kv/colour', 'blue')).status === 200, 'a first write through HTTP', DEADLINE_MS)
    expect(await call(via, 'GET', '/v1/bft/kv/colour')).to.deep.include({ status: 200, json: { value: 'blue', encoding: 'utf8' } })
    const mismatch = await call(via, 'POST', '/v1/bft/kv/colour/cas', JSON.stringify({ expected: 'red', value: 'green' }))
    expect(mismatch.status).to.equal(409)
    expect(mismatch.json).to.include({ error: 'cas-mismatch' })
    expect((await call(via, 'POST', '/v1/bft/kv/colour/cas', JSON.stringify({ expected: 'blue', value: 'green' }))).status).to.equal(200)
    expect((await call(via, 'DELETE', '/v1/bft/kv/colour')).json).to.include({ deleted: true })
    expect((await call(via, 'GET', '/v1/bft/kv/colour')).status).to.equal(404)
    expect((await call(via, 'POST', '/v1/bft/kv/colour/cas', JSON.stringify({ value: 1 }))).status).to.equal(400)
    expect((await call(via, 'PUT', '/v1/bft/kv/%00accord', 'x')).status).to.equal(403)
    // the no-op: ordered through the replicas, changes nothing; a JSON object body, as every POST
    expect(await call(via, 'POST', '/v1/bft/noop', '{}')).to.deep.include({ status: 200, json: { ok: true } })
    expect((await call(via, 'POST', '/v1/bft/noop', '{"x":1}')).status).to.equal(400)

    const status = await call(via, 'GET', '/v1/status')
    // (a loaded machine may have changed views while the nodes connected: the primary is the view's)
    expect(status.json.bft).to.include({ role: 'replica', epoch: 0, n: 4, f: 1, stableCheckpoint: 0 })
    expect(status.json.bft.primary).to.equal(status.json.bft.replicas[status.json.bft.view % 4])
    expect(status.json.bft.isolated).to.deep.equal([])
  })

  it('reconfigures over HTTP: a quorum\'s approvals add a learner, which orders from the switch on and stays a replica across a restart; a replica is then removed', async () => {
    const dirs = await Promise.all([0, 1, 2, 3, 4].map(async () => identityFor(await cluster.newDataDir())))
    const genesis = dirs.slice(0, 4).map(d => d.peerId)
    const config = { api: '127.0.0.1:0', raft: false, bftReplicas: genesis }
    const first = await cluster.add({ ...config, dataDir: dirs[0].dataDir })
    const nodes = [first]
    for (const [i, { dataDir }] of dirs.slice(1).entries()) { nodes.push(await cluster.add({ ...config, dataDir, bootstrap: [addressOf(first)], bftLearner: i === 3 })) }
    const [a, b, c, d, e] = nodes
    const json = (body: unknown): string => JSON.stringify(body)
    await waitFor(async () => (await call(a, 'PUT', '/v1/bft/kv/before', 'genesis')).status === 200, 'a first write', DEADLINE_MS)
    expect(e.bft?.summary()).to.include({ role: 'learner', epoch: 0, n: 4 })

    const next = [...genesis, dirs[4].peerId]
    expect((await call(e, 'POST', '/v1/bft/approvals', json({ replicas: next }))).status, 'a learner approves nothing').to.equal(400)
    expect((await call(b, 'POST', '/v1/bft/approvals', json({ replicas: ['not-a-peer'] }))).status).to.equal(400)
    const approvals = [(await call(b, 'POST', '/v1/bft/approvals', json({ replicas: next }))).json, (await call(c, 'POST', '/v1/bft/approvals', json({ replicas: next }))).json]
    for (const approval of approvals) { expect(approval).to.include({ epoch: 1 }) }
    // the learner adds no approval of its own: one is too few, and the replicas say so
    const tooFew = await call(e, 'PUT', '/v1/bft/replicas', json({ replicas: next, approvals: approvals.slice(0, 1) }))
    expect(tooFew.status).to.equal(409)
    expect(tooFew.json.error).to.include('1 approvals, 3 needed')
    const forged = { ...approvals[0], signature: Buffer.alloc(64).toString('base64') }
    expect((await call(e, 'PUT', '/v1/bft/replicas', json({ replicas: next, approvals: [forged, approvals[1]] }))).status).to.equal(400)

    // a replica adds its own approval: 3 of 4
    const configured = await call(a, 'PUT', '/v1/bft/replicas', json({ replicas: next, approvals }))
    expect(configured.status, JSON.stringify(configured.json)).to.equal(200)
    expect(configured.json).to.include({ epoch: 1 })
    await waitFor(() => nodes.every(n => n.bft?.summary().epoch === 1 && n.bft.summary().n === 5), 'every node to have the 5-replica set in force', DEADLINE_MS)
    expect(e.bft?.summary()).to.include({ role: 'replica', f: 1 })
    expect((await call(e, 'GET', '/v1/bft/kv/before')).json).to.include({ value: 'genesis' })
    expect((await call(e, 'PUT', '/v1/bft/kv/after', 'epoch 1')).status).to.equal(200)
    await waitFor(() => nodes.every(n => text(n.bft?.localValue('after') ?? null) === 'epoch 1'), 'every replica, the new one too, to execute a write of epoch 1', DEADLINE_MS)

    // restarted with the saved genesis set and no --bft-learner: its PBFT state says it is a replica of epoch 1
    const restarted = await cluster.restart(e)
    await waitFor(() => restarted.bft?.summary().role === 'replica' && restarted.bft.summary().epoch === 1, 'the restarted replica to be one of epoch 1', DEADLINE_MS)

    const dId = dirs[3].peerId
    const without = next.filter(id => id !== dId)
    const second = await Promise.all([a, b, c].map(async n => (await call(n, 'POST', '/v1/bft/approvals', json({ replicas: without }))).json))
    const removed = await call(restarted, 'PUT', '/v1/bft/replicas', json({ replicas: without, approvals: second }))
    expect(removed.status, JSON.stringify(removed.json)).to.equal(200)
    expect(removed.json).to.include({ epoch: 2 })
    await waitFor(() => d.bft?.summary().role === 'learner' && [a, b, c, restarted].every(n => n.bft?.summary().epoch === 2 && n.bft.summary().n === 4), 'd to leave the set and the others to have epoch 2 in force', DEADLINE_MS)
    expect((await call(b, 'PUT', '/v1/bft/kv/last', 'epoch 2')).status).to.equal(200)
    expect((await call(restarted, 'GET', '/v1/bft/kv/last')).json).to.include({ value: 'epoch 2' })
  })

  it('an operator-isolated peer is disconnected and denied by the gater, also after a restart (persisted blocklist), until the operator readmits it', async () => {
    const nodes = await fourReplicas()
    const [a, , , d] = nodes
    const dId = d.libp2p.peerId.toString()
    await waitFor(() => a.libp2p.getConnections(d.libp2p.peerId).length > 0, 'a to be connected to d', DEADLINE_MS)
    expect((await call(a, 'POST', '/v1/bft/isolated', JSON.stringify({ peerId: 'not-a-peer' }))).status).to.equal(400)
    expect((await call(a, 'POST', '/v1/bft/isolated', JSON.stringify({ peerId: a.libp2p.peerId.toString() }))).status).to.equal(400)
    expect(await call(a, 'POST', '/v1/bft/isolated', JSON.stringify({ peerId: dId }))).to.deep.include({ status: 200, json: { isolated: dId } })
    await waitFor(() => a.bft?.summary().isolated.some(e => e.peerId === dId) === true, 'a to isolate d', DEADLINE_MS)
    expect(a.bft?.summary().isolated).to.deep.equal([{ peerId: dId, reason: 'operator' }])
    await waitFor(() => a.libp2p.getConnections(d.libp2p.peerId).length === 0 && d.libp2p.getConnections(a.libp2p.peerId).length === 0, 'the connections between a and d to close', DEADLINE_MS)
    await expectDenied(a, d)

    const restarted = await cluster.restart(a)
    expect(restarted.bft?.summary().isolated).to.deep.equal([{ peerId: dId, reason: 'operator' }])
    await expectDenied(restarted, d)

    expect(await call(restarted, 'DELETE', `/v1/bft/isolated/${dId}`)).to.deep.include({ status: 200, json: { peerId: dId, readmitted: true } })
    expect(await call(restarted, 'DELETE', `/v1/bft/isolated/${dId}`)).to.deep.include({ status: 200, json: { peerId: dId, readmitted: false } })
    expect(restarted.bft?.summary().isolated).to.deep.equal([])
    await restarted.libp2p.dial(d.libp2p.getMultiaddrs()[0])
    expect(restarted.libp2p.getConnections(d.libp2p.peerId)).to.not.have.length(0)
    const again = await cluster.restart(restarted)
    expect(again.bft?.summary().isolated).to.deep.equal([])
  })

  /** `node`'s gater refuses `peer` both ways: no dial to it, and a connection from it is closed once Noise names it. */
  async function expectDenied (node: AccordNode, peer: AccordNode): Promise<void> {
    await expect(node.libp2p.dial(peer.libp2p.getMultiaddrs()[0])).to.eventually.be.rejected()
    // Noise names the initiator last, so its dial may complete before the responder's gater closes it
    await peer.libp2p.dial(node.libp2p.getMultiaddrs()[0]).catch(() => {})
    await waitFor(() => peer.libp2p.getConnections(node.libp2p.peerId).length === 0 && node.libp2p.getConnections(peer.libp2p.peerId).length === 0, 'the denied connection to close', DEADLINE_MS)
  }
})
