/**
 * What a stranger, a lying member and broken input can make the membership
 * service do (real libp2p over TCP on loopback): nothing. Each is refused,
 * counted under accord_refusals_total, and the members' view stays as it
 * was.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { encode } from 'cborg'
import { SWIM_PROTOCOL } from '../../node/membership/service.ts'
import { refusalCount } from '../lib/metrics.ts'
import { addressOf, TestCluster, waitFor } from '../lib/nodes.ts'
import { plainPeer, presentCertificate } from '../lib/peers.ts'
import type { AccordNode } from '../../node/index.ts'
import type { Libp2p } from '@libp2p/interface'

/** Bounds a hung wait only (below the test timeout, so a failure names what it waited for). */
const DEADLINE_MS = 20_000

describe('membership service under hostile input (real libp2p over TCP on loopback)', function () {
  this.timeout(60_000)
  let cluster: TestCluster
  let a: AccordNode
  let b: AccordNode
  const peers: Libp2p[] = []

  before(async () => {
    cluster = new TestCluster()
    a = await cluster.add({ raft: false })
    b = await cluster.add({ raft: false, bootstrap: [addressOf(a)] })
    await waitFor(() => a.membership.members().some(m => m.peerId === b.libp2p.peerId.toString() && m.state === 'alive'), 'a to see b alive', DEADLINE_MS)
  })

  after(async () => {
    await Promise.all(peers.map(async p => { await p.stop() }))
    await cluster.stop()
  })

  const stateOfB = (): string | undefined => a.membership.members().find(m => m.peerId === b.libp2p.peerId.toString())?.state
  const suspicion = (from: string): Uint8Array => encode({
    type: 'ping',
    from,
    to: a.libp2p.peerId.toString(),
    seq: 1,
    updates: [{ kind: 'dead', id: b.libp2p.peerId.toString(), incarnation: 1_000, from }]
  })
  async function send (peer: Libp2p, frame: Uint8Array): Promise<void> {
    const stream = await peer.dialProtocol(multiaddr(addressOf(a)), SWIM_PROTOCOL)
    await lpStream(stream).write(frame).catch(() => {})
    await stream.close().catch(() => {})
  }

  it('a stranger\'s message, even one that names a member as its sender, is refused before it is read', async () => {
    const stranger = await plainPeer()
    peers.push(stranger)
    const before = await refusalCount(a, SWIM_PROTOCOL, 'not-admitted')
    await send(stranger, suspicion(b.libp2p.peerId.toString()))
    await waitFor(async () => await refusalCount(a, SWIM_PROTOCOL, 'not-admitted') > before, 'the stranger to be refused', DEADLINE_MS)
    expect(stateOfB()).to.equal('alive')
  })

  it('a member cannot speak for another: a message whose sender is not the peer that sent it is refused', async () => {
    const liar = await plainPeer()
    peers.push(liar)
    await presentCertificate(a, liar)
    const before = await refusalCount(a, SWIM_PROTOCOL, 'spoofed-sender')
    await send(liar, suspicion(b.libp2p.peerId.toString()))
    await waitFor(async () => await refusalCount(a, SWIM_PROTOCOL, 'spoofed-sender') > before, 'the spoofed message to be refused', DEADLINE_MS)
    expect(stateOfB()).to.equal('alive')
  })

  it('garbage, an oversize frame and a message of the wrong shape are refused, and the node keeps probing', async () => {
    const member = await plainPeer()
    peers.push(member)
    await presentCertificate(a, member)
    const malformed = await refusalCount(a, SWIM_PROTOCOL, 'malformed')
    const invalid = await refusalCount(a, SWIM_PROTOCOL, 'invalid-message')
    await send(member, new Uint8Array([0xff, 0x00, 0x13, 0x37]))
    await send(member, new Uint8Array(200 * 1024).fill(7))
    await send(member, encode({ type: 'ping', from: member.peerId.toString(), to: a.libp2p.peerId.toString(), seq: 'one', updates: 'none' }))
    await waitFor(async () => await refusalCount(a, SWIM_PROTOCOL, 'malformed') >= malformed + 2, 'garbage and the oversize frame to be refused', DEADLINE_MS)
    await waitFor(async () => await refusalCount(a, SWIM_PROTOCOL, 'invalid-message') > invalid, 'the wrong-shaped message to be refused', DEADLINE_MS)
    // still a working member: b stays alive in a's view, a in b's
    const probes = a.membership.status()?.counters.probes ?? 0
    await waitFor(() => (a.membership.status()?.counters.probes ?? 0) > probes + 1, 'a to keep probing', DEADLINE_MS)
    expect(stateOfB()).to.equal('alive')
    expect(b.membership.members().find(m => m.peerId === a.libp2p.peerId.toString())?.state).to.equal('alive')
  })

  it('a member nobody can reach (made up by a member, no address anywhere) is probed without a DHT lookup: each message to it is dropped and counted', async () => {
    const member = await plainPeer()
    peers.push(member)
    await presentCertificate(a, member)
    const ghost = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const dropped = async (): Promise<number> => {
      const { values } = await a.metrics.getSingleMetric('accord_membership_sends_dropped_total')!.get()
      return values.find(v => v.labels.reason === 'no-address')?.value ?? 0
    }
    const before = await dropped()
    await send(member, encode({ type: 'ping', from: member.peerId.toString(), to: a.libp2p.peerId.toString(), seq: 1, updates: [{ kind: 'alive', id: ghost, incarnation: 0, meta: new Uint8Array(0) }] }))
    await waitFor(() => a.membership.stateOf(ghost) !== undefined, 'a to learn of the made-up member', DEADLINE_MS)
    await waitFor(async () => await dropped() > before, 'a message to the made-up member to be dropped', DEADLINE_MS)
  })
})
