/**
 * Simulated KV clients, each a real PbftClientDriver (node/pbft) on the
 * simulator's runtime. A client runs one operation at a time (put, get,
 * delete, cas on a few shared keys; gets ordered or read-only), and records
 * it in the history with its call and return times; one never answered is
 * pending (return: Infinity). Its first operation is a put: a client's KV
 * session starts at its first request's timestamp (see the report on
 * session starts in node/pbft/operations.ts). Written values are unique,
 * which keeps the linearizability check fast.
 */
import { PbftClientDriver } from '../../../node/pbft/client-driver.ts'
import { decodeResult, encodeOperation } from '../../../node/pbft/operations.ts'
import { unreachable } from '../../../protocols/common/assert.ts'
import type { PbftOperation } from '../../../node/pbft/operations.ts'
import type { DriverRuntime } from '../../../node/runtime.ts'
import type { Rng } from '../../../protocols/common/rng.ts'
import type { NodeId, PbftCrypto, PbftMessage, Reply } from '../../../protocols/pbft/types.ts'
import type { KvInput, KvOperation, KvOutput } from '../../lib/linearizability.ts'

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

export interface SimClientEnv {
  runtime: DriverRuntime
  now(): number
  send(from: NodeId, to: NodeId, message: PbftMessage): void
  record(op: KvOperation): void
  trace(line: string): void
  /** A result the protocol must never give (a refused command, a malformed result): fails the run. */
  fail(message: string): void
}

export interface SimClientSettings {
  keys: string[]
  readRatio: number
  thinkMsMax: number
  tickMs: number
  retransmitMs: number
}

export class SimPbftClient {
  readonly id: NodeId
  readonly driver: PbftClientDriver
  private readonly rng: Rng
  private readonly env: SimClientEnv
  private readonly settings: SimClientSettings
  private valueCount = 0
  private busy = false
  private stopped = false
  private readonly queued: KvInput[] = []
  /** The last value this client saw per key: what its cas operations expect. */
  private readonly seen = new Map<string, string | null>()
  readonly stats = { ops: 0, readOnly: 0 }

  constructor (id: NodeId, replicas: NodeId[], crypto: PbftCrypto, rng: Rng, env: SimClientEnv, settings: SimClientSettings) {
    this.id = id
    this.rng = rng
    this.env = env
    this.settings = settings
    this.driver = new PbftClientDriver({
      id,
      replicas,
      crypto,
      send: (to, message) => { env.send(id, to, message) },
      runtime: env.runtime,
      tickIntervalMs: settings.tickMs,
      retransmitMs: settings.retransmitMs,
      outstandingMax: 4
    })
  }

  /** Starts issuing random operations, a put first. */
  start (): void {
    this.driver.start()
    this.queued.push({ op: 'put', key: this.settings.keys[0], value: this.nextValue() })
    this.next()
  }

  /** Issues no new random operation; the one in flight goes on. */
  stop (): void {
    this.stopped = true
  }

  /** Runs these operations after the current one, even when stopped. */
  enqueue (ops: KvInput[]): void {
    this.queued.push(...ops)
    if (!this.busy) { this.next() }
  }

  get idle (): boolean {
    return !this.busy && this.queued.length === 0
  }

  receive (reply: Reply, link: NodeId): void {
    this.driver.receive(reply, link)
  }

  private next (): void {
    if (this.busy) { return }
    const input = this.queued.shift() ?? (this.stopped ? undefined : this.randomOperation())
    if (input === undefined) { return }
    this.busy = true
    const think = this.queued.length > 0 ? 0 : this.rng.intBetween(0, this.settings.thinkMsMax)
    this.env.runtime.setTimeout(() => { this.issue(input) }, think)
  }

  private issue (input: KvInput): void {
    const readOnly = input.op === 'get' && this.rng.chance(0.5)
    if (readOnly) { this.stats.readOnly++ }
    const op: KvOperation = { clientId: this.id, input, call: this.env.now(), return: Infinity }
    this.env.record(op)
    this.stats.ops++
    this.env.trace(`${this.id} calls ${describeInput(input)}${readOnly ? ' read-only' : ''}`)
    this.driver.submit(encodeOperation(operationOf(input)), { readOnly }).then(bytes => {
      const output = this.outputOf(input, bytes)
      op.output = output
      op.return = this.env.now()
      this.env.trace(`${this.id} got ${describeInput(input)} -> ${JSON.stringify(output)}`)
      if (input.op === 'get') { this.seen.set(input.key, output as string | null) }
      if (input.op === 'put' || (input.op === 'cas' && output === true)) { this.seen.set(input.key, input.value) }
      this.busy = false
      this.next()
    }, (err: Error) => {
      // stopped at the end of the run: the operation stays pending
      this.env.trace(`${this.id} gave up ${describeInput(input)}: ${err.message}`)
    })
  }

  private outputOf (input: KvInput, bytes: Uint8Array): KvOutput {
    const decoded = decodeResult(bytes)
    if (!decoded.ok) {
      this.env.fail(`${this.id}: the replicas agreed on a malformed result for ${describeInput(input)}: ${decoded.error}`)
      return null
    }
    const { result } = decoded
    if (input.op === 'get') {
      if (result.type === 'value') { return result.value === null ? null : textDecoder.decode(result.value) }
    } else if (result.type === 'kv') {
      const kv = result.result
      if (input.op === 'cas' && (kv.ok || kv.reason === 'cas-mismatch')) { return kv.ok }
      if (input.op !== 'cas' && kv.ok) { return null }
    }
    this.env.fail(`${this.id}: ${describeInput(input)} got ${JSON.stringify(result)}`)
    return null
  }

  private randomOperation (): KvInput {
    const key = this.settings.keys[this.rng.intBetween(0, this.settings.keys.length - 1)]
    if (this.rng.chance(this.settings.readRatio)) { return { op: 'get', key } }
    const roll = this.rng.nextFloat()
    if (roll < 0.5) { return { op: 'put', key, value: this.nextValue() } }
    if (roll < 0.7) { return { op: 'delete', key } }
    return { op: 'cas', key, expected: this.seen.get(key) ?? null, value: this.nextValue() }
  }

  private nextValue (): string {
    return `${this.id}-${++this.valueCount}`
  }
}

function operationOf (input: KvInput): PbftOperation {
  switch (input.op) {
    case 'get': return { type: 'get', key: input.key }
    case 'put': return { type: 'kv', command: { type: 'put', key: input.key, value: textEncoder.encode(input.value) } }
    case 'delete': return { type: 'kv', command: { type: 'delete', key: input.key } }
    case 'cas': return { type: 'kv', command: { type: 'cas', key: input.key, expected: input.expected === null ? null : textEncoder.encode(input.expected), value: textEncoder.encode(input.value) } }
    default: return unreachable(input)
  }
}

export function describeInput (input: KvInput): string {
  switch (input.op) {
    case 'get': return `get(${input.key})`
    case 'put': return `put(${input.key}, ${input.value})`
    case 'delete': return `delete(${input.key})`
    case 'cas': return `cas(${input.key}, ${String(input.expected)}, ${input.value})`
    default: return unreachable(input)
  }
}
