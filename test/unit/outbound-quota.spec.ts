/**
 * The outbound quota's choices on their own, over a fake node: members
 * first, at most dialsPerRefillMax dials a refill, chosen peers tagged
 * before the dial and untagged when it fails, other peers spread over
 * their subnets.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { KAD_PEER_TAG, OUTBOUND_QUOTA, OUTBOUND_TAG, OutboundQuota } from '../../node/outbound-quota.ts'
import type { Libp2p, Peer, PeerId, Tag } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** libp2p's ComponentLogger, silent (what the outbound quota logs is not asserted on). */
const silentComponentLogger = { forComponent: () => Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false }) }

const MEMBER = 'accord-member'

async function peerId (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

/**
 * A node whose peer store lists `peers` (with their tags) and whose dials
 * succeed for `reachable` only, reaching the address `reached` gives for
 * the peer (else its first); a connection it dialled stays open.
 */
function fakeNode (self: PeerId, peers: Peer[], reachable: Set<string>, reached = new Map<string, Multiaddr>()): { node: Libp2p, dials: string[], tags: Map<string, Map<string, Tag>> } {
  const dials: string[] = []
  const connections: Array<{ remotePeer: PeerId, remoteAddr: Multiaddr, status: string }> = []
  const tags = new Map(peers.map(p => [p.id.toString(), p.tags]))
  const node = {
    peerId: self,
    status: 'started',
    logger: silentComponentLogger,
    getConnections: (peer: PeerId) => connections.filter(c => c.remotePeer.equals(peer)),
    dial: async (peer: PeerId) => {
      dials.push(peer.toString())
      if (!reachable.has(peer.toString())) { throw new Error('unreachable') }
      const remoteAddr = reached.get(peer.toString()) ?? peers.find(p => p.id.equals(peer))?.addresses[0]?.multiaddr ?? multiaddr('/dns4/example.com/tcp/1')
      const connection = { remotePeer: peer, remoteAddr, status: 'open' }
      connections.push(connection)
      return connection
    },
    peerStore: {
      all: async (query: { filters: Array<(peer: Peer) => boolean> }) => peers.filter(p => query.filters.every(f => f(p))),
      merge: async (peer: PeerId, data: { tags: Record<string, Tag | undefined> }) => {
        const mine = tags.get(peer.toString()) ?? new Map<string, Tag>()
        for (const [name, tag] of Object.entries(data.tags)) {
          if (tag == null) { mine.delete(name) } else { mine.set(name, tag) }
        }
        tags.set(peer.toString(), mine)
      }
    }
  }
  return { node: node as unknown as Libp2p, dials, tags }
}

async function peerTagged (...names: string[]): Promise<Peer> {
  return { id: await peerId(), addresses: [], protocols: [], metadata: new Map(), tags: new Map(names.map(n => [n, { value: 1 }])) }
}

/** A peer with `tags` whose peer-store addresses are `addresses`. */
async function peerAt (addresses: string[], ...tags: string[]): Promise<Peer> {
  return { ...await peerTagged(...tags), addresses: addresses.map(a => ({ multiaddr: multiaddr(a), isCertified: false })) }
}

const ids = (peers: Peer[]): string[] => peers.map(p => p.id.toString())

describe('outbound quota', () => {
  it('chooses members before routing-table peers, and only peers it may dial', async () => {
    const self = await peerId()
    const kad = await Promise.all([peerTagged(KAD_PEER_TAG), peerTagged(KAD_PEER_TAG), peerTagged(KAD_PEER_TAG)])
    const members = await Promise.all([peerTagged(MEMBER), peerTagged(MEMBER, KAD_PEER_TAG)])
    const untagged = await peerTagged()
    const denied = await peerTagged(MEMBER)
    const all = [...kad, ...members, untagged, denied]
    const { node, dials } = fakeNode(self, all, new Set(all.map(p => p.id.toString())))
    const quota = new OutboundQuota(node, { outboundPeersMin: 3, memberTag: MEMBER, isDenied: (peer) => peer.equals(denied.id) })
    await quota.refill()
    expect(dials.slice(0, 2)).to.have.members(members.map(p => p.id.toString()))
    expect(kad.map(p => p.id.toString())).to.include(dials[2])
    expect(dials).to.have.length(3)
    expect(quota.chosen).to.deep.equal(dials)
  })

  it('tries at most dialsPerRefillMax dials a refill, and untags the peers it could not reach', async () => {
    const self = await peerId()
    const dead = await Promise.all(Array.from({ length: 6 }, async () => peerTagged(KAD_PEER_TAG)))
    const { node, dials, tags } = fakeNode(self, dead, new Set())
    const quota = new OutboundQuota(node, { outboundPeersMin: 4, dialsPerRefillMax: 2, memberTag: MEMBER })
    await quota.refill()
    expect(dials).to.have.length(2)
    expect(quota.chosen).to.deep.equal([])
    for (const p of dead) { expect(tags.get(p.id.toString())?.has(OUTBOUND_TAG)).to.equal(false) }
    expect(OUTBOUND_QUOTA).to.deep.equal({ outboundPeersMin: 4, intervalMs: 10_000, dialTimeoutMs: 10_000, dialsPerRefillMax: 8, subnetIpv4PrefixBits: 24, subnetIpv6PrefixBits: 48 })
  })

  it('chooses one routing-table peer per subnet while other subnets are left, then more from one subnet', async () => {
    const self = await peerId()
    const crowd = await Promise.all(Array.from({ length: 12 }, async (_, i) => peerAt([`/ip4/192.0.2.${i + 1}/tcp/1`], KAD_PEER_TAG)))
    const few = await Promise.all([
      peerAt(['/ip4/198.51.100.1/tcp/1'], KAD_PEER_TAG),
      peerAt(['/ip6/2001:db8:1::1/tcp/1'], KAD_PEER_TAG),
      // an IPv4-mapped address is its IPv4 subnet: 203.0.113.0/24
      peerAt(['/ip6/::ffff:203.0.113.1/tcp/1'], KAD_PEER_TAG)
    ])
    const all = [...crowd, ...few]
    for (let round = 0; round < 5; round++) {
      const { node } = fakeNode(self, all, new Set(ids(all)))
      const quota = new OutboundQuota(node, { outboundPeersMin: 4, memberTag: MEMBER })
      await quota.refill()
      expect(quota.chosen).to.have.length(4)
      expect(quota.chosen).to.include.members(ids(few))
      expect([...quota.chosenSubnets.values()]).to.have.members(['192.0.2.0/24', '198.51.100.0/24', '2001:db8:1:0:0:0:0:0/48', '203.0.113.0/24'])
    }

    // a later refill counts the subnets already chosen
    const { node } = fakeNode(self, all, new Set(ids(all)))
    const quota = new OutboundQuota(node, { outboundPeersMin: 2, memberTag: MEMBER })
    await quota.refill()
    expect(new Set(quota.chosenSubnets.values()).size).to.equal(2)
  })

  it('keeps members first, wherever they are', async () => {
    const self = await peerId()
    const members = await Promise.all([peerAt(['/ip4/192.0.2.1/tcp/1'], MEMBER), peerAt(['/ip4/192.0.2.2/tcp/1'], MEMBER)])
    const other = await peerAt(['/ip4/198.51.100.1/tcp/1'], KAD_PEER_TAG)
    const { node, dials } = fakeNode(self, [other, ...members], new Set(ids([other, ...members])))
    const quota = new OutboundQuota(node, { outboundPeersMin: 2, memberTag: MEMBER })
    await quota.refill()
    expect(dials).to.have.members(ids(members))
  })

  it('does not choose a peer whose connection reached a subnet with more chosen peers than the one it claimed', async () => {
    const self = await peerId()
    const honest = await peerAt(['/ip4/192.0.2.1/tcp/1'], KAD_PEER_TAG)
    // claims an address of its own /24, but sits next to the honest peer
    const liar = await peerAt(['/ip4/198.51.100.7/tcp/1'], KAD_PEER_TAG)
    const reached = new Map([[liar.id.toString(), multiaddr('/ip4/192.0.2.9/tcp/1')]])
    const peers = [honest]
    const { node, dials, tags } = fakeNode(self, peers, new Set(ids([honest, liar])), reached)
    const quota = new OutboundQuota(node, { outboundPeersMin: 2, memberTag: MEMBER })
    const misplaced: string[] = []
    quota.onMisplaced = (peer, ranked, reached) => misplaced.push(`${peer} ${ranked} ${reached}`)
    await quota.refill()
    expect(quota.chosen).to.deep.equal(ids([honest]))
    peers.push(liar)
    await quota.refill()
    expect(dials).to.deep.equal(ids([honest, liar]))
    expect(quota.chosen).to.deep.equal(ids([honest]))
    expect(quota.misplaced).to.equal(1)
    expect(misplaced).to.deep.equal([`${liar.id.toString()} 198.51.100.0/24 192.0.2.0/24`])
    expect(tags.get(liar.id.toString())?.has(OUTBOUND_TAG)).to.equal(false)

    // connected now, it counts where its connection is: the second of 192.0.2.0/24, no other subnet being left
    await quota.refill()
    expect(quota.chosen).to.have.members(ids([honest, liar]))
  })
})
