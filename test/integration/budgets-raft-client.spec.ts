/**
 * The raft-client budget over real libp2p on loopback: streams and bytes in
 * flight per peer and across peers, the per-connection stream limit, and
 * (on a real one-node Raft group) what an admitted member that sends
 * nearly complete 2 MiB requests and stalls can make the leader hold.
 */
import { lpStream } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { decode, encode } from 'cborg'
import { Registry } from 'prom-client'
import { issueCertificate } from '../../identity/cluster-credentials.ts'
import { Admission, ADMISSION_PROTOCOL } from '../../node/admission/admission.ts'
import { foundCluster } from '../../node/admission/credentials.ts'
import { RAFT_CLIENT_BUDGET, StreamBudget } from '../../node/budgets.ts'
import { handleClientRequests, INBOUND_STREAMS_MAX, RAFT_CLIENT_PROTOCOL, requestBytesMax, sendClientRequest } from '../../node/raft/client-protocol.ts'
import { Refusals } from '../../node/refusals.ts'
import { KV_DEFAULTS } from '../../protocols/kv/index.ts'
import { refusalCount } from '../lib/metrics.ts'
import { silentLogger, TestCluster, waitFor } from '../lib/nodes.ts'
import { componentsOf, plainPeer, presentCertificate } from '../lib/peers.ts'
import type { AccordHost } from '../../node/host.ts'
import type { AccordNode } from '../../node/index.ts'
import type { ClientAnswer, ClientRequest } from '../../node/raft/client-protocol.ts'
import type { RaftDriver } from '../../node/raft/driver.ts'
import type { Libp2p, Stream, StreamHandler } from '@libp2p/interface'

const KIB = 1024
const MIB = 1024 * KIB
/** Only keeps a broken test from hanging: never asserted on. */
const SETTLE_DEADLINE_MS = 20_000

/** A driver whose proposals wait until the test lets them go: requests stay in flight. */
function heldDriver (): { driver: RaftDriver, held(): number, releaseAll(): void } {
  const waiting = new Set<() => void>()
  const driver = {
    leader: null,
    propose: async (_command: unknown, signal: AbortSignal) => new Promise((resolve, reject) => {
      const done = (): void => { waiting.delete(done); resolve({ ok: true, index: 1, type: 'put' }) }
      waiting.add(done)
      signal.addEventListener('abort', () => { waiting.delete(done); reject(signal.reason) }, { once: true })
    })
  }
  return { driver: driver as unknown as RaftDriver, held: () => waiting.size, releaseAll: () => { for (const done of [...waiting]) { done() } } }
}

const put = (i: number): ClientRequest => ({ op: 'propose', command: { type: 'put', session: { clientId: 'c', sequence: i + 1 }, key: `k${i}`, value: new Uint8Array([i & 0xff]) } })

/** Write raw bytes on a stream, waiting for it to drain; false once the stream is no longer open. */
async function sendRaw (stream: Stream, bytes: Uint8Array): Promise<boolean> {
  for (let offset = 0; offset < bytes.byteLength; offset += 64 * KIB) {
    if (stream.status !== 'open') { return false }
    if (!stream.send(bytes.subarray(offset, offset + 64 * KIB))) {
      await new Promise(resolve => {
        stream.addEventListener('drain', resolve, { once: true })
        stream.addEventListener('close', resolve, { once: true })
      })
    }
  }
  return stream.status === 'open'
}

/** A length prefix declaring `declared` bytes, then `sent` bytes of the body (never the rest). */
function partialRequest (declared: number, sent: number): Uint8Array {
  const prefix: number[] = []
  for (let n = declared; ; n = Math.floor(n / 128)) {
    if (n < 128) { prefix.push(n); break }
    prefix.push((n & 0x7f) | 0x80)
  }
  const bytes = new Uint8Array(prefix.length + sent)
  bytes.set(prefix)
  return bytes
}

describe('raft-client budget (real libp2p over TCP on loopback)', function () {
  this.timeout(90_000)
  const peers: Libp2p[] = []
  let server: Libp2p
  let refusals: Refusals
  let registry: Registry
  let held: ReturnType<typeof heldDriver>
  const admissionsToStop: Admission[] = []

  type Gate = (protocol: string, handler: StreamHandler) => StreamHandler
  async function serve (budget?: StreamBudget, makeGate: (server: Libp2p) => Promise<Gate> = async () => (_p, handler) => handler): Promise<StreamBudget> {
    server = await plainPeer()
    peers.push(server)
    registry = new Registry()
    refusals = new Refusals({ log: silentLogger, registry })
    held = heldDriver()
    return handleClientRequests(server as unknown as AccordHost, held.driver, KV_DEFAULTS, silentLogger, await makeGate(server), { refusals, budget })
  }

  /** A peer that serves the protocol too, as every node does (which sets its outbound stream limit). */
  async function client (): Promise<Libp2p> {
    const node = await plainPeer()
    peers.push(node)
    await handleClientRequests(node as unknown as AccordHost, heldDriver().driver, KV_DEFAULTS, silentLogger, (_p, handler) => handler)
    await node.dial(server.getMultiaddrs()[0])
    // a burst of streams before the other side has finished its upgrade
    // ("early streams", at most 10 in yamux) would close the connection
    await waitFor(() => server.getConnections(node.peerId).length > 0, 'the server to see the connection', SETTLE_DEADLINE_MS)
    return node
  }

  const request = async (from: Libp2p, r: ClientRequest): Promise<ClientAnswer> =>
    sendClientRequest(from as unknown as AccordHost, server.peerId.toString(), r, AbortSignal.timeout(SETTLE_DEADLINE_MS))
  const refused = async (reason: string): Promise<number> => refusalCount({ metrics: registry }, RAFT_CLIENT_PROTOCOL, reason)

  afterEach(async () => {
    held?.releaseAll()
    await Promise.all(admissionsToStop.splice(0).map(async a => { await a.stop() }))
    await Promise.all(peers.splice(0).map(async p => { await p.stop() }))
  })

  it('serves the 64 writes a follower with 64 clients forwards at once; the stream beyond streamsPerPeerMax (= INBOUND_STREAMS_MAX) is refused', async () => {
    const budget = await serve()
    const follower = await client()
    const inFlight = Array.from({ length: 64 }, async (_, i) => request(follower, put(i)))
    await waitFor(() => held.held() === 64, '64 writes in flight on the leader', SETTLE_DEADLINE_MS)
    expect(budget.usage(follower.peerId.toString()).streams).to.equal(64)
    held.releaseAll()
    for (const answer of await Promise.all(inFlight)) { expect(answer.ok).to.equal(true) }

    const perPeer = RAFT_CLIENT_BUDGET.streamsPerPeerMax
    const full = Array.from({ length: perPeer }, async (_, i) => request(follower, put(i)))
    await waitFor(() => held.held() === perPeer, `${perPeer} writes in flight`, SETTLE_DEADLINE_MS)
    // one more on the same connection: libp2p's stream limit
    // (INBOUND_STREAMS_MAX) refuses it before the budget does; either way
    // it is not served
    let served = false
    const watch = setInterval(() => { served ||= held.held() > perPeer }, 10)
    const extra = await request(follower, put(999)).catch((err: Error) => err)
    clearInterval(watch)
    expect(served, 'the leader served a stream beyond the budget').to.equal(false)
    expect(extra instanceof Error || !extra.ok).to.equal(true)
    expect(held.held()).to.equal(perPeer)
    expect(INBOUND_STREAMS_MAX).to.equal(perPeer)
    held.releaseAll()
    await Promise.all(full)
    await waitFor(() => budget.stats().streams === 0, 'every stream released', SETTLE_DEADLINE_MS)
  })

  it('answers `retry` to a peer beyond streamsPerPeerMax, and to anyone beyond streamsMax; counts each refusal', async () => {
    const budget = await serve(new StreamBudget({ streamsPerPeerMax: 4, streamsMax: 6 }))
    const a = await client()
    const b = await client()
    const inFlight = Array.from({ length: 4 }, async (_, i) => request(a, put(i)))
    await waitFor(() => held.held() === 4, 'a\'s 4 writes in flight', SETTLE_DEADLINE_MS)

    const fifth = await request(a, put(5))
    expect(fifth).to.include({ ok: false, code: 'retry' })
    expect(await refused('peer-streams')).to.equal(1)

    inFlight.push(request(b, put(6)), request(b, put(7)))
    await waitFor(() => held.held() === 6, 'b\'s 2 writes in flight', SETTLE_DEADLINE_MS)
    expect(await request(b, put(8))).to.include({ ok: false, code: 'retry' })
    expect(await refused('streams')).to.equal(1)
    expect(budget.stats()).to.include({ streams: 6 })

    held.releaseAll()
    for (const answer of await Promise.all(inFlight)) { expect(answer.ok).to.equal(true) }
    await waitFor(() => budget.stats().streams === 0, 'every stream released', SETTLE_DEADLINE_MS)
    // room again
    const again = request(a, put(9))
    await waitFor(() => held.held() === 1, 'a new write in flight', SETTLE_DEADLINE_MS)
    held.releaseAll()
    expect((await again).ok).to.equal(true)
  })

  it('aborts a stream whose bytes go beyond bytesPerPeerMax or bytesMax; the others keep what they hold', async () => {
    const budget = await serve(new StreamBudget({ bytesPerPeerMax: MIB, bytesMax: 1.5 * MIB }))
    const a = await client()
    const b = await client()
    const declared = requestBytesMax(KV_DEFAULTS)
    const open = async (from: Libp2p): Promise<{ stream: Stream, open: boolean }> => {
      const stream = await from.dialProtocol(server.peerId, RAFT_CLIENT_PROTOCOL)
      return { stream, open: await sendRaw(stream, partialRequest(declared, 600 * KIB)) }
    }
    const idOf = (p: Libp2p): string => p.peerId.toString()

    const a1 = await open(a)
    await waitFor(() => budget.usage(idOf(a)).bytes >= 600 * KIB, 'a\'s first 600 KiB to arrive', SETTLE_DEADLINE_MS)
    const a2 = await open(a)
    await waitFor(async () => await refused('peer-bytes') === 1, 'a\'s second stream to be refused', SETTLE_DEADLINE_MS)
    await waitFor(() => a2.stream.status !== 'open', 'a\'s second stream to be aborted', SETTLE_DEADLINE_MS)
    expect(a1.stream.status).to.equal('open')
    expect(budget.usage(idOf(a)).bytes).to.be.within(600 * KIB, MIB)

    const b1 = await open(b)
    await waitFor(() => budget.usage(idOf(b)).bytes >= 600 * KIB, 'b\'s first 600 KiB to arrive', SETTLE_DEADLINE_MS)
    const b2 = await open(b)
    await waitFor(async () => await refused('bytes') === 1, 'b\'s second stream to be refused', SETTLE_DEADLINE_MS)
    await waitFor(() => b2.stream.status !== 'open', 'b\'s second stream to be aborted', SETTLE_DEADLINE_MS)
    expect(b1.stream.status).to.equal('open')
    expect(budget.stats().bytes).to.be.at.most(1.5 * MIB)

    // the senders give up: everything is given back
    a1.stream.abort(new Error('gave up'))
    b1.stream.abort(new Error('gave up'))
    await waitFor(() => budget.stats().streams === 0 && budget.stats().bytes === 0, 'the budget to be given back', SETTLE_DEADLINE_MS)
  })

  it('while admission decides, a stream is paused: it buffers no more than yamux\'s first window (256 KiB), not the 4 MiB of an unread stream', async () => {
    // the server's real admission gate, with a wait long enough to watch
    const waiting: Stream[] = []
    let admission: Admission | undefined
    const budget = await serve(undefined, async (node) => {
      admission = new Admission(componentsOf(node), {
        cluster: 'c',
        credentials: await foundCluster('c', node.peerId, 0),
        closeUnadmitted: false,
        refusals: new Refusals({ log: silentLogger }),
        log: silentLogger,
        limits: { admissionWaitMs: SETTLE_DEADLINE_MS }
      })
      await admission.start()
      admissionsToStop.push(admission)
      return (protocol, handler) => {
        const gated = admission!.gate(protocol, handler)
        return async (stream, connection) => { waiting.push(stream); await gated(stream, connection) }
      }
    })
    const a = await client()
    const stream = await a.dialProtocol(server.peerId, RAFT_CLIENT_PROTOCOL)
    const sending = sendRaw(stream, partialRequest(requestBytesMax(KV_DEFAULTS), 2 * MIB))
    await waitFor(() => waiting.length === 1 && waiting[0].readBufferLength >= 128 * KIB, 'the first bytes to arrive while the stream waits', SETTLE_DEADLINE_MS)
    // watch it for a while (the bound is on bytes; the watch only gives an
    // unpaused stream time to show it is not bounded: it takes
    // milliseconds on loopback)
    let most = 0
    for (let i = 0; i < 50; i++) {
      most = Math.max(most, waiting[0].readBufferLength)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    expect(most).to.be.at.most(256 * KIB)

    // admitted (it shows a certificate): the request is read (and counted) as usual
    const cert = await issueCertificate(admission!.credentials!.clusterKey, { cluster: 'c', peer: a.peerId.toString(), issuedAtMs: 0 })
    const exchange = lpStream(await a.dialProtocol(server.peerId, ADMISSION_PROTOCOL))
    await exchange.write(encode({ v: 1, cert }))
    expect(decode((await exchange.read()).subarray())).to.include({ ok: true })
    await waitFor(() => budget.usage(a.peerId.toString()).bytes >= 2 * MIB, 'the rest of the bytes to arrive', SETTLE_DEADLINE_MS)
    stream.abort(new Error('done'))
    await sending
  })

  describe('on a one-node Raft group', () => {
    let cluster: TestCluster
    beforeEach(() => { cluster = new TestCluster() })
    afterEach(async () => { await cluster.stop() })

    async function admit (node: AccordNode, peer: Libp2p): Promise<void> {
      await presentCertificate(node, peer)
      await waitFor(() => node.admission.isAdmitted(peer.peerId.toString()), 'the peer to be admitted', SETTLE_DEADLINE_MS)
    }

    it('an admitted member that stalls nearly complete 2 MiB requests holds at most bytesPerPeerMax; the rest are refused and counted', async () => {
      const leader = await cluster.add({ raftTickMs: 50 })
      await waitFor(() => leader.raft?.summary().role === 'leader', 'the node to lead its group', SETTLE_DEADLINE_MS)
      const member = await plainPeer()
      peers.push(member)
      await admit(leader, member)

      const declared = requestBytesMax(KV_DEFAULTS)
      const sent = declared - 100 * KIB
      // enough nearly complete requests for twice the per-peer byte budget
      const count = Math.ceil(2 * RAFT_CLIENT_BUDGET.bytesPerPeerMax / sent)
      const streams: Stream[] = []
      for (let i = 0; i < count; i++) {
        const stream = await member.dialProtocol(leader.libp2p.peerId, RAFT_CLIENT_PROTOCOL).catch(() => null)
        if (stream == null) { continue }
        streams.push(stream)
        await sendRaw(stream, partialRequest(declared, sent))
      }
      await waitFor(async () => await refusalCount(leader, RAFT_CLIENT_PROTOCOL, 'peer-bytes') >= 1, 'a refusal for the member\'s bytes', SETTLE_DEADLINE_MS)
      await waitFor(() => streams.filter(s => s.status === 'open').length * sent <= RAFT_CLIENT_BUDGET.bytesPerPeerMax, 'the streams beyond the budget to be aborted', SETTLE_DEADLINE_MS)
      const stillOpen = streams.filter(s => s.status === 'open').length
      expect(stillOpen).to.be.at.least(1)
      expect(stillOpen * sent).to.be.at.most(RAFT_CLIENT_BUDGET.bytesPerPeerMax)
      for (const s of streams) { s.abort(new Error('done')) }
    })
  })
})
