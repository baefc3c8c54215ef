/**
 * The DKG's sender over real libp2p on loopback: what one task sends to one
 * peer leaves as one batch on /accord/dkg/1.1.0, and a peer that speaks only
 * /accord/dkg/1.0.0 (a node from before batching) gets the same messages one
 * per stream, each a frame it can read.
 */
import { lpStream } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { decode } from 'cborg'
import { pino } from 'pino'
import { DKG_PROTOCOL, DKG_PROTOCOL_UNBATCHED } from '../../node/dkg/constants.ts'
import { DkgSender } from '../../node/dkg/transport.ts'
import { plainPeer } from '../lib/peers.ts'
import { waitFor } from '../lib/wait.ts'
import type { DatagramCounters } from '../../node/datagram.ts'
import type { Libp2p } from '@libp2p/interface'

interface Received { protocol: string, frame: unknown }

/** A plain peer that serves `protocols` and keeps every frame it reads. */
async function receiver (protocols: string[]): Promise<{ peer: Libp2p, received: Received[] }> {
  const peer = await plainPeer()
  const received: Received[] = []
  for (const protocol of protocols) {
    await peer.handle(protocol, async (stream) => {
      const frame = decode((await lpStream(stream).read()).subarray())
      received.push({ protocol, frame })
      await stream.close()
    })
  }
  return { peer, received }
}

describe('dkg sender: batches and the unbatched protocol (real libp2p over TCP on loopback)', function () {
  this.timeout(60_000)
  const peers: Libp2p[] = []
  let sender: DkgSender
  let dropped: string[]

  beforeEach(async () => {
    const host = await plainPeer()
    peers.push(host)
    dropped = []
    const counters: DatagramCounters = { sent: () => {}, received: () => {}, dropped: (reason: string) => { dropped.push(reason) } }
    sender = new DkgSender({
      host,
      protocol: DKG_PROTOCOL,
      unbatchedProtocol: DKG_PROTOCOL_UNBATCHED,
      counters,
      sendsInFlightMax: 64,
      timeoutMs: 5_000,
      attempts: 2,
      retryPauseMs: 50,
      batchMax: 32,
      frameBytesMax: 64 * 1024,
      addressesOf: () => [],
      log: pino({ level: 'silent' })
    })
  })
  afterEach(async () => {
    sender.stop()
    await Promise.all(peers.splice(0).map(async p => { await p.stop() }))
  })

  const sendThree = async (to: Libp2p): Promise<void> => {
    await peers[0].dial(to.getMultiaddrs()[0])
    for (const n of [1, 2, 3]) { sender.send({ type: 'msg', to: to.peerId.toString(), n }) }
  }

  it('sends what one task sends to a peer as one batch frame on 1.1.0', async () => {
    const { peer, received } = await receiver([DKG_PROTOCOL, DKG_PROTOCOL_UNBATCHED])
    peers.push(peer)
    await sendThree(peer)
    await waitFor(() => received.length >= 1, 'the batch to arrive')
    expect(received).to.have.length(1)
    expect(received[0].protocol).to.equal(DKG_PROTOCOL)
    expect((received[0].frame as Array<{ n: number }>).map(m => m.n)).to.deep.equal([1, 2, 3])
  })

  it('sends a peer that speaks only 1.0.0 each message as a frame of its own', async () => {
    const { peer, received } = await receiver([DKG_PROTOCOL_UNBATCHED])
    peers.push(peer)
    await sendThree(peer)
    await waitFor(() => received.length >= 3, 'the three messages to arrive')
    expect(received.every(r => r.protocol === DKG_PROTOCOL_UNBATCHED && !Array.isArray(r.frame))).to.equal(true)
    expect(received.map(r => (r.frame as { n: number }).n).sort()).to.deep.equal([1, 2, 3])
    expect(dropped).to.deep.equal([])
  })
})
