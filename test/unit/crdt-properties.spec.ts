import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { CRDT_TYPE_NAMES, crdtType, decodeState, encodeState } from '../../protocols/crdt/index.ts'
import { hex, joinAll, runScenario, stepsArbitrary } from './crdt-harness.ts'
import type { Step } from './crdt-harness.ts'

const RUNS = { numRuns: 40, seed: 0xc2d7 }

/** The scenario's ops, all at replica 0: one state that every delta builds on. */
function opsAtOneReplica (steps: Step[]): Step[] {
  return steps.filter(s => s.kind === 'op').map(s => ({ ...s, replica: 0 }))
}

describe('crdt/properties', () => {
  for (const name of CRDT_TYPE_NAMES) {
    const type = crdtType(name)

    describe(name, () => {
      it('join is commutative, associative and idempotent', () => {
        fc.assert(fc.property(stepsArbitrary(name), steps => {
          const [a, b, c] = runScenario(name, steps).states
          expect(hex(name, type.join(a, b))).to.equal(hex(name, type.join(b, a)))
          expect(hex(name, type.join(type.join(a, b), c))).to.equal(hex(name, type.join(a, type.join(b, c))))
          expect(hex(name, type.join(a, a))).to.equal(hex(name, a))
          expect(hex(name, type.join(a, type.empty()))).to.equal(hex(name, a))
        }), RUNS)
      })

      it('joining the deltas of an op sequence gives the full state, in any order', () => {
        fc.assert(fc.property(stepsArbitrary(name), steps => {
          const { states, deltas } = runScenario(name, opsAtOneReplica(steps))
          expect(hex(name, joinAll(name, deltas))).to.equal(hex(name, states[0]))
          expect(hex(name, joinAll(name, [...deltas].reverse()))).to.equal(hex(name, states[0]))
          // and each delta is a state of the type, with a round-tripping encoding
          for (const delta of deltas) {
            const decoded = decodeState(name, encodeState(name, delta))
            expect(decoded.ok).to.equal(true)
          }
        }), RUNS)
      })

      it('replicas converge under duplicated, reordered and lost deltas once full states are exchanged', () => {
        fc.assert(fc.property(stepsArbitrary(name, 60), steps => {
          const { states, deltas } = runScenario(name, steps)
          // anti-entropy: everyone joins everyone's full state
          const expected = joinAll(name, deltas)
          for (const mine of states) {
            const state = joinAll(name, [mine, ...states])
            expect(hex(name, state)).to.equal(hex(name, expected))
            expect(type.value(state)).to.deep.equal(type.value(expected))
          }
        }), RUNS)
      })

      it('encode/decode round-trips', () => {
        fc.assert(fc.property(stepsArbitrary(name), steps => {
          for (const state of runScenario(name, steps).states) {
            const bytes = encodeState(name, state)
            const decoded = decodeState(name, bytes)
            if (!decoded.ok) { throw new Error(decoded.error) }
            expect(encodeState(name, decoded.value)).to.deep.equal(bytes)
            expect(type.value(decoded.value)).to.deep.equal(type.value(state))
          }
        }), RUNS)
      })

      it('decoding truncated, altered or random bytes returns an error, never throws', () => {
        fc.assert(fc.property(stepsArbitrary(name), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 64 }), (steps, at, byte, garbage) => {
          const bytes = encodeState(name, joinAll(name, runScenario(name, steps).states))
          for (let length = 0; length < bytes.length; length++) {
            const decoded = decodeState(name, bytes.subarray(0, length))
            expect(decoded.ok).to.equal(false)
          }
          const altered = bytes.slice()
          altered[at % altered.length] = byte
          for (const input of [altered, garbage, Uint8Array.from([1, bytes[1], ...garbage])]) {
            const decoded = decodeState(name, input)
            // whatever decodes must be canonical: it re-encodes to the very same bytes
            if (decoded.ok) { expect(encodeState(name, decoded.value)).to.deep.equal(input) }
          }
        }), RUNS)
      })
    })
  }
})
