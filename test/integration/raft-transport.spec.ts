import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { encode as cborEncode } from 'cborg'
import { createLibp2p } from 'libp2p'
import { encodeMessage, FRAME_BYTES_MAX } from '../../node/raft/codec.ts'
import { RAFT_PROTOCOL } from '../../node/raft/transport-constants.ts'
import { RaftTransport, raftTransport } from '../../node/raft/transport.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { InvalidMessageError } from '../../protocols/raft/index.ts'
import { randomBytes, varint } from '../lib/bytes-fuzz.ts'
import { waitFor } from '../lib/nodes.ts'
import { componentsOf } from '../lib/peers.ts'
import type { RaftTransportInit } from '../../node/raft/transport.ts'
import type { Message, SnapshotMessage } from '../../protocols/raft/index.ts'
import type { Libp2p, PrivateKey, Stream } from '@libp2p/interface'

const MIB = 1024 * 1024
const conf = (voters: string[]): SnapshotMessage['snapshot']['meta']['conf'] => ({ voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false })
const heartbeat = (from: string, to: string, readRound: number): Message => ({ type: 'heartbeat', from, to, term: 1, commit: 0, readRound })

/** A libp2p node, the Raft transport on it, and what the transport delivered. */
interface Member {
  node: Libp2p
  transport: RaftTransport
  id: string
  inbox: Message[]
  unreachable: string[]
  snapshotOutcomes: string[]
}

interface NodeOptions {
  privateKey?: PrivateKey
  port?: number
}

async function plainNode (options: NodeOptions = {}): Promise<Libp2p> {
  return createLibp2p({
    ...(options.privateKey != null ? { privateKey: options.privateKey } : {}),
    addresses: { listen: [`/ip4/127.0.0.1/tcp/${options.port ?? 0}`] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { inboundConnectionThreshold: 1000 },
    services: { identify: identify() }
  })
}

function portOf (node: Libp2p): number {
  return Number(node.getMultiaddrs()[0].toString().split('/')[4])
}

/** Tells `a` where `b` listens, without connecting: the transport dials lazily. */
async function introduce (a: Libp2p, b: Libp2p): Promise<void> {
  await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
}

function from (inbox: Message[], id: string): Message[] {
  return inbox.filter(m => m.from === id)
}

function totalDropped (t: RaftTransport): number {
  return Object.values(t.stats().dropped).reduce((a, b) => a + b, 0)
}

function totalRejected (t: RaftTransport): number {
  return Object.values(t.stats().framesRejected).reduce((a, b) => a + b, 0)
}

/** Resolves when the stream is closed or reset by the other side. */
async function closedByRemote (stream: Stream): Promise<void> {
  await waitFor(() => stream.status !== 'open' || stream.remoteWriteStatus !== 'writable', 'the remote to close the stream')
}

describe('raft transport (real libp2p over TCP on loopback)', function () {
  this.timeout(120_000)
  const nodes: Libp2p[] = []
  const transports: RaftTransport[] = []

  afterEach(async () => {
    await Promise.all(transports.splice(0).map(async t => { await t.stop() }))
    await Promise.all(nodes.splice(0).map(async n => { await n.stop() }))
  })

  async function member (init: Partial<RaftTransportInit> = {}, options: NodeOptions = {}): Promise<Member> {
    const node = await plainNode(options)
    nodes.push(node)
    const inbox: Message[] = []
    const unreachable: string[] = []
    const snapshotOutcomes: string[] = []
    const transport = new RaftTransport(componentsOf(node), {
      onMessage: m => { inbox.push(m) },
      onUnreachable: to => { unreachable.push(to) },
      onSnapshotSent: (_to, outcome) => { snapshotOutcomes.push(outcome) },
      ...init
    })
    transports.push(transport)
    await transport.start()
    return { node, transport, id: node.peerId.toString(), inbox, unreachable, snapshotOutcomes }
  }

  /** A peer that speaks the protocol by hand (no transport): for garbage, spoofing, stalling. */
  async function rawPeer (): Promise<Libp2p> {
    const node = await plainNode()
    nodes.push(node)
    return node
  }

  it('delivers messages from each peer in order over one reused stream (transport as a libp2p service)', async () => {
    const inbox: Message[] = []
    const b = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), raft: raftTransport({ onMessage: m => { inbox.push(m) } }) }
    })
    nodes.push(b)
    const bId = b.peerId.toString()
    const a = await member()
    const c = await member()
    await introduce(a.node, b)
    await introduce(c.node, b)

    const count = 3000
    for (let i = 0; i < count; i++) {
      a.transport.send(bId, heartbeat(a.id, bId, i))
      c.transport.send(bId, heartbeat(c.id, bId, i))
    }
    await waitFor(() => inbox.length === 2 * count, `${2 * count} messages at b`)

    const rounds = (id: string): number[] => from(inbox, id).map(m => (m as Message & { type: 'heartbeat' }).readRound)
    const expected = Array.from({ length: count }, (_, i) => i)
    expect(rounds(a.id)).to.deep.equal(expected)
    expect(rounds(c.id)).to.deep.equal(expected)
    for (const sender of [a, c]) {
      const stats = sender.transport.stats()
      expect(stats.messagesSent).to.equal(count)
      expect(stats.streamsOpened).to.equal(1)
      expect(stats.reconnects).to.equal(0)
      expect(totalDropped(sender.transport)).to.equal(0)
    }
    const bStats = b.services.raft.stats()
    expect(bStats.messagesReceived).to.equal(2 * count)
    expect(totalRejected(b.services.raft)).to.equal(0)
  })

  it('chunks a 10 MiB snapshot and reassembles it into one message, in order with what follows', async () => {
    const a = await member()
    const b = await member()
    await introduce(a.node, b.node)
    const data = randomBytes(createRng(42), 10 * MIB)
    const snapshot: SnapshotMessage = { type: 'snapshot', from: a.id, to: b.id, term: 3, snapshot: { meta: { index: 100, term: 2, conf: conf([a.id, b.id]) }, data } }

    // and a MsgApp close to FRAME_BYTES_MAX, which needs no chunking
    const bigEntry = randomBytes(createRng(43), FRAME_BYTES_MAX - 4096)
    const append: Message = { type: 'append', from: a.id, to: b.id, term: 3, prevIndex: 100, prevTerm: 2, commit: 100, entries: [{ term: 3, index: 101, type: 'normal', data: bigEntry }] }

    a.transport.send(b.id, heartbeat(a.id, b.id, 1))
    a.transport.send(b.id, snapshot)
    a.transport.send(b.id, append)
    await waitFor(() => b.inbox.length === 3, 'the snapshot and the messages around it')

    expect(b.inbox.map(m => m.type)).to.deep.equal(['heartbeat', 'snapshot', 'append'])
    expect(b.inbox[2]).to.deep.equal(append)
    const received = b.inbox[1] as SnapshotMessage
    expect(received.snapshot.meta).to.deep.equal(snapshot.snapshot.meta)
    expect(received.snapshot.data.byteLength).to.equal(10 * MIB)
    expect(Buffer.compare(received.snapshot.data, data)).to.equal(0)
    expect(a.snapshotOutcomes).to.deep.equal(['success'])
    const aStats = a.transport.stats()
    expect(aStats.snapshotsSent).to.equal(1)
    expect(aStats.bytesSent).to.be.above(10 * MIB)
    const bStats = b.transport.stats()
    expect(bStats.snapshotsReceived).to.equal(1)
    expect(bStats.snapshotReassemblies).to.equal(0)
    expect(totalRejected(b.transport)).to.equal(0)
  })

  it('refuses a snapshot above the receiver\'s snapshotBytesMax, counts it, and keeps working', async () => {
    const a = await member({ reconnectBackoffMinMs: 20, reconnectBackoffMaxMs: 100 })
    const b = await member({ snapshotBytesMax: MIB })
    await introduce(a.node, b.node)
    const data = new Uint8Array(3 * MIB).fill(9)
    a.transport.send(b.id, { type: 'snapshot', from: a.id, to: b.id, term: 3, snapshot: { meta: { index: 100, term: 2, conf: conf([a.id, b.id]) }, data } })
    await waitFor(() => b.transport.stats().framesRejected['snapshot-too-large'] === 1, 'b to refuse the snapshot')
    await waitFor(() => a.snapshotOutcomes.length === 1, 'a to learn the outcome')

    // a redials and good traffic flows again
    let round = 0
    await waitFor(() => { a.transport.send(b.id, heartbeat(a.id, b.id, round++)); return b.inbox.length > 0 }, 'a heartbeat after the refusal')
    expect(b.inbox.every(m => m.type === 'heartbeat')).to.equal(true)
    expect(b.transport.stats().snapshotsReceived).to.equal(0)
  })

  it('rejects garbage, oversize length prefixes and spoofed senders, and counts them, while good peers carry on', async () => {
    const b = await member()
    const a = await member()
    const rogue = await rawPeer()
    await introduce(a.node, b.node)
    await introduce(rogue, b.node)
    const aId = a.id
    const rogueId = rogue.peerId.toString()

    // good traffic runs the whole time
    let sent = 0
    let attacksCount = 0
    const pump = setInterval(() => { for (let i = 0; i < 20; i++) { a.transport.send(b.id, heartbeat(aId, b.id, sent++)) } }, 10)
    try {
      const attacks: Array<[string, (stream: Stream) => Promise<void>]> = [
        ['cbor', async s => { await lpStream(s).write(randomBytes(createRng(1), 300)) }],
        // the largest frame passes the length check and fails only at decoding
        ['cbor', async s => { await lpStream(s).write(new Uint8Array(FRAME_BYTES_MAX)) }],
        ['oversize', async s => { s.send(varint(FRAME_BYTES_MAX + 1)) }],
        ['oversize', async s => { s.send(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])) }],
        // a length prefix that never ends: refused after 4 bytes, not buffered
        ['oversize', async s => { s.send(new Uint8Array(64 * 1024).fill(0xff)) }],
        ['spoofed-from', async s => { await lpStream(s).write(encodeMessage(heartbeat(aId, b.id, 0))) }],
        ['wrong-recipient', async s => { await lpStream(s).write(encodeMessage(heartbeat(rogueId, aId, 0))) }],
        ['version', async s => { await lpStream(s).write(cborEncode({ v: 99, kind: 'message', message: heartbeat(rogueId, b.id, 0) })) }],
        ['unexpected-frame', async s => { await lpStream(s).write(cborEncode({ v: 1, kind: 'snapshot-chunk', data: new Uint8Array(8) })) }],
        ['invalid-message', async s => { await lpStream(s).write(cborEncode({ v: 1, kind: 'message', message: { ...heartbeat(rogueId, b.id, 0), term: -1 } })) }]
      ]
      attacksCount = attacks.length
      for (const [reason, attack] of attacks) {
        const before = b.transport.stats().framesRejected[reason as keyof ReturnType<RaftTransport['stats']>['framesRejected']]
        const stream = await rogue.dialProtocol(b.node.peerId, RAFT_PROTOCOL)
        await attack(stream)
        await waitFor(() => b.transport.stats().framesRejected[reason as keyof ReturnType<RaftTransport['stats']>['framesRejected']] === before + 1, `b to reject a ${reason} frame`)
        await closedByRemote(stream)
      }
    } finally {
      clearInterval(pump)
    }
    const total = sent
    await waitFor(() => from(b.inbox, aId).length === total, 'every good message')
    expect(from(b.inbox, aId).map(m => (m as Message & { type: 'heartbeat' }).readRound)).to.deep.equal(Array.from({ length: total }, (_, i) => i))
    expect(from(b.inbox, rogueId)).to.deep.equal([])
    expect(b.inbox.every(m => m.from === aId)).to.equal(true)
    expect(totalRejected(b.transport)).to.equal(attacksCount)
    expect(a.transport.stats().streamsOpened).to.equal(1)
  })

  it('bounds the outbound queue when the remote stops reading: drops the oldest and counts them', async () => {
    const messagesMax = 200
    const a = await member({ outboundQueueMessagesMax: messagesMax, outboundQueueBytesMax: FRAME_BYTES_MAX, writeTimeoutMs: 60_000 })
    const stalled = await rawPeer()
    let stalledStreams = 0
    await stalled.handle(RAFT_PROTOCOL, stream => { stalledStreams++; stream.pause() })
    await introduce(a.node, stalled)
    const sId = stalled.peerId.toString()

    // small messages: the count bound
    for (let i = 0; i < 5000; i++) { a.transport.send(sId, heartbeat(a.id, sId, i)) }
    await waitFor(() => stalledStreams === 1 && a.transport.stats().outboundStreams === 1, 'the stream to open')
    // big messages: the byte bound (each ~100 KiB; far more than fit in the stream's window)
    const entryData = new Uint8Array(100 * 1024)
    for (let i = 0; i < 300; i++) {
      a.transport.send(sId, { type: 'append', from: a.id, to: sId, term: 1, prevIndex: i, prevTerm: i === 0 ? 0 : 1, commit: 0, entries: [{ term: 1, index: i + 1, type: 'normal', data: entryData }] })
      const peer = a.transport.stats().peers[sId]
      expect(peer.queuedMessages).to.be.at.most(messagesMax)
      expect(peer.queuedBytes).to.be.at.most(FRAME_BYTES_MAX)
    }
    const stats = a.transport.stats()
    const peer = stats.peers[sId]
    expect(stats.dropped['queue-full']).to.be.above(5000 - messagesMax)
    expect(peer.queuedBytesPeak).to.be.at.most(FRAME_BYTES_MAX)
    expect(peer.queuedBytes).to.be.above(FRAME_BYTES_MAX - 200 * 1024)
    expect(stats.streamErrors).to.equal(0)
    // everything is accounted for: sent (into the stalled stream's window), being written, queued or dropped
    expect(peer.writingMessages).to.be.above(0)
    expect(stats.messagesSent + peer.writingMessages + peer.queuedMessages + stats.dropped['queue-full']).to.equal(5300)
    expect(stalledStreams).to.equal(1)
  })

  it('fails a write stuck longer than writeTimeoutMs and redials with backoff', async () => {
    const a = await member({ writeTimeoutMs: 300, reconnectBackoffMinMs: 50, reconnectBackoffMaxMs: 200 })
    const stalled = await rawPeer()
    let stalledStreams = 0
    await stalled.handle(RAFT_PROTOCOL, stream => { stalledStreams++; stream.pause() }, { maxInboundStreams: 100 })
    await introduce(a.node, stalled)
    const sId = stalled.peerId.toString()
    const entryData = new Uint8Array(64 * 1024)
    let i = 0
    await waitFor(() => {
      for (let n = 0; n < 20; n++, i++) {
        a.transport.send(sId, { type: 'append', from: a.id, to: sId, term: 1, prevIndex: i, prevTerm: i === 0 ? 0 : 1, commit: 0, entries: [{ term: 1, index: i + 1, type: 'normal', data: entryData }] })
      }
      return a.transport.stats().reconnects >= 2
    }, 'two reconnects after stuck writes')
    const stats = a.transport.stats()
    expect(stats.streamErrors).to.be.at.least(2)
    expect(stats.dropped['stream-error']).to.be.at.least(2)
    expect(stalledStreams).to.be.at.least(3)
    expect(a.unreachable.length).to.be.at.least(2)
    expect(a.unreachable.every(id => id === sId)).to.equal(true)
  })

  it('closes idle inbound streams; the sender notices and reopens without losing a message', async () => {
    const a = await member()
    const b = await member({ readIdleTimeoutMs: 300 })
    await introduce(a.node, b.node)
    a.transport.send(b.id, heartbeat(a.id, b.id, 0))
    await waitFor(() => b.inbox.length === 1, 'the first message')
    await waitFor(() => b.transport.stats().idleStreamsClosed === 1 && a.transport.stats().outboundStreams === 0, 'the idle stream to close on both sides')
    a.transport.send(b.id, heartbeat(a.id, b.id, 1))
    await waitFor(() => b.inbox.length === 2, 'the second message')
    const stats = a.transport.stats()
    expect(stats.reconnects).to.equal(1)
    expect(stats.streamErrors).to.equal(0)
    expect(totalDropped(a.transport)).to.equal(0)
  })

  it('resetPeer() aborts the streams to and from a peer; both sides open new ones and messages flow again', async () => {
    const a = await member()
    const b = await member()
    await introduce(a.node, b.node)
    await introduce(b.node, a.node)
    a.transport.send(b.id, heartbeat(a.id, b.id, 0))
    b.transport.send(a.id, heartbeat(b.id, a.id, 0))
    await waitFor(() => b.inbox.length === 1 && a.inbox.length === 1, 'a message each way')
    expect(a.transport.stats().inboundStreams).to.equal(1)

    a.transport.resetPeer(b.id)
    // a's outbound stream is gone at once; b's stream to a is reset by a's abort of its inbound end
    expect(a.transport.stats().outboundStreams).to.equal(0)
    await waitFor(() => b.transport.stats().outboundStreams === 0, 'b to see its stream to a reset')

    a.transport.send(b.id, heartbeat(a.id, b.id, 1))
    b.transport.send(a.id, heartbeat(b.id, a.id, 1))
    await waitFor(() => b.inbox.length === 2 && a.inbox.length === 2, 'a message each way on new streams')
    expect(a.transport.stats().peersReset).to.equal(1)
    expect(a.transport.stats().reconnects).to.equal(1)
    expect(b.transport.stats().reconnects).to.equal(1)
    expect(totalDropped(a.transport) + totalDropped(b.transport)).to.equal(0)
  })

  it('reconnects after the remote restarts', async () => {
    const privateKey = await generateKeyPair('Ed25519')
    const a = await member({ reconnectBackoffMinMs: 50, reconnectBackoffMaxMs: 200, dialTimeoutMs: 2000 })
    const b1 = await member({}, { privateKey })
    const port = portOf(b1.node)
    await introduce(a.node, b1.node)
    a.transport.send(b1.id, heartbeat(a.id, b1.id, 0))
    await waitFor(() => b1.inbox.length === 1, 'the first message')

    await b1.transport.stop()
    await b1.node.stop()
    await waitFor(() => a.transport.stats().outboundStreams === 0, 'a to notice the stream closed')
    // while the remote is down, sends fail to dial and are dropped, with bounded retries
    let round = 1
    await waitFor(() => { a.transport.send(b1.id, heartbeat(a.id, b1.id, round++)); return a.transport.stats().dialFailures >= 2 }, 'failed dials while b is down')
    expect(a.transport.stats().dropped.unreachable).to.be.at.least(1)
    expect(a.unreachable).to.include(b1.id)

    const b2 = await member({}, { privateKey, port })
    expect(b2.id).to.equal(b1.id)
    await waitFor(() => { a.transport.send(b2.id, heartbeat(a.id, b2.id, round++)); return b2.inbox.length > 0 }, 'a message to the restarted b', 30_000)
    const stats = a.transport.stats()
    expect(stats.reconnects).to.be.at.least(1)
    expect(stats.peers[b2.id].consecutiveFailures).to.equal(0)
  })

  it('drops what it cannot send and counts why; throws only on caller bugs', async () => {
    const a = await member({ peersMax: 2, snapshotBytesMax: MIB, reconnectBackoffMinMs: 20, reconnectBackoffMaxMs: 50, dialTimeoutMs: 1000 })
    const strangers = await Promise.all([1, 2, 3].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()))
    const [p1, p2, p3] = strangers

    a.transport.send('not-a-peer-id', heartbeat(a.id, 'not-a-peer-id', 0))
    a.transport.send(a.id, heartbeat(a.id, a.id, 0))
    expect(a.transport.stats().dropped['invalid-peer']).to.equal(2)

    // p1 and p2 take the two peer slots; nobody knows their addresses, so the dials fail
    a.transport.send(p1, heartbeat(a.id, p1, 0))
    a.transport.send(p2, heartbeat(a.id, p2, 0))
    a.transport.send(p3, heartbeat(a.id, p3, 0))
    expect(a.transport.stats().dropped['peers-full']).to.equal(1)
    await waitFor(() => a.transport.stats().dropped.unreachable === 2, 'both dials to fail')
    expect([...a.unreachable].sort()).to.deep.equal([p1, p2].sort())

    const tooBig = new Uint8Array(FRAME_BYTES_MAX)
    a.transport.send(p1, { type: 'append', from: a.id, to: p1, term: 1, prevIndex: 0, prevTerm: 0, commit: 0, entries: [{ term: 1, index: 1, type: 'normal', data: tooBig }] })
    expect(a.transport.stats().dropped.oversize).to.equal(1)

    a.transport.send(p1, { type: 'snapshot', from: a.id, to: p1, term: 3, snapshot: { meta: { index: 9, term: 2, conf: conf([a.id, p1]) }, data: new Uint8Array(MIB + 1) } })
    expect(a.transport.stats().dropped['snapshot-too-large']).to.equal(1)
    expect(a.snapshotOutcomes).to.deep.equal(['failure'])

    expect(() => { a.transport.send(p2, heartbeat(a.id, p1, 0)) }).to.throw(RangeError)
    expect(() => { a.transport.send(p1, { ...heartbeat(a.id, p1, 0), term: -1 }) }).to.throw(InvalidMessageError)
    expect(a.transport.stats().messagesSent).to.equal(0)
  })

  it('gives the slot of an idle peer to a new one when peersMax peers are known', async () => {
    const a = await member({ peersMax: 1, reconnectBackoffMinMs: 20, reconnectBackoffMaxMs: 50, dialTimeoutMs: 1000 })
    const [p1, p2] = await Promise.all([1, 2].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()))
    a.transport.send(p1, heartbeat(a.id, p1, 0)) // unreachable: its queue empties once the dial fails
    await waitFor(() => {
      a.transport.send(p2, heartbeat(a.id, p2, 0))
      return a.transport.stats().peers[p2] !== undefined
    }, 'p1 to become idle and give its slot to p2')
    expect(a.transport.stats().peers).to.not.have.property(p1)
    expect(Object.keys(a.transport.stats().peers)).to.have.length(1)
  })

  it('stop() aborts blocked writes, closes streams and drops what was queued', async () => {
    const a = await member({ writeTimeoutMs: 60_000 })
    const stalled = await rawPeer()
    let stalledStream: Stream | undefined
    await stalled.handle(RAFT_PROTOCOL, stream => { stalledStream = stream; stream.pause() })
    await introduce(a.node, stalled)
    const sId = stalled.peerId.toString()
    const entryData = new Uint8Array(64 * 1024)
    for (let i = 0; i < 100; i++) {
      a.transport.send(sId, { type: 'append', from: a.id, to: sId, term: 1, prevIndex: i, prevTerm: i === 0 ? 0 : 1, commit: 0, entries: [{ term: 1, index: i + 1, type: 'normal', data: entryData }] })
    }
    await waitFor(() => stalledStream !== undefined && a.transport.stats().queuedMessages > 0, 'a blocked writer')
    await a.transport.stop()
    const stats = a.transport.stats()
    expect(stats.dropped.stopped).to.be.above(0)
    expect(stats.queuedMessages).to.equal(0)
    expect(stats.outboundStreams).to.equal(0)
    expect(a.transport.isStarted()).to.equal(false)
    a.transport.send(sId, heartbeat(a.id, sId, 0))
    expect(a.transport.stats().dropped['not-running']).to.equal(1)
    expect(a.node.getProtocols()).to.not.include(RAFT_PROTOCOL)
  })
})
