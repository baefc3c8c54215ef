/**
 * The PBFT service: a Byzantine-fault-tolerant replica of the KV store (when
 * this node is in the replica set) and a PBFT client with the node's own key
 * (always), over `/accord/pbft/1.0.0`. A js-libp2p service (`pbft(init)`,
 * beside clusterAdmission as `admission`); the HTTP routes and the CLI talk
 * to this class only.
 *
 * The genesis replica set is explicit and the same on every node (the demo
 * generates it; `accord start --bft-replicas` or `--bft-genesis` gives it).
 * It is sorted here, so the order in which an operator lists it does not
 * matter: primary(v) is the v-th of the sorted ids (mod n). Later sets come
 * from reconfigurations (approve() on a quorum of the replicas in force,
 * then reconfigure() on any node); the replicas, a learner and the client
 * follow them. A node outside the set runs the replica driver as a learner
 * when started with `learner` (or when it kept replica state from before):
 * it follows the log, and orders once a reconfiguration adds it.
 *
 * Who is served: admitted peers only (admission's gate on both protocols),
 * and never an isolated one. A peer this replica isolates (evidence, or an
 * operator) has its connections closed and denied (`onIsolated` is the
 * node's connection gater hook), from the persisted blocklist on as well.
 */
import { mkdir } from 'node:fs/promises'
import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { Registry } from 'prom-client'
import { kvSnapshotBytesMax, resolveKvLimits } from '../../protocols/kv/index.ts'
import { approve, decodeRecord, encodeReconfiguration, encodeRecord, faultsTolerated, verifyApproval } from '../../protocols/pbft/index.ts'
import { hostFromComponents, optionalService } from '../host.ts'
import { silentLogger } from '../logger.ts'
import { PbftClientDriver, PbftClientError } from './client-driver.ts'
import { ClientTimestamps } from './client-timestamps.ts'
import { peerKeyPbftCrypto } from './crypto.ts'
import { PbftReplicaDriver } from './driver.ts'
import { EvidenceTopic } from './evidence-topic.ts'
import { pbftMetrics } from './metrics.ts'
import { decodeResult, encodeOperation } from './operations.ts'
import { PbftFileStore, pbftStorageDir } from './storage.ts'
import { checkpointThresholdGroup } from './threshold-group.ts'
import { PBFT_PROTOCOL, PbftStreamTransport } from './transport.ts'
import type { PbftKvResult, PbftOperation, PbftResult } from './operations.ts'
import type { RateLimit, PbftMessageType } from './rate-limit.ts'
import type { CheckpointSigner } from './threshold-group.ts'
import type { PbftTransportLimits, PbftTransportStats } from './transport.ts'
import type { KvLimits } from '../../protocols/kv/index.ts'
import type { PbftLimits } from '../../protocols/pbft/index.ts'
import type { Approval, PbftConfiguration } from '../../protocols/pbft/index.ts'
import type { Evidence, Isolation, IsolationReason, NodeId, PbftMessage, PbftStatus, PbftThresholdGroup } from '../../protocols/pbft/types.ts'
import type { Admission } from '../admission/admission.ts'
import type { AccordHost, HostComponents } from '../host.ts'
import type { GossipSub } from '@libp2p/gossipsub'
import type { ComponentLogger, PeerId, PrivateKey, Startable, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { Logger } from 'pino'

export interface PbftSettings {
  tickIntervalMs: number
  /** Longest a client operation (with retransmissions and view changes) may take. */
  requestTimeoutMs: number
  /** The client sends an unanswered request again, to every replica, after this long. */
  retransmitMs: number
  /** Client operations in flight at once (HTTP requests beyond it get 429). */
  outstandingMax: number
}

export const PBFT_SETTINGS_DEFAULTS: Readonly<PbftSettings> = Object.freeze({
  tickIntervalMs: 50,
  requestTimeoutMs: 10_000,
  retransmitMs: 500,
  outstandingMax: 64
})

/** Keys under this prefix are accord's own (as in the Raft KV): no client reads or writes them. */
export const BFT_RESERVED_KEY_PREFIX = '\u0000'
/** Deleted by a new client's first request, to open its KV session (see client-timestamps.ts). */
const SESSION_OPENING_KEY = `${BFT_RESERVED_KEY_PREFIX}accord/bft-session`

/** How often a replica checks that it is connected to every other replica. */
const REPLICA_CHECK_INTERVAL_MS = 1000
const REPLICA_DIAL_TIMEOUT_MS = 5000

export interface PbftInit {
  /** A replica keeps its log, snapshot and blocklist in `<dataDir>/pbft`. */
  dataDir: string
  /** The genesis replica set (peer ids, Ed25519), identical on every node. A node not in it runs the client only, or a learner. */
  replicas: string[]
  /**
   * Outside the replica set, follow the replicas' log anyway (a learner):
   * a node about to be added by a reconfiguration. A node that kept replica
   * state in its data directory (it was a replica, or a learner) is one
   * without it.
   */
  learner?: boolean
  /** Deliberately Byzantine (accord start --byzantine). For demos and tests only. */
  faulty?: 'equivocate'
  settings?: Partial<PbftSettings>
  limits?: Partial<PbftLimits>
  kvLimits?: Partial<KvLimits>
  transportLimits?: Partial<PbftTransportLimits>
  rateLimits?: Partial<Record<PbftMessageType, RateLimit>>
  /** A peer was isolated (also called at start for each peer on the persisted blocklist): the node's connection gater denies it from then on. */
  onIsolated?(isolation: Isolation): void
  /** An operator took a peer off the blocklist: the connection gater allows it again. */
  onReadmitted?(peer: string): void
  /** Where the PBFT metrics are registered (default: a registry of its own). */
  registry?: Registry
  log?: Logger
}

/** The components the PBFT service takes; clusterAdmission must run as `admission`. */
export interface PbftComponents extends HostComponents {
  logger: ComponentLogger
  privateKey: PrivateKey
  admission: Admission
  /** Optional: gossipsub as `pubsub` carries evidence (accord/<cluster>/evidence/1). */
  pubsub?: GossipSub
}

export interface BftSummary {
  /** A replica of the set in force, a learner (it follows the log: about to join, or removed), or only a client of the replicas. */
  role: 'replica' | 'learner' | 'client'
  /** The epoch of the replica set in force (0: genesis); null on a client-only node, which knows only the set it was given. */
  epoch: number | null
  /** A set decided by a reconfiguration, in force from the first seq past afterSeq; null when none (or on a client-only node). */
  pending: { epoch: number, replicas: string[], afterSeq: number } | null
  /** null on a node that is only a client. */
  view: number | null
  primary: string | null
  viewChanging: boolean
  n: number
  f: number
  replicas: string[]
  stableCheckpoint: number | null
  lowWatermark: number | null
  highWatermark: number | null
  executed: number | null
  isolated: Array<{ peerId: string, reason: IsolationReason }>
  /** Suspicion without proof of each other replica, 100 (trusted) down to 0; a primary at 50 is replaced. Empty on a client. */
  scores: Array<{ peerId: string, score: number }>
  /** The KV store of this replica. */
  kv: { keys: number, dataBytes: number, sessions: number } | null
  /**
   * Stable checkpoints are proven by the DKG group's threshold signature
   * (one 96-byte signature instead of a quorum of signed checkpoints): this
   * replica holds a share of a group whose members are the replica set and
   * whose threshold is at least the quorum.
   */
  compactCheckpoints: boolean
  /** The DKG group key (hex) this replica signs checkpoint partials with, or null. */
  checkpointGroupKey: string | null
}

/** 'refused': the replicas judged the operation and refused it (a reconfiguration). */
export type PbftErrorCode = 'invalid' | 'refused' | 'busy' | 'timeout' | 'stopped' | 'failed'

export class PbftError extends Error {
  override name = 'PbftError'
  readonly code: PbftErrorCode
  constructor (code: PbftErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

/** Sorted, checked replica ids: each an Ed25519 peer id, no duplicates. Throws RangeError. */
export function checkReplicaSet (replicas: string[]): string[] {
  if (replicas.length === 0) { throw new RangeError('pbft: the replica set is empty') }
  const sorted = [...new Set(replicas)].sort()
  if (sorted.length !== replicas.length) { throw new RangeError('pbft: the replica set lists a peer twice') }
  for (const id of sorted) {
    let type: string
    try { type = peerIdFromString(id).type } catch { throw new RangeError(`pbft: replica "${id}" is not a peer id`) }
    if (type !== 'Ed25519') { throw new RangeError(`pbft: replica ${id} has a ${type} key; PBFT signs with Ed25519 peer keys`) }
  }
  return sorted
}

/** A replica's signature over the next epoch's replica set (reconfiguration.ts), as operators hand it over. */
export interface BftApproval {
  epoch: number
  /** Sorted. */
  replicas: string[]
  replica: string
  signature: Uint8Array
}

/** The summary's fields that only a replica or a learner has (null, or empty, on a client-only node). */
function replicaFields (status: PbftStatus | null): Omit<BftSummary, 'n' | 'f' | 'replicas' | 'isolated' | 'kv' | 'compactCheckpoints' | 'checkpointGroupKey'> {
  if (status === null) {
    return { role: 'client', epoch: null, pending: null, view: null, primary: null, viewChanging: false, stableCheckpoint: null, lowWatermark: null, highWatermark: null, executed: null, scores: [] }
  }
  const { pending } = status
  return {
    role: status.member ? 'replica' : 'learner',
    epoch: status.epoch,
    pending: pending === null ? null : { epoch: pending.epoch, replicas: [...pending.replicas], afterSeq: pending.afterSeq },
    view: status.view,
    primary: status.primary,
    viewChanging: status.viewChanging,
    stableCheckpoint: status.stableCheckpoint,
    lowWatermark: status.lowWatermark,
    highWatermark: status.highWatermark,
    executed: status.executed,
    scores: status.scores.map(({ peer, score }) => ({ peerId: peer, score }))
  }
}

export class PbftService implements Startable {
  readonly settings: PbftSettings
  readonly kvLimits: KvLimits
  /** The genesis set, sorted: what a client-only node talks to. */
  readonly #genesis: string[]
  readonly #crypto: ReturnType<typeof peerKeyPbftCrypto>
  readonly #components: PbftComponents
  readonly #host: AccordHost
  readonly #init: PbftInit
  readonly #log: Logger
  readonly #metrics: ReturnType<typeof pbftMetrics>
  readonly #isolated = new Map<string, IsolationReason>()
  readonly #dialing = new Set<string>()
  #transport!: PbftStreamTransport
  #driver: PbftReplicaDriver | null = null
  #store: PbftFileStore | null = null
  #client!: PbftClientDriver
  #timestamps!: ClientTimestamps
  /** Timestamps the client may have used: two per operation (a read-only try and its ordered fallback). */
  #timestampsUsed = 0
  /** The opening of this client's KV session, once started. */
  #opening: Promise<void> | null = null
  #evidence: EvidenceTopic | null = null
  #replicaTimer: ReturnType<typeof setInterval> | undefined
  #stopping = new AbortController()
  /** Where the DKG group comes from (setCheckpointSigner), and the group built from it. */
  #signer: CheckpointSigner | null = null
  #unsubscribeSigner: (() => void) | null = null
  #group: PbftThresholdGroup | null = null
  #running = false
  #starting: Promise<void> | undefined

  readonly [Symbol.toStringTag] = '@accord/pbft'
  readonly [serviceCapabilities]: string[] = ['@accord/pbft']
  readonly [serviceDependencies]: string[] = ['@accord/admission']

  constructor (components: PbftComponents, init: PbftInit) {
    this.#components = components
    this.#host = hostFromComponents(components)
    this.#init = init
    this.#log = init.log ?? silentLogger()
    this.settings = { ...PBFT_SETTINGS_DEFAULTS, ...init.settings }
    this.kvLimits = resolveKvLimits(init.kvLimits)
    this.#genesis = checkReplicaSet(init.replicas)
    this.#crypto = peerKeyPbftCrypto(components.privateKey)
    this.#metrics = pbftMetrics(init.registry ?? new Registry())
  }

  /** The replica set in force as this node knows it (a client-only node: the genesis set). */
  get replicas (): string[] {
    return [...(this.#driver?.replicaSets().replicas ?? this.#genesis)]
  }

  /** Whether this node is one of the replicas in force. */
  get isReplica (): boolean {
    return this.#driver?.replicaSets().member ?? this.#genesis.includes(this.#host.peerId.toString())
  }

  async start (): Promise<void> {
    this.#starting = this.#start()
    await this.#starting
  }

  async #start (): Promise<void> {
    const id = this.#host.peerId.toString()
    const log = this.#log
    const { admission, peerId, logger, connectionManager, registrar } = this.#components
    const crypto = this.#crypto
    this.#stopping = new AbortController()
    const gate = admission.gate.bind(admission)
    const gatedRegistrar = {
      handle: async (protocol: string, handler: StreamHandler, opts?: StreamHandlerOptions) => { await registrar.handle(protocol, gate(protocol, handler), opts) },
      unhandle: async (protocol: string) => { await registrar.unhandle(protocol) }
    }
    const snapshotBytesMax = kvSnapshotBytesMax(this.kvLimits)
    const transport = this.#transport = new PbftStreamTransport({ peerId, logger, connectionManager, registrar: gatedRegistrar }, {
      limits: { snapshotBytesMax, ...this.#init.transportLimits },
      rateLimits: this.#init.rateLimits,
      coreLimits: this.#init.limits,
      onMessage: (message, link) => { this.#onMessage(message, link) },
      isIsolated: (peer) => this.#isolated.has(peer),
      serveState: (seq) => this.#driver?.serveState(seq) ?? null,
      onRejected: (peer, reason) => {
        this.#metrics.onRejected(reason)
        admission.refusals.refuse(peer, PBFT_PROTOCOL, reason)
      }
    })
    const dir = pbftStorageDir(this.#init.dataDir)
    let transportStarted = false
    try {
      if (this.#genesis.includes(id) || this.#init.learner === true || await PbftFileStore.holdsReplicaState(dir)) {
        const store = this.#store = await PbftFileStore.open(dir, {
          codec: { encode: encodeRecord, decode: (bytes) => decodeRecord(bytes, this.#init.limits) },
          snapshotBytesMax
        })
        this.#driver = await PbftReplicaDriver.create({
          id,
          replicas: this.#genesis,
          crypto,
          store,
          transport,
          tickIntervalMs: this.settings.tickIntervalMs,
          limits: this.#init.limits,
          kvLimits: this.kvLimits,
          log: log.child({ component: 'pbft' }),
          metrics: this.#metrics,
          publishEvidence: (evidence) => { this.#evidence?.publish(evidence) },
          onIsolated: (isolation) => { this.#isolate(isolation) },
          onConfiguration: (configuration) => { this.#onConfiguration(configuration) },
          ...(this.#init.faulty !== undefined ? { faulty: this.#init.faulty } : {})
        })
        const driver = this.#driver
        driver.setThresholdGroup(this.#group)
        this.#metrics.observe(() => driver.status())
        for (const isolation of driver.status().isolated) { this.#isolate(isolation) }
      } else {
        await mkdir(dir, { recursive: true, mode: 0o700 })
      }
      this.#timestamps = await ClientTimestamps.open(dir)
      this.#client = new PbftClientDriver({
        id,
        replicas: this.replicas,
        crypto,
        send: (to, message) => { transport.send(to, message) },
        tickIntervalMs: this.settings.tickIntervalMs,
        retransmitMs: this.settings.retransmitMs,
        outstandingMax: this.settings.outstandingMax,
        firstTimestamp: this.#timestamps.first
      })
      this.#evidence = this.#createEvidenceTopic(crypto)
      this.#running = true
      await transport.start()
      transportStarted = true
      this.#driver?.start()
      this.#client.start()
      this.#replicaTimer = setInterval(() => { this.#connectReplicas() }, REPLICA_CHECK_INTERVAL_MS)
      this.#host.addEventListener('peer:disconnect', this.#onPeerDisconnect)
      this.#host.addEventListener('peer:connect', this.#onPeerConnect)
      log.info({ replicas: this.replicas.length, role: this.summary().role, f: faultsTolerated(this.replicas.length) }, 'pbft started')
    } catch (err) {
      this.#running = false
      if (transportStarted) { await transport.stop().catch(() => {}) }
      await this.#driver?.stop().catch(() => {})
      await this.#store?.close().catch(() => {})
      throw err
    }
  }

  /** Once gossipsub runs: join the evidence topic. */
  afterStart (): void {
    try {
      this.#evidence?.start()
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'pbft: cannot use the evidence topic; evidence stays local')
      this.#evidence = null
    }
  }

  async stop (): Promise<void> {
    await this.#starting?.catch(() => {})
    if (!this.#running) { return }
    this.#running = false
    this.#stopping.abort()
    clearInterval(this.#replicaTimer)
    this.#host.removeEventListener('peer:disconnect', this.#onPeerDisconnect)
    this.#host.removeEventListener('peer:connect', this.#onPeerConnect)
    this.#evidence?.stop()
    this.#client.stop()
    await this.#driver?.stop()
    await this.#transport.stop()
    await this.#store?.close()
  }

  summary (): BftSummary {
    const status = this.#driver?.status() ?? null
    const replicas = status?.replicas ?? this.#genesis
    const n = replicas.length
    const kv = this.#driver?.kv.stats()
    return {
      ...replicaFields(status),
      n,
      f: faultsTolerated(n),
      replicas: [...replicas],
      isolated: [...this.#isolated].map(([peerId, reason]) => ({ peerId, reason })),
      kv: kv === undefined ? null : { keys: kv.keys, dataBytes: kv.dataBytes, sessions: kv.sessions },
      compactCheckpoints: status?.compactCheckpoints ?? false,
      checkpointGroupKey: this.#group === null ? null : Buffer.from(this.#group.groupKey).toString('hex')
    }
  }

  /**
   * Where the DKG group comes from (the DKG service; null: none): from
   * then on, and again whenever its group changes, this replica's
   * checkpoints carry its partial and stable checkpoints are proven by the
   * group's threshold signature, when the group's members are the replica
   * set and its threshold at least the quorum (compact certificates,
   * protocols/pbft/group.ts). createAccordNode sets it; an app that
   * assembles its own node calls it with its `dkg` service.
   */
  setCheckpointSigner (signer: CheckpointSigner | null): void {
    this.#unsubscribeSigner?.()
    this.#unsubscribeSigner = null
    this.#signer = signer
    if (signer !== null) { this.#unsubscribeSigner = signer.onGroupChange(() => { this.#applyGroup() }) }
    this.#applyGroup()
  }

  #applyGroup (): void {
    const signer = this.#signer
    this.#group = signer === null
      ? null
      : checkpointThresholdGroup(signer, {
        onBadPartial: (member) => {
          this.#metrics.onBadCheckpointPartial()
          this.#log.warn({ member }, 'pbft: a checkpoint carried a partial signature that does not verify under its sender\'s public share')
        }
      })
    this.#driver?.setThresholdGroup(this.#group)
  }

  /** The transport's counters (tests and metrics). */
  transportStats (): PbftTransportStats {
    return this.#transport.stats()
  }

  /** The replica's KV value of `key` as executed here (no agreement: for tests and diagnostics). */
  localValue (key: string): Uint8Array | null {
    return this.#driver?.kv.get(key) ?? null
  }

  async put (key: string, value: Uint8Array | string): Promise<PbftKvResult> {
    const bytes = typeof value === 'string' ? new TextEncoder().encode(value) : value
    return this.#kv({ type: 'kv', command: { type: 'put', key: this.#checkKey(key), value: this.#checkValue(bytes) } })
  }

  async delete (key: string): Promise<PbftKvResult> {
    return this.#kv({ type: 'kv', command: { type: 'delete', key: this.#checkKey(key) } })
  }

  /** Compare-and-set: `expected` null means the key must be absent. */
  async cas (key: string, expected: Uint8Array | null, value: Uint8Array): Promise<PbftKvResult> {
    return this.#kv({ type: 'kv', command: { type: 'cas', key: this.#checkKey(key), expected: expected === null ? null : this.#checkValue(expected), value: this.#checkValue(value) } })
  }

  /** A read: read-only first (a quorum of matching replies), falling back to an ordered read. */
  async get (key: string): Promise<Uint8Array | null> {
    const result = await this.submit({ type: 'get', key: this.#checkKey(key) }, true)
    if (result.type !== 'value') { throw new PbftError('failed', `the replicas answered a get with ${result.type}`) }
    return result.value
  }

  /**
   * Orders a null operation (it executes as nothing) and resolves once f+1
   * replicas executed it: a health check of the whole ordering path, and a
   * barrier (every write acknowledged before it was sent is ordered before
   * it). Benchmarks measure the protocol alone with it.
   */
  async noop (): Promise<void> {
    const result = await this.submit({ type: 'null' })
    if (result.type !== 'null') { throw new PbftError('failed', `the replicas answered a null operation with ${result.type}`) }
  }

  /** Orders `operation` through the replicas (f+1 matching replies) and returns its result. Throws PbftError. */
  async submit (operation: PbftOperation, readOnly = false): Promise<PbftResult> {
    return this.#submitBytes(encodeOperation(operation), readOnly)
  }

  async #submitBytes (bytes: Uint8Array, readOnly = false): Promise<PbftResult> {
    if (!this.#running) { throw new PbftError('stopped', 'the PBFT service is not running') }
    const signal = AbortSignal.any([this.#stopping.signal, AbortSignal.timeout(this.settings.requestTimeoutMs)])
    let answer: Uint8Array
    try {
      await this.#sessionOpened(signal)
      this.#timestampsUsed += 2
      await this.#timestamps.reserve(this.#timestamps.first + this.#timestampsUsed)
      answer = await this.#client.submit(bytes, { readOnly, signal })
    } catch (err) {
      if (!(err instanceof PbftClientError)) { throw err }
      switch (err.code) {
        case 'busy': throw new PbftError('busy', `too many PBFT operations in flight (at most ${this.settings.outstandingMax})`)
        case 'too-large': throw new PbftError('invalid', 'the operation is too large')
        case 'aborted': throw this.#stopping.signal.aborted ? new PbftError('stopped', 'the PBFT service stopped') : new PbftError('timeout', `no f+1 matching replies within ${this.settings.requestTimeoutMs} ms`)
        default: throw new PbftError('stopped', err.message)
      }
    }
    const decoded = decodeResult(answer)
    if (!decoded.ok) { throw new PbftError('failed', `the replicas' result does not decode: ${decoded.error}`) }
    if (decoded.result.type === 'invalid') { throw new PbftError('invalid', decoded.result.message) }
    return decoded.result
  }

  /** Isolates `peer` by operator decision (persisted; denied from then on). */
  isolate (peer: string): void {
    if (this.#driver === null) { throw new PbftError('invalid', 'only a replica isolates peers') }
    if (peer === this.#host.peerId.toString()) { throw new PbftError('invalid', 'a replica cannot isolate itself') }
    this.#driver.isolate(peer)
  }

  /**
   * Takes `peer` off this replica's blocklist (persisted), by operator
   * decision: its connections are allowed and its messages count again.
   * Only this replica's: the others keep theirs until their operators
   * decide, and fresh evidence against it isolates it again. Resolves
   * whether it was isolated.
   */
  async readmit (peer: string): Promise<boolean> {
    if (this.#driver === null) { throw new PbftError('invalid', 'only a replica keeps a blocklist') }
    const readmitted = await this.#driver.readmit(peer)
    if (!this.#isolated.delete(peer)) { return readmitted }
    try {
      this.#init.onReadmitted?.(peer)
    } catch (err) {
      this.#log.error({ err }, 'pbft: onReadmitted threw')
    }
    return true
  }

  /**
   * This replica's approval of `replicas` as the next epoch's set: what an
   * operator hands to whoever submits the reconfiguration (reconfigure()).
   * Only a replica of the latest set decided (the one that judges the next
   * reconfiguration) approves. Signing is this node's own decision: its
   * operator asked for it.
   */
  approve (replicas: string[]): BftApproval {
    const status = this.#driver?.status()
    const self = this.#host.peerId.toString()
    const latest = status === undefined ? null : status.pending ?? { epoch: status.epoch, replicas: status.replicas }
    if (latest === null || !latest.replicas.includes(self)) { throw new PbftError('invalid', 'only a replica of the latest replica set approves the next one') }
    const sorted = this.#checkSet(replicas)
    const epoch = latest.epoch + 1
    return { epoch, replicas: sorted, ...approve(epoch, sorted, self, this.#crypto) }
  }

  /**
   * Orders a reconfiguration to `replicas`, with the approvals of a quorum
   * of the replicas in force (this node's own is added when it may give
   * one), and resolves once f+1 replicas executed it: the new set orders
   * the seqs past afterSeq. The replicas judge it (epoch, quorum, each
   * signature); a refusal throws PbftError 'invalid' with their reason.
   */
  async reconfigure (replicas: string[], approvals: BftApproval[]): Promise<{ epoch: number, replicas: string[], afterSeq: number }> {
    const sorted = this.#checkSet(replicas)
    const given = [...approvals]
    if (this.#driver !== null && !given.some(a => a.replica === this.#host.peerId.toString())) {
      try { given.push(this.approve(sorted)) } catch { /* not a replica of the latest set: the others' approvals must do */ }
    }
    if (given.length === 0) { throw new PbftError('invalid', 'a reconfiguration needs the approvals of a quorum of the replicas in force') }
    const epoch = given[0].epoch
    for (const approval of given) {
      if (approval.epoch !== epoch) { throw new PbftError('invalid', `approvals for epochs ${epoch} and ${approval.epoch}: they must all be for one`) }
      if (approval.replicas.join(',') !== sorted.join(',')) { throw new PbftError('invalid', `the approval of ${approval.replica} is for another replica set`) }
      if (!verifyApproval(approval, epoch, sorted, this.#crypto)) { throw new PbftError('invalid', `the approval of ${approval.replica} has an invalid signature`) }
    }
    const operation: Approval[] = given.map(({ replica, signature }) => ({ replica, signature }))
    let result: PbftResult
    try {
      result = await this.#submitBytes(encodeReconfiguration({ epoch, replicas: sorted, approvals: operation }))
    } catch (err) {
      if (err instanceof PbftError && err.code === 'invalid') { throw new PbftError('refused', `the replicas refused the reconfiguration: ${err.message}`) }
      throw err
    }
    if (result.type !== 'configured') { throw new PbftError('failed', `the replicas answered a reconfiguration with ${result.type}`) }
    return { epoch: result.epoch, replicas: sorted, afterSeq: result.afterSeq }
  }

  #checkSet (replicas: string[]): string[] {
    try {
      return checkReplicaSet(replicas)
    } catch (err) {
      throw new PbftError('invalid', (err as Error).message)
    }
  }

  /** The driver reports a new set in force: the client talks to it, and the node connects to its replicas. */
  #onConfiguration (configuration: PbftConfiguration): void {
    this.#client.setReplicas(configuration.replicas)
    this.#connectReplicas()
  }

  /** Replicas of the set in force and of a pending one: whom this node keeps connections to and hears evidence about. */
  #knownReplicas (): readonly string[] {
    const sets = this.#driver?.replicaSets()
    if (sets === undefined) { return this.#genesis }
    return sets.pending === null ? sets.replicas : [...new Set([...sets.replicas, ...sets.pending.replicas])]
  }

  /**
   * Resolves once this client's KV session is open: a new client's first
   * request (timestamp 1) is a KV command, sent once and retransmitted by
   * the client until it executes (see client-timestamps.ts). `signal` ends
   * the wait, not the opening.
   */
  async #sessionOpened (signal: AbortSignal): Promise<void> {
    if (this.#timestamps.opened) { return }
    this.#opening ??= this.#openSession()
    const aborted = new Promise<never>((_resolve, reject) => {
      const fail = (): void => { reject(new PbftClientError('aborted', 'the wait for the client session was aborted')) }
      if (signal.aborted) { fail() } else { signal.addEventListener('abort', fail, { once: true }) }
    })
    await Promise.race([this.#opening, aborted])
  }

  async #openSession (): Promise<void> {
    this.#timestampsUsed += 1
    const answer = await this.#client.submit(encodeOperation({ type: 'kv', command: { type: 'delete', key: SESSION_OPENING_KEY } }), { signal: this.#stopping.signal })
    const decoded = decodeResult(answer)
    if (!decoded.ok || decoded.result.type !== 'kv' || !decoded.result.result.ok) {
      throw new PbftError('failed', `the replicas refused to open this client's session: ${decoded.ok ? JSON.stringify(decoded.result) : decoded.error}`)
    }
    await this.#timestamps.markOpened()
  }

  async #kv (operation: PbftOperation): Promise<PbftKvResult> {
    const result = await this.submit(operation)
    if (result.type !== 'kv') { throw new PbftError('failed', `the replicas answered a KV command with ${result.type}`) }
    return result.result
  }

  #checkKey (key: string): string {
    const bytes = Buffer.byteLength(key)
    if (bytes === 0 || bytes > this.kvLimits.keyBytesMax) { throw new PbftError('invalid', `key must be 1..${this.kvLimits.keyBytesMax} bytes`) }
    if (key.startsWith(BFT_RESERVED_KEY_PREFIX)) { throw new PbftError('invalid', 'keys starting with NUL are reserved for accord') }
    return key
  }

  #checkValue (value: Uint8Array): Uint8Array {
    if (value.byteLength > this.kvLimits.valueBytesMax) { throw new PbftError('invalid', `value must be at most ${this.kvLimits.valueBytesMax} bytes`) }
    return value
  }

  #onMessage (message: PbftMessage, link: NodeId): void {
    if (this.#isolated.has(link)) { return }
    if (message.type === 'reply') {
      const result = this.#client.receive(message, link)
      if (!result.ok) { this.#metrics.onRejected(result.reason) }
      return
    }
    if (this.#driver === null) {
      this.#metrics.onRejected('not-a-replica')
      this.#components.admission.refusals.refuse(link, PBFT_PROTOCOL, 'not-a-replica', { type: message.type })
      return
    }
    // the driver counts its rejections (metrics.onRejected)
    this.#driver.receive(message, link)
  }

  #isolate (isolation: Isolation): void {
    if (isolation.peer === this.#host.peerId.toString() || this.#isolated.has(isolation.peer)) { return }
    this.#isolated.set(isolation.peer, isolation.reason)
    try {
      this.#init.onIsolated?.(isolation)
    } catch (err) {
      this.#log.error({ err }, 'pbft: onIsolated threw')
    }
    this.#transport.disconnect(isolation.peer)
    try {
      void this.#components.connectionManager.closeConnections(peerIdFromString(isolation.peer)).catch(() => {})
    } catch {
      // not a peer id: nothing to close
    }
  }

  #createEvidenceTopic (crypto: ReturnType<typeof peerKeyPbftCrypto>): EvidenceTopic | null {
    const pubsub = optionalService<unknown>(() => this.#components.pubsub) as Partial<GossipSub> | undefined
    if (typeof pubsub?.subscribe !== 'function' || typeof pubsub.publish !== 'function' || !(pubsub.topicValidators instanceof Map)) { return null }
    return new EvidenceTopic({
      pubsub: pubsub as GossipSub,
      cluster: this.#components.admission.cluster,
      replicas: () => this.#knownReplicas(),
      crypto,
      group: () => this.#group,
      onEvidence: (evidence: Evidence) => { this.#driver?.receiveEvidence(evidence) },
      onInvalid: (source, error) => {
        this.#metrics.onRejected('malformed')
        this.#components.admission.refusals.refuse(source, this.#evidence?.topic ?? 'pbft-evidence', 'invalid-evidence', { error })
      },
      onUnjudgeable: (source, error) => {
        this.#metrics.onRejected('unknown-set')
        this.#log.info({ source, error }, 'pbft: evidence this node cannot judge (another threshold group, or none): ignored')
      },
      log: this.#log
    })
  }

  /**
   * The last connection to a peer closed (a killed process's socket closes
   * at once): the replica driver starts a view change now if it was the
   * primary and requests wait, and the client sends what waits to every
   * other replica, instead of both waiting out their timers.
   */
  readonly #onPeerDisconnect = (event: CustomEvent<PeerId>): void => {
    const peer = event.detail.toString()
    if (!this.#running || !this.#knownReplicas().includes(peer)) { return }
    this.#driver?.linkDown(peer)
    this.#client.linkDown(peer)
  }

  readonly #onPeerConnect = (event: CustomEvent<PeerId>): void => {
    const peer = event.detail.toString()
    if (!this.#running || !this.#knownReplicas().includes(peer)) { return }
    this.#driver?.linkUp(peer)
    this.#client.linkUp(peer)
  }

  /** Keeps a connection to every replica (discovery usually has one already). */
  #connectReplicas (): void {
    const self = this.#host.peerId.toString()
    for (const id of this.#knownReplicas()) {
      if (id === self || this.#isolated.has(id) || this.#dialing.has(id)) { continue }
      const peerId = peerIdFromString(id)
      if (this.#host.getConnections(peerId).length > 0) { continue }
      this.#dialing.add(id)
      this.#host.dial(peerId, { signal: AbortSignal.timeout(REPLICA_DIAL_TIMEOUT_MS) })
        .catch(err => { this.#log.debug({ peer: id, err: (err as Error).message }, 'cannot reach a pbft replica') })
        .finally(() => { this.#dialing.delete(id) })
    }
  }
}

/**
 * The PBFT service: `services: { pbft: pbft({ dataDir, replicas }) }`, beside
 * clusterAdmission as `admission` (and gossipsub as `pubsub` for evidence).
 */
export function pbft (init: PbftInit): (components: PbftComponents) => PbftService {
  return (components) => new PbftService(components, init)
}
