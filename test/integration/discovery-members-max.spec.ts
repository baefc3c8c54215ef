import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { LevelDatastore } from 'datastore-level'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { clusterAdmission } from '../../node/admission/admission.ts'
import { foundCluster } from '../../node/admission/credentials.ts'
import { defaultConfig } from '../../node/config.ts'
import { clusterProtocol } from '../../node/constants.ts'
import { clusterDiscovery } from '../../node/discovery.ts'
import { buildLibp2p } from '../../node/libp2p.ts'
import { TestCluster, waitFor } from '../lib/nodes.ts'
import type { AccordNode } from '../../node/index.ts'
import type { AccordOwnServices, BaseServices } from '../../node/libp2p.ts'
import type { Libp2p } from '@libp2p/interface'

interface LogRecord {
  level: number
  msg: string
  peer?: string
  membersMax?: number
}

const PINO_WARN = 40
const TABLE_FULL = 'member table full; peer not recorded'
/** Bounds a hung wait only (below the test timeout, so a failure names what it waited for). */
const WAIT_DEADLINE_MS = 20_000

describe('discovery member table bound (real libp2p over TCP on loopback)', function () {
  this.timeout(60_000)
  let cluster: TestCluster
  let observer: Libp2p<BaseServices & Pick<AccordOwnServices, 'admission' | 'discovery'>>
  let datastore: LevelDatastore
  let records: LogRecord[]

  // The node under test is assembled like an accord node (buildLibp2p), but
  // its discovery is built here so the bound can be 2 instead of 4096.
  beforeEach(async () => {
    cluster = new TestCluster()
    const dataDir = await cluster.newDataDir()
    datastore = new LevelDatastore(join(dataDir, 'datastore'))
    await datastore.open()
    const config = { ...defaultConfig(dataDir), listen: ['/ip4/127.0.0.1/tcp/0'], api: null }
    // the observer founds the cluster, so the members join through it with its tokens
    const privateKey = await generateKeyPair('Ed25519')
    const credentials = await foundCluster(config.cluster, peerIdFromPrivateKey(privateKey), Date.now())
    records = []
    const log = pino({ level: 'info' }, { write (line: string) { records.push(JSON.parse(line) as LogRecord) } })
    observer = await buildLibp2p<Pick<AccordOwnServices, 'admission' | 'discovery'>>({
      config,
      privateKey,
      datastore,
      registry: new Registry(),
      version: 'test',
      services: {
        admission: clusterAdmission({ cluster: config.cluster, credentials, closeUnadmitted: false }),
        discovery: clusterDiscovery({ intervalMs: 1000, log, membersMax: 2 })
      }
    })
    await observer.start()
  })

  afterEach(async () => {
    await observer.stop()
    await datastore.close()
    await cluster.stop()
  })

  const idOf = (node: AccordNode): string => node.libp2p.peerId.toString()
  const memberIds = (): string[] => observer.services.discovery.members().map(m => m.peerId)
  const refused = (): string[] => records.filter(r => r.msg === TABLE_FULL).map(r => r.peer ?? '')

  it('with membersMax 2, a third and fourth member are refused and logged; the first two stay members', async () => {
    const addMember = async (): Promise<AccordNode> => cluster.add({ bootstrap: [observer.getMultiaddrs()[0].toString()], raft: false }, { joinToken: (await observer.services.admission.createJoinToken()).token })
    const first = await addMember()
    await waitFor(() => memberIds().includes(idOf(first)), 'the first member to be recorded', WAIT_DEADLINE_MS)
    const second = await addMember()
    await waitFor(() => memberIds().includes(idOf(second)), 'the second member to be recorded', WAIT_DEADLINE_MS)
    const extra = [await addMember(), await addMember()]
    await waitFor(() => extra.every(n => refused().includes(idOf(n))), 'the third and fourth member to be refused', WAIT_DEADLINE_MS)

    const kept = [idOf(first), idOf(second)].sort()
    expect(memberIds()).to.deep.equal(kept)
    expect(observer.services.discovery.members().every(m => m.connected)).to.equal(true)
    // refused for the bound alone: they are connected and announce the cluster protocol
    for (const node of extra) {
      expect(observer.getConnections(node.libp2p.peerId)).to.not.have.length(0)
      expect((await observer.peerStore.get(node.libp2p.peerId)).protocols).to.include(clusterProtocol('accord'))
    }
    const warnings = records.filter(r => r.msg === TABLE_FULL)
    expect([...new Set(refused())].sort()).to.deep.equal(extra.map(idOf).sort())
    for (const warning of warnings) {
      expect(warning.level).to.equal(PINO_WARN)
      expect(warning.membersMax).to.equal(2)
    }

    // a fresh identify of a recorded member (peer:update with the cluster
    // protocol) while the table is full keeps it, and is not refused
    await first.libp2p.handle('/accord-test/extra/1.0.0', async (stream) => { await stream.close() })
    await observer.services.identify.identify(observer.getConnections(first.libp2p.peerId)[0])
    expect((await observer.peerStore.get(first.libp2p.peerId)).protocols).to.include('/accord-test/extra/1.0.0')
    expect(memberIds()).to.deep.equal(kept)
    expect(refused()).to.not.include(idOf(first))
    expect(refused()).to.not.include(idOf(second))
  })
})
