import { expect } from 'aegir/chai'
import { RAFT_STORAGE_DEFAULTS } from '../../node/raft/storage/index.ts'
import { RAFT_TRANSPORT_DEFAULTS } from '../../node/raft/transport-constants.ts'
import { encodeUtf8 } from '../../protocols/kv/codec.ts'
import { encodeCommand, KV_DEFAULTS, KvStateMachine, kvSnapshotBytesMax } from '../../protocols/kv/index.ts'
import { distinctKeysMax } from '../../protocols/kv/snapshot.ts'
import type { KvLimits } from '../../protocols/kv/index.ts'

const MIB = 1024 * 1024

/** Every string of exactly 1 or 2 UTF-8 bytes: 128 ASCII characters, then pairs of them, then 1,920 two-byte characters. */
function shortestKeys (): string[] {
  const ascii = Array.from({ length: 128 }, (_, i) => String.fromCharCode(i))
  const pairs = ascii.flatMap(a => ascii.map(b => a + b))
  const twoByte = Array.from({ length: 0x800 - 0x80 }, (_, i) => String.fromCharCode(0x80 + i))
  return [...ascii, ...pairs, ...twoByte]
}

describe('raft kv: the largest snapshot a store can produce (kvSnapshotBytesMax)', () => {
  it('counts the distinct keys that fit in a number of bytes, shortest first', () => {
    expect(distinctKeysMax(100, 1024)).to.equal(100)
    expect(distinctKeysMax(128, 1024)).to.equal(128)
    // 128 one-byte keys, then two-byte ones
    expect(distinctKeysMax(132, 1024)).to.equal(130)
    expect(distinctKeysMax(10_000, 1)).to.equal(128)
    expect(distinctKeysMax(128 + 2 * 18_304 + 30, 3)).to.equal(128 + 18_304 + 10)
    expect(distinctKeysMax(KV_DEFAULTS.dataBytesMax, KV_DEFAULTS.keyBytesMax)).to.equal(67_780_640)
  })

  it('a snapshot of a store filled to its limits in the worst way fits, and the bound is tight', () => {
    // every key as short as possible (each costs two length bytes for its
    // one or two bytes), the data left over in values long enough for
    // two-byte lengths, every session with a clientId of the longest and
    // counters near 2^53
    const limits: KvLimits = { keyBytesMax: 2, valueBytesMax: 300, clientIdBytesMax: 8, sessionsMax: 20, dataBytesMax: 40_000 }
    const kv = new KvStateMachine(limits)
    let index = 2 ** 52
    kv.skip(index)
    const clients = Array.from({ length: limits.sessionsMax }, (_, i) => `client${String(i).padStart(2, '0')}`)
    const sequences = clients.map(() => 0)
    const put = (key: string, value: Uint8Array): void => {
      const c = index % clients.length
      const result = kv.apply(++index, encodeCommand({ type: 'put', session: { clientId: clients[c], sequence: ++sequences[c] }, key, value }))
      expect(result.ok, JSON.stringify(result)).to.equal(true)
    }
    const keys = shortestKeys()
    expect(keys).to.have.length(distinctKeysMax(limits.dataBytesMax, limits.keyBytesMax))
    for (const key of keys) { put(key, new Uint8Array(0)) }
    let left = limits.dataBytesMax - keys.reduce((sum, key) => sum + encodeUtf8(key).length, 0)
    for (let i = 0; left > 0; i++) {
      const value = new Uint8Array(Math.min(left, 128))
      put(keys[i], value)
      left -= value.length
    }
    // the last command of each session with the largest sequence there is
    // (rewriting a key that holds nothing, so the data stay as they are)
    for (const clientId of clients) {
      const result = kv.apply(++index, encodeCommand({ type: 'put', session: { clientId, sequence: Number.MAX_SAFE_INTEGER }, key: keys[keys.length - 1], value: new Uint8Array(0) }))
      expect(result.ok, JSON.stringify(result)).to.equal(true)
    }
    expect(kv.stats()).to.deep.include({ sessions: limits.sessionsMax, dataBytes: limits.dataBytesMax, keys: keys.length })
    const bytes = kv.snapshot().length
    const bound = kvSnapshotBytesMax(limits)
    expect(bytes).to.be.at.most(bound)
    // the bound gives away no more than the dataBytesMax / 128 it allows for value lengths
    expect(bound - bytes).to.be.below(limits.dataBytesMax / 128)
  })

  it(`the transport and the store take every snapshot of a KV store with KV_DEFAULTS (${Math.round(kvSnapshotBytesMax(KV_DEFAULTS) / MIB)} MiB)`, () => {
    const bound = kvSnapshotBytesMax(KV_DEFAULTS)
    expect(RAFT_TRANSPORT_DEFAULTS.snapshotBytesMax).to.equal(bound)
    expect(RAFT_STORAGE_DEFAULTS.snapshotBytesMax).to.equal(bound)
    // 256 MiB of data, plus two length bytes for each of the up to 67.8 million keys
    expect(bound).to.be.above(KV_DEFAULTS.dataBytesMax + 2 * 67_780_640)
    expect(Math.round(bound / MIB)).to.equal(389)
  })
})

describe('raft kv: checkSnapshot (check first, install later)', () => {
  const put = (sequence: number, key: string, value: string): Uint8Array =>
    encodeCommand({ type: 'put', session: { clientId: 'c', sequence }, key, value: encodeUtf8(value) })

  it('checks without touching the state, which may go on applying; install() then puts the checked state in place', () => {
    const source = new KvStateMachine()
    source.apply(1, put(1, 'k', 'from the snapshot'))
    const bytes = source.snapshot()

    const target = new KvStateMachine()
    target.apply(1, put(1, 'k', 'local'))
    const check = target.checkSnapshot(bytes)
    let steps = 0
    while (!check.decodeSome(16)) {
      steps++
      target.apply(1 + steps, put(1 + steps, `local-${steps}`, 'x'))
    }
    expect(steps).to.be.above(0)
    expect(check.result()).to.deep.equal({ ok: true, appliedIndex: 1 })
    expect(target.get('k')).to.deep.equal(encodeUtf8('local'))
    check.install()
    expect(target.snapshot()).to.deep.equal(bytes)
    expect(target.appliedIndex).to.equal(1)
    expect(() => { check.install() }).to.throw(/once/)
  })

  it('refuses a malformed snapshot or one taken under other limits, and will not install it', () => {
    const target = new KvStateMachine()
    const garbage = target.checkSnapshot(new Uint8Array(64).fill(7))
    while (!garbage.decodeSome(1024)) { /* steps */ }
    expect(garbage.result()).to.deep.equal({ ok: false, error: 'malformed snapshot: not a KV snapshot (bad magic)' })
    expect(() => { garbage.install() }).to.throw(/failed its check/)

    const other = new KvStateMachine({ valueBytesMax: 10 })
    other.apply(1, put(1, 'k', 'v'))
    const check = target.checkSnapshot(other.snapshot())
    while (!check.decodeSome(1024)) { /* steps */ }
    expect(check.result()).to.deep.include({ ok: false })
    expect(target.appliedIndex).to.equal(0)
  })
})
