import { expect } from 'aegir/chai'
import { clusterProtocol } from '../../node/constants.ts'
import { addressOf, TestCluster, waitFor } from '../lib/nodes.ts'
import type { AccordNode } from '../../node/index.ts'
import type { StreamHandler } from '@libp2p/interface'

/** libp2p's identify protocol (@libp2p/identify does not export it), with its stream limits. */
const IDENTIFY_PROTOCOL = '/ipfs/id/1.0.0'
/** Bounds a hung wait only (below the test timeout, so a failure names what it waited for). */
const WAIT_DEADLINE_MS = 30_000

interface RefusalControl {
  refusing: boolean
  /** Identify requests refused, by the member's connection id (a test has one or two connections). */
  refusedByConnection: Map<string, number>
}

describe('discovery identify retries (real libp2p over TCP on loopback)', function () {
  this.timeout(90_000)
  let cluster: TestCluster

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => { await cluster.stop() })

  const idOf = (node: AccordNode): string => node.libp2p.peerId.toString()

  /**
   * Starts a member that refuses the identify requests made to it (not its
   * own) while `refusing` holds, without changing the protocols it
   * announces: its identify handler is wrapped (libp2p's Identify class has
   * a public handleProtocol that its exported interface leaves out).
   */
  async function refusingMember (bootstrap: string[] = []): Promise<{ node: AccordNode, control: RefusalControl }> {
    const node = await cluster.add({ raft: false, bootstrap })
    const control: RefusalControl = { refusing: true, refusedByConnection: new Map() }
    const identifyService = node.libp2p.services.identify as unknown as { handleProtocol: StreamHandler }
    await node.libp2p.handle(IDENTIFY_PROTOCOL, async (stream, connection) => {
      if (control.refusing) {
        control.refusedByConnection.set(connection.id, (control.refusedByConnection.get(connection.id) ?? 0) + 1)
        stream.abort(new Error('identify refused by the test'))
        return
      }
      await identifyService.handleProtocol(stream, connection)
    }, { force: true, maxInboundStreams: 1, maxOutboundStreams: 1 })
    return { node, control }
  }

  /**
   * Whether `observer` has identified `member`: its protocol list (which
   * only identify brings whole) names the cluster protocol. Membership
   * itself comes from admission; identify is what kad-dht and the
   * public-mode join need.
   */
  const identified = async (observer: AccordNode, member: AccordNode): Promise<boolean> =>
    (await observer.libp2p.peerStore.get(member.libp2p.peerId).catch(() => null))?.protocols.includes(clusterProtocol('accord')) === true

  async function expectIdentifiedOnceItAnswers (observer: AccordNode, member: AccordNode, control: RefusalControl): Promise<void> {
    // libp2p's identify as the connection opened, then discovery's first retry
    await waitFor(() => [...control.refusedByConnection.values()].some(n => n >= 2), 'two identify requests on one connection to be refused', WAIT_DEADLINE_MS)
    expect(await identified(observer, member)).to.equal(false)
    const connectionIds = observer.libp2p.getConnections(member.libp2p.peerId).map(c => c.id)
    expect(connectionIds).to.have.length(1)

    control.refusing = false
    await waitFor(async () => identified(observer, member), 'the member to be identified once it answers', WAIT_DEADLINE_MS)
    // recorded by identifying the open connection again, not through a new one
    expect(observer.libp2p.getConnections(member.libp2p.peerId).map(c => c.id)).to.include(connectionIds[0])
  }

  // What a 32-node cluster on two cores showed: identify on a connection
  // failed twice (libp2p's own run, then one retry), the connection stayed
  // open, and the peer was never recorded as a member.
  it('a member whose identify fails more than once is identified once it answers, over the same connection', async () => {
    const helper = await cluster.add({ raft: false })
    const { node: member, control } = await refusingMember([addressOf(helper)])
    // the helper answers identify, so the observer's DHT walks run as usual
    const observer = await cluster.add({ bootstrap: [addressOf(helper), addressOf(member)], raft: false })
    await expectIdentifiedOnceItAnswers(observer, member, control)
    expect(await identified(observer, helper)).to.equal(true)
    expect(observer.members().find(m => m.peerId === idOf(member))?.connected).to.equal(true)
  })

  // With no identified peer the DHT routing table is empty and kad-dht holds
  // a walk until a peer is added, for up to a minute: identify retries must
  // not wait for the walk.
  it('a node whose only peer refuses identify at first identifies it once it answers, without waiting for a DHT walk', async () => {
    const { node: member, control } = await refusingMember()
    const observer = await cluster.add({ bootstrap: [addressOf(member)], raft: false })
    await expectIdentifiedOnceItAnswers(observer, member, control)
  })
})
