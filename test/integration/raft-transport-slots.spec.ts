/**
 * Snapshot reassembly slots over real libp2p: strangers cannot keep the
 * leader's snapshot out, and a slow drip does not hold a slot.
 */
import { lpStream } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { encodeFrame } from '../../node/raft/codec.ts'
import { RAFT_PROTOCOL } from '../../node/raft/transport-constants.ts'
import { RaftTransport } from '../../node/raft/transport.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { randomBytes } from '../lib/bytes-fuzz.ts'
import { waitFor } from '../lib/nodes.ts'
import { componentsOf, plainPeer } from '../lib/peers.ts'
import type { RaftTransportInit } from '../../node/raft/transport.ts'
import type { Message, SnapshotMessage } from '../../protocols/raft/index.ts'
import type { Libp2p, Stream } from '@libp2p/interface'
import type { LengthPrefixedStream } from '@libp2p/utils'

const MIB = 1024 * 1024

interface Member {
  node: Libp2p
  transport: RaftTransport
  id: string
  inbox: Message[]
  snapshotOutcomes: string[]
}

const conf = (voters: string[]): SnapshotMessage['snapshot']['meta']['conf'] => ({ voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false })

describe('raft transport: snapshot reassembly slots (real libp2p over TCP on loopback)', function () {
  this.timeout(120_000)
  const nodes: Libp2p[] = []
  const transports: RaftTransport[] = []

  afterEach(async () => {
    await Promise.all(transports.splice(0).map(async t => { await t.stop() }))
    await Promise.all(nodes.splice(0).map(async n => { await n.stop() }))
  })

  async function plainNode (): Promise<Libp2p> {
    const node = await plainPeer()
    nodes.push(node)
    return node
  }

  async function member (init: Partial<RaftTransportInit> = {}): Promise<Member> {
    const node = await plainNode()
    const inbox: Message[] = []
    const snapshotOutcomes: string[] = []
    const transport = new RaftTransport(componentsOf(node), {
      onMessage: m => { inbox.push(m) },
      onSnapshotSent: (_to, outcome) => { snapshotOutcomes.push(outcome) },
      ...init
    })
    transports.push(transport)
    await transport.start()
    return { node, transport, id: node.peerId.toString(), inbox, snapshotOutcomes }
  }

  /** A peer that opens a Raft stream to `to` by hand and begins a snapshot of `dataBytes` bytes there. */
  async function beginSnapshot (to: Member, dataBytes: number): Promise<{ stream: Stream, lp: LengthPrefixedStream<Stream>, id: string }> {
    const node = await plainNode()
    const id = node.peerId.toString()
    const stream = await node.dialProtocol(to.node.getMultiaddrs(), RAFT_PROTOCOL)
    const lp = lpStream(stream)
    const message: SnapshotMessage = { type: 'snapshot', from: id, to: to.id, term: 9, snapshot: { meta: { index: 100, term: 9, conf: conf([id, to.id]) }, data: new Uint8Array(0) } }
    await lp.write(encodeFrame({ kind: 'snapshot-begin', message, dataBytes }))
    return { stream, lp, id }
  }

  async function closedByRemote (stream: Stream): Promise<void> {
    await waitFor(() => stream.status !== 'open' || stream.remoteWriteStatus !== 'writable', 'the remote to close the stream')
  }

  it('two strangers holding both slots still leave room for the leader\'s snapshot: it evicts one of them', async () => {
    const leader = await member()
    const b = await member({ isLeader: peer => peer === leader.id })
    await leader.node.peerStore.merge(b.node.peerId, { multiaddrs: b.node.getMultiaddrs() })

    // two strangers begin large snapshots and then send next to nothing
    const strangers = [await beginSnapshot(b, 100 * MIB), await beginSnapshot(b, 100 * MIB)]
    for (const s of strangers) { await s.lp.write(encodeFrame({ kind: 'snapshot-chunk', data: new Uint8Array(1) })) }
    await waitFor(() => b.transport.stats().snapshotReassemblies === 2, 'both slots to be taken')
    // a third stranger finds no room
    const third = await beginSnapshot(b, MIB)
    await waitFor(() => b.transport.stats().framesRejected['snapshot-busy'] === 1, 'the third stranger to be refused')
    await closedByRemote(third.stream)

    const data = randomBytes(createRng(7), 3 * MIB)
    leader.transport.send(b.id, { type: 'snapshot', from: leader.id, to: b.id, term: 4, snapshot: { meta: { index: 50, term: 3, conf: conf([leader.id, b.id]) }, data } })
    await waitFor(() => b.inbox.length === 1, 'the leader\'s snapshot to arrive whole')
    const received = b.inbox[0] as SnapshotMessage
    expect(received.from).to.equal(leader.id)
    expect(Buffer.compare(received.snapshot.data, data)).to.equal(0)
    expect(leader.snapshotOutcomes).to.deep.equal(['success'])
    const stats = b.transport.stats()
    expect(stats.snapshotsEvicted).to.equal(1)
    expect(stats.snapshotsReceived).to.equal(1)
    // the evicted stranger's stream is closed; the other stranger still holds its slot
    await waitFor(async () => {
      const closed = strangers.map(s => s.stream.status !== 'open' || s.stream.remoteWriteStatus !== 'writable')
      return closed.filter(Boolean).length === 1
    }, 'one stranger\'s stream to be closed')
    expect(b.transport.stats().snapshotReassemblies).to.equal(1)
  })

  it('drops a reassembly that drips a byte at a time, closes its stream and frees its slot', async () => {
    const b = await member({ snapshotProgressTimeoutMs: 500, snapshotReassembliesMax: 1 })
    const dripper = await beginSnapshot(b, 10 * MIB)
    const drip = setInterval(() => {
      dripper.lp.write(encodeFrame({ kind: 'snapshot-chunk', data: new Uint8Array(1) })).catch(() => {})
    }, 100)
    try {
      await waitFor(() => b.transport.stats().framesRejected['snapshot-too-slow'] === 1, 'the slow reassembly to be dropped')
      await closedByRemote(dripper.stream)
    } finally {
      clearInterval(drip)
    }
    expect(b.transport.stats().snapshotReassemblies).to.equal(0)
    expect(b.transport.stats().snapshotsReceived).to.equal(0)
    // the slot is free for the next sender
    const next = await beginSnapshot(b, 1)
    await next.lp.write(encodeFrame({ kind: 'snapshot-chunk', data: new Uint8Array([42]) }))
    await waitFor(() => b.inbox.length === 1, 'the next snapshot')
    expect((b.inbox[0] as SnapshotMessage).snapshot.data).to.deep.equal(new Uint8Array([42]))
  })
})
