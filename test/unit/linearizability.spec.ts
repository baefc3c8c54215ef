import { expect } from 'aegir/chai'
import { unreachable } from '../../protocols/common/assert.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { checkOperations, isPending, kvModel } from '../lib/linearizability.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { KvInput, KvOperation, KvOutput, KvState, Model } from '../lib/linearizability.ts'

// fast-check is not installed; property tests draw from the seeded rng instead.

const P = Infinity

function put (clientId: number, key: string, value: string, call: number, ret: number): KvOperation {
  return { clientId, input: { op: 'put', key, value }, call, output: null, return: ret }
}
function del (clientId: number, key: string, call: number, ret: number): KvOperation {
  return { clientId, input: { op: 'delete', key }, call, output: null, return: ret }
}
function get (clientId: number, key: string, output: string | null, call: number, ret: number): KvOperation {
  return { clientId, input: { op: 'get', key }, call, output, return: ret }
}
function cas (clientId: number, key: string, expected: string | null, value: string, output: boolean, call: number, ret: number): KvOperation {
  return { clientId, input: { op: 'cas', key, expected, value }, call, output, return: ret }
}

/** The same model without per-key partitioning: one search over everything. */
const kvModelWhole: Model<KvState, KvInput, KvOutput> = { ...kvModel, partition: undefined, describePartition: undefined }

function expectLinearizable (history: KvOperation[]): void {
  const result = checkOperations(kvModel, history)
  expect(result.ok, result.ok === false ? result.explanation.text : JSON.stringify(result)).to.equal(true)
  expect(checkOperations(kvModelWhole, history).ok).to.equal(true)
}

function expectNotLinearizable (history: KvOperation[]): void {
  const result = checkOperations(kvModel, history)
  expect(result.ok).to.equal(false)
  expect(checkOperations(kvModelWhole, history).ok).to.equal(false)
}

describe('linearizability checker (WGL, per-key partitions)', () => {
  describe('accepts linearizable histories', () => {
    it('an empty history', () => {
      expect(checkOperations(kvModel, [])).to.deep.include({ ok: true, partitions: 0 })
    })

    it('a sequential history over several keys', () => {
      expectLinearizable([
        put(1, 'x', '1', 0, 1),
        get(1, 'x', '1', 2, 3),
        put(2, 'y', 'a', 4, 5),
        cas(2, 'x', '1', '2', true, 6, 7),
        cas(1, 'x', '1', '3', false, 8, 9),
        get(2, 'x', '2', 10, 11),
        del(1, 'x', 12, 13),
        get(1, 'x', null, 14, 15),
        cas(1, 'x', null, '9', true, 16, 17),
        get(2, 'y', 'a', 18, 19),
        get(2, 'x', '9', 20, 21)
      ])
    })

    it('reads overlapping a write that see the old or the new value', () => {
      expectLinearizable([
        put(1, 'x', '1', 0, 100),
        get(2, 'x', null, 1, 2),
        get(2, 'x', '1', 3, 4),
        get(3, 'x', null, 1, 5)
      ])
    })

    it('two concurrent writes observed in the same order by everybody', () => {
      expectLinearizable([
        put(1, 'x', '1', 0, 10),
        put(2, 'x', '2', 0, 10),
        get(3, 'x', '2', 1, 2),
        get(3, 'x', '1', 3, 4),
        get(4, 'x', '2', 1, 2),
        get(4, 'x', '1', 5, 6),
        get(4, 'x', '1', 11, 12)
      ])
    })

    it('intervals that only touch count as concurrent', () => {
      expectLinearizable([
        put(1, 'x', '1', 0, 5),
        get(2, 'x', null, 5, 6)
      ])
    })

    it('a pending write that took effect', () => {
      expectLinearizable([
        put(1, 'x', '1', 0, P),
        get(2, 'x', '1', 10, 11),
        get(2, 'x', '1', 12, 13)
      ])
    })

    it('a pending write that never took effect', () => {
      expectLinearizable([
        put(1, 'x', '1', 0, P),
        get(2, 'x', null, 10, 11),
        get(2, 'x', null, 12, 13)
      ])
    })

    it('a pending write that took effect late, after reads that missed it', () => {
      expectLinearizable([
        put(1, 'x', '1', 0, P),
        get(2, 'x', null, 10, 11),
        get(2, 'x', '1', 12, 13)
      ])
    })

    it('pending cas and delete with unknown outcomes', () => {
      expectLinearizable([
        put(1, 'x', 'a', 0, 1),
        { clientId: 2, input: { op: 'cas', key: 'x', expected: 'a', value: 'b' }, call: 2, return: P },
        { clientId: 3, input: { op: 'delete', key: 'x' }, call: 2, return: P },
        get(4, 'x', 'b', 5, 6),
        get(4, 'x', null, 7, 8)
      ])
    })

    it('a pending read is irrelevant', () => {
      expectLinearizable([
        { clientId: 1, input: { op: 'get', key: 'x' }, call: 0, return: P },
        put(2, 'x', '1', 1, 2),
        get(2, 'x', '1', 3, 4)
      ])
    })
  })

  describe('rejects non-linearizable histories', () => {
    it('a stale read after a completed write', () => {
      expectNotLinearizable([
        put(1, 'x', '1', 0, 1),
        put(1, 'x', '2', 2, 3),
        get(2, 'x', '1', 4, 5)
      ])
    })

    it('two readers seeing two writes in opposite orders', () => {
      expectNotLinearizable([
        put(1, 'x', '1', 0, 10),
        put(2, 'x', '2', 0, 10),
        get(3, 'x', '1', 1, 2),
        get(3, 'x', '2', 3, 4),
        get(4, 'x', '2', 1, 2),
        get(4, 'x', '1', 3, 4)
      ])
    })

    it('a lost acknowledged write', () => {
      expectNotLinearizable([
        put(1, 'x', '1', 0, 1),
        put(2, 'y', 'other', 0, 1),
        get(2, 'x', null, 2, 3)
      ])
    })

    it('a lost acknowledged delete', () => {
      expectNotLinearizable([
        put(1, 'x', '1', 0, 1),
        del(1, 'x', 2, 3),
        get(2, 'x', '1', 4, 5)
      ])
    })

    it('cas succeeding twice on the same expected value', () => {
      expectNotLinearizable([
        put(1, 'x', '0', 0, 1),
        cas(2, 'x', '0', '1', true, 2, 5),
        cas(3, 'x', '0', '2', true, 3, 6)
      ])
    })

    it('cas on an absent key succeeding twice', () => {
      expectNotLinearizable([
        cas(2, 'x', null, '1', true, 0, 5),
        cas(3, 'x', null, '2', true, 0, 5)
      ])
    })

    it('cas failing although the expected value was certainly there', () => {
      expectNotLinearizable([
        put(1, 'x', '0', 0, 1),
        cas(2, 'x', '0', '1', false, 2, 3)
      ])
    })

    it('a read of a value never written', () => {
      expectNotLinearizable([
        put(1, 'x', '1', 0, 10),
        get(2, 'x', 'zzz', 1, 2)
      ])
    })

    it('a read of a value before the write of it was called', () => {
      expectNotLinearizable([
        get(2, 'x', '1', 0, 1),
        put(1, 'x', '1', 2, P)
      ])
    })

    it('a pending write observed, then un-observed (it can take effect only once)', () => {
      expectNotLinearizable([
        put(1, 'x', '1', 0, P),
        get(2, 'x', '1', 10, 11),
        get(2, 'x', null, 12, 13)
      ])
    })

    it('a pending write observed on both sides of a completed write (the relaxed pre-check passes, the exact search rejects)', () => {
      const history = [
        put(1, 'x', '1', 0, P),
        get(2, 'x', '1', 1, 2),
        put(3, 'x', '2', 3, 4),
        get(2, 'x', '1', 5, 6)
      ]
      expectNotLinearizable(history)
      const result = checkOperations(kvModel, history)
      if (result.ok !== false) { throw new Error('expected a rejection') }
      expect(result.explanation.pendingReused).to.equal(false)
    })
  })

  describe('reporting', () => {
    it('names the failing key and explains with the longest prefix and the blocking op', () => {
      const stale = get(2, 'x', '1', 4, 5)
      const result = checkOperations(kvModel, [
        put(3, 'a', 'fine', 0, 1),
        put(1, 'x', '1', 0, 1),
        put(1, 'x', '2', 2, 3),
        stale,
        get(3, 'a', 'fine', 2, 3)
      ])
      expect(result.ok).to.equal(false)
      if (result.ok !== false) { return }
      expect(result.partitions).to.equal(2)
      expect(result.partition).to.equal(1)
      expect(result.key).to.equal('key "x"')
      const { explanation } = result
      expect(explanation.linearized.map(op => op.input)).to.deep.equal([
        { op: 'put', key: 'x', value: '1' },
        { op: 'put', key: 'x', value: '2' }
      ])
      expect(explanation.stateAfter).to.equal('{ "x": "2" }')
      expect(explanation.blocking).to.equal(stale)
      expect(explanation.unplaced).to.deep.equal([stale])
      expect(explanation.text).to.include('not linearizable (key "x")')
      expect(explanation.text).to.include('cannot be placed next: client 2: get("x") -> "1"  [4, 5]')
      expect(explanation.pendingReused).to.equal(false)
    })

    it('says when the rejection came from the relaxed pre-check that reuses pending ops', () => {
      const result = checkOperations(kvModel, [
        put(1, 'x', '1', 0, P),
        get(2, 'x', 'ghost', 1, 2)
      ])
      if (result.ok !== false) { throw new Error('expected a rejection') }
      expect(result.explanation.pendingReused).to.equal(true)
      expect(result.explanation.text).to.include('letting pending ops take effect more than once')
    })

    it('explains a failure at the very first operation with an empty prefix', () => {
      const result = checkOperations(kvModel, [get(1, 'x', 'ghost', 0, 1)])
      expect(result.ok).to.equal(false)
      if (result.ok !== false) { return }
      expect(result.explanation.linearized).to.deep.equal([])
      expect(result.explanation.stateAfter).to.equal('{}')
    })

    it('rejects malformed histories loudly', () => {
      expect(() => checkOperations(kvModel, [put(1, 'x', '1', 5, 4)])).to.throw(TypeError, 'return')
      expect(() => checkOperations(kvModel, [put(1, 'x', '1', NaN, 4)])).to.throw(TypeError, 'call')
      expect(() => checkOperations(kvModel, [put(1, 'x', '1', P, P)])).to.throw(TypeError, 'call')
      expect(() => checkOperations(kvModel, [], { maxSteps: 0 })).to.throw(RangeError)
    })

    it('is deterministic: the same history gives the same verdict and step count', () => {
      const history = randomHistory(createRng(99), { clients: 4, opsPerClient: 40, keys: 2, values: 3, pendingProbability: 0.05 }).history
      const a = checkOperations(kvModel, history)
      const b = checkOperations(kvModel, history)
      expect(a).to.deep.equal(b)
    })
  })

  describe('step budget', () => {
    // n concurrent writes of distinct values, then a read of a value nobody
    // wrote: the search must visit about n * 2^(n-1) configurations to reject it
    function explosive (n: number): KvOperation[] {
      const history: KvOperation[] = []
      for (let i = 0; i < n; i++) { history.push(put(i, 'x', `v${i}`, 0, 100)) }
      history.push(get(n, 'x', 'never', 101, 102))
      return history
    }

    it('returns unknown instead of running on when maxSteps is exhausted', () => {
      const result = checkOperations(kvModel, explosive(18), { maxSteps: 20_000 })
      expect(result).to.deep.include({ ok: 'unknown', steps: 20_000, partition: 0, key: 'key "x"' })
    })

    it('shares the budget across partitions', () => {
      const history = [...explosive(10), ...explosive(10).map(op => ({ ...op, input: { ...op.input, key: 'y' } }))]
      const full = checkOperations(kvModel, history)
      expect(full.ok).to.equal(false) // x already fails
      const budget = checkOperations(kvModel, history, { maxSteps: 50 })
      expect(budget.ok).to.equal('unknown')
    })

    it('settles a small explosive history within the default budget', () => {
      expect(checkOperations(kvModel, explosive(8)).ok).to.equal(false)
    })
  })

  describe('agrees with brute force on tiny random histories', () => {
    it('500 random histories of up to 6 ops, with and without partitioning', () => {
      const rng = createRng(2024)
      let linearizable = 0
      for (let trial = 0; trial < 500; trial++) {
        const history = tinyRandomHistory(rng, { opsMax: 6, pendingProbability: 0.15, keys: 2 })
        const expected = bruteForceLinearizable(history)
        const got = checkOperations(kvModel, history).ok
        const gotWhole = checkOperations(kvModelWhole, history).ok
        expect(got, `trial ${trial}: ${JSON.stringify(history)}`).to.equal(expected)
        expect(gotWhole, `trial ${trial} (unpartitioned)`).to.equal(expected)
        if (expected) { linearizable++ }
      }
      // both verdicts are well represented
      expect(linearizable).to.be.within(100, 400)
    })

    it('400 pending-heavy single-key histories of up to 8 ops (exercises the pending-op pruning)', () => {
      const rng = createRng(77)
      let linearizable = 0
      for (let trial = 0; trial < 400; trial++) {
        const history = tinyRandomHistory(rng, { opsMax: 8, pendingProbability: 0.45, keys: 1 })
        const expected = bruteForceLinearizable(history)
        expect(checkOperations(kvModel, history).ok, `trial ${trial}: ${JSON.stringify(history)}`).to.equal(expected)
        if (expected) { linearizable++ }
      }
      expect(linearizable).to.be.within(80, 320)
    })

    it('1500 pending-heavy single-key histories of up to 14 ops agree with a plain memoized search', () => {
      const rng = createRng(31337)
      let linearizable = 0
      for (let trial = 0; trial < 1500; trial++) {
        const history = tinyRandomHistory(rng, { opsMax: 14, pendingProbability: 0.4, keys: 1 })
        const expected = referenceLinearizable(history)
        expect(checkOperations(kvModel, history).ok, `trial ${trial}: ${JSON.stringify(history)}`).to.equal(expected)
        if (expected) { linearizable++ }
      }
      expect(linearizable).to.be.within(300, 1200)
    })
  })

  describe('property: recorded real executions', () => {
    const shapes = [
      { clients: 3, opsPerClient: 15, keys: 1, values: 2, pendingProbability: 0.05 },
      { clients: 4, opsPerClient: 20, keys: 3, values: 1000, pendingProbability: 0.05 },
      { clients: 5, opsPerClient: 12, keys: 2, values: 3, pendingProbability: 0.15 }
    ]

    it('accepts every history recorded from a real KV map (300 seeds)', () => {
      for (let seed = 0; seed < 300; seed++) {
        const { history } = randomHistory(createRng(seed), shapes[seed % shapes.length])
        const result = checkOperations(kvModel, history)
        expect(result.ok, `seed ${seed}: ${result.ok === false ? result.explanation.text : ''}`).to.equal(true)
      }
    })

    it('rejects each of them once one read is changed to a never-written value (300 seeds)', () => {
      let mutated = 0
      for (let seed = 0; seed < 300; seed++) {
        const rng = createRng(seed)
        const { history } = randomHistory(rng, shapes[seed % shapes.length])
        const reads = history.filter(op => op.input.op === 'get' && !isPending(op))
        if (reads.length === 0) { continue }
        const victim = reads[rng.intBetween(0, reads.length - 1)]
        const bad = history.map(op => op === victim ? { ...op, output: 'never-written' } : op)
        const result = checkOperations(kvModel, bad)
        expect(result.ok, `seed ${seed}`).to.equal(false)
        if (result.ok === false) { expect(result.key).to.equal(`key ${JSON.stringify(victim.input.key)}`) }
        mutated++
      }
      expect(mutated).to.be.greaterThan(250)
    })
  })

  describe('scale', () => {
    it('checks 5 clients x 200 ops over 8 keys with pending ops', () => {
      const { history } = randomHistory(createRng(7), { clients: 5, opsPerClient: 200, keys: 8, values: 4, pendingProbability: 0.03 })
      expect(history).to.have.length(1000)
      expect(history.filter(isPending).length).to.be.greaterThan(10)
      const result = checkOperations(kvModel, history)
      expect(result.ok).to.equal(true)
      expect(result.partitions).to.equal(8)
    })

    it('checks 5 clients x 200 ops on a single key with pending ops', () => {
      const { history } = randomHistory(createRng(8), { clients: 5, opsPerClient: 200, keys: 1, values: 4, pendingProbability: 0.03 })
      expect(checkOperations(kvModel, history).ok).to.equal(true)
      const reads = history.filter(op => op.input.op === 'get' && !isPending(op))
      const victim = reads[reads.length >> 1]
      const bad = history.map(op => op === victim ? { ...op, output: 'never-written' } : op)
      expect(checkOperations(kvModel, bad).ok).to.equal(false)
    })
  })
})

interface HistoryShape {
  clients: number
  opsPerClient: number
  keys: number
  /** size of the value alphabet; small alphabets make histories ambiguous */
  values: number
  /** chance that an op's response is lost (before or after it took effect) */
  pendingProbability: number
}

/**
 * Run clients against a real Map. Every op has a call event, an effect (its
 * linearization point, where it reads or writes the map) and a return event,
 * each at its own tick, interleaved at random across clients. A lost response
 * leaves the op pending (it may or may not have taken effect) and the client
 * carries on under a new id, as a restarted process would.
 */
function randomHistory (rng: Rng, shape: HistoryShape): { history: KvOperation[] } {
  const store = new Map<string, string>()
  const history: KvOperation[] = []
  interface Client { id: number, left: number, phase: 'idle' | 'called' | 'applied', op?: KvOperation }
  const clients: Client[] = Array.from({ length: shape.clients }, (_, i) => ({ id: i, left: shape.opsPerClient, phase: 'idle' }))
  let nextClientId = shape.clients
  let time = 0
  const pickKey = (): string => `k${rng.intBetween(0, shape.keys - 1)}`
  const pickValue = (): string => `v${rng.intBetween(0, shape.values - 1)}`
  const randomInput = (): KvInput => {
    const key = pickKey()
    const r = rng.nextFloat()
    if (r < 0.35) { return { op: 'get', key } }
    if (r < 0.65) { return { op: 'put', key, value: pickValue() } }
    if (r < 0.75) { return { op: 'delete', key } }
    // half the time the value that is there, so that some cas ops succeed
    let expected = store.get(key) ?? null
    if (rng.chance(0.5)) { expected = rng.chance(0.3) ? null : pickValue() }
    return { op: 'cas', key, expected, value: pickValue() }
  }
  const applyToStore = (input: KvInput): KvOutput => {
    const current = store.get(input.key) ?? null
    switch (input.op) {
      case 'get': return current
      case 'put': store.set(input.key, input.value); return null
      case 'delete': store.delete(input.key); return null
      case 'cas':
        if (current !== input.expected) { return false }
        store.set(input.key, input.value)
        return true
      default:
        return unreachable(input)
    }
  }
  const lose = (client: Client): void => {
    const op = client.op
    if (op === undefined) { throw new Error('no op') }
    history.push({ clientId: op.clientId, input: op.input, call: op.call, return: Infinity })
    client.id = nextClientId++
    client.phase = 'idle'
    client.left--
  }

  for (;;) {
    const active = clients.filter(c => c.left > 0)
    if (active.length === 0) { break }
    const client = active[rng.intBetween(0, active.length - 1)]
    time++
    if (client.phase === 'idle') {
      client.op = { clientId: client.id, input: randomInput(), call: time, return: Infinity }
      client.phase = 'called'
    } else if (client.phase === 'called') {
      if (rng.chance(shape.pendingProbability)) {
        lose(client) // never took effect
      } else {
        const op = client.op as KvOperation
        op.output = applyToStore(op.input)
        client.phase = 'applied'
      }
    } else {
      if (rng.chance(shape.pendingProbability)) {
        lose(client) // took effect, but the response was lost
      } else {
        const op = client.op as KvOperation
        history.push({ ...op, return: time })
        client.phase = 'idle'
        client.left--
      }
    }
  }
  return { history }
}

/** A few ops on 1-2 keys with random (often wrong) outputs and intervals. */
function tinyRandomHistory (rng: Rng, shape: { opsMax: number, pendingProbability: number, keys: 1 | 2 }): KvOperation[] {
  const n = rng.intBetween(1, shape.opsMax)
  const history: KvOperation[] = []
  const value = (): string => ['a', 'b'][rng.intBetween(0, 1)]
  for (let i = 0; i < n; i++) {
    const key = shape.keys === 1 || rng.chance(0.8) ? 'x' : 'y'
    const call = rng.intBetween(0, 10)
    const ret = rng.chance(shape.pendingProbability) ? Infinity : call + rng.intBetween(0, 6)
    const r = rng.nextFloat()
    let input: KvInput
    let output: KvOutput
    if (r < 0.4) {
      input = { op: 'get', key }
      output = rng.chance(0.3) ? null : value()
    } else if (r < 0.7) {
      input = { op: 'put', key, value: value() }
      output = null
    } else if (r < 0.8) {
      input = { op: 'delete', key }
      output = null
    } else {
      input = { op: 'cas', key, expected: rng.chance(0.3) ? null : value(), value: value() }
      output = rng.chance(0.5)
    }
    history.push(ret === Infinity ? { clientId: i, input, call, return: ret } : { clientId: i, input, call, output, return: ret })
  }
  return history
}

/**
 * The definition, by exhaustion: some subset of the pending ops plus all
 * completed ops has an order that respects real time (a before b when a
 * returned strictly before b was called) and that the model accepts.
 */
function bruteForceLinearizable (history: KvOperation[]): boolean {
  const pendingIdx = history.map((op, i) => isPending(op) ? i : -1).filter(i => i >= 0)
  for (let mask = 0; mask < (1 << pendingIdx.length); mask++) {
    const chosen = history.filter((op, i) => !isPending(op) || (mask & (1 << pendingIdx.indexOf(i))) !== 0)
    if (someOrderWorks(chosen, [], kvModel.init())) { return true }
  }
  return false

  function someOrderWorks (remaining: KvOperation[], placed: KvOperation[], state: KvState): boolean {
    if (remaining.length === 0) { return true }
    for (const op of remaining) {
      // op can go next only if no other remaining op returned before op was called
      if (remaining.some(other => other !== op && other.return < op.call)) { continue }
      const step = kvModel.step(state, op.input, isPending(op) ? undefined : op.output)
      if (!step.ok) { continue }
      if (someOrderWorks(remaining.filter(o => o !== op), [...placed, op], step.state)) { return true }
    }
    return false
  }
}

/**
 * The definition, searched plainly: configurations are (set of placed ops,
 * model state), memoized; an unplaced op may go next when no unplaced
 * completed op returned strictly before its call; success once every
 * completed op is placed. No pruning beyond the memo.
 */
function referenceLinearizable (history: KvOperation[]): boolean {
  const n = history.length
  const completedMask = history.reduce((mask, op, i) => isPending(op) ? mask : mask | (1 << i), 0)
  const seen = new Set<string>()
  const search = (placed: number, state: KvState): boolean => {
    if ((placed & completedMask) === completedMask) { return true }
    const key = `${placed}:${kvModel.hash(state)}`
    if (seen.has(key)) { return false }
    seen.add(key)
    for (let i = 0; i < n; i++) {
      if ((placed & (1 << i)) !== 0) { continue }
      const op = history[i]
      if (history.some((other, j) => (placed & (1 << j)) === 0 && !isPending(other) && other.return < op.call)) { continue }
      const step = kvModel.step(state, op.input, isPending(op) ? undefined : op.output)
      if (step.ok && search(placed | (1 << i), step.state)) { return true }
    }
    return false
  }
  return search(0, kvModel.init())
}
