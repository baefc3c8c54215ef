/**
 * The budgets of node/budgets.ts on their own: streams and bytes in
 * flight, inbound connections per host, the DHT store guard, and how
 * wireBudgets routes refusals.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { CONNECTION_BUDGETS, DhtStoreRefusedError, guardDhtStore, hostOf, InboundHostLimiter, MEMBER_TAG, MEMBER_TAG_VALUE, protectMembers, RAFT_CLIENT_BUDGET, recordBudgets, StreamBudget, StreamLease, SubnetLimiter, subnetOf, wireBudgets } from '../../node/budgets.ts'
import { OutboundQuota } from '../../node/outbound-quota.ts'
import type { MultiaddrConnection, PeerId } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'

/** libp2p's ComponentLogger, silent (what the outbound quota logs is not asserted on). */
const silentComponentLogger = { forComponent: () => Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false }) }

const MIB = 1024 * 1024

function lease (value: StreamLease | string): StreamLease {
  if (!(value instanceof StreamLease)) { throw new Error(`expected a lease, got ${value}`) }
  return value
}

/** A socket-level connection as libp2p hands it to the gater: an address and a close event. */
function fakeConnection (address: string): MultiaddrConnection & { close(): void } {
  const target = new EventTarget()
  return Object.assign(target, {
    remoteAddr: multiaddr(address),
    close: () => { target.dispatchEvent(new Event('close')) }
  }) as unknown as MultiaddrConnection & { close(): void }
}

describe('budgets', () => {
  describe('StreamBudget', () => {
    it('refuses a peer\'s stream beyond streamsPerPeerMax, and serves other peers', () => {
      const budget = new StreamBudget({ streamsPerPeerMax: 2, streamsMax: 10 })
      lease(budget.tryAcquire('a'))
      lease(budget.tryAcquire('a'))
      expect(budget.tryAcquire('a')).to.equal('peer-streams')
      lease(budget.tryAcquire('b'))
      expect(budget.usage('a')).to.deep.equal({ streams: 2, bytes: 0 })
    })

    it('refuses any stream beyond streamsMax across peers', () => {
      const budget = new StreamBudget({ streamsPerPeerMax: 2, streamsMax: 3 })
      lease(budget.tryAcquire('a'))
      lease(budget.tryAcquire('a'))
      lease(budget.tryAcquire('b'))
      expect(budget.tryAcquire('b')).to.equal('streams')
      expect(budget.tryAcquire('c')).to.equal('streams')
    })

    it('refuses bytes beyond bytesPerPeerMax and beyond bytesMax; a refused grow adds nothing', () => {
      const budget = new StreamBudget({ bytesPerPeerMax: 100, bytesMax: 150 })
      const a = lease(budget.tryAcquire('a', 60))
      expect(a.grow(40)).to.equal(null)
      expect(a.grow(1)).to.equal('peer-bytes')
      expect(budget.usage('a').bytes).to.equal(100)
      const b = lease(budget.tryAcquire('b'))
      expect(b.grow(50)).to.equal(null)
      expect(b.grow(1)).to.equal('bytes')
      expect(budget.tryAcquire('c', 1)).to.equal('bytes')
      expect(budget.stats()).to.deep.equal({ streams: 2, bytes: 150, peers: 2 })
    })

    it('release gives everything back once, and forgets the peer', () => {
      const budget = new StreamBudget({ streamsPerPeerMax: 1 })
      const a = lease(budget.tryAcquire('a', 10))
      a.grow(5)
      a.release()
      a.release()
      expect(a.grow(10)).to.equal(null)
      expect(budget.stats()).to.deep.equal({ streams: 0, bytes: 0, peers: 0 })
      lease(budget.tryAcquire('a'))
    })

    it('the raft-client budget holds at most 32 MiB per peer and 128 MiB in all, 128 and 512 streams', () => {
      expect(RAFT_CLIENT_BUDGET).to.deep.equal({ streamsPerPeerMax: 128, streamsMax: 512, bytesPerPeerMax: 32 * MIB, bytesMax: 128 * MIB })
      expect(() => new StreamBudget({ bytesMax: 0 })).to.throw(RangeError)
    })
  })

  describe('inbound connections per host', () => {
    it('names a host by its IPv4 address, or the /64 of an IPv6 address', () => {
      expect(hostOf(multiaddr('/ip4/192.0.2.7/tcp/4001'))).to.deep.equal({ host: '192.0.2.7', loopback: false })
      expect(hostOf(multiaddr('/ip4/127.0.0.2/tcp/4001'))).to.deep.equal({ host: '127.0.0.2', loopback: true })
      expect(hostOf(multiaddr('/ip6/2001:db8:1:2::5/tcp/1'))).to.deep.equal(hostOf(multiaddr('/ip6/2001:db8:1:2:ffff:0:0:9/tcp/1')))
      expect(hostOf(multiaddr('/ip6/2001:db8:1:2::5/tcp/1'))?.host).to.not.equal(hostOf(multiaddr('/ip6/2001:db8:1:3::5/tcp/1'))?.host)
      expect(hostOf(multiaddr('/ip6/::1/tcp/1'))?.loopback).to.equal(true)
      expect(hostOf(multiaddr('/ip6/::ffff:192.0.2.7/tcp/1'))).to.deep.equal({ host: '192.0.2.7', loopback: false })
      expect(hostOf(multiaddr('/dns4/example.com/tcp/1'))).to.equal(null)
    })

    it('refuses a host\'s connection beyond inboundPerHostMax until one closes; other hosts are not affected', () => {
      const refused: string[] = []
      const limiter = new InboundHostLimiter({ inboundPerHostMax: 2, inboundPendingPerHostMax: 2 })
      limiter.onRefused = (host, reason) => refused.push(`${host} ${reason}`)
      const first = fakeConnection('/ip4/192.0.2.7/tcp/1')
      expect(limiter.deny(first)).to.equal(false)
      limiter.upgraded(first)
      expect(limiter.deny(fakeConnection('/ip4/192.0.2.7/tcp/2'))).to.equal(false)
      expect(limiter.deny(fakeConnection('/ip4/192.0.2.7/tcp/3'))).to.equal(true)
      expect(limiter.deny(fakeConnection('/ip4/192.0.2.8/tcp/1'))).to.equal(false)
      expect(limiter.usage('192.0.2.7')).to.deep.equal({ open: 1, pending: 1 })
      first.close()
      expect(limiter.usage('192.0.2.7')).to.deep.equal({ open: 0, pending: 1 })
      expect(limiter.deny(fakeConnection('/ip4/192.0.2.7/tcp/4'))).to.equal(false)
      expect(refused).to.deep.equal(['192.0.2.7 host-connections'])
    })

    it('refuses a host\'s connection beyond inboundPendingPerHostMax while the others are still upgrading', () => {
      const limiter = new InboundHostLimiter({ inboundPerHostMax: 10, inboundPendingPerHostMax: 2 })
      const upgrading = [fakeConnection('/ip4/192.0.2.7/tcp/1'), fakeConnection('/ip4/192.0.2.7/tcp/2')]
      for (const c of upgrading) { expect(limiter.deny(c)).to.equal(false) }
      expect(limiter.deny(fakeConnection('/ip4/192.0.2.7/tcp/3'))).to.equal(true)
      limiter.upgraded(upgrading[0])
      expect(limiter.deny(fakeConnection('/ip4/192.0.2.7/tcp/4'))).to.equal(false)
      for (const c of upgrading) { c.close() }
      expect(limiter.usage('192.0.2.7')).to.deep.equal({ open: 0, pending: 1 })
    })

    it('leaves loopback alone unless limitLoopback is set', () => {
      const exempt = new InboundHostLimiter({ inboundPerHostMax: 1 })
      for (let i = 0; i < 5; i++) { expect(exempt.deny(fakeConnection(`/ip4/127.0.0.1/tcp/${i + 1}`))).to.equal(false) }
      expect(exempt.hosts).to.equal(0)
      const limited = new InboundHostLimiter({ inboundPerHostMax: 1, limitLoopback: true })
      expect(limited.deny(fakeConnection('/ip4/127.0.0.1/tcp/1'))).to.equal(false)
      expect(limited.deny(fakeConnection('/ip4/127.0.0.1/tcp/2'))).to.equal(true)
      expect(CONNECTION_BUDGETS).to.deep.include({ incomingPendingMax: 64, inboundPerHostPerSecond: 50, inboundPerHostMax: 32, inboundPendingPerHostMax: 8, limitLoopback: false })
    })
  })

  describe('strangers per subnet', () => {
    async function peers (n: number): Promise<PeerId[]> {
      return Promise.all(Array.from({ length: n }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
    }
    const nobody = async (): Promise<boolean> => false

    it('names a subnet by the IPv4 /24 or IPv6 /48 by default, or by the prefix given', () => {
      const at = (address: string, v4 = 24, v6 = 48): string | undefined => subnetOf(multiaddr(address), v4, v6)?.subnet
      expect(at('/ip4/192.0.2.7/tcp/1')).to.equal('192.0.2.0/24')
      expect(at('/ip4/192.0.2.200/tcp/1')).to.equal(at('/ip4/192.0.2.7/tcp/1'))
      expect(at('/ip4/192.0.3.7/tcp/1')).to.not.equal(at('/ip4/192.0.2.7/tcp/1'))
      expect(at('/ip4/192.0.2.7/tcp/1', 32)).to.equal('192.0.2.7/32')
      expect(at('/ip4/10.1.130.7/tcp/1', 17)).to.equal('10.1.128.0/17')
      expect(at('/ip6/2001:db8:1:2::5/tcp/1')).to.equal('2001:db8:1:0:0:0:0:0/48')
      expect(at('/ip6/2001:db8:1:ffff::5/tcp/1')).to.equal(at('/ip6/2001:db8:1:2::5/tcp/1'))
      expect(at('/ip6/2001:db8:2::5/tcp/1')).to.not.equal(at('/ip6/2001:db8:1::5/tcp/1'))
      expect(at('/ip6/::ffff:192.0.2.7/tcp/1')).to.equal('192.0.2.0/24')
      expect(subnetOf(multiaddr('/ip4/127.0.1.9/tcp/1'), 24, 48)).to.deep.equal({ subnet: '127.0.1.0/24', loopback: true })
      expect(subnetOf(multiaddr('/ip6/::1/tcp/1'), 24, 48)?.loopback).to.equal(true)
      expect(subnetOf(multiaddr('/dns4/example.com/tcp/1'), 24, 48)).to.equal(null)
    })

    it('refuses a stranger beyond subnetPeersMax in one subnet until one leaves; other subnets and a counted stranger\'s next connection are not affected', async () => {
      const refused: string[] = []
      const limiter = new SubnetLimiter({ subnetPeersMax: 2 })
      limiter.onRefused = (subnet, reason) => refused.push(`${subnet} ${reason}`)
      const [a, b, c] = await peers(3)
      const first = fakeConnection('/ip4/192.0.2.7/tcp/1')
      expect(await limiter.deny(a, first, nobody)).to.equal(false)
      expect(await limiter.deny(b, fakeConnection('/ip4/192.0.2.8/tcp/1'), nobody)).to.equal(false)
      expect(await limiter.deny(c, fakeConnection('/ip4/192.0.2.9/tcp/1'), nobody)).to.equal(true)
      const second = fakeConnection('/ip4/192.0.2.7/tcp/2')
      expect(await limiter.deny(a, second, nobody)).to.equal(false)
      expect(await limiter.deny(c, fakeConnection('/ip4/192.0.3.9/tcp/1'), nobody)).to.equal(false)
      expect(refused).to.deep.equal(['192.0.2.0/24 subnet-peers'])
      first.close()
      // a still has its second connection
      expect(await limiter.deny(c, fakeConnection('/ip4/192.0.2.9/tcp/2'), nobody)).to.equal(true)
      expect(limiter.strangers('192.0.2.0/24')).to.have.members([a.toString(), b.toString()])
      second.close()
      expect(await limiter.deny(c, fakeConnection('/ip4/192.0.2.9/tcp/3'), nobody)).to.equal(false)
      expect(limiter.strangers('192.0.2.0/24')).to.have.members([b.toString(), c.toString()])
    })

    it('never counts nor refuses a member, and stops counting a stranger once admitted', async () => {
      const limiter = new SubnetLimiter({ subnetPeersMax: 1 })
      const [stranger, member, joiner, other] = await peers(4)
      const isMember = async (peer: PeerId): Promise<boolean> => peer.equals(member)
      expect(await limiter.deny(stranger, fakeConnection('/ip4/192.0.2.7/tcp/1'), isMember)).to.equal(false)
      for (let i = 0; i < 3; i++) { expect(await limiter.deny(member, fakeConnection(`/ip4/192.0.2.8/tcp/${i + 1}`), isMember)).to.equal(false) }
      expect(limiter.strangers('192.0.2.0/24')).to.deep.equal([stranger.toString()])
      expect(await limiter.deny(joiner, fakeConnection('/ip4/192.0.2.9/tcp/1'), isMember)).to.equal(true)
      limiter.release(stranger.toString())
      expect(limiter.strangers('192.0.2.0/24')).to.deep.equal([])
      expect(await limiter.deny(other, fakeConnection('/ip4/192.0.2.10/tcp/1'), isMember)).to.equal(false)
    })

    it('counts nothing for a connection that closed while the peer store was asked', async () => {
      const limiter = new SubnetLimiter({ subnetPeersMax: 1 })
      const [gone, next] = await peers(2)
      const connection = fakeConnection('/ip4/192.0.2.7/tcp/1')
      const closing = async (): Promise<boolean> => {
        Object.assign(connection, { status: 'closed' })
        connection.close()
        return false
      }
      expect(await limiter.deny(gone, connection, closing)).to.equal(true)
      expect(limiter.strangers('192.0.2.0/24')).to.deep.equal([])
      expect(await limiter.deny(next, fakeConnection('/ip4/192.0.2.8/tcp/1'), nobody)).to.equal(false)
    })

    it('leaves loopback alone unless limitLoopback is set, and checks its settings', async () => {
      const [a, b] = await peers(2)
      const exempt = new SubnetLimiter({ subnetPeersMax: 1 })
      expect(await exempt.deny(a, fakeConnection('/ip4/127.0.0.1/tcp/1'), nobody)).to.equal(false)
      expect(await exempt.deny(b, fakeConnection('/ip4/127.0.0.1/tcp/2'), nobody)).to.equal(false)
      const limited = new SubnetLimiter({ subnetPeersMax: 1, limitLoopback: true })
      expect(await limited.deny(a, fakeConnection('/ip4/127.0.1.1/tcp/1'), nobody)).to.equal(false)
      expect(await limited.deny(b, fakeConnection('/ip4/127.0.1.2/tcp/1'), nobody)).to.equal(true)
      expect(await limited.deny(b, fakeConnection('/ip4/127.0.2.1/tcp/1'), nobody)).to.equal(false)
      expect(() => new SubnetLimiter({ subnetPeersMax: 0 })).to.throw(RangeError, /subnetPeersMax/)
      expect(() => new SubnetLimiter({ subnetIpv4PrefixBits: 33 })).to.throw(RangeError, /subnetIpv4PrefixBits/)
      expect(() => new SubnetLimiter({ subnetIpv6PrefixBits: 0 })).to.throw(RangeError, /subnetIpv6PrefixBits/)
      expect(CONNECTION_BUDGETS).to.deep.include({ subnetPeersMax: 16, subnetIpv4PrefixBits: 24, subnetIpv6PrefixBits: 48 })
    })
  })

  describe('the DHT store guard', () => {
    /** The datastore calls kad-dht makes, recorded. */
    function fakeDatastore (): { store: Map<string, Uint8Array>, datastore: Parameters<typeof guardDhtStore>[0] } {
      const store = new Map<string, Uint8Array>()
      const datastore = {
        put: async (key: { toString(): string }, value: Uint8Array) => { store.set(key.toString(), value); return key },
        get: async (key: { toString(): string }) => store.get(key.toString()),
        batch: () => {
          const puts: Array<[string, Uint8Array]> = []
          return { put: (key: { toString(): string }, value: Uint8Array) => { puts.push([key.toString(), value]) }, delete: () => {}, commit: async () => { for (const [k, v] of puts) { store.set(k, v) } } }
        }
      }
      return { store, datastore: datastore as unknown as Parameters<typeof guardDhtStore>[0] }
    }
    const key = (text: string): Parameters<Parameters<typeof guardDhtStore>[0]['put']>[0] => ({ toString: () => text }) as unknown as Parameters<Parameters<typeof guardDhtStore>[0]['put']>[0]

    it('keeps this node\'s own provider records and every non-DHT key; refuses value records and others\' provider records', async () => {
      const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      const { store, datastore } = fakeDatastore()
      const guard = guardDhtStore(datastore, self)
      const seen: string[] = []
      guard.onRefused = (reason, peer) => seen.push(`${reason} ${peer ?? '-'}`)
      const value = new Uint8Array([1])

      await guard.datastore.put(key(`/dht/provider/CIQ/${self.toString()}`), value)
      await guard.datastore.put(key(`/peers/${other.toString()}`), value)
      await expect(guard.datastore.put(key(`/dht/provider/CIQ/${other.toString()}`), value)).to.eventually.be.rejectedWith(DhtStoreRefusedError)
      await expect(guard.datastore.put(key('/dht/record/AFZWS'), value)).to.eventually.be.rejectedWith(DhtStoreRefusedError)
      const batch = guard.datastore.batch()
      expect(() => { batch.put(key('/dht/record/B'), value) }).to.throw(DhtStoreRefusedError)
      await batch.commit()

      expect([...store.keys()].sort()).to.deep.equal([`/dht/provider/CIQ/${self.toString()}`, `/peers/${other.toString()}`])
      expect(guard.refused).to.deep.equal({ 'dht-record': 2, 'dht-provider': 1 })
      expect(seen).to.deep.equal([`dht-provider ${other.toString()}`, 'dht-record -', 'dht-record -'])
      // other calls pass through, bound to the real datastore
      expect(await guard.datastore.get(key(`/peers/${other.toString()}`))).to.deep.equal(value)
    })
  })

  describe('members first', () => {
    /** A peer store and event target, as protectMembers and wireBudgets use them. */
    function fakeNode (): { node: Libp2p, tags: Map<string, number | undefined>, disconnect(peer: PeerId): void } {
      const tags = new Map<string, number | undefined>()
      const events = new EventTarget()
      const node = {
        peerStore: {
          merge: async (peer: PeerId, data: { tags: Record<string, { value: number } | undefined> }) => { tags.set(peer.toString(), data.tags[MEMBER_TAG]?.value) }
        },
        addEventListener: events.addEventListener.bind(events),
        removeEventListener: events.removeEventListener.bind(events)
      }
      return { node: node as unknown as Libp2p, tags, disconnect: (peer) => { events.dispatchEvent(new CustomEvent('peer:disconnect', { detail: peer })) } }
    }

    function fakeAdmission (): { admission: { onAdmitted(l: (peer: string) => void): () => void, isRevoked(peer: string): boolean }, admit(peer: string): void, revoked: Set<string> } {
      const listeners = new Set<(peer: string) => void>()
      const revoked = new Set<string>()
      return {
        admission: { onAdmitted: (l) => { listeners.add(l); return () => listeners.delete(l) }, isRevoked: (peer) => revoked.has(peer) },
        admit: (peer) => { for (const l of listeners) { l(peer) } },
        revoked
      }
    }

    it('tags each admitted peer, and untags a revoked one when it disconnects', async () => {
      const member = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      const { node, tags, disconnect } = fakeNode()
      const { admission, admit, revoked } = fakeAdmission()
      const stop = protectMembers(node, admission)
      admit(member.toString())
      await Promise.resolve()
      expect(tags.get(member.toString())).to.equal(MEMBER_TAG_VALUE)
      disconnect(member)
      expect(tags.get(member.toString())).to.equal(MEMBER_TAG_VALUE)
      revoked.add(member.toString())
      disconnect(member)
      await Promise.resolve()
      expect(tags.has(member.toString())).to.equal(true)
      expect(tags.get(member.toString())).to.equal(undefined)
      stop()
    })

    it('wireBudgets counts connection, DHT and outbound-quota refusals as refusals', async () => {
      const { node } = fakeNode()
      const hosts = new InboundHostLimiter({ inboundPerHostMax: 1 })
      const dht = guardDhtStore({} as unknown as Parameters<typeof guardDhtStore>[0], peerIdFromPrivateKey(await generateKeyPair('Ed25519')))
      const subnets = new SubnetLimiter()
      const outbound = new OutboundQuota({ logger: silentComponentLogger } as unknown as ConstructorParameters<typeof OutboundQuota>[0], { memberTag: MEMBER_TAG })
      recordBudgets(node, { hosts, subnets, outbound, dht, dhtProtocol: '/accord/kad/1.0.0' })
      const refusals: string[] = []
      wireBudgets({ libp2p: node, admission: fakeAdmission().admission, refusals: { refuse: (peer, protocol, reason) => refusals.push(`${peer} ${protocol} ${reason}`) } })
      hosts.onRefused?.('192.0.2.7', 'host-pending')
      subnets.onRefused?.('192.0.2.0/24', 'subnet-peers')
      dht.onRefused?.('dht-record', null)
      outbound.onMisplaced?.('12D3KooWpeer', '198.51.100.0/24', '192.0.2.0/24')
      expect(refusals).to.deep.equal(['192.0.2.7 connection host-pending', '192.0.2.0/24 connection subnet-peers', 'unknown /accord/kad/1.0.0 dht-record', '12D3KooWpeer connection outbound-misplaced'])
    })

    it('wireBudgets stops counting a stranger in its subnet once it is admitted', async () => {
      const { node } = fakeNode()
      const subnets = new SubnetLimiter({ subnetPeersMax: 1 })
      const dht = guardDhtStore({} as unknown as Parameters<typeof guardDhtStore>[0], peerIdFromPrivateKey(await generateKeyPair('Ed25519')))
      recordBudgets(node, { hosts: new InboundHostLimiter(), subnets, dht, dhtProtocol: '/accord/kad/1.0.0' })
      const { admission, admit } = fakeAdmission()
      const stop = wireBudgets({ libp2p: node, admission, refusals: { refuse: () => {} } })
      const joiner = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      const connection = Object.assign(new EventTarget(), { remoteAddr: multiaddr('/ip4/192.0.2.7/tcp/1') }) as unknown as MultiaddrConnection
      expect(await subnets.deny(joiner, connection, async () => false)).to.equal(false)
      admit(joiner.toString())
      expect(subnets.strangers('192.0.2.0/24')).to.deep.equal([])
      stop()
    })
  })
})
