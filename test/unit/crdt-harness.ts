/**
 * Shared fast-check generators and a small lossy network for the CRDT
 * property tests: ops for every registered type, and scenarios of ops at
 * three replicas whose deltas travel with duplication, reordering and loss.
 */
import fc from 'fast-check'
import { crdtType, encodeState } from '../../protocols/crdt/index.ts'
import type { CrdtTypeName, JsonValue } from '../../protocols/crdt/index.ts'

export const REPLICAS = ['a', 'b', 'c']

const VALUES: JsonValue[] = [0, 1, 'a', 'b', null, true, { b: [2], a: 1 }, [1, 'x']]
const KEYS = ['k1', 'k2', 'k3']

const value = fc.constantFrom(...VALUES)
const key = fc.constantFrom(...KEYS)
const by = fc.integer({ min: 1, max: 100 })

function nestedMapOp (): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.record({ op: fc.constant('set'), key, value }),
    fc.record({ op: fc.constant('delete'), key })
  )
}

const OPS: Record<CrdtTypeName, fc.Arbitrary<unknown>> = {
  'g-counter': fc.record({ op: fc.constant('increment'), by }),
  'pn-counter': fc.record({ op: fc.constantFrom('increment', 'decrement'), by }),
  'g-set': fc.record({ op: fc.constant('add'), value }),
  'or-set': fc.record({ op: fc.constantFrom('add', 'remove'), value }),
  'lww-register': fc.record({ op: fc.constant('set'), value }),
  'mv-register': fc.record({ op: fc.constant('set'), value }),
  'or-map': fc.oneof(
    fc.record({ op: fc.constant('set'), key, value }),
    fc.record({ op: fc.constant('delete'), key }),
    fc.record({ op: fc.constant('update'), key, type: fc.constant('pn-counter'), update: fc.record({ op: fc.constantFrom('increment', 'decrement'), by }) }),
    fc.record({ op: fc.constant('update'), key, type: fc.constant('or-set'), update: fc.record({ op: fc.constantFrom('add', 'remove'), value }) }),
    fc.record({ op: fc.constant('update'), key, type: fc.constant('or-map'), update: nestedMapOp() })
  ),
  'lww-map': fc.oneof(
    fc.record({ op: fc.constant('set'), key, value }),
    fc.record({ op: fc.constant('delete'), key })
  ),
  // positions are fitted to the text at the replica (fitOp)
  rga: fc.oneof(
    { weight: 3, arbitrary: fc.record({ op: fc.constant('insert'), index: fc.nat(), text: fc.string({ minLength: 1, maxLength: 4 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('delete'), index: fc.nat(), length: fc.nat() }) }
  )
}

/**
 * Makes a generated op valid at `state`: rga positions are taken modulo the
 * text's length (a delete of an empty text becomes an insert).
 */
export function fitOp (name: CrdtTypeName, state: unknown, op: unknown): unknown {
  if (name !== 'rga') { return op }
  const length = (crdtType(name).value(state) as string).length
  const o = op as { op: string, index: number, text?: string, length?: number }
  if (o.op === 'insert' || length === 0) { return { op: 'insert', index: o.index % (length + 1), text: o.text ?? 'x' } }
  const index = o.index % length
  return { op: 'delete', index, length: 1 + (o.length ?? 0) % Math.min(3, length - index) }
}

export function opArbitrary (name: CrdtTypeName): fc.Arbitrary<unknown> {
  return OPS[name]
}

/** A step of a scenario: an op at a replica, or a network event on the queue of sent deltas. */
export type Step =
  | { kind: 'op', replica: number, op: unknown, advance: number }
  | { kind: 'deliver', pick: number, duplicate: boolean }
  | { kind: 'drop', pick: number }
  | { kind: 'sync', from: number, to: number }

export function stepsArbitrary (name: CrdtTypeName, maxLength = 30): fc.Arbitrary<Step[]> {
  const replica = fc.integer({ min: 0, max: REPLICAS.length - 1 })
  const pick = fc.nat()
  return fc.array(fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('op' as const), replica, op: OPS[name], advance: fc.integer({ min: 0, max: 3 }) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('deliver' as const), pick, duplicate: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), pick }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('sync' as const), from: replica, to: replica }) }
  ), { maxLength })
}

export interface ScenarioResult {
  /** Each replica's state at the end (before anti-entropy). */
  states: unknown[]
  /** Every delta any replica produced, in order. */
  deltas: unknown[]
}

/**
 * Runs a scenario: ops at replicas (each with its own clock skew), their
 * deltas queued to the other replicas and delivered in any order, several
 * times or never; occasionally a full state is pushed to another replica.
 */
export function runScenario (name: CrdtTypeName, steps: Step[]): ScenarioResult {
  const type = crdtType(name)
  const states: unknown[] = REPLICAS.map(() => type.empty())
  const deltas: unknown[] = []
  const queue: Array<{ to: number, delta: unknown }> = []
  let time = 1000
  for (const step of steps) {
    if (step.kind === 'op') {
      time += step.advance
      const delta = type.apply(states[step.replica], fitOp(name, states[step.replica], step.op), { replica: REPLICAS[step.replica], now: time + step.replica * 2 })
      if (!delta.ok) { throw new Error(`generated op refused: ${delta.error}`) }
      deltas.push(delta.value)
      states[step.replica] = type.join(states[step.replica], delta.value)
      for (let to = 0; to < REPLICAS.length; to++) {
        if (to !== step.replica) { queue.push({ to, delta: delta.value }) }
      }
    } else if (step.kind === 'sync') {
      states[step.to] = type.join(states[step.to], states[step.from])
    } else if (queue.length > 0) {
      const index = step.pick % queue.length
      const message = queue[index]
      if (step.kind === 'drop' || !step.duplicate) { queue.splice(index, 1) }
      if (step.kind === 'deliver') { states[message.to] = type.join(states[message.to], message.delta) }
    }
  }
  return { states, deltas }
}

export function joinAll (name: CrdtTypeName, states: unknown[]): unknown {
  const type = crdtType(name)
  return states.reduce((acc, s) => type.join(acc, s), type.empty())
}

/** States compare by their canonical encodings. */
export function hex (name: CrdtTypeName, state: unknown): string {
  return Buffer.from(encodeState(name, state)).toString('hex')
}
