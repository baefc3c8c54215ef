import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { createRng } from '../../protocols/common/rng.ts'
import { AntiEntropyNode, entryPayload, GOSSIP_MODES, RAISE_MARGIN, VERSION_JUMP_MAX } from '../../protocols/gossip/index.ts'
import { GossipHarness, storeText } from '../sim/gossip/harness.ts'
import { Keyring } from '../sim/gossip/keyring.ts'
import type { DeltaMessage, DigestMessage, EntryAuth, GossipEvent, GossipMessage, WireEntry } from '../../protocols/gossip/index.ts'

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values)

function wire (keyring: Keyring, node: string, key: string, value: Uint8Array | null, version: number): WireEntry {
  return { key, value, version, signature: keyring.authFor(node).sign(entryPayload(node, key, value, version)), ageTicks: 0 }
}

function deltaOf (from: string, to: string, node: string, after: number, entries: WireEntry[]): DeltaMessage {
  return { type: 'delta', from, to, page: null, deltas: [{ node, after, entries }] }
}

/** Runs rounds until every node holds the same store (at most `ticks` ticks); returns the ticks it took. */
function settle (h: GossipHarness, ticks = 2000): number {
  for (let t = 0; t < ticks; t++) {
    if (h.converged()) { return t }
    h.run(1)
  }
  throw new Error(`not converged after ${ticks} ticks:\n${[...h.nodes.values()].map(n => `${n.id}:\n${storeText(n)}`).join('\n')}`)
}

function updates (events: GossipEvent[]): string[] {
  return events.map(e => e.type === 'entry:update' ? `${e.node}/${e.key}@${e.version}${e.deleted ? ' deleted' : ''}` : `raised ${e.seen}->${e.version}`)
}

describe('gossip/exchanges', () => {
  for (const mode of GOSSIP_MODES) {
    it(`${mode}: every node comes to hold every node's values, tombstones included`, () => {
      const h = new GossipHarness()
      const ids = ['a', 'b', 'c', 'd', 'e', 'f']
      for (const id of ids) { h.add(id, { mode }) }
      h.connectAll()
      h.node('a').set('addr', bytes(1, 2))
      h.node('b').set('role', bytes(3))
      h.node('b').set('role', bytes(4))
      h.node('c').set('gone', bytes(5))
      h.node('c').delete('gone')
      settle(h)
      for (const id of ids) {
        const node = h.node(id)
        expect(node.get('a', 'addr'), id).to.deep.equal(bytes(1, 2))
        expect(node.entriesOf('b'), id).to.deep.equal([{ key: 'role', value: bytes(4), version: 2 }])
        expect(node.get('c', 'gone'), id).to.equal(undefined)
        expect(node.versionOf('c'), id).to.equal(2)
        node.checkInvariants()
      }
    })
  }

  it('pull: the initiator sends its digest, the peer answers with what it lacks', () => {
    const h = new GossipHarness()
    const a = h.add('a', { mode: 'pull', fanout: 1 })
    const b = h.add('b', { mode: 'pull' })
    a.setPeers(['b'])
    b.set('k', bytes(7))
    b.ready()
    h.tick(10, ['a'])
    const [d] = h.take(m => m.from === 'a') as DigestMessage[]
    expect(d).to.deep.include({ type: 'digest', to: 'b', want: 'entries' })
    expect(d.page).to.deep.equal({ after: null, until: null, versions: [] })
    expect(b.step(d)).to.deep.equal({ ok: true })
    const [reply] = b.ready().messages as DeltaMessage[]
    expect(reply.page).to.equal(null)
    expect(reply.deltas.map(x => [x.node, x.after, x.entries.map(e => e.key)])).to.deep.equal([['b', 0, ['k']]])
    a.step(reply)
    expect(a.get('b', 'k')).to.deep.equal(bytes(7))
  })

  it('push: the initiator asks for the peer\'s digest of a range, then sends what the peer lacks', () => {
    const h = new GossipHarness()
    const a = h.add('a', { mode: 'push', fanout: 1 })
    const b = h.add('b', { mode: 'push' })
    a.setPeers(['b'])
    a.set('k', bytes(7))
    a.ready()
    h.tick(10, ['a'])
    const [d] = h.take(m => m.from === 'a') as DigestMessage[]
    expect(d).to.deep.include({ want: 'digest' })
    expect(d.page.versions).to.deep.equal([])
    b.step(d)
    const [answer] = b.ready().messages as DeltaMessage[]
    expect(answer.deltas).to.deep.equal([])
    expect(answer.page).to.deep.equal({ after: null, until: null, versions: [] })
    a.step(answer)
    const [push] = a.ready().messages as DeltaMessage[]
    expect(push.deltas.map(x => x.node)).to.deep.equal(['a'])
    b.step(push)
    expect(b.get('a', 'k')).to.deep.equal(bytes(7))
    expect(a.status().pendingExchanges).to.equal(0)
  })

  it('push-pull: one exchange carries news both ways', () => {
    const h = new GossipHarness()
    const a = h.add('a', { mode: 'push-pull', fanout: 1 })
    const b = h.add('b', { mode: 'push-pull' })
    a.setPeers(['b'])
    a.set('x', bytes(1))
    b.set('y', bytes(2))
    h.collect()
    h.inflight = []
    h.tick(10, ['a'])
    h.deliver()
    const types = h.results.map(r => `${r.message.type}:${r.message.from}`)
    expect(types).to.deep.equal(['digest:a', 'delta:b', 'delta:a'])
    expect(a.get('b', 'y')).to.deep.equal(bytes(2))
    expect(b.get('a', 'x')).to.deep.equal(bytes(1))
  })

  it('an answer cut short by messageBytesMax leaves a valid high-water mark, and the rest follows', () => {
    const h = new GossipHarness()
    const limits = { valueBytesMax: 1024, keyLengthMax: 16, bytesPerNodeMax: 32 * 1024, digestBytesMax: 2400, messageBytesMax: 6500 }
    const a = h.add('a', { ...limits, mode: 'pull', fanout: 1 })
    const b = h.add('b', limits)
    a.setPeers(['b'])
    for (let i = 0; i < 20; i++) { b.set(`k${i}`, new Uint8Array(1000).fill(i)) }
    b.set('k3', bytes(3))
    b.ready()
    const seen: number[] = []
    for (let round = 0; round < 20 && a.versionOf('b') < b.versionOf('b'); round++) {
      h.tick(10, ['a'])
      h.deliver()
      seen.push(a.versionOf('b'))
      // Scuttlebutt's invariant: every key whose latest write is at or below our version for b is held at that write.
      for (const e of b.entriesOf('b')) {
        if (e.version <= a.versionOf('b')) { expect(a.get('b', e.key), e.key).to.deep.equal(e.value) }
      }
    }
    expect(seen.length).to.be.above(2)
    expect(seen[0]).to.be.below(b.versionOf('b'))
    expect(storeText(a)).to.equal(storeText(b))
  })

  it('takes a node\'s entries only from a version it holds (never skips one)', () => {
    const h = new GossipHarness()
    const a = h.add('a')
    const c = h.keyring
    expect(a.step(deltaOf('b', 'a', 'c', 1, [wire(c, 'c', 'k', bytes(2), 2)]))).to.deep.equal({ ok: true })
    expect(a.versionOf('c')).to.equal(0)
    expect(a.status().counters.gapDeltas).to.equal(1)
    a.step(deltaOf('b', 'a', 'c', 0, [wire(c, 'c', 'j', bytes(1), 1)]))
    a.step(deltaOf('b', 'a', 'c', 1, [wire(c, 'c', 'k', bytes(2), 2)]))
    expect(a.entriesOf('c').map(e => e.key)).to.deep.equal(['j', 'k'])
  })

  it('refuses a whole message carrying one forged entry, changing nothing', () => {
    const h = new GossipHarness()
    const a = h.add('a')
    const keyring = h.keyring
    const forged = { ...wire(keyring, 'd', 'k', bytes(9), 1), signature: keyring.authFor('b').sign(entryPayload('d', 'k', bytes(9), 1)) }
    const m: DeltaMessage = {
      type: 'delta',
      from: 'b',
      to: 'a',
      page: null,
      deltas: [{ node: 'c', after: 0, entries: [wire(keyring, 'c', 'k', bytes(1), 1)] }, { node: 'd', after: 0, entries: [forged] }]
    }
    expect(a.step(m)).to.deep.include({ ok: false, reason: 'forged-entry' })
    expect(a.nodes()).to.deep.equal([])
    expect(a.hasReady()).to.equal(false)
    expect(a.status().counters.forgedEntries).to.equal(1)
    // A changed value under a genuine signature is as forged.
    const changed = { ...wire(keyring, 'c', 'k', bytes(1), 1), value: bytes(2) }
    expect(a.step(deltaOf('b', 'a', 'c', 0, [changed]))).to.deep.include({ ok: false, reason: 'forged-entry' })
  })

  it('takes an auth that throws for a signature that does not verify (step() never throws)', () => {
    const h = new GossipHarness()
    const throwing: EntryAuth = { sign: () => bytes(1), verify: () => { throw new Error('malformed key') } }
    const a = new AntiEntropyNode({ id: 'a', auth: throwing }, createRng(1))
    expect(a.step(deltaOf('b', 'a', 'c', 0, [wire(h.keyring, 'c', 'k', bytes(1), 1)]))).to.deep.include({ ok: false, reason: 'forged-entry' })
    expect(a.nodes()).to.deep.equal([])
  })

  it('counts entries it holds already as duplicates, and reports only changes', () => {
    const h = new GossipHarness()
    const a = h.add('a')
    const m = deltaOf('b', 'a', 'c', 0, [wire(h.keyring, 'c', 'k', bytes(1), 1), wire(h.keyring, 'c', 'j', null, 2)])
    a.step(m)
    expect(updates(a.ready().events)).to.deep.equal(['c/k@1', 'c/j@2 deleted'])
    a.step(m)
    expect(a.ready().events).to.deep.equal([])
    expect(a.status().counters).to.deep.include({ entriesReceived: 4, entriesDuplicate: 2, entriesApplied: 2 })
    expect(a.status().duplicateRate).to.equal(0)
    h.tick(10, ['a'])
    expect(a.status().duplicateRate).to.equal(0.5)
  })

  it('compacts its tombstones into a floor past keysPerNodeMax, and peers drop theirs too', () => {
    const h = new GossipHarness()
    const a = h.add('a', { keysPerNodeMax: 2 })
    h.add('b', { keysPerNodeMax: 2 })
    h.connectAll()
    a.set('k1', bytes(1))
    a.set('k2', bytes(2))
    a.delete('k1')
    a.set('k3', bytes(3))
    expect(a.set('k4', bytes(4))).to.deep.include({ ok: false, reason: 'too-many-keys' })
    a.delete('k2')
    settle(h)
    expect(h.node('b').snapshot().filter(e => e.value === null).map(e => e.key)).to.deep.equal(['k1', 'k2'])
    const result = a.delete('k3')
    expect(result).to.deep.equal({ ok: true, version: 6 })
    expect(a.status().counters.compactions).to.equal(1)
    expect(a.snapshot().map(e => `${e.key}@${e.version}`)).to.deep.equal(['@6'])
    settle(h)
    expect(h.node('b').snapshot().map(e => `${e.node}/${e.key}@${e.version}`)).to.deep.equal(['a/@6'])
    expect(updates(h.takeEvents('b')).slice(-1)).to.deep.equal(['a/k3@6 deleted'])
    expect(a.set('k4', bytes(4))).to.deep.equal({ ok: true, version: 7 })
  })

  it('a restarted node that forgot raises its version above its old entries, which are void everywhere', () => {
    const h = new GossipHarness()
    h.add('a')
    const b = h.add('b')
    h.connectAll()
    h.node('a').set('k1', bytes(1))
    h.node('a').set('k2', bytes(2))
    h.node('a').set('k3', bytes(3))
    settle(h)
    expect(b.versionOf('a')).to.equal(3)
    // A fresh process, same id, no memory: its first write reuses version 1.
    const a = h.add('a')
    a.setPeers(['b'])
    a.set('new', bytes(9))
    h.takeEvents('a')
    settle(h)
    // Its floor goes RAISE_MARGIN above the old entry it met, its value above that.
    const floor = 3 + RAISE_MARGIN + 1
    expect(updates(h.takeEvents('a')).filter(e => e.startsWith('raised'))).to.deep.equal([`raised 3->${floor + 1}`])
    expect(a.status().counters.versionRaises).to.equal(1)
    expect(b.entriesOf('a')).to.deep.equal([{ key: 'new', value: bytes(9), version: floor + 1 }])
    expect(b.snapshot().filter(e => e.node === 'a').map(e => `${e.key}@${e.version}`)).to.deep.equal([`@${floor}`, `new@${floor + 1}`])
  })

  it('started with initialVersion (a persisted counter), a node voids whatever it published before', () => {
    const h = new GossipHarness()
    h.add('a')
    const b = h.add('b')
    h.connectAll()
    h.node('a').set('old', bytes(1))
    h.node('a').set('old2', bytes(1))
    settle(h)
    const a = h.add('a', { initialVersion: 2 })
    a.setPeers(['b'])
    expect(a.versionOf('a')).to.equal(3)
    settle(h)
    expect(b.entriesOf('a')).to.deep.equal([])
    expect(b.versionOf('a')).to.equal(3)
    expect(a.status().counters.versionRaises).to.equal(0)
  })

  it('forget() drops a node and refuses its entries relayed by others for forgetRetentionTicks, not from itself', () => {
    const h = new GossipHarness()
    const a = h.add('a', { forgetRetentionTicks: 100 })
    const keyring = h.keyring
    const relayed = deltaOf('b', 'a', 'c', 0, [wire(keyring, 'c', 'k', bytes(1), 1)])
    a.step(relayed)
    a.forget('c')
    expect(updates(a.ready().events)).to.deep.equal(['c/k@1', 'c/k@1 deleted'])
    expect(a.nodes()).to.deep.equal([])
    a.step(relayed)
    expect(a.nodes()).to.deep.equal([])
    expect(a.status().counters.forgottenDeltas).to.equal(1)
    a.step({ ...relayed, from: 'c' })
    expect(a.get('c', 'k')).to.deep.equal(bytes(1))
    a.forget('c')
    for (let t = 0; t < 100; t++) { a.tick() }
    a.step(relayed)
    expect(a.get('c', 'k')).to.deep.equal(bytes(1))
    expect(a.status().forgotten).to.equal(0)
    expect(() => { a.forget('a') }).to.throw(RangeError)
  })

  it('bounds relayed version jumps (even when every signature verifies), but not a node\'s own', () => {
    const lenient: EntryAuth = { sign: () => bytes(1), verify: () => true }
    const a = new AntiEntropyNode({ id: 'a', auth: lenient }, createRng(1))
    const entry = (key: string, version: number): WireEntry => ({ key, value: bytes(1), version, signature: bytes(1), ageTicks: 0 })
    a.step(deltaOf('b', 'a', 'c', 0, [entry('k', 1)]))
    a.step(deltaOf('b', 'a', 'c', 1, [entry('k', 2 + VERSION_JUMP_MAX)]))
    expect(a.versionOf('c')).to.equal(1)
    expect(a.status().counters.implausibleDeltas).to.equal(1)
    a.step(deltaOf('b', 'a', 'c', 1, [entry('k', 1 + VERSION_JUMP_MAX)]))
    expect(a.versionOf('c')).to.equal(1 + VERSION_JUMP_MAX)
    a.step(deltaOf('c', 'a', 'c', 0, [entry('k', 2 ** 50)]))
    expect(a.versionOf('c')).to.equal(2 ** 50)
    // Our own entries relayed far above our counter are as implausible: no raise.
    a.step(deltaOf('b', 'a', 'a', 0, [entry('k', 1 + VERSION_JUMP_MAX)]))
    expect(a.versionOf('a')).to.equal(0)
    expect(a.status().counters).to.deep.include({ implausibleDeltas: 2, versionRaises: 0 })
  })

  it('starts from a snapshot of another node\'s store, and refuses one with a forged entry', () => {
    const h = new GossipHarness()
    const a = h.add('a')
    h.add('b')
    h.connectAll()
    a.set('x', bytes(1))
    a.set('y', bytes(2))
    a.delete('x')
    h.node('b').set('z', bytes(3))
    settle(h)
    const c = h.add('c', { snapshot: a.snapshot() })
    expect(storeText(c)).to.equal(storeText(a))
    const forged = a.snapshot().map(e => e.key === 'y' ? { ...e, value: bytes(9) } : e)
    expect(() => h.add('d', { snapshot: forged })).to.throw(RangeError, /signature/)
    expect(() => h.add('e', { snapshot: [{ ...a.snapshot()[0], version: -1 }] })).to.throw(RangeError)
  })

  it('goes through a large digest page by page, each range once in turn', () => {
    const h = new GossipHarness()
    const a = h.add('a', { digestEntriesMax: 2, fanout: 1, mode: 'pull' })
    a.setPeers(['z'])
    for (const id of ['c', 'd', 'e', 'f', 'g']) { a.step(deltaOf('z', 'a', id, 0, [wire(h.keyring, id, 'k', bytes(1), 1)])) }
    a.ready()
    const pages: string[] = []
    for (let i = 0; i < 4; i++) {
      h.tick(10, ['a'])
      const [d] = h.take(m => m.from === 'a') as DigestMessage[]
      pages.push(`(${d.page.after ?? '-'},${d.page.until ?? '-'}] ${d.page.versions.map(v => v.node).join('')}`)
    }
    expect(pages).to.deep.equal(['(-,d] cd', '(d,f] ef', '(f,-] g', '(-,d] cd'])
  })

  it('answers a digest with the entries the peer lacks only within the page\'s range', () => {
    const h = new GossipHarness()
    const a = h.add('a')
    for (const id of ['c', 'd', 'e']) { a.step(deltaOf('z', 'a', id, 0, [wire(h.keyring, id, 'k', bytes(1), 1)])) }
    a.ready()
    const digest: GossipMessage = { type: 'digest', from: 'b', to: 'a', want: 'both', page: { after: 'c', until: 'd', versions: [] } }
    a.step(digest)
    const [reply] = a.ready().messages as DeltaMessage[]
    expect(reply.deltas.map(d => d.node)).to.deep.equal(['d'])
    expect(reply.page).to.deep.equal({ after: 'c', until: 'd', versions: [{ node: 'd', version: 1 }] })
  })

  it('works with real Ed25519 signatures: libp2p keys, verified against the public key in the peer id', async () => {
    const keys = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    const ids = keys.map(k => peerIdFromPrivateKey(k).toString())
    const auth = (index: number): EntryAuth => ({
      sign: (payload) => {
        const signature = keys[index].sign(payload)
        if (signature instanceof Promise) { throw new Error('expected a synchronous Ed25519 signer') }
        return signature
      },
      verify: (node, payload, signature) => {
        try {
          const publicKey = peerIdFromString(node).publicKey
          return publicKey?.verify(payload, signature) === true
        } catch {
          return false
        }
      }
    })
    const a = new AntiEntropyNode({ id: ids[0], auth: auth(0) }, createRng(1))
    const b = new AntiEntropyNode({ id: ids[1], auth: auth(1) }, createRng(2))
    a.set('addr', bytes(1, 2, 3))
    const entries = a.snapshot().map(e => ({ key: e.key, value: e.value, version: e.version, signature: e.signature, ageTicks: 0 }))
    expect(entries[0].signature.byteLength).to.equal(64)
    const tampered = entries.map(e => ({ ...e, value: bytes(6, 6, 6) }))
    expect(b.step(deltaOf(ids[0], ids[1], ids[0], 0, tampered))).to.deep.include({ ok: false, reason: 'forged-entry' })
    expect(b.step(deltaOf(ids[0], ids[1], ids[0], 0, entries))).to.deep.equal({ ok: true })
    expect(b.get(ids[0], 'addr')).to.deep.equal(bytes(1, 2, 3))
    // An entry of a claiming to be b's, signed by a's key.
    const claim = { key: 'addr', value: bytes(7), version: 1, signature: entries[0].signature, ageTicks: 0 }
    expect(a.step(deltaOf(ids[1], ids[0], ids[1], 0, [claim]))).to.deep.include({ ok: false, reason: 'forged-entry' })
  })
})
