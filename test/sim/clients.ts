/**
 * Simulated KV clients. Each runs one operation at a time (put, get,
 * delete, cas on a few shared keys), sends it to a node, follows redirects
 * to the leader, and retries on timeout, possibly at another node. Writes
 * carry a client session (clientId, sequence) and are retried with the same
 * sequence until answered, so the state machine applies each exactly once;
 * reads go through ReadIndex. Every operation lands in the history with its
 * call and return times; a write never answered is recorded as pending
 * (return: Infinity), since it may or may not have taken effect. Every
 * written value is unique, which keeps the linearizability check fast.
 */
import { unreachable } from '../../protocols/common/assert.ts'
import type { Scheduler } from './scheduler.ts'
import type { Trace } from './trace.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { KvCommand } from '../../protocols/kv/index.ts'
import type { NodeId } from '../../protocols/raft/index.ts'
import type { KvInput, KvOperation, KvOutput } from '../lib/linearizability.ts'

export type ClientRequest =
  | { kind: 'write', clientId: string, opId: number, command: KvCommand }
  | { kind: 'read', clientId: string, opId: number, attempt: number, key: string }

export type ClientResponse =
  /** output: the value read, cas's swapped flag, or null for put and delete. */
  | { kind: 'ok', opId: number, output: KvOutput }
  /** Not the leader (or cannot serve now); `leader` is its best guess. */
  | { kind: 'redirect', opId: number, leader: NodeId | null }
  /** The proposal was overwritten in the log: send it again. */
  | { kind: 'retry', opId: number }
  /** The state machine refused the command (never expected in a correct run). */
  | { kind: 'rejected', opId: number, reason: string }

export interface ClientEnv {
  scheduler: Scheduler
  trace: Trace
  /** Nodes a client may contact. */
  servers(): NodeId[]
  /** Sends a request; it arrives at the node after some latency, unless lost. */
  sendRequest(node: NodeId, request: ClientRequest): void
  record(op: KvOperation): void
  /** A broken promise of the protocol: fails the run. */
  fail(message: string): void
}

export interface ClientSettings {
  keys: string[]
  timeoutMs: number
  /** A client gives up on an operation after this many timeouts (see abandon()). */
  timeoutsMax: number
  thinkMsMax: number
  /** Share of operations that are reads (get). */
  readRatio: number
}

interface InFlight {
  opId: number
  input: KvInput
  callMs: number
  command: KvCommand | null
  attempt: number
  timeouts: number
  target: NodeId
}

export class SimClient {
  readonly id: string
  private readonly rng: Rng
  private readonly env: ClientEnv
  private readonly settings: ClientSettings
  private sequence = 0
  private opCount = 0
  private valueCount = 0
  private current: InFlight | null = null
  private leaderHint: NodeId | null = null
  /** The last value this client saw per key: what its cas operations expect. */
  private readonly seen = new Map<string, string | null>()
  private stopped = false
  private readonly queued: KvInput[] = []
  readonly stats = { ops: 0, attempts: 0, timeouts: 0, redirects: 0 }

  constructor (id: string, rng: Rng, env: ClientEnv, settings: ClientSettings) {
    this.id = id
    this.rng = rng
    this.env = env
    this.settings = settings
  }

  get idle (): boolean {
    return this.current === null
  }

  start (): void {
    this.env.scheduler.after(this.rng.intBetween(0, this.settings.thinkMsMax), () => { this.next() })
  }

  /** No new random operations from now on (the one in flight still completes). */
  stop (): void {
    this.stopped = true
  }

  /** Runs exactly these operations next, in order (after the current one). */
  enqueue (inputs: KvInput[]): void {
    this.queued.push(...inputs)
    if (this.current === null) { this.next() }
  }

  /**
   * Gives up on the operation in flight, if any: a write is recorded as
   * pending (it may still take effect, but only before the client's next
   * write: the session refuses an older sequence after a newer one).
   */
  abandon (): void {
    const op = this.current
    if (op === null) { return }
    this.current = null
    // A read that never returned constrains nothing; a write may have taken effect.
    if (op.command !== null) {
      this.env.record({ clientId: this.id, input: op.input, call: op.callMs, return: Infinity })
    }
    this.env.trace.add(`client ${this.id} op ${op.opId} abandoned`)
  }

  onResponse (response: ClientResponse): void {
    const op = this.current
    if (op === null || response.opId !== op.opId) { return } // an answer to an earlier attempt of a finished op
    switch (response.kind) {
      case 'ok':
        this.complete(op, response.output)
        return
      case 'redirect': {
        this.stats.redirects++
        const leader = response.leader
        if (leader !== null && leader !== op.target) {
          this.leaderHint = leader
          this.retry(op, leader, 1)
        } else {
          this.leaderHint = null
          this.retry(op, this.otherServer(op.target), this.rng.intBetween(10, 40))
        }
        return
      }
      case 'retry':
        this.retry(op, op.target, 1)
        return
      case 'rejected':
        this.env.fail(`client ${this.id}: operation ${op.opId} (${JSON.stringify(op.input)}) was rejected: ${response.reason}`)
        return
      default:
        throw new Error(`unknown response ${JSON.stringify(response)}`)
    }
  }

  private next (): void {
    if (this.current !== null) { return }
    const input = this.queued.shift() ?? (this.stopped ? undefined : this.randomInput())
    if (input === undefined) { return }
    const opId = ++this.opCount
    const command = this.commandFor(input)
    // Mostly the last node that answered; sometimes any node, as behind a load balancer.
    const target = this.leaderHint !== null && this.rng.chance(0.7) ? this.leaderHint : this.randomServer()
    this.current = { opId, input, callMs: this.env.scheduler.now, command, attempt: 0, timeouts: 0, target }
    this.stats.ops++
    this.env.trace.add(`client ${this.id} op ${opId}: ${describeInput(input)}`)
    this.send(this.current)
  }

  private send (op: InFlight): void {
    op.attempt++
    this.stats.attempts++
    const attempt = op.attempt
    const request: ClientRequest = op.command === null
      ? { kind: 'read', clientId: this.id, opId: op.opId, attempt, key: op.input.key }
      : { kind: 'write', clientId: this.id, opId: op.opId, command: op.command }
    this.env.sendRequest(op.target, request)
    this.env.scheduler.after(this.settings.timeoutMs, () => {
      if (this.current !== op || op.attempt !== attempt) { return }
      this.stats.timeouts++
      this.leaderHint = null
      // Sequence 1 is never given up: it opens the session, and later
      // sequences would find no session if it never took effect.
      if (++op.timeouts >= this.settings.timeoutsMax && op.command?.session.sequence !== 1) {
        this.abandon()
        this.next()
        return
      }
      this.retry(op, this.otherServer(op.target), 0)
    })
  }

  private retry (op: InFlight, target: NodeId, delayMs: number): void {
    const attempt = op.attempt
    this.env.scheduler.after(delayMs, () => {
      // Skip if an answer came meanwhile, or another retry already went out.
      if (this.current !== op || op.attempt !== attempt) { return }
      op.target = target
      this.send(op)
    })
  }

  private complete (op: InFlight, output: KvOutput): void {
    this.current = null
    this.leaderHint = op.target
    const { input } = op
    this.env.record({ clientId: this.id, input, call: op.callMs, return: this.env.scheduler.now, output })
    this.env.trace.add(`client ${this.id} op ${op.opId} returned ${JSON.stringify(output)}`)
    if (input.op === 'get') { this.seen.set(input.key, output as string | null) }
    if (input.op === 'put') { this.seen.set(input.key, input.value) }
    if (input.op === 'delete') { this.seen.set(input.key, null) }
    if (input.op === 'cas' && output === true) { this.seen.set(input.key, input.value) }
    this.env.scheduler.after(this.rng.intBetween(0, this.settings.thinkMsMax), () => { this.next() })
  }

  private randomInput (): KvInput {
    const { keys } = this.settings
    const key = keys[this.rng.intBetween(0, keys.length - 1)]
    const roll = this.rng.nextFloat()
    const { readRatio } = this.settings
    // Writes split 45% put, 40% cas, 15% delete.
    const write = (roll - readRatio) / (1 - readRatio)
    if (roll < readRatio) { return { op: 'get', key } }
    if (write < 0.45) { return { op: 'put', key, value: this.uniqueValue() } }
    if (write < 0.85) {
      const expected = this.rng.chance(0.8) ? (this.seen.get(key) ?? null) : null
      return { op: 'cas', key, expected, value: this.uniqueValue() }
    }
    return { op: 'delete', key }
  }

  private uniqueValue (): string {
    return `${this.id}.${++this.valueCount}`
  }

  private commandFor (input: KvInput): KvCommand | null {
    if (input.op === 'get') { return null }
    const session = { clientId: this.id, sequence: ++this.sequence }
    const encode = (s: string): Uint8Array => new TextEncoder().encode(s)
    switch (input.op) {
      case 'put': return { type: 'put', session, key: input.key, value: encode(input.value) }
      case 'delete': return { type: 'delete', session, key: input.key }
      case 'cas': return { type: 'cas', session, key: input.key, expected: input.expected === null ? null : encode(input.expected), value: encode(input.value) }
      default: return unreachable(input)
    }
  }

  private randomServer (): NodeId {
    const servers = this.env.servers()
    return servers[this.rng.intBetween(0, servers.length - 1)]
  }

  private otherServer (not: NodeId): NodeId {
    const servers = this.env.servers().filter(id => id !== not)
    return servers.length === 0 ? not : servers[this.rng.intBetween(0, servers.length - 1)]
  }
}

function describeInput (input: KvInput): string {
  switch (input.op) {
    case 'get': return `get ${input.key}`
    case 'put': return `put ${input.key}=${input.value}`
    case 'delete': return `delete ${input.key}`
    case 'cas': return `cas ${input.key} ${input.expected ?? '(absent)'} -> ${input.value}`
    default: return unreachable(input)
  }
}
