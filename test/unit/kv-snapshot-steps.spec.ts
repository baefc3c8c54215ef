import { createHash } from 'node:crypto'
import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { createRng } from '../../protocols/common/rng.ts'
import { compareBytes, compareUtf8, encodeUtf8 } from '../../protocols/kv/codec.ts'
import { KvStateMachine, encodeCommand } from '../../protocols/kv/index.ts'
import { mutate } from '../lib/bytes-fuzz.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { Sha256 } from '../../protocols/kv/index.ts'

/**
 * Snapshots are encoded and restored in steps spread over event-loop turns
 * (node/raft/driver.ts). These tests interleave those steps with applies at
 * random and check the result is what a one-shot snapshot of the moment the
 * encoding began would be.
 */

const KEYS = ['a', 'b', 'key-1', 'key-10', 'key-2', 'é', '\uFF5E', '\u{1F600}', 'z', 'zz']

function randomCommand (rng: Rng, sequences: Map<string, number>): Uint8Array {
  const clientId = `c${rng.intBetween(0, 3)}`
  const sequence = (sequences.get(clientId) ?? 0) + 1
  sequences.set(clientId, sequence)
  const session = { clientId, sequence }
  const key = KEYS[rng.intBetween(0, KEYS.length - 1)] + String(rng.intBetween(0, 40))
  if (rng.chance(0.2)) { return encodeCommand({ type: 'delete', session, key }) }
  return encodeCommand({ type: 'put', session, key, value: new Uint8Array(rng.intBetween(0, 300)).fill(sequence % 256) })
}

/** A state machine with `commands` random commands applied. */
function populated (rng: Rng, commands: number): { sm: KvStateMachine, sequences: Map<string, number> } {
  const sm = new KvStateMachine()
  const sequences = new Map<string, number>()
  for (let i = 0; i < commands; i++) { sm.apply(sm.appliedIndex + 1, randomCommand(rng, sequences)) }
  return { sm, sequences }
}

describe('kv snapshots in steps', () => {
  it('orders strings by their UTF-8 bytes without encoding them', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' }), (a, b) => {
      expect(Math.sign(compareUtf8(a, b))).to.equal(Math.sign(compareBytes(encodeUtf8(a), encodeUtf8(b))))
    }), { numRuns: 2000 })
    // the case UTF-16 order gets wrong: a surrogate pair against U+E000..U+FFFF
    expect(compareUtf8('\u{1F600}', '\uFF5E')).to.be.greaterThan(0)
    expect(compareUtf8('\uD7FF', '\u{1F600}')).to.be.lessThan(0)
  })

  it('encodes the state of the moment it began, whatever is applied between its steps (100 seeds)', () => {
    for (let seed = 1; seed <= 100; seed++) {
      const rng = createRng(seed)
      const { sm, sequences } = populated(rng, rng.intBetween(0, 200))
      const expected = sm.snapshot()
      const encoder = sm.beginSnapshot()
      let steps = 0
      while (!encoder.encodeSome(rng.intBetween(1, 2000))) {
        steps++
        for (let i = rng.intBetween(0, 3); i > 0; i--) { sm.apply(sm.appliedIndex + 1, randomCommand(rng, sequences)) }
      }
      expect(encoder.result(), `seed ${seed} after ${steps} steps`).to.deep.equal(expected)
      expect(encoder.appliedIndex).to.be.at.most(sm.appliedIndex)
    }
  })

  it('restores in steps to the same state as in one go (100 seeds)', () => {
    for (let seed = 1; seed <= 100; seed++) {
      const rng = createRng(seed)
      const source = populated(rng, rng.intBetween(0, 200)).sm
      const bytes = source.snapshot()
      const target = new KvStateMachine()
      const restore = target.beginRestore(bytes)
      while (!restore.decodeSome(rng.intBetween(1, 2000))) {
        // the old state stays readable until finish()
        expect(target.appliedIndex).to.equal(0)
      }
      expect(restore.finish()).to.deep.equal({ ok: true })
      expect(target.stats()).to.deep.equal(source.stats())
      expect(target.snapshot(), `seed ${seed}`).to.deep.equal(bytes)
    }
  })

  it('refuses a damaged snapshot in steps exactly as in one go, leaving the state as it was (300 mutations)', () => {
    const rng = createRng(7)
    const bytes = populated(rng, 150).sm.snapshot()
    let refused = 0
    for (let i = 0; i < 300; i++) {
      const damaged = mutate(rng, bytes, [bytes.subarray(0, 40)])
      const whole = new KvStateMachine().restore(damaged)
      const target = populated(createRng(99), 20).sm
      const before = target.snapshot()
      const restore = target.beginRestore(damaged)
      while (!restore.decodeSome(rng.intBetween(1, 5000))) { /* step on */ }
      const stepped = restore.finish()
      expect(stepped).to.deep.equal(whole)
      if (!stepped.ok) {
        refused++
        expect(target.snapshot()).to.deep.equal(before)
      }
    }
    // the checksum catches (nearly) every mutation
    expect(refused).to.be.greaterThan(290)
  })

  it('gives the same bytes with node:crypto\'s SHA-256 as with the portable default, and each restores the other\'s', () => {
    const native = (): Sha256 => createHash('sha256')
    const { sm } = populated(createRng(11), 300)
    const copy = new KvStateMachine({}, { createSha256: native })
    expect(copy.restore(sm.snapshot())).to.deep.equal({ ok: true })
    expect(copy.snapshot()).to.deep.equal(sm.snapshot())
    const damaged = copy.snapshot()
    damaged[damaged.length - 1] ^= 1
    expect(new KvStateMachine({}, { createSha256: native }).restore(damaged)).to.deep.equal({ ok: false, error: 'malformed snapshot: checksum mismatch' })
  })

  it('refuses to finish a restore when entries were applied during it', () => {
    const { sm, sequences } = populated(createRng(3), 10)
    const restore = sm.beginRestore(new KvStateMachine().snapshot())
    sm.apply(sm.appliedIndex + 1, randomCommand(createRng(4), sequences))
    while (!restore.decodeSome(1000)) { /* step on */ }
    expect(() => restore.finish()).to.throw(/applied during a restore/)
  })
})
