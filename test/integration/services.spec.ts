/**
 * accord's protocols as js-libp2p services in an app's own libp2p node
 * (real TCP, Noise and yamux on loopback): what libp2p checks of them, the
 * discovery service beside kad-dht, an HTTP API with only the Raft routes,
 * and a node stopped and started again.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import { clusterAdmission } from '../../node/admission/admission.ts'
import { PRIVATE_DHT_PROTOCOL } from '../../node/constants.ts'
import { clusterDiscovery } from '../../node/discovery.ts'
import { createApiHandler, ownOriginCheck, startHttpApi } from '../../node/http-api.ts'
import { swimMembership } from '../../node/membership/service.ts'
import { clusterMetadata } from '../../node/metadata/service.ts'
import { raftRoutes } from '../../node/raft/routes.ts'
import { raft } from '../../node/raft/service.ts'
import { clusterTopology } from '../../node/topology/service.ts'
import { silentLogger } from '../lib/nodes.ts'
import { waitFor } from '../lib/wait.ts'
import type { Admission } from '../../node/admission/admission.ts'
import type { RaftService } from '../../node/raft/service.ts'
import type { Identify } from '@libp2p/identify'
import type { Libp2p } from '@libp2p/interface'
import type { AddressInfo } from 'node:net'

/** Bounds a hung wait only (below the test timeout, so a failure names what it waited for). */
const DEADLINE_MS = 30_000
const transports = { transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] }
const loopback = { listen: ['/ip4/127.0.0.1/tcp/0'] }

describe('accord services in an app\'s own libp2p node', function () {
  this.timeout(90_000)
  let root: string
  const nodes: Libp2p[] = []

  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'accord-services-')) })
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map(async node => { await node.stop() }))
    await rm(root, { recursive: true, force: true })
  })

  async function raftNode (name: string, joining: boolean): Promise<Libp2p<{ identify: Identify, admission: Admission, raft: RaftService }>> {
    const dataDir = join(root, name)
    const node = await createLibp2p({
      addresses: loopback,
      ...transports,
      services: {
        identify: identify(),
        admission: clusterAdmission({ cluster: 'app', dataDir, join: joining }),
        raft: raft({ dataDir, join: joining, settings: { tickIntervalMs: 50 } })
      }
    })
    nodes.push(node)
    return node
  }

  it('Raft without admission: libp2p refuses to build the node and names the missing capability', async () => {
    const refused = await createLibp2p({
      ...transports,
      // @ts-expect-error the types refuse it too: RaftComponents needs admission
      services: { raft: raft({ dataDir: join(root, 'lonely') }) }
    }).then(() => null, (err: Error) => err)
    expect(refused?.name).to.equal('UnmetServiceDependenciesError')
    expect(refused?.message).to.include('@accord/admission')
  })

  it('the metadata store without membership, and topology without the store: libp2p refuses to build the node', async () => {
    const dataDir = join(root, 'partial')
    const noMembership = await createLibp2p({
      ...transports,
      // @ts-expect-error the types refuse it too: MetadataComponents needs membership
      services: { admission: clusterAdmission({ cluster: 'app', dataDir }), metadata: clusterMetadata() }
    }).then(() => null, (err: Error) => err)
    expect(noMembership?.name).to.equal('UnmetServiceDependenciesError')
    expect(noMembership?.message).to.include('@accord/membership')
    const noStore = await createLibp2p({
      ...transports,
      // @ts-expect-error the types refuse it too: topology needs the metadata store
      services: { admission: clusterAdmission({ cluster: 'app', dataDir }), membership: swimMembership(), topology: clusterTopology() }
    }).then(() => null, (err: Error) => err)
    expect(noStore?.name).to.equal('UnmetServiceDependenciesError')
    expect(noStore?.message).to.include('@accord/metadata')
  })

  it('discovery beside the app\'s kad-dht: nodes that know only the first find each other, and only admitted peers count as members', async () => {
    const discoveryNode = async (name: string, joining: boolean, bootstrap: string[]): Promise<Libp2p<any>> => {
      const node = await createLibp2p({
        addresses: loopback,
        ...transports,
        services: {
          identify: identify(),
          ping: ping(),
          dht: kadDHT({ protocol: PRIVATE_DHT_PROTOCOL, clientMode: false, peerInfoMapper: passthroughMapper }),
          admission: clusterAdmission({ cluster: 'app', dataDir: join(root, name), join: joining }),
          discovery: clusterDiscovery({ bootstrap, intervalMs: 1000 })
        }
      })
      nodes.push(node)
      return node
    }
    const first = await discoveryNode('first', false, [])
    const firstAddress = first.getMultiaddrs()[0].toString()
    const { token } = await first.services.admission.createJoinToken()
    const others = []
    for (const name of ['b', 'c', 'd']) {
      const node = await discoveryNode(name, true, [firstAddress])
      await node.services.admission.join(token, [firstAddress])
      others.push(node)
    }
    // a stranger that speaks the DHT but holds no certificate
    const stranger = await discoveryNode('stranger', true, [firstAddress])
    const ids = [first, ...others].map(n => n.peerId.toString())
    for (const node of others) {
      await waitFor(() => {
        const members = node.services.discovery.members().filter((m: { connected: boolean }) => m.connected).map((m: { peerId: string }) => m.peerId)
        return ids.every(id => id === node.peerId.toString() || members.includes(id))
      }, `${node.peerId.toString()} to see the 3 others as members`, DEADLINE_MS)
    }
    for (const node of [first, ...others]) {
      expect(node.services.discovery.members().map((m: { peerId: string }) => m.peerId)).to.not.include(stranger.peerId.toString())
    }
  })

  it('an HTTP API with the Raft routes only, on the app\'s own port: writes and reads through the group', async () => {
    const a = await raftNode('a', false)
    await waitFor(() => a.services.raft.summary().role === 'leader', 'a to lead its new group', DEADLINE_MS)
    const api = await startHttpApi({ host: '127.0.0.1', port: 0, token: null, routes: raftRoutes(a.services.raft), log: silentLogger })
    try {
      const put = await fetch(`${api.url}/v1/kv/colour`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: 'blue' })
      expect(put.status).to.equal(200)
      const got = await (await fetch(`${api.url}/v1/kv/colour`)).json()
      expect(got).to.include({ value: 'blue' })
      // the status routes were not mounted
      expect((await fetch(`${api.url}/v1/status`)).status).to.equal(404)
    } finally {
      await api.close()
    }
  })

  it('the Raft routes mounted on the app\'s own HTTP server: served, and a request from another origin refused', async () => {
    const a = await raftNode('a', false)
    await waitFor(() => a.services.raft.summary().role === 'leader', 'a to lead its new group', DEADLINE_MS)
    let ownOrigin = (_origin: string): boolean => false
    const handler = createApiHandler({ routes: raftRoutes(a.services.raft), token: null, loopbackHostsOnly: true, isOwnOrigin: (origin) => ownOrigin(origin), log: silentLogger })
    // the app's server: accord's routes under /v1/kv, its own elsewhere
    const server = createServer((request, response) => {
      if (request.url?.startsWith('/v1/kv/') === true) { handler(request, response); return }
      response.end('the app\'s own page')
    })
    await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
    const { port } = server.address() as AddressInfo
    ownOrigin = ownOriginCheck('127.0.0.1', port)
    const url = `http://127.0.0.1:${port}`
    try {
      const put = await fetch(`${url}/v1/kv/shape`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: 'round' })
      expect(put.status).to.equal(200)
      expect(await (await fetch(`${url}/v1/kv/shape`)).json()).to.include({ value: 'round' })
      expect(await (await fetch(`${url}/`)).text()).to.equal('the app\'s own page')
      const foreign = await fetch(`${url}/v1/kv/shape`, { method: 'DELETE', headers: { origin: 'http://evil.example' } })
      expect(foreign.status).to.equal(403)
      expect(await (await fetch(`${url}/v1/kv/shape`)).json()).to.include({ value: 'round' })
    } finally {
      server.closeAllConnections()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  })

  it('a node stopped and started again keeps its group and its data', async () => {
    const a = await raftNode('a', false)
    await waitFor(() => a.services.raft.summary().role === 'leader', 'a to lead its new group', DEADLINE_MS)
    await a.services.raft.put('kept', 'yes')
    const termBefore = a.services.raft.summary().term
    await a.stop()
    await a.start()
    await waitFor(() => a.services.raft.summary().role === 'leader', 'a to lead again', DEADLINE_MS)
    const { value } = await a.services.raft.read('kept', 'linearizable')
    expect(new TextDecoder().decode(value ?? new Uint8Array())).to.equal('yes')
    expect(a.services.raft.summary().term).to.be.greaterThan(termBefore)
    await a.services.raft.put('after', 'restart')
  })
})
