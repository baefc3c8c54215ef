import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import { PBFT_PROTOCOL, PbftStreamTransport } from '../../node/pbft/transport.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { encodeMessage } from '../../protocols/pbft/encoding.ts'
import { mutate, randomBytes } from '../lib/bytes-fuzz.ts'
import { waitFor } from '../lib/nodes.ts'
import { componentsOf } from '../lib/peers.ts'
import type { PbftTransportInit } from '../../node/pbft/transport.ts'
import type { PbftMessage, Prepare } from '../../protocols/pbft/types.ts'
import type { Libp2p } from '@libp2p/interface'

interface Member {
  node: Libp2p
  transport: PbftStreamTransport
  id: string
  inbox: Array<{ message: PbftMessage, link: string }>
  rejected: string[]
  isolated: Set<string>
}

function prepare (replica: string, seq: number): Prepare {
  return { type: 'prepare', view: 0, seq, digest: seq.toString(16).padStart(64, '0'), replica, signature: new Uint8Array(64).fill(seq) }
}

async function member (init: Partial<PbftTransportInit> = {}): Promise<Member> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  })
  const inbox: Member['inbox'] = []
  const rejected: string[] = []
  const isolated = new Set<string>()
  const transport = new PbftStreamTransport(componentsOf(node) as never, {
    onMessage: (message, link) => { inbox.push({ message, link }) },
    isIsolated: (peer) => isolated.has(peer),
    serveState: () => null,
    onRejected: (_peer, reason) => { rejected.push(reason) },
    ...init
  })
  await transport.start()
  return { node, transport, id: node.peerId.toString(), inbox, rejected, isolated }
}

describe('pbft transport (real libp2p over TCP on loopback)', function () {
  this.timeout(30_000)
  const members: Member[] = []
  const make = async (init: Partial<PbftTransportInit> = {}): Promise<Member> => { const m = await member(init); members.push(m); return m }

  afterEach(async () => {
    for (const m of members.splice(0)) {
      await m.transport.stop()
      await m.node.stop()
    }
  })

  async function introduce (a: Member, b: Member): Promise<void> {
    await a.node.peerStore.merge(b.node.peerId, { multiaddrs: b.node.getMultiaddrs() })
  }

  it('delivers messages in order over one stream, with the sending peer as the link', async () => {
    const a = await make()
    const b = await make()
    await introduce(a, b)
    for (let seq = 1; seq <= 50; seq++) { a.transport.send(b.id, prepare(a.id, seq)) }
    await waitFor(() => b.inbox.length === 50, 'the 50 prepares')
    expect(b.inbox.map(e => (e.message as Prepare).seq)).to.deep.equal(Array.from({ length: 50 }, (_, i) => i + 1))
    expect(b.inbox.every(e => e.link === a.id)).to.equal(true)
    expect(a.transport.stats().messagesSent).to.equal(50)
  })

  it('hands a message to itself back through onMessage', async () => {
    const a = await make()
    a.transport.send(a.id, prepare(a.id, 1))
    await waitFor(() => a.inbox.length === 1, 'the message to itself')
    expect(a.inbox[0].link).to.equal(a.id)
  })

  it('rejects and counts a malformed frame, closing that stream, and keeps serving', async () => {
    const a = await make()
    const b = await make()
    await introduce(a, b)
    const stream = await a.node.dialProtocol(b.node.getMultiaddrs()[0], PBFT_PROTOCOL)
    const lp = lpStream(stream)
    await lp.write(new Uint8Array([1, 99, 3, 4, 5]))
    await waitFor(() => b.rejected.includes('malformed'), 'the malformed frame to be rejected')
    expect(b.transport.stats().rejected.malformed).to.equal(1)
    await waitFor(() => stream.status !== 'open' || stream.remoteWriteStatus !== 'writable', 'the stream to close')
    a.transport.send(b.id, prepare(a.id, 7))
    await waitFor(() => b.inbox.length === 1, 'a good message afterwards')
  })

  it('rejects a frame over messageBytesMax on both sides', async () => {
    const a = await make({ limits: { messageBytesMax: 1024, outboundQueueBytesMax: 4096 } })
    const b = await make({ limits: { messageBytesMax: 1024, outboundQueueBytesMax: 4096 } })
    await introduce(a, b)
    const big: PbftMessage = { type: 'reply', view: 0, replica: a.id, client: b.id, timestamp: 1, readOnly: false, result: new Uint8Array(2000) }
    a.transport.send(b.id, big)
    expect(a.transport.stats().dropped.oversize).to.equal(1)
    const stream = await a.node.dialProtocol(b.node.getMultiaddrs()[0], PBFT_PROTOCOL)
    const lp = lpStream(stream, { maxDataLength: 1 << 20 })
    await lp.write(encodeMessage(big))
    await waitFor(() => b.rejected.includes('oversize'), 'the oversize frame to be rejected')
    expect(b.inbox).to.have.length(0)
  })

  it('drops and counts messages beyond a peer\'s rate limit for their type', async () => {
    const a = await make()
    let now = 0
    const b = await make({ rateLimits: { prepare: { ratePerSecond: 1, burst: 5 } }, now: () => now })
    await introduce(a, b)
    for (let seq = 1; seq <= 8; seq++) { a.transport.send(b.id, prepare(a.id, seq)) }
    // commits have a bucket of their own
    a.transport.send(b.id, { type: 'commit', view: 0, seq: 1, digest: '0'.repeat(64), replica: a.id, signature: new Uint8Array(64) })
    await waitFor(() => b.inbox.length + b.transport.stats().rejected['rate-limited'] === 9, 'all nine messages to arrive')
    expect(b.inbox.map(e => e.message.type)).to.deep.equal(['prepare', 'prepare', 'prepare', 'prepare', 'prepare', 'commit'])
    expect(b.transport.stats().rejected['rate-limited']).to.equal(3)
    now = 1000
    a.transport.send(b.id, prepare(a.id, 9))
    await waitFor(() => b.inbox.length === 7, 'a prepare once the bucket refilled')
  })

  it('refuses the streams of an isolated peer', async () => {
    const a = await make()
    const b = await make()
    await introduce(a, b)
    b.isolated.add(a.id)
    a.transport.send(b.id, prepare(a.id, 1))
    await waitFor(() => b.rejected.includes('isolated'), 'the isolated peer to be refused')
    expect(b.inbox).to.have.length(0)
  })

  it('fuzz: every mutated or random frame is delivered decoded or rejected and counted, and nothing crashes', async () => {
    const a = await make()
    const b = await make()
    await introduce(a, b)
    const rng = createRng(1313)
    const request = { type: 'request' as const, client: a.id, timestamp: 7, operation: new Uint8Array([1, 2, 3]), readOnly: false, signature: new Uint8Array(64).fill(1) }
    const corpus = [
      prepare(a.id, 3),
      { type: 'commit' as const, view: 2, seq: 9, digest: 'f'.repeat(64), replica: a.id, signature: new Uint8Array(64) },
      { type: 'pre-prepare' as const, view: 0, seq: 1, digest: 'e'.repeat(64), replica: a.id, signature: new Uint8Array(64), batch: [request, request] },
      request,
      { type: 'reply' as const, view: 0, replica: a.id, client: b.id, timestamp: 7, readOnly: true, result: new Uint8Array(10) },
      { type: 'checkpoint' as const, seq: 64, stateDigest: 'd'.repeat(64), replica: a.id, signature: new Uint8Array(64) }
    ].map(m => encodeMessage(m as PbftMessage))
    const frames = Array.from({ length: 300 }, (_, i) => i % 5 === 0
      ? randomBytes(rng, rng.intBetween(0, 300))
      : mutate(rng, mutate(rng, corpus[rng.intBetween(0, corpus.length - 1)], corpus), corpus))
    for (const frame of frames) {
      const stream = await a.node.dialProtocol(b.node.getMultiaddrs()[0], PBFT_PROTOCOL)
      const lp = lpStream(stream)
      await lp.write(frame).catch(() => {})
      await stream.close().catch(() => {})
    }
    const counted = (): number => b.inbox.length + b.transport.stats().rejected.malformed
    await waitFor(() => counted() === frames.length, 'every fuzzed frame to be delivered or rejected')
    expect(b.transport.stats().rejected.malformed).to.be.greaterThan(0)
    // still serving
    a.transport.send(b.id, prepare(a.id, 99))
    await waitFor(() => b.inbox.some(e => e.message.type === 'prepare' && e.message.seq === 99), 'a good message after the fuzzing')
  })

  it('fetches a peer\'s state in chunks, and null when it has none', async () => {
    const state = new Uint8Array(10_000).map((_, i) => i % 251)
    const a = await make()
    const b = await make({ serveState: (seq) => seq === 64 ? state : null, limits: { snapshotChunkBytes: 1000 } })
    await introduce(a, b)
    expect(await a.transport.fetchState(b.id, 64)).to.deep.equal(state)
    expect(await a.transport.fetchState(b.id, 128)).to.equal(null)
    expect(b.transport.stats().statesServed).to.equal(1)
  })

  it('refuses a state larger than snapshotBytesMax', async () => {
    const a = await make({ limits: { snapshotBytesMax: 100, messageBytesMax: 100, outboundQueueBytesMax: 100 } })
    const b = await make({ serveState: () => new Uint8Array(101) })
    await introduce(a, b)
    expect(await a.transport.fetchState(b.id, 1)).to.equal(null)
  })
})
