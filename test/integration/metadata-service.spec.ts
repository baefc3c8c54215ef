/**
 * The cluster-metadata store over real libp2p (TCP + Noise on loopback):
 * a node's values reach every member, its deletions too, over the HTTP
 * API as well; and what a stranger, a member speaking for another, a
 * member forging another's entries and broken input can make it do:
 * nothing. Each is refused and counted under accord_refusals_total, and the
 * store stays as it was.
 */
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { encode } from 'cborg'
import { ANTI_ENTROPY_PROTOCOL } from '../../node/metadata/service.ts'
import { refusalCount } from '../lib/metrics.ts'
import { addressOf, TestCluster, waitFor } from '../lib/nodes.ts'
import { plainPeer, presentCertificate } from '../lib/peers.ts'
import type { AccordNode } from '../../node/index.ts'
import type { Libp2p } from '@libp2p/interface'

/** Bounds a hung wait only (below the test timeout, so a failure names what it waited for). */
const DEADLINE_MS = 20_000
const text = (value: Uint8Array | undefined): string | undefined => value === undefined ? undefined : new TextDecoder().decode(value)

describe('cluster-metadata store (real libp2p over TCP on loopback)', function () {
  this.timeout(90_000)
  let cluster: TestCluster
  let nodes: AccordNode[]
  const peers: Libp2p[] = []

  before(async () => {
    cluster = new TestCluster()
    const first = await cluster.add({ raft: false, api: '127.0.0.1:0' })
    nodes = [first]
    for (let i = 0; i < 2; i++) { nodes.push(await cluster.add({ raft: false, api: '127.0.0.1:0', bootstrap: [addressOf(first)] })) }
    const ids = nodes.map(n => n.libp2p.peerId.toString())
    for (const node of nodes) {
      await waitFor(() => ids.every(id => node.membership.stateOf(id) === 'alive'), 'every node to see every other alive', DEADLINE_MS)
    }
  })

  after(async () => {
    await Promise.all(peers.map(async p => { await p.stop() }))
    await cluster.stop()
  })

  const idOf = (node: AccordNode): string => node.libp2p.peerId.toString()

  it('a value one node sets reaches every member, and so does its deletion', async () => {
    const [a, b, c] = nodes
    const version = a.metadata.set('role', new TextEncoder().encode('ingest'))
    for (const node of [b, c]) {
      await waitFor(() => text(node.metadata.get(idOf(a), 'role')) === 'ingest', 'the value to reach every member', DEADLINE_MS)
      expect(node.metadata.entries('role').find(e => e.peerId === idOf(a))?.version).to.equal(version)
    }
    a.metadata.delete('role')
    for (const node of [b, c]) {
      await waitFor(() => node.metadata.get(idOf(a), 'role') === undefined, 'the deletion to reach every member', DEADLINE_MS)
    }
  })

  it('over HTTP: PUT sets this node\'s value, GET on another node lists it; a value too large is a 413, a key too long a 400, a key of accord\'s own a 403', async () => {
    const [a, b] = nodes
    const put = await fetch(`${a.apiUrl}/v1/metadata/zone`, { method: 'PUT', body: 'eu-west' })
    expect(put.status).to.equal(200)
    const { version } = await put.json() as { version: number }
    let values: Array<{ peerId: string, value: string, version: number }> = []
    await waitFor(async () => {
      values = (await (await fetch(`${b.apiUrl}/v1/metadata/zone`)).json() as { values: typeof values }).values
      return values.some(v => v.peerId === idOf(a))
    }, 'b to list a\'s zone', DEADLINE_MS)
    expect(values.find(v => v.peerId === idOf(a))).to.deep.include({ value: 'eu-west', version, encoding: 'utf8' })
    const oversize = await fetch(`${a.apiUrl}/v1/metadata/zone`, { method: 'PUT', body: new Uint8Array(a.metadata.limits.valueBytesMax + 1) })
    expect(oversize.status).to.equal(413)
    const longKey = await fetch(`${a.apiUrl}/v1/metadata/${'k'.repeat(a.metadata.limits.keyLengthMax + 1)}`, { method: 'PUT', body: 'x' })
    expect(longKey.status).to.equal(400)
    const reserved = await fetch(`${a.apiUrl}/v1/metadata/accord.topology`, { method: 'PUT', body: 'x' })
    expect(reserved.status).to.equal(403)
    const all = await (await fetch(`${b.apiUrl}/v1/metadata`)).json() as { nodes: Array<{ peerId: string }>, status: { fanout: number, intervalMs: number } }
    expect(all.nodes.map(n => n.peerId)).to.include(idOf(a))
    expect(all.status.fanout).to.be.a('number')
    expect(all.status.intervalMs).to.be.greaterThan(0)
  })

  it('a node that restarts forgets its store, and what it sets then replaces what it had set before everywhere', async () => {
    const c = nodes[2]
    c.metadata.set('build', new TextEncoder().encode('v1'))
    for (const node of nodes.slice(0, 2)) {
      await waitFor(() => text(node.metadata.get(idOf(c), 'build')) === 'v1', 'v1 to reach every member', DEADLINE_MS)
    }
    const restarted = await cluster.restart(c)
    nodes[2] = restarted
    restarted.metadata.set('build', new TextEncoder().encode('v2'))
    for (const node of nodes) {
      await waitFor(() => text(node.metadata.get(idOf(c), 'build')) === 'v2', 'v2 to replace v1 on every member', DEADLINE_MS)
    }
  })

  describe('hostile input', () => {
    async function send (peer: Libp2p, to: AccordNode, frame: Uint8Array): Promise<void> {
      const stream = await peer.dialProtocol(multiaddr(addressOf(to)), ANTI_ENTROPY_PROTOCOL)
      await lpStream(stream).write(frame).catch(() => {})
      await stream.close().catch(() => {})
    }
    /** A delta that gives b's `role` a new value, signed by nobody. */
    const forgedDelta = (from: string, a: AccordNode, b: AccordNode): Uint8Array => {
      const held = a.metadata.entries('role').find(e => e.peerId === idOf(b))?.version ?? 0
      return encode({
        type: 'delta',
        from,
        to: idOf(a),
        page: null,
        deltas: [{ node: idOf(b), after: held, entries: [{ key: 'role', value: new TextEncoder().encode('evil'), version: held + 1, signature: new Uint8Array(64).fill(1), ageTicks: 0 }] }]
      })
    }

    it('a stranger is refused before its message is read', async () => {
      const [a, b] = nodes
      const stranger = await plainPeer()
      peers.push(stranger)
      const before = await refusalCount(a, ANTI_ENTROPY_PROTOCOL, 'not-admitted')
      await send(stranger, a, forgedDelta(stranger.peerId.toString(), a, b))
      await waitFor(async () => await refusalCount(a, ANTI_ENTROPY_PROTOCOL, 'not-admitted') > before, 'the stranger to be refused', DEADLINE_MS)
    })

    it('a member cannot speak for another, nor forge another\'s entries', async () => {
      const [a, b] = nodes
      b.metadata.set('role', new TextEncoder().encode('store'))
      await waitFor(() => text(a.metadata.get(idOf(b), 'role')) === 'store', 'a to hold b\'s role', DEADLINE_MS)
      const liar = await plainPeer()
      peers.push(liar)
      await presentCertificate(a, liar)
      const spoofed = await refusalCount(a, ANTI_ENTROPY_PROTOCOL, 'spoofed-sender')
      await send(liar, a, forgedDelta(idOf(b), a, b))
      await waitFor(async () => await refusalCount(a, ANTI_ENTROPY_PROTOCOL, 'spoofed-sender') > spoofed, 'the spoofed message to be refused', DEADLINE_MS)
      const forged = await refusalCount(a, ANTI_ENTROPY_PROTOCOL, 'forged-entry')
      await send(liar, a, forgedDelta(liar.peerId.toString(), a, b))
      await waitFor(async () => await refusalCount(a, ANTI_ENTROPY_PROTOCOL, 'forged-entry') > forged, 'the forged entry to be refused', DEADLINE_MS)
      expect(text(a.metadata.get(idOf(b), 'role'))).to.equal('store')
    })

    it('garbage, an oversize frame and a message of the wrong shape are refused, and gossip goes on', async () => {
      const [a, b] = nodes
      const member = await plainPeer()
      peers.push(member)
      await presentCertificate(a, member)
      const malformed = await refusalCount(a, ANTI_ENTROPY_PROTOCOL, 'malformed')
      const invalid = await refusalCount(a, ANTI_ENTROPY_PROTOCOL, 'invalid-message')
      await send(member, a, new Uint8Array([0xff, 0x00, 0x13, 0x37]))
      await send(member, a, new Uint8Array(200 * 1024).fill(7))
      await send(member, a, encode({ type: 'digest', from: member.peerId.toString(), to: idOf(a), page: 'all', want: 'everything' }))
      await waitFor(async () => await refusalCount(a, ANTI_ENTROPY_PROTOCOL, 'malformed') >= malformed + 2, 'garbage and the oversize frame to be refused', DEADLINE_MS)
      await waitFor(async () => await refusalCount(a, ANTI_ENTROPY_PROTOCOL, 'invalid-message') > invalid, 'the wrong-shaped message to be refused', DEADLINE_MS)
      b.metadata.set('after-garbage', new Uint8Array([1]))
      await waitFor(() => a.metadata.get(idOf(b), 'after-garbage') !== undefined, 'gossip to go on', DEADLINE_MS)
    })
  })
})
