import { expect } from 'aegir/chai'
import { ANTI_ENTROPY_DEFAULTS, entryPayload, gossipMessageBytes, pageBytes, resolveConfig } from '../../protocols/gossip/index.ts'
import { GossipHarness } from '../sim/gossip/harness.ts'
import type { DeltaMessage, DigestMessage, EntryAuth, GossipMessage, WireEntry } from '../../protocols/gossip/index.ts'
import type { Keyring } from '../sim/gossip/keyring.ts'

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values)
const auth: EntryAuth = { sign: () => bytes(1), verify: () => true }

function wire (keyring: Keyring, node: string, key: string, value: Uint8Array | null, version: number): WireEntry {
  return { key, value, version, signature: keyring.authFor(node).sign(entryPayload(node, key, value, version)), ageTicks: 0 }
}

function deltaOf (from: string, to: string, node: string, entries: WireEntry[]): DeltaMessage {
  return { type: 'delta', from, to, page: null, deltas: [{ node, after: 0, entries }] }
}

const digestFrom = (from: string, to: string): DigestMessage =>
  ({ type: 'digest', from, to, want: 'entries', page: { after: null, until: null, versions: [] } })

describe('gossip/limits', () => {
  it('nodesMax: nodes beyond it are refused, and a slot stays free for our own entries', () => {
    const h = new GossipHarness()
    const a = h.add('a', { nodesMax: 3 })
    for (const id of ['c', 'd', 'e']) { a.step(deltaOf('b', 'a', id, [wire(h.keyring, id, 'k', bytes(1), 1)])) }
    expect(a.nodes()).to.deep.equal(['c', 'd'])
    expect(a.status().counters.nodesRefused).to.equal(1)
    expect(a.set('mine', bytes(1))).to.deep.include({ ok: true })
    expect(a.nodes()).to.deep.equal(['a', 'c', 'd'])
  })

  it('keysPerNodeMax: a node sets at most that many keys, and takes no more of another\'s than its slack allows', () => {
    const h = new GossipHarness()
    const a = h.add('a', { keysPerNodeMax: 2 })
    expect(a.set('k1', bytes(1)).ok).to.equal(true)
    expect(a.set('k2', bytes(1)).ok).to.equal(true)
    expect(a.set('k3', bytes(1))).to.deep.include({ ok: false, reason: 'too-many-keys' })
    expect(a.set('k2', bytes(2)).ok).to.equal(true)
    const big = h.add('big')
    for (let i = 0; i < 5; i++) { big.set(`k${i}`, bytes(i)) }
    a.step(deltaOf('big', 'a', 'big', big.snapshot().map(e => ({ ...e, ageTicks: 0 }))))
    expect(a.nodes()).to.deep.equal(['a'])
    expect(a.status().counters.overLimitDeltas).to.equal(1)
  })

  it('keyLengthMax: keys of 1..keyLengthMax characters only', () => {
    const h = new GossipHarness()
    const a = h.add('a', { keyLengthMax: 4 })
    expect(a.set('abcd', bytes(1)).ok).to.equal(true)
    expect(a.set('abcde', bytes(1))).to.deep.include({ ok: false, reason: 'invalid-key' })
    expect(a.set('', bytes(1))).to.deep.include({ ok: false, reason: 'invalid-key' })
    expect(a.delete('abcde')).to.deep.include({ ok: false, reason: 'invalid-key' })
  })

  it('valueBytesMax: larger values are refused', () => {
    const h = new GossipHarness()
    const a = h.add('a')
    expect(a.set('k', new Uint8Array(ANTI_ENTROPY_DEFAULTS.valueBytesMax)).ok).to.equal(true)
    expect(a.set('k', new Uint8Array(ANTI_ENTROPY_DEFAULTS.valueBytesMax + 1))).to.deep.include({ ok: false, reason: 'too-large' })
  })

  it('bytesPerNodeMax: a node\'s own entries stay within it, and another\'s within its slack', () => {
    const h = new GossipHarness()
    const a = h.add('a')
    for (let i = 0; i < 3; i++) { expect(a.set(`k${i}`, new Uint8Array(16_300)).ok, `k${i}`).to.equal(true) }
    expect(a.set('k3', new Uint8Array(16_300))).to.deep.include({ ok: false, reason: 'too-large' })
    expect(a.status().bytes).to.be.at.most(ANTI_ENTROPY_DEFAULTS.bytesPerNodeMax)
    const small = h.add('small', { bytesPerNodeMax: 20_000, storeBytesMax: 1_000_000 })
    small.step(deltaOf('a', 'small', 'a', a.snapshot().map(e => ({ ...e, ageTicks: 0 }))))
    expect(small.nodes()).to.deep.equal([])
    expect(small.status().counters.overLimitDeltas).to.equal(1)
  })

  it('storeBytesMax: nodes that would overfill the store are refused, and so is our own write', () => {
    const h = new GossipHarness()
    const limits = { bytesPerNodeMax: 20_000, storeBytesMax: 40_000 }
    const a = h.add('a', limits)
    for (const id of ['c', 'd', 'e']) { a.step(deltaOf('b', 'a', id, [wire(h.keyring, id, 'k', new Uint8Array(15_000), 1)])) }
    expect(a.nodes()).to.deep.equal(['c', 'd'])
    expect(a.status().counters.overLimitDeltas).to.equal(1)
    expect(a.set('k', new Uint8Array(15_000))).to.deep.include({ ok: false, reason: 'too-large' })
    expect(a.status().bytes).to.be.at.most(40_000)
  })

  it('messageBytesMax and the digest limits: every message and page built stays within them', () => {
    const h = new GossipHarness()
    const limits = { digestEntriesMax: 3, digestBytesMax: 2400, valueBytesMax: 4096, bytesPerNodeMax: 8192, messageBytesMax: 10_000 }
    const a = h.add('a', { ...limits, mode: 'push-pull' })
    const ids = Array.from({ length: 12 }, (_, i) => `n${String(i).padStart(2, '0')}`)
    for (const id of ids) { a.step(deltaOf('b', 'a', id, [wire(h.keyring, id, 'k', new Uint8Array(4000), 1)])) }
    a.ready()
    a.setPeers(ids)
    const sent: GossipMessage[] = []
    for (let t = 0; t < 50; t++) {
      a.tick()
      a.step(digestFrom(ids[t % ids.length], 'a'))
      sent.push(...a.ready().messages)
    }
    const pages = sent.map(m => m.page).filter(p => p !== null)
    expect(pages.length).to.be.above(10)
    for (const page of pages) {
      expect(page.versions.length).to.be.at.most(3)
      expect(pageBytes(page)).to.be.at.most(2400)
    }
    const replies = sent.filter(m => m.type === 'delta')
    expect(replies.length).to.be.above(10)
    for (const m of sent) { expect(gossipMessageBytes(m)).to.be.at.most(10_000) }
    // Each answer to an empty digest holds what fits, two 4 kB entries of the twelve.
    expect(replies.map(m => m.deltas.length)).to.include(2)
    expect(Math.max(...replies.map(m => m.deltas.length))).to.equal(2)
  })

  it('outboxMessagesMax: messages beyond it are dropped and counted', () => {
    const h = new GossipHarness()
    const a = h.add('a', { outboxMessagesMax: 2, fanout: 3, adaptive: false })
    a.setPeers(['b', 'c', 'd'])
    for (let t = 0; t < 10; t++) { a.tick() }
    expect(a.ready().messages).to.have.length(2)
    expect(a.status().counters.outboxDropped).to.equal(1)
  })

  it('eventsMax: events beyond it are dropped and counted', () => {
    const h = new GossipHarness()
    const a = h.add('a', { eventsMax: 2 })
    a.step({ type: 'delta', from: 'b', to: 'a', page: null, deltas: ['c', 'd', 'e'].map(id => ({ node: id, after: 0, entries: [wire(h.keyring, id, 'k', bytes(1), 1)] })) })
    expect(a.ready().events).to.have.length(2)
    expect(a.status().counters.eventsDropped).to.equal(1)
    expect(a.nodes()).to.deep.equal(['c', 'd', 'e'])
  })

  it('peersMax: setPeers refuses more, and ignores our own id and repeats', () => {
    const h = new GossipHarness()
    const a = h.add('a', { peersMax: 2 })
    a.setPeers(['a', 'b', 'c', 'b'])
    expect(a.status().peers).to.equal(2)
    expect(() => { a.setPeers(['b', 'c', 'd']) }).to.throw(RangeError)
    expect(() => { a.setPeers(['']) }).to.throw(RangeError)
  })

  it('repliesPerIntervalMax: digests beyond it in one interval are refused as busy', () => {
    const h = new GossipHarness()
    const a = h.add('a', { repliesPerIntervalMax: 2, adaptive: false, intervalTicks: 10 })
    a.set('k', bytes(1))
    expect(a.step(digestFrom('b', 'a'))).to.deep.equal({ ok: true })
    expect(a.step(digestFrom('c', 'a'))).to.deep.equal({ ok: true })
    expect(a.step(digestFrom('d', 'a'))).to.deep.include({ ok: false, reason: 'busy' })
    expect(a.status().counters.repliesRefused).to.equal(1)
    for (let t = 0; t < 10; t++) { a.tick() }
    expect(a.step(digestFrom('d', 'a'))).to.deep.equal({ ok: true })
  })

  it('pendingExchangesMax: the oldest open exchange is dropped beyond it, and exchanges expire', () => {
    const h = new GossipHarness()
    const a = h.add('a', { pendingExchangesMax: 2, fanout: 3, adaptive: false, mode: 'push-pull', intervalTicks: 50, exchangeTimeoutTicks: 30 })
    a.setPeers(['b', 'c', 'd'])
    while (!a.hasReady()) { a.tick() }
    const asked = (a.ready().messages as DigestMessage[]).map(m => m.to)
    expect(asked).to.have.length(3)
    expect(a.status().pendingExchanges).to.equal(2)
    // The first one asked was dropped: its answer's page is unexpected now.
    a.step({ type: 'delta', from: asked[0], to: 'a', deltas: [], page: { after: null, until: null, versions: [] } })
    expect(a.status().counters.unexpectedPages).to.equal(1)
    for (let t = 0; t < 30; t++) { a.tick() }
    expect(a.status()).to.deep.include({ pendingExchanges: 0 })
    expect(a.status().counters.exchangesExpired).to.equal(2)
  })

  it('forgotten nodes are remembered at most nodesMax', () => {
    const h = new GossipHarness()
    const a = h.add('a', { nodesMax: 3 })
    for (const id of ['b', 'c', 'd', 'e', 'f']) { a.forget(id) }
    expect(a.status().forgotten).to.equal(3)
  })

  it('refuses a configuration that cannot work', () => {
    const bad: Array<Record<string, unknown>> = [
      { id: '' },
      { auth: {} },
      { mode: 'gossip' },
      { adaptive: 'yes' },
      { fanout: 0 },
      { fanout: 9, fanoutMax: 8 },
      { fanoutMax: 65 },
      { intervalTicks: 4, intervalTicksMin: 5 },
      { initialVersion: -1 },
      { valueBytesMax: 70_000 },
      { storeBytesMax: 100_000 },
      { digestBytesMax: 100 },
      { messageBytesMax: 40_000 },
      { snapshot: 'none' }
    ]
    for (const overrides of bad) {
      expect(() => resolveConfig({ id: 'a', auth, ...overrides } as never), JSON.stringify(overrides)).to.throw(RangeError)
    }
    expect(resolveConfig({ id: 'a', auth }).messageBytesMax).to.equal(64 * 1024)
  })
})
