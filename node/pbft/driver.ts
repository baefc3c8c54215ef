/**
 * Drives the I/O-free PBFT core (protocols/pbft): a tick timer, inbound
 * messages, and the Ready loop, with the replicated KV store on top.
 *
 * The Ready loop, in the order the core's contract requires (see PbftReady):
 * 1. persist: store.append(ready.persist) and wait for it (fsync); what
 * this replica signed is durable before anyone sees it, so a restarted
 * replica never signs a conflicting message for the same view and seq;
 * 2. send the messages;
 * 3. execute the committed batches in seq order on the KV state machine and
 * reply to their clients; at a seq listed in checkpointsDue, snapshot the
 * state (a copy-on-write clone, encoded in slices in the background, one
 * checkpoint after the other) and report its digest once encoded
 * (checkpointTaken, between two Readies);
 * 4. a newly stable checkpoint: store its snapshot (the store may then drop
 * the records below it); evidence to publish; isolations to persist; a
 * wanted state: fetch it from a holder, check it, install it;
 * 5. advance().
 *
 * Everything with I/O is handed in (runtime, store, transport, crypto), so
 * the simulator (test/sim/pbft) runs this very driver in virtual time.
 */
import { createHash } from 'node:crypto'
import { unreachable } from '../../protocols/common/assert.ts'
import { encodeCommand, KvStateMachine } from '../../protocols/kv/index.ts'
import { PbftReplica, decodeConfiguration, encodeConfiguration, verifyRequest } from '../../protocols/pbft/index.ts'
import { CoalescedPass, inSlices } from '../driver-scheduling.ts'
import { systemRuntime } from '../runtime.ts'
import { equivocating } from './faulty.ts'
import { decodeOperation, encodeResult, kvResult, sessionCommand } from './operations.ts'
import type { PbftResult } from './operations.ts'
import type { CreateSha256, KvLimits, KvSnapshotEncoder } from '../../protocols/kv/index.ts'
import type { ConfigurationState, PbftConfiguration, PbftLimits, ReconfigurationOutcome } from '../../protocols/pbft/index.ts'
import type {
  ClientRequest, Evidence, ExecutableBatch, Isolation, NodeId, Outbound, PbftCrypto, PbftMessage,
  PbftReady, PbftStatus, PbftThresholdGroup, PersistRecord, Reply, StableCheckpoint, StateWanted, StepRejectReason, StepResult
} from '../../protocols/pbft/types.ts'
import type { DriverRuntime } from '../runtime.ts'
import type { Logger } from 'pino'

/** Where a replica keeps what it must not forget. */
export interface PbftStore {
  /** Everything a replica restarts from. */
  load(): Promise<{ records: PersistRecord[], snapshot: { checkpoint: StableCheckpoint, data: Uint8Array } | null, isolated: Isolation[] }>
  /** Resolves once the records are durable (fsync). */
  append(records: PersistRecord[]): Promise<void>
  /** Durable snapshot of the state at checkpoint.seq; records at or below it may then be dropped. */
  saveSnapshot(checkpoint: StableCheckpoint, data: Uint8Array): Promise<void>
  saveIsolated(isolated: Isolation[]): Promise<void>
}

/** How a replica reaches the others and its clients. */
export interface PbftTransport {
  /** Never blocks; may drop. */
  send(to: NodeId, message: PbftMessage): void
  /** Asks `from` for its snapshot at `seq`; null if it has none. The driver checks the bytes against the proven digest. */
  fetchState(from: NodeId, seq: number): Promise<Uint8Array | null>
}

export interface PbftDriverMetrics {
  /** This replica entered `view` (a view change completed, or it started one toward it). */
  onViewChange?(view: number): void
  onRejected?(reason: StepRejectReason): void
  onEvidence?(direction: 'produced' | 'received'): void
  /** A checkpoint became stable; the gap to executedSeq is the checkpoint lag. */
  onCheckpoint?(stableSeq: number, executedSeq: number): void
  /** A committed batch was executed (`batch` for observers that need its seq and requests, e.g. the simulator's checks). */
  onExecuted?(requests: number, batch: ExecutableBatch): void
  /** The state of a stable checkpoint fetched from another replica was installed. */
  onStateInstalled?(seq: number): void
}

export interface PbftDriverOptions {
  id: NodeId
  /** Identical on every replica; primary(v) = replicas[v mod n]. */
  replicas: NodeId[]
  crypto: PbftCrypto
  store: PbftStore
  transport: PbftTransport
  /** Clock, timers and randomness (systemRuntime by default). */
  runtime?: DriverRuntime
  tickIntervalMs?: number
  limits?: Partial<PbftLimits>
  kvLimits?: Partial<KvLimits>
  driverLimits?: Partial<PbftDriverLimits>
  log: Logger
  metrics?: PbftDriverMetrics
  /** Evidence this replica produced, to publish on the evidence topic. */
  publishEvidence?(evidence: Evidence): void
  /** A peer was isolated (deny its connections). */
  onIsolated?(isolation: Isolation): void
  /** A new replica set is in force (reconfiguration): the transport and the client talk to its replicas. */
  onConfiguration?(configuration: PbftConfiguration): void
  /** Deliberately Byzantine (accord start --byzantine): equivocate when primary, conflicting signed prepares otherwise. For demos and tests only. */
  faulty?: 'equivocate'
  /** BROKEN ON PURPOSE when set: the core's quorum size (see PbftConfigInit.sabotageQuorum). Only for the simulator's sabotage runs. */
  sabotageQuorum?: number
}

export const PBFT_TICK_INTERVAL_MS = 50
/** A state fetch that found no holder with the proven state is tried again after this many ticks. */
export const STATE_FETCH_RETRY_TICKS = 10
/** The driver's own bounds on what remote input makes it keep. */
export interface PbftDriverLimits {
  /** Clients whose last reply is kept to answer a retransmission (a client that lost it retries). */
  lastRepliesMax: number
  /** Bytes of results in those replies (a get's value can be large). */
  lastRepliesBytesMax: number
  /** Read-only requests waiting for the state to catch up with what was prepared; beyond it they are refused ('buffer-full'). */
  readOnlyWaitingMax: number
}

export const PBFT_DRIVER_DEFAULTS: Readonly<PbftDriverLimits> = Object.freeze({
  lastRepliesMax: 10_000,
  lastRepliesBytesMax: 64 * 1024 * 1024,
  readOnlyWaitingMax: 1024
})

/** Native SHA-256 for KV snapshots (see node/raft/driver.ts). */
const nodeSha256: CreateSha256 = () => createHash('sha256')

interface KeptSnapshot {
  digest: string
  data: Uint8Array
}

/** A read-only request waiting until the state here reflects `until` (null: not known yet). */
interface ReadOnlyWaiter {
  request: ClientRequest
  key: string
  until: number | null
}

/** The highest seq that `records` show prepared or committed, 0 if none. */
function preparedSeq (records: PersistRecord[]): number {
  let seq = 0
  for (const record of records) {
    if (record.kind === 'prepared' || record.kind === 'committed') { seq = Math.max(seq, record.certificate.prePrepare.seq) }
  }
  return seq
}

/** The last reply to a client's ordered request, resent when the request comes again. */
interface LastReply {
  timestamp: number
  reply: Reply
}

export class PbftReplicaDriver {
  readonly id: NodeId
  readonly kv: KvStateMachine
  readonly #core: PbftReplica
  readonly #options: PbftDriverOptions
  readonly #runtime: DriverRuntime
  readonly #limits: PbftDriverLimits
  readonly #send: (outbound: Outbound) => void
  /** Snapshots taken at checkpoints not yet stable, by seq; pruned at each stable checkpoint. */
  readonly #checkpoints = new Map<number, KeptSnapshot>()
  /** The snapshot of the last stable checkpoint this replica holds: what it serves to others. */
  #stable: { checkpoint: StableCheckpoint, data: Uint8Array } | null
  /** Map order is least recently replied first; see #remember for the bounds. */
  readonly #lastReplies = new Map<NodeId, LastReply>()
  #lastRepliesBytes = 0
  readonly #isolated: Isolation[]
  #executed: number
  #view: number
  /** Seqs the core asked a digest for that are not executed yet. */
  readonly #checkpointsDue = new Set<number>()
  /** Highest seq prepared or committed here, as the Readies taken so far show: what read-only answers wait for. */
  #prepared: number
  #readOnly: ReadOnlyWaiter[] = []
  #wanted: StateWanted | null = null
  #fetching = false
  /** A fetched and checked state, installed between two Readies. */
  #toInstall: { checkpoint: StableCheckpoint, data: Uint8Array } | null = null
  #snapshotsSaving: Promise<void> = Promise.resolve()
  #blocklistSaving: Promise<void> = Promise.resolve()
  #savedSnapshotSeq: number
  /** Checkpoint snapshots being encoded, one after the other. */
  #checkpointsEncoding: Promise<void> = Promise.resolve()
  /** Checkpoints encoded, whose digest the core learns between two Readies. */
  #checkpointsEncoded: Array<{ seq: number, digest: string }> = []
  #cancelTick: (() => void) | null = null
  /** The Ready loop: one pass at a time, triggers coalesced. */
  readonly #readyLoop: CoalescedPass
  #stopped = false
  #failure: Error | null = null

  private constructor (options: PbftDriverOptions, kv: KvStateMachine, loaded: Awaited<ReturnType<PbftStore['load']>>) {
    this.id = options.id
    this.kv = kv
    this.#options = options
    this.#runtime = options.runtime ?? systemRuntime
    this.#readyLoop = new CoalescedPass(this.#runtime, async () => { await this.#processReadies() }, err => { this.#fail(err) }, () => !this.#stopped && this.#failure === null)
    this.#limits = { ...PBFT_DRIVER_DEFAULTS, ...options.driverLimits }
    this.#stable = loaded.snapshot
    this.#executed = loaded.snapshot?.checkpoint.seq ?? 0
    this.#savedSnapshotSeq = this.#executed
    this.#prepared = preparedSeq(loaded.records)
    this.#isolated = [...loaded.isolated]
    const records = loaded.snapshot === null || loaded.records.some(r => r.kind === 'stable' && r.checkpoint.seq === loaded.snapshot?.checkpoint.seq)
      ? loaded.records
      : [{ kind: 'stable' as const, checkpoint: loaded.snapshot.checkpoint }, ...loaded.records]
    this.#core = new PbftReplica({
      id: options.id,
      replicas: options.replicas,
      crypto: options.crypto,
      limits: options.limits,
      isolated: loaded.isolated,
      ...configurationOption(configurationIn(kv)),
      ...(options.sabotageQuorum === undefined ? {} : { sabotageQuorum: options.sabotageQuorum })
    }, { records })
    this.#view = this.#core.status().view
    const send = (outbound: Outbound): void => { options.transport.send(outbound.to, outbound.message) }
    this.#send = options.faulty === 'equivocate' ? equivocating(options.id, options.replicas, options.crypto, send) : send
  }

  /** Loads the store, restores the KV state from the stored snapshot, and builds the core from the records. */
  static async create (options: PbftDriverOptions): Promise<PbftReplicaDriver> {
    if (options.faulty !== undefined) {
      options.log.warn({ faulty: options.faulty }, 'THIS REPLICA IS DELIBERATELY BYZANTINE (--byzantine): it equivocates as primary and sends conflicting signed prepares; honest replicas will isolate it. For demos and tests only.')
    }
    const loaded = await options.store.load()
    const kv = new KvStateMachine(options.kvLimits, { createSha256: nodeSha256 })
    if (loaded.snapshot !== null) {
      const { checkpoint, data } = loaded.snapshot
      const digest = options.crypto.digest(data)
      if (digest !== checkpoint.stateDigest) { throw new Error(`pbft: the stored snapshot at seq ${checkpoint.seq} has digest ${digest}, its checkpoint proves ${checkpoint.stateDigest}`) }
      const restored = kv.restore(data)
      if (!restored.ok) { throw new Error(`pbft: the stored snapshot at seq ${checkpoint.seq} does not restore: ${restored.error}`) }
    }
    return new PbftReplicaDriver(options, kv, loaded)
  }

  start (): void {
    if (this.#stopped) { return }
    this.#cancelTick = this.#runtime.setInterval(() => {
      if (this.#stopped || this.#failure !== null) { return }
      this.#core.tick()
      this.#readyLoop.request()
    }, this.#options.tickIntervalMs ?? PBFT_TICK_INTERVAL_MS)
    this.#readyLoop.request()
  }

  /** Stops ticking and taking Readies at once; resolves when the Ready in progress, checkpoint encoding and snapshot writes are over. */
  async stop (): Promise<void> {
    this.#stopped = true
    this.#cancelTick?.()
    this.#cancelTick = null
    while (this.#readyLoop.running) { await new Promise<void>(resolve => { this.#runtime.setTimeout(resolve, 5) }) }
    await this.#checkpointsEncoding
    await this.#snapshotsSaving
    await this.#blocklistSaving
  }

  /**
   * A message from the transport, on the authenticated link `link`: replica
   * messages go to the core; ordered requests to core.request (or, already
   * executed, get their last reply again); read-only requests are executed
   * at once against the state machine and answered (reads only).
   */
  receive (message: PbftMessage, link: NodeId): StepResult {
    if (this.#stopped || this.#failure !== null) { return { ok: false, reason: 'stale', detail: 'the replica is stopped' } }
    let result: StepResult
    if (message.type === 'reply') {
      result = { ok: false, reason: 'malformed', detail: 'a reply is for clients, not replicas' }
    } else if (message.type === 'request') {
      result = message.readOnly ? this.#serveReadOnly(message) : this.#request(message)
    } else {
      result = this.#core.step(message, link)
    }
    this.#rejected(result)
    this.#readyLoop.request()
    return result
  }

  receiveEvidence (evidence: Evidence): StepResult {
    if (this.#stopped || this.#failure !== null) { return { ok: false, reason: 'stale', detail: 'the replica is stopped' } }
    const result = this.#core.receiveEvidence(evidence)
    if (result.ok) { this.#options.metrics?.onEvidence?.('received') }
    this.#rejected(result)
    this.#readyLoop.request()
    return result
  }

  /** Answers a peer's fetchState from the snapshot this replica keeps at `seq`, if any. */
  serveState (seq: number): Uint8Array | null {
    if (this.#stable?.checkpoint.seq === seq) { return this.#stable.data }
    return this.#checkpoints.get(seq)?.data ?? null
  }

  status (): PbftStatus {
    return this.#core.status()
  }

  /** The DKG group for compact checkpoint certificates, or null (PbftReplica.setThresholdGroup). */
  setThresholdGroup (group: PbftThresholdGroup | null): void {
    this.#core.setThresholdGroup(group)
  }

  /** The core's replica sets, cheaply (PbftReplica.replicaSets): for callers that look often, such as connection events. */
  replicaSets (): ReturnType<PbftReplica['replicaSets']> {
    return this.#core.replicaSets()
  }

  /** The highest seq whose batch was executed on this replica's state machine (the core's status().executed counts batches handed out, which may still wait for a write). */
  get executed (): number {
    return this.#executed
  }

  /**
   * The connection to `peer` closed (no connection left) or opened: the
   * core starts a view change at once when the primary's link is down while
   * requests wait (PbftReplica.linkDown), instead of after its request timer.
   */
  linkDown (peer: NodeId): void {
    if (this.#stopped || this.#failure !== null) { return }
    if (this.#core.linkDown(peer)) { this.#readyLoop.request() }
  }

  linkUp (peer: NodeId): void {
    if (this.#stopped || this.#failure !== null) { return }
    this.#core.linkUp(peer)
  }

  /** Isolation decided outside the core (operator). */
  isolate (peer: NodeId): void {
    this.#core.isolate(peer, 'operator')
    this.#readyLoop.request()
  }

  /** An operator takes `peer` off the blocklist (durably); false if it was not on it. */
  async readmit (peer: NodeId): Promise<boolean> {
    const readmitted = this.#core.readmit(peer)
    const at = this.#isolated.findIndex(i => i.peer === peer)
    if (at >= 0) { this.#isolated.splice(at, 1) }
    if (!readmitted && at < 0) { return false }
    this.#options.log.warn({ peer }, 'pbft: peer readmitted by an operator')
    await this.#saveBlocklist()
    this.#readyLoop.request()
    return true
  }

  /** Writes the blocklist as it is now, one write at a time (each replaces the file whole). */
  async #saveBlocklist (): Promise<void> {
    const saved = this.#blocklistSaving.then(async () => { await this.#options.store.saveIsolated([...this.#isolated]) })
    this.#blocklistSaving = saved.catch(() => {})
    await saved
  }

  #request (request: ClientRequest): StepResult {
    const last = this.#lastReplies.get(request.client)
    if (last !== undefined && request.timestamp <= last.timestamp) {
      if (request.timestamp < last.timestamp) { return { ok: false, reason: 'stale', detail: `client ${request.client} already has a reply for timestamp ${last.timestamp}` } }
      // executed already: the client missed the reply
      this.#options.transport.send(request.client, last.reply)
      return { ok: true }
    }
    return this.#core.request(request)
  }

  /**
   * The read-only optimisation: a get answered from this replica's state,
   * unordered, once that state reflects every batch this replica had
   * prepared when the request arrived (Castro and Liskov, TOCS 2002,
   * 5.1.3). A write that completed (f+1 replies) was prepared by at least
   * f+1 honest replicas first, and the client's quorum of matching replies
   * includes one of them, so the read sees the write. Answered at once from
   * the executed state, a quorum of lagging replicas (and a Byzantine one
   * that executed the write, whose reply completed it) could return a value
   * older than a completed write: the simulator found exactly that.
   */
  #serveReadOnly (request: ClientRequest): StepResult {
    if (!verifyRequest(request, this.#options.crypto)) {
      return { ok: false, reason: 'bad-signature', detail: 'read-only request' }
    }
    const decoded = decodeOperation(request.operation)
    if (!decoded.ok || decoded.operation.type !== 'get') {
      const message = decoded.ok ? `a ${decoded.operation.type} operation cannot be read-only` : decoded.error
      this.#options.transport.send(request.client, this.#reply(request, this.#core.status().view, { type: 'invalid', message }, true))
      return { ok: false, reason: 'malformed', detail: message }
    }
    if (this.#readOnly.length >= this.#limits.readOnlyWaitingMax) { return { ok: false, reason: 'buffer-full', detail: 'too many read-only requests waiting' } }
    // what this replica prepared is known once the Readies it has are taken (see #answerReadOnly)
    this.#readOnly.push({ request, key: decoded.operation.key, until: null })
    return { ok: true }
  }

  /** Answers the read-only requests whose wait is over; those that arrived since the last call wait for what is prepared now. */
  #answerReadOnly (): void {
    if (this.#readOnly.length === 0) { return }
    const view = this.#core.status().view
    const waiting: ReadOnlyWaiter[] = []
    for (const waiter of this.#readOnly) {
      waiter.until ??= this.#prepared
      if (waiter.until > this.#executed) {
        waiting.push(waiter)
        continue
      }
      this.#options.transport.send(waiter.request.client, this.#reply(waiter.request, view, { type: 'value', value: this.kv.get(waiter.key) }, true))
    }
    this.#readOnly = waiting
  }

  #reply (request: ClientRequest, view: number, result: PbftResult, readOnly: boolean): Reply {
    return { type: 'reply', view, replica: this.id, client: request.client, timestamp: request.timestamp, readOnly, result: encodeResult(result) }
  }

  #rejected (result: StepResult): void {
    if (!result.ok) { this.#options.metrics?.onRejected?.(result.reason) }
  }

  async #processReadies (): Promise<void> {
    this.#installFetchedState()
    this.#reportCheckpoints()
    while (!this.#stopped && this.#failure === null && this.#core.hasReady()) {
      const ready = this.#core.ready()
      this.#prepared = Math.max(this.#prepared, preparedSeq(ready.persist))
      // 1. durable before anything of this Ready leaves; a newly stable
      // checkpoint's snapshot before the record that says this replica holds
      // that state (a restart from the record alone would have no state)
      if (ready.stable !== null) { await this.#stableCheckpoint(ready.stable) }
      if (ready.persist.length > 0) { await this.#options.store.append(ready.persist) }
      if (this.#stopped) { return }
      // 2. send
      for (const outbound of ready.messages) { this.#send(outbound) }
      // 3. execute, reply, snapshot at due checkpoints
      for (const seq of ready.checkpointsDue) { this.#checkpointsDue.add(seq) }
      for (const batch of ready.execute) { this.#execute(batch) }
      // a checkpoint due at a seq executed before it was announced
      if (this.#checkpointsDue.has(this.#executed)) { this.#takeCheckpoint() }
      // 4. evidence, isolations, state wanted
      this.#afterReady(ready)
      // 5.
      this.#core.advance()
      this.#reportCheckpoints()
      this.#observeView()
      this.#installFetchedState()
      this.#answerReadOnly()
    }
    if (!this.#stopped) { this.#answerReadOnly() }
  }

  #execute (batch: ExecutableBatch): void {
    // covered by a state installed meanwhile
    if (batch.seq <= this.#executed) { return }
    if (batch.seq !== this.#executed + 1) { throw new Error(`pbft: batch ${batch.seq} handed to execute after ${this.#executed}`) }
    for (const [i, request] of batch.requests.entries()) {
      const reconfiguration = batch.reconfigurations?.find(outcome => outcome.index === i)
      const result = reconfiguration === undefined ? this.#executeRequest(request) : this.#executeReconfiguration(reconfiguration)
      const reply = this.#reply(request, batch.view, result, false)
      // a late copy of an older request must not displace the reply to a newer one
      if (request.timestamp > (this.#lastReplies.get(request.client)?.timestamp ?? -1)) { this.#remember(request.client, { timestamp: request.timestamp, reply }) }
      this.#options.transport.send(request.client, reply)
    }
    this.#executed = batch.seq
    this.#options.metrics?.onExecuted?.(batch.requests.length, batch)
    if (this.#checkpointsDue.has(batch.seq)) { this.#takeCheckpoint() }
  }

  /**
   * Every request takes the next KV index, whatever it is, so that the KV
   * state (and its snapshot) is identical on every replica at every seq.
   */
  #executeRequest (request: ClientRequest): PbftResult {
    const index = this.kv.appliedIndex + 1
    const decoded = decodeOperation(request.operation)
    if (!decoded.ok) {
      this.kv.skip(index)
      return { type: 'invalid', message: decoded.error }
    }
    const { operation } = decoded
    switch (operation.type) {
      case 'kv':
        if (operation.command.key === PBFT_CONFIGURATION_KEY) {
          this.kv.skip(index)
          return { type: 'invalid', message: 'the configuration key is written by reconfigurations only' }
        }
        if (!Number.isSafeInteger(request.timestamp) || request.timestamp < 1) {
          this.kv.skip(index)
          return { type: 'invalid', message: `timestamp ${request.timestamp} cannot be a KV session sequence` }
        }
        return kvResult(this.kv.apply(index, encodeCommand(sessionCommand(operation.command, request))))
      case 'get':
        this.kv.skip(index)
        return { type: 'value', value: this.kv.get(operation.key) }
      case 'null':
        this.kv.skip(index)
        return { type: 'null' }
      default:
        return unreachable(operation)
    }
  }

  /**
   * The core accepted or refused a reconfiguration request. An accepted one
   * is written into the state, so that checkpoint digests cover it and a
   * snapshot or a state transfer brings it; under a session of its own per
   * epoch (sequence 1), so no client session can make it stale.
   */
  #executeReconfiguration (outcome: ReconfigurationOutcome): PbftResult {
    const index = this.kv.appliedIndex + 1
    if (!outcome.ok) {
      this.kv.skip(index)
      return { type: 'invalid', message: outcome.error }
    }
    const { latest } = outcome.state
    const applied = this.kv.apply(index, encodeCommand({
      type: 'put', key: PBFT_CONFIGURATION_KEY, value: encodeConfiguration(outcome.state), session: { clientId: `\u0000accord/pbft/epoch/${latest.epoch}`, sequence: 1 }
    }))
    if (!applied.ok) {
      // the same on every replica (a full store): the set still changes, but a restart from a snapshot would not know it
      this.#options.log.error({ epoch: latest.epoch, reason: applied.reason }, 'pbft: the new configuration could not be written into the state')
    }
    this.#options.log.warn({ epoch: latest.epoch, replicas: latest.replicas, afterSeq: latest.afterSeq }, 'pbft: reconfiguration decided')
    return { type: 'configured', epoch: latest.epoch, afterSeq: latest.afterSeq }
  }

  /** Keeps a client's last reply, within lastRepliesMax replies and lastRepliesBytesMax bytes of results (least recent go first). */
  #remember (client: NodeId, last: LastReply): void {
    const previous = this.#lastReplies.get(client)
    if (previous !== undefined) { this.#lastRepliesBytes -= previous.reply.result.byteLength }
    this.#lastReplies.delete(client)
    this.#lastReplies.set(client, last)
    this.#lastRepliesBytes += last.reply.result.byteLength
    for (const [oldest, kept] of this.#lastReplies) {
      if (this.#lastReplies.size <= this.#limits.lastRepliesMax && this.#lastRepliesBytes <= this.#limits.lastRepliesBytesMax) { break }
      this.#lastReplies.delete(oldest)
      this.#lastRepliesBytes -= kept.reply.result.byteLength
    }
  }

  /**
   * Snapshots the state at the seq just executed: the encoder works on a
   * copy-on-write clone of this moment, in slices (a large store would
   * otherwise stop the event loop for seconds), while later batches execute.
   */
  #takeCheckpoint (): void {
    const seq = this.#executed
    this.#checkpointsDue.delete(seq)
    const encoder = this.kv.beginSnapshot()
    const encoding = this.#checkpointsEncoding.then(async () => { await this.#encodeCheckpoint(seq, encoder) })
    this.#checkpointsEncoding = encoding.catch(err => { this.#fail(err as Error) })
  }

  async #encodeCheckpoint (seq: number, encoder: KvSnapshotEncoder): Promise<void> {
    const encoded = await inSlices(this.#runtime, workBytes => encoder.encodeSome(workBytes), () => this.#stopped || this.#failure !== null)
    // a state installed meanwhile at or past seq: the core no longer wants this one
    if (!encoded || (this.#stable !== null && this.#stable.checkpoint.seq >= seq)) { return }
    const data = encoder.result()
    const digest = this.#options.crypto.digest(data)
    this.#checkpoints.set(seq, { digest, data })
    this.#checkpointsEncoded.push({ seq, digest })
    this.#readyLoop.request()
  }

  /** Tells the core the digests of the checkpoints encoded; only between two Readies, as the core requires. */
  #reportCheckpoints (): void {
    if (this.#checkpointsEncoded.length === 0 || this.#stopped || this.#failure !== null) { return }
    for (const { seq, digest } of this.#checkpointsEncoded.splice(0)) { this.#core.checkpointTaken(seq, digest) }
  }

  #afterReady (ready: PbftReady): void {
    for (const evidence of ready.evidence) {
      this.#options.metrics?.onEvidence?.('produced')
      this.#options.log.warn({ offender: evidence.offender, kind: evidence.kind }, 'pbft: evidence of misbehaviour produced')
      this.#options.publishEvidence?.(evidence)
    }
    if (ready.isolated.length > 0) {
      for (const isolation of ready.isolated) {
        if (!this.#isolated.some(i => i.peer === isolation.peer)) { this.#isolated.push(isolation) }
        this.#options.log.warn({ peer: isolation.peer, reason: isolation.reason }, 'pbft: peer isolated')
        this.#options.onIsolated?.(isolation)
      }
      this.#saveBlocklist().catch(err => { this.#fail(err as Error) })
    }
    if (ready.stateWanted !== null) { this.#want(ready.stateWanted) }
    if (ready.configuration !== null) {
      const { epoch, replicas } = ready.configuration
      this.#options.log.warn({ epoch, replicas, member: replicas.includes(this.id) }, 'pbft: a new replica set is in force')
      this.#options.onConfiguration?.(ready.configuration)
    }
  }

  /** A checkpoint the core made stable: its snapshot (taken when it was due, or installed) is stored. */
  async #stableCheckpoint (checkpoint: StableCheckpoint): Promise<void> {
    this.#options.metrics?.onCheckpoint?.(checkpoint.seq, this.#executed)
    for (const seq of this.#checkpointsDue) { if (seq <= checkpoint.seq) { this.#checkpointsDue.delete(seq) } }
    const kept = this.#checkpoints.get(checkpoint.seq)
    for (const seq of this.#checkpoints.keys()) { if (seq <= checkpoint.seq) { this.#checkpoints.delete(seq) } }
    if (this.#stable !== null && this.#stable.checkpoint.seq >= checkpoint.seq) { return }
    if (kept === undefined) {
      this.#options.log.error({ seq: checkpoint.seq }, 'pbft: a checkpoint became stable without a snapshot of its state here')
      return
    }
    if (kept.digest !== checkpoint.stateDigest) {
      // a quorum proved another state at this seq: this replica's state went wrong
      throw new Error(`pbft: checkpoint ${checkpoint.seq} is stable with state digest ${checkpoint.stateDigest}, this replica computed ${kept.digest}`)
    }
    this.#stable = { checkpoint, data: kept.data }
    await this.#saveSnapshot(checkpoint, kept.data)
  }

  /** Stores snapshots one at a time, never one older than the last stored. */
  async #saveSnapshot (checkpoint: StableCheckpoint, data: Uint8Array): Promise<void> {
    const saving = this.#snapshotsSaving.then(async () => {
      if (checkpoint.seq <= this.#savedSnapshotSeq) { return }
      await this.#options.store.saveSnapshot(checkpoint, data)
      this.#savedSnapshotSeq = checkpoint.seq
    })
    this.#snapshotsSaving = saving.catch(() => {})
    await saving
  }

  #want (wanted: StateWanted): void {
    if (this.#wanted !== null && this.#wanted.checkpoint.seq >= wanted.checkpoint.seq) { return }
    this.#wanted = wanted
    if (!this.#fetching) { this.#fetchState().catch(err => { this.#fail(err as Error) }) }
  }

  /**
   * Asks the holders of the wanted checkpoint for its state, one after the
   * other from a random one, until one sends bytes with the proven digest;
   * tries again later if none does. A newer wanted checkpoint replaces the
   * one being fetched.
   */
  async #fetchState (): Promise<void> {
    this.#fetching = true
    try {
      while (!this.#stopped && this.#failure === null && this.#wanted !== null) {
        const wanted = this.#wanted
        const { checkpoint } = wanted
        if (checkpoint.seq <= this.#executed) {
          this.#wanted = null
          return
        }
        const holders = wanted.holders.filter(h => h !== this.id)
        const first = holders.length === 0 ? 0 : this.#runtime.seed() % holders.length
        let fetched: Uint8Array | null = null
        for (let i = 0; i < holders.length && fetched === null; i++) {
          const holder = holders[(first + i) % holders.length]
          const data = await this.#options.transport.fetchState(holder, checkpoint.seq).catch(() => null)
          if (this.#stopped || this.#wanted !== wanted) { break }
          if (data === null) { continue }
          if (this.#options.crypto.digest(data) !== checkpoint.stateDigest) {
            this.#options.log.warn({ holder, seq: checkpoint.seq }, 'pbft: a fetched state does not match its proven digest')
            continue
          }
          fetched = data
        }
        if (this.#wanted !== wanted) { continue }
        if (fetched !== null) {
          this.#wanted = null
          // durable before the core learns it is installed
          await this.#saveSnapshot(checkpoint, fetched)
          this.#toInstall = { checkpoint, data: fetched }
          this.#readyLoop.request()
          // a later checkpoint wanted while the snapshot was saved: fetch that one too
          continue
        }
        await new Promise<void>(resolve => { this.#runtime.setTimeout(resolve, STATE_FETCH_RETRY_TICKS * (this.#options.tickIntervalMs ?? PBFT_TICK_INTERVAL_MS)) })
      }
    } finally {
      this.#fetching = false
    }
  }

  /** Installs a fetched state; runs only between Readies, so no batch executes on a state being replaced. */
  #installFetchedState (): void {
    const install = this.#toInstall
    if (install === null || this.#stopped) { return }
    this.#toInstall = null
    const { checkpoint, data } = install
    if (checkpoint.seq <= this.#executed) { return }
    const restored = this.kv.restore(data)
    if (!restored.ok) { throw new Error(`pbft: the state proven at seq ${checkpoint.seq} does not restore: ${restored.error}`) }
    this.#executed = checkpoint.seq
    for (const seq of this.#checkpoints.keys()) { if (seq <= checkpoint.seq) { this.#checkpoints.delete(seq) } }
    for (const seq of this.#checkpointsDue) { if (seq <= checkpoint.seq) { this.#checkpointsDue.delete(seq) } }
    if (this.#stable === null || this.#stable.checkpoint.seq < checkpoint.seq) { this.#stable = { checkpoint, data } }
    this.#options.log.info({ seq: checkpoint.seq }, 'pbft: state installed from a stable checkpoint')
    this.#core.stateInstalled(checkpoint, configurationIn(this.kv))
    this.#options.metrics?.onStateInstalled?.(checkpoint.seq)
  }

  #observeView (): void {
    const { view } = this.#core.status()
    if (view === this.#view) { return }
    this.#view = view
    this.#options.log.info({ view, primary: this.#core.status().primary }, 'pbft: view changed')
    this.#options.metrics?.onViewChange?.(view)
  }

  /** A storage failure leaves the core ahead of the disk: nothing safe can follow, so this replica stops. */
  #fail (err: Error): void {
    if (this.#failure !== null) { return }
    this.#failure = err
    this.#cancelTick?.()
    this.#cancelTick = null
    this.#options.log.fatal({ err }, 'pbft replica stopped')
  }

  /** The failure that stopped this replica, if any. */
  get failure (): Error | null {
    return this.#failure
  }
}

/** Where the state machine keeps the configuration state (reconfiguration.ts): snapshots and state transfer carry it. */
export const PBFT_CONFIGURATION_KEY = '\u0000accord/pbft/configuration'

/** The configuration state a KV state holds; undefined: the genesis set. */
export function configurationIn (kv: KvStateMachine): ConfigurationState | undefined {
  const bytes = kv.get(PBFT_CONFIGURATION_KEY)
  if (bytes === null) { return undefined }
  const decoded = decodeConfiguration(bytes)
  if (!decoded.ok) { throw new Error(`pbft: the configuration in the state does not decode: ${decoded.error}`) }
  return decoded.state
}

function configurationOption (state: ConfigurationState | undefined): { configuration?: ConfigurationState } {
  return state === undefined ? {} : { configuration: state }
}
