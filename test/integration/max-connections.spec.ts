import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import { TestCluster, waitFor } from '../lib/nodes.ts'
import type { AccordNode } from '../../node/index.ts'
import type { Libp2p } from '@libp2p/interface'

const MAX_CONNECTIONS = 3
/** Bounds a hung wait only: pruning takes milliseconds when it works. */
const SETTLE_DEADLINE_MS = 10_000

describe('--max-connections (real libp2p over TCP on loopback)', function () {
  this.timeout(60_000)
  let cluster: TestCluster
  const dialers: Libp2p[] = []

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => {
    await Promise.all(dialers.splice(0).map(async n => { await n.stop() }))
    await cluster.stop()
  })

  /** A plain libp2p peer that only dials. */
  async function dialer (): Promise<Libp2p> {
    const node = await createLibp2p({
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), ping: ping() }
    })
    dialers.push(node)
    return node
  }

  const connectionCount = (node: AccordNode): number => node.libp2p.getConnections().length

  it(`a node with maxConnections ${MAX_CONNECTIONS} keeps at most ${MAX_CONNECTIONS} connections when 8 peers dial it`, async () => {
    const node = await cluster.add({ maxConnections: MAX_CONNECTIONS, raft: false })
    const target = node.libp2p.getMultiaddrs()[0]
    const settled = async (): Promise<void> => {
      await waitFor(() => connectionCount(node) <= MAX_CONNECTIONS, `at most ${MAX_CONNECTIONS} connections`, SETTLE_DEADLINE_MS)
    }

    // six at once: libp2p may accept several while they upgrade, and must
    // then prune the excess
    const burst = await Promise.all(Array.from({ length: 6 }, dialer))
    await Promise.allSettled(burst.map(async d => d.dial(target)))
    await settled()

    // two more, one after the other, once the node is full
    for (let i = 0; i < 2; i++) {
      await (await dialer()).dial(target).catch(() => {})
      await settled()
    }

    const remotes = node.libp2p.getConnections().map(c => c.remotePeer.toString())
    expect(remotes).to.have.length.within(1, MAX_CONNECTIONS)
    expect(new Set(remotes).size).to.equal(remotes.length)
    const dialerIds = dialers.map(d => d.peerId.toString())
    for (const remote of remotes) { expect(dialerIds).to.include(remote) }
  })
})
