import { writeFile } from 'node:fs/promises'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import { UserError } from '../../node/errors.ts'
import { addressOf, connectedMembers, TestCluster, waitFor } from '../lib/nodes.ts'
import type { AccordNode } from '../../node/index.ts'
import type { Libp2p } from '@libp2p/interface'

describe('discovery (real libp2p over TCP on loopback)', function () {
  this.timeout(120_000)
  let cluster: TestCluster

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => { await cluster.stop() })

  it('8 nodes bootstrapped only from node 0 find all 7 others through DHT walks, all over /noise', async () => {
    const first = await cluster.add()
    const bootstrap = addressOf(first)
    for (let i = 1; i < 8; i++) { await cluster.add({ bootstrap: [bootstrap] }) }

    const ids = cluster.nodes.map(n => n.libp2p.peerId.toString())
    await waitFor(async () => {
      const seen = cluster.nodes.map(connectedMembers)
      return seen.every((members, i) => members.length === 7 && !members.includes(ids[i]))
    }, 'every node to see the 7 others')

    for (const [i, node] of cluster.nodes.entries()) {
      expect(connectedMembers(node)).to.deep.equal(ids.filter((_, j) => j !== i).sort())
      const status = await node.status()
      expect(status.peers.length).to.be.greaterThan(0)
      for (const peer of status.peers) { expect(peer.encryption).to.deep.equal(['/noise']) }
      for (const connection of node.libp2p.getConnections()) { expect(connection.encryption).to.equal('/noise') }
    }
    // Nodes other than 0 were told only of node 0: they must have dialled
    // peers that only DHT walks revealed to them.
    const dialledByWalk = cluster.nodes.slice(1).some(n => n.libp2p.getConnections().some(c => c.direction === 'outbound' && !c.remotePeer.equals(first.libp2p.peerId)))
    expect(dialledByWalk).to.equal(true)
  })

  describe('public mode', () => {
    const standIns: Libp2p[] = []

    afterEach(async () => {
      await Promise.all(standIns.splice(0).map(async n => { await n.stop() }))
    })

    /** A plain DHT server, as the public Amino bootstrap peers are. */
    async function publicBootstrapStandIn (): Promise<Libp2p> {
      const node = await createLibp2p({
        addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
        transports: [tcp()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        connectionManager: { inboundConnectionThreshold: 100 },
        services: {
          identify: identify(),
          ping: ping(),
          dht: kadDHT({ clientMode: false, peerInfoMapper: passthroughMapper })
        }
      })
      standIns.push(node)
      return node
    }

    it('members of two clusters rendezvous on the public DHT and each finds exactly its own members', async () => {
      const bootstraps = await Promise.all([publicBootstrapStandIn(), publicBootstrapStandIn()])
      const bootstrap = bootstraps.map(n => n.getMultiaddrs()[0].toString())
      const config = { public: true, dhtKeepPrivateAddresses: true, bootstrap }
      const a: AccordNode[] = []
      const b: AccordNode[] = []
      // the first of each cluster founds it; the others join with its tokens,
      // asking the members they find through the rendezvous
      for (const [group, name, size] of [[a, 'cluster-a', 4], [b, 'cluster-b', 2]] as const) {
        for (let i = 0; i < size; i++) {
          const joinToken = i === 0 ? undefined : (await group[0].admission.createJoinToken()).token
          group.push(await cluster.add({ ...config, cluster: name }, { joinToken }))
        }
      }

      const idsOf = (nodes: AccordNode[]): string[] => nodes.map(n => n.libp2p.peerId.toString())
      const othersIn = (nodes: AccordNode[], node: AccordNode): string[] => idsOf(nodes.filter(n => n !== node)).sort()
      await waitFor(async () => {
        for (const group of [a, b]) {
          for (const node of group) {
            if (connectedMembers(node).length !== group.length - 1) { return false }
          }
        }
        return true
      }, 'each cluster to find its members')

      for (const group of [a, b]) {
        for (const node of group) {
          const status = await node.status()
          expect(status.mode).to.equal('public')
          expect(status.members.map(m => m.peerId).sort()).to.deep.equal(othersIn(group, node))
        }
      }
    })
  })

  it('a node with a private-network key refuses a node without it', async () => {
    const keyFile = `${await cluster.newDataDir()}/swarm.key`
    await writeFile(keyFile, '/key/swarm/psk/1.0.0/\n/base16/\n' + 'ab'.repeat(32) + '\n')

    const guarded = await cluster.add({ pnetKeyFile: keyFile })
    const insider = await cluster.add({ pnetKeyFile: keyFile, bootstrap: [addressOf(guarded)] })
    await waitFor(() => connectedMembers(guarded).includes(insider.libp2p.peerId.toString()), 'the node with the key to join')

    await expect(cluster.add({ bootstrap: [addressOf(guarded)] })).to.eventually.be.rejectedWith(UserError, /cannot reach any bootstrap peer/)
    const members = connectedMembers(guarded)
    expect(members).to.deep.equal([insider.libp2p.peerId.toString()])
  })
})
