/**
 * A linearizability checker for recorded client histories: the Wing–Gong
 * search with Lowe's memoization (WGL), partitioned per key as Porcupine
 * (anishathalye/porcupine) does. Linearizability is local (Herlihy & Wing),
 * so a history is linearizable iff every per-key sub-history is, and each
 * small sub-history is searched on its own.
 *
 * The search walks a doubly linked list of call/return entries sorted by
 * time. At a call entry it tries to linearize that operation next (the model
 * accepts the recorded output); at a return entry every operation that could
 * still go first has been tried, so it backtracks. A cache of (set of
 * linearized operations, model state) pairs prunes configurations already
 * explored, which is what keeps the search from being exponential on
 * ordinary histories.
 *
 * Pending operations (`return: Infinity`, the response never arrived) may
 * take effect anywhere after their call or not at all: the search succeeds
 * once every completed operation is linearized. They are what makes the
 * search blow up, so they get extra care: a relaxed pre-check (see
 * checkPartition), a dominance rule in the cache (fewer pending ops placed
 * beats more), symmetry between pending ops with equal inputs, and never
 * placing one that changes nothing or is overwritten by the very next op.
 *
 * Deterministic: no clocks, no randomness; `maxSteps` bounds the work and
 * yields `{ ok: 'unknown' }` instead of hanging.
 */

import { unreachable } from '../../protocols/common/assert.ts'

export interface Operation<Input, Output> {
  clientId: number | string
  input: Input
  /** When the client sent the request (any monotonic clock). */
  call: number
  /** The response; ignored (unknown) when `return` is Infinity. */
  output?: Output
  /** When the response arrived; Infinity when it never did. */
  return: number
}

export interface StepResult<State> {
  ok: boolean
  state: State
}

export interface Model<State, Input, Output> {
  init(): State
  /**
   * Apply `input` to `state`; `ok` says whether `output` is what the
   * specification allows. `output` is undefined for a pending operation: the
   * model must then accept whatever output the operation would have produced.
   * Must not mutate `state`.
   */
  step(state: State, input: Input, output: Output | undefined): StepResult<State>
  /** Canonical form of a state: two states are equal iff their hashes are. */
  hash(state: State): string
  /**
   * Optional canonical form of an input. When given, pending ops with equal
   * input hashes are treated as interchangeable, which prunes the search.
   */
  hashInput?(input: Input): string
  /** Split a history into independent sub-histories (e.g. one per key). */
  partition?(history: Array<Operation<Input, Output>>): Array<Array<Operation<Input, Output>>>
  /** A name for a sub-history in reports (e.g. its key). */
  describePartition?(history: Array<Operation<Input, Output>>): string
  describeOperation?(input: Input, output: Output | undefined): string
  describeState?(state: State): string
}

export interface CheckOptions {
  /** Upper bound on search steps over all partitions. Default 5,000,000. */
  maxSteps?: number
}

export interface Explanation<Input, Output> {
  /** The longest linearizable prefix the search found, in linearization order. */
  linearized: Array<Operation<Input, Output>>
  /** The model state after that prefix (describeState). */
  stateAfter: string
  /**
   * The earliest-returning operation not in the prefix: everything that could
   * have been linearized before its return was tried after the prefix and
   * none of it let the search continue.
   */
  blocking: Operation<Input, Output>
  /** Completed operations not in the prefix, by call time. */
  unplaced: Array<Operation<Input, Output>>
  /**
   * True when the rejection came from the relaxed pre-check (see
   * checkPartition), in which a pending op may take effect more than once:
   * `linearized` may then list a pending op several times.
   */
  pendingReused: boolean
  /** A human-readable rendering of the above. */
  text: string
}

export type CheckResult<Input, Output> =
  | { ok: true, steps: number, partitions: number }
  | {
    ok: false
    steps: number
    partitions: number
    /** Index of the failing partition in the model's partition order. */
    partition: number
    key?: string
    explanation: Explanation<Input, Output>
  }
  | { ok: 'unknown', steps: number, partitions: number, partition: number, key?: string, reason: string }

export const defaultMaxSteps = 5_000_000

const NIL = -1

/**
 * Check a whole history. Partitions are checked in order; the first
 * non-linearizable one is reported.
 */
export function checkOperations<State, Input, Output> (
  model: Model<State, Input, Output>,
  history: Array<Operation<Input, Output>>,
  options: CheckOptions = {}
): CheckResult<Input, Output> {
  const maxSteps = options.maxSteps ?? defaultMaxSteps
  if (!Number.isSafeInteger(maxSteps) || maxSteps < 1) {
    throw new RangeError(`maxSteps must be a positive integer, got ${maxSteps}`)
  }
  history.forEach(validateOperation)

  const partitions = model.partition?.(history) ?? [history]
  let steps = 0
  for (let p = 0; p < partitions.length; p++) {
    const ops = partitions[p]
    const key = ops.length > 0 ? model.describePartition?.(ops) : undefined
    const outcome = checkPartition(model, ops, maxSteps - steps)
    steps += outcome.steps
    if (outcome.kind === 'unknown') {
      return {
        ok: 'unknown',
        steps,
        partitions: partitions.length,
        partition: p,
        ...(key === undefined ? {} : { key }),
        reason: `step budget of ${maxSteps} exhausted while checking partition ${p}${key === undefined ? '' : ` (${key})`}`
      }
    }
    if (outcome.kind === 'illegal') {
      return {
        ok: false,
        steps,
        partitions: partitions.length,
        partition: p,
        ...(key === undefined ? {} : { key }),
        explanation: explain(model, ops, outcome, key)
      }
    }
  }
  return { ok: true, steps, partitions: partitions.length }
}

/**
 * Pending ops are what make refutation expensive: each may be placed
 * anywhere after its call or nowhere, and which ones were used is part of the
 * search state. So a partition with pending ops is first searched in a
 * relaxation where a pending op may take effect any number of times (the
 * configuration is then just (linearized completed ops, state), polynomial
 * in size). Every real linearization is a relaxed one, so a relaxed
 * rejection is a real rejection; only when the relaxation succeeds does the
 * exact search run, and a linearizable history usually yields to it fast.
 */
function checkPartition<State, Input, Output> (
  model: Model<State, Input, Output>,
  ops: Array<Operation<Input, Output>>,
  stepsMax: number
): SearchOutcome {
  if (!ops.some(isPending)) { return searchPartition(model, ops, stepsMax, false) }
  const relaxed = searchPartition(model, ops, stepsMax, true)
  if (relaxed.kind !== 'ok') { return relaxed }
  const exact = searchPartition(model, ops, stepsMax - relaxed.steps, false)
  return { ...exact, steps: relaxed.steps + exact.steps }
}

export function isPending (op: Operation<unknown, unknown>): boolean {
  return op.return === Infinity
}

function validateOperation (op: Operation<unknown, unknown>, i: number): void {
  if (typeof op.call !== 'number' || !Number.isFinite(op.call)) {
    throw new TypeError(`operation ${i}: call must be a finite number, got ${String(op.call)}`)
  }
  if (typeof op.return !== 'number' || Number.isNaN(op.return) || op.return < op.call) {
    throw new TypeError(`operation ${i}: return must be a number >= call (or Infinity), got ${String(op.return)}`)
  }
}

type SearchOutcome =
  | { kind: 'ok', steps: number }
  | { kind: 'unknown', steps: number }
  | { kind: 'illegal', steps: number, prefix: number[], prefixState: unknown, blocking: number, pendingReused: boolean }

interface Frame<State> {
  /** the op index (into the partition) that this frame linearized */
  op: number
  /** its call entry when completed; NIL when pending */
  entry: number
  /** its position in pendingOrder when pending; NIL when completed */
  pendingPos: number
  /** its class (see pendingClasses) when pending */
  pendingClass: number
  /** when pending: the horizon and first return entry it was placed under */
  horizon: number
  firstReturn: number
  state: State
  stateHash: string
}

/**
 * The WGL search over one partition. Completed ops live in a doubly linked
 * list of call/return entries in time order (Porcupine's layout): the call
 * entries before the first return entry are the ops that may go next.
 * Pending ops are kept apart, sorted by call: one may go next when its call
 * is no later than that first return (its own return never constrains).
 * At each configuration the completed candidates are tried first and the
 * pending ones after, so that the dominance rule of the cache (see
 * `remember`) sees "without this pending op" before "with it".
 */
function searchPartition<State, Input, Output> (
  model: Model<State, Input, Output>,
  ops: Array<Operation<Input, Output>>,
  stepsMax: number,
  reusePending: boolean
): SearchOutcome {
  const completed: number[] = []
  const pendingOrder: number[] = []
  ops.forEach((op, i) => { (isPending(op) ? pendingOrder : completed).push(i) })
  pendingOrder.sort((a, b) => ops[a].call - ops[b].call || a - b)
  const c = completed.length
  const m = pendingOrder.length
  // entry k < c is the call of ops[completed[k]], entry c + k its return
  const { next, prev, head } = buildEntryList(completed.map(i => ops[i]))
  const lift = (call: number): void => {
    next[prev[call]] = next[call]
    prev[next[call]] = prev[call]
    const ret = c + call
    next[prev[ret]] = next[ret]
    if (next[ret] !== NIL) { prev[next[ret]] = prev[ret] }
  }
  const unlift = (call: number): void => {
    const ret = c + call
    next[prev[ret]] = ret
    if (next[ret] !== NIL) { prev[next[ret]] = ret }
    next[prev[call]] = call
    prev[next[call]] = call
  }

  // Symmetry: pending ops with equal inputs are interchangeable once both
  // are callable, so they form a class (positions in call order) of which
  // only the earliest-called unplaced member is tried; the placed members
  // always form a prefix of the class. Classes are ordered by first call.
  const pendingClasses: number[][] = []
  const classOfInput = new Map<string, number[]>()
  for (let pos = 0; pos < m; pos++) {
    const inputHash = model.hashInput?.(ops[pendingOrder[pos]].input)
    const members = inputHash === undefined ? undefined : classOfInput.get(inputHash)
    if (members !== undefined) {
      members.push(pos)
    } else {
      const fresh = [pos]
      pendingClasses.push(fresh)
      if (inputHash !== undefined) { classOfInput.set(inputHash, fresh) }
    }
  }
  const placedInClass = new Int32Array(pendingClasses.length)
  const pendingCall = (pos: number): number => ops[pendingOrder[pos]].call

  // The cache holds, per (linearized completed ops, model state), the sets of
  // pending ops linearized on the way there. A configuration whose pending
  // set is a superset of a cached one is dominated: unplaced pending ops
  // never constrain anything and are optional, so the configuration with
  // fewer of them placed can do all it can. With no pending ops this is the
  // classic exact (bitset, state) cache.
  const completedBits = new Uint16Array(Math.ceil(c / 16))
  const pendingBits = new Uint16Array(Math.ceil(m / 16))
  const cache = new Map<string, Uint16Array[]>()
  /** Records the current configuration; false when it or a dominating one was seen. */
  const remember = (stateHash: string): boolean => {
    const key = bitsetKey(completedBits) + stateHash
    const seen = cache.get(key)
    if (seen === undefined) {
      cache.set(key, [pendingBits.slice()])
      return true
    }
    if (seen.some(other => isSubset(other, pendingBits))) { return false }
    // keep the list an antichain: drop the sets this one dominates
    const kept = seen.filter(other => !isSubset(pendingBits, other))
    kept.push(pendingBits.slice())
    cache.set(key, kept)
    return true
  }

  const stack: Array<Frame<State>> = []
  let state = model.init()
  let stateHash = model.hash(state)
  let steps = 0
  let best: { prefix: number[], state: unknown, blocking: number } | undefined

  // the cursor: scanning completed candidates (entry), or pending classes (cls)
  let scanningPending = false
  let entry = next[head]
  let cls = 0
  let horizon = 0
  let firstReturn = NIL

  const place = (frame: Frame<State>, nextState: State, nextHash: string): void => {
    stack.push(frame)
    state = nextState
    stateHash = nextHash
    scanningPending = false
    entry = next[head]
  }

  /**
   * True when the op about to be placed would reach the same state had the
   * pending op on top of the stack never been placed: then "pending op, then
   * this op" is dominated by "this op alone" (same completed set, same state,
   * one pending op fewer), which is a sibling configuration. This stops the
   * search from chaining unobserved pending writes in every subset order.
   */
  const overwritesPendingTop = (input: Input, output: Output | undefined, nextHash: string): boolean => {
    const top = stack[stack.length - 1]
    if (top === undefined || top.pendingPos === NIL) { return false }
    const without = model.step(top.state, input, output)
    return without.ok && model.hash(without.state) === nextHash
  }

  /** Tries to linearize the completed op of call entry `k` next; true if placed. */
  const tryCompleted = (k: number): boolean => {
    const op = completed[k]
    const result = model.step(state, ops[op].input, ops[op].output)
    if (!result.ok) { return false }
    const nextHash = model.hash(result.state)
    if (overwritesPendingTop(ops[op].input, ops[op].output, nextHash)) { return false }
    setBit(completedBits, k)
    if (!remember(nextHash)) {
      clearBit(completedBits, k)
      return false
    }
    lift(k)
    place({ op, entry: k, pendingPos: NIL, pendingClass: NIL, horizon: 0, firstReturn: NIL, state, stateHash }, result.state, nextHash)
    return true
  }

  /** Tries to linearize the earliest unplaced member of pending class `k` next; true if placed. */
  const tryPending = (k: number): boolean => {
    const pos = pendingClasses[k][placedInClass[k]]
    const op = pendingOrder[pos]
    const result = model.step(state, ops[op].input, undefined)
    if (!result.ok) { return false }
    const nextHash = model.hash(result.state)
    // a pending op that leaves the state unchanged is never worth placing
    // (the configuration without it dominates the one with it)
    if (nextHash === stateHash || overwritesPendingTop(ops[op].input, undefined, nextHash)) { return false }
    if (!reusePending) { setBit(pendingBits, pos) }
    if (!remember(nextHash)) {
      clearBit(pendingBits, pos)
      return false
    }
    if (!reusePending) { placedInClass[k]++ }
    place({ op, entry: NIL, pendingPos: pos, pendingClass: k, horizon, firstReturn, state, stateHash }, result.state, nextHash)
    return true
  }

  /** The first class from `k` on whose earliest unplaced member is callable, or the class count. */
  const nextCallableClass = (k: number): number => {
    // classes are ordered by first call: past the horizon, nothing later is callable
    for (; k < pendingClasses.length && pendingCall(pendingClasses[k][0]) <= horizon; k++) {
      const members = pendingClasses[k]
      if (placedInClass[k] < members.length && pendingCall(members[placedInClass[k]]) <= horizon) { return k }
    }
    return pendingClasses.length
  }

  while (next[head] !== NIL) {
    if (steps >= stepsMax) { return { kind: 'unknown', steps } }
    steps++
    if (!scanningPending) {
      if (entry === NIL) { throw new Error('linearizability checker bug: ran off the end of the entry list') }
      if (entry < c) {
        if (!tryCompleted(entry)) { entry = next[entry] }
      } else {
        // the first return entry: every completed candidate has been tried
        firstReturn = entry
        horizon = ops[completed[entry - c]].return
        scanningPending = true
        cls = 0
      }
      continue
    }

    cls = nextCallableClass(cls)
    if (cls < pendingClasses.length) {
      if (!tryPending(cls)) { cls++ }
      continue
    }

    // nothing can go next: backtrack
    if (best === undefined || stack.length > best.prefix.length) {
      best = { prefix: stack.map(f => f.op), state, blocking: completed[firstReturn - c] }
    }
    const top = stack.pop()
    if (top === undefined) {
      return { kind: 'illegal', steps, prefix: best.prefix, prefixState: best.state, blocking: best.blocking, pendingReused: reusePending }
    }
    state = top.state
    stateHash = top.stateHash
    if (top.pendingPos === NIL) {
      clearBit(completedBits, top.entry)
      unlift(top.entry)
      scanningPending = false
      entry = next[top.entry]
    } else {
      if (!reusePending) {
        clearBit(pendingBits, top.pendingPos)
        placedInClass[top.pendingClass]--
      }
      scanningPending = true
      cls = top.pendingClass + 1
      horizon = top.horizon
      firstReturn = top.firstReturn
    }
  }
  return { kind: 'ok', steps }
}

/**
 * A doubly linked list over 2n entries (calls 0..n-1, returns n..2n-1) plus a
 * head sentinel at 2n, in time order; at equal times calls sort before
 * returns, so touching intervals count as concurrent.
 */
function buildEntryList (ops: Array<Operation<unknown, unknown>>): { next: Int32Array, prev: Int32Array, head: number } {
  const n = ops.length
  const order: number[] = []
  for (let i = 0; i < 2 * n; i++) { order.push(i) }
  const time = (e: number): number => e < n ? ops[e].call : ops[e - n].return
  order.sort((a, b) => {
    const ta = time(a)
    const tb = time(b)
    if (ta !== tb) { return ta < tb ? -1 : 1 }
    const aIsCall = a < n
    const bIsCall = b < n
    if (aIsCall !== bIsCall) { return aIsCall ? -1 : 1 }
    return a - b
  })
  const head = 2 * n
  const next = new Int32Array(2 * n + 1).fill(NIL)
  const prev = new Int32Array(2 * n + 1).fill(NIL)
  let last = head
  for (const e of order) {
    next[last] = e
    prev[e] = last
    last = e
  }
  return { next, prev, head }
}

function setBit (bits: Uint16Array, i: number): void {
  bits[i >>> 4] |= 1 << (i & 15)
}

function clearBit (bits: Uint16Array, i: number): void {
  bits[i >>> 4] &= ~(1 << (i & 15))
}

function isSubset (a: Uint16Array, b: Uint16Array): boolean {
  for (let i = 0; i < a.length; i++) { if ((a[i] & ~b[i]) !== 0) { return false } }
  return true
}

/** Fixed-length (ceil(n/16) chars) exact encoding of the bitset. */
function bitsetKey (bits: Uint16Array): string {
  const chunk = 4096
  if (bits.length <= chunk) { return String.fromCharCode(...bits) }
  let out = ''
  for (let i = 0; i < bits.length; i += chunk) { out += String.fromCharCode(...bits.subarray(i, i + chunk)) }
  return out
}

function explain<State, Input, Output> (
  model: Model<State, Input, Output>,
  ops: Array<Operation<Input, Output>>,
  outcome: Extract<SearchOutcome, { kind: 'illegal' }>,
  key: string | undefined
): Explanation<Input, Output> {
  const describeOp = (op: Operation<Input, Output>): string => {
    const what = model.describeOperation?.(op.input, isPending(op) ? undefined : op.output) ??
      `${JSON.stringify(op.input)} -> ${isPending(op) ? '?' : JSON.stringify(op.output)}`
    return `client ${op.clientId}: ${what}  [${op.call}, ${isPending(op) ? '∞' : op.return}]`
  }
  const describeState = model.describeState ?? ((s: State) => JSON.stringify(s))
  const inPrefix = new Set(outcome.prefix)
  const linearized = outcome.prefix.map(i => ops[i])
  const unplaced = ops
    .map((op, i) => ({ op, i }))
    .filter(({ op, i }) => !inPrefix.has(i) && !isPending(op))
    .sort((a, b) => a.op.call - b.op.call || a.i - b.i)
    .map(({ op }) => op)
  const blocking = ops[outcome.blocking]
  const stateAfter = describeState(outcome.prefixState as State)
  const lines = [
    `not linearizable${key === undefined ? '' : ` (${key})`}`,
    `longest linearizable prefix (${linearized.length} of ${ops.length} ops)${outcome.pendingReused ? ', letting pending ops take effect more than once' : ''}:`,
    ...linearized.map(op => `  ${describeOp(op)}`),
    `state after prefix: ${stateAfter}`,
    `cannot be placed next: ${describeOp(blocking)}`,
    '(nor can any operation concurrent with it)',
    `completed ops left unplaced (${unplaced.length}):`,
    ...unplaced.slice(0, 20).map(op => `  ${describeOp(op)}`),
    ...(unplaced.length > 20 ? [`  ... and ${unplaced.length - 20} more`] : [])
  ]
  return { linearized, stateAfter, blocking, unplaced, pendingReused: outcome.pendingReused, text: lines.join('\n') }
}

// ---------------------------------------------------------------------------
// A key-value store model

export type KvInput =
  | { op: 'put', key: string, value: string }
  | { op: 'get', key: string }
  | { op: 'delete', key: string }
  /** expected null means "key absent" */
  | { op: 'cas', key: string, expected: string | null, value: string }

/** get: the value or null; cas: whether it swapped; put/delete: ignored. */
export type KvOutput = string | null | boolean

/** The store; treated as immutable (step copies on write). */
export type KvState = ReadonlyMap<string, string>

export type KvOperation = Operation<KvInput, KvOutput>

function withValue (state: KvState, key: string, value: string | null): KvState {
  const next = new Map(state)
  if (value === null) { next.delete(key) } else { next.set(key, value) }
  return next
}

export const kvModel: Model<KvState, KvInput, KvOutput> = {
  init: () => new Map(),
  step (state, input, output) {
    const current = state.get(input.key) ?? null
    switch (input.op) {
      case 'put':
        return { ok: true, state: withValue(state, input.key, input.value) }
      case 'delete':
        return { ok: true, state: current === null ? state : withValue(state, input.key, null) }
      case 'get':
        return { ok: output === undefined || output === current, state }
      case 'cas': {
        const swaps = current === input.expected
        if (output !== undefined && output !== swaps) { return { ok: false, state } }
        return { ok: true, state: swaps ? withValue(state, input.key, input.value) : state }
      }
      default:
        return unreachable(input)
    }
  },
  hashInput: (input) => JSON.stringify([input.op, input.key, 'expected' in input ? input.expected : undefined, 'value' in input ? input.value : undefined]),
  // keys are unique, so the comparator never sees equal ones
  hash: (state) => JSON.stringify([...state].sort(([a], [b]) => a < b ? -1 : 1)),
  partition (history) {
    const byKey = new Map<string, KvOperation[]>()
    for (const op of history) {
      let ops = byKey.get(op.input.key)
      if (ops === undefined) {
        ops = []
        byKey.set(op.input.key, ops)
      }
      ops.push(op)
    }
    return [...byKey.keys()].sort().map(key => byKey.get(key) ?? [])
  },
  describePartition: (history) => `key ${JSON.stringify(history[0].input.key)}`,
  describeOperation (input, output) {
    const out = output === undefined ? '?' : JSON.stringify(output)
    switch (input.op) {
      case 'put': return `put(${JSON.stringify(input.key)}, ${JSON.stringify(input.value)})${output === undefined ? ' -> ?' : ''}`
      case 'delete': return `delete(${JSON.stringify(input.key)})${output === undefined ? ' -> ?' : ''}`
      case 'get': return `get(${JSON.stringify(input.key)}) -> ${out}`
      case 'cas': return `cas(${JSON.stringify(input.key)}, ${JSON.stringify(input.expected)}, ${JSON.stringify(input.value)}) -> ${out}`
      default: return unreachable(input)
    }
  },
  describeState: (state) => state.size === 0 ? '{}' : `{ ${[...state].map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(', ')} }`
}
