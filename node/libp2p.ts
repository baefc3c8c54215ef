/**
 * Assembles the libp2p 3 node: TCP, Noise and TLS 1.3 (no plaintext), yamux, identify, ping, kad-dht,
 * gossipsub (StrictSign), optional mDNS and pnet, a connection
 * gater with allow/deny lists, per-host and per-subnet limits, a persistent datastore
 * (in which the DHT keeps no record for others) and Prometheus metrics.
 * The connection and DHT budgets are in budgets.ts.
 */
import { readFile } from 'node:fs/promises'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper, removePrivateAddressesMapper } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { createLibp2p } from 'libp2p'
import { guardDhtStore, hasMemberTag, InboundHostLimiter, MEMBER_TAG, recordBudgets, STREAM_LIMITS, SubnetLimiter } from './budgets.ts'
import { PRIVATE_DHT_PROTOCOL, PUBLIC_DHT_PROTOCOL } from './constants.ts'
import { UserError } from './errors.ts'
import { accordGossipsubOptions } from './membership/topic.ts'
import { accordNoiseCrypto } from './noise-crypto.ts'
import { OutboundQuota } from './outbound-quota.ts'
import type { Admission } from './admission/admission.ts'
import type { ConnectionBudgets } from './budgets.ts'
import type { AccordConfig, Encrypter } from './config.ts'
import type { CrdtService } from './crdt/service.ts'
import type { ClusterDiscovery } from './discovery.ts'
import type { MembershipService } from './membership/service.ts'
import type { ClusterMetadataService } from './metadata/service.ts'
import type { OutboundQuotaOptions } from './outbound-quota.ts'
import type { PbftService } from './pbft/service.ts'
import type { RaftService } from './raft/service.ts'
import type { TopologyService } from './topology/service.ts'
import type { GossipSub } from '@libp2p/gossipsub'
import type { Identify } from '@libp2p/identify'
import type { Libp2p, PeerId, PrivateKey, ServiceMap } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import type { Libp2pOptions, ServiceFactoryMap } from 'libp2p'
import type { Registry } from 'prom-client'

// type aliases, not interfaces: libp2p's ServiceMap needs an index signature
/** The libp2p services accord's node runs, whatever else it adds. */
export type BaseServices = {
  identify: Identify
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
}

/** accord's own services (raft is absent when Raft is off, pbft when no PBFT replica set is configured). */
export type AccordOwnServices = {
  admission: Admission
  membership: MembershipService
  metadata: ClusterMetadataService
  crdt: CrdtService
  topology: TopologyService
  discovery: ClusterDiscovery
  raft?: RaftService
  pbft?: PbftService
}

export type AccordServices = BaseServices & AccordOwnServices

export type AccordLibp2p = Libp2p<AccordServices>

export interface BuildOptions<S extends ServiceMap> {
  config: AccordConfig
  /** Services added to the base ones (createAccordNode adds accord's). */
  services?: Pick<ServiceFactoryMap<BaseServices & S>, keyof S>
  privateKey: PrivateKey
  datastore: NonNullable<Libp2pOptions['datastore']>
  registry: Registry
  version: string
  /** The connection budgets (default CONNECTION_BUDGETS; tests lower them, or apply them to loopback). */
  connectionBudgets?: Partial<ConnectionBudgets>
  /** The outbound quota's timings (tests shorten them); its size is config.outboundPeersMin. */
  outboundQuota?: Partial<Pick<OutboundQuotaOptions, 'intervalMs' | 'dialTimeoutMs' | 'dialsPerRefillMax'>>
  /** Peers denied at run time on top of config.denyPeers (PBFT's isolated peers); asked on every dial and connection. */
  isDenied?(peer: string): boolean
}

/** Read and check a swarm key file (the go-ipfs / libp2p pnet format). */
export async function readSwarmKey (path: string): Promise<Uint8Array> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (err) {
    throw new UserError(`cannot read pnet key ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  const lines = new TextDecoder().decode(bytes).trim().split(/\r?\n/)
  if (lines.length !== 3 || lines[0] !== '/key/swarm/psk/1.0.0/' || lines[1] !== '/base16/' || !/^[0-9a-fA-F]{64}$/.test(lines[2])) {
    throw new UserError(`pnet key ${path} is not a swarm key (expected "/key/swarm/psk/1.0.0/", "/base16/", 64 hex digits)`)
  }
  return bytes
}

/**
 * The connection encrypters, in the order given. The dialler proposes them
 * in its order and the listener takes the first it knows, so two nodes with
 * the default `noise,tls` use Noise, and a peer that speaks only TLS 1.3
 * gets TLS. `@libp2p/tls` allows TLS 1.3 only, whose key exchanges are all
 * ephemeral (forward secrecy). Nothing here can yield a plaintext
 * connection: the list is never empty and holds only these two.
 */
export function connectionEncrypters (names: readonly Encrypter[]): NonNullable<Libp2pOptions['connectionEncrypters']> {
  if (names.length === 0) { throw new UserError('at least one connection encrypter is required') }
  return names.map(name => name === 'noise' ? noise({ crypto: accordNoiseCrypto() }) : tls())
}

function peerSet (ids: string[]): Set<string> {
  return new Set(ids)
}

export async function buildLibp2p<S extends ServiceMap = Record<string, never>> (options: BuildOptions<S>): Promise<Libp2p<BaseServices & S>> {
  const { config } = options
  const allow = peerSet(config.allowPeers)
  const deny = peerSet(config.denyPeers)
  const isDenied = options.isDenied ?? (() => false)
  const refused = (peer: PeerId): boolean => {
    const id = peer.toString()
    return deny.has(id) || (allow.size > 0 && !allow.has(id)) || isDenied(id)
  }

  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = []
  if (config.mdns) { peerDiscovery.push(mdns({ serviceTag: `accord-${config.cluster}` })) }

  const psk = config.pnetKeyFile != null ? await readSwarmKey(config.pnetKeyFile) : undefined
  const budgets: Partial<ConnectionBudgets> = {
    subnetPeersMax: config.subnetPeersMax,
    subnetIpv4PrefixBits: config.subnetIpv4PrefixBits,
    subnetIpv6PrefixBits: config.subnetIpv6PrefixBits,
    ...options.connectionBudgets
  }
  const hosts = new InboundHostLimiter(budgets)
  const subnets = new SubnetLimiter(budgets)
  // the gater runs only once the node is started, after `node` is assigned
  const isMember = async (peer: PeerId): Promise<boolean> => hasMemberTag(node.peerStore, peer)
  // kad-dht stores PUT_VALUE and ADD_PROVIDER records from anyone, with no
  // cap and no option to turn that off: its datastore keeps only our own
  // provider records (public mode's rendezvous)
  const dht = guardDhtStore(options.datastore, peerIdFromPrivateKey(options.privateKey))
  const dhtProtocol = config.public ? PUBLIC_DHT_PROTOCOL : PRIVATE_DHT_PROTOCOL

  // Not started here: createAccordNode starts it once it has wired the
  // budgets to admission.
  const node = await createLibp2p<BaseServices & S>({
    start: false,
    privateKey: options.privateKey,
    datastore: dht.datastore,
    nodeInfo: { name: 'accord', version: options.version },
    addresses: { listen: config.listen },
    transports: [tcp()],
    connectionEncrypters: connectionEncrypters(config.encrypters),
    streamMuxers: [yamux()],
    ...(psk != null ? { connectionProtector: preSharedKey({ psk }) } : {}),
    connectionManager: {
      maxConnections: config.maxConnections,
      // libp2p's default of 5 inbound connections per second per host is too
      // low when several nodes on one machine join through the same node
      inboundConnectionThreshold: hosts.limits.inboundPerHostPerSecond,
      // libp2p's default of 10 is taken by 10 sockets that never finish a
      // handshake; with more room, and inboundPendingPerHostMax per host,
      // one host cannot lock others out
      maxIncomingPendingConnections: hosts.limits.incomingPendingMax
    },
    // A connection whose ping fails is aborted. libp2p's 5 s floor makes a
    // busy node (or a big cluster joining at once) drop healthy connections
    // and redial them, which makes it busier still.
    connectionMonitor: { pingTimeout: { minTimeout: 15_000, maxTimeout: 60_000 } },
    connectionGater: {
      denyInboundConnection: (maConn) => hosts.deny(maConn),
      denyInboundUpgradedConnection: async (peer, maConn) => {
        hosts.upgraded(maConn)
        return subnets.deny(peer, maConn, isMember)
      },
      denyDialPeer: refused,
      denyInboundEncryptedConnection: refused,
      denyOutboundEncryptedConnection: refused
    },
    peerDiscovery,
    // @libp2p/prometheus-metrics keeps its metric objects in a module-wide
    // map, so with several nodes in one process only the newest one's
    // registry holds libp2p metrics (a daemon runs one node per process)
    metrics: prometheusMetrics({ registry: options.registry, collectDefaultMetrics: true }),
    services: {
      identify: identify(),
      // the connection monitor and kad-dht both ping over one connection at
      // times; with ping's default of one outbound stream the second fails
      // and the monitor then aborts a healthy connection
      ping: ping({ maxOutboundStreams: STREAM_LIMITS.pingMax, maxInboundStreams: STREAM_LIMITS.pingMax }),
      dht: kadDHT({
        // private mode: our own DHT, every node a server, LAN/loopback kept
        // (the default mapper drops them and then nothing is ever found).
        // public mode: a client of the Amino DHT, never a server (a server
        // would hold records for the whole world, or, refusing them, be a
        // black hole in it); the rendezvous records live on its servers
        protocol: dhtProtocol,
        maxInboundStreams: STREAM_LIMITS.dhtInboundMax,
        maxOutboundStreams: STREAM_LIMITS.dhtOutboundMax,
        clientMode: config.public,
        peerInfoMapper: config.dhtKeepPrivateAddresses ? passthroughMapper : removePrivateAddressesMapper
      }),
      pubsub: gossipsub({
        // StrictSign and the scoring of accord's topics (membership/topic.ts)
        ...accordGossipsubOptions(config.cluster),
        allowPublishToZeroTopicPeers: true,
        maxInboundStreams: STREAM_LIMITS.gossipsubMax,
        maxOutboundStreams: STREAM_LIMITS.gossipsubMax,
        emitSelf: false
      }),
      ...options.services
    } as ServiceFactoryMap<BaseServices & S>
  })
  const outbound = new OutboundQuota(node, {
    ...options.outboundQuota,
    outboundPeersMin: config.outboundPeersMin,
    // the spread over subnets uses the subnets of the inbound limit
    subnetIpv4PrefixBits: subnets.limits.subnetIpv4PrefixBits,
    subnetIpv6PrefixBits: subnets.limits.subnetIpv6PrefixBits,
    memberTag: MEMBER_TAG,
    isDenied: refused
  })
  node.addEventListener('start', () => { outbound.start() })
  node.addEventListener('stop', () => { outbound.stop() })
  recordBudgets(node, { hosts, subnets, outbound, dht, dhtProtocol })
  return node
}
