/**
 * Topology discovery over real libp2p (TCP, Noise, yamux on loopback): a
 * node's own report lists its real connections, DHT routing table and
 * gossipsub mesh; in a cluster running admission, membership, the
 * cluster-metadata store and topology, every node's view holds every
 * node's report and the connections among them, served by GET
 * /v1/topology and printed by `accord topology`; a member that writes a
 * garbage report is skipped and counted.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import { clusterAdmission } from '../../node/admission/admission.ts'
import { PRIVATE_DHT_PROTOCOL } from '../../node/constants.ts'
import { startHttpApi } from '../../node/http-api.ts'
import { swimMembership } from '../../node/membership/service.ts'
import { clusterMetadata } from '../../node/metadata/service.ts'
import { collectReport } from '../../node/topology/report.ts'
import { topologyRoutes } from '../../node/topology/routes.ts'
import { clusterTopology, TOPOLOGY_KEY } from '../../node/topology/service.ts'
import { silentLogger } from '../lib/nodes.ts'
import { runCli } from '../lib/processes.ts'
import { waitFor } from '../lib/wait.ts'
import type { Admission } from '../../node/admission/admission.ts'
import type { MembershipService } from '../../node/membership/service.ts'
import type { ClusterMetadataService } from '../../node/metadata/service.ts'
import type { TopologyService } from '../../node/topology/service.ts'
import type { TopologyGraph } from '../../node/topology/view.ts'
import type { GossipSub } from '@libp2p/gossipsub'
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'

/** Bounds a hung wait only (below the test timeout, so a failure names what it waited for). */
const DEADLINE_MS = 30_000
const TOPIC = 'accord/test/topology/1'

type OverlayNode = Libp2p<{ dht: KadDHT, pubsub: GossipSub }>
type ClusterNode = Libp2p<{ dht: KadDHT, pubsub: GossipSub, admission: Admission, membership: MembershipService, metadata: ClusterMetadataService, topology?: TopologyService }>

/** The bits of a peer's Kademlia id (SHA-256 of its multihash), as kad-dht files it in buckets. */
function kadBits (peer: PeerId): string {
  return [...createHash('sha256').update(peer.toMultihash().bytes).digest()].map(byte => byte.toString(2).padStart(8, '0')).join('')
}

function withoutPeerId (addr: string): string {
  return addr.replace(/\/p2p\/[^/]+$/, '')
}

describe('topology over real libp2p', function () {
  this.timeout(90_000)
  const nodes: Libp2p[] = []
  let root: string

  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'accord-topology-')) })
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map(async node => { await node.stop() }))
    await rm(root, { recursive: true, force: true })
  })

  const overlayServices = (): { identify: ReturnType<typeof identify>, ping: ReturnType<typeof ping>, dht: ReturnType<typeof kadDHT>, pubsub: ReturnType<typeof gossipsub> } => ({
    identify: identify(),
    ping: ping(),
    dht: kadDHT({ protocol: PRIVATE_DHT_PROTOCOL, clientMode: false, peerInfoMapper: passthroughMapper }),
    pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', allowPublishToZeroTopicPeers: true })
  })

  async function overlayNode (): Promise<OverlayNode> {
    const node = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: overlayServices()
    })
    nodes.push(node)
    return node
  }

  /** A member of cluster "topo": admission, membership, the metadata store and (unless `withTopology` is false) topology. */
  async function clusterNode (name: string, joining: boolean, withTopology = true): Promise<ClusterNode> {
    const node = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: {
        ...overlayServices(),
        admission: clusterAdmission({ cluster: 'topo', dataDir: join(root, name), join: joining }),
        membership: swimMembership(),
        metadata: clusterMetadata(),
        ...(withTopology ? { topology: clusterTopology({ settings: { intervalMs: 200 } }) } : {})
      }
    })
    nodes.push(node)
    return node
  }

  it('a node\'s report lists its real connections (direction, address), its DHT peers by bucket and its mesh peers', async () => {
    const [a, b, c] = [await overlayNode(), await overlayNode(), await overlayNode()]
    for (const node of [a, b, c]) { node.services.pubsub.subscribe(TOPIC) }
    // b and c dial a; c dials b
    await b.dial(a.getMultiaddrs()[0])
    await c.dial(a.getMultiaddrs()[0])
    await c.dial(b.getMultiaddrs()[0])
    const others = (node: OverlayNode): string[] => [a, b, c].filter(n => n !== node).map(n => n.peerId.toString()).sort()
    const report = (node: OverlayNode): ReturnType<typeof collectReport> => collectReport({ connections: node.getConnections(), dht: node.services.dht, pubsub: node.services.pubsub }, Date.now())
    for (const node of [a, b, c]) {
      await waitFor(() => {
        const r = report(node)
        return r.dhtBuckets.flatMap(bucket => bucket.peers).length === 2 && r.mesh[0]?.peers.length === 2
      }, `${node.peerId.toString()} to hold both others in its DHT table and its mesh`, DEADLINE_MS)
    }

    for (const node of [a, b, c]) {
      const r = report(node)
      expect(r.truncated).to.deep.equal([])
      expect([...new Set(r.connections.map(conn => conn.peer))].sort()).to.deep.equal(others(node))
      expect(r.dhtBuckets.flatMap(bucket => bucket.peers).sort()).to.deep.equal(others(node))
      expect(r.mesh).to.deep.equal([{ topic: TOPIC, peers: others(node) }])
      // each DHT peer sits in the bucket its Kademlia id starts with
      for (const bucket of r.dhtBuckets) {
        for (const peer of bucket.peers) {
          const id = [a, b, c].find(n => n.peerId.toString() === peer)?.peerId
          if (id === undefined) { throw new Error(`${peer} is none of the nodes`) }
          expect(kadBits(id).startsWith(bucket.prefix), `${peer} in bucket ${bucket.prefix}`).to.equal(true)
        }
      }
    }

    // who dialled whom: the dialler's side is outbound, to the address it dialled
    const connectionOf = (node: OverlayNode, to: OverlayNode): { direction: string, remoteAddr: string } | undefined => report(node).connections.find(conn => conn.peer === to.peerId.toString())
    for (const [dialler, listener] of [[b, a], [c, a], [c, b]]) {
      const outbound = connectionOf(dialler, listener)
      expect(outbound?.direction).to.equal('outbound')
      expect(withoutPeerId(outbound?.remoteAddr ?? '')).to.equal(withoutPeerId(listener.getMultiaddrs()[0].toString()))
      const inbound = connectionOf(listener, dialler)
      expect(inbound?.direction).to.equal('inbound')
      expect(inbound?.remoteAddr).to.match(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+/)
    }
  })

  it('three members: each view holds every member\'s report and the connections among them; GET /v1/topology and accord topology show it; a garbage report is skipped and counted; an overwritten report is put back', async () => {
    const a = await clusterNode('a', false)
    const firstAddress = a.getMultiaddrs()[0].toString()
    const { token } = await a.services.admission.createJoinToken()
    const members = [a]
    for (const name of ['b', 'c']) {
      const node = await clusterNode(name, true)
      await node.services.admission.join(token, [firstAddress])
      members.push(node)
    }
    const ids = members.map(n => n.peerId.toString()).sort()
    const topologyOf = (node: ClusterNode): TopologyService => {
      if (node.services.topology === undefined) { throw new Error('no topology service') }
      return node.services.topology
    }
    /** Every ordered pair of members has a connection edge, reported by its first. */
    const connectedEverywhere = (view: TopologyGraph): boolean =>
      ids.every(from => ids.every(to => from === to || view.edges.some(e => e.from === from && e.to === to && e.kinds.includes('connection'))))
    for (const node of members) {
      await waitFor(() => {
        const view = topologyOf(node).view()
        return ids.every(id => view.nodes.find(n => n.peerId === id)?.reported === true) && connectedEverywhere(view)
      }, `${node.peerId.toString()} to see every member's report and the connections among them`, DEADLINE_MS)
    }
    for (const node of members) {
      const view = topologyOf(node).view()
      expect(view.self).to.equal(node.peerId.toString())
      expect(view.skipped).to.deep.equal([])
      expect(view.nodes.map(n => n.peerId)).to.deep.equal(ids)
    }

    // through the HTTP route, and the CLI
    const api = await startHttpApi({ host: '127.0.0.1', port: 0, token: null, routes: topologyRoutes(topologyOf(a)), log: silentLogger })
    try {
      const response = await fetch(`${api.url}/v1/topology`)
      expect(response.status).to.equal(200)
      const served = await response.json() as TopologyGraph
      expect(served.self).to.equal(a.peerId.toString())
      expect(served.nodes.filter(n => n.reported).map(n => n.peerId)).to.include.members(ids)
      expect(connectedEverywhere(served)).to.equal(true)
      const text = await runCli(['topology', '--api', api.url])
      expect(text.code, text.stderr).to.equal(0)
      expect(text.stdout).to.include(`${a.peerId.toString()} (this node)`)
      for (const id of ids) { expect(text.stdout).to.include(`-> ${id}  connection`) }
      const dot = await runCli(['topology', '--dot', '--api', api.url])
      expect(dot.code, dot.stderr).to.equal(0)
      expect(dot.stdout).to.match(/^digraph topology \{\n/)
      for (const id of ids.filter(i => i !== a.peerId.toString())) { expect(dot.stdout).to.include(`"${a.peerId.toString()}" -> "${id}"`) }
    } finally {
      await api.close()
    }

    // a member without topology that writes garbage under the key: skipped and counted, the view goes on
    const rogue = await clusterNode('rogue', true, false)
    await rogue.services.admission.join(token, [firstAddress])
    rogue.services.metadata.set(TOPOLOGY_KEY, Uint8Array.from([0xff, 0xfe, 0xfd]))
    const rogueId = rogue.peerId.toString()
    for (const node of members) {
      await waitFor(() => topologyOf(node).view().skipped.some(s => s.peerId === rogueId),
        `${node.peerId.toString()} to skip the rogue's report`, DEADLINE_MS)
      const view = topologyOf(node).view()
      expect(view.skipped).to.deep.equal([{ peerId: rogueId, reason: 'malformed' }])
      expect(topologyOf(node).rejectedReports().malformed).to.equal(1)
      expect(view.nodes.filter(n => n.reported).map(n => n.peerId).sort()).to.deep.equal(ids)
    }

    // someone writes over a member's own report (say an app calling metadata.set on it): its next tick puts it back
    const aId = a.peerId.toString()
    a.services.metadata.set(TOPOLOGY_KEY, Uint8Array.from([0xff]))
    await waitFor(() => topologyOf(a).view().nodes.find(n => n.peerId === aId)?.reported === true,
      'a to set its report again over the one written in its place', DEADLINE_MS)
    expect(topologyOf(a).view().skipped.map(s => s.peerId)).to.deep.equal([rogueId])
  })
})
