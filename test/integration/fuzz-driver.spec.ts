/**
 * The protocol fuzzer's driver (test/lib/protocol-fuzz.ts `drive`) keeps
 * nothing of a stream once the stream is done: the fuzz specs bound the
 * heap growth of a whole attack, and an attacker that kept its own streams
 * alive measured itself. (It did: each stream's 20 s deadline was an
 * AbortSignal.timeout with an abort listener, which Node keeps, with the
 * stream the listener holds, until the timer fires: some 6,000 streams and
 * 50 to 80 MiB when the fuzz spec sampled memory after its attack.)
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import { collectGarbage, drive, protocolId } from '../lib/protocol-fuzz.ts'
import type { Libp2p, Stream } from '@libp2p/interface'

const CLUSTER = 'fuzz-driver'
const STREAMS = 40

async function node (listen: boolean): Promise<Libp2p> {
  return createLibp2p({
    addresses: { listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  })
}

describe('the protocol fuzzer\'s driver', function () {
  this.timeout(60_000)
  let target: Libp2p
  let attacker: Libp2p

  beforeEach(async () => {
    [target, attacker] = await Promise.all([node(true), node(false)])
    // the target answers each stream with one byte and closes it
    await target.handle(protocolId('cluster', CLUSTER), async (stream) => {
      stream.send(new Uint8Array([1]))
      await stream.close()
    })
    await attacker.peerStore.merge(target.peerId, { multiaddrs: target.getMultiaddrs() })
  })

  afterEach(async () => {
    await Promise.all([attacker?.stop(), target?.stop()])
  })

  it('keeps none of its streams once it returned, though their deadlines are far off', async () => {
    const streams: Array<WeakRef<Stream>> = []
    // the attacker, with every stream it opens seen through a weak reference
    const watched = new Proxy(attacker, {
      get (node, property) {
        if (property === 'dialProtocol') {
          return async (...args: Parameters<Libp2p['dialProtocol']>) => {
            const stream = await node.dialProtocol(...args)
            streams.push(new WeakRef(stream))
            return stream
          }
        }
        const value = Reflect.get(node, property)
        return typeof value === 'function' ? value.bind(node) : value
      }
    })
    const stats = await drive({
      node: watched,
      target: target.peerId,
      protocol: 'cluster',
      cluster: CLUSTER,
      next: () => ({ label: 'valid:hello', wire: new Uint8Array([1, 0]), frames: 1 }),
      frames: STREAMS,
      inFlight: 4,
      framesPerStreamMax: 1,
      seed: 1,
      streamTimeoutMs: 10 * 60_000
    })
    expect(stats.streamsOpened).to.equal(STREAMS)
    // (one byte is no cluster hello: "unexpected")
    expect(stats.outcomes, 'how the streams ended: each with the target\'s answer').to.deep.equal({ 'answer:unexpected': STREAMS })
    expect(streams).to.have.lengthOf(STREAMS)

    // A stream is gone when a full collection cleared its weak reference. A
    // reference read (deref) keeps its stream until the job ends, so each
    // collection runs in a job of its own, after the reads; what the last
    // streams' ends left to do (a socket write, a timer of the muxer) may
    // hold them a moment longer
    const left = (): number => streams.filter(s => s.deref() !== undefined).length
    for (let i = 0; i < 20 && left() > 0; i++) {
      await sleep(20)
      expect(collectGarbage(), 'a full collection could be run').to.equal(true)
      await sleep(20)
    }
    expect(left(), 'streams still in memory').to.equal(0)
  })
})
