import { expect } from 'aegir/chai'
import { OutboundQueue } from '../../node/outbound-queue.ts'
import { FRAME_BYTES_MAX } from '../../node/raft/codec.ts'
import { resolveLimits, RAFT_TRANSPORT_DEFAULTS } from '../../node/raft/transport-constants.ts'
import { SnapshotReassembler } from '../../node/raft/transport-reassembly.ts'
import { boundedLengthDecoder } from '../../node/raft/transport.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { varint } from '../lib/bytes-fuzz.ts'
import type { QueueItem } from '../../node/outbound-queue.ts'
import type { ReassemblyHooks } from '../../node/raft/transport-reassembly.ts'
import type { SnapshotMessage } from '../../protocols/raft/index.ts'

const conf = { voters: ['a', 'b'], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }
const snapshot = (index = 5): SnapshotMessage => ({ type: 'snapshot', from: 'a', to: 'b', term: 2, snapshot: { meta: { index, term: 1, conf }, data: new Uint8Array(0) } })
const frame = (tag: number, bytes = 10): QueueItem => ({ kind: 'frame', frame: new Uint8Array([tag]), bytes })
const tags = (items: QueueItem[]): number[] => items.map(i => i.kind === 'frame' ? i.frame[0] : -1)

describe('raft transport: outbound queue', () => {
  it('drops the oldest messages once outboundQueueMessagesMax is reached', () => {
    const queue = new OutboundQueue({ messagesMax: 3, bytesMax: 1000 })
    expect(queue.push(frame(1))).to.deep.equal([])
    queue.push(frame(2))
    queue.push(frame(3))
    expect(tags(queue.push(frame(4)))).to.deep.equal([1])
    expect(tags(queue.push(frame(5)))).to.deep.equal([2])
    expect(queue.length).to.equal(3)
    expect(tags(queue.clear())).to.deep.equal([3, 4, 5])
    expect(queue.length).to.equal(0)
    expect(queue.bytes).to.equal(0)
  })

  it('drops the oldest messages to stay within outboundQueueBytesMax', () => {
    const queue = new OutboundQueue({ messagesMax: 100, bytesMax: 100 })
    const rng = createRng(7)
    for (let i = 0; i < 1000; i++) {
      queue.push(frame(i % 256, rng.intBetween(1, 60)))
      expect(queue.bytes).to.be.at.most(100)
    }
    expect(queue.bytesPeak).to.be.at.most(100)
    expect(queue.bytesPeak).to.be.above(60)
  })

  it('refuses an item larger than the byte bound on its own and keeps the rest', () => {
    const queue = new OutboundQueue({ messagesMax: 10, bytesMax: 100 })
    queue.push(frame(1))
    const big = frame(2, 101)
    expect(queue.push(big)).to.deep.equal([big])
    expect(tags(queue.clear())).to.deep.equal([1])
  })

  it('keeps one snapshot per peer: a newer one replaces the queued one, in order', () => {
    const queue = new OutboundQueue({ messagesMax: 10, bytesMax: 1000 })
    const older: QueueItem = { kind: 'snapshot', message: snapshot(5), bytes: 50 }
    const newer: QueueItem = { kind: 'snapshot', message: snapshot(9), bytes: 50 }
    queue.push(frame(1))
    queue.push(older)
    queue.push(frame(2))
    expect(queue.push(newer)).to.deep.equal([older])
    expect(queue.clear()).to.deep.equal([frame(1), frame(2), newer])
  })

  it('shift and peekFrame walk the queue in order through compaction', () => {
    const queue = new OutboundQueue({ messagesMax: 20_000, bytesMax: 1_000_000 })
    const seen: number[] = []
    for (let i = 0; i < 20_000; i++) {
      queue.push(frame(i % 256))
      if (i % 3 !== 0) {
        if (queue.peekFrame() === undefined) { throw new Error('peekFrame lost the head') }
        seen.push(tags([queue.shift() as QueueItem])[0])
      }
    }
    while (queue.length > 0) { seen.push(tags([queue.shift() as QueueItem])[0]) }
    expect(seen).to.deep.equal(Array.from({ length: 20_000 }, (_, i) => i % 256))
    expect(queue.shift()).to.equal(undefined)
    expect(queue.peekFrame()).to.equal(undefined)
  })
})

describe('raft transport: snapshot reassembly', () => {
  const streamA = {}
  const streamB = {}
  const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values)
  const reassembler = (reassembliesMax: number, hooks: ReassemblyHooks = {}): SnapshotReassembler =>
    new SnapshotReassembler({ snapshotBytesMax: 100, reassembliesMax, progressBytes: 10, progressTimeoutMs: 1000 }, hooks)

  it('joins consecutive chunks into one snapshot message', () => {
    const r = reassembler(1)
    expect(r.begin('p', streamA, snapshot(), 5, 0)).to.deep.equal({ ok: true })
    expect(r.isOpen('p', streamA)).to.equal(true)
    expect(r.chunk('p', streamA, bytes(1, 2), 0)).to.deep.equal({ ok: true })
    expect(r.bufferedBytes).to.equal(2)
    const done = r.chunk('p', streamA, bytes(3, 4, 5), 0)
    expect(done.ok && done.complete?.snapshot.data).to.deep.equal(bytes(1, 2, 3, 4, 5))
    expect(done.ok && done.complete?.snapshot.meta.index).to.equal(5)
    expect(r.size).to.equal(0)
  })

  it('delivers an empty snapshot at once', () => {
    const r = reassembler(1)
    const done = r.begin('p', streamA, snapshot(), 0, 0)
    expect(done.ok && done.complete?.snapshot.data).to.deep.equal(new Uint8Array(0))
    expect(r.size).to.equal(0)
  })

  it('refuses a declared size above snapshotBytesMax', () => {
    const r = reassembler(1)
    expect(r.begin('p', streamA, snapshot(), 101, 0)).to.deep.equal({ ok: false, reason: 'snapshot-too-large' })
    expect(r.size).to.equal(0)
  })

  it('refuses chunks beyond the declared size and forgets the snapshot', () => {
    const r = reassembler(1)
    r.begin('p', streamA, snapshot(), 3, 0)
    expect(r.chunk('p', streamA, bytes(1, 2, 3, 4), 0)).to.deep.equal({ ok: false, reason: 'snapshot-overrun' })
    expect(r.size).to.equal(0)
  })

  it('refuses chunks without a begin on that stream, and a second begin on the same stream', () => {
    const r = reassembler(2)
    expect(r.chunk('p', streamA, bytes(1), 0)).to.deep.equal({ ok: false, reason: 'unexpected-frame' })
    r.begin('p', streamA, snapshot(), 3, 0)
    expect(r.chunk('p', streamB, bytes(1), 0)).to.deep.equal({ ok: false, reason: 'unexpected-frame' })
    expect(r.begin('p', streamA, snapshot(), 3, 0)).to.deep.equal({ ok: false, reason: 'unexpected-frame' })
  })

  it('keeps one reassembly per peer: a begin on a new stream replaces the abandoned one', () => {
    const r = reassembler(1)
    r.begin('p', streamA, snapshot(), 3, 0)
    r.chunk('p', streamA, bytes(1), 0)
    expect(r.begin('p', streamB, snapshot(7), 2, 0)).to.deep.equal({ ok: true })
    expect(r.superseded).to.equal(1)
    expect(r.size).to.equal(1)
    expect(r.chunk('p', streamA, bytes(2), 0)).to.deep.equal({ ok: false, reason: 'unexpected-frame' })
    const done = r.chunk('p', streamB, bytes(8, 9), 0)
    expect(done.ok && done.complete?.snapshot.meta.index).to.equal(7)
  })

  it('bounds reassemblies across peers at snapshotReassembliesMax', () => {
    const r = reassembler(2)
    expect(r.begin('p1', streamA, snapshot(), 1, 0).ok).to.equal(true)
    expect(r.begin('p2', streamB, snapshot(), 1, 0).ok).to.equal(true)
    const streamC = {}
    expect(r.begin('p3', streamC, snapshot(), 1, 0)).to.deep.equal({ ok: false, reason: 'snapshot-busy' })
    r.chunk('p1', streamA, bytes(1), 0)
    expect(r.begin('p3', streamC, snapshot(), 1, 0).ok).to.equal(true)
    expect(r.size).to.equal(2)
  })

  it('gives the leader a slot when strangers hold them all: its begin evicts the one whose progress is due first', () => {
    const dropped: Array<[string, object, string]> = []
    const r = reassembler(2, { isLeader: peer => peer === 'leader', onDropped: (peer, owner, reason) => { dropped.push([peer, owner, reason]) } })
    const leaderStream = {}
    expect(r.begin('stranger1', streamA, snapshot(), 50, 0).ok).to.equal(true)
    expect(r.begin('stranger2', streamB, snapshot(), 50, 100).ok).to.equal(true)
    expect(r.begin('stranger3', {}, snapshot(), 50, 200)).to.deep.equal({ ok: false, reason: 'snapshot-busy' })
    expect(r.begin('leader', leaderStream, snapshot(9), 3, 300)).to.deep.equal({ ok: true })
    expect(dropped).to.deep.equal([['stranger1', streamA, 'snapshot-evicted']])
    expect(r.evicted).to.equal(1)
    expect(r.chunk('stranger1', streamA, bytes(1), 400)).to.deep.equal({ ok: false, reason: 'unexpected-frame' })
    const done = r.chunk('leader', leaderStream, bytes(7, 8, 9), 400)
    expect(done.ok && done.complete?.snapshot.meta.index).to.equal(9)
    expect(r.isOpen('stranger2', streamB)).to.equal(true)
  })

  it('drops a reassembly that receives less than progressBytes within progressTimeoutMs (a slow drip)', () => {
    const r = reassembler(1)
    r.begin('p', streamA, snapshot(), 50, 0)
    expect(r.chunk('p', streamA, bytes(1), 400)).to.deep.equal({ ok: true })
    expect(r.chunk('p', streamA, bytes(1), 800)).to.deep.equal({ ok: true })
    // two bytes in 1 s, where 10 were due
    expect(r.chunk('p', streamA, bytes(1), 1001)).to.deep.equal({ ok: false, reason: 'snapshot-too-slow' })
    expect(r.size).to.equal(0)
    expect(r.tooSlow).to.equal(1)
  })

  it('keeps a reassembly that makes progressBytes of progress every progressTimeoutMs, however long it takes', () => {
    const r = reassembler(1)
    r.begin('p', streamA, snapshot(), 50, 0)
    for (let i = 1; i < 5; i++) { expect(r.chunk('p', streamA, new Uint8Array(10), i * 999)).to.deep.equal({ ok: true }) }
    const done = r.chunk('p', streamA, new Uint8Array(10), 5 * 999)
    expect(done.ok && done.complete?.snapshot.data.byteLength).to.equal(50)
  })

  it('a begin that finds every slot taken first drops the reassemblies past their progress deadline', () => {
    const dropped: string[] = []
    const r = reassembler(2, { onDropped: (peer, _owner, reason) => { dropped.push(`${peer} ${reason}`) } })
    r.begin('p1', streamA, snapshot(), 50, 0)
    r.begin('p2', streamB, snapshot(), 50, 500)
    expect(r.begin('p3', {}, snapshot(), 50, 1000)).to.deep.equal({ ok: false, reason: 'snapshot-busy' })
    expect(r.begin('p3', {}, snapshot(), 50, 1001)).to.deep.equal({ ok: true })
    expect(dropped).to.deep.equal(['p1 snapshot-too-slow'])
    expect(r.isOpen('p2', streamB)).to.equal(true)
  })

  it('discard forgets the reassembly of an ended stream only', () => {
    const r = reassembler(2)
    r.begin('p', streamA, snapshot(), 3, 0)
    expect(r.discard('p', streamB)).to.equal(false)
    expect(r.discard('p', streamA)).to.equal(true)
    expect(r.size).to.equal(0)
  })
})

describe('raft transport: limits', () => {
  it('fills defaults and ignores non-limit fields', () => {
    expect(resolveLimits({ outboundQueueMessagesMax: 8, protocol: '/x' } as unknown as Record<string, number>)).to.deep.equal({ ...RAFT_TRANSPORT_DEFAULTS, outboundQueueMessagesMax: 8 })
  })

  it('rejects limits that cannot work', () => {
    expect(() => resolveLimits({ outboundQueueMessagesMax: 0 })).to.throw(RangeError)
    expect(() => resolveLimits({ writeTimeoutMs: 1.5 })).to.throw(RangeError)
    expect(() => resolveLimits({ outboundQueueBytesMax: FRAME_BYTES_MAX - 1 })).to.throw(RangeError)
    expect(() => resolveLimits({ snapshotChunkBytes: FRAME_BYTES_MAX })).to.throw(RangeError)
    expect(() => resolveLimits({ reconnectBackoffMinMs: 10, reconnectBackoffMaxMs: 5 })).to.throw(RangeError)
  })
})

describe('raft transport: bounded length prefix', () => {
  const list = (...bytes: number[]): { byteLength: number, get(i: number): number } => ({ byteLength: bytes.length, get: (i: number) => bytes[i] })

  it('decodes varints up to the one of maxDataLength', () => {
    const decode = boundedLengthDecoder(FRAME_BYTES_MAX)
    for (const value of [0, 1, 127, 128, 300, 16_383, 16_384, FRAME_BYTES_MAX, 2 ** 28 - 1]) {
      expect(decode(list(...varint(value)))).to.equal(value)
    }
  })

  it('asks for more bytes (RangeError) while the prefix may still end in bounds', () => {
    const decode = boundedLengthDecoder(FRAME_BYTES_MAX)
    expect(() => decode(list())).to.throw(RangeError)
    expect(() => decode(list(0x80, 0x80, 0x80))).to.throw(RangeError)
  })

  it('refuses a prefix longer than needed for maxDataLength with a non-RangeError, so lpStream stops reading', () => {
    const decode = boundedLengthDecoder(FRAME_BYTES_MAX)
    const tooLong = (): number => decode(list(0xff, 0xff, 0xff, 0xff))
    expect(tooLong).to.throw(Error, /longer than 4 bytes/).that.is.not.instanceOf(RangeError)
    expect(() => boundedLengthDecoder(100)(list(0x80))).to.throw(/longer than 1 bytes/)
  })
})
