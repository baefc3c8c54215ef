/**
 * Budgets: named upper bounds on what other peers can make this node hold,
 * so that no stranger, and no member (or a bug in one), can exhaust its
 * memory, its connection slots or its disk. Each bound is named here,
 * listed in docs/internals/budgets.md and hit by a test (test/unit and
 * test/integration budgets*.spec.ts).
 *
 * - `StreamBudget`: streams and bytes in flight on one protocol, per peer
 * and across all peers (used by `/accord/raft-client/1.0.0`, which also
 * keeps a stream paused while admission decides, so an unadmitted sender
 * gets no more than yamux's first window of 256 KiB buffered).
 * - `InboundHostLimiter`: inbound connections per remote host (IPv4
 * address, IPv6 /64), upgraded or still upgrading; libp2p 3 has only a
 * per-host rate (`inboundConnectionThreshold`) and global caps.
 * - `SubnetLimiter`: strangers (peers not known as members) connected
 * inbound from one IP subnet (IPv4 /24, IPv6 /48), so one network cannot
 * take every connection slot (Sybil) or surround the node (eclipse).
 * - `guardDhtStore`: the DHT stores no record for others, only this node's
 * own provider records (see libp2p.ts).
 * - `protectMembers`: admitted peers get a peer-store tag, so the
 * connection manager prunes strangers' connections first.
 *
 * The other protocols bound themselves (checked for this module):
 * - `/accord/raft/1.0.0` (transport-constants.ts): 4 inbound streams per
 * connection, frames of at most FRAME_BYTES_MAX (4 MiB) read with an 8 MiB
 * buffer per stream, 2 snapshot reassemblies across all peers (the
 * leader's always finds one), outbound queues of 4096 messages / 64 MiB
 * per peer.
 * - `/accord/admission/1.0.0`: 2 streams per connection, one certificate
 * (1 KiB) per stream, 5 s; gated streams waiting for an exchange: 1024.
 * - `/accord/join/1.0.0`: 1 stream per connection, 8 joins in flight across
 * all peers, one token (1 KiB) per stream, 10 s.
 *
 * - `STREAM_LIMITS`: streams per connection of libp2p's own services
 * (gossipsub, kad-dht, ping).
 *
 * libp2p defaults kept: inboundUpgradeTimeout 10 s, stream protocol
 * negotiation 10 s, maxParallelDials 100, maxDialQueueLength 500,
 * maxPeerAddrsToDial 25, yamux maxInboundStreams 1000 per connection.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { getNetConfig, isNetworkAddress } from '@libp2p/utils'
import type { OutboundQuota } from './outbound-quota.ts'
import type { Libp2p, MultiaddrConnection, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Libp2pOptions } from 'libp2p'

const KIB = 1024
const MIB = 1024 * KIB

// ---- streams and bytes in flight ----

export interface StreamBudgetLimits {
  /** Streams served at once for one peer (over all its connections). */
  streamsPerPeerMax: number
  /** Streams served at once across all peers. */
  streamsMax: number
  /** Bytes received and still held (request being read or served) for one peer. */
  bytesPerPeerMax: number
  /** Bytes received and still held across all peers. */
  bytesMax: number
}

/**
 * `/accord/raft-client/1.0.0`: a follower forwards each write of its
 * clients to the leader on a stream of its own (RaftService #toLeader has
 * no cap of its own: one stream per waiting caller), and a request holds up
 * to requestBytesMax (2.1 MiB with the default KV limits) until it is
 * answered. 64 concurrent clients on one follower need 64 streams (plus a
 * peer-address lookup and a join or membership change now and then): the
 * per-peer cap is twice that. A follower beyond it is answered `retry`
 * and asks again after a short pause, so excess load slows down instead
 * of failing.
 */
export const RAFT_CLIENT_BUDGET: Readonly<StreamBudgetLimits> = {
  streamsPerPeerMax: 128,
  streamsMax: 512,
  bytesPerPeerMax: 32 * MIB,
  bytesMax: 128 * MIB
}

/** Why a stream (or more bytes on it) was refused: also the reason counted in accord_refusals_total. */
export type BudgetRefusal = 'peer-streams' | 'streams' | 'peer-bytes' | 'bytes'

interface Usage { streams: number, bytes: number }

/**
 * Streams and bytes in flight, per peer and in total. `tryAcquire` gives a
 * lease (or the reason there is none); the lease grows as bytes arrive and
 * gives everything back on `release()`. Only peers with a lease are
 * tracked, so the table is bounded by streamsMax.
 */
export class StreamBudget {
  readonly limits: Readonly<StreamBudgetLimits>
  readonly #peers = new Map<string, Usage>()
  readonly #total: Usage = { streams: 0, bytes: 0 }

  constructor (limits: Partial<StreamBudgetLimits> = {}) {
    const resolved = { ...RAFT_CLIENT_BUDGET, ...limits }
    for (const [key, value] of Object.entries(resolved)) {
      if (!Number.isSafeInteger(value) || value < 1) { throw new RangeError(`stream budget: ${key} must be a positive integer, got ${String(value)}`) }
    }
    this.limits = resolved
  }

  /** A lease on one stream holding `bytes` so far, or why not. */
  tryAcquire (peer: string, bytes = 0): StreamLease | BudgetRefusal {
    const usage = this.#peers.get(peer) ?? { streams: 0, bytes: 0 }
    if (usage.streams >= this.limits.streamsPerPeerMax) { return 'peer-streams' }
    if (this.#total.streams >= this.limits.streamsMax) { return 'streams' }
    const refused = this.#bytesRefusal(usage, bytes)
    if (refused != null) { return refused }
    usage.streams++
    usage.bytes += bytes
    this.#total.streams++
    this.#total.bytes += bytes
    this.#peers.set(peer, usage)
    return new StreamLease(this, peer, bytes)
  }

  /** What `peer` holds now (zeros when nothing). */
  usage (peer: string): { streams: number, bytes: number } {
    const usage = this.#peers.get(peer)
    return { streams: usage?.streams ?? 0, bytes: usage?.bytes ?? 0 }
  }

  /** What all peers hold now, and how many peers hold anything. */
  stats (): { streams: number, bytes: number, peers: number } {
    return { ...this.#total, peers: this.#peers.size }
  }

  #bytesRefusal (usage: Usage, bytes: number): BudgetRefusal | null {
    if (usage.bytes + bytes > this.limits.bytesPerPeerMax) { return 'peer-bytes' }
    if (this.#total.bytes + bytes > this.limits.bytesMax) { return 'bytes' }
    return null
  }

  /**
   * Account `bytes` more for `peer` (StreamLease.grow calls this).
   *
   * @internal
   */
  grow (peer: string, bytes: number): BudgetRefusal | null {
    const usage = this.#peers.get(peer)
    if (usage == null) { throw new Error('stream budget: grow() on a released lease') }
    const refused = this.#bytesRefusal(usage, bytes)
    if (refused != null) { return refused }
    usage.bytes += bytes
    this.#total.bytes += bytes
    return null
  }

  /**
   * Give back one stream and its bytes (StreamLease.release calls this).
   *
   * @internal
   */
  giveBack (peer: string, bytes: number): void {
    const usage = this.#peers.get(peer)
    if (usage == null) { return }
    usage.streams--
    usage.bytes -= bytes
    this.#total.streams--
    this.#total.bytes -= bytes
    if (usage.streams === 0) { this.#peers.delete(peer) }
  }
}

/** One stream's share of a StreamBudget. */
export class StreamLease {
  readonly #budget: StreamBudget
  readonly #peer: string
  #bytes: number
  #released = false

  constructor (budget: StreamBudget, peer: string, bytes: number) {
    this.#budget = budget
    this.#peer = peer
    this.#bytes = bytes
  }

  get bytes (): number { return this.#bytes }

  /** Account `bytes` more; null when they fit, else why not (then nothing is added). */
  grow (bytes: number): BudgetRefusal | null {
    if (this.#released) { return null }
    const refused = this.#budget.grow(this.#peer, bytes)
    if (refused == null) { this.#bytes += bytes }
    return refused
  }

  /** Give the stream and its bytes back (idempotent). */
  release (): void {
    if (this.#released) { return }
    this.#released = true
    this.#budget.giveBack(this.#peer, this.#bytes)
  }
}

// ---- streams per connection ----

/**
 * How many streams of libp2p's own services a peer may have open on one
 * connection: libp2p resets a stream beyond its protocol's
 * maxInboundStreams once the protocol is chosen. accord's own protocols
 * set theirs where they are handled.
 */
export const STREAM_LIMITS = {
  /** gossipsub streams per protocol id and connection, each way: it keeps one per peer (libp2p's default is 32 in, 64 out). */
  gossipsubMax: 4,
  /** kad-dht streams per connection, each way (its defaults, kept: 32 in, 64 out). */
  dhtInboundMax: 32,
  dhtOutboundMax: 64,
  /** ping streams per connection, each way: the connection monitor and kad-dht may ping at once. */
  pingMax: 4
} as const

// ---- connections ----

export interface ConnectionBudgets {
  /** Inbound connections upgrading (Noise, yamux) at once, from all hosts (libp2p maxIncomingPendingConnections; its default is 10). */
  incomingPendingMax: number
  /** New inbound connections per host per second (libp2p inboundConnectionThreshold; its default of 5 is too low for a local cluster joining at once). */
  inboundPerHostPerSecond: number
  /** Inbound connections (upgrading or open) from one host: an IPv4 address, or an IPv6 /64. */
  inboundPerHostMax: number
  /** Inbound connections still upgrading from one host, so one host cannot take all of incomingPendingMax. */
  inboundPendingPerHostMax: number
  /**
   * Apply the per-host limits to loopback too. Off by default: a local
   * cluster (`accord demo`, tests, benchmarks) puts every node on
   * 127.0.0.1, and a process on this machine can do worse than connect.
   */
  limitLoopback: boolean
  /**
   * Strangers (peers with no member tag) connected inbound at once from one
   * subnet (subnetIpv4PrefixBits / subnetIpv6PrefixBits). Members are not
   * counted, so strangers cannot lock members out.
   */
  subnetPeersMax: number
  /** The IPv4 prefix length that makes one subnet (1..32). */
  subnetIpv4PrefixBits: number
  /** The IPv6 prefix length that makes one subnet (1..128). */
  subnetIpv6PrefixBits: number
}

export const CONNECTION_BUDGETS: Readonly<ConnectionBudgets> = {
  incomingPendingMax: 64,
  inboundPerHostPerSecond: 50,
  inboundPerHostMax: 32,
  inboundPendingPerHostMax: 8,
  limitLoopback: false,
  subnetPeersMax: 16,
  subnetIpv4PrefixBits: 24,
  subnetIpv6PrefixBits: 48
}

/** Which host a remote address counts against: the IPv4 address, or the /64 of an IPv6 one; null when it has none. */
export function hostOf (address: Multiaddr): { host: string, loopback: boolean } | null {
  if (!isNetworkAddress(address)) { return null }
  const config = getNetConfig(address)
  if (config.type === 'ip4') { return { host: config.host, loopback: config.host.startsWith('127.') } }
  if (config.type !== 'ip6') { return null }
  const groups = expandIpv6(config.host)
  if (groups == null) { return { host: config.host, loopback: false } }
  // an IPv4-mapped address is that IPv4 address
  if (groups.slice(0, 5).every(g => g === 0) && groups[5] === 0xffff) {
    const ip4 = [groups[6] >> 8, groups[6] & 0xff, groups[7] >> 8, groups[7] & 0xff].join('.')
    return { host: ip4, loopback: ip4.startsWith('127.') }
  }
  const loopback = groups.slice(0, 7).every(g => g === 0) && groups[7] === 1
  return { host: `${groups.slice(0, 4).map(g => g.toString(16)).join(':')}::/64`, loopback }
}

/**
 * The subnet a remote address counts against: its first `ipv4Bits` or
 * `ipv6Bits` bits, written as `address/bits` (IPv4-mapped IPv6 addresses
 * count as IPv4); null when it has no IP address.
 */
export function subnetOf (address: Multiaddr, ipv4Bits: number, ipv6Bits: number): { subnet: string, loopback: boolean } | null {
  if (!isNetworkAddress(address)) { return null }
  const config = getNetConfig(address)
  let bytes: number[]
  let loopback: boolean
  if (config.type === 'ip4') {
    bytes = config.host.split('.').map(Number)
    loopback = bytes[0] === 127
  } else if (config.type === 'ip6') {
    const groups = expandIpv6(config.host)
    if (groups == null) { return null }
    bytes = groups.flatMap(g => [g >> 8, g & 0xff])
    loopback = groups.slice(0, 7).every(g => g === 0) && groups[7] === 1
    if (bytes.slice(0, 10).every(b => b === 0) && groups[5] === 0xffff) {
      bytes = bytes.slice(12)
      loopback = bytes[0] === 127
    }
  } else {
    return null
  }
  const bits = bytes.length === 4 ? ipv4Bits : ipv6Bits
  const masked = bytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, bits - i * 8))
    return b & (0xff << (8 - keep)) & 0xff
  })
  const text = bytes.length === 4
    ? masked.join('.')
    : Array.from({ length: 8 }, (_, i) => ((masked[2 * i] << 8) | masked[2 * i + 1]).toString(16)).join(':')
  return { subnet: `${text}/${bits}`, loopback }
}

/** The eight 16-bit groups of an IPv6 address, or null when it is not one. */
function expandIpv6 (text: string): number[] | null {
  let address = text.replace(/%.*$/, '')
  // a dotted IPv4 tail (::ffff:1.2.3.4) as two groups
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address)
  if (dotted != null) {
    const [a, b, c, d] = dotted.slice(1).map(Number)
    address = address.slice(0, dotted.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const halves = address.split('::')
  if (halves.length > 2) { return null }
  const parse = (part: string): number[] => part === '' ? [] : part.split(':').map(g => parseInt(g, 16))
  const head = parse(halves[0])
  const tail = halves.length === 2 ? parse(halves[1]) : []
  const missing = 8 - head.length - tail.length
  if (missing < 0 || (halves.length === 1 && missing !== 0)) { return null }
  const groups = [...head, ...new Array<number>(missing).fill(0), ...tail]
  return groups.every(g => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null
}

export type ConnectionRefusal = 'host-connections' | 'host-pending'

/**
 * Inbound connections per remote host, for the connection gater:
 * `deny()` (denyInboundConnection) counts a connection from the moment
 * libp2p accepts its socket, `upgraded()` (denyInboundUpgradedConnection)
 * moves it from pending to open, and its socket's close event frees it.
 */
export class InboundHostLimiter {
  readonly limits: Readonly<ConnectionBudgets>
  /** Set by wireBudgets: where refusals are counted. */
  onRefused: ((host: string, reason: ConnectionRefusal) => void) | undefined
  readonly #hosts = new Map<string, { open: number, pending: number }>()
  readonly #pending = new WeakSet<MultiaddrConnection>()

  constructor (limits: Partial<ConnectionBudgets> = {}) {
    this.limits = { ...CONNECTION_BUDGETS, ...limits }
  }

  /** Whether to refuse this inbound connection (counting it when not). */
  deny (maConn: MultiaddrConnection): boolean {
    const remote = hostOf(maConn.remoteAddr)
    if (remote == null || (remote.loopback && !this.limits.limitLoopback)) { return false }
    const { host } = remote
    const usage = this.#hosts.get(host) ?? { open: 0, pending: 0 }
    let reason: ConnectionRefusal | null = null
    if (usage.open + usage.pending >= this.limits.inboundPerHostMax) {
      reason = 'host-connections'
    } else if (usage.pending >= this.limits.inboundPendingPerHostMax) {
      reason = 'host-pending'
    }
    if (reason != null) {
      this.onRefused?.(host, reason)
      return true
    }
    usage.pending++
    this.#hosts.set(host, usage)
    this.#pending.add(maConn)
    maConn.addEventListener('close', () => {
      const pending = this.#pending.delete(maConn)
      const current = this.#hosts.get(host)
      if (current == null) { return }
      if (pending) { current.pending-- } else { current.open-- }
      if (current.open + current.pending === 0) { this.#hosts.delete(host) }
    }, { once: true })
    return false
  }

  /** The connection finished its upgrade: it counts as open, no longer pending. */
  upgraded (maConn: MultiaddrConnection): void {
    if (!this.#pending.delete(maConn)) { return }
    const remote = hostOf(maConn.remoteAddr)
    const usage = remote == null ? undefined : this.#hosts.get(remote.host)
    if (usage == null) { return }
    usage.pending--
    usage.open++
  }

  /** Inbound connections counted for `host` (as hostOf names it). */
  usage (host: string): { open: number, pending: number } {
    const usage = this.#hosts.get(host)
    return { open: usage?.open ?? 0, pending: usage?.pending ?? 0 }
  }

  /** Hosts with a counted connection. */
  get hosts (): number { return this.#hosts.size }
}

export type SubnetRefusal = 'subnet-peers'

/**
 * Strangers connected inbound per subnet, for the connection gater's
 * denyInboundUpgradedConnection: only after the handshake is the remote
 * peer id known, and with it whether the peer is a member (isMember; the
 * node asks its peer store for the member tag, which survives restarts).
 * Members are never counted nor refused, so a subnet full of strangers
 * cannot lock members out; a stranger's connections stop counting once it
 * is admitted (`release`). A stranger with a connection counted already
 * may open more (the per-host limits bound those). The table holds at most
 * subnetPeersMax peers per subnet, and a subnet only while one of its
 * connections is open.
 */
export class SubnetLimiter {
  readonly limits: Readonly<ConnectionBudgets>
  /** Set by wireBudgets: where refusals are counted. */
  onRefused: ((subnet: string, reason: SubnetRefusal) => void) | undefined
  /** subnet → stranger → its open inbound connections */
  readonly #subnets = new Map<string, Map<string, number>>()

  constructor (limits: Partial<ConnectionBudgets> = {}) {
    this.limits = { ...CONNECTION_BUDGETS, ...limits }
    const { subnetPeersMax, subnetIpv4PrefixBits, subnetIpv6PrefixBits } = this.limits
    if (!Number.isSafeInteger(subnetPeersMax) || subnetPeersMax < 1) { throw new RangeError(`subnetPeersMax must be a positive integer, got ${subnetPeersMax}`) }
    if (!Number.isInteger(subnetIpv4PrefixBits) || subnetIpv4PrefixBits < 1 || subnetIpv4PrefixBits > 32) { throw new RangeError(`subnetIpv4PrefixBits must be an integer in 1..32, got ${subnetIpv4PrefixBits}`) }
    if (!Number.isInteger(subnetIpv6PrefixBits) || subnetIpv6PrefixBits < 1 || subnetIpv6PrefixBits > 128) { throw new RangeError(`subnetIpv6PrefixBits must be an integer in 1..128, got ${subnetIpv6PrefixBits}`) }
  }

  /** Whether to refuse `peer`'s upgraded inbound connection (counting it when not). */
  async deny (peer: PeerId, maConn: MultiaddrConnection, isMember: (peer: PeerId) => Promise<boolean>): Promise<boolean> {
    const remote = subnetOf(maConn.remoteAddr, this.limits.subnetIpv4PrefixBits, this.limits.subnetIpv6PrefixBits)
    if (remote == null || (remote.loopback && !this.limits.limitLoopback)) { return false }
    const { subnet } = remote
    const id = peer.toString()
    const counted = this.#subnets.get(subnet)?.has(id) === true
    if (!counted && await isMember(peer)) { return false }
    // the socket may have closed while the peer store was asked: nothing to count
    if (maConn.status === 'closed' || maConn.status === 'aborted' || maConn.status === 'reset') { return true }
    // looked up again: isMember may have let other connections in meanwhile
    const peers = this.#subnets.get(subnet) ?? new Map<string, number>()
    if (!peers.has(id) && peers.size >= this.limits.subnetPeersMax) {
      this.onRefused?.(subnet, 'subnet-peers')
      return true
    }
    peers.set(id, (peers.get(id) ?? 0) + 1)
    this.#subnets.set(subnet, peers)
    maConn.addEventListener('close', () => {
      const current = this.#subnets.get(subnet)
      const open = current?.get(id)
      if (current == null || open == null) { return }
      if (open > 1) { current.set(id, open - 1) } else { current.delete(id) }
      if (current.size === 0) { this.#subnets.delete(subnet) }
    }, { once: true })
    return false
  }

  /** `peer` became a member: its connections stop counting. */
  release (peer: string): void {
    for (const [subnet, peers] of this.#subnets) {
      peers.delete(peer)
      if (peers.size === 0) { this.#subnets.delete(subnet) }
    }
  }

  /** Strangers counted in `subnet` (as subnetOf names it). */
  strangers (subnet: string): string[] {
    return [...this.#subnets.get(subnet)?.keys() ?? []]
  }
}

// ---- DHT records ----

type Datastore = NonNullable<Libp2pOptions['datastore']>
type DatastoreKey = Parameters<Datastore['put']>[0]

export type DhtStoreRefusal = 'dht-record' | 'dht-provider'

export class DhtStoreRefusedError extends Error {
  readonly reason: DhtStoreRefusal
  constructor (reason: DhtStoreRefusal, key: string) {
    super(`this node stores no DHT ${reason === 'dht-record' ? 'value records' : 'provider records for other peers'} (${key.slice(0, 120)})`)
    this.name = 'DhtStoreRefusedError'
    this.reason = reason
  }
}

export interface DhtStoreGuard {
  /** The datastore to give libp2p. */
  datastore: Datastore
  /** Writes refused so far, by reason. */
  refused: Record<DhtStoreRefusal, number>
  /** Set by wireBudgets: where refusals are counted (`peer` is the provider a refused provider record named). */
  onRefused: ((reason: DhtStoreRefusal, peer: string | null) => void) | undefined
}

/**
 * Wrap the libp2p datastore so kad-dht (with its default datastorePrefix
 * `prefix`) keeps no record for others: a PUT_VALUE from a peer, and an
 * ADD_PROVIDER naming anyone but `self`, fail (the DHT handler aborts that
 * stream); this node's own provider records (public mode's rendezvous) are
 * kept. kad-dht 16 has no option to turn its record store off, and a DHT
 * server stores both from anyone, without a cap. Every other key passes.
 */
export function guardDhtStore (datastore: Datastore, self: PeerId, prefix = '/dht'): DhtStoreGuard {
  const recordPrefix = `${prefix}/record/`
  const providerPrefix = `${prefix}/provider/`
  const me = self.toString()
  const guard: DhtStoreGuard = { datastore, refused: { 'dht-record': 0, 'dht-provider': 0 }, onRefused: undefined }
  const check = (key: DatastoreKey): void => {
    const text = key.toString()
    let reason: DhtStoreRefusal | null = null
    let peer: string | null = null
    if (text.startsWith(recordPrefix)) {
      reason = 'dht-record'
    } else if (text.startsWith(providerPrefix)) {
      peer = text.slice(text.lastIndexOf('/') + 1)
      if (peer !== me) { reason = 'dht-provider' }
    }
    if (reason == null) { return }
    guard.refused[reason]++
    guard.onRefused?.(reason, peer)
    throw new DhtStoreRefusedError(reason, text)
  }
  guard.datastore = new Proxy(datastore, {
    get (target, property) {
      if (property === 'put') {
        return async (key: DatastoreKey, value: Uint8Array, options?: Parameters<Datastore['put']>[2]) => {
          check(key)
          return target.put(key, value, options)
        }
      }
      if (property === 'putMany') {
        return (source: Parameters<Datastore['putMany']>[0], options?: Parameters<Datastore['putMany']>[1]) => {
          async function * checked (): AsyncGenerator<{ key: DatastoreKey, value: Uint8Array }> {
            for await (const pair of source) {
              check(pair.key)
              yield pair
            }
          }
          return target.putMany(checked(), options)
        }
      }
      if (property === 'batch') {
        return () => {
          const batch = target.batch()
          return {
            put: (key: DatastoreKey, value: Uint8Array) => { check(key); batch.put(key, value) },
            delete: (key: DatastoreKey) => { batch.delete(key) },
            commit: async (options?: Parameters<typeof batch.commit>[0]) => batch.commit(options)
          }
        }
      }
      const value = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
  return guard
}

// ---- members first ----

/** The peer-store tag of admitted peers. libp2p's pruner closes the connections of the peers with the lowest sum of tag values first. */
export const MEMBER_TAG = 'accord-member'
/**
 * The highest value a tag may have (libp2p's peer store refuses more).
 * kad-dht gives a routing-table peer 1 and each of the closest peers 50 + 1
 * (its keep-alive tag); gossipsub gives 100 per topic mesh. A stranger
 * reaches more than a member only in meshes a member is not in; in
 * private mode strangers do not stay long enough to be grafted (admission
 * closes them after graceMs).
 */
export const MEMBER_TAG_VALUE = 100

/** Whether the peer store holds the member tag for `peer` (set on admission, and kept across restarts). */
export async function hasMemberTag (peerStore: Libp2p['peerStore'], peer: PeerId): Promise<boolean> {
  try {
    return (await peerStore.get(peer)).tags.has(MEMBER_TAG)
  } catch {
    return false
  }
}

/** What protectMembers needs of admission. */
export interface AdmissionEvents {
  onAdmitted(listener: (peer: string) => void): () => void
  isRevoked(peer: string): boolean
}

/** What wireBudgets needs of the refusal counter. */
export interface RefusalSink {
  refuse(peer: string, protocol: string, reason: string, details?: Record<string, unknown>): void
}

/** The libp2p-level budgets buildLibp2p installed, by node. */
const installed = new WeakMap<object, InstalledBudgets>()

/** The libp2p-level budgets buildLibp2p installs. */
export interface InstalledBudgets { hosts: InboundHostLimiter, subnets: SubnetLimiter, outbound?: OutboundQuota, dht: DhtStoreGuard, dhtProtocol: string }

/**
 * Remember the budgets buildLibp2p installed in `libp2p` (for wireBudgets).
 *
 * @internal
 */
export function recordBudgets (libp2p: object, budgets: InstalledBudgets): void {
  installed.set(libp2p, budgets)
}

/** The per-host limiter and DHT store guard of a node built by buildLibp2p (undefined for other nodes). */
export function budgetsOf (libp2p: object): InstalledBudgets | undefined {
  return installed.get(libp2p)
}

/** Protocol label of connection-level refusals in accord_refusals_total. */
export const CONNECTION_REFUSAL_PROTOCOL = 'connection'

/**
 * Tag every admitted peer with MEMBER_TAG (persisted in the peer store, so
 * a member keeps it across restarts), and drop the tag of a revoked member
 * when it disconnects. Returns a function that stops listening.
 */
export function protectMembers (libp2p: Pick<Libp2p, 'peerStore' | 'addEventListener' | 'removeEventListener'>, admission: AdmissionEvents, onError: (err: Error) => void = () => {}): () => void {
  const tag = (peer: PeerId, value: number | undefined): void => {
    libp2p.peerStore.merge(peer, { tags: { [MEMBER_TAG]: value === undefined ? undefined : { value } } }).catch(onError)
  }
  const stopAdmitted = admission.onAdmitted(peer => {
    let id: PeerId
    try { id = peerIdFromString(peer) } catch { return }
    tag(id, MEMBER_TAG_VALUE)
  })
  const onDisconnect = (event: CustomEvent<PeerId>): void => {
    let revoked = false
    try { revoked = admission.isRevoked(event.detail.toString()) } catch { /* stopping */ }
    if (revoked) { tag(event.detail, undefined) }
  }
  libp2p.addEventListener('peer:disconnect', onDisconnect)
  return () => {
    stopAdmitted()
    libp2p.removeEventListener('peer:disconnect', onDisconnect)
  }
}

/**
 * Connect a node's budgets to admission and to the refusal counter: tag
 * members (protectMembers), and count the connections and DHT records
 * refused in accord_refusals_total. Call once, after admission.start().
 */
export function wireBudgets (options: { libp2p: Libp2p, admission: AdmissionEvents, refusals: RefusalSink }): () => void {
  const { libp2p, admission, refusals } = options
  const budgets = budgetsOf(libp2p)
  if (budgets != null) {
    budgets.hosts.onRefused = (host, reason) => { refusals.refuse(host, CONNECTION_REFUSAL_PROTOCOL, reason) }
    budgets.subnets.onRefused = (subnet, reason) => { refusals.refuse(subnet, CONNECTION_REFUSAL_PROTOCOL, reason) }
    budgets.dht.onRefused = (reason, peer) => { refusals.refuse(peer ?? 'unknown', budgets.dhtProtocol, reason) }
    if (budgets.outbound != null) {
      budgets.outbound.onMisplaced = (peer, ranked, reached) => { refusals.refuse(peer, CONNECTION_REFUSAL_PROTOCOL, 'outbound-misplaced', { ranked, reached }) }
    }
  }
  const stopRelease = budgets == null ? () => {} : admission.onAdmitted(peer => { budgets.subnets.release(peer) })
  const stopProtect = protectMembers(libp2p, admission)
  return () => {
    stopRelease()
    stopProtect()
  }
}
