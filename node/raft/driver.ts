/**
 * Drives the I/O-free Raft core: a tick timer, inbound messages, and the
 * Ready loop (persist, then send, then apply, then advance), plus the
 * replicated state machine on top (the KV store in production, see
 * kv-application.ts). Everything with I/O is handed in: the log store
 * (fsync), the outbox (libp2p), the state machine, and the runtime (clock,
 * timers, randomness), so the simulator (test/sim) runs this very driver in
 * virtual time.
 *
 * Proposals wait for their entry to be applied; an entry applied at their
 * index with another term means the proposal was lost to a leader change,
 * and the caller may retry with the same client session (exactly once).
 */
import { assert } from '../../protocols/common/assert.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { kvSnapshotBytesMax, resolveKvLimits } from '../../protocols/kv/index.ts'
import { RAFT_DEFAULTS, RaftNode, RestoredStateError } from '../../protocols/raft/index.ts'
import { CoalescedPass, inSlices, SLICE_MS, TimerLateness } from '../driver-scheduling.ts'
import { systemRuntime } from '../runtime.ts'
import { FollowerSilence } from './follower-silence.ts'
import { StoredStateError } from './storage/errors.ts'
import type { KvCommand, KvLimits, KvStateMachine } from '../../protocols/kv/index.ts'
import type { ConfChange, ConfState, Entry, HardState, Message, RaftStatus, Ready, ReadState, RestoredState, Snapshot, SnapshotMessage } from '../../protocols/raft/index.ts'
import type { DriverRuntime } from '../runtime.ts'
import type { Logger } from 'pino'

/** Where the driver makes Ready state durable. */
export interface RaftLogStore {
  persist(update: { hardState?: HardState, entries: Entry[], snapshot?: Snapshot, mustSync: boolean }): Promise<void>
  /** A snapshot taken locally (compaction): store it, then drop entries up to its index. */
  /** Resolves true once stored, false if a newer snapshot (from the leader) was stored meanwhile. */
  saveSnapshot(snapshot: Snapshot): Promise<boolean>
}

/** Where the driver sends messages; sending never blocks and may drop. */
export interface RaftOutbox {
  send(to: string, message: Message): void
  /**
   * `to` has not answered this leader for a check-quorum period: drop the
   * streams to and from it, so the next message opens a new one (see
   * FollowerSilence). Optional: an outbox without streams has none to drop.
   */
  resetPeer?(to: string): void
}

export interface RaftDriverMetrics {
  onProposal?(): void
  onCommit?(entries: number): void
  /** The term advanced: an election was held (won or not). */
  onElection?(): void
  onLeaderChange?(leader: string | null): void
  /** Every connection to the leader closed and this follower stopped waiting for it. */
  onLeaderConnectionLost?(): void
  /** This leader dropped its streams to and from a follower that stopped answering (see FollowerSilence). */
  onSilentFollower?(): void
  /** A snapshot from the network failed its check and was dropped (see RaftDriver.step). */
  onSnapshotRejected?(): void
}

/**
 * What the driver needs of the replicated state machine: KvStateMachine is
 * one. Entries are applied in index order, each exactly once.
 */
export interface RaftStateMachine {
  /** The index of the last entry applied or skipped; 0 initially. */
  readonly appliedIndex: number
  /** Applies a normal entry; what it returns is what the entry's proposal resolves with. */
  apply(index: number, data: Uint8Array): unknown
  /** Moves past an entry that is not for the state machine (a membership change). */
  skip(index: number): void
  /** Starts checking a snapshot (from the network, or restored), decoded step by step, independently of the state. */
  checkSnapshot(data: Uint8Array): StateMachineSnapshotCheck
  /** Starts encoding the state as of now, step by step, while entries go on being applied. */
  beginSnapshot(): StateMachineSnapshotEncoder
}

export interface StateMachineSnapshotCheck {
  /** Decodes about `workBytes` more; true once result() may be called. */
  decodeSome(workBytes: number): boolean
  /** Whether the snapshot may be installed, and the index it reflects. */
  result(): { ok: true, appliedIndex: number } | { ok: false, error: string }
  /** Replaces the whole state with the checked snapshot's (only after result() was ok). */
  install(): void
}

export interface StateMachineSnapshotEncoder {
  /** The index of the state being encoded. */
  readonly appliedIndex: number
  /** Encodes about `workBytes` more; true once result() may be called. */
  encodeSome(workBytes: number): boolean
  result(): Uint8Array
}

/** What applying an entry of `SM` returns, which its proposal resolves with. */
export type AppliedResult<SM extends RaftStateMachine> = ReturnType<SM['apply']>

/** A proposed command, checked and encoded as an entry's data, or why it cannot be proposed. */
export type EncodedCommand = { ok: true, data: Uint8Array } | { ok: false, message: string }

/** The application a driver replicates: its state machine and how its commands become entries. */
export interface RaftApplication<SM extends RaftStateMachine, C> {
  /** A fresh state machine: create() restores the stored snapshot into it. */
  stateMachine: SM
  /** Checks a proposed command and encodes it; a refusal is thrown as RaftError 'invalid'. */
  encodeCommand(command: C): EncodedCommand
}

/**
 * Sees what the driver does, for the simulator's invariant checks; a
 * production node passes none.
 */
export interface RaftDriverObserver {
  /** Every Ready, as the core hands it out, before any of it is acted on. */
  ready?(ready: Ready): void
  /** The core refused a message as malformed (what no correct peer sends). */
  rejected?(message: Message, detail: string | undefined): void
  /** Raft stopped on an error (see RaftDriver's #fail): a storage failure, or a broken assertion. */
  failed?(err: Error): void
}

export interface RaftDriverOptions<SM extends RaftStateMachine = KvStateMachine, C = KvCommand> extends RaftApplication<SM, C> {
  id: string
  store: RaftLogStore
  outbox: RaftOutbox
  /** Clock, timers and randomness (default systemRuntime). */
  runtime?: DriverRuntime
  restored: RestoredState
  /** Set only when creating a brand-new cluster (the first node). */
  bootstrapConf?: ConfState
  /** Where `store` keeps its files, named in the error when the restored state cannot be started from. */
  storageDir?: string
  tickIntervalMs: number
  electionTimeoutTicks: number
  /** A leader steps down after this long without hearing from a quorum (default: electionTimeoutTicks; see RaftConfig). */
  checkQuorumTicks?: number
  heartbeatIntervalTicks: number
  /** 'lease' trusts the leader's lease (clock assumptions); 'safe' is ReadIndex. */
  readOnlyMode: 'safe' | 'lease'
  /**
   * Take a snapshot and compact once this many entries were applied since
   * the last one, and at least as many bytes of entries as the last
   * snapshot held: encoding a snapshot costs in proportion to the state, so
   * a large state is snapshotted less often, and the work stays in
   * proportion to what was written (the log in memory stays under about
   * max(this many entries, the size of the state)).
   */
  snapshotEveryEntries: number
  /**
   * Snapshot anyway once the entries applied since the last snapshot hold
   * this many bytes (default SNAPSHOT_LOG_BYTES_MAX): the log lives in
   * memory, and large values would otherwise let it grow to
   * snapshotEveryEntries times the largest proposal.
   */
  snapshotLogBytesMax?: number
  /**
   * Snapshot encoding and restoring yield to the event loop after this long
   * (default SLICE_MS, node/driver-scheduling.ts); 0 yields after every step.
   */
  snapshotSliceMs?: number
  /** Promote learners automatically once they have caught up (leader only). */
  autoPromoteLearners: boolean
  /**
   * Whether the membership protocol sees `peer` alive (default: always):
   * a learner that failure detection holds suspect or dead is not promoted,
   * even if its last append succeeded.
   */
  isAlive?(peer: string): boolean
  log: Logger
  metrics?: RaftDriverMetrics
  observer?: RaftDriverObserver
}

/** Applied entry bytes since the last snapshot that force the next one (see snapshotLogBytesMax). */
export const SNAPSHOT_LOG_BYTES_MAX = 256 * 1024 * 1024

export class RaftError extends Error {
  /** 'not-formed': the node waits for its initial cluster (see RaftInit.initialCluster in service.ts). */
  readonly code: 'not-leader' | 'no-leader' | 'not-formed' | 'busy' | 'retry' | 'invalid' | 'stopped' | 'timeout'
  readonly leader: string | null
  constructor (code: RaftError['code'], message: string, leader: string | null = null) {
    super(message)
    this.name = 'RaftError'
    this.code = code
    this.leader = leader
  }
}

/** Messages only a leader sends, to replicate its log. */
const LEADER_MESSAGES: ReadonlySet<Message['type']> = new Set(['append', 'heartbeat'])

/** What the driver did with snapshots that arrived from the network (see RaftDriver.step). */
export interface SnapshotCheckStats {
  /** Passed their check and went on to the core. */
  passed: number
  /** Failed it (malformed, other KV limits, wrong index): dropped and logged. */
  rejected: number
  /** Arrived while another was being checked: dropped (the leader sends it again). */
  dropped: number
}

/** A snapshot from the network being checked, in slices (see #checkSnapshot). */
interface SnapshotInCheck {
  message: SnapshotMessage
  check: StateMachineSnapshotCheck
  /** Another took its place (the leader's, while this one is from elsewhere). */
  abandoned: boolean
}

/** Waiting proposals and reads are bounded: beyond these, requests get 'busy'. */
export const PENDING_PROPOSALS_MAX = 16_384
export const PENDING_READS_MAX = 4096

interface ProposalWaiter<R> {
  term: number
  /** null: the entry was not for the state machine (a membership change). */
  resolve(result: R | null): void
  reject(err: RaftError): void
}

interface AppliedWaiter {
  index: number
  resolve(): void
  reject(err: RaftError): void
}

interface ReadWaiter {
  resolve(index: number): void
  reject(err: RaftError): void
}

export class RaftDriver<SM extends RaftStateMachine = KvStateMachine, C = KvCommand> {
  readonly id: string
  readonly stateMachine: SM
  readonly #core: RaftNode
  readonly #options: RaftDriverOptions<SM, C>
  readonly #runtime: DriverRuntime
  readonly #proposals = new Map<number, ProposalWaiter<AppliedResult<SM>>>()
  readonly #reads = new Map<string, ReadWaiter>()
  /** Reads whose index is known, waiting for apply to catch up. */
  #appliedWaiters: AppliedWaiter[] = []
  #readCounter = 0n
  /**
   * The second half of every read context: a response to a read of an
   * earlier incarnation of this node (whose counter started at 1 too) never
   * matches one of this incarnation.
   */
  readonly #readNonce = new Uint8Array(8)
  #stopTicking: (() => void) | undefined
  /** How late our own ticks come: the local health the core's elections heed (see RaftNode.setLocalHealth). */
  #tickLateness: TimerLateness | undefined
  /** The Ready loop: one pass at a time, triggers coalesced. */
  readonly #readyLoop: CoalescedPass
  #stopped = false
  #failure: Error | null = null
  #lastSnapshotIndex: number
  #lastSnapshotBytes: number
  /** Bytes of entry data applied since the last snapshot. */
  #appliedBytesSinceSnapshot = 0
  #leader: string | null = null
  #term = 0
  /** Term and vote as last made durable. */
  #durableVote: { term: number, vote: string | null }
  /** Learners being promoted (one change at a time). */
  #promoting: string[] | null = null
  #leaderTenure = new AbortController()
  /** The local snapshot in progress (encode in the background, compact, save); one at a time. */
  #snapshotTask: Promise<void> | null = null
  /** Work that must run between two Readies (none outstanding); see #betweenReadies. At most one: only the snapshot task, one at a time, adds to it. */
  #betweenReadiesQueue: Array<() => void> = []
  /** Counts snapshots installed from the leader: a local snapshot begun before one is abandoned. */
  #installedSnapshots = 0
  /** The snapshot from the network being checked; one at a time. */
  #checking: SnapshotInCheck | null = null
  /** A checked snapshot while it is stepped into the core (the core's checkSnapshot hook approves it alone). */
  #stepping: SnapshotInCheck | null = null
  /** The checked snapshot the core took to install: the next Ready carries it, and it is installed from its check. */
  #approved: SnapshotInCheck | null = null
  readonly #snapshotChecks: SnapshotCheckStats = { passed: 0, rejected: 0, dropped: 0 }
  readonly #followerSilence: FollowerSilence
  /** Counts changes of the leader or the configuration (see configurationVersion). */
  #configurationVersion = 0

  private constructor (options: RaftDriverOptions<SM, C>, runtime: DriverRuntime) {
    this.id = options.id
    this.stateMachine = options.stateMachine
    this.#options = options
    this.#runtime = runtime
    this.#readyLoop = new CoalescedPass(runtime, async () => { await this.#processReadies() }, err => { this.#fail(err) }, () => !this.#stopped && this.#failure == null)
    const nonce = new DataView(this.#readNonce.buffer)
    nonce.setUint32(0, runtime.seed())
    nonce.setUint32(4, runtime.seed())
    this.#lastSnapshotIndex = options.restored.snapshot?.meta.index ?? 0
    this.#lastSnapshotBytes = options.restored.snapshot?.data.byteLength ?? 0
    this.#term = options.restored.hardState.term
    this.#durableVote = { term: options.restored.hardState.term, vote: options.restored.hardState.vote }
    this.#followerSilence = new FollowerSilence(options.checkQuorumTicks ?? options.electionTimeoutTicks)
    this.#core = new RaftNode({
      id: options.id,
      rng: createRng(runtime.seed()),
      electionTimeoutTicks: options.electionTimeoutTicks,
      checkQuorumTicks: options.checkQuorumTicks,
      heartbeatIntervalTicks: options.heartbeatIntervalTicks,
      readOnlyMode: options.readOnlyMode,
      // only snapshots checked in full beforehand are installed (see step())
      checkSnapshot: snapshot => {
        if (this.#stepping?.message.snapshot.data !== snapshot.data) { return 'not checked by the driver' }
        this.#approved = this.#stepping
        return null
      }
    }, options.restored, options.bootstrapConf)
  }

  /**
   * Rebuild the state machine from the restored snapshot and create the
   * core. A restored state the node cannot start from (a snapshot that does
   * not restore, a log the core refuses) throws StoredStateError, which
   * names the storage directory and what to do.
   */
  static create<SM extends RaftStateMachine, C> (options: RaftDriverOptions<SM, C>): RaftDriver<SM, C> {
    const dir = options.storageDir ?? 'the raft storage directory'
    const snapshot = options.restored.snapshot
    if (snapshot != null && snapshot.data.byteLength > 0) {
      const restore = options.stateMachine.checkSnapshot(snapshot.data)
      while (!restore.decodeSome(Infinity)) { /* at start-up, in one go */ }
      const problem = snapshotProblem(restore.result(), snapshot)
      if (problem != null) { throw new StoredStateError(dir, `the stored snapshot at index ${snapshot.meta.index} does not restore (${problem})`) }
      restore.install()
    }
    try {
      return new RaftDriver(options, options.runtime ?? systemRuntime)
    } catch (err) {
      if (err instanceof RestoredStateError) { throw new StoredStateError(dir, err.message) }
      throw err
    }
  }

  /**
   * The largest snapshot a driver with these KV limits takes (see
   * kvSnapshotBytesMax): what the transport that carries its snapshots must
   * accept.
   */
  static snapshotBytesMax (kvLimits: Partial<KvLimits> = {}): number {
    return kvSnapshotBytesMax(resolveKvLimits(kvLimits))
  }

  /** The state machine under the name the KV service uses (the service replicates a KvStateMachine). */
  get kv (): SM {
    return this.stateMachine
  }

  start (): void {
    const lateness = this.#tickLateness = new TimerLateness(this.#options.tickIntervalMs, RAFT_DEFAULTS.localHealthScoreMax, this.#runtime.now())
    this.#stopTicking = this.#runtime.setInterval(() => {
      this.#core.setLocalHealth(lateness.fired(this.#runtime.now()))
      // a lag of half an election timeout can cost the leadership (of this node, or the one it follows)
      if (lateness.lateMs >= this.#options.tickIntervalMs * this.#options.electionTimeoutTicks / 2) {
        this.#options.log.warn({ lateMs: Math.round(lateness.lateMs), localHealth: lateness.score }, 'raft tick came late: the event loop lagged')
      }
      this.#core.tick()
      const status = this.#core.status()
      this.#resetSilentFollowers(status)
      this.#promoteCaughtUpLearners(status)
      this.#readyLoop.request()
    }, this.#options.tickIntervalMs)
    this.#readyLoop.request()
  }

  /**
   * Changes whenever the leader or the configuration may have changed: who
   * caches either (the Raft peer filter) reads them again when it differs.
   */
  get configurationVersion (): number {
    return this.#configurationVersion
  }

  /** 0 while this node's ticks come on time; up to 8 while its event loop lags (see TimerLateness). */
  get localHealthScore (): number {
    return this.#tickLateness?.score ?? 0
  }

  async stop (): Promise<void> {
    this.#stopped = true
    this.#stopTicking?.()
    this.#failWaiters(new RaftError('stopped', 'the node is stopping'))
    this.#runBetweenReadies()
    while (this.#readyLoop.running) { await new Promise<void>(resolve => { this.#runtime.setTimeout(resolve, 5) }) }
    await this.#snapshotTask
  }

  /**
   * An inbound message from the transport (already decoded and validated).
   *
   * A snapshot that the core would install is first checked in full (KV
   * format, checksum, this store's limits, and that it reflects the index it
   * claims), in slices, while the node goes on working; only then is it
   * stepped, so a malformed one is never made durable, and its rejection
   * changes nothing, not even the term (see RaftNode's snapshotRefusal). The
   * check's decoding is what gets installed, so a snapshot is decoded once.
   */
  step (message: Message): void {
    if (this.#stopped || this.#failure != null) { return }
    if (message.type === 'snapshot' && this.#wouldInstall(message)) {
      this.#checkSnapshot(message)
      return
    }
    this.#stepCore(message)
  }

  #stepCore (message: Message): void {
    if (message.type === 'append-response' || message.type === 'heartbeat-response') { this.#followerSilence.heard(message.from) }
    const result = this.#core.step(message)
    if (!result.ok && result.reason === 'invalid-message') {
      this.#options.log.debug({ from: message.from, type: message.type, detail: result.detail }, 'raft message rejected')
      this.#options.observer?.rejected?.(message, result.detail)
    }
    this.#readyLoop.request()
  }

  /** Whether the core might install `message` (else it only answers it, or ignores it as stale). */
  #wouldInstall (message: SnapshotMessage): boolean {
    const { term, commit } = this.#core.status()
    return message.term >= term && message.snapshot.meta.index > commit
  }

  /**
   * Checks one snapshot at a time; one arriving meanwhile is dropped (its
   * sender sends it again), unless it comes from the leader this node
   * follows and the one in check does not: a stranger's snapshot must not
   * keep the leader's out. Never is a check given up for a later copy of the
   * same snapshot, which could otherwise arrive faster than a check ends.
   */
  #checkSnapshot (message: SnapshotMessage): void {
    const current = this.#checking
    if (current != null) {
      if (message.from !== this.#leader || current.message.from === this.#leader) {
        this.#snapshotChecks.dropped++
        this.#options.log.debug({ from: message.from, index: message.snapshot.meta.index }, 'raft snapshot dropped: another is being checked')
        return
      }
      current.abandoned = true
    }
    const checking: SnapshotInCheck = { message, check: this.stateMachine.checkSnapshot(message.snapshot.data), abandoned: false }
    this.#checking = checking
    this.#runCheck(checking).catch(err => { this.#fail(err as Error) })
  }

  async #runCheck (checking: SnapshotInCheck): Promise<void> {
    const done = await this.#inSlices(workBytes => checking.check.decodeSome(workBytes),
      () => checking.abandoned || this.#stopped || this.#failure != null)
    if (this.#checking === checking) { this.#checking = null }
    if (!done || this.#stopped || this.#failure != null) { return }
    const { message } = checking
    const { meta } = message.snapshot
    const problem = snapshotProblem(checking.check.result(), message.snapshot)
    if (problem != null) {
      this.#snapshotChecks.rejected++
      this.#options.metrics?.onSnapshotRejected?.()
      this.#options.log.warn({ from: message.from, term: message.term, index: meta.index, bytes: message.snapshot.data.byteLength, problem },
        'raft snapshot rejected: it fails its check, so it was neither stored nor installed')
      return
    }
    this.#snapshotChecks.passed++
    this.#stepping = checking
    try {
      this.#stepCore(message)
    } finally {
      this.#stepping = null
    }
  }

  /** Snapshots received from the network, by what became of them. */
  get snapshotChecks (): SnapshotCheckStats {
    return { ...this.#snapshotChecks }
  }

  reportSnapshot (to: string, outcome: 'success' | 'failure'): void {
    this.#core.reportSnapshot(to, outcome)
    this.#readyLoop.request()
  }

  /** Strong evidence that `leader` is gone (its connection closed): see RaftNode.forgetLeader. */
  forgetLeader (leader: string): void {
    if (this.#stopped || this.#failure != null) { return }
    if (!this.#core.forgetLeader(leader)) { return }
    this.#options.log.info({ leader }, 'every connection to the leader closed: campaigning without waiting for the election timeout')
    this.#options.metrics?.onLeaderConnectionLost?.()
    this.#readyLoop.request()
  }

  reportUnreachable (to: string): void {
    this.#core.reportUnreachable(to)
  }

  status (): RaftStatus {
    return this.#core.status()
  }

  get leader (): string | null {
    return this.#leader
  }

  /** Aborted at the next change of leader (one elected, or the known one lost). */
  get leaderChangeSignal (): AbortSignal {
    return this.#leaderTenure.signal
  }

  get lastSnapshotIndex (): number {
    return this.#lastSnapshotIndex
  }

  /** A local snapshot is being encoded or stored (see #takeSnapshot). */
  get snapshotting (): boolean {
    return this.#snapshotTask != null
  }

  /**
   * Found the group now with `conf` (see RaftNode.bootstrapNew), between two
   * Readies, and campaign at once: the founder alone holds the
   * configuration, so no other member could start the election. Resolves
   * false when the node already holds Raft state: it heard of a group
   * meanwhile, and follows that one.
   */
  async bootstrap (conf: ConfState): Promise<boolean> {
    this.#checkUsable()
    const done = await this.#betweenReadies(() => {
      if (!this.#core.bootstrapNew(conf)) { return false }
      this.#core.campaign()
      return true
    })
    this.#readyLoop.request()
    return done === true
  }

  /** Propose a command on this node (it must be the leader) and wait until it is applied. */
  async propose (command: C, signal?: AbortSignal): Promise<AppliedResult<SM>> {
    this.#checkUsable()
    const encoded = this.#options.encodeCommand(command)
    if (!encoded.ok) { throw new RaftError('invalid', encoded.message) }
    if (this.#proposals.size >= PENDING_PROPOSALS_MAX) { throw new RaftError('busy', 'too many proposals in flight') }
    const proposed = this.#core.propose(encoded.data)
    if (!proposed.ok) { throw this.#refusal(proposed.reason, proposed.leader, proposed.detail) }
    this.#options.metrics?.onProposal?.()
    const result = await this.#applyOf(proposed, signal)
    // an entry of this term at the proposal's index is the proposal itself
    assert(result !== null, 'a proposed command applies to the state machine')
    return result
  }

  /** Propose a membership change on this node (it must be the leader); resolves once applied. */
  async changeMembership (change: ConfChange, signal?: AbortSignal): Promise<{ index: number }> {
    this.#checkUsable()
    const proposed = this.#core.proposeConfChange(change)
    if (!proposed.ok) { throw this.#refusal(proposed.reason, proposed.leader, proposed.detail) }
    await this.#applyOf(proposed, signal)
    return { index: proposed.index }
  }

  /** Waits for the entry just proposed at `index` to be applied. */
  async #applyOf (proposed: { index: number, term: number }, signal?: AbortSignal): Promise<AppliedResult<SM> | null> {
    // an older proposal at the same index (this node lost leadership and won
    // it back before it applied) can never apply now
    this.#proposals.get(proposed.index)?.reject(new RaftError('retry', 'the proposal was lost to a leader change; retry with the same session', this.#leader))
    const result = new Promise<AppliedResult<SM> | null>((resolve, reject) => {
      this.#proposals.set(proposed.index, { term: proposed.term, resolve, reject })
    })
    this.#readyLoop.request()
    return withAbort(result, signal, () => { this.#proposals.delete(proposed.index) })
  }

  transferLeadership (to: string): void {
    this.#checkUsable()
    const result = this.#core.transferLeadership(to)
    if (!result.ok) {
      throw result.reason === 'not-leader'
        ? new RaftError('not-leader', 'this node is not the leader', result.leader)
        : new RaftError('invalid', `cannot transfer leadership to ${to}: ${result.reason}`, result.leader)
    }
    this.#readyLoop.request()
  }

  /**
   * Wait until this node may serve a linearizable read: ReadIndex (confirmed
   * by a quorum, or by the lease in 'lease' mode), then apply up to it.
   * Works on followers too: the core forwards the request to the leader.
   */
  async readBarrier (signal?: AbortSignal): Promise<number> {
    this.#checkUsable()
    if (this.#reads.size + this.#appliedWaiters.length >= PENDING_READS_MAX) { throw new RaftError('busy', 'too many reads in flight') }
    const ctx = new Uint8Array(16)
    new DataView(ctx.buffer).setBigUint64(0, ++this.#readCounter)
    ctx.set(this.#readNonce, 8)
    const key = Buffer.from(ctx).toString('hex')
    const indexKnown = new Promise<number>((resolve, reject) => { this.#reads.set(key, { resolve, reject }) })
    const asked = this.#core.readIndex(ctx)
    if (!asked.ok) {
      this.#reads.delete(key)
      throw asked.reason === 'no-leader'
        ? new RaftError('no-leader', 'no leader is known', null)
        : new RaftError('busy', 'the leader is busy with reads', asked.leader)
    }
    this.#readyLoop.request()
    const index = await withAbort(indexKnown, signal, () => { this.#reads.delete(key) })
    if (this.stateMachine.appliedIndex < index) {
      let waiter: AppliedWaiter | undefined
      const applied = new Promise<void>((resolve, reject) => {
        waiter = { index, resolve, reject }
        this.#appliedWaiters.push(waiter)
      })
      await withAbort(applied, signal, () => { this.#appliedWaiters = this.#appliedWaiters.filter(w => w !== waiter) })
    }
    return index
  }

  #checkUsable (): void {
    if (this.#stopped) { throw new RaftError('stopped', 'the node is stopping') }
    if (this.#failure != null) { throw new RaftError('stopped', `raft stopped after a storage failure: ${this.#failure.message}`) }
  }

  #refusal (reason: string, leader: string | null, detail?: string): RaftError {
    switch (reason) {
      case 'not-leader':
        return leader == null ? new RaftError('no-leader', 'no leader is known', null) : new RaftError('not-leader', 'this node is not the leader', leader)
      // leadership is about to move (a transfer, or this leader's removal): come back shortly
      case 'transferring':
      case 'leaving':
      case 'uncommitted-limit':
      case 'conf-change-pending':
        return new RaftError('busy', `${reason}${detail != null ? `: ${detail}` : ''}`, leader)
      default:
        return new RaftError('invalid', `${reason}${detail != null ? `: ${detail}` : ''}`, leader)
    }
  }

  async #processReadies (): Promise<void> {
    this.#runBetweenReadies()
    while (!this.#stopped && this.#failure == null && this.#core.hasReady()) {
      const ready = this.#core.ready()
      this.#observeReady(ready)
      // the first Ready after the core took a checked snapshot carries it
      const approved = this.#approved
      this.#approved = null
      // 1. durable first: the messages below promise what this makes durable,
      // except a leader's replication messages (see #sendsBeforePersist)
      const persisted = ready.hardState != null || ready.entries.length > 0 || ready.snapshot != null
        ? this.#options.store.persist({ hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot, mustSync: ready.mustSync })
        : null
      // 2. apply, while the write runs, the committed entries this node
      // already holds durably: a quorum has them, and the state machine lives
      // in memory, rebuilt from snapshot and log on restart (etcd applies
      // concurrently with its WAL write too). Entries of this very Ready (a
      // one-voter leader commits them at once) wait for the write, or an
      // acknowledged write could vanish in a crash.
      const split = this.#durablePrefix(ready)
      const answered = this.#applyEntries(ready.committedEntries.slice(0, split))
      this.#serveReadStates(ready.readStates)
      let unsent = ready.messages
      if (this.#sendsBeforePersist(ready)) {
        // the answers just given go out to their clients first (one turn of
        // the event loop), then the replication messages, each a socket write
        if (answered > 0) { await new Promise<void>(resolve => { this.#runtime.defer(resolve) }) }
        this.#send(unsent)
        unsent = []
      }
      if (persisted != null && !ready.mustSync) {
        // only the commit index changed, which need not survive a crash: the
        // write goes on in the background (the store keeps writes in order)
        persisted.catch(err => { this.#fail(err as Error) })
      } else if (persisted != null) {
        await persisted
        if (ready.hardState != null) { this.#durableVote = { term: ready.hardState.term, vote: ready.hardState.vote } }
      }
      // 3. send, then apply the rest
      this.#send(unsent)
      if (ready.snapshot != null) { this.#applySnapshot(ready.snapshot, approved) }
      this.#applyEntries(ready.committedEntries.slice(split))
      this.#core.advance()
      // conf changes take effect in advance(); a leader change comes as soft state
      if (ready.softState != null || ready.snapshot != null || ready.committedEntries.some(entry => entry.type === 'conf-change')) { this.#configurationVersion++ }
      this.#runBetweenReadies()
      this.#maybeSnapshot()
    }
  }

  /** Leader and term changes, for the log, the metrics and the observer. */
  #observeReady (ready: Ready): void {
    this.#options.observer?.ready?.(ready)
    if (ready.softState != null) { this.#observeLeader(ready.softState.leader, ready.softState.role) }
    if (ready.hardState != null && ready.hardState.term > this.#term) {
      if (this.#term > 0) { this.#options.metrics?.onElection?.() }
      this.#term = ready.hardState.term
    }
  }

  /** Runs `work` when no Ready is outstanding, which is when the core may be compacted. */
  async #betweenReadies<T> (work: () => T): Promise<T | null> {
    const { promise, resolve } = Promise.withResolvers<T | null>()
    this.#betweenReadiesQueue.push(() => { resolve(this.#stopped ? null : work()) })
    this.#readyLoop.request()
    return promise
  }

  #runBetweenReadies (): void {
    // checked first: this runs on every Ready, and splice() allocates
    if (this.#betweenReadiesQueue.length === 0) { return }
    for (const run of this.#betweenReadiesQueue.splice(0)) { run() }
  }

  /** How many of the Ready's committed entries were durable here before it (all entries below its first new one). */
  #durablePrefix (ready: Ready): number {
    if (ready.snapshot != null) { return 0 }
    const firstNew = ready.entries[0]?.index ?? Infinity
    const at = ready.committedEntries.findIndex(e => e.index >= firstNew)
    return at === -1 ? ready.committedEntries.length : at
  }

  #send (messages: Message[]): void {
    for (const message of messages) { this.#options.outbox.send(message.to, message) }
  }

  /**
   * A leader may send its replication messages while the entries of the
   * same Ready are still being written (Raft thesis §10.2.1; etcd's leader
   * does the same). Nothing that relies on the leader's copy escapes before
   * it is durable: a commit index covering these entries first appears in a
   * later Ready (in messages, hard state and committed entries), and the
   * next Ready is only taken after this one's write completed. Term and vote
   * must be durable before anything is sent, so a Ready that changes them
   * takes the ordinary path, as does everything a follower or candidate sends.
   */
  #sendsBeforePersist (ready: Ready): boolean {
    if (ready.snapshot != null) { return false }
    if (ready.hardState != null && (ready.hardState.term !== this.#durableVote.term || ready.hardState.vote !== this.#durableVote.vote)) { return false }
    return ready.messages.length > 0 && ready.messages.every(m => LEADER_MESSAGES.has(m.type))
  }

  #observeLeader (leader: string | null, role: string): void {
    if (leader === this.#leader) { return }
    this.#options.log.info({ leader, role, term: this.#core.status().term, localHealth: this.localHealthScore }, 'raft leader changed')
    this.#leader = leader
    this.#options.metrics?.onLeaderChange?.(leader)
    const ended = this.#leaderTenure
    this.#leaderTenure = new AbortController()
    ended.abort()
  }

  /** Installs a snapshot from the leader, decoded when it was checked (see step()). */
  #applySnapshot (snapshot: Snapshot, approved: SnapshotInCheck | null): void {
    assert(approved?.message.snapshot.data === snapshot.data, 'the core installs only snapshots the driver checked')
    this.#installedSnapshots++
    approved.check.install()
    this.#snapshotTaken(snapshot)
    // proposals at or below the snapshot will never be applied here
    for (const [index, waiter] of this.#proposals) {
      if (index <= snapshot.meta.index) {
        waiter.reject(new RaftError('retry', 'the proposal was overtaken by a snapshot; retry with the same session'))
        this.#proposals.delete(index)
      }
    }
    this.#wakeAppliedWaiters()
  }

  /** Applies entries and answers their proposals; returns how many proposals were answered. */
  #applyEntries (entries: Entry[]): number {
    if (entries.length === 0) { return 0 }
    let answered = 0
    this.#options.metrics?.onCommit?.(entries.length)
    for (const entry of entries) {
      if (entry.index <= this.stateMachine.appliedIndex) { continue }
      this.#appliedBytesSinceSnapshot += entry.data.byteLength
      let result: AppliedResult<SM> | null = null
      if (entry.type === 'normal') {
        result = this.stateMachine.apply(entry.index, entry.data) as AppliedResult<SM>
      } else {
        this.stateMachine.skip(entry.index)
      }
      const waiter = this.#proposals.get(entry.index)
      if (waiter != null) {
        answered++
        this.#proposals.delete(entry.index)
        if (waiter.term === entry.term) { waiter.resolve(result) } else { waiter.reject(new RaftError('retry', 'the proposal was lost to a leader change; retry with the same session', this.#leader)) }
      }
    }
    this.#wakeAppliedWaiters()
    return answered
  }

  #wakeAppliedWaiters (): void {
    const applied = this.stateMachine.appliedIndex
    const ready = this.#appliedWaiters.filter(w => w.index <= applied)
    if (ready.length === 0) { return }
    this.#appliedWaiters = this.#appliedWaiters.filter(w => w.index > applied)
    for (const waiter of ready) { waiter.resolve() }
  }

  #serveReadStates (readStates: ReadState[]): void {
    for (const state of readStates) {
      const key = Buffer.from(state.requestCtx).toString('hex')
      const waiter = this.#reads.get(key)
      if (waiter == null) { continue }
      this.#reads.delete(key)
      waiter.resolve(state.index)
    }
  }

  /** Starts a local snapshot in the background when one is due and none is in progress. */
  #maybeSnapshot (): void {
    if (this.#snapshotTask != null || this.#stopped) { return }
    const applied = this.stateMachine.appliedIndex
    const logFull = this.#appliedBytesSinceSnapshot >= (this.#options.snapshotLogBytesMax ?? SNAPSHOT_LOG_BYTES_MAX)
    const due = applied - this.#lastSnapshotIndex >= this.#options.snapshotEveryEntries && this.#appliedBytesSinceSnapshot >= this.#lastSnapshotBytes
    if (!logFull && !due) { return }
    this.#snapshotTask = this.#takeSnapshot()
      .catch(err => { this.#fail(err as Error) })
      .finally(() => { this.#snapshotTask = null })
  }

  /**
   * Encodes the state as of now in slices while the node goes on applying,
   * then, between two Readies, compacts the core's log up to the encoded
   * index, and stores the snapshot (the store stages its chunks beside the
   * log writes, see RaftStorage.saveSnapshot).
   */
  async #takeSnapshot (): Promise<void> {
    const installedBefore = this.#installedSnapshots
    const bytesBefore = this.#appliedBytesSinceSnapshot
    const encoder = this.stateMachine.beginSnapshot()
    const abandoned = (): boolean => this.#stopped || this.#installedSnapshots !== installedBefore
    if (!await this.#inSlices(workBytes => encoder.encodeSome(workBytes), abandoned)) { return }
    const snapshot = await this.#betweenReadies(() => abandoned() ? null : this.#core.compact(encoder.appliedIndex, encoder.result()))
    if (snapshot == null) { return }
    const stored = await this.#options.store.saveSnapshot(snapshot)
    if (!stored) {
      this.#options.log.info({ index: snapshot.meta.index }, 'raft snapshot not stored: a newer one from the leader was stored meanwhile, or the node is stopping')
      return
    }
    // a snapshot installed from the leader meanwhile is the newer one
    if (this.#installedSnapshots === installedBefore) { this.#snapshotTaken(snapshot, bytesBefore) }
    this.#options.log.info({ index: snapshot.meta.index, bytes: snapshot.data.byteLength }, 'raft snapshot taken, log compacted')
  }

  /** Snapshot work in slices of snapshotSliceMs (see inSlices). */
  async #inSlices (step: (workBytes: number) => boolean, abandoned: () => boolean): Promise<boolean> {
    return inSlices(this.#runtime, step, abandoned, this.#options.snapshotSliceMs ?? SLICE_MS)
  }

  /** `bytesCovered`: the applied bytes since the previous snapshot that this one covers (all, unless it was taken in the background). */
  #snapshotTaken (snapshot: Snapshot, bytesCovered = this.#appliedBytesSinceSnapshot): void {
    this.#lastSnapshotIndex = snapshot.meta.index
    this.#lastSnapshotBytes = snapshot.data.byteLength
    this.#appliedBytesSinceSnapshot -= bytesCovered
  }

  /**
   * The leader promotes caught-up learners, keeping the number of voters odd
   * where it can (an even count tolerates no more failures than one voter
   * fewer, and a group of two stops when either fails): with an odd count it
   * promotes caught-up learners in pairs, several in one joint change (1 to
   * 3 voters, never through 2); a lone caught-up learner waits while another
   * active learner catches up, and is promoted alone when none does.
   */
  /** As leader, drops the streams to and from followers that stopped answering (see FollowerSilence). */
  #resetSilentFollowers (status: RaftStatus): void {
    if (status.role !== 'leader') {
      this.#followerSilence.clear()
      return
    }
    const followers = [...new Set([...status.conf.voters, ...status.conf.votersOutgoing, ...status.conf.learners])].filter(id => id !== this.id)
    for (const follower of this.#followerSilence.tick(followers)) {
      this.#options.log.info({ follower, silentMs: (this.#options.checkQuorumTicks ?? this.#options.electionTimeoutTicks) * this.#options.tickIntervalMs }, 'a raft follower stopped answering: reopening the streams to it')
      this.#options.metrics?.onSilentFollower?.()
      this.#options.outbox.resetPeer?.(follower)
    }
  }

  #promoteCaughtUpLearners (status: RaftStatus): void {
    if (!this.#options.autoPromoteLearners || this.#promoting != null || this.#stopped) { return }
    const progress = status.progress
    if (status.role !== 'leader' || progress == null || status.conf.votersOutgoing.length > 0) { return }
    const active = status.conf.learners.filter(learner => progress[learner]?.recentActive === true && this.#options.isAlive?.(learner) !== false)
    const caughtUp = active.filter(learner => progress[learner].match >= status.commit)
    const promote = learnersToPromote(status.conf.voters.length, caughtUp, active.length)
    if (promote.length === 0) { return }
    this.#promoting = promote
    this.changeMembership({ changes: promote.map(node => ({ type: 'promote' as const, node })) })
      .then(() => { this.#options.log.info({ nodes: promote }, promote.length > 1 ? 'learners caught up and promoted to voters in one joint change' : 'learner caught up and promoted to voter') })
      .catch(err => { this.#options.log.debug({ nodes: promote, err: (err as Error).message }, 'learner promotion failed') })
      .finally(() => { this.#promoting = null })
  }

  /**
   * A storage failure leaves the core's view ahead of the disk: nothing safe
   * can follow, so Raft stops here (the node keeps serving status).
   */
  #fail (err: Error): void {
    if (this.#failure != null) { return }
    this.#failure = err
    this.#stopTicking?.()
    this.#options.log.fatal({ err }, 'raft stopped: storage failure')
    this.#options.observer?.failed?.(err)
    this.#failWaiters(new RaftError('stopped', `raft stopped: ${err.message}`))
  }

  #failWaiters (err: RaftError): void {
    for (const waiter of this.#proposals.values()) { waiter.reject(err) }
    for (const waiter of this.#reads.values()) { waiter.reject(err) }
    for (const waiter of this.#appliedWaiters) { waiter.reject(err) }
    this.#proposals.clear()
    this.#reads.clear()
    this.#appliedWaiters = []
  }
}

/** Learners promoted in one change at most (a conf change holds at most CONF_CHANGES_MAX). */
export const PROMOTIONS_MAX = 32

/**
 * Which of the caught-up learners to promote, given `voters` voters and
 * `active` active learners (caught up or not): as many as keep the voter
 * count odd, at most PROMOTIONS_MAX; from an odd count, none while a lone
 * caught-up learner can wait for another active one to catch up.
 */
export function learnersToPromote (voters: number, caughtUp: string[], active: number): string[] {
  const candidates = caughtUp.slice(0, PROMOTIONS_MAX)
  if (candidates.length === 0) { return [] }
  // from an odd count promote an even number, from an even count an odd one
  const count = candidates.length - ((voters + candidates.length) % 2 === 0 ? 1 : 0)
  if (count > 0) { return candidates.slice(0, count) }
  return active > candidates.length ? [] : candidates.slice(0, 1)
}

/** Why a checked state machine snapshot may not stand for the Raft snapshot `snapshot`, or null. */
function snapshotProblem (result: ReturnType<StateMachineSnapshotCheck['result']>, snapshot: Snapshot): string | null {
  if (!result.ok) { return result.error }
  if (result.appliedIndex !== snapshot.meta.index) {
    return `the KV state in it is at index ${result.appliedIndex}, the snapshot claims index ${snapshot.meta.index}`
  }
  return null
}

async function withAbort<T> (promise: Promise<T>, signal: AbortSignal | undefined, onAbort: () => void): Promise<T> {
  if (signal == null) { return promise }
  if (signal.aborted) {
    onAbort()
    throw new RaftError('timeout', 'the request timed out')
  }
  let listener: (() => void) | undefined
  const aborted = new Promise<never>((_resolve, reject) => {
    listener = () => {
      onAbort()
      reject(new RaftError('timeout', 'the request timed out'))
    }
    signal.addEventListener('abort', listener, { once: true })
  })
  try {
    return await Promise.race([promise, aborted])
  } finally {
    if (listener != null) { signal.removeEventListener('abort', listener) }
  }
}
