/**
 * The Raft service: the node's Raft group with its storage, transport,
 * driver, the client protocol for forwarding to the leader, joining and
 * metrics. A js-libp2p service (`raft(init)`, beside clusterAdmission);
 * the HTTP routes and CLI talk to this class only.
 *
 * Forming a group: a node that starts with empty Raft storage founds a new
 * group with itself as the only voter, unless `join` is set: then it asks
 * the group to add it as a learner, and the leader promotes learners once
 * they have caught up. A node with Raft state simply resumes.
 *
 * With `initialCluster` (etcd's static bootstrap) the group starts with all
 * its voters at once, so no acknowledged write ever rests on one machine.
 * Given a list of peer ids, every listed node bootstraps the same
 * configuration on its own (the bootstrap entries are identical
 * everywhere, see RaftNode's bootstrapConf); an unlisted node joins as a
 * learner. Given a count N, the founder (the node without `join`: exactly
 * one, chosen by the operator, as before) waits until N - 1 admitted peers
 * that serve the Raft protocol are connected, then bootstraps them and
 * itself as the voters of one configuration; the others start empty and
 * learn it from the founder's first appends. One founder, not "the lowest
 * peer id": nodes that see different sets of peers would each found a
 * group over overlapping members, and two configurations at index 1 break
 * Raft's log matching. Until the group formed (a leader is known and the
 * configuration holds N voters), writes and linearizable reads are
 * refused at once with 'not-formed' (HTTP 503) and the reason.
 */
import { randomBytes } from 'node:crypto'
import { setImmediate, setTimeout as sleep } from 'node:timers/promises'
import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { Registry } from 'prom-client'
import { resolveKvLimits } from '../../protocols/kv/index.ts'
import { hostFromComponents } from '../host.ts'
import { silentLogger } from '../logger.ts'
import { ADDRESS_LOOKUP_PEERS_MAX, handleClientRequests, RAFT_CLIENT_PROTOCOL, parsePeerId, sendClientRequest, serveClientRequest, toAnswer } from './client-protocol.ts'
import { RaftDriver, RaftError } from './driver.ts'
import { kvApplication } from './kv-application.ts'
import { raftMetrics } from './metrics.ts'
import { RaftPeerFilter } from './peer-filter.ts'
import { SessionPool } from './session-pool.ts'
import { RaftStorage, raftStorageDir } from './storage/index.ts'
import { RAFT_PROTOCOL } from './transport-constants.ts'
import { RaftTransport } from './transport.ts'
import type { ClientAnswer, ClientRequest } from './client-protocol.ts'
import type { RaftTransportStats } from './transport.ts'
import type { ClientSession, KvApplyResult, KvCommand, KvLimits } from '../../protocols/kv/index.ts'
import type { ConfChange, ConfState, RaftStatus } from '../../protocols/raft/index.ts'
import type { Admission } from '../admission/admission.ts'
import type { AccordHost, HostComponents } from '../host.ts'
import type { MembershipService } from '../membership/service.ts'
import type { ComponentLogger, PeerId, Startable, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { Logger } from 'pino'

export interface RaftSettings {
  tickIntervalMs: number
  electionTimeoutTicks: number
  heartbeatIntervalTicks: number
  readOnlyMode: 'safe' | 'lease'
  snapshotEveryEntries: number
  /** Longest a client request (including retries and forwarding) may take. */
  requestTimeoutMs: number
}

/**
 * A heartbeat every tick; a follower that hears none campaigns after a
 * random 6-11 ticks. Ticks come every 50 ms (300-550 ms elections; the
 * daemon's raftTickMs), so a leader that hangs (SIGSTOP, a cut cable) is
 * replaced in well under a second. Shorter timeouts are made safe
 * by pre-vote and check-quorum (a node that merely lagged cannot depose a
 * live leader) and by local health (a node whose own ticks come late waits
 * longer before it campaigns: TimerLateness in node/driver-scheduling.ts).
 * Lease reads: lease 6 - 1 - 2 = 3 ticks, tolerating followers' clocks up
 * to 40% fast (protocols/raft/lease.ts).
 */
export const RAFT_SETTINGS_DEFAULTS: RaftSettings = {
  tickIntervalMs: 50,
  electionTimeoutTicks: 6,
  heartbeatIntervalTicks: 1,
  readOnlyMode: 'safe',
  snapshotEveryEntries: 100_000,
  requestTimeoutMs: 10_000
}

/**
 * A leader steps down after this many election timeouts (600 ms by
 * default) without hearing from a quorum: with 300 ms, followers that a
 * busy machine left unscheduled for half a second deposed a live leader
 * (the soak's leader changes). A leader cut off from the others holds on
 * that much longer; lease reads stay safe (the followers' side makes them).
 */
const CHECK_QUORUM_ELECTION_TIMEOUTS = 2
/** A joining node asks at most this often, and gives up after JOIN_ATTEMPTS_MAX tries. */
const JOIN_RETRY_MS = 1000
const JOIN_ATTEMPTS_MAX = 600
/** After a join request was accepted, look this much later whether this node is in the configuration. */
const JOIN_CONFIRM_MS = 5000
/** How often a node waiting for its initial cluster counts the members connected. */
const FORMATION_CHECK_MS = 250
/** How often a node checks that it is connected to every Raft member. */
const MEMBER_CHECK_INTERVAL_MS = 1000
const MEMBER_DIAL_TIMEOUT_MS = 5000
/** Longest pause before retrying a request that found no leader; a change of leader ends it at once. */
const NO_LEADER_PAUSE_MS = 150

export type ReadConsistency = 'linearizable' | 'lease' | 'stale'

export interface RaftSummary {
  role: string
  term: number
  leader: string | null
  commit: number
  applied: number
  lastIndex: number
  voters: string[]
  learners: string[]
  joint: boolean
  /** A leader is known and the configuration holds the initial cluster's voters (see RaftInit.initialCluster). */
  formed: boolean
  /** When this process saw the group form (ISO 8601); null before, or when it resumed a group from storage. */
  formedAt: string | null
  /** Why the group is not formed yet ("1 of 3 members connected"), or null. */
  formation: string | null
  lastSnapshotIndex: number
  /** The KV store: keys, key + value bytes (what dataBytesMax bounds), client sessions remembered. */
  kv: { keys: number, dataBytes: number, sessions: number }
  /** Lifeguard-style local health: 0 while this node's ticks come on time, up to 8 while its event loop lags (it then waits longer before it campaigns). */
  localHealth: number
  progress?: RaftStatus['progress']
  /** What the transport holds for each peer it sends to: queue, whether a stream is open, failures in a row. */
  outbound: RaftTransportStats['peers']
}

export interface RaftInit {
  /** Raft keeps its log, hard state and snapshots in `<dataDir>/raft`. */
  dataDir: string
  /**
   * When the storage is empty: ask the group to add this node (true), or
   * found a new group with this node as its only voter (false, the default).
   */
  join?: boolean
  /** Peer ids to ask first when joining; then every admitted peer. */
  joinVia?: string[]
  /**
   * The group's first voters, used when the storage is empty (etcd's
   * --initial-cluster): a list of peer ids, which every listed node
   * bootstraps on its own; or a count, which the founder (the node without
   * `join`) waits for before it bootstraps them all; null or absent: none.
   * See the file header.
   */
  initialCluster?: number | string[] | null
  settings?: Partial<RaftSettings>
  kvLimits?: Partial<KvLimits>
  /** Where the Raft metrics are registered (default: a registry of its own). */
  registry?: Registry
  log?: Logger
}

/** The components the Raft service takes; clusterAdmission must run as `admission`. */
export interface RaftComponents extends HostComponents {
  logger: ComponentLogger
  admission: Admission
  /** Optional: with it, only learners that failure detection sees alive are promoted. */
  membership?: Pick<MembershipService, 'stateOf'>
}

/**
 * KV keys under this prefix hold the peers removed from the group, which
 * admission refuses from then on. Replicated and snapshotted with the rest
 * of the store, so every node, including one that catches up from a
 * snapshot, knows them. Clients cannot write them (see routes.ts).
 */
export const RESERVED_KEY_PREFIX = '\u0000'
export const REVOKED_KEY_PREFIX = `${RESERVED_KEY_PREFIX}accord/revoked/`

/** Keys under RESERVED_KEY_PREFIX are accord's own: no client writes them. */
function checkClientKey (key: string): void {
  if (key.startsWith(RESERVED_KEY_PREFIX)) { throw new RaftError('invalid', 'keys starting with NUL are reserved for accord') }
}

export class RaftService implements Startable {
  readonly limits: KvLimits
  readonly settings: RaftSettings
  readonly #components: RaftComponents
  readonly #host: AccordHost
  readonly #init: RaftInit
  readonly #log: Logger
  readonly #metrics: ReturnType<typeof raftMetrics>
  // set by start()
  #storage!: RaftStorage
  #transport!: RaftTransport
  #driver!: RaftDriver
  /** Sessions for writes that bring none; client ids fresh per start, so sequences never clash with a previous run. */
  #sessions!: SessionPool
  #stopped = true
  #starting: Promise<void> | undefined
  #joinTimer: ReturnType<typeof setTimeout> | undefined
  /** The next join attempt, while one waits on #joinTimer (null while one runs, or once joined). */
  #joinWaiting: number | null = null
  #stopJoinWatch: (() => void) | undefined
  #joinAccepted = false
  #membersTimer: ReturnType<typeof setInterval> | undefined
  /** Members being dialled by #connectMembers (bounded by the configuration size). */
  readonly #dialing = new Set<string>()
  #connecting = false
  /** The leader named by a member that refused our join request. */
  #joinHint: string | null = null
  /** Voters the configuration must hold before the group counts as formed. */
  #formationVoters = 1
  /** Set once formed (stays set): when, in ms since the epoch, or 0 when resumed from storage. */
  #formedAtMs: number | null = null
  /** Members connected, this node included, as last counted (see #checkFormation). */
  #membersConnected = 1
  /** A founder waiting for its initial cluster (count mode): bootstraps once enough members are connected. */
  #awaitingInitialCluster = false
  #formationTimer: ReturnType<typeof setInterval> | undefined
  #checkingFormation = false

  readonly [Symbol.toStringTag] = '@accord/raft'
  readonly [serviceCapabilities]: string[] = ['@accord/raft']
  readonly [serviceDependencies]: string[] = ['@accord/admission']

  constructor (components: RaftComponents, init: RaftInit) {
    this.#components = components
    this.#host = hostFromComponents(components)
    this.#init = init
    this.#log = init.log ?? silentLogger()
    this.limits = resolveKvLimits(init.kvLimits)
    this.settings = { ...RAFT_SETTINGS_DEFAULTS, ...init.settings }
    this.#metrics = raftMetrics(init.registry ?? new Registry())
  }

  /** Open the storage, serve Raft and request forwarding to admitted peers, and run the group. */
  async start (): Promise<void> {
    this.#starting = this.#start()
    await this.#starting
  }

  async #start (): Promise<void> {
    const { limits, settings } = this
    const log = this.#log
    const admission = this.#components.admission
    const id = this.#host.peerId.toString()
    const metrics = this.#metrics
    const storage = this.#storage = await RaftStorage.open(raftStorageDir(this.#init.dataDir), {
      // the largest snapshot these KV limits can produce must be storable
      snapshotBytesMax: RaftDriver.snapshotBytesMax(limits),
      logger: log.child({ component: 'raft-storage' }),
      onFsync: (ms, entries) => { metrics.fsync(ms, entries) }
    })
    // what started is closed again if a later step fails (say, a stored
    // snapshot that does not restore), so a failed start leaks nothing
    let transportStarted = false
    try {
      const restored = await storage.load()
      const fresh = restored.hardState.term === 0 && restored.entries.length === 0 && restored.snapshot == null
      const plan = formationPlan(id, this.#init, fresh)
      const { join, bootstrapConf } = plan
      this.#awaitingInitialCluster = plan.awaitInitialCluster
      this.#formationVoters = plan.formationVoters
      // a group resumed from storage formed before
      if (!fresh) { this.#formedAtMs = 0 }

      // the driver and the transport refer to each other: the transport
      // delivers to the driver, the driver sends through the transport
      const ref: { driver?: RaftDriver } = {}
      const filter = new RaftPeerFilter({
        state: () => { const s = ref.driver!.status(); return { conf: s.conf, leader: s.leader, lastIndex: s.lastIndex } },
        version: () => ref.driver!.configurationVersion
      })
      const gate = admission.gate.bind(admission)
      const { registrar } = this.#components
      const gatedRegistrar = { handle: async (protocol: string, handler: StreamHandler, opts?: StreamHandlerOptions) => { await registrar.handle(protocol, gate(protocol, handler), opts) }, unhandle: async (protocol: string) => { await registrar.unhandle(protocol) } }
      // (libp2p's components are a Proxy that throws on unknown keys: no spread)
      const { peerId, logger, connectionManager } = this.#components
      const transport = this.#transport = new RaftTransport({ peerId, logger, connectionManager, registrar: gatedRegistrar }, {
        // a few election timeouts: a leader's heartbeats keep its streams busy
        readIdleTimeoutMs: settings.tickIntervalMs * settings.electionTimeoutTicks * 6,
        // every snapshot this node's KV store can produce, so any follower can catch up
        snapshotBytesMax: RaftDriver.snapshotBytesMax(limits),
        // the leader's snapshot always gets a reassembly slot
        isLeader: (peer) => ref.driver?.leader === peer,
        onMessage: (message) => {
          if (ref.driver == null) { return }
          if (filter.accepts(message)) {
            ref.driver.step(message)
          } else {
            admission.refusals.refuse(message.from, RAFT_PROTOCOL, 'not-a-member', { type: message.type, term: message.term })
          }
        },
        onUnreachable: (to) => { ref.driver?.reportUnreachable(to) },
        onSnapshotSent: (to, outcome) => { ref.driver?.reportSnapshot(to, outcome) }
      })
      const driver = this.#driver = ref.driver = RaftDriver.create({
        ...kvApplication(limits),
        id,
        store: storage,
        outbox: transport,
        restored,
        bootstrapConf,
        storageDir: storage.dir,
        tickIntervalMs: settings.tickIntervalMs,
        electionTimeoutTicks: settings.electionTimeoutTicks,
        checkQuorumTicks: CHECK_QUORUM_ELECTION_TIMEOUTS * settings.electionTimeoutTicks,
        heartbeatIntervalTicks: settings.heartbeatIntervalTicks,
        readOnlyMode: settings.readOnlyMode,
        snapshotEveryEntries: settings.snapshotEveryEntries,
        autoPromoteLearners: true,
        isAlive: (peer) => this.#isAlive(peer),
        log: log.child({ component: 'raft' }),
        metrics
      })
      metrics.observe(() => ({ status: driver.status(), transport: transport.stats(), lastSnapshotIndex: driver.lastSnapshotIndex, kv: driver.kv.stats(), localHealth: driver.localHealthScore }))

      this.#stopped = false
      this.#sessions = new SessionPool(randomBytes(6).toString('hex'))
      await transport.start()
      transportStarted = true
      await handleClientRequests(this.#host, driver, limits, log.child({ component: 'raft-client' }), gate, { refusals: admission.refusals })
      driver.start()
      // a removed member is refused everywhere (see changeMembership)
      admission.setRevocationCheck(peer => this.isRevoked(peer))
      this.#host.addEventListener('peer:disconnect', this.#onPeerDisconnect)
      this.#membersTimer = setInterval(() => {
        this.#connectMembers().catch(err => { log.warn({ err }, 'keeping connections to raft members failed') })
      }, MEMBER_CHECK_INTERVAL_MS)
      if (bootstrapConf != null) { log.info({ voters: bootstrapConf.voters }, 'founded a new raft group') }
      if (this.#formedAtMs == null) {
        if (this.#awaitingInitialCluster) { log.info({ members: this.#formationVoters }, 'waiting for the initial cluster to connect before founding the raft group') }
        this.#formationTimer = setInterval(() => {
          this.#checkFormation().catch(err => { log.warn({ err }, 'checking the raft group formation failed') })
        }, FORMATION_CHECK_MS)
      }
      if (fresh && join) {
        this.#scheduleJoin(0)
        // a newly admitted peer may be the first one to ask: ask at once
        this.#stopJoinWatch = admission.onAdmitted(() => { this.#joinNow() })
      }
    } catch (err) {
      this.#stopped = true
      await this.#host.unhandle(RAFT_CLIENT_PROTOCOL).catch(() => {})
      if (transportStarted) { await this.#transport.stop().catch(() => {}) }
      await storage.close().catch(() => {})
      throw err
    }
  }

  async stop (): Promise<void> {
    // libp2p stops every service when one fails to start, maybe while this one still starts
    await this.#starting?.catch(() => {})
    if (this.#stopped) { return }
    this.#stopped = true
    clearTimeout(this.#joinTimer)
    clearInterval(this.#formationTimer)
    this.#stopJoinWatch?.()
    clearInterval(this.#membersTimer)
    this.#host.removeEventListener('peer:disconnect', this.#onPeerDisconnect)
    await this.#host.unhandle(RAFT_CLIENT_PROTOCOL)
    await this.#driver.stop()
    await this.#transport.stop()
    await this.#storage.close()
  }

  /** Whether membership (when the node runs it) sees `peer` alive; true without membership. */
  #isAlive (peer: string): boolean {
    let membership: RaftComponents['membership']
    // libp2p's components throw on a service that is not there
    try { membership = this.#components.membership } catch { return true }
    if (membership == null) { return true }
    return membership.stateOf(peer) === 'alive'
  }

  /**
   * Every connection to a peer closed. When the peer is our leader this is
   * usually a crash (its OS reset the connections), so we need not wait out
   * the election timeout (see RaftNode.forgetLeader).
   */
  readonly #onPeerDisconnect = (event: CustomEvent<PeerId>): void => {
    this.#driver.forgetLeader(event.detail.toString())
  }

  /**
   * The Raft transport's counters and buffers (what the metrics read).
   *
   * @internal
   */
  transportStats (): RaftTransportStats {
    return this.#transport.stats()
  }

  summary (): RaftSummary {
    const status = this.#driver.status()
    const kv = this.#driver.kv.stats()
    return {
      role: status.role,
      term: status.term,
      leader: status.leader,
      commit: status.commit,
      applied: this.#driver.kv.appliedIndex,
      lastIndex: status.lastIndex,
      voters: status.conf.voters,
      learners: status.conf.learners,
      joint: status.conf.votersOutgoing.length > 0,
      formed: this.formed,
      formedAt: this.#formedAtMs != null && this.#formedAtMs > 0 ? new Date(this.#formedAtMs).toISOString() : null,
      formation: this.formed ? null : this.#notFormedReason(),
      lastSnapshotIndex: this.#driver.lastSnapshotIndex,
      kv: { keys: kv.keys, dataBytes: kv.dataBytes, sessions: kv.sessions },
      localHealth: this.#driver.localHealthScore,
      progress: status.progress,
      outbound: this.#transport.stats().peers
    }
  }

  /**
   * write() for a request that brings no session of its own: it borrows one
   * of this node's pooled sessions (see SessionPool). `command` builds the
   * command for the session it is given.
   */
  async writeWithPooledSession (command: (session: ClientSession) => KvCommand): Promise<KvApplyResult> {
    return this.#sessions.withSession(async session => this.write(command(session)))
  }

  /**
   * Apply a KV command through the leader, retrying (with the same session,
   * so at most once) across leader changes until the request deadline.
   */
  async write (command: KvCommand): Promise<KvApplyResult> {
    this.#checkFormed()
    const answer = await this.#toLeader({ op: 'propose', command })
    if (answer.result == null) { throw new RaftError('retry', 'the leader sent no result') }
    return answer.result
  }

  /**
   * Put `value` under `key` through the leader, exactly once (a pooled
   * session carries it across retries and leader changes). The result
   * says whether it applied, and at which log index. Throws RaftError.
   */
  async put (key: string, value: Uint8Array | string): Promise<KvApplyResult> {
    checkClientKey(key)
    const bytes = typeof value === 'string' ? new TextEncoder().encode(value) : value
    return this.writeWithPooledSession(session => ({ type: 'put', session, key, value: bytes }))
  }

  /** Delete `key` through the leader, exactly once. Throws RaftError. */
  async delete (key: string): Promise<KvApplyResult> {
    checkClientKey(key)
    return this.writeWithPooledSession(session => ({ type: 'delete', session, key }))
  }

  /**
   * Change the group's members. A member removed is revoked first, through
   * the replicated store, so admission refuses it everywhere from then on.
   */
  async changeMembership (change: ConfChange): Promise<void> {
    this.#checkFormed()
    for (const { type, node } of change.changes) {
      if (type === 'remove') { await this.writeWithPooledSession(session => ({ type: 'put', session, key: REVOKED_KEY_PREFIX + node, value: new TextEncoder().encode(new Date().toISOString()) })) }
    }
    await this.#toLeader({ op: 'conf-change', change })
  }

  /** Whether `peer` was removed from the group (read from this node's applied state). */
  isRevoked (peer: string): boolean {
    return this.#driver.kv.get(REVOKED_KEY_PREFIX + peer) != null
  }

  async transferLeadership (to: string): Promise<void> {
    await this.#toLeader({ op: 'transfer-leader', to })
  }

  /** Read a key with the given consistency; returns the value and the applied index it reflects. */
  async read (key: string, consistency: ReadConsistency): Promise<{ value: Uint8Array | null, index: number }> {
    if (consistency === 'lease' && this.settings.readOnlyMode !== 'lease') {
      throw new RaftError('invalid', 'lease reads are disabled on this node (they trust clocks); use linearizable or stale')
    }
    if (consistency !== 'stale') {
      this.#checkFormed()
      const deadline = AbortSignal.timeout(this.settings.requestTimeoutMs)
      for (;;) {
        try {
          await this.#driver.readBarrier(deadline)
          break
        } catch (err) {
          if (!(err instanceof RaftError) || err.code !== 'no-leader' || deadline.aborted) { throw err }
          await this.#leaderChangeOrPause()
        }
      }
    }
    return { value: this.#driver.kv.get(key), index: this.#driver.kv.appliedIndex }
  }

  /**
   * Whether the group formed: a leader is known and the configuration holds
   * the voters the initial cluster asked for. Once true, stays true.
   */
  get formed (): boolean {
    if (this.#formedAtMs != null) { return true }
    if (this.#driver.leader == null || this.#driver.status().conf.voters.length < this.#formationVoters) { return false }
    this.#formedAtMs = Date.now()
    clearInterval(this.#formationTimer)
    this.#log.info({ voters: this.#driver.status().conf.voters }, 'raft group formed')
    return true
  }

  /** Refuses at once while the initial cluster has not formed (without initialCluster, requests wait for a leader as before). */
  #checkFormed (): void {
    if (this.#init.initialCluster == null || this.formed) { return }
    throw new RaftError('not-formed', this.#notFormedReason())
  }

  #notFormedReason (): string {
    return `raft group not formed: ${Math.min(this.#membersConnected, this.#formationVoters)} of ${this.#formationVoters} members connected`
  }

  /**
   * Until formed: count the admitted peers that are connected and serve
   * Raft, and, on a founder waiting for its initial cluster, bootstrap the
   * group once there are enough: itself and the lowest peer ids of the rest.
   */
  async #checkFormation (): Promise<void> {
    if (this.#checkingFormation || this.#stopped || this.formed) { return }
    this.#checkingFormation = true
    try {
      const self = this.#host.peerId.toString()
      const peers = await this.#raftPeersConnected()
      this.#membersConnected = 1 + peers.length
      if (!this.#awaitingInitialCluster || peers.length + 1 < this.#formationVoters || this.#stopped) { return }
      this.#awaitingInitialCluster = false
      const voters = [self, ...peers.slice(0, this.#formationVoters - 1)]
      if (await this.#driver.bootstrap(votersConf(voters))) {
        this.#log.info({ voters }, 'founded a new raft group with its initial cluster')
      } else {
        this.#log.warn('not founding a raft group: this node heard of one meanwhile and follows it')
      }
    } finally {
      this.#checkingFormation = false
    }
  }

  /** Admitted peers (of the initial list, when there is one) that are connected and serve the Raft protocol (identify told us), sorted. */
  async #raftPeersConnected (): Promise<string[]> {
    const self = this.#host.peerId.toString()
    const initial = this.#init.initialCluster
    const found: string[] = []
    for (const id of this.#components.admission.admittedPeers()) {
      const peerId = parsePeerId(id)
      if (id === self || peerId == null || (Array.isArray(initial) && !initial.includes(id)) || this.#host.getConnections(peerId).length === 0) { continue }
      const serves = await this.#host.peerStore.get(peerId).then(p => p.protocols.includes(RAFT_PROTOCOL), () => false)
      if (serves) { found.push(id) }
    }
    return found.sort()
  }

  /** Run a request on the leader: locally when we lead, else over the client protocol. */
  async #toLeader (request: ClientRequest): Promise<Extract<ClientAnswer, { ok: true }>> {
    const deadline = AbortSignal.timeout(this.settings.requestTimeoutMs)
    // errors are built only when a request fails: an Error captures a stack, and this is the write path
    let lastError: RaftError | null = null
    let target = this.#driver.leader
    while (!deadline.aborted && !this.#stopped) {
      const leader = target
      let answer: ClientAnswer
      try {
        answer = leader === this.#host.peerId.toString() || leader == null
          ? await this.#local(request, deadline)
          // a leader that froze (SIGSTOP, a partition) never answers: give up
          // on it as soon as another is elected (the session keeps a retried
          // write from applying twice)
          : await sendClientRequest(this.#host, leader, request, AbortSignal.any([deadline, this.#driver.leaderChangeSignal]))
      } catch (err) {
        answer = toAnswer(err, leader)
      }
      if (answer.ok) { return answer }
      lastError = new RaftError(answer.code, answer.message, answer.leader)
      // 'invalid' and 'busy' are final; the others mean "not here or not
      // now": ask again (same session, so a write applies at most once)
      if (answer.code === 'invalid' || answer.code === 'busy' || answer.code === 'stopped') { throw lastError }
      if (answer.code !== 'not-leader' || answer.leader === leader) {
        await this.#leaderChangeOrPause()
        target = this.#driver.leader
      } else {
        // The answer names another leader, which this node's driver may not
        // have taken in yet (it does so in its next Ready, on a later turn of
        // the event loop): ask that one. Always after a turn of the event
        // loop: retrying on settled promises alone once kept the Ready, the
        // deadline timer and all I/O from ever running (a woken old leader
        // spun at 100% CPU for good).
        target = answer.leader
        await setImmediate()
      }
    }
    if (lastError == null) { throw new RaftError('no-leader', 'no leader is known') }
    throw lastError.code === 'no-leader' ? lastError : new RaftError('timeout', `no answer within ${this.settings.requestTimeoutMs} ms: ${lastError.message}`, lastError.leader)
  }

  /** Before asking again: wait a little, or less if the leader changes meanwhile. */
  async #leaderChangeOrPause (): Promise<void> {
    await sleep(NO_LEADER_PAUSE_MS, undefined, { signal: this.#driver.leaderChangeSignal }).catch(() => {})
  }

  async #local (request: ClientRequest, signal: AbortSignal): Promise<ClientAnswer> {
    return serveClientRequest(this.#host, this.#driver, request, signal)
  }

  /**
   * Keep a connection to every member of the configuration. Discovery
   * usually gets there first; this covers members that discovery has not
   * met (say, two nodes that joined at the same time through one bootstrap
   * node): their addresses are asked of the leader, which knows them all.
   */
  async #connectMembers (): Promise<void> {
    // a slow round (address lookups time out after 5 s) must not overlap the next
    if (this.#connecting) { return }
    this.#connecting = true
    try {
      await this.#connectMissingMembers()
    } finally {
      this.#connecting = false
    }
  }

  async #connectMissingMembers (): Promise<void> {
    const libp2p = this.#host
    const self = libp2p.peerId.toString()
    const conf = this.#driver.status().conf
    // a member id that is no peer id (a configuration from before ids were
    // checked) is skipped, never thrown on every round
    const missing = [...new Set([...conf.voters, ...conf.votersOutgoing, ...conf.learners])]
      .flatMap(id => { const peerId = parsePeerId(id); return peerId == null ? [] : [{ id, peerId }] })
      .filter(({ id, peerId }) => id !== self && !this.#dialing.has(id) && libp2p.getConnections(peerId).length === 0)
      .slice(0, ADDRESS_LOOKUP_PEERS_MAX)
    if (missing.length === 0) { return }
    const unknown: string[] = []
    for (const { id, peerId } of missing) {
      const known = await libp2p.peerStore.get(peerId).then(p => p.addresses.length > 0, () => false)
      if (!known) { unknown.push(id) }
    }
    const leader = this.#driver.leader
    if (unknown.length > 0 && leader != null && leader !== self) {
      const answer = await sendClientRequest(libp2p, leader, { op: 'peer-addresses', peers: unknown }, AbortSignal.timeout(MEMBER_DIAL_TIMEOUT_MS)).catch(() => null)
      const peers = answer?.ok === true && Array.isArray(answer.peers) ? answer.peers : []
      for (const peer of peers) {
        const peerId = typeof peer?.id === 'string' && unknown.includes(peer.id) ? parsePeerId(peer.id) : null
        if (peerId == null || !Array.isArray(peer.addrs)) { continue }
        const multiaddrs = peer.addrs.flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
        await libp2p.peerStore.merge(peerId, { multiaddrs }).catch(() => {})
      }
    }
    for (const { id, peerId } of missing) {
      this.#dialing.add(id)
      libp2p.dial(peerId, { signal: AbortSignal.timeout(MEMBER_DIAL_TIMEOUT_MS) })
        .catch(err => { this.#log.debug({ peer: id, err: (err as Error).message }, 'cannot reach a raft member') })
        .finally(() => { this.#dialing.delete(id) })
    }
  }

  /** A node that starts empty asks the group to add it as a learner. */
  #scheduleJoin (attempt: number, delayMs = attempt === 0 ? 0 : JOIN_RETRY_MS): void {
    if (this.#stopped) { return }
    this.#joinWaiting = attempt
    this.#joinTimer = setTimeout(() => {
      this.#joinWaiting = null
      void this.#tryJoin(attempt)
    }, delayMs)
  }

  /** Run the waiting join attempt now, unless it waits to confirm an accepted request. */
  #joinNow (): void {
    const attempt = this.#joinWaiting
    if (attempt === null || this.#joinAccepted) { return }
    clearTimeout(this.#joinTimer)
    this.#scheduleJoin(attempt, 0)
  }

  async #tryJoin (attempt: number): Promise<void> {
    this.#joinAccepted = false
    const self = this.#host.peerId.toString()
    const conf = this.#driver.status().conf
    if ([...conf.voters, ...conf.learners].includes(self)) { this.#stopJoinWatch?.(); return }
    // only connected peers: a dial by peer id alone would look the peer up
    // in the DHT, and a bootstrap dial to the same peer would wait on it
    const candidates = [...new Set([...this.#init.joinVia ?? [], ...this.#components.admission.admittedPeers()])]
      .filter(p => { const peerId = parsePeerId(p); return p !== self && peerId != null && this.#host.getConnections(peerId).length > 0 })
    const target = this.#driver.leader ?? this.#joinHint ?? candidates[attempt % Math.max(candidates.length, 1)]
    if (target != null) {
      try {
        const answer = await sendClientRequest(this.#host, target, { op: 'conf-change', change: { changes: [{ type: 'add-learner', node: self }] } }, AbortSignal.timeout(5000))
        if (answer.ok) {
          // accepted is not applied: the leader may lose its term before the
          // change commits. Look again later, and ask again if still not in.
          this.#log.info({ via: target }, 'asked the raft group to add this node as a learner')
          this.#joinAccepted = true
          this.#scheduleJoin(attempt + 1, JOIN_CONFIRM_MS)
          return
        }
        // a non-leader names the leader: ask it next time
        if (answer.code === 'not-leader' && answer.leader != null) { this.#joinHint = answer.leader }
        this.#log.debug({ target, answer }, 'join request refused')
      } catch (err) {
        this.#log.debug({ target, err: (err as Error).message }, 'join request failed')
      }
    }
    if (attempt + 1 >= JOIN_ATTEMPTS_MAX) {
      this.#log.error({ attempts: JOIN_ATTEMPTS_MAX }, 'gave up joining the raft group; add this node by hand: accord raft add-learner')
      return
    }
    this.#scheduleJoin(attempt + 1)
  }
}

/**
 * How a node with this init forms or joins its group (see the file
 * header): whether it joins, the configuration it bootstraps at once, whether
 * it waits for its initial cluster first, and how many voters make the
 * group formed.
 */
function formationPlan (id: string, init: RaftInit, fresh: boolean): { join: boolean, bootstrapConf?: ConfState, awaitInitialCluster: boolean, formationVoters: number } {
  const initial = init.initialCluster
  if (Array.isArray(initial)) {
    const listed = initial.includes(id)
    // a node left out of the initial list joins the group it forms
    return { join: !listed, bootstrapConf: fresh && listed ? votersConf(initial) : undefined, awaitInitialCluster: false, formationVoters: fresh ? initial.length : 1 }
  }
  const join = init.join === true
  const founds = fresh && !join
  if (initial == null || initial === 1) {
    return { join, bootstrapConf: founds ? votersConf([id]) : undefined, awaitInitialCluster: false, formationVoters: 1 }
  }
  return { join, awaitInitialCluster: founds, formationVoters: fresh ? initial : 1 }
}

function votersConf (voters: string[]): ConfState {
  return { voters: [...voters], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }
}

/**
 * The Raft service: `services: { raft: raft({ dataDir }) }`, beside
 * clusterAdmission as `admission` (Raft serves admitted peers only).
 */
export function raft (init: RaftInit): (components: RaftComponents) => RaftService {
  return (components) => new RaftService(components, init)
}
