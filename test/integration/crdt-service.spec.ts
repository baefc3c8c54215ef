/**
 * The CRDT service in accord nodes (createAccordNode, TCP + Noise on
 * loopback, in one process): CRDTs created over HTTP on one node appear on
 * every node and converge under concurrent ops; a node restarted from its
 * data dir reloads its states and catches up over /accord/sync/1.0.0; a
 * writer allowlist keeps others' deltas out (and counts them); the HTTP
 * API's errors; the bound on the number of CRDTs.
 */
import { lpStream } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { encode } from 'cborg'
import { crdtTopic, CrdtError, CRDT_SYNC_PROTOCOL, CRDT_TOPIC_SCORE_PARAMS } from '../../node/crdt/service.ts'
import { CrdtStorage } from '../../node/crdt/storage.ts'
import { createReplica } from '../../protocols/crdt/index.ts'
import { identityFor } from '../lib/identities.ts'
import { addressOf, TestCluster } from '../lib/nodes.ts'
import { plainPeer } from '../lib/peers.ts'
import { waitFor } from '../lib/wait.ts'
import type { AccordConfig, AccordNode, CreateAccordNodeOptions } from '../../node/index.ts'

const DEADLINE_MS = 30_000
const BASE: Partial<AccordConfig> = { api: '127.0.0.1:0', raft: false, crdtSyncIntervalMs: 300 }

describe('crdt service (createAccordNode): gossip deltas, anti-entropy, persistence, HTTP', function () {
  this.timeout(120_000)
  let cluster: TestCluster

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => { await cluster.stop() })

  async function nodes (count: number, config: Partial<AccordConfig> | ((i: number) => Partial<AccordConfig>) = {}, options: CreateAccordNodeOptions = {}): Promise<AccordNode[]> {
    const configOf = (i: number): Partial<AccordConfig> => ({ ...BASE, ...(typeof config === 'function' ? config(i) : config) })
    const first = await cluster.add(configOf(0), options)
    const all = [first]
    for (let i = 1; i < count; i++) { all.push(await cluster.add({ ...configOf(i), bootstrap: [addressOf(first)] }, options)) }
    await waitFor(() => all.every(n => n.admission.admittedPeers().length >= count - 1), 'every node to admit the others', DEADLINE_MS)
    return all
  }

  const call = async (node: AccordNode, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number, json: any }> => {
    const headers: Record<string, string> = body !== undefined ? { 'content-type': contentType } : {}
    const text = typeof body === 'string' || body === undefined ? body : JSON.stringify(body)
    const response = await fetch(`${node.apiUrl ?? ''}${path}`, { method, body: text, headers })
    return { status: response.status, json: await response.json() }
  }

  const valueOf = (node: AccordNode, name: string): unknown => node.crdt.crdt(name)?.value()

  const rejected = async (node: AccordNode, reason: string): Promise<number> => {
    const metric = node.metrics.getSingleMetric('accord_crdt_deltas_rejected_total')
    const values = (await metric?.get())?.values ?? []
    return values.find(v => v.labels.reason === reason)?.value ?? 0
  }

  const tombstones = async (node: AccordNode, name: string): Promise<number> => {
    const values = (await node.metrics.getSingleMetric('accord_crdt_unstable_tombstone_units')?.get())?.values ?? []
    return values.find(v => v.labels.name === name)?.value ?? -1
  }

  const syncSent = async (node: AccordNode, kind: 'state' | 'deltas'): Promise<number> => {
    const values = (await node.metrics.getSingleMetric('accord_crdt_sync_sent_bytes_total')?.get())?.values ?? []
    return values.find(v => v.labels.kind === kind)?.value ?? 0
  }

  const counter = async (node: AccordNode, name: string): Promise<number> => (await node.metrics.getSingleMetric(name)?.get())?.values[0]?.value ?? 0

  const deltaBytesIn = async (node: AccordNode): Promise<number> => {
    const values = (await node.metrics.getSingleMetric('accord_crdt_delta_bytes_total')?.get())?.values ?? []
    return values.find(v => v.labels.direction === 'in')?.value ?? 0
  }

  it('a counter and an OR-set created over HTTP on one node reach every node and converge under concurrent ops ', async () => {
    const all = await nodes(3)
    const [a] = all
    expect((await call(a, 'PUT', '/v1/crdt/hits', { type: 'pn-counter' })).status).to.equal(201)
    expect((await call(a, 'PUT', '/v1/crdt/tags', { type: 'or-set' })).status).to.equal(201)
    await waitFor(() => all.every(n => n.crdt.list().length === 2), 'every node to hold both CRDTs', DEADLINE_MS)
    for (const node of all) { expect((await call(node, 'GET', '/v1/crdt')).json.crdts).to.deep.equal([{ name: 'hits', type: 'pn-counter' }, { name: 'tags', type: 'or-set' }]) }
    // deltas go out to the peers gossipsub knows to be subscribed; any lost (or sent before a subscription
    // was seen) are repaired by sync, so convergence does not wait on the mesh

    await Promise.all(all.map(async (node, i) => {
      for (let k = 0; k < 3; k++) {
        expect((await call(node, 'POST', '/v1/crdt/hits', { op: 'increment', by: i + 1 })).status).to.equal(200)
        expect((await call(node, 'POST', '/v1/crdt/tags', { op: 'add', value: `n${i}-${k}` })).status).to.equal(200)
      }
      expect((await call(node, 'POST', '/v1/crdt/hits', { op: 'decrement', by: 1 })).status).to.equal(200)
      expect((await call(node, 'POST', '/v1/crdt/tags', { op: 'remove', value: `n${i}-0` })).status).to.equal(200)
    }))
    // 3 * (1 + 2 + 3) - 3
    const total = 15
    const tags = all.flatMap((_n, i) => [`n${i}-1`, `n${i}-2`]).sort()
    await waitFor(() => all.every(n => valueOf(n, 'hits') === total && JSON.stringify(valueOf(n, 'tags')) === JSON.stringify(tags)), 'every node to converge', DEADLINE_MS)
    const got = await call(all[2], 'GET', '/v1/crdt/hits')
    expect(got.json).to.deep.include({ type: 'pn-counter', value: total })
    // each node's ops, without gaps
    for (const node of all) { expect(got.json.versionVector[node.libp2p.peerId.toString()]).to.equal(4) }
    // some of it came as deltas on gossipsub
    expect((await Promise.all(all.map(deltaBytesIn))).reduce((x, y) => x + y, 0)).to.be.greaterThan(0)
    expect((await a.status()).crdt).to.include({ count: 2 })
  })

  it('ops travel as deltas on gossipsub (no periodic anti-entropy)', async () => {
    const all = await nodes(2, { crdtSyncIntervalMs: 3_600_000 })
    const [a, b] = all
    const flags = a.crdt.registerCRDT('flags', 'lww-map')
    await waitFor(() => b.crdt.crdt('flags') !== undefined, 'b to learn the name (the sync a creation starts)', DEADLINE_MS)
    const topic = crdtTopic(a.config.cluster, 'flags')
    await waitFor(() => all.every(n => n.libp2p.services.pubsub.getSubscribers(topic).length === 1), 'each to see the other subscribed', DEADLINE_MS)
    flags.apply({ op: 'set', key: 'dark-mode', value: true })
    b.crdt.crdt('flags')?.apply({ op: 'set', key: 'beta', value: 'on' })
    const expected = JSON.stringify({ beta: 'on', 'dark-mode': true })
    await waitFor(() => all.every(n => JSON.stringify(valueOf(n, 'flags')) === expected), 'both to converge by gossip', DEADLINE_MS)
    expect(await deltaBytesIn(a)).to.be.greaterThan(0)
    expect(await deltaBytesIn(b)).to.be.greaterThan(0)
    // ops saved together go out together: one message carries the deltas of a batch
    const messages = await counter(a, 'accord_crdt_delta_messages_total')
    for (let i = 0; i < 40; i++) { flags.apply({ op: 'set', key: `k${i % 7}`, value: i }) }
    await flags.flushed()
    expect(await counter(a, 'accord_crdt_delta_ops_total')).to.equal(41)
    expect(await counter(a, 'accord_crdt_delta_messages_total') - messages).to.be.below(40)
    await waitFor(() => JSON.stringify(valueOf(b, 'flags')) === JSON.stringify(valueOf(a, 'flags')), 'b to take the batches by gossip', DEADLINE_MS)
  })

  it('a node restarted from its data dir reloads its states and catches up on what it missed over /accord/sync', async () => {
    const all = await nodes(3)
    const [a, b, c] = all
    const hits = a.crdt.registerCRDT('hits', 'g-counter')
    const names = a.crdt.registerCRDT('names', 'lww-map')
    hits.apply({ op: 'increment', by: 5 })
    names.apply({ op: 'set', key: 'a', value: 'alpha' })
    await waitFor(() => valueOf(c, 'hits') === 5 && JSON.stringify(valueOf(c, 'names')) === '{"a":"alpha"}', 'c to hold the first ops', DEADLINE_MS)
    c.crdt.crdt('hits')?.apply({ op: 'increment', by: 1 })
    await waitFor(() => valueOf(a, 'hits') === 6, 'a to see c\'s op', DEADLINE_MS)

    await c.stop()
    // c's files: the registry and both states as they were
    const stored = await new CrdtStorage(c.config.dataDir).load()
    expect(stored.map(s => [s.name, s.type])).to.deep.equal([['hits', 'g-counter'], ['names', 'lww-map']])
    const saved = createReplica('g-counter', 'reader')
    expect(stored[0].state).to.not.equal(null)
    expect(saved.joinEncoded(stored[0].state ?? new Uint8Array()).ok).to.equal(true)
    expect(saved.value()).to.equal(6)

    // ops while c is down, and a CRDT c has never seen
    a.crdt.crdt('hits')?.apply({ op: 'increment', by: 10 })
    b.crdt.crdt('names')?.apply({ op: 'set', key: 'b', value: 'beta' })
    b.crdt.registerCRDT('later', 'g-set').apply({ op: 'add', value: 42 })
    await waitFor(() => valueOf(b, 'hits') === 16 && valueOf(a, 'later') !== undefined, 'a and b to converge without c', DEADLINE_MS)

    const deltasBefore = await syncSent(a, 'deltas') + await syncSent(b, 'deltas')
    const restarted = await cluster.restart(c)
    expect(restarted.crdt.crdt('hits'), 'reloaded from disk').to.not.equal(undefined)
    await waitFor(() => valueOf(restarted, 'hits') === 16 && JSON.stringify(valueOf(restarted, 'names')) === '{"a":"alpha","b":"beta"}' && JSON.stringify(valueOf(restarted, 'later')) === '[42]',
      'the restarted node to catch up', DEADLINE_MS)
    // what it missed of hits and names came as the deltas it lacked (the others logged them), not as whole states
    expect(await syncSent(a, 'deltas') + await syncSent(b, 'deltas')).to.be.above(deltasBefore)
    // and its own op survived the restart: it counts on the others too
    restarted.crdt.crdt('hits')?.apply({ op: 'increment', by: 1 })
    await waitFor(() => valueOf(a, 'hits') === 17 && valueOf(b, 'hits') === 17, 'the others to see the restarted node\'s new op', DEADLINE_MS)
  })

  it('three nodes edit one rga text concurrently over HTTP and converge, also after a restart', async () => {
    const all = await nodes(3)
    const [a, b, c] = all
    expect((await call(a, 'PUT', '/v1/crdt/doc', { type: 'rga' })).status).to.equal(201)
    await waitFor(() => all.every(n => n.crdt.crdt('doc') !== undefined), 'every node to hold the text', DEADLINE_MS)
    const topic = crdtTopic(a.config.cluster, 'doc')
    await waitFor(() => all.every(n => n.libp2p.services.pubsub.getSubscribers(topic).length > 0), 'every node to see a peer subscribed', DEADLINE_MS)
    // bad ops: 400, nothing changes
    for (const bad of [{ op: 'insert', index: 1, text: 'x' }, { op: 'insert', index: 0, text: '' }, { op: 'insert', index: -1, text: 'x' }, { op: 'insert', index: 0 },
      { op: 'delete', index: 0, length: 1 }, { op: 'delete', index: 0, length: 0 }, { op: 'increment', by: 1 }, { op: 'insert', index: 0, text: 'x', by: 1 }]) {
      expect((await call(a, 'POST', '/v1/crdt/doc', bad)).status, JSON.stringify(bad)).to.equal(400)
    }
    expect((await call(a, 'GET', '/v1/crdt/doc')).json).to.deep.include({ type: 'rga', value: '' })

    await Promise.all(all.map(async (node, i) => {
      for (let k = 0; k < 3; k++) {
        const inserted = await call(node, 'POST', '/v1/crdt/doc', { op: 'insert', index: 0, text: `<${i}${k}>` })
        expect(inserted.status).to.equal(200)
        const middle = Math.floor((inserted.json.value as string).length / 2)
        expect((await call(node, 'POST', '/v1/crdt/doc', { op: 'insert', index: middle, text: `m${i}` })).status).to.equal(200)
      }
      expect((await call(node, 'POST', '/v1/crdt/doc', { op: 'delete', index: 0, length: 1 })).status).to.equal(200)
    }))
    // 3 nodes * 3 * (4 + 2) units; each node deleted the first unit it held (concurrent deletes may
    // hit the same one, or one the others have deleted: the start of a token, never a '>' or an 'm')
    const text = (node: AccordNode): string => valueOf(node, 'doc') as string
    const count = (t: string, unit: string): number => t.split(unit).length - 1
    await waitFor(() => all.every(n => text(n) === text(a)) && count(text(a), '>') === 9 && count(text(a), 'm') === 9 && text(a).length >= 51 && text(a).length <= 53,
      'every node to hold the same text', DEADLINE_MS)
    const length = text(a).length
    const got = await call(c, 'GET', '/v1/crdt/doc')
    expect(got.json).to.deep.include({ type: 'rga', value: text(a) })

    // c goes down; a and b edit; c comes back from its data dir and catches up
    await c.stop()
    expect((await call(a, 'POST', '/v1/crdt/doc', { op: 'insert', index: 0, text: 'A' })).status).to.equal(200)
    expect((await call(b, 'POST', '/v1/crdt/doc', { op: 'insert', index: text(b).length, text: 'B' })).status).to.equal(200)
    await waitFor(() => text(a) === text(b) && text(a).length === length + 2, 'a and b to converge without c', DEADLINE_MS)
    // c's saved text is what it held (sync may bring the rest before the restart resolves)
    const [saved] = (await new CrdtStorage(c.config.dataDir).load()).filter(stored => stored.name === 'doc')
    const reader = createReplica('rga', 'reader')
    expect(reader.joinEncoded(saved?.state ?? new Uint8Array()).ok).to.equal(true)
    expect(reader.value(), 'saved at stop').to.equal(got.json.value)
    const restarted = await cluster.restart(c)
    const nodesNow = [a, b, restarted]
    await waitFor(() => nodesNow.every(n => text(n) === text(a)) && text(a).length === length + 2, 'the restarted node to catch up', DEADLINE_MS)
    // its new ops take fresh ids (its history came back): all converge on them
    expect((await call(restarted, 'POST', '/v1/crdt/doc', { op: 'insert', index: 1, text: 'C' })).status).to.equal(200)
    expect((await call(a, 'POST', '/v1/crdt/doc', { op: 'delete', index: 2, length: 2 })).status).to.equal(200)
    await waitFor(() => nodesNow.every(n => text(n) === text(a)) && text(a).length === length + 1, 'every node to converge on the new edits', DEADLINE_MS)
    expect(text(a).slice(0, 2)).to.equal('AC')
  })

  it('collects rga tombstones once every member holds their deletes, shows what is stable, and a restarted member catches up', async () => {
    const all = await nodes(3)
    const [a, b, c] = all
    const doc = a.crdt.registerCRDT('notes', 'rga')
    doc.apply({ op: 'insert', index: 0, text: 'hello brave new world' })
    await doc.flushed()
    await waitFor(() => all.every(n => valueOf(n, 'notes') === 'hello brave new world'), 'every node to hold the text', DEADLINE_MS)
    expect((await call(b, 'POST', '/v1/crdt/notes', { op: 'delete', index: 5, length: 6 })).status).to.equal(200)
    await waitFor(() => all.every(n => valueOf(n, 'notes') === 'hello new world'), 'every node to see the delete', DEADLINE_MS)
    // sync rounds carry reports: once each node has heard from both others, the delete is stable everywhere
    await waitFor(async () => {
      await Promise.all(all.map(async n => n.crdt.synchronise()))
      return (await Promise.all(all.map(async n => tombstones(n, 'notes')))).every(t => t === 0)
    }, 'every node to collect the tombstones', DEADLINE_MS)
    const got = await call(c, 'GET', '/v1/crdt/notes')
    expect(got.json.value).to.equal('hello new world')
    expect(got.json.stableVector).to.deep.equal(got.json.versionVector)
    expect(Object.keys(got.json.stableVector)).to.have.members([a.libp2p.peerId.toString(), b.libp2p.peerId.toString()])

    // c stops; a deletes; c comes back from its data dir, catches up, and every node collects again
    await c.stop()
    expect((await call(a, 'POST', '/v1/crdt/notes', { op: 'delete', index: 0, length: 6 })).status).to.equal(200)
    const back = await cluster.restart(c)
    const now = [a, b, back]
    await waitFor(async () => {
      await Promise.all(now.map(async n => n.crdt.synchronise()))
      return now.every(n => valueOf(n, 'notes') === 'new world') && (await Promise.all(now.map(async n => tombstones(n, 'notes')))).every(t => t === 0)
    }, 'every node to catch up and collect', DEADLINE_MS)
    back.crdt.crdt('notes')?.apply({ op: 'insert', index: 9, text: '!' })
    await waitFor(() => [a, b, back].every(n => valueOf(n, 'notes') === 'new world!'), 'every node to take c\'s edit', DEADLINE_MS)
  })

  it('with a writer allowlist, a member not on it is ignored (its deltas and states change nothing) and counted', async () => {
    const dirs = await Promise.all([0, 1, 2].map(async () => identityFor(await cluster.newDataDir())))
    const writers = [dirs[0].peerId, dirs[1].peerId]
    // c is a member, but not a writer: a and b list only each other; c runs without a list
    const all = await nodes(3, i => ({ dataDir: dirs[i].dataDir, crdtWriters: i < 2 ? writers : [] }))
    const [a, b, c] = all
    expect(a.crdt.summary().writers).to.deep.equal(writers)
    expect((await call(a, 'PUT', '/v1/crdt/votes', { type: 'g-counter' })).status).to.equal(201)
    await waitFor(() => all.every(n => n.crdt.crdt('votes') !== undefined), 'every node to hold votes', DEADLINE_MS)

    expect((await call(c, 'POST', '/v1/crdt/votes', { op: 'increment', by: 100 })).status).to.equal(200)
    expect((await call(c, 'PUT', '/v1/crdt/intruder', { type: 'g-set' })).status).to.equal(201)
    await waitFor(async () => await rejected(a, 'not-writer') > 0 && await rejected(b, 'not-writer') > 0, 'a and b to ignore c\'s delta', DEADLINE_MS)
    expect((await call(a, 'POST', '/v1/crdt/votes', { op: 'increment', by: 1 })).status).to.equal(200)
    await waitFor(() => valueOf(c, 'votes') === 101 && valueOf(b, 'votes') === 1, 'b and c to take a\'s op', DEADLINE_MS)
    // c's state reaches a and b by anti-entropy too: still ignored
    await a.crdt.synchronise()
    await b.crdt.synchronise()
    expect(valueOf(a, 'votes')).to.equal(1)
    expect(valueOf(b, 'votes')).to.equal(1)
    expect(a.crdt.crdt('intruder')).to.equal(undefined)
    expect(b.crdt.crdt('intruder')).to.equal(undefined)
    expect(Object.keys(a.crdt.crdt('votes')?.versionVector() ?? {})).to.deep.equal([dirs[0].peerId])
  })

  it('scores the CRDT topics: a member publishing a malformed delta sinks below the graylist threshold at the others', async () => {
    const all = await nodes(2, { crdtSyncIntervalMs: 3_600_000 })
    const [a, b] = all
    a.crdt.registerCRDT('scored', 'g-counter')
    await waitFor(() => b.crdt.crdt('scored') !== undefined, 'b to learn the name', DEADLINE_MS)
    const topic = crdtTopic(a.config.cluster, 'scored')
    await waitFor(() => all.every(n => n.libp2p.services.pubsub.getSubscribers(topic).length === 1), 'each to see the other subscribed', DEADLINE_MS)
    const pubsub = a.libp2p.services.pubsub
    // a's own validator would stop it: publish around it, as a faulty or hostile member could
    pubsub.topicValidators.delete(topic)
    await pubsub.publish(topic, Uint8Array.from([0xff, 0x00, 0x13]))
    await waitFor(async () => await rejected(b, 'malformed') > 0, 'b to reject the delta', DEADLINE_MS)
    const score = (): number => (b.libp2p.services.pubsub as unknown as { getScore(peer: string): number }).getScore(a.libp2p.peerId.toString())
    await waitFor(() => score() < -80, 'a\'s score at b to fall below the graylist threshold', DEADLINE_MS)
    // the topic is scored with the CRDT parameters (invalid deliveries: -100 each, squared)
    const topics = (b.libp2p.services.pubsub as unknown as { score: { params: { topics: Record<string, unknown> } } }).score.params.topics
    expect(topics[topic]).to.deep.equal(CRDT_TOPIC_SCORE_PARAMS)
  })

  it('answers bad requests with 400, a type conflict with 409, an unknown name with 404, and changes nothing', async () => {
    const [a] = await nodes(1)
    expect(await call(a, 'PUT', '/v1/crdt/count', { type: 'pn-counter' })).to.deep.include({ status: 201, json: { name: 'count', type: 'pn-counter', created: true } })
    expect(await call(a, 'PUT', '/v1/crdt/count', { type: 'pn-counter' })).to.deep.include({ status: 200, json: { name: 'count', type: 'pn-counter', created: false } })
    expect((await call(a, 'PUT', '/v1/crdt/count', { type: 'g-set' })).status).to.equal(409)
    expect((await call(a, 'PUT', '/v1/crdt/other', { type: 'no-such-type' })).status).to.equal(400)
    expect((await call(a, 'PUT', '/v1/crdt/other', { kind: 'g-set' })).status).to.equal(400)
    expect((await call(a, 'PUT', `/v1/crdt/${encodeURIComponent('bad name!')}`, { type: 'g-set' })).status).to.equal(400)
    expect((await call(a, 'PUT', `/v1/crdt/${'x'.repeat(65)}`, { type: 'g-set' })).status).to.equal(400)
    expect((await call(a, 'PUT', '/v1/crdt/other', { type: 'g-set' }, 'text/plain')).status).to.equal(415)

    expect((await call(a, 'POST', '/v1/crdt/count', { op: 'increment', by: 2 })).status).to.equal(200)
    for (const bad of [{ op: 'increment', by: 1.5 }, { op: 'increment', by: '1' }, { op: 'increment', by: -1 }, { op: 'add', value: 1 }, { by: 1 }, { op: 'increment', by: 1, extra: true }, '[1]', 'not json']) {
      const response = await call(a, 'POST', '/v1/crdt/count', bad)
      expect(response.status, JSON.stringify(bad)).to.equal(400)
    }
    expect(await call(a, 'GET', '/v1/crdt/count')).to.deep.include({ status: 200 })
    expect((await call(a, 'GET', '/v1/crdt/count')).json).to.include({ type: 'pn-counter', value: 2 })
    expect((await call(a, 'GET', '/v1/crdt/missing')).status).to.equal(404)
    expect((await call(a, 'POST', '/v1/crdt/missing', { op: 'increment', by: 1 })).status).to.equal(404)
    expect((await call(a, 'GET', '/v1/crdt')).json.crdts).to.deep.equal([{ name: 'count', type: 'pn-counter' }])
  })

  it('serves /accord/sync to admitted peers only: a stranger\'s digest is refused and teaches the node nothing', async () => {
    const [a] = await nodes(1)
    a.crdt.registerCRDT('secret', 'g-set').apply({ op: 'add', value: 'x' })
    const stranger = await plainPeer()
    try {
      const stream = await stranger.dialProtocol(a.libp2p.getMultiaddrs()[0], CRDT_SYNC_PROTOCOL)
      const lp = lpStream(stream)
      await lp.write(encode({ v: 1, t: 'digest', crdts: [['planted', 'g-set', new Uint8Array(16)]] })).catch(() => {})
      const answer = await lp.read({ signal: AbortSignal.timeout(DEADLINE_MS) }).then(() => 'answered', () => 'refused')
      expect(answer).to.equal('refused')
      await waitFor(async () => await a.admission.refusals.count(CRDT_SYNC_PROTOCOL, 'not-admitted') >= 1, 'the stranger to be refused', DEADLINE_MS)
      expect(a.crdt.list().map(c => c.name)).to.deep.equal(['secret'])
    } finally {
      await stranger.stop()
    }
  })

  it('refuses a CRDT past the node\'s bound (crdtsMax), over HTTP and through the API', async () => {
    const [a] = await nodes(1, {}, { crdtSettings: { crdtsMax: 3 } })
    for (const name of ['one', 'two', 'three']) { expect((await call(a, 'PUT', `/v1/crdt/${name}`, { type: 'g-counter' })).status).to.equal(201) }
    const refused = await call(a, 'PUT', '/v1/crdt/four', { type: 'g-counter' })
    expect(refused.status).to.equal(507)
    expect(refused.json.error).to.include('crdtsMax')
    expect(() => a.crdt.registerCRDT('four', 'or-set')).to.throw(CrdtError).with.property('code', 'limit')
    // an existing one is still there to get
    expect((await call(a, 'PUT', '/v1/crdt/two', { type: 'g-counter' })).status).to.equal(200)
    expect(a.crdt.summary()).to.include({ count: 3, crdtsMax: 3 })
  })
})
