import { expect } from 'aegir/chai'
import { createRng } from '../../protocols/common/rng.ts'
import { createRoster, MembershipNode } from '../../protocols/membership/index.ts'
import { Harness } from '../sim/membership/harness.ts'
import type { Message, PingMessage } from '../../protocols/membership/index.ts'

/** Ticks until the node starts a probe; returns the ping and the messages beside it. */
function untilProbe (node: MembershipNode, limit = 200): PingMessage {
  for (let t = 0; t < limit; t++) {
    node.tick()
    const probe = node.ready().messages.find((m): m is PingMessage => m.type === 'ping')
    if (probe !== undefined) { return probe }
  }
  throw new Error('no probe')
}

function ticks (node: MembershipNode, n: number): Message[] {
  const sent: Message[] = []
  for (let i = 0; i < n; i++) {
    node.tick()
    sent.push(...node.ready().messages)
  }
  return sent
}

const two = createRoster([{ id: 'a' }, { id: 'b' }])
const four = createRoster(['a', 'b', 'c', 'd'].map(id => ({ id })))

describe('membership/local health awareness', () => {
  it('rises on a failed probe with nobody to ask, and stretches the period and the timeout', () => {
    const a = new MembershipNode({ id: 'a', roster: two }, createRng(1))
    untilProbe(a)
    ticks(a, 10)
    expect(a.healthMultiplier).to.equal(1)
    expect(a.status()).to.include({ probeIntervalTicks: 20, probeTimeoutTicks: 10 })
  })

  it('falls on a probe acked in time, not on one acked late', () => {
    // (no suspect notices: the only pings are probes)
    const a = new MembershipNode({ id: 'a', roster: two, notifySuspect: false }, createRng(1))
    untilProbe(a)
    // The probe fails (multiplier 1) and, in the same tick, the next one starts.
    let probe = ticks(a, 10).find((m): m is PingMessage => m.type === 'ping') as PingMessage
    expect(a.healthMultiplier).to.equal(1)
    ticks(a, 12) // past the (doubled) probe timeout, before the end of the period
    a.step({ type: 'ack', from: 'b', to: 'a', seq: probe.seq, announce: false, updates: [] })
    probe = ticks(a, 8).find((m): m is PingMessage => m.type === 'ping') as PingMessage
    expect(a.healthMultiplier, 'a late ack is no evidence of health').to.equal(1)
    a.step({ type: 'ack', from: 'b', to: 'a', seq: probe.seq, announce: false, updates: [] })
    expect(a.healthMultiplier).to.equal(0)
  })

  it('stops at awarenessMax', () => {
    const a = new MembershipNode({ id: 'a', roster: two, awarenessMax: 8 }, createRng(1))
    for (let i = 0; i < 12; i++) {
      a.step({ type: 'ping', from: 'b', to: 'a', seq: i, updates: [{ kind: 'suspect', id: 'a', incarnation: i, from: 'b' }] })
    }
    expect(a.status().counters.refutations).to.equal(12)
    expect(a.healthMultiplier).to.equal(8)
    expect(a.status()).to.include({ probeIntervalTicks: 90, probeTimeoutTicks: 45 })
  })

  it('counts nacks that did not come: all came, no change; one missing, +1; none, +2', () => {
    for (const [nacks, expected] of [[2, 0], [1, 1], [0, 2]] as const) {
      const a = new MembershipNode({ id: 'a', roster: four, indirectChecks: 3 }, createRng(5))
      const probe = untilProbe(a)
      const sent = ticks(a, 5)
      const requests = sent.filter(m => m.type === 'ping-req')
      expect(requests.map(m => m.to).sort()).to.deep.equal(['a', 'b', 'c', 'd'].filter(id => id !== 'a' && id !== probe.to))
      for (const m of requests.slice(0, nacks)) {
        expect(a.step({ type: 'nack', from: m.to, to: 'a', seq: probe.seq, updates: [] }).ok).to.equal(true)
      }
      ticks(a, 5)
      expect(a.healthMultiplier, `${nacks} nacks`).to.equal(expected)
      expect(a.member(probe.to)?.state).to.equal('suspect')
    }
  })

  it('rises when it has to refute a suspicion of itself', () => {
    const a = new MembershipNode({ id: 'a', roster: four }, createRng(5))
    a.step({ type: 'ping', from: 'b', to: 'a', seq: 1, updates: [{ kind: 'suspect', id: 'a', incarnation: 0, from: 'b' }] })
    expect(a.healthMultiplier).to.equal(1)
  })

  it('tells a slow prober from a dead target: with nacks the prober stays healthy, cut off it does not', () => {
    // d crashed: a's probes of it fail, but b and c answer the ping-reqs with nacks.
    const h = new Harness()
    for (const id of ['a', 'b', 'c', 'd']) { h.add(id, { roster: four }) }
    for (let t = 0; t < 200; t++) {
      h.tick(1, ['a', 'b', 'c'])
      h.deliver(m => m.to !== 'd')
    }
    expect(h.node('a').member('d')?.state).to.equal('dead')
    expect(h.node('a').healthMultiplier).to.equal(0)
    expect(h.node('b').healthMultiplier).to.equal(0)
    // a is cut off from everyone (it hears nothing): it grows slower, and no nacks excuse it.
    const g = new Harness()
    for (const id of ['a', 'b', 'c', 'd']) { g.add(id, { roster: four }) }
    g.run(100, m => m.to !== 'a')
    expect(g.node('a').healthMultiplier).to.be.at.least(4)
  })
})

describe('membership/indirect probes and nacks', () => {
  const three = createRoster(['a', 'b', 'c'].map(id => ({ id })))
  const request = (overrides: Partial<Message> = {}): Message =>
    ({ type: 'ping-req', from: 'a', to: 'b', seq: 7, target: 'c', nack: true, updates: [], ...overrides }) as Message

  it('probes the target for the prober and forwards its ack with the prober\'s seq', () => {
    const b = new MembershipNode({ id: 'b', roster: three }, createRng(2))
    expect(b.step(request()).ok).to.equal(true)
    const ping = b.ready().messages.find(m => m.type === 'ping' && m.to === 'c')
    expect(ping).to.not.equal(undefined)
    b.step({ type: 'ack', from: 'c', to: 'b', seq: (ping as PingMessage).seq, announce: false, updates: [] })
    const forwarded = b.ready().messages.find(m => m.type === 'ack')
    expect(forwarded).to.include({ to: 'a', seq: 7 })
    expect(b.status().pendingRelays).to.equal(0)
  })

  it('nacks the prober when the target stays silent for a probe timeout', () => {
    const b = new MembershipNode({ id: 'b', roster: three, probeTimeoutTicks: 5 }, createRng(2))
    b.step(request())
    b.ready()
    const sent = ticks(b, 5)
    expect(sent.filter(m => m.type === 'nack')).to.have.length(1)
    expect(sent.find(m => m.type === 'nack')).to.include({ to: 'a', seq: 7 })
    expect(b.status().counters.nacksSent).to.equal(1)
  })

  it('sends no nack unless asked', () => {
    const b = new MembershipNode({ id: 'b', roster: three }, createRng(2))
    b.step(request({ nack: false } as Partial<Message>))
    expect(ticks(b, 20).filter(m => m.type === 'nack')).to.have.length(0)
  })

  it('refuses ping-reqs from strangers, about strangers, about the sender or itself, and beyond pendingProbesMax', () => {
    const b = new MembershipNode({ id: 'b', roster: three, pendingProbesMax: 1 }, createRng(2))
    expect(b.step(request({ from: 'z' }))).to.deep.include({ ok: false, reason: 'unknown-sender' })
    expect(b.step(request({ target: 'q' } as Partial<Message>))).to.deep.include({ ok: false, reason: 'unknown-target' })
    expect(b.step(request({ target: 'a' } as Partial<Message>))).to.deep.include({ ok: false, reason: 'unknown-target' })
    expect(b.step(request({ target: 'b' } as Partial<Message>))).to.deep.include({ ok: false, reason: 'unknown-target' })
    expect(b.step(request()).ok).to.equal(true)
    expect(b.step(request({ seq: 8 }))).to.deep.include({ ok: false, reason: 'busy' })
    // A stranger that introduces itself in the same message is heard.
    const c = new MembershipNode({ id: 'b', roster: three }, createRng(2))
    expect(c.step(request({ from: 'z', updates: [{ kind: 'alive', id: 'z', incarnation: 0, meta: new Uint8Array(0) }] })).ok).to.equal(true)
  })

  it('asks k members, alive ones only, never the target or itself', () => {
    const many = createRoster(['a', 'b', 'c', 'd', 'e', 'f'].map(id => ({ id })))
    for (let seed = 1; seed <= 10; seed++) {
      const a = new MembershipNode({ id: 'a', roster: many, indirectChecks: 3 }, createRng(seed))
      a.step({ type: 'ping', from: 'b', to: 'a', seq: 1, updates: [{ kind: 'dead', id: 'f', incarnation: 0, from: 'b' }] })
      a.ready()
      const probe = untilProbe(a)
      const requests = ticks(a, 5).filter(m => m.type === 'ping-req')
      const via = requests.map(m => m.to)
      expect(new Set(via).size).to.equal(via.length)
      expect(via).to.have.length(3)
      expect(via).to.not.include(probe.to)
      expect(via).to.not.include('a')
      expect(via).to.not.include('f')
    }
  })
})
