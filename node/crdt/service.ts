/**
 * The CRDT service: named, replicated delta-state CRDTs (protocols/crdt)
 * that every member holds. `services: { crdt: crdtService({ dataDir }) }`,
 * beside clusterAdmission as `admission` and gossipsub (StrictSign) as
 * `pubsub`.
 *
 * - Local ops (`registerCRDT(name, type).apply(op)`) are applied at once
 * and their delta is published on `accord/<cluster>/crdt/<name>/1`. A
 * topic validator checks each message (signed, handed over by an admitted
 * peer, written by a member, by a writer when an allowlist is set, within
 * deltaBytesMax, decodable, of the CRDT's type) and joins it.
 * - Catch-up and repair: `/accord/sync/1.0.0`, served to admitted peers
 * only (admission's gate). The dialler sends a digest (per CRDT: name,
 * type, hash of the encoded state); the other side answers with its states
 * that differ or that the dialler lacks, and the names it wants; the
 * dialler joins them and sends those it was asked for. A round runs with a
 * random admitted peer every syncIntervalMs, with each peer as soon as it
 * is admitted (a node joining or reconnecting catches up), and with every
 * admitted peer when a CRDT is created here (how other nodes learn its
 * name) or on `synchronise()`. A name a peer holds and this node lacks is
 * registered here: the set of names converges like the states.
 * - Persistence (storage.ts): with a dataDir, local ops go into a journal
 * (one fdatasync per group commit) before they are answered or sent; the
 * states (and the registry of names and types) are written atomically
 * under `<dataDir>/crdt/` at checkpoints, which empty the journal, and
 * reloaded at start with the journal's ops joined in.
 * - Version vectors: each op is a dot `(replica, n)`; a CRDT keeps the
 * causal context of the ops it has joined (deltas carry their dot, states
 * their context), so `versionVector()` tells how many ops of each replica
 * it holds, without gaps.
 * - Causal stability (stability.ts): each sync exchange carries what each
 * side holds of each CRDT; once every member (membership's members that
 * have not left) has reported holding an op, it is stable. `stableVector()`
 * shows it; an rga then collects its stable tombstones and op history
 * (protocols/crdt/rga-type.ts, compactRgaDoc).
 *
 * The replica id of this node in every CRDT is its peer id. States grow
 * monotonically; a node that lost its files restarts behind its own
 * earlier ops, which sync brings back from the others.
 *
 * States belong to their entry's CrdtReplica, which joins in place for the
 * types that allow it (rga: a mutable document, see
 * protocols/crdt/rga-type.ts): remote deltas and states are decoded afresh
 * for each join and never kept, and the entry's encoding is cached until
 * the state changes.
 */
import { createHash, randomInt } from 'node:crypto'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { encode } from 'cborg'
import { Registry } from 'prom-client'
import { readContext, writeContext } from '../../protocols/crdt/causal.ts'
import { compareClocks, contextContains, contextFromDots, createReplica, EMPTY_CONTEXT, encodeState, isCrdtTypeName, joinContexts, meetClocks, nextDot, versionVector } from '../../protocols/crdt/index.ts'
import { compactRgaDoc } from '../../protocols/crdt/rga-type.ts'
import { ByteReader, ByteWriter, compareUtf8, DecodeError } from '../../protocols/kv/codec.ts'
import { hostFromComponents, optionalService } from '../host.ts'
import { silentLogger } from '../logger.ts'
import { MEMBERSHIP_TOPIC_SCORE_PARAMS } from '../membership/topic.ts'
import { decodeBoundedCbor } from '../raft/codec.ts'
import { boundedLengthDecoder } from '../raft/transport.ts'
import { DeltaLog } from './delta-log.ts'
import { crdtMetrics } from './metrics.ts'
import { decodeReport, encodeReport, StabilityReports } from './stability.ts'
import { CrdtStorage } from './storage.ts'
import type { CrdtMetrics, CrdtRejectReason } from './metrics.ts'
import type { StabilityReport } from './stability.ts'
import type { CrdtDescriptor, JournalRecord } from './storage.ts'
import type { CausalContext, CrdtReplica, CrdtTypeName, JsonValue, VersionVector } from '../../protocols/crdt/index.ts'
import type { Rga } from '../../protocols/crdt/rga/index.ts'
import type { Admission } from '../admission/admission.ts'
import type { AccordHost, HostComponents } from '../host.ts'
import type { MembershipService } from '../membership/service.ts'
import type { GossipSub, Message } from '@libp2p/gossipsub'
import type { TopicScoreParams } from '@libp2p/gossipsub/score'
import type { Connection, PeerId, Startable, Stream } from '@libp2p/interface'
import type { Logger } from 'pino'

export const CRDT_SYNC_PROTOCOL = '/accord/sync/1.0.0'
export const CRDT_CAPABILITY = '@accord/crdt'
/** CRDT names: a letter or digit, then letters, digits, ".", "_", "-"; 64 characters at most. */
export const CRDT_NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/
export const CRDT_NAME_LENGTH_MAX = 64

/** The gossipsub topic of CRDT `name` in `cluster`. */
export function crdtTopic (cluster: string, name: string): string {
  return `accord/${cluster}/crdt/${name}/1`
}

export interface CrdtSettings {
  /** Most CRDTs a node holds, created here or learnt from peers (CRDT_COUNT_MAX_DEFAULT). */
  crdtsMax: number
  /** Largest delta message published or accepted; a larger delta is left to anti-entropy. */
  deltaBytesMax: number
  /** Largest sync message (digest, or states); states beyond it wait for the next round. */
  syncMessageBytesMax: number
  /** One sync exchange, dial included, is abandoned after this long. */
  syncTimeoutMs: number
  /** How often a sync round runs with a random admitted peer. */
  syncIntervalMs: number
  /** Sync exchanges served at once; more are refused. */
  syncServesMax: number
  /** A changed state is written this long after its first change (changes in between are written together). */
  persistDebounceMs: number
}

export const CRDT_COUNT_MAX_DEFAULT = 256

export const CRDT_SETTINGS_DEFAULTS: Readonly<CrdtSettings> = {
  crdtsMax: CRDT_COUNT_MAX_DEFAULT,
  deltaBytesMax: 256 * 1024,
  syncMessageBytesMax: 4 * 1024 * 1024,
  syncTimeoutMs: 10_000,
  syncIntervalMs: 5_000,
  syncServesMax: 8,
  persistDebounceMs: 200
}

/** Room a sync message keeps for its framing besides the states. */
const SYNC_SLACK_BYTES = 64 * 1024
/** Most entries a peer's digest or states list may hold. */
const SYNC_ENTRIES_MAX = 10_000
const WIRE_VERSION = 1
/**
 * gossipsub v1.1 scoring of each CRDT topic (set when the node subscribes):
 * the membership topic's (node/membership/topic.ts). CRDT topics are quiet
 * too, so mesh delivery rates are not scored; a delta the validator
 * rejects costs -100 per message, squared, and one sinks its sender below
 * the graylist threshold (-80). Ignored deltas (a writer off the
 * allowlist, a type mismatch, an unknown author) cost nothing.
 */
export const CRDT_TOPIC_SCORE_PARAMS = MEMBERSHIP_TOPIC_SCORE_PARAMS

/** The journal is emptied (its CRDTs' states written) once it holds this much, */
const JOURNAL_BYTES_MAX = 8 * 1024 * 1024
/** or this long after an op went into it. */
const CHECKPOINT_INTERVAL_MS = 5_000
/** The replica id of the holder deltaGroup joins deltas in (it never makes an op). */
const DELTA_GROUP_REPLICA = 'delta-group'
/** Most ops one gossip message (a batch) carries the deltas of. */
export const DELTA_BATCH_OPS_MAX = 256
const HASH_BYTES = 16

export interface CrdtInit {
  /** Where states are saved (`<dataDir>/crdt/`); without one they live in memory only. */
  dataDir?: string
  /**
   * Peer ids whose writes count: deltas, states and new names from anyone
   * else are ignored (and counted), and this node refuses local ops unless
   * it is listed. Empty or absent: every admitted member writes.
   */
  writers?: readonly string[]
  settings?: Partial<CrdtSettings>
  /** Where the metrics are registered (default: a registry of its own). */
  registry?: Registry
  log?: Logger
}

export interface CrdtComponents extends HostComponents {
  admission: Admission
  /** Optional: gossipsub (StrictSign) as `pubsub`; without it deltas travel by anti-entropy only. */
  pubsub?: GossipSub
  /** Optional: authors that membership holds alive or suspect count as members too. */
  membership?: MembershipService
}

/** Why a call on the service failed: the HTTP API maps each to a status. */
export type CrdtErrorCode = 'bad-name' | 'unknown-type' | 'type-conflict' | 'limit' | 'not-found' | 'bad-op' | 'not-writer' | 'not-started' | 'storage'

export class CrdtError extends Error {
  readonly code: CrdtErrorCode
  constructor (code: CrdtErrorCode, message: string) {
    super(message)
    this.name = 'CrdtError'
    this.code = code
  }
}

/** The ops of each type (protocols/crdt/README.md); a type added to the registry later takes any object. */
export interface CrdtOps {
  'g-counter': { op: 'increment', by: number }
  'pn-counter': { op: 'increment' | 'decrement', by: number }
  'g-set': { op: 'add', value: JsonValue }
  'or-set': { op: 'add' | 'remove', value: JsonValue }
  'lww-register': { op: 'set', value: JsonValue }
  'mv-register': { op: 'set', value: JsonValue }
  'or-map': { op: 'set', key: string, value: JsonValue } | { op: 'delete', key: string } | { op: 'update', key: string, type: string, update: Record<string, unknown> }
  'lww-map': { op: 'set', key: string, value: JsonValue } | { op: 'delete', key: string }
  /** Positions in UTF-16 units; insert: 1..65536 units at 0..length; delete: length >= 1 within the text. */
  rga: { op: 'insert', index: number, text: string } | { op: 'delete', index: number, length: number }
}

/** What `value()` gives for each type. */
export interface CrdtValues {
  'g-counter': number
  'pn-counter': number
  'g-set': JsonValue[]
  'or-set': JsonValue[]
  'lww-register': JsonValue
  'mv-register': JsonValue[]
  'or-map': Record<string, JsonValue>
  'lww-map': Record<string, JsonValue>
  /** The text. */
  rga: string
}

export type CrdtOpOf<T extends CrdtTypeName> = T extends keyof CrdtOps ? CrdtOps[T] : Record<string, unknown>
export type CrdtValueOf<T extends CrdtTypeName> = T extends keyof CrdtValues ? CrdtValues[T] : JsonValue

/** One registered CRDT, as `registerCRDT` returns it. */
export interface CrdtHandle<T extends CrdtTypeName = CrdtTypeName> {
  readonly name: string
  readonly type: T
  /**
   * Applies a local op at once (value() shows it) and publishes its delta
   * once it is on disk. Throws CrdtError ('bad-op', 'not-writer',
   * 'not-started'); a refused op changes nothing.
   */
  apply(op: CrdtOpOf<T>): void
  /**
   * Resolves once every op applied so far is on disk (fsynced) and its delta
   * sent: what to wait for before telling anyone an op is done. Rejects with
   * CrdtError 'storage' when the write failed (it is retried).
   */
  flushed(): Promise<void>
  value(): CrdtValueOf<T>
  /** Replica (peer id) -> how many of its ops this copy holds, without gaps. */
  versionVector(): Record<string, number>
  /**
   * Replica (peer id) -> how many of its ops every member is known to hold
   * (causally stable); empty until every member has reported.
   */
  stableVector(): Record<string, number>
}

export interface CrdtSummary {
  /** CRDTs this node holds. */
  count: number
  crdtsMax: number
  /** The writer allowlist, or null when every admitted member writes. */
  writers: string[] | null
  syncIntervalMs: number
}

interface Entry {
  readonly name: string
  readonly type: CrdtTypeName
  readonly topic: string
  readonly replica: CrdtReplica
  context: CausalContext
  /** The state's encoding and its hash, until the state changes. */
  encoded: Uint8Array | undefined
  hash: Uint8Array | undefined
  /** rga: the stable version it was last compacted at. */
  compactedAt: VersionVector | null
  /** Recent deltas by dot, sent in sync instead of the state when they cover what a peer lacks. */
  readonly log: DeltaLog
}

/** A state on the wire: name, type, state encoding, context encoding. */
type WireState = [string, string, Uint8Array, Uint8Array]
/** A digest entry: name, type, state hash, and (since stability reports) the encoded report. */
type DigestEntry = [string, string, Uint8Array, Uint8Array?]

interface StatesMessage {
  states: WireState[]
  want: string[]
  /** The sender's stability report per CRDT: name, encoded report. */
  reports: Array<[string, Uint8Array]>
}

export class CrdtService implements Startable {
  readonly settings: CrdtSettings
  readonly writers: ReadonlySet<string> | null
  readonly #components: CrdtComponents
  readonly #host: AccordHost
  readonly #self: string
  readonly #log: Logger
  readonly #metrics: CrdtMetrics
  readonly #storage: CrdtStorage | null
  readonly #entries = new Map<string, Entry>()
  readonly #byTopic = new Map<string, Entry>()
  readonly #syncing = new Set<string>()
  readonly #reports = new StabilityReports()
  /** Peers to sync with again once the exchange under way ends (something changed meanwhile). */
  readonly #syncAgain = new Set<string>()
  readonly #dirty = new Set<string>()
  #registryDirty = false
  #persistTimer: ReturnType<typeof setTimeout> | undefined
  #persisting: Promise<void> = Promise.resolve()
  /** The save that has not started yet: it will cover every op applied before it starts. */
  #queuedSave: Promise<void> | null = null
  /**
   * Deltas of local ops whose state is not on disk yet: sent once it is. A
   * delta sent before could outlive a crash that loses its op here, and the
   * restarted node would give its dots to other ops (copies would diverge).
   */
  #unsent: Array<{ entry: Entry, counter: number, delta: Uint8Array }> = []
  /** When the pending #persistTimer fires (Date.now() ms). */
  #persistDue = 0
  #syncTimer: ReturnType<typeof setInterval> | undefined
  #offAdmitted: (() => void) | undefined
  #pubsub: GossipSub | undefined
  #abort = new AbortController()
  #serving = 0
  #running = false
  #starting: Promise<void> | undefined

  readonly [Symbol.toStringTag] = CRDT_CAPABILITY
  readonly [serviceCapabilities]: string[] = [CRDT_CAPABILITY]
  readonly [serviceDependencies]: string[] = ['@accord/admission']

  constructor (components: CrdtComponents, init: CrdtInit = {}) {
    this.#components = components
    this.#host = hostFromComponents(components)
    this.#self = components.peerId.toString()
    this.#log = init.log ?? silentLogger()
    this.settings = { ...CRDT_SETTINGS_DEFAULTS, ...init.settings }
    this.writers = init.writers != null && init.writers.length > 0 ? new Set(init.writers) : null
    this.#metrics = crdtMetrics(init.registry ?? new Registry())
    this.#storage = init.dataDir != null ? new CrdtStorage(init.dataDir) : null
  }

  get cluster (): string { return this.#components.admission.cluster }

  async start (): Promise<void> {
    this.#starting = this.#start()
    await this.#starting
  }

  async #start (): Promise<void> {
    this.#abort = new AbortController()
    for (const stored of await this.#storage?.load() ?? []) {
      const entry = this.#newEntry(stored.name, stored.type)
      if (stored.state !== null && stored.context !== null) {
        const joined = entry.replica.joinEncoded(stored.state)
        if (!joined.ok) { throw new Error(`crdt: the saved state of ${stored.name} is damaged: ${joined.error}`) }
        entry.context = decodeContext(stored.context) ?? EMPTY_CONTEXT
      }
    }
    for (const record of await this.#storage?.openJournal() ?? []) { this.#replay(record) }
    const { admission } = this.#components
    await this.#host.handle(CRDT_SYNC_PROTOCOL, admission.gate(CRDT_SYNC_PROTOCOL, this.#onSyncStream), {
      maxInboundStreams: this.settings.syncServesMax * 2,
      maxOutboundStreams: 64
    })
    this.#metrics.observe(() => [...this.#entries.values()].map(e => [e.name, this.#encoded(e).byteLength, e.type === 'rga' ? (e.replica.state as Rga).tombstoneUnits : null]))
    this.#running = true
  }

  /** Subscribe to the topics (gossipsub has started) and start anti-entropy. */
  afterStart (): void {
    if (!this.#running) { return }
    const pubsub = optionalPubsub(this.#components)
    if (pubsub != null && pubsub.globalSignaturePolicy !== 'StrictSign') {
      this.#log.warn('crdt: gossipsub does not sign (StrictSign): deltas travel by anti-entropy only')
    } else {
      this.#pubsub = pubsub
    }
    for (const entry of this.#entries.values()) { this.#subscribe(entry) }
    this.#syncTimer = setInterval(() => { this.#syncRandom() }, this.settings.syncIntervalMs)
    this.#offAdmitted = this.#components.admission.onAdmitted(peer => { void this.#syncWith(peer) })
  }

  async stop (): Promise<void> {
    await this.#starting?.catch(() => {})
    this.#running = false
    clearInterval(this.#syncTimer)
    this.#offAdmitted?.()
    this.#abort.abort(new Error('crdt service stopped'))
    const pubsub = this.#pubsub
    this.#pubsub = undefined
    for (const entry of this.#entries.values()) {
      if (pubsub == null) { break }
      if (pubsub.topicValidators.get(entry.topic) === this.#validate) { pubsub.topicValidators.delete(entry.topic) }
      try { pubsub.unsubscribe(entry.topic) } catch { /* gossipsub stopped first */ }
    }
    await this.#host.unhandle(CRDT_SYNC_PROTOCOL).catch(() => {})
    await this.#flush()
    await this.#storage?.close()
  }

  /**
   * Register CRDT `name` of `type` (or get it, when it exists with that
   * type): it spreads to every member. Throws CrdtError: 'bad-name',
   * 'unknown-type', 'type-conflict' (it exists with another type),
   * 'limit' (crdtsMax reached), 'not-writer'.
   */
  registerCRDT<T extends CrdtTypeName> (name: string, type: T): CrdtHandle<T> {
    checkName(name)
    if (!isCrdtTypeName(type)) { throw new CrdtError('unknown-type', `unknown CRDT type ${JSON.stringify(String(type).slice(0, 64))}`) }
    const existing = this.#entries.get(name)
    if (existing !== undefined) {
      if (existing.type !== type) { throw new CrdtError('type-conflict', `${name} exists as a ${existing.type}, not a ${type}`) }
      return this.#handle(existing) as CrdtHandle<T>
    }
    this.#checkWriter()
    if (this.#entries.size >= this.settings.crdtsMax) { throw new CrdtError('limit', `this node holds ${this.settings.crdtsMax} CRDTs, its most (crdtsMax)`) }
    const entry = this.#newEntry(name, type)
    this.#registryDirty = true
    this.#schedulePersist()
    if (this.#running) {
      this.#subscribe(entry)
      // the others learn the name from the digest
      void this.synchronise()
    }
    this.#log.info({ name, type }, 'crdt: registered')
    return this.#handle(entry) as CrdtHandle<T>
  }

  /** The CRDT `name`, or undefined. */
  crdt (name: string): CrdtHandle | undefined {
    const entry = this.#entries.get(name)
    return entry === undefined ? undefined : this.#handle(entry)
  }

  /** Every CRDT this node holds, by name. */
  list (): CrdtDescriptor[] {
    return [...this.#entries.values()].map(({ name, type }) => ({ name, type })).sort((a, b) => compareUtf8(a.name, b.name))
  }

  /** A sync round with every admitted peer now; resolves to how many exchanges succeeded. */
  async synchronise (): Promise<number> {
    const peers = this.#components.admission.admittedPeers().filter(p => p !== this.#self)
    const results = await Promise.all(peers.map(async p => this.#syncWith(p)))
    return results.filter(Boolean).length
  }

  summary (): CrdtSummary {
    return {
      count: this.#entries.size,
      crdtsMax: this.settings.crdtsMax,
      writers: this.writers == null ? null : [...this.writers],
      syncIntervalMs: this.settings.syncIntervalMs
    }
  }

  // ---- entries ----

  #newEntry (name: string, type: CrdtTypeName): Entry {
    const entry: Entry = { name, type, topic: crdtTopic(this.cluster, name), replica: createReplica(type, this.#self), context: EMPTY_CONTEXT, encoded: undefined, hash: undefined, compactedAt: null, log: new DeltaLog() }
    this.#entries.set(name, entry)
    this.#byTopic.set(entry.topic, entry)
    return entry
  }

  #handle (entry: Entry): CrdtHandle {
    return {
      name: entry.name,
      type: entry.type,
      apply: (op) => { this.#applyLocal(entry, op) },
      flushed: async () => { await this.#saveSoon() },
      value: () => entry.replica.value() as CrdtValueOf<CrdtTypeName>,
      versionVector: () => Object.fromEntries(versionVector(entry.context)),
      stableVector: () => Object.fromEntries(this.#stableContext(entry) ?? [])
    }
  }

  #checkWriter (): void {
    if (this.writers != null && !this.writers.has(this.#self)) { throw new CrdtError('not-writer', 'this node is not on the CRDT writer allowlist') }
  }

  #applyLocal (entry: Entry, op: unknown): void {
    if (this.#entries.get(entry.name) !== entry) { throw new CrdtError('not-found', `no CRDT ${entry.name}`) }
    this.#checkWriter()
    const delta = entry.replica.apply(op, Date.now())
    if (!delta.ok) { throw new CrdtError('bad-op', delta.error) }
    const dot = nextDot(entry.context, this.#self)
    entry.context = joinContexts(entry.context, contextFromDots([dot]))
    const bytes = encodeState(entry.type, delta.value)
    if (this.#storage === null) {
      this.#changed(entry)
      this.#sendLocal([{ entry, counter: dot.counter, delta: bytes }])
      return
    }
    this.#invalidate(entry)
    this.#unsent.push({ entry, counter: dot.counter, delta: bytes })
    this.#saveSoon().catch(() => { /* logged by #persistNow, retried */ })
  }

  /** The state changed: its cached encoding and hash go, and the next save writes it. */
  #invalidate (entry: Entry): void {
    entry.encoded = undefined
    entry.hash = undefined
    this.#dirty.add(entry.name)
  }

  /** Changed by a peer: saved within persistDebounceMs (sync brings it back after a crash). */
  #changed (entry: Entry): void {
    this.#invalidate(entry)
    this.#schedulePersist()
  }

  #encoded (entry: Entry): Uint8Array {
    entry.encoded ??= entry.replica.encode()
    return entry.encoded
  }

  #hash (entry: Entry): Uint8Array {
    entry.hash ??= createHash('sha256').update(this.#encoded(entry)).digest().subarray(0, HASH_BYTES)
    return entry.hash
  }

  /** Adopt a name a peer holds; null (counted) when it cannot be. */
  #adopt (name: string, type: string): Entry | null {
    const existing = this.#entries.get(name)
    if (existing !== undefined) {
      if (existing.type !== type) { this.#reject('type-mismatch', null, { name, type }); return null }
      return existing
    }
    if (!CRDT_NAME_PATTERN.test(name)) { this.#reject('malformed', null, { name: name.slice(0, 80) }); return null }
    if (!isCrdtTypeName(type)) { this.#reject('unknown-type', null, { name, type: type.slice(0, 64) }); return null }
    if (this.#entries.size >= this.settings.crdtsMax) { this.#reject('limit', null, { name }); return null }
    const entry = this.#newEntry(name, type)
    this.#registryDirty = true
    this.#schedulePersist()
    this.#subscribe(entry)
    this.#log.info({ name, type }, 'crdt: registered from a peer')
    return entry
  }

  #isWriter (peer: string): boolean {
    return this.writers == null || this.writers.has(peer)
  }

  #reject (reason: CrdtRejectReason, peer: string | null, details: Record<string, unknown> = {}): void {
    this.#metrics.rejected(reason)
    this.#log.debug({ peer, reason, ...details }, 'crdt: not joined')
  }

  // ---- gossip ----

  #subscribe (entry: Entry): void {
    const pubsub = this.#pubsub
    if (pubsub == null || !this.#running) { return }
    pubsub.topicValidators.set(entry.topic, this.#validate)
    // scored like the membership topic (quiet too): a rejected delta sinks its sender below the graylist
    const topics = scoredTopics(pubsub)
    if (topics !== null) { topics[entry.topic] ??= { ...CRDT_TOPIC_SCORE_PARAMS } }
    pubsub.subscribe(entry.topic)
  }

  /**
   * Local ops are durable: their deltas go to the log (for sync) and out on
   * gossip, those of one CRDT with consecutive dots joined into one message
   * (a batch: the dots c .. c + n - 1), up to DELTA_BATCH_OPS_MAX ops and
   * half of deltaBytesMax: each message costs a signature and, in a full
   * mesh, a copy to every peer from every peer.
   */
  #sendLocal (unsent: Array<{ entry: Entry, counter: number, delta: Uint8Array }>): void {
    let batch: typeof unsent = []
    let bytes = 0
    const send = (): void => {
      if (batch.length === 0) { return }
      const [{ entry, counter }] = batch
      const delta = batch.length === 1 ? batch[0].delta : deltaGroup(entry.type, batch.map(u => u.delta))
      if (delta !== null) { this.#publish(entry, counter, batch.length, delta) }
      batch = []
      bytes = 0
    }
    for (const op of unsent) {
      if (this.#entries.get(op.entry.name) !== op.entry) { continue }
      op.entry.log.add({ replica: this.#self, counter: op.counter }, op.delta)
      const last = batch.at(-1)
      const joins = last !== undefined && last.entry === op.entry && last.counter + 1 === op.counter &&
        batch.length < DELTA_BATCH_OPS_MAX && bytes + op.delta.byteLength <= this.settings.deltaBytesMax / 2
      if (!joins) { send() }
      batch.push(op)
      bytes += op.delta.byteLength
    }
    send()
  }

  #publish (entry: Entry, counter: number, count: number, delta: Uint8Array): void {
    const pubsub = this.#pubsub
    if (pubsub == null || !this.#running) { return }
    const data = encode(count === 1 ? { v: WIRE_VERSION, type: entry.type, c: counter, delta } : { v: WIRE_VERSION, type: entry.type, c: counter, n: count, delta })
    if (data.byteLength > this.settings.deltaBytesMax) {
      this.#log.debug({ name: entry.name, bytes: data.byteLength }, 'crdt: delta too large to publish, left to anti-entropy')
      return
    }
    this.#metrics.deltaSent(data.byteLength, count)
    pubsub.publish(entry.topic, data).catch((err: Error) => {
      // no peer subscribed yet, say: anti-entropy repairs it
      this.#log.debug({ name: entry.name, err: err.message }, 'crdt: publish failed')
    })
  }

  readonly #validate = (source: PeerId, msg: Message): TopicValidatorResult => {
    const entry = this.#byTopic.get(msg.topic)
    if (!this.#running || entry === undefined || this.#entries.get(entry.name) !== entry) { return TopicValidatorResult.Ignore }
    const { admission } = this.#components
    this.#metrics.deltaReceived(msg.data.byteLength)
    const from = source.toString()
    if (msg.type !== 'signed') { return this.#refuse(TopicValidatorResult.Reject, from, null, 'unsigned') }
    const author = msg.from.toString()
    // not admitted yet, maybe: a member that just connected forwards before its certificate exchange ends (see membership/gossip.ts)
    if (!admission.isAdmitted(from)) { return this.#refuse(TopicValidatorResult.Ignore, from, author, 'not-admitted') }
    if (author === this.#self) { return TopicValidatorResult.Ignore }
    if (admission.isRevoked(author)) { return this.#refuse(TopicValidatorResult.Reject, from, author, 'author-revoked') }
    if (!admission.isAdmitted(author) && !this.#isLiveMember(author)) { return this.#refuse(TopicValidatorResult.Ignore, from, author, 'author-unknown') }
    // the forwarder did nothing wrong: ignored, not penalised
    if (!this.#isWriter(author)) { return this.#refuse(TopicValidatorResult.Ignore, from, author, 'not-writer') }
    if (msg.data.byteLength > this.settings.deltaBytesMax) { return this.#refuse(TopicValidatorResult.Reject, from, author, 'too-large') }
    const decoded = parseDelta(msg.data)
    if (decoded === null) { return this.#refuse(TopicValidatorResult.Reject, from, author, 'malformed') }
    if (!isCrdtTypeName(decoded.type)) { return this.#refuse(TopicValidatorResult.Reject, from, author, 'unknown-type') }
    // two nodes created the name with different types: neither is at fault
    if (decoded.type !== entry.type) { return this.#refuse(TopicValidatorResult.Ignore, from, author, 'type-mismatch') }
    const dots = Array.from({ length: decoded.n }, (_, i) => ({ replica: author, counter: decoded.c + i }))
    // held already (it came by sync first): valid, nothing to join
    if (dots.every(dot => contextContains(entry.context, dot))) { return TopicValidatorResult.Accept }
    const started = performance.now()
    if (!entry.replica.joinEncoded(decoded.delta).ok) { return this.#refuse(TopicValidatorResult.Reject, from, author, 'malformed') }
    entry.context = joinContexts(entry.context, contextFromDots(dots))
    entry.log.addGroup(dots, decoded.delta)
    this.#metrics.merged((performance.now() - started) / 1000)
    this.#changed(entry)
    return TopicValidatorResult.Accept
  }

  #isLiveMember (peer: string): boolean {
    const membership = optionalService(() => this.#components.membership)
    const state = membership?.stateOf(peer)
    return state === 'alive' || state === 'suspect'
  }

  #refuse (result: TopicValidatorResult, source: string, author: string | null, reason: CrdtRejectReason): TopicValidatorResult {
    this.#metrics.rejected(reason)
    this.#components.admission.refusals.refuse(source, `accord/${this.cluster}/crdt`, reason, { author })
    return result
  }

  // ---- anti-entropy ----

  #syncRandom (): void {
    const peers = this.#components.admission.admittedPeers().filter(p => p !== this.#self)
    if (peers.length === 0) { return }
    void this.#syncWith(peers[randomInt(peers.length)])
  }

  #digest (): Uint8Array {
    return encode({ v: WIRE_VERSION, t: 'digest', crdts: [...this.#entries.values()].map(e => [e.name, e.type, this.#hash(e), this.#report(e)]) })
  }

  // ---- causal stability ----

  #report (entry: Entry): Uint8Array {
    const document = entry.type === 'rga' ? (entry.replica.state as Rga).version() : null
    return encodeReport({ context: versionVector(entry.context), document })
  }

  #reportsOf (): Array<[string, Uint8Array]> {
    return [...this.#entries.values()].map(e => [e.name, this.#report(e)])
  }

  /** A peer's reports on CRDTs this node holds, decoded (a malformed one is counted and left out). */
  #decodeReports (peer: string, reports: Iterable<[string, Uint8Array | undefined]>): Map<string, StabilityReport> {
    const out = new Map<string, StabilityReport>()
    for (const [name, bytes] of reports) {
      if (bytes === undefined || !this.#entries.has(name)) { continue }
      const report = decodeReport(bytes)
      if (report === null) { this.#reject('malformed', peer, { name }); continue }
      out.set(name, report)
    }
    return out
  }

  /** Keeps a peer's reports, then collects what became stable. */
  #takeReports (peer: string, reports: ReadonlyMap<string, StabilityReport>): void {
    for (const [name, report] of reports) { this.#reports.record(name, peer, report) }
    const members = this.#members()
    if (members === null) { return }
    this.#reports.retain(members)
    for (const entry of this.#entries.values()) {
      if (entry.type === 'rga') { this.#collectStable(entry, members) }
    }
  }

  /**
   * The members whose reports stability needs (this node aside): every
   * member membership knows that has not left or been revoked, and every
   * admitted peer. Null without membership: a peer that is down would be
   * forgotten, so nothing is ever taken as stable.
   */
  #members (): Set<string> | null {
    const membership = optionalService(() => this.#components.membership)
    if (membership === undefined) { return null }
    const { admission } = this.#components
    const members = new Set(admission.admittedPeers())
    for (const { peerId, state } of membership.memberStates()) {
      if (state !== 'left') { members.add(peerId) }
    }
    members.delete(this.#self)
    for (const peer of members) {
      if (admission.isRevoked(peer)) { members.delete(peer) }
    }
    return members
  }

  /** The ops of each replica every member holds, or null when not every member has reported. */
  #stableContext (entry: Entry): Map<string, number> | null {
    const members = this.#members()
    const reports = members === null ? null : this.#reports.of(entry.name, members)
    if (reports === null) { return null }
    return meetClocks([versionVector(entry.context), ...[...reports.values()].map(r => r.context)])
  }

  /** Collects the rga's tombstones and history every member holds, when that grew. */
  #collectStable (entry: Entry, members: Set<string>): void {
    const reports = this.#reports.of(entry.name, members)
    if (reports === null) { return }
    const documents = new Map<string, Map<string, number>>()
    for (const [peer, report] of reports) {
      if (report.document === null) { return }
      documents.set(peer, new Map(report.document))
    }
    const doc = entry.replica.state as Rga
    const stable = doc.stableFrontier(documents)
    if (stable === null || (entry.compactedAt !== null && compareClocks(stable, entry.compactedAt) === 'equal')) { return }
    const units = compactRgaDoc(doc, stable)
    entry.compactedAt = stable
    this.#metrics.collected(units)
    this.#log.debug({ name: entry.name, units }, 'crdt: collected what is causally stable')
    this.#changed(entry)
  }

  /**
   * What a peer lacks of `names` (those we hold), within the message
   * budget: for a name it reported on, the join of our logged deltas of
   * the ops it lacks (nothing when it lacks none), when the log still has
   * them all; else the whole state.
   */
  #statesFor (names: Iterable<string>, theirs: ReadonlyMap<string, StabilityReport> = new Map()): WireState[] {
    const budget = this.settings.syncMessageBytesMax - SYNC_SLACK_BYTES
    let used = 0
    const states: WireState[] = []
    const unsaved = new Set(this.#unsent.map(u => u.entry))
    for (const name of names) {
      const entry = this.#entries.get(name)
      // a state holding local ops not on disk yet goes in a later round: like their deltas, it must not outlive a crash here
      if (entry === undefined || unsaved.has(entry)) { continue }
      const report = theirs.get(name)
      const gap = report === undefined ? null : entry.log.gap(entry.context, report.context)
      if (gap !== null && gap.dots.length === 0) { continue }
      const group = gap === null ? null : deltaGroup(entry.type, gap.deltas)
      const state = group ?? this.#encoded(entry)
      const context = encodeContext(gap === null || group === null ? entry.context : contextFromDots(gap.dots))
      const size = state.byteLength + context.byteLength + name.length + 32
      if (used + size > budget) {
        this.#log.debug({ name, bytes: size }, 'crdt: state left for a later sync round (message budget)')
        continue
      }
      used += size
      this.#metrics.syncSent(group === null ? 'state' : 'deltas', state.byteLength)
      states.push([entry.name, entry.type, state, context])
    }
    return states
  }

  /** The names of a peer's digest whose states this node wants: those that differ, and new ones as far as crdtsMax allows. */
  #wanted (theirs: Map<string, { type: unknown, hash: Uint8Array }>): string[] {
    const want: string[] = []
    let room = this.settings.crdtsMax - this.#entries.size
    for (const [name, { type, hash }] of theirs) {
      const ours = this.#entries.get(name)
      if (ours === undefined) {
        if (room > 0 && isCrdtTypeName(type) && CRDT_NAME_PATTERN.test(name)) { want.push(name); room-- }
      } else if (ours.type === type && !Buffer.from(hash).equals(this.#hash(ours))) {
        want.push(name)
      }
    }
    return want
  }

  /** Join states a peer sent. */
  #takeStates (peer: string, states: WireState[]): void {
    if (!this.#isWriter(peer)) {
      for (let i = 0; i < states.length; i++) { this.#reject('not-writer', peer) }
      return
    }
    for (const [name, type, bytes, contextBytes] of states) {
      const entry = this.#adopt(name, type)
      if (entry === null) { continue }
      const started = performance.now()
      const context = decodeContext(contextBytes)
      if (context === null) { this.#reject('malformed', peer, { name }); continue }
      const before = this.#hash(entry)
      const contextBefore = encodeContext(entry.context)
      if (!entry.replica.joinEncoded(bytes).ok) { this.#reject('malformed', peer, { name }); continue }
      entry.context = joinContexts(entry.context, context)
      this.#metrics.merged((performance.now() - started) / 1000)
      entry.encoded = undefined
      entry.hash = undefined
      // a context that grew alone is saved too: a restart must not show an older version vector
      if (!Buffer.from(before).equals(this.#hash(entry)) || !Buffer.from(contextBefore).equals(encodeContext(entry.context))) { this.#changed(entry) }
    }
  }

  /** One exchange with `peer` as the dialler; false when it failed, or when one is under way (another then follows it). */
  async #syncWith (peer: string): Promise<boolean> {
    if (!this.#running || peer === this.#self || !this.#components.admission.isAdmitted(peer)) { return false }
    if (this.#syncing.has(peer)) {
      this.#syncAgain.add(peer)
      return false
    }
    this.#syncing.add(peer)
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.settings.syncTimeoutMs)])
    let stream: Stream | undefined
    try {
      stream = await this.#host.dialProtocol(peerIdFromString(peer), CRDT_SYNC_PROTOCOL, { signal })
      const lp = this.#lp(stream)
      await lp.write(this.#digest(), { signal })
      const reply = parseStates(decodeBoundedCbor((await lp.read({ signal })).subarray()))
      if (reply === null) { throw new Error('malformed states message') }
      this.#takeStates(peer, reply.states)
      const reports = this.#decodeReports(peer, reply.reports)
      this.#takeReports(peer, reports)
      await lp.write(encode({ v: WIRE_VERSION, t: 'states', states: this.#statesFor(reply.want, reports), want: [], reports: [] }), { signal })
      await stream.close({ signal })
      this.#metrics.sync('ok', 'client')
      return true
    } catch (err) {
      this.#metrics.sync('failed', 'client')
      this.#log.debug({ peer, err: (err as Error).message }, 'crdt: sync failed')
      stream?.abort(err instanceof Error ? err : new Error(String(err)))
      return false
    } finally {
      this.#syncing.delete(peer)
      if (this.#syncAgain.delete(peer)) { void this.#syncWith(peer) }
    }
  }

  readonly #onSyncStream = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString()
    if (!this.#running || this.#serving >= this.settings.syncServesMax) {
      stream.abort(new Error('crdt sync refused: busy'))
      return
    }
    this.#serving++
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.settings.syncTimeoutMs)])
    try {
      const lp = this.#lp(stream)
      const digest = parseDigest(decodeBoundedCbor((await lp.read({ signal })).subarray()))
      if (digest === null) { throw new Error('malformed digest') }
      const theirs = new Map(digest.map(([name, type, hash]) => [name, { type, hash }]))
      const reports = this.#decodeReports(peer, digest.map(([name, , , report]): [string, Uint8Array | undefined] => [name, report]))
      const send: string[] = []
      for (const entry of this.#entries.values()) {
        const other = theirs.get(entry.name)
        if (other === undefined || (other.type === entry.type && !Buffer.from(other.hash).equals(this.#hash(entry)))) { send.push(entry.name) }
      }
      const want = this.#isWriter(peer) ? this.#wanted(theirs) : []
      await lp.write(encode({ v: WIRE_VERSION, t: 'states', states: this.#statesFor(send, reports), want, reports: this.#reportsOf() }), { signal })
      const states = parseStates(decodeBoundedCbor((await lp.read({ signal })).subarray()))
      if (states === null) { throw new Error('malformed states message') }
      const wanted = new Set(want)
      this.#takeStates(peer, states.states.filter(([name]) => wanted.has(name)))
      this.#takeReports(peer, reports)
      await stream.close({ signal })
      this.#metrics.sync('ok', 'server')
    } catch (err) {
      this.#metrics.sync('failed', 'server')
      this.#log.debug({ peer, err: (err as Error).message }, 'crdt: serving a sync failed')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      this.#serving--
    }
  }

  #lp (stream: Stream): ReturnType<typeof lpStream> {
    const max = this.settings.syncMessageBytesMax
    return lpStream(stream, { maxDataLength: max, lengthDecoder: boundedLengthDecoder(max) })
  }

  // ---- persistence ----

  /** A local op from the journal (acknowledged before a crash or stop): joined unless the saved state holds it already. */
  #replay (record: JournalRecord): void {
    const entry = this.#entries.get(record.name)
    if (entry === undefined) { throw new Error(`crdt: the journal names ${JSON.stringify(record.name.slice(0, 80))}, which the registry lacks`) }
    const dot = { replica: this.#self, counter: record.counter }
    if (!contextContains(entry.context, dot)) {
      const joined = entry.replica.joinEncoded(record.delta)
      if (!joined.ok) { throw new Error(`crdt: the journal's op ${record.counter} of ${record.name} is damaged: ${joined.error}`) }
      entry.context = joinContexts(entry.context, contextFromDots([dot]))
    }
    entry.log.add(dot, record.delta)
    // the next checkpoint writes the state before it empties the journal
    this.#dirty.add(entry.name)
  }

  /** A checkpoint (states written, journal emptied) in `delayMs`, or sooner if one is due sooner. */
  #schedulePersist (delayMs = this.settings.persistDebounceMs): void {
    if (this.#storage === null) { return }
    const due = Date.now() + delayMs
    if (this.#persistTimer !== undefined && this.#persistDue <= due) { return }
    clearTimeout(this.#persistTimer)
    this.#persistDue = due
    this.#persistTimer = setTimeout(() => {
      this.#persistTimer = undefined
      this.#persisting = this.#persisting.then(async () => { await this.#persistNow(true) })
    }, delayMs)
  }

  /**
   * A save as soon as the one under way ends (group commit: the ops applied
   * meanwhile share it); resolves once it covered everything applied before
   * this call, rejects when that write failed.
   */
  async #saveSoon (): Promise<void> {
    if (this.#queuedSave === null) {
      const save = this.#persisting.then(async () => {
        this.#queuedSave = null
        if (!await this.#persistNow(false)) { throw new CrdtError('storage', 'the CRDT states could not be saved (retrying)') }
      })
      this.#queuedSave = save
      this.#persisting = save.catch(() => {})
    }
    await this.#queuedSave
  }

  async #flush (): Promise<void> {
    clearTimeout(this.#persistTimer)
    this.#persistTimer = undefined
    this.#persisting = this.#persisting.then(async () => { await this.#persistNow(true) })
    await this.#persisting
  }

  /**
   * Makes the local ops applied so far durable, then sends their deltas;
   * false when a write failed (retried later). Usually by appending them to
   * the journal (one fdatasync for all); a checkpoint (`checkpoint`, or a
   * journal past JOURNAL_BYTES_MAX) instead writes every changed state,
   * which holds them, and empties the journal.
   */
  async #persistNow (checkpoint: boolean): Promise<boolean> {
    const storage = this.#storage
    if (storage === null) { return true }
    const full = checkpoint || storage.journalBytes >= JOURNAL_BYTES_MAX
    const names = full ? [...this.#dirty] : []
    if (full) { this.#dirty.clear() }
    const registry = this.#registryDirty
    this.#registryDirty = false
    // the states written below hold these ops (they were applied before this save started)
    const unsent = this.#unsent.splice(0)
    try {
      // first: journal records name CRDTs the registry must list
      if (registry) { await storage.writeRegistry(this.list()) }
      if (full) {
        // the files are independent: their writes and fsyncs overlap
        const writes = await Promise.allSettled(names.map(async name => {
          const entry = this.#entries.get(name)
          if (entry !== undefined) { await storage.writeState(name, entry.type, this.#encoded(entry), encodeContext(entry.context)) }
        }))
        const failed = writes.find(w => w.status === 'rejected')
        if (failed !== undefined) { throw failed.reason }
        await storage.clearJournal()
      } else if (unsent.length > 0) {
        await storage.append(unsent.map(u => ({ name: u.entry.name, counter: u.counter, delta: u.delta })))
      }
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'crdt: saving the states failed; retrying')
      for (const name of names) { this.#dirty.add(name) }
      this.#registryDirty ||= registry
      this.#unsent.unshift(...unsent)
      if (this.#running) { this.#schedulePersist() }
      return false
    }
    // journalled ops reach their state files within CHECKPOINT_INTERVAL_MS
    if (!full && unsent.length > 0 && this.#running) { this.#schedulePersist(CHECKPOINT_INTERVAL_MS) }
    this.#sendLocal(unsent)
    return true
  }
}

function checkName (name: unknown): asserts name is string {
  if (typeof name !== 'string' || !CRDT_NAME_PATTERN.test(name)) {
    throw new CrdtError('bad-name', `CRDT name ${JSON.stringify(String(name).slice(0, 80))}: 1..${CRDT_NAME_LENGTH_MAX} letters, digits, ".", "_" or "-", starting with a letter or digit`)
  }
}

function encodeContext (context: CausalContext): Uint8Array {
  const writer = new ByteWriter()
  writeContext(writer, context)
  return writer.finish()
}

function decodeContext (bytes: Uint8Array): CausalContext | null {
  try {
    const reader = new ByteReader(bytes)
    const context = readContext(reader)
    reader.end('context')
    return context
  } catch (err) {
    if (err instanceof DecodeError) { return null }
    throw err
  }
}

/** A delta message, CBOR `{v, type, c, delta}`, or a batch `{v, type, c, n, delta}` of the dots c .. c + n - 1; null when it is not one. */
function parseDelta (data: Uint8Array): { type: unknown, c: number, n: number, delta: Uint8Array } | null {
  let m: { v?: unknown, type?: unknown, c?: unknown, n?: unknown, delta?: unknown } | null
  try {
    m = decodeBoundedCbor(data) as typeof m
  } catch {
    return null
  }
  if (m?.v !== WIRE_VERSION || !isBytes(m.delta) || typeof m.c !== 'number' || !Number.isSafeInteger(m.c) || m.c < 1) { return null }
  const n = m.n ?? 1
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > DELTA_BATCH_OPS_MAX || !Number.isSafeInteger(m.c + n)) { return null }
  return { type: m.type, c: m.c, n, delta: m.delta }
}

/** The join of encoded deltas of one type, encoded; null when one does not decode (the state goes instead). */
function deltaGroup (typeName: CrdtTypeName, deltas: Uint8Array[]): Uint8Array | null {
  // the group is decoded here and owned: a type that joins in place (rga) need not copy it per delta
  const group = createReplica(typeName, DELTA_GROUP_REPLICA)
  for (const bytes of deltas) {
    if (!group.joinEncoded(bytes).ok) { return null }
  }
  return deltas.length === 0 ? null : group.encode()
}

function isBytes (value: unknown): value is Uint8Array {
  return value instanceof Uint8Array
}

/** A digest's entries; an entry without a report (a node from before reports) is one. */
function parseDigest (message: unknown): DigestEntry[] | null {
  const m = message as { v?: unknown, t?: unknown, crdts?: unknown } | null
  if (m?.v !== WIRE_VERSION || m.t !== 'digest' || !Array.isArray(m.crdts) || m.crdts.length > SYNC_ENTRIES_MAX) { return null }
  for (const item of m.crdts as unknown[]) {
    if (!Array.isArray(item) || (item.length !== 3 && item.length !== 4) || typeof item[0] !== 'string' || typeof item[1] !== 'string' || !isBytes(item[2])) { return null }
    if (item.length === 4 && !isBytes(item[3])) { return null }
  }
  return m.crdts as DigestEntry[]
}

function parseStates (message: unknown): StatesMessage | null {
  const m = message as { v?: unknown, t?: unknown, states?: unknown, want?: unknown, reports?: unknown } | null
  if (m?.v !== WIRE_VERSION || m.t !== 'states' || !Array.isArray(m.states) || !Array.isArray(m.want)) { return null }
  if (m.states.length > SYNC_ENTRIES_MAX || m.want.length > SYNC_ENTRIES_MAX) { return null }
  const reports = parseReports(m.reports)
  if (reports === null) { return null }
  for (const item of m.states as unknown[]) {
    if (!Array.isArray(item) || item.length !== 4 || typeof item[0] !== 'string' || typeof item[1] !== 'string' || !isBytes(item[2]) || !isBytes(item[3])) { return null }
  }
  if (!(m.want as unknown[]).every(n => typeof n === 'string')) { return null }
  return { states: m.states as WireState[], want: m.want as string[], reports }
}

/** A states message's reports: [name, encoded report] pairs (absent from nodes from before stability reports). */
function parseReports (reports: unknown = []): Array<[string, Uint8Array]> | null {
  if (!Array.isArray(reports) || reports.length > SYNC_ENTRIES_MAX) { return null }
  for (const item of reports as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2 || typeof item[0] !== 'string' || !isBytes(item[1])) { return null }
  }
  return reports as Array<[string, Uint8Array]>
}

/**
 * gossipsub's live per-topic score parameters. Topics are normally scored
 * from the options at construction; CRDT names come later, so their
 * parameters go into the score's params (read on every score refresh),
 * which `@libp2p/gossipsub`'s class has but its interface type does not
 * show. Null (the topic then goes unscored) if that ever changes.
 */
function scoredTopics (pubsub: GossipSub): Record<string, TopicScoreParams> | null {
  const topics = (pubsub as unknown as { score?: { params?: { topics?: unknown } } }).score?.params?.topics
  return typeof topics === 'object' && topics !== null ? topics as Record<string, TopicScoreParams> : null
}

/** The node's gossipsub, if it has one as `pubsub` (and it is gossipsub). */
function optionalPubsub (components: CrdtComponents): GossipSub | undefined {
  const pubsub = optionalService<unknown>(() => components.pubsub)
  const p = pubsub as Partial<GossipSub> | undefined
  return typeof p?.subscribe === 'function' && typeof p.publish === 'function' && p.topicValidators instanceof Map ? pubsub as GossipSub : undefined
}

/**
 * The CRDT service: `services: { crdt: crdtService({ dataDir }) }`, beside
 * clusterAdmission as `admission` and gossipsub (StrictSign) as `pubsub`.
 */
export function crdtService (init: CrdtInit = {}): (components: CrdtComponents) => CrdtService {
  return (components) => new CrdtService(components, init)
}
