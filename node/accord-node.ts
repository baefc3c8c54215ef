/**
 * createAccordNode(): the one-call assembly, for the daemon and for apps
 * that want everything. Builds and starts one node: identity, persistent
 * datastore, libp2p with accord's services (admission, discovery, Raft:
 * the same service factories an app adds to its own libp2p node), and the
 * HTTP API.
 */
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { LevelDatastore } from 'datastore-level'
import { Registry } from 'prom-client'
import { clusterAdmission } from './admission/admission.ts'
import { admissionRoutes, admissionSummary } from './admission/routes.ts'
import { joinWithToken, startingCredentials } from './admission/setup.ts'
import { wireBudgets } from './budgets.ts'
import { readSavedConfig, resolveConfig, writeSavedConfig, parseHostPort } from './config.ts'
import { crdtRoutes } from './crdt/routes.ts'
import { crdtService } from './crdt/service.ts'
import { clusterDiscovery } from './discovery.ts'
import { dkgRoutes } from './dkg/routes.ts'
import { dkg } from './dkg/service.ts'
import { UserError } from './errors.ts'
import { isLoopbackHost, loadOrCreateApiToken, startHttpApi } from './http-api.ts'
import { loadOrCreateIdentity } from './identity.ts'
import { buildLibp2p } from './libp2p.ts'
import { createLogger } from './logger.ts'
import { membershipRoutes, memberViews } from './membership/routes.ts'
import { swimMembership } from './membership/service.ts'
import { metadataRoutes } from './metadata/routes.ts'
import { clusterMetadata } from './metadata/service.ts'
import { pbftRoutes } from './pbft/routes.ts'
import { pbft } from './pbft/service.ts'
import { raftRoutes } from './raft/routes.ts'
import { raft } from './raft/service.ts'
import { Refusals } from './refusals.ts'
import { statusRoutes } from './routes.ts'
import { topologyRoutes } from './topology/routes.ts'
import { clusterTopology } from './topology/service.ts'
import { VERSION } from './version.ts'
import type { Admission, AdmissionLimits } from './admission/admission.ts'
import type { AdmissionSummary } from './admission/routes.ts'
import type { AccordConfig } from './config.ts'
import type { CrdtService, CrdtSettings, CrdtSummary } from './crdt/service.ts'
import type { Member } from './discovery.ts'
import type { DkgKeysSummary, DkgService, DkgSettings } from './dkg/service.ts'
import type { HttpApi } from './http-api.ts'
import type { AccordLibp2p, AccordOwnServices } from './libp2p.ts'
import type { MemberView } from './membership/routes.ts'
import type { MembershipService } from './membership/service.ts'
import type { ClusterMetadataService } from './metadata/service.ts'
import type { BftSummary, PbftService } from './pbft/service.ts'
import type { RaftService, RaftSummary } from './raft/service.ts'
import type { Logger } from 'pino'

export interface CreateAccordNodeOptions {
  /** Passphrase of an encrypted identity key (the CLI reads ACCORD_PASSPHRASE). */
  passphrase?: string
  /** A logger to use instead of one built from config.logLevel. */
  logger?: Logger
  /** Save the resolved settings into the data dir (the daemon does; default true). */
  saveConfig?: boolean
  /**
   * A join token (from `accord token create` on a member): needed on the
   * first start of a node that joins an existing cluster. Not saved.
   */
  joinToken?: string
  /** How long a join keeps asking members that cannot be reached (default 60 s). */
  joinDeadlineMs?: number
  /** Admission's timeouts and bounds (tests shorten them). */
  admissionLimits?: Partial<AdmissionLimits>
  /** The CRDT service's bounds and timings (tests shorten them); the sync interval comes from config.crdtSyncIntervalMs. */
  crdtSettings?: Partial<CrdtSettings>
  /** The DKG service's timings (tests and benchmarks shorten them). */
  dkgSettings?: Partial<DkgSettings>
}

export interface PeerStatus {
  peerId: string
  addresses: string[]
  encryption: string[]
  multiplexer: string[]
  protocols: string[]
  member: boolean
}

export interface NodeStatus {
  version: string
  peerId: string
  cluster: string
  mode: 'private' | 'public'
  addresses: string[]
  api: string | null
  /** The OS process serving this node (the host app's, for an embedded node). */
  pid: number
  uptimeMs: number
  dhtRoutingTableSize: number
  members: Member[]
  peers: PeerStatus[]
  /** The cluster key this node's certificate names, and the peers it serves. */
  admission: AdmissionSummary
  /** Every member as this node's membership protocol (SWIM) sees it, itself included. */
  membership: Array<Pick<MemberView, 'peerId' | 'state' | 'incarnation'>>
  /** The cluster-metadata store: its size, and the gossip parameters adaptive tuning chose. */
  metadata: MetadataSummary | null
  /** The CRDT service: how many CRDTs this node holds, its bound, the writer allowlist. */
  crdt: CrdtSummary
  /** null when Raft is off. */
  raft: RaftSummary | null
  /** The PBFT replica (or client) of this node; null when no PBFT replica set is configured. */
  bft: BftSummary | null
  /** The threshold key this node holds a share of (made by a DKG); null when none. */
  keys: DkgKeysSummary | null
}

export interface AccordNode {
  readonly config: AccordConfig
  readonly libp2p: AccordLibp2p
  readonly apiUrl: string | null
  readonly metrics: Registry
  /** The Raft group and KV store, or null when Raft is off. */
  readonly raft: RaftService | null
  /** The PBFT replica and client, or null when no PBFT replica set is configured. */
  readonly bft: PbftService | null
  /** Which peers this node serves; makes join tokens. */
  readonly admission: Admission
  /** Who is in the cluster and alive (SWIM with Lifeguard). */
  readonly membership: MembershipService
  /** Per-node key/values every member replicates (anti-entropy). */
  readonly metadata: ClusterMetadataService
  /** Named CRDTs every member replicates (deltas on gossipsub, anti-entropy over /accord/sync/1.0.0). */
  readonly crdt: CrdtService
  /** Distributed key generation and threshold signing (/accord/dkg/1.1.0, and 1.0.0 for older nodes). */
  readonly dkg: DkgService
  /** Cluster members known to this node (cheap: no peer store reads). */
  members(): Member[]
  status(): Promise<NodeStatus>
  stop(): Promise<void>
}

/**
 * Build and start a node. `config.dataDir` is required; every other setting
 * falls back to the one saved in the data dir, then to the default.
 */
export async function createAccordNode (config: Partial<AccordConfig> & { dataDir: string }, options: CreateAccordNodeOptions = {}): Promise<AccordNode> {
  const saved = await readSavedConfig(config.dataDir)
  const resolved = resolveConfig(config.dataDir, saved, config)
  const log = options.logger ?? createLogger(resolved.logLevel)
  const identity = await loadOrCreateIdentity(resolved.dataDir, { passphrase: options.passphrase })
  if (identity.created) { log.info({ peerId: identity.peerId.toString(), path: identity.path }, 'created a new identity') }

  const datastore = new LevelDatastore(join(resolved.dataDir, 'datastore'))
  try {
    await datastore.open()
  } catch (err) {
    throw new UserError(`cannot open datastore in ${resolved.dataDir} (is another node using this data dir?): ${(err as Error).message}`)
  }

  const metrics = new Registry()
  const startedAtMs = Date.now()
  // who this node serves (node/admission), counted and logged in one place
  const refusals = new Refusals({ log: log.child({ component: 'refusals' }), registry: metrics })
  let starting: Awaited<ReturnType<typeof startingCredentials>>
  try {
    starting = await startingCredentials(resolved, identity.peerId, { ...options, handover: identity.keystore.handover })
  } catch (err) {
    await datastore.close()
    throw err
  }
  const bootstrapPeers = resolved.bootstrap.map(addr => multiaddr(addr).getComponents().find(c => c.name === 'p2p')?.value ?? '')
  // peers PBFT isolated (provable misbehaviour, or an operator): the connection gater denies them
  const isolatedPeers = new Set<string>()
  let libp2p: AccordLibp2p & { services: { dkg: DkgService } }
  try {
    libp2p = await buildLibp2p<AccordOwnServices & { dkg: DkgService }>({
      config: resolved,
      privateKey: identity.privateKey,
      datastore,
      registry: metrics,
      version: VERSION,
      isDenied: (peer) => isolatedPeers.has(peer),
      // the same services an app adds to its own libp2p node
      services: {
        admission: clusterAdmission({
          cluster: resolved.cluster,
          dataDir: resolved.dataDir,
          passphrase: options.passphrase,
          ...starting,
          // the public DHT needs strangers; accord's own protocols stay gated
          closeUnadmitted: !resolved.public,
          joinPowBits: resolved.joinPowBits,
          limits: options.admissionLimits,
          refusals,
          log: log.child({ component: 'admission' })
        }),
        membership: swimMembership({
          meta: memberMeta(null),
          registry: metrics,
          log: log.child({ component: 'membership' })
        }),
        metadata: clusterMetadata({
          registry: metrics,
          log: log.child({ component: 'metadata' })
        }),
        crdt: crdtService({
          dataDir: resolved.dataDir,
          writers: resolved.crdtWriters,
          settings: { syncIntervalMs: resolved.crdtSyncIntervalMs, ...options.crdtSettings },
          registry: metrics,
          log: log.child({ component: 'crdt' })
        }),
        dkg: dkg({
          dataDir: resolved.dataDir,
          passphrase: options.passphrase,
          signPolicy: resolved.keysSignPolicy,
          settings: options.dkgSettings,
          registry: metrics,
          log: log.child({ component: 'dkg' })
        }),
        topology: clusterTopology({
          registry: metrics,
          log: log.child({ component: 'topology' })
        }),
        discovery: clusterDiscovery({
          public: resolved.public,
          intervalMs: resolved.discoveryIntervalMs,
          bootstrap: resolved.bootstrap,
          dialDiscoveredPeers: resolved.mdns,
          log: log.child({ component: 'discovery' })
        }),
        ...(resolved.raft
          ? {
              raft: raft({
                dataDir: resolved.dataDir,
                join: resolved.bootstrap.length > 0 && !resolved.raftInit,
                joinVia: bootstrapPeers,
                initialCluster: resolved.raftInitialCluster,
                settings: {
                  tickIntervalMs: resolved.raftTickMs,
                  readOnlyMode: resolved.raftLeaseReads ? 'lease' : 'safe',
                  snapshotEveryEntries: resolved.raftSnapshotEntries
                },
                registry: metrics,
                log
              })
            }
          : {}),
        ...(resolved.bftReplicas.length > 0
          ? {
              pbft: pbft({
                dataDir: resolved.dataDir,
                replicas: resolved.bftReplicas,
                learner: resolved.bftLearner,
                ...(resolved.byzantine ? { faulty: 'equivocate' as const } : {}),
                onIsolated: (isolation) => { isolatedPeers.add(isolation.peer) },
                onReadmitted: (peer) => { isolatedPeers.delete(peer) },
                registry: metrics,
                log
              })
            }
          : {})
      }
    })
  } catch (err) {
    await datastore.close()
    throw explainStartError(err, resolved)
  }
  const { admission, discovery, membership } = libp2p.services
  const raftService = libp2p.services.raft ?? null
  const bftService = libp2p.services.pbft ?? null
  // compact checkpoint certificates: PBFT takes the DKG group (at start from the keystore, then after each DKG or reshare)
  bftService?.setCheckpointSigner(libp2p.services.dkg)
  // members' connections are pruned last; connections and DHT records refused are counted
  const stopBudgets = wireBudgets({ libp2p, admission, refusals })
  try {
    await libp2p.start()
  } catch (err) {
    stopBudgets()
    await Promise.resolve(libp2p.stop()).catch(() => {})
    await datastore.close()
    throw explainStartError(err, resolved)
  }

  // Save the listen addresses with the ports actually bound, so a restart
  // comes back on the same addresses and its peers find it again.
  const bound = boundListenAddresses(resolved.listen, libp2p)
  const effective: AccordConfig = { ...resolved, listen: bound }

  let api: HttpApi | null = null
  const status = async (): Promise<NodeStatus> => {
    const members = discovery.members()
    const memberIds = new Set(members.map(m => m.peerId))
    const byPeer = new Map<string, PeerStatus>()
    const lookups: Array<Promise<void>> = []
    for (const connection of libp2p.getConnections()) {
      const id = connection.remotePeer.toString()
      let entry = byPeer.get(id)
      if (entry == null) {
        const created: PeerStatus = { peerId: id, addresses: [], encryption: [], multiplexer: [], protocols: [], member: memberIds.has(id) }
        lookups.push(libp2p.peerStore.get(connection.remotePeer).then(p => { created.protocols = p.protocols }, () => {}))
        byPeer.set(id, created)
        entry = created
      }
      entry.addresses.push(connection.remoteAddr.toString())
      addOnce(entry.encryption, connection.encryption)
      addOnce(entry.multiplexer, connection.multiplexer)
    }
    await Promise.all(lookups)
    return {
      version: VERSION,
      peerId: libp2p.peerId.toString(),
      cluster: resolved.cluster,
      mode: resolved.public ? 'public' : 'private',
      addresses: libp2p.getMultiaddrs().map(String),
      api: api?.url ?? null,
      pid: process.pid,
      uptimeMs: Date.now() - startedAtMs,
      dhtRoutingTableSize: routingTableSize(libp2p),
      members,
      peers: [...byPeer.values()].sort((a, b) => a.peerId.localeCompare(b.peerId)),
      admission: admissionSummary(admission),
      membership: memberViews(membership).map(({ peerId, state, incarnation }) => ({ peerId, state, incarnation })),
      metadata: metadataSummary(libp2p.services.metadata),
      crdt: libp2p.services.crdt.summary(),
      raft: raftService?.summary() ?? null,
      bft: bftService?.summary() ?? null,
      keys: libp2p.services.dkg.summary()
    }
  }

  const stopAll = async (): Promise<void> => {
    await api?.close()
    stopBudgets()
    // stops accord's services with the rest
    await libp2p.stop()
    await datastore.close()
  }

  try {
    // A first start needs a bootstrap peer to learn the cluster; a restart
    // can do without one, since it remembers the members it knew.
    if (resolved.bootstrap.length > 0) {
      const { reached, failures } = await discovery.dialBootstrap()
      if (reached === 0 && discovery.knownMembers === 0) {
        throw new UserError(`cannot reach any bootstrap peer: ${failures.join('; ')}`)
      }
      for (const failure of failures) { log.warn({ failure }, 'bootstrap peer unreachable') }
    }
    if (starting.join === true && options.joinToken != null) {
      await joinWithToken(libp2p, resolved, admission, { ...options, joinToken: options.joinToken })
    }
    if (resolved.api !== null) {
      const { host, port } = parseHostPort(resolved.api, '--api')
      const token = isLoopbackHost(host) ? null : await loadOrCreateApiToken(resolved.dataDir)
      const routes = [...statusRoutes({ status, metrics }), ...admissionRoutes(admission), ...membershipRoutes(membership), ...metadataRoutes(libp2p.services.metadata), ...crdtRoutes(libp2p.services.crdt), ...topologyRoutes(libp2p.services.topology), ...dkgRoutes(libp2p.services.dkg, () => bftService?.summary().replicas ?? null), ...(raftService != null ? raftRoutes(raftService) : []), ...(bftService != null ? pbftRoutes(bftService) : [])]
      api = await startHttpApi({ host, port, token, routes, log: log.child({ component: 'http' }), refusals })
      effective.api = `${host.includes(':') ? `[${host}]` : host}:${new URL(api.url).port}`
      membership.setMeta(memberMeta(api.url))
    }
    if (options.saveConfig !== false) { await writeSavedConfig(effective) }
  } catch (err) {
    await stopAll()
    throw err
  }

  log.info({ peerId: libp2p.peerId.toString(), addresses: libp2p.getMultiaddrs().map(String), api: api?.url }, 'accord node started')

  let stopping: Promise<void> | undefined
  return {
    config: effective,
    libp2p,
    apiUrl: api?.url ?? null,
    metrics,
    raft: raftService,
    bft: bftService,
    admission,
    membership,
    metadata: libp2p.services.metadata,
    crdt: libp2p.services.crdt,
    dkg: libp2p.services.dkg,
    members: () => discovery.members(),
    status,
    stop: async () => {
      stopping ??= stopAll().then(() => { log.info('accord node stopped') })
      await stopping
    }
  }
}

/** What this node tells the others about itself through membership. */
function memberMeta (api: string | null): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ version: VERSION, ...(api != null ? { api } : {}) }))
}

function addOnce (list: string[], value: string | undefined): void {
  if (value != null && !list.includes(value)) { list.push(value) }
}

function routingTableSize (libp2p: AccordLibp2p): number {
  const dht = libp2p.services.dht as unknown as { routingTable?: { size: number } }
  return dht.routingTable?.size ?? 0
}

/** Replace tcp/0 in the configured listen addresses with the bound port. */
function boundListenAddresses (configured: string[], libp2p: AccordLibp2p): string[] {
  const bound = libp2p.getMultiaddrs().map(ma => ma.toString())
  return configured.map(addr => {
    const ma = multiaddr(addr)
    const components = ma.getComponents()
    const tcp = components.find(c => c.name === 'tcp')
    if (tcp?.value !== '0') { return addr }
    const ip = components.find(c => c.name === 'ip4' || c.name === 'ip6')
    const match = bound.find(b => ip != null && b.startsWith(`/${ip.name}/${ip.value}/tcp/`))
    return match != null ? match.replace(/\/p2p\/.*$/, '') : addr
  })
}

function explainStartError (err: unknown, config: AccordConfig): Error {
  if (err instanceof UserError) { return err }
  const e = err as NodeJS.ErrnoException
  const text = `${e.code ?? ''} ${e.message ?? ''}`
  if (text.includes('EADDRINUSE')) { return new UserError(`listen address already in use: ${config.listen.join(', ')}`) }
  if (text.includes('EADDRNOTAVAIL')) { return new UserError(`listen address not available on this machine: ${config.listen.join(', ')}`) }
  if (e.name === 'UnsupportedListenAddressesError' || e.name === 'NoValidAddressesError') { return new UserError(`no usable listen address in ${config.listen.join(', ')}`) }
  return e instanceof Error ? e : new Error(String(err))
}

export interface MetadataSummary {
  mode: string
  adaptive: boolean
  fanout: number
  intervalMs: number
  duplicateRate: number
  nodes: number
  entries: number
}

function metadataSummary (metadata: ClusterMetadataService): MetadataSummary | null {
  const status = metadata.status()
  if (status == null) { return null }
  const { mode, adaptive, fanout, intervalMs, duplicateRate, nodes, entries } = status
  return { mode, adaptive, fanout, intervalMs, duplicateRate, nodes, entries }
}
