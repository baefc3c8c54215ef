/**
 * One simulated server: the production RaftDriver (node/raft/driver.ts) with
 * the production KV application, built with a runtime on virtual time
 * (process.ts), a log store on the simulated disk (raft-store.ts) and an
 * outbox into the simulated network. So the order in which the driver
 * persists, sends and applies is the one under test.
 *
 * The invariant checker watches through the seams the driver is built
 * from: every Ready (the driver's observer), every message at the moment
 * it is sent (the outbox, against what is durable on the disk then), every
 * entry applied and snapshot installed (the state machine), every local
 * snapshot stored (the store).
 *
 * A SimNode lives for one incarnation: a crash kills its process (the
 * driver's pending work never resumes) and the unsynced writes of its disk;
 * a restart builds a new one, and a new driver, from the disk.
 */
import { pino } from 'pino'
import { RaftDriver, RaftError } from '../../node/raft/driver.ts'
import { kvApplication } from '../../node/raft/kv-application.ts'
import { InvariantViolation } from './invariants.ts'
import { ObservedKv } from './observed-kv.ts'
import { SimProcess } from './process.ts'
import { SimRaftStore } from './raft-store.ts'
import { describeMessage } from './trace.ts'
import type { ClientRequest, ClientResponse } from './clients.ts'
import type { SimDisk } from './disk.ts'
import type { InvariantChecker } from './invariants.ts'
import type { SimOptions } from './options.ts'
import type { Scheduler } from './scheduler.ts'
import type { Trace } from './trace.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { KvApplyResult, KvCommand, KvStateMachine } from '../../protocols/kv/index.ts'
import type { ConfChange, ConfState, Entry, Message, NodeId, RaftStatus, Ready } from '../../protocols/raft/index.ts'

export interface NodeEnv {
  scheduler: Scheduler
  trace: Trace
  checker: InvariantChecker
  options: SimOptions
  send(message: Message): void
  reply(clientId: string, response: ClientResponse): void
  /** Fails the run: an error that surfaced inside the driver's asynchronous work, where no caller sees it. */
  fail(err: unknown): void
}

const SILENT = pino({ level: 'silent' })
const textDecoder = new TextDecoder()

export class SimNode {
  readonly id: NodeId
  readonly disk: SimDisk
  readonly kv: KvStateMachine
  readonly driver: RaftDriver<ObservedKv, KvCommand>
  private readonly process: SimProcess
  private readonly env: NodeEnv
  /** Committed entries handed out in Readies and not yet applied, by index: what apply() must match. */
  private readonly committed = new Map<number, Entry>()

  constructor (id: NodeId, disk: SimDisk, rng: Rng, tickMs: number, env: NodeEnv, bootstrap?: ConfState) {
    this.id = id
    this.disk = disk
    this.env = env
    const { options, checker, trace } = env
    this.process = new SimProcess(env.scheduler, rng.fork())
    const store = new SimRaftStore(id, disk, this.process, rng.fork(), trace, options,
      snapshot => { checker.observeSnapshot(id, snapshot.meta.index, snapshot.data, 'compaction') })
    const { stateMachine, encodeCommand } = kvApplication()
    this.kv = stateMachine
    checker.startNode(id, disk.durable)
    this.driver = RaftDriver.create({
      id,
      stateMachine: new ObservedKv(stateMachine, {
        applying: (index, data) => { this.applying(index, data) },
        installing: (index, data) => {
          checker.observeSnapshot(id, index, data, 'installed')
          for (const pending of this.committed.keys()) { if (pending <= index) { this.committed.delete(pending) } }
          trace.add(`${id} installed the snapshot at ${index}`)
        }
      }),
      encodeCommand,
      store,
      outbox: {
        send: (_to, message) => {
          checker.observeSend(message, disk.durable)
          env.send(message)
        }
      },
      runtime: this.process.runtime,
      restored: disk.restoredState(),
      bootstrapConf: bootstrap,
      tickIntervalMs: tickMs,
      electionTimeoutTicks: options.electionTimeoutTicks,
      heartbeatIntervalTicks: options.heartbeatIntervalTicks,
      readOnlyMode: options.readOnlyMode,
      snapshotEveryEntries: options.compactEntries,
      // the fault schedule promotes learners itself
      autoPromoteLearners: false,
      log: SILENT,
      observer: {
        ready: ready => { this.observeReady(ready) },
        rejected: (message, detail) => {
          // every message comes from a real core: one the other rejects is a bug on one side
          throw new InvariantViolation(`${id} rejected a message as malformed (${detail ?? ''}): ${describeMessage(message)}`)
        },
        failed: err => { env.fail(err) }
      }
    })
    // nodes do not tick in lockstep: start at a random phase
    this.process.after(rng.nextFloat() * tickMs, () => { this.driver.start() })
  }

  get alive (): boolean {
    return this.process.alive
  }

  status (): RaftStatus {
    return this.driver.status()
  }

  /** Power loss: the process and its driver stop dead. Returns how many unsynced writes were lost. */
  crash (): number {
    this.process.crash()
    // rejects what waits on the driver (nobody is told: the process is gone);
    // its pending work waits on this process, so it never resumes
    void this.driver.stop()
    return this.disk.crash()
  }

  pause (durationMs: number): void {
    this.process.pause(durationMs)
  }

  receive (message: Message): void {
    this.process.run(() => { this.driver.step(message) })
  }

  /** The outcome of a snapshot transfer, as the transport reports it. */
  reportSnapshot (to: NodeId, outcome: 'success' | 'failure'): void {
    this.process.run(() => { this.driver.reportSnapshot(to, outcome) })
  }

  /** The service layer saw the connection to `leader` close. */
  forgetLeader (leader: NodeId): void {
    this.process.run(() => { this.driver.forgetLeader(leader) })
  }

  /** An operator's request; null when accepted, else why not. */
  transferLeadership (to: NodeId): string | null {
    try {
      this.driver.transferLeadership(to)
      return null
    } catch (err) {
      if (err instanceof RaftError) { return err.message }
      throw err
    }
  }

  /**
   * An operator's membership change: the index it was proposed at, or null
   * if this node refused it. How it ends is traced.
   */
  changeMembership (change: ConfChange): number | null {
    const lastIndex = this.driver.status().lastIndex
    const applied = this.driver.changeMembership(change)
    // the core appends the change before changeMembership() first waits
    const index = this.driver.status().lastIndex
    applied.then(
      () => { this.env.trace.add(`${this.id} applied the membership change at ${index}`) },
      err => {
        if (!(err instanceof RaftError)) { throw err }
        this.env.trace.add(`${this.id} membership change ${JSON.stringify(change.changes)}: ${err.code}: ${err.message}`)
      }
    ).catch(err => { this.env.fail(err) })
    return index > lastIndex ? index : null
  }

  handleRequest (request: ClientRequest): void {
    this.process.run(() => { this.serve(request) })
  }

  private serve (request: ClientRequest): void {
    const { opId } = request
    if (request.kind === 'write') {
      const { type } = request.command
      this.answer(request, this.driver.propose(request.command).then(result => responseFor(opId, type, result)))
    } else if (this.env.options.sabotage === 'stale-reads') {
      // BROKEN ON PURPOSE: whatever this node has applied, leader or not
      this.env.reply(request.clientId, { kind: 'ok', opId, output: this.read(request.key) })
    } else {
      this.answer(request, this.driver.readBarrier().then(index => {
        const output = this.read(request.key)
        this.env.trace.add(`${this.id} read ${request.key} at ${index} for ${request.clientId} op ${opId}: ${JSON.stringify(output)}`)
        return { kind: 'ok', opId, output }
      }))
    }
  }

  /** Replies with `response`, or with what the driver's refusal means to a client; nothing once crashed. */
  private answer (request: ClientRequest, response: Promise<ClientResponse>): void {
    const reply = (answer: ClientResponse): void => { if (this.process.alive) { this.env.reply(request.clientId, answer) } }
    response.then(reply, err => { reply(refusalFor(request.opId, err)) }).catch(err => { this.env.fail(err) })
  }

  private read (key: string): string | null {
    const value = this.kv.get(key)
    return value === null ? null : textDecoder.decode(value)
  }

  private observeReady (ready: Ready): void {
    this.env.checker.observeReady(this.id, ready)
    if (ready.softState !== undefined) { this.env.trace.add(`${this.id} is ${ready.softState.role}, leader ${ready.softState.leader ?? '-'}`) }
    for (const entry of ready.committedEntries) { this.committed.set(entry.index, entry) }
  }

  /** The driver applies (`data`) or skips (null) entry `index`: it must be the committed entry handed out for it. */
  private applying (index: number, data: Uint8Array | null): void {
    const entry = this.committed.get(index)
    if (entry === undefined) { throw new InvariantViolation(`${this.id} applied entry ${index}, which no Ready handed out as committed`) }
    if ((entry.type === 'normal') !== (data !== null) || (data !== null && data !== entry.data)) {
      throw new InvariantViolation(`${this.id} applied entry ${index} (${entry.type}) with other data than the log's`)
    }
    this.committed.delete(index)
    // the driver applies while it writes, but only entries already durable here (see its #durablePrefix)
    const { entries, snapshot } = this.disk.durable
    const lastDurable = entries.at(-1)?.index ?? snapshot?.meta.index ?? 0
    if (index > lastDurable) { throw new InvariantViolation(`durability: ${this.id} applies entry ${index} but its disk ends at ${lastDurable}`) }
    this.env.checker.observeApply(this.id, entry)
    if (entry.type === 'conf-change') { this.env.trace.add(`${this.id} applied ${entry.index}/${entry.term} conf ${textDecoder.decode(entry.data)}`) }
  }
}

function responseFor (opId: number, type: KvCommand['type'], result: KvApplyResult): ClientResponse {
  if (result.ok) { return { kind: 'ok', opId, output: type === 'cas' ? true : null } }
  if (result.reason === 'cas-mismatch') { return { kind: 'ok', opId, output: false } }
  return { kind: 'rejected', opId, reason: 'message' in result ? `${result.reason}: ${result.message}` : result.reason }
}

/** A RaftError as the simulated service layer answers it: 'retry' resends, 'invalid' fails the run, anything else redirects. */
function refusalFor (opId: number, err: unknown): ClientResponse {
  if (!(err instanceof RaftError)) { throw err }
  switch (err.code) {
    case 'retry': return { kind: 'retry', opId }
    case 'invalid': return { kind: 'rejected', opId, reason: err.message }
    default: return { kind: 'redirect', opId, leader: err.leader }
  }
}
