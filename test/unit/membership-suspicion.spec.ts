import { expect } from 'aegir/chai'
import { createRng } from '../../protocols/common/rng.ts'
import {
  createRoster, expectedConfirmations, MembershipNode, suspicionTimeoutMinTicks, suspicionTimeoutTicks
} from '../../protocols/membership/index.ts'
import { Suspicion } from '../../protocols/membership/suspicion.ts'
import type { Message, Update } from '../../protocols/membership/index.ts'

function ping (from: string, to: string, updates: Update[], seq: number): Message {
  return { type: 'ping', from, to, seq, updates }
}

function ids (n: number): string[] {
  return Array.from({ length: n }, (_, i) => `m${i}`)
}

describe('membership/suspicion timeouts', () => {
  it('scale with log10 of the cluster size (memberlist: suspicionMult * max(1, log10 N) * probe interval)', () => {
    expect(suspicionTimeoutMinTicks(4, 1, 10)).to.equal(40)
    expect(suspicionTimeoutMinTicks(4, 10, 10)).to.equal(40)
    expect(suspicionTimeoutMinTicks(4, 100, 10)).to.equal(80)
    expect(suspicionTimeoutMinTicks(4, 1000, 10)).to.equal(120)
    expect(suspicionTimeoutMinTicks(4, 10_000, 10)).to.equal(160)
    expect(suspicionTimeoutMinTicks(5, 0, 7)).to.equal(35)
  })

  it('shrink from max toward min as confirmations arrive: max - (max - min) * log(C + 1) / log(K + 1)', () => {
    const min = 40
    const max = 240
    expect(suspicionTimeoutTicks(0, 2, min, max)).to.equal(240)
    expect(suspicionTimeoutTicks(1, 2, min, max)).to.equal(Math.ceil(240 - 200 * Math.log(2) / Math.log(3)))
    expect(suspicionTimeoutTicks(2, 2, min, max)).to.equal(40)
    // never below min, and no confirmations expected means min at once
    expect(suspicionTimeoutTicks(5, 2, min, max)).to.equal(40)
    expect(suspicionTimeoutTicks(0, 0, min, max)).to.equal(40)
    // monotone in the confirmations
    let previous = Number.POSITIVE_INFINITY
    for (let c = 0; c <= 6; c++) {
      const t = suspicionTimeoutTicks(c, 6, min, max)
      expect(t).to.be.at.most(previous)
      previous = t
    }
  })

  it('expect suspicionMult - 2 confirmations, or none when too few members could give them', () => {
    expect(expectedConfirmations(4, 100)).to.equal(2)
    expect(expectedConfirmations(4, 4)).to.equal(2)
    expect(expectedConfirmations(4, 3)).to.equal(0)
    expect(expectedConfirmations(6, 5)).to.equal(0)
  })

  it('count each independent accuser once, the first one not at all, up to K', () => {
    const s = new Suspicion('a', 0, 100, 2, 40, 240)
    expect(s.deadlineTick).to.equal(340)
    expect(s.confirm('a')).to.equal(false)
    expect(s.confirm('b')).to.equal(true)
    expect(s.deadlineTick).to.equal(100 + suspicionTimeoutTicks(1, 2, 40, 240))
    expect(s.confirm('b')).to.equal(false)
    expect(s.confirm('c')).to.equal(true)
    expect(s.deadlineTick).to.equal(140)
    expect(s.confirm('d')).to.equal(false)
    expect(s.confirmations).to.equal(2)
  })
})

describe('membership/suspicion in a node', () => {
  // Six members: min 40 ticks, max 240, K = 2. Node m0 hears nothing back
  // (nothing is delivered), so its own probes fail too; the suspicion under
  // test is started "by m0" so that its own failed probe of m5 is no
  // confirmation.
  const roster = createRoster(ids(6).map(id => ({ id })))

  function suspectM5 (node: MembershipNode, confirmers: string[]): void {
    expect(node.step(ping('m1', 'm0', [{ kind: 'suspect', id: 'm5', incarnation: 0, from: 'm0' }], 1)).ok).to.equal(true)
    for (const [i, from] of confirmers.entries()) {
      expect(node.step(ping('m1', 'm0', [{ kind: 'suspect', id: 'm5', incarnation: 0, from }], 2 + i)).ok).to.equal(true)
    }
  }

  function ticksUntilDead (node: MembershipNode, limit: number): number {
    for (let t = 1; t <= limit; t++) {
      node.tick()
      node.ready()
      if (node.member('m5')?.state === 'dead') { return t }
    }
    return -1
  }

  it('declares the suspect dead after the max timeout when nobody confirms', () => {
    const node = new MembershipNode({ id: 'm0', roster }, createRng(3))
    suspectM5(node, [])
    expect(ticksUntilDead(node, 1000)).to.equal(240)
    node.checkInvariants()
  })

  it('declares it dead sooner with each confirmation, at the min timeout with K of them', () => {
    const one = new MembershipNode({ id: 'm0', roster }, createRng(3))
    suspectM5(one, ['m2'])
    expect(ticksUntilDead(one, 1000)).to.equal(suspicionTimeoutTicks(1, 2, 40, 240))
    const two = new MembershipNode({ id: 'm0', roster }, createRng(3))
    suspectM5(two, ['m2', 'm3'])
    two.ready()
    const events: string[] = []
    for (let t = 1; t <= 40; t++) {
      two.tick()
      events.push(...two.ready().events.filter(e => 'id' in e && e.id === 'm5').map(e => e.type))
    }
    expect(two.member('m5')?.state).to.equal('dead')
    expect(events).to.deep.equal(['member:dead'])
  })

  it('passes each new confirmation on (so that other timers shrink too), but not repeats', () => {
    const node = new MembershipNode({ id: 'm0', roster }, createRng(3))
    suspectM5(node, [])
    node.ready()
    node.step(ping('m1', 'm0', [{ kind: 'suspect', id: 'm5', incarnation: 0, from: 'm2' }], 10))
    const first = node.ready().messages.find(m => m.type === 'ack')
    expect(first?.updates).to.deep.include({ kind: 'suspect', id: 'm5', incarnation: 0, from: 'm2' })
    node.step(ping('m1', 'm0', [{ kind: 'suspect', id: 'm5', incarnation: 0, from: 'm2' }], 11))
    expect(node.status().suspicions).to.equal(1)
  })

  it('cancels the suspicion when the suspect refutes', () => {
    const node = new MembershipNode({ id: 'm0', roster }, createRng(3))
    suspectM5(node, ['m2', 'm3'])
    node.step(ping('m1', 'm0', [{ kind: 'alive', id: 'm5', incarnation: 1, meta: new Uint8Array(0) }], 20))
    // (m0's own probes all fail here, so it will suspect m5@1 itself one day:
    // that suspicion has no confirmations and needs at least 240 ticks.)
    expect(ticksUntilDead(node, 200)).to.equal(-1)
    expect(node.member('m5')?.incarnation).to.equal(1)
    node.checkInvariants()
  })

  it('uses a timeout that grows with the cluster', () => {
    const big = createRoster(ids(1000).map(id => ({ id })))
    const node = new MembershipNode({ id: 'm0', roster: big }, createRng(3))
    node.step(ping('m1', 'm0', [{ kind: 'suspect', id: 'm5', incarnation: 0, from: 'm0' }], 1))
    node.step(ping('m1', 'm0', [{ kind: 'suspect', id: 'm5', incarnation: 0, from: 'm2' }], 2))
    node.step(ping('m1', 'm0', [{ kind: 'suspect', id: 'm5', incarnation: 0, from: 'm3' }], 3))
    // 1,000 members: min = 4 * 3 * 10 ticks
    expect(ticksUntilDead(node, 1000)).to.equal(120)
  })
})
