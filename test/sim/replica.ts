/**
 * One simulated server: a real RaftNode and KvStateMachine behind the
 * service-layer duties the core leaves to its caller (see Ready in
 * protocols/raft/types.ts). A Ready's writes go to the simulated disk; its
 * messages leave only once those writes are durable (after a simulated
 * fsync), then committed entries are applied and advance() is called. The
 * core keeps running meanwhile (step and tick between ready() and advance()
 * are allowed), so disk latency overlaps with new work as in a real node.
 *
 * A replica object lives for one incarnation: a crash kills it (and the
 * unsynced writes of its disk); a restart builds a new one from the disk.
 */
import { decodeCommand, encodeCommand, KvStateMachine } from '../../protocols/kv/index.ts'
import { RaftNode } from '../../protocols/raft/index.ts'
import { InvariantViolation } from './invariants.ts'
import type { ClientRequest, ClientResponse } from './clients.ts'
import type { DiskWrite, SimDisk } from './disk.ts'
import type { InvariantChecker } from './invariants.ts'
import type { SimOptions } from './options.ts'
import type { Scheduler } from './scheduler.ts'
import type { Trace } from './trace.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { KvApplyResult } from '../../protocols/kv/index.ts'
import type { ConfState, Entry, Message, NodeId, Ready } from '../../protocols/raft/index.ts'

export interface ReplicaEnv {
  scheduler: Scheduler
  trace: Trace
  checker: InvariantChecker
  options: SimOptions
  send(message: Message): void
  reply(clientId: string, response: ClientResponse): void
}

interface WriteWaiter {
  opId: number
  sequence: number
  index: number
}

interface ReadWaiter {
  opId: number
  context: string
  key: string
  /** Known once the ReadState arrives. */
  index: number | null
}

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

export class SimReplica {
  readonly id: NodeId
  readonly raft: RaftNode
  readonly kv = new KvStateMachine()
  readonly disk: SimDisk
  /** Virtual milliseconds between two ticks of this node's (skewed) clock. */
  readonly tickMs: number
  alive = true
  /** A paused process (GC pause, SIGSTOP) does nothing until then; its inputs wait. */
  private pausedUntilMs = 0
  private readonly env: ReplicaEnv
  private readonly rng: Rng
  private readyInFlight = false
  private snapshotIndex: number
  /** One per client (a client has one operation in flight), so bounded by the client count. */
  private readonly writeWaiters = new Map<string, WriteWaiter>()
  private readonly readWaiters = new Map<string, ReadWaiter>()

  constructor (id: NodeId, disk: SimDisk, rng: Rng, tickMs: number, env: ReplicaEnv, bootstrap?: ConfState) {
    this.id = id
    this.disk = disk
    this.rng = rng
    this.tickMs = tickMs
    this.env = env
    const { options } = env
    this.raft = new RaftNode({
      id,
      rng: rng.fork(),
      electionTimeoutTicks: options.electionTimeoutTicks,
      heartbeatIntervalTicks: options.heartbeatIntervalTicks,
      readOnlyMode: options.readOnlyMode
    }, disk.restoredState(), bootstrap)
    const snapshot = disk.durable.snapshot
    if (snapshot !== undefined) { this.restoreKv(snapshot.data, snapshot.meta.index) }
    this.snapshotIndex = snapshot?.meta.index ?? 0
    env.checker.startNode(id, disk.durable)
    // Nodes do not tick in lockstep: start at a random phase.
    env.scheduler.after(rng.nextFloat() * tickMs, () => { this.tick() })
    this.drive()
  }

  /** Power loss. Returns how many unsynced writes were lost. */
  crash (): number {
    this.alive = false
    this.writeWaiters.clear()
    this.readWaiters.clear()
    return this.disk.crash()
  }

  /** Freezes the process for `durationMs`: everything addressed to it waits, in order. */
  pause (durationMs: number): void {
    this.pausedUntilMs = Math.max(this.pausedUntilMs, this.env.scheduler.now + durationMs)
  }

  receive (message: Message): void {
    this.whenRunning(() => {
      const result = this.raft.step(message)
      if (!result.ok && result.reason === 'invalid-message') {
        // Every message comes from a real core: one the other rejects is a bug on one side.
        throw new InvariantViolation(`${this.id} rejected a message from ${message.from} as malformed: ${result.detail ?? ''}`)
      }
      this.drive()
    })
  }

  /** The outcome of a snapshot transfer, as the service layer reports it. */
  reportSnapshot (to: NodeId, outcome: 'success' | 'failure'): void {
    this.whenRunning(() => {
      this.raft.reportSnapshot(to, outcome)
      this.drive()
    })
  }

  /** The service layer saw the connection to `leader` close. */
  forgetLeader (leader: NodeId): void {
    this.whenRunning(() => {
      this.raft.forgetLeader(leader)
      this.drive()
    })
  }

  handleRequest (request: ClientRequest): void {
    this.whenRunning(() => { this.serveRequest(request) })
  }

  /** Runs `work` now, or when a pause ends; never on a crashed incarnation. */
  private whenRunning (work: () => void): void {
    if (!this.alive) { return }
    if (this.env.scheduler.now < this.pausedUntilMs) {
      this.env.scheduler.at(this.pausedUntilMs, () => { this.whenRunning(work) })
      return
    }
    work()
  }

  private serveRequest (request: ClientRequest): void {
    if (request.kind === 'write') {
      const result = this.raft.propose(encodeCommand(request.command))
      if (result.ok) {
        this.writeWaiters.set(request.clientId, { opId: request.opId, sequence: request.command.session.sequence, index: result.index })
      } else {
        this.env.reply(request.clientId, { kind: 'redirect', opId: request.opId, leader: result.leader })
      }
    } else if (this.env.options.sabotage === 'stale-reads') {
      // BROKEN ON PURPOSE: whatever this replica has applied, leader or not.
      this.env.reply(request.clientId, { kind: 'ok', opId: request.opId, output: this.read(request.key) })
    } else {
      const context = `${request.clientId}#${request.opId}#${request.attempt}`
      const result = this.raft.readIndex(textEncoder.encode(context))
      if (result.ok) {
        this.readWaiters.set(request.clientId, { opId: request.opId, context, key: request.key, index: null })
      } else {
        this.env.reply(request.clientId, { kind: 'redirect', opId: request.opId, leader: result.leader })
      }
    }
    this.drive()
  }

  private tick (): void {
    // Ticks missed during a pause are not made up (like a Go ticker): one tick on resume.
    this.whenRunning(() => {
      this.raft.tick()
      this.drive()
      this.env.scheduler.after(this.tickMs, () => { this.tick() })
    })
  }

  /** Takes Ready batches while the core has any and no earlier one is still being persisted. */
  drive (): void {
    while (this.alive && !this.readyInFlight && this.raft.hasReady()) {
      const rd = this.raft.ready()
      this.env.checker.observeReady(this.id, rd)
      if (rd.softState !== undefined) { this.env.trace.add(`${this.id} is ${rd.softState.role}, leader ${rd.softState.leader ?? '-'}`) }
      const write = persistedPart(rd)
      const sequence = write === null ? this.disk.lastWrite : this.disk.write(write)
      if (write !== null) { this.env.trace.add(`${this.id} write #${sequence}: ${describeWrite(write)}`) }
      if (!rd.mustSync) {
        // Nothing that needs an fsync (at most a commit index): page cache is enough.
        this.finish(rd)
        continue
      }
      const fsyncMs = this.rng.intBetween(this.env.options.fsyncMsMin, this.env.options.fsyncMsMax)
      if (this.env.options.sabotage === 'ack-before-durable') {
        // BROKEN ON PURPOSE: acknowledge first, make durable later.
        this.env.scheduler.after(fsyncMs, () => { if (this.alive) { this.disk.syncThrough(sequence) } })
        this.finish(rd)
        continue
      }
      this.readyInFlight = true
      this.env.scheduler.after(fsyncMs, () => {
        this.whenRunning(() => {
          this.disk.syncThrough(sequence)
          this.env.trace.add(`${this.id} fsync #${sequence}`)
          this.readyInFlight = false
          this.finish(rd)
          this.drive()
        })
      })
      return
    }
  }

  /** Steps 2-4 of the Ready contract, once its writes are durable. */
  private finish (rd: Ready): void {
    for (const message of rd.messages) {
      this.env.checker.observeSend(message, this.disk.durable)
      this.env.send(message)
    }
    if (rd.snapshot !== undefined) {
      this.restoreKv(rd.snapshot.data, rd.snapshot.meta.index)
      this.env.checker.observeSnapshot(this.id, rd.snapshot, 'installed')
      this.snapshotIndex = rd.snapshot.meta.index
      this.env.trace.add(`${this.id} installed snapshot ${rd.snapshot.meta.index}/${rd.snapshot.meta.term}`)
      // Proposals inside the snapshot cannot be matched to their entries: let the clients retry
      // (their sessions return the saved result).
      for (const [clientId, waiter] of this.writeWaiters) {
        if (waiter.index <= rd.snapshot.meta.index) {
          this.writeWaiters.delete(clientId)
          this.env.reply(clientId, { kind: 'retry', opId: waiter.opId })
        }
      }
    }
    for (const entry of rd.committedEntries) { this.apply(entry) }
    for (const state of rd.readStates) {
      const context = textDecoder.decode(state.requestCtx)
      const clientId = context.slice(0, context.indexOf('#'))
      const waiter = this.readWaiters.get(clientId)
      if (waiter?.context === context) { waiter.index = state.index }
    }
    this.serveReads()
    this.raft.advance()
    this.maybeCompact()
  }

  private apply (entry: Entry): void {
    this.env.checker.observeApply(this.id, entry)
    if (entry.type === 'conf-change') {
      this.kv.skip(entry.index)
      this.env.trace.add(`${this.id} applied ${entry.index}/${entry.term} conf ${textDecoder.decode(entry.data)}`)
    } else {
      const result = this.kv.apply(entry.index, entry.data)
      if (entry.data.length > 0) { this.answerWriter(entry, result) }
    }
    // A proposal whose index now holds another entry was lost.
    for (const [clientId, waiter] of this.writeWaiters) {
      if (waiter.index === entry.index) {
        this.writeWaiters.delete(clientId)
        this.env.reply(clientId, { kind: 'retry', opId: waiter.opId })
      }
    }
  }

  private answerWriter (entry: Entry, result: KvApplyResult): void {
    const decoded = decodeCommand(entry.data)
    if (!decoded.ok) { throw new Error(`${this.id}: entry ${entry.index} is not a KV command: ${decoded.error}`) }
    const { clientId, sequence } = decoded.command.session
    const waiter = this.writeWaiters.get(clientId)
    if (waiter === undefined || waiter.sequence !== sequence) { return }
    this.writeWaiters.delete(clientId)
    this.env.reply(clientId, responseFor(waiter.opId, decoded.command.type, result))
  }

  private serveReads (): void {
    for (const [clientId, waiter] of this.readWaiters) {
      if (waiter.index === null || this.kv.appliedIndex < waiter.index) { continue }
      this.readWaiters.delete(clientId)
      const output = this.read(waiter.key)
      this.env.trace.add(`${this.id} read ${waiter.key} at ${waiter.index} for ${clientId} op ${waiter.opId}: ${JSON.stringify(output)}`)
      this.env.reply(clientId, { kind: 'ok', opId: waiter.opId, output })
    }
  }

  private read (key: string): string | null {
    const value = this.kv.get(key)
    return value === null ? null : textDecoder.decode(value)
  }

  private maybeCompact (): void {
    const applied = this.kv.appliedIndex
    if (this.readyInFlight || applied - this.snapshotIndex < this.env.options.compactEntries) { return }
    const snapshot = this.raft.compact(applied, this.kv.snapshot())
    if (snapshot === null) { return }
    this.snapshotIndex = applied
    this.env.checker.observeSnapshot(this.id, snapshot, 'compaction')
    const sequence = this.disk.write({ kind: 'compact', snapshot })
    this.env.trace.add(`${this.id} write #${sequence}: compact to ${applied}/${snapshot.meta.term}`)
  }

  private restoreKv (data: Uint8Array, index: number): void {
    const restored = this.kv.restore(data)
    if (!restored.ok) { throw new Error(`${this.id}: cannot restore the KV snapshot at ${index}: ${restored.error}`) }
    if (this.kv.appliedIndex !== index) { throw new Error(`${this.id}: KV snapshot at ${index} says it applied ${this.kv.appliedIndex}`) }
  }
}

function persistedPart (rd: Ready): DiskWrite | null {
  if (rd.snapshot === undefined && rd.entries.length === 0 && rd.hardState === undefined) { return null }
  const write: DiskWrite = { kind: 'ready', entries: rd.entries }
  if (rd.snapshot !== undefined) { write.snapshot = rd.snapshot }
  if (rd.hardState !== undefined) { write.hardState = rd.hardState }
  return write
}

function describeWrite (write: DiskWrite): string {
  if (write.kind === 'compact') { return `compact ${write.snapshot.meta.index}` }
  const parts: string[] = []
  if (write.snapshot !== undefined) { parts.push(`snapshot ${write.snapshot.meta.index}/${write.snapshot.meta.term}`) }
  if (write.entries.length > 0) { parts.push(`entries ${write.entries[0].index}..${write.entries[write.entries.length - 1].index} t${write.entries[write.entries.length - 1].term}`) }
  if (write.hardState !== undefined) { parts.push(`hard t${write.hardState.term} v${write.hardState.vote ?? '-'} c${write.hardState.commit}`) }
  return parts.join(', ')
}

function responseFor (opId: number, type: 'put' | 'delete' | 'cas', result: KvApplyResult): ClientResponse {
  if (result.ok) { return { kind: 'ok', opId, output: type === 'cas' ? true : null } }
  if (result.reason === 'cas-mismatch') { return { kind: 'ok', opId, output: false } }
  return { kind: 'rejected', opId, reason: 'message' in result ? `${result.reason}: ${result.message}` : result.reason }
}
