/**
 * Membership news on gossipsub (real libp2p over TCP on loopback): three
 * members that run SWIM beside gossipsub, in an app's own libp2p nodes
 * with accord's gossipsub options, and plain peers that run gossipsub (and,
 * for the admitted ones, admission) but no SWIM. SWIM's protocol period is
 * stretched to hours, so what spreads in this test spreads on the topic.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { expect } from 'aegir/chai'
import { encode } from 'cborg'
import { createLibp2p } from 'libp2p'
import { Registry } from 'prom-client'
import { clusterAdmission } from '../../node/admission/admission.ts'
import { GOSSIP_BYTES_METRIC } from '../../node/gossip-metrics.ts'
import { swimMembership } from '../../node/membership/service.ts'
import { accordGossipsubOptions, ACCORD_SCORE_THRESHOLDS, membershipTopic } from '../../node/membership/topic.ts'
import { refusalCount } from '../lib/metrics.ts'
import { waitFor } from '../lib/wait.ts'
import type { Admission } from '../../node/admission/admission.ts'
import type { MembershipService } from '../../node/membership/service.ts'
import type { GossipSub } from '@libp2p/gossipsub'
import type { Identify } from '@libp2p/identify'
import type { Libp2p } from '@libp2p/interface'

/** Bounds a hung wait only (below the test timeout, so a failure names what it waited for). */
const DEADLINE_MS = 20_000
const CLUSTER = 'gossip-test'
const TOPIC = membershipTopic(CLUSTER)
const transports = { transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] }
const loopback = { listen: ['/ip4/127.0.0.1/tcp/0'] }
/** SWIM that almost never probes or syncs: a period of 10^6 ticks (a day at 100 ms). */
const QUIET_SWIM = { probeIntervalTicks: 1_000_000, probeTimeoutTicks: 500_000, syncIntervalTicks: 0 }

type MemberNode = Libp2p<{ identify: Identify, pubsub: GossipSub, admission: Admission, membership: MembershipService }>
type GossipPeer = Libp2p<{ identify: Identify, pubsub: GossipSub, admission?: Admission }>

async function metricValue (registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name)
  if (metric == null) { return 0 }
  const { values } = await metric.get()
  return values.filter(v => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((n, v) => n + v.value, 0)
}

function text (value: string): Uint8Array {
  return new TextEncoder().encode(value)
}

describe('membership news on gossipsub (real libp2p over TCP on loopback)', function () {
  this.timeout(90_000)
  let root: string
  const registries = new Map<Libp2p, Registry>()
  const started: Libp2p[] = []
  let a: MemberNode
  let b: MemberNode
  let c: MemberNode
  let token: string

  const address = (node: Libp2p): string => node.getMultiaddrs()[0].toString()
  const registry = (node: Libp2p): Registry => registries.get(node)!
  const id = (node: Libp2p): string => node.peerId.toString()

  async function member (name: string, joining: boolean): Promise<MemberNode> {
    const metrics = new Registry()
    const node = await createLibp2p({
      addresses: loopback,
      ...transports,
      services: {
        identify: identify(),
        pubsub: gossipsub({ ...accordGossipsubOptions(CLUSTER), allowPublishToZeroTopicPeers: true }),
        admission: clusterAdmission({ cluster: CLUSTER, dataDir: join(root, name), join: joining, registry: metrics }),
        membership: swimMembership({ registry: metrics, core: QUIET_SWIM })
      }
    })
    registries.set(node, metrics)
    started.push(node)
    return node
  }

  /** A peer that runs gossipsub, subscribed to the topic, and no SWIM; admitted (joined with a token) unless `stranger`. */
  async function gossipPeer (stranger: boolean): Promise<GossipPeer> {
    const name = `peer-${started.length}`
    const node: GossipPeer = await createLibp2p({
      addresses: loopback,
      ...transports,
      services: {
        identify: identify(),
        pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', allowPublishToZeroTopicPeers: true }),
        ...(stranger ? {} : { admission: clusterAdmission({ cluster: CLUSTER, dataDir: join(root, name), join: true }) })
      }
    })
    started.push(node)
    node.services.pubsub.subscribe(TOPIC)
    if (stranger) {
      await node.dial(a.getMultiaddrs())
    } else {
      await node.services.admission!.join(token, [address(a)])
      await waitFor(() => a.services.admission.isAdmitted(id(node)), 'the peer to be admitted', DEADLINE_MS)
    }
    await waitFor(() => node.services.pubsub.getSubscribers(TOPIC).some(p => p.equals(a.peerId)), 'the peer to see a on the topic', DEADLINE_MS)
    return node
  }

  async function publish (peer: GossipPeer, data: Uint8Array): Promise<void> {
    await peer.services.pubsub.publish(TOPIC, data)
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-gossip-'))
    a = await member('a', false)
    token = (await a.services.admission.createJoinToken()).token
    b = await member('b', true)
    c = await member('c', true)
    await b.services.admission.join(token, [address(a)])
    await c.services.admission.join(token, [address(a)])
    await c.dial(b.getMultiaddrs())
    const nodes = [a, b, c]
    for (const node of nodes) {
      await waitFor(() => node.services.membership.members().filter(m => m.state === 'alive').length === 3, `${id(node)} to see three members alive`, DEADLINE_MS)
      await waitFor(() => nodes.every(other => other === node || node.services.pubsub.getSubscribers(TOPIC).some(p => p.equals(other.peerId))), `${id(node)} to see the others on the topic`, DEADLINE_MS)
    }
  })

  after(async () => {
    await Promise.all(started.map(async node => { await node.stop() }))
    await rm(root, { recursive: true, force: true })
  })

  it('subscribes to accord/<cluster>/membership/1 and says so in status()', () => {
    expect(a.services.membership.status()?.gossipTopic).to.equal(TOPIC)
    expect(a.services.pubsub.getTopics()).to.include(TOPIC)
  })

  it('a member\'s new metadata reaches the others on the topic: each applies it from there (its gossip counter moves), and the bytes are counted', async () => {
    const news = { a: a.services.membership.status()!.counters.gossipNews, c: c.services.membership.status()!.counters.gossipNews }
    const bytesOut = await metricValue(registry(b), GOSSIP_BYTES_METRIC, { topic: TOPIC, direction: 'out' })
    const bytesIn = await metricValue(registry(a), GOSSIP_BYTES_METRIC, { topic: TOPIC, direction: 'in' })
    const updated = new Set<Libp2p>()
    const author = id(b)
    for (const node of [a, c]) {
      node.services.membership.addEventListener('member:update', (event) => {
        if (event.detail.peerId === author && new TextDecoder().decode(event.detail.meta) === '{"role":"gossip"}') { updated.add(node) }
      })
    }
    b.services.membership.setMeta(text('{"role":"gossip"}'))
    await waitFor(() => updated.size === 2, 'member:update of b at a and c', DEADLINE_MS)
    // SWIM would have brought it as well, later; on the topic it was news, so the topic carried it first
    expect(a.services.membership.status()!.counters.gossipNews).to.be.greaterThan(news.a)
    expect(c.services.membership.status()!.counters.gossipNews).to.be.greaterThan(news.c)
    expect(await metricValue(registry(b), GOSSIP_BYTES_METRIC, { topic: TOPIC, direction: 'out' })).to.be.greaterThan(bytesOut)
    expect(await metricValue(registry(a), GOSSIP_BYTES_METRIC, { topic: TOPIC, direction: 'in' })).to.be.greaterThan(bytesIn)
  })

  it('a suspicion published by an admitted peer is refuted at once: the refutation counter rises, and the refutation reaches the others on the topic', async () => {
    const accuser = await gossipPeer(false)
    const accused = a
    const incarnation = accused.services.membership.status()!.incarnation
    const refutations = await metricValue(registry(a), 'accord_membership_refutations_total')
    await publish(accuser, encode({ updates: [{ kind: 'suspect', id: id(a), incarnation, from: id(accuser) }] }))
    await waitFor(async () => await metricValue(registry(a), 'accord_membership_refutations_total') > refutations, 'a to refute', DEADLINE_MS)
    expect(a.services.membership.status()!.counters.refutations).to.be.greaterThan(0)
    expect(a.services.membership.status()!.incarnation).to.be.greaterThan(incarnation)
    for (const node of [b, c]) {
      await waitFor(() => (node.services.membership.members().find(m => m.peerId === id(accused))?.incarnation ?? 0) > incarnation, `${id(node)} to hear a's refutation`, DEADLINE_MS)
      expect(node.services.membership.stateOf(id(accused))).to.equal('alive')
    }
  })

  it('a message from a peer not admitted (yet) is ignored and counted, changes nothing, and costs its sender no score', async () => {
    // a member that just connected forwards before its certificate exchange ends: a penalty would graylist it
    const stranger = await gossipPeer(true)
    const before = await refusalCount({ metrics: registry(a) }, TOPIC, 'not-admitted')
    await publish(stranger, encode({ updates: [{ kind: 'dead', id: id(b), incarnation: 1, from: id(stranger) }] }))
    await waitFor(async () => await refusalCount({ metrics: registry(a) }, TOPIC, 'not-admitted') > before, 'the stranger\'s message to be refused', DEADLINE_MS)
    expect(a.services.membership.stateOf(id(b))).to.equal('alive')
    // gossipsub's own count of invalid deliveries, which its score is computed from (P4)
    const stats = (a.services.pubsub as unknown as { score: { peerStats: Map<string, { topics: Record<string, { invalidMessageDeliveries: number } | undefined> }> } }).score.peerStats.get(id(stranger))
    expect(stats?.topics[TOPIC]?.invalidMessageDeliveries ?? 0).to.equal(0)
  })

  it('malformed, oversize and wrong-shaped messages of admitted peers are rejected and counted, and their senders graylisted', async () => {
    const cases: Array<[string, Uint8Array]> = [
      ['malformed', Uint8Array.of(0xff, 0x00, 0x13, 0x37)],
      ['too-large', new Uint8Array(100 * 1024).fill(7)],
      ['invalid-message', encode({ updates: [{ kind: 'dead', id: id(b), incarnation: -1, from: 'x' }] })]
    ]
    const target = a
    const scoreOf = (peer: Libp2p): number => (target.services.pubsub as unknown as { getScore(peer: string): number }).getScore(id(peer))
    const rejected = await metricValue(registry(a), 'accord_membership_gossip_messages_total', { result: 'rejected' })
    for (const [reason, data] of cases) {
      // one peer per case: the first invalid message graylists its sender, whose next ones gossipsub drops unread
      const peer = await gossipPeer(false)
      const before = await refusalCount({ metrics: registry(target) }, TOPIC, reason)
      await publish(peer, data)
      await waitFor(async () => await refusalCount({ metrics: registry(target) }, TOPIC, reason) > before, `the ${reason} message to be rejected`, DEADLINE_MS)
      await waitFor(() => scoreOf(peer) < ACCORD_SCORE_THRESHOLDS.graylistThreshold, `the sender of the ${reason} message to be graylisted`, DEADLINE_MS)
    }
    expect(await metricValue(registry(a), 'accord_membership_gossip_messages_total', { result: 'rejected' })).to.equal(rejected + cases.length)
    expect(a.services.membership.stateOf(id(b))).to.equal('alive')
  })

  it('a message whose author is unknown here, relayed by an admitted peer, is not applied nor forwarded, and its relay is not punished', async () => {
    const relay = await gossipPeer(false)
    const author: GossipPeer = await createLibp2p({ addresses: loopback, ...transports, services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) } })
    started.push(author)
    author.services.pubsub.subscribe(TOPIC)
    await author.dial(relay.getMultiaddrs())
    await waitFor(() => author.services.pubsub.getSubscribers(TOPIC).some(p => p.equals(relay.peerId)), 'the author to see the relay on the topic', DEADLINE_MS)
    // the relay forwards to its mesh: wait until a is in it
    await waitFor(() => (relay.services.pubsub as unknown as { getMeshPeers(topic: string): string[] }).getMeshPeers(TOPIC).includes(id(a)), 'a in the relay\'s mesh', DEADLINE_MS)
    const before = await refusalCount({ metrics: registry(a) }, TOPIC, 'author-unknown')
    await publish(author, encode({ updates: [{ kind: 'dead', id: id(b), incarnation: 1, from: id(author) }] }))
    await waitFor(async () => await refusalCount({ metrics: registry(a) }, TOPIC, 'author-unknown') > before, 'the relayed message to be refused', DEADLINE_MS)
    expect(a.services.membership.stateOf(id(b))).to.equal('alive')
    expect((a.services.pubsub as unknown as { getScore(peer: string): number }).getScore(id(relay))).to.be.at.least(0)
  })
})
