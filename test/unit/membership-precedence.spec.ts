import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { createRng } from '../../protocols/common/rng.ts'
import { createRoster, INCARNATION_JUMP_MAX, INCARNATION_MAX, MembershipNode, STATE_RANK, supersedes } from '../../protocols/membership/index.ts'
import type { Message, Update } from '../../protocols/membership/index.ts'

/** fast-check's seed: CI runs the same cases every time (a failure prints its own seed to replay). */
const SEED = 0x5111

const roster = createRoster(['a', 'b', 'c', 'd', 'm'].map(id => ({ id })))

function node (id = 'a'): MembershipNode {
  return new MembershipNode({ id, roster }, createRng(7))
}

/** A ping from `from` to `to` carrying `updates` (the usual vehicle of news). */
function ping (from: string, to: string, updates: Update[], seq = 1): Message {
  return { type: 'ping', from, to, seq, updates }
}

describe('membership/precedence', () => {
  it('orders news as SWIM and memberlist do', () => {
    // alive(i) overrides suspect(j) iff i > j
    expect(supersedes('alive', 3, 'suspect', 2)).to.equal(true)
    expect(supersedes('alive', 2, 'suspect', 2)).to.equal(false)
    // suspect(i) overrides alive(j) iff i >= j
    expect(supersedes('suspect', 2, 'alive', 2)).to.equal(true)
    expect(supersedes('suspect', 1, 'alive', 2)).to.equal(false)
    // dead and left override alive and suspect for i >= j
    for (const held of ['alive', 'suspect'] as const) {
      for (const kind of ['dead', 'left'] as const) {
        expect(supersedes(kind, 2, held, 2), `${kind} over ${held}`).to.equal(true)
        expect(supersedes(kind, 1, held, 2), `${kind} over newer ${held}`).to.equal(false)
      }
    }
    // alive overrides dead/left only with a higher incarnation
    expect(supersedes('alive', 2, 'dead', 2)).to.equal(false)
    expect(supersedes('alive', 3, 'dead', 2)).to.equal(true)
    expect(supersedes('alive', 3, 'left', 2)).to.equal(true)
    // left is the more precise death: it wins over dead at the same incarnation, not the other way
    expect(supersedes('left', 2, 'dead', 2)).to.equal(true)
    expect(supersedes('dead', 2, 'left', 2)).to.equal(false)
    expect(STATE_RANK.alive < STATE_RANK.suspect && STATE_RANK.suspect < STATE_RANK.dead && STATE_RANK.dead < STATE_RANK.left).to.equal(true)
  })

  it('merges any sequence of news about a member into the greatest (incarnation, rank), whatever the order', () => {
    const update = fc.record({
      kind: fc.constantFrom('alive', 'suspect', 'dead', 'left'),
      incarnation: fc.integer({ min: 0, max: 4 }),
      from: fc.constantFrom('b', 'c', 'd')
    }).map(({ kind, incarnation, from }): Update => {
      switch (kind) {
        // The member itself speaks for one incarnation with one metadata.
        case 'alive': return { kind, id: 'm', incarnation, meta: Uint8Array.of(incarnation) }
        case 'left': return { kind, id: 'm', incarnation }
        default: return { kind: kind as 'suspect' | 'dead', id: 'm', incarnation, from }
      }
    })
    fc.assert(fc.property(fc.array(update, { maxLength: 12 }), fc.integer({ min: 1, max: 1000 }), (updates, seed) => {
      const expected = updates.reduce<{ state: string, incarnation: number }>((best, u) =>
        supersedes(u.kind, u.incarnation, best.state as Update['kind'], best.incarnation) ? { state: u.kind, incarnation: u.incarnation } : best,
      { state: 'alive', incarnation: 0 })
      const shuffled = [...updates]
      const rng = createRng(seed)
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = rng.intBetween(0, i);
        [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]]
      }
      for (const order of [updates, shuffled]) {
        const a = node()
        for (const [i, u] of order.entries()) { expect(a.step(ping('b', 'a', [u], i + 1)).ok).to.equal(true) }
        const held = a.member('m')
        expect({ state: held?.state, incarnation: held?.incarnation }).to.deep.equal(expected)
        a.checkInvariants()
      }
    }), { seed: SEED, numRuns: 300 })
  })

  it('reports each change as an event, in order', () => {
    const a = node()
    a.step(ping('b', 'a', [{ kind: 'suspect', id: 'm', incarnation: 0, from: 'b' }]))
    a.step(ping('b', 'a', [{ kind: 'alive', id: 'm', incarnation: 1, meta: Uint8Array.of(9) }], 2))
    a.step(ping('b', 'a', [{ kind: 'dead', id: 'm', incarnation: 1, from: 'c' }], 3))
    a.step(ping('b', 'a', [{ kind: 'alive', id: 'm', incarnation: 2, meta: Uint8Array.of(9) }], 4))
    a.step(ping('b', 'a', [{ kind: 'alive', id: 'm', incarnation: 3, meta: Uint8Array.of(10) }], 5))
    a.step(ping('b', 'a', [{ kind: 'left', id: 'm', incarnation: 3 }], 6))
    a.step(ping('b', 'a', [{ kind: 'alive', id: 'n', incarnation: 0, meta: new Uint8Array(0) }], 7))
    const events = a.ready().events.map(e => `${e.type} ${'id' in e ? `${e.id}@${e.incarnation}` : ''}`)
    expect(events).to.deep.equal([
      'member:suspect m@0',
      'member:alive m@1', // the suspicion was refuted
      'member:update m@1', // ... with new metadata
      'member:dead m@1',
      'member:join m@2', // back from the dead at a higher incarnation
      'member:update m@3',
      'member:leave m@3',
      'member:join n@0'
    ])
  })

  it('ignores suspect, dead and left news about members it does not know', () => {
    const a = node()
    a.step(ping('b', 'a', [
      { kind: 'suspect', id: 'x', incarnation: 0, from: 'b' },
      { kind: 'dead', id: 'y', incarnation: 0, from: 'b' },
      { kind: 'left', id: 'z', incarnation: 0 }
    ]))
    expect(a.member('x')).to.equal(undefined)
    expect(a.member('y')).to.equal(undefined)
    expect(a.member('z')).to.equal(undefined)
    expect(a.status().counters.updatesIgnored).to.equal(3)
  })

  it('drops relayed news that runs more than INCARNATION_JUMP_MAX ahead of its view (a lie), so a victim can always refute', () => {
    const a = node()
    // b lies about m, and about a itself, at numbers nobody could have seen
    a.step(ping('b', 'a', [
      { kind: 'dead', id: 'm', incarnation: INCARNATION_MAX - 1, from: 'b' },
      { kind: 'alive', id: 'c', incarnation: INCARNATION_JUMP_MAX + 1, meta: Uint8Array.of(6) },
      { kind: 'suspect', id: 'a', incarnation: INCARNATION_JUMP_MAX + 1, from: 'b' }
    ]))
    expect(a.member('m')).to.include({ state: 'alive', incarnation: 0 })
    expect(a.member('c')).to.include({ state: 'alive', incarnation: 0 })
    expect(a.member('a')).to.include({ state: 'alive', incarnation: 0 })
    expect(a.status().counters.updatesImplausible).to.equal(3)
    // news just ahead of the view is taken (the steps that have not reached a yet)
    a.step(ping('b', 'a', [{ kind: 'dead', id: 'm', incarnation: INCARNATION_JUMP_MAX, from: 'b' }], 2))
    expect(a.member('m')).to.include({ state: 'dead', incarnation: INCARNATION_JUMP_MAX })
    // a member's own word is not bounded: after a restart it may rightly jump
    a.step(ping('d', 'a', [{ kind: 'alive', id: 'd', incarnation: 10 * INCARNATION_JUMP_MAX, meta: new Uint8Array(0) }], 3))
    expect(a.member('d')).to.include({ state: 'alive', incarnation: 10 * INCARNATION_JUMP_MAX })
  })
})

describe('membership/refutation', () => {
  it('refutes a suspicion of itself by raising its incarnation, and says so at once', () => {
    const a = node()
    expect(a.step(ping('b', 'a', [{ kind: 'suspect', id: 'a', incarnation: 0, from: 'b' }])).ok).to.equal(true)
    expect(a.member('a')).to.include({ state: 'alive', incarnation: 1 })
    const { messages, events } = a.ready()
    expect(events).to.deep.equal([{ type: 'member:alive', id: 'a', incarnation: 1 }])
    // Lifeguard: having to refute counts against our own health.
    expect(a.healthMultiplier).to.equal(1)
    // The refutation rides first on the ack, and goes straight to k random members too.
    const ack = messages.find(m => m.type === 'ack')
    expect(ack?.updates[0]).to.deep.equal({ kind: 'alive', id: 'a', incarnation: 1, meta: new Uint8Array(0) })
    const pushes = messages.filter(m => m.type === 'ping')
    expect(pushes).to.have.length(3)
    for (const p of pushes) { expect(p.updates[0]).to.include({ kind: 'alive', id: 'a', incarnation: 1 }) }
  })

  it('refutes death and left notices too, above the accused incarnation', () => {
    for (const kind of ['dead', 'left'] as const) {
      const a = node()
      const u: Update = kind === 'dead' ? { kind, id: 'a', incarnation: 5, from: 'b' } : { kind, id: 'a', incarnation: 5 }
      a.step(ping('b', 'a', [u]))
      expect(a.member('a'), kind).to.include({ state: 'alive', incarnation: 6 })
    }
  })

  it('refutes an alive update that speaks for it with newer or different data (a past life)', () => {
    const a = node()
    a.step(ping('b', 'a', [{ kind: 'alive', id: 'a', incarnation: 0, meta: Uint8Array.of(1) }]))
    expect(a.member('a')?.incarnation).to.equal(1)
    a.step(ping('b', 'a', [{ kind: 'alive', id: 'a', incarnation: 4, meta: new Uint8Array(0) }], 2))
    expect(a.member('a')?.incarnation).to.equal(5)
    // Its own current news is no reason to refute.
    a.step(ping('b', 'a', [{ kind: 'alive', id: 'a', incarnation: 5, meta: new Uint8Array(0) }], 3))
    expect(a.member('a')?.incarnation).to.equal(5)
  })

  it('answers a stale accusation by announcing itself again, without a new incarnation', () => {
    const a = node()
    a.step(ping('b', 'a', [{ kind: 'suspect', id: 'a', incarnation: 0, from: 'b' }]))
    // Hand the refutation out until it leaves the queue.
    for (let i = 0; i < 20; i++) { a.step(ping('c', 'a', [], 10 + i)) }
    a.ready()
    expect(a.status().broadcastsQueued).to.equal(0)
    a.step(ping('d', 'a', [{ kind: 'suspect', id: 'a', incarnation: 0, from: 'd' }], 99))
    expect(a.member('a')?.incarnation).to.equal(1)
    expect(a.status().counters.reannouncements).to.equal(1)
    const ack = a.ready().messages.find(m => m.type === 'ack')
    expect(ack?.updates[0]).to.include({ kind: 'alive', id: 'a', incarnation: 1 })
  })

  it('does not argue once it has left', () => {
    const a = node()
    a.leave()
    a.step(ping('b', 'a', [{ kind: 'dead', id: 'a', incarnation: 0, from: 'b' }]))
    expect(a.member('a')).to.include({ state: 'left', incarnation: 0 })
    expect(a.status().counters.refutations).to.equal(0)
  })
})
