/**
 * A Sybil flood over real libp2p (TCP, Noise, kad-dht) on loopback from a
 * few OS processes (test/lib/sybil-process.ts), each dialling from an
 * address of its own /24 (127.21.0.1, 127.22.0.1, ...): every process takes
 * fresh peer ids one after another, each a kad-dht server that connects to
 * a node of a 3-member Raft group and asks it for its closest peers
 * (FIND_NODE), then goes away. Afterwards the node must still hold the
 * honest members in its routing table and in its gossipsub mesh for the
 * membership topic, see them connected, and serve a write through Raft.
 * What the flood did (ids connected, answered, refused; the node's
 * refusal counters) is printed.
 */
import { expect } from 'aegir/chai'
import { subnetOf } from '../../node/budgets.ts'
import { membershipTopic } from '../../node/membership/topic.ts'
import { KAD_PEER_TAG } from '../../node/outbound-quota.ts'
import { refusalCounts } from '../lib/metrics.ts'
import { addressOf, formRaftGroup, TestCluster, waitFor } from '../lib/nodes.ts'
import { SybilFlood, sybilSource } from '../lib/sybil-flood.ts'
import type { AccordNode } from '../../node/index.ts'
import type { Connection } from '@libp2p/interface'

/** Fresh peer ids in CI (ACCORD_SYBIL_IDS=1000 for the full size). */
const SYBIL_IDS = Number(process.env.ACCORD_SYBIL_IDS ?? 100)
/** OS processes the ids are shared between ("a few processes"), one /24 each. */
const SYBIL_PROCESSES = 4
/** Only keeps a broken test from hanging: never asserted on. */
const SETTLE_DEADLINE_MS = 30_000
/** formation, then about 0.3 s per id on a loaded 2-core machine (0.4 s allowed). */
const TEST_TIMEOUT_MS = 90_000 + SYBIL_IDS * 400

async function isInRoutingTable (node: AccordNode, peer: AccordNode): Promise<boolean> {
  try {
    return (await node.libp2p.peerStore.get(peer.libp2p.peerId)).tags.has(KAD_PEER_TAG)
  } catch {
    return false
  }
}

/** The peers the node knows to be subscribed to its membership topic (gossipsub's topic peers, from which it grafts its mesh). */
function topicPeers (node: AccordNode): string[] {
  return node.libp2p.services.pubsub.getSubscribers(membershipTopic(node.config.cluster)).map(String)
}

describe('Sybil flood from several processes (real libp2p over TCP on loopback)', function () {
  this.timeout(TEST_TIMEOUT_MS)
  let cluster: TestCluster
  let flood: SybilFlood | undefined

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => {
    // killed whether the test passed, failed or timed out
    await flood?.kill()
    flood = undefined
    await cluster.stop()
  })

  it(`${SYBIL_IDS} fresh peer ids from ${SYBIL_PROCESSES} processes leave the honest members in the node's routing table and among its membership topic's peers, and the node serves writes`, async () => {
    const [target, ...honest] = await formRaftGroup(cluster, 3)
    const honestIds = honest.map(n => n.libp2p.peerId.toString())
    await waitFor(async () => (await Promise.all(honest.map(async h => isInRoutingTable(target, h)))).every(Boolean), 'the members in the routing table', SETTLE_DEADLINE_MS)
    await waitFor(() => honestIds.every(id => topicPeers(target).includes(id)), 'the members among the membership topic\'s peers', SETTLE_DEADLINE_MS)

    // the subnets the node's inbound connections came from during the flood
    const inboundSubnets = new Map<string, number>()
    const onOpen = (event: CustomEvent<Connection>): void => {
      const subnet = event.detail.direction === 'inbound' ? subnetOf(event.detail.remoteAddr, 24, 48)?.subnet : undefined
      if (subnet != null) { inboundSubnets.set(subnet, (inboundSubnets.get(subnet) ?? 0) + 1) }
    }
    target.libp2p.addEventListener('connection:open', onOpen)
    const started = Date.now()
    flood = new SybilFlood(addressOf(target), SYBIL_IDS, SYBIL_PROCESSES, TEST_TIMEOUT_MS)
    const reports = await flood.done()
    const floodMs = Date.now() - started
    target.libp2p.removeEventListener('connection:open', onOpen)

    const sum = (key: 'ids' | 'connected' | 'answered' | 'refused'): number => reports.reduce((total, r) => total + r[key], 0)
    expect(sum('ids')).to.equal(SYBIL_IDS)
    // the flood came from one /24 per process
    const sources = Array.from({ length: SYBIL_PROCESSES }, (_, i) => `${sybilSource(i).replace(/\.1$/, '.0')}/24`)
    expect([...inboundSubnets.keys()]).to.include.members(sources)
    expect(sum('connected')).to.be.greaterThan(0)
    const routingTable = await target.libp2p.peerStore.all({ filters: [p => p.tags.has(KAD_PEER_TAG)] })
    // eslint-disable-next-line no-console
    console.log(`      flood: ${SYBIL_IDS} ids from ${SYBIL_PROCESSES} processes in ${(floodMs / 1000).toFixed(1)} s: connected ${sum('connected')}, FIND_NODE answered ${sum('answered')}, refused ${sum('refused')}; errors ${JSON.stringify(reports.map(r => r.errors))}; node's refusals ${JSON.stringify(await refusalCounts(target))}; routing table ${routingTable.length} peers (${honestIds.length} honest); inbound connections by subnet ${JSON.stringify(Object.fromEntries(inboundSubnets))}`)

    for (const member of honest) { expect(await isInRoutingTable(target, member)).to.equal(true) }
    expect(topicPeers(target)).to.include.members(honestIds)
    expect(target.members().filter(m => m.connected).map(m => m.peerId)).to.include.members(honestIds)
    const put = await fetch(`${target.apiUrl}/v1/kv/after-flood`, { method: 'PUT', body: 'ok' })
    expect(put.status).to.equal(200)
    const got = await fetch(`${target.apiUrl}/v1/kv/after-flood`)
    expect(await got.text()).to.include('ok')
  })
})
