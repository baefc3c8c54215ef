/**
 * The outbound quota's choices on their own, over a fake node: members
 * first, at most dialsPerRefillMax dials a refill, chosen peers tagged
 * before the dial and untagged when it fails.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { KAD_PEER_TAG, OUTBOUND_QUOTA, OUTBOUND_TAG, OutboundQuota } from '../../node/outbound-quota.ts'
import type { Libp2p, Peer, PeerId, Tag } from '@libp2p/interface'

const MEMBER = 'accord-member'

async function peerId (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

/** A node whose peer store lists `peers` (with their tags) and whose dials succeed for `reachable` only. */
function fakeNode (self: PeerId, peers: Peer[], reachable: Set<string>): { node: Libp2p, dials: string[], tags: Map<string, Map<string, Tag>> } {
  const dials: string[] = []
  const tags = new Map(peers.map(p => [p.id.toString(), p.tags]))
  const node = {
    peerId: self,
    status: 'started',
    getConnections: () => [],
    dial: async (peer: PeerId) => {
      dials.push(peer.toString())
      if (!reachable.has(peer.toString())) { throw new Error('unreachable') }
      return {}
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
    expect(OUTBOUND_QUOTA).to.deep.equal({ outboundPeersMin: 4, intervalMs: 10_000, dialTimeoutMs: 10_000, dialsPerRefillMax: 8 })
  })
})
