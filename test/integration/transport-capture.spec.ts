/**
 * No plaintext on the wire: a peer dials an accord node through a TCP relay
 * on 127.0.0.1 that records every byte both ways (the same bytes a packet
 * capture of the loopback interface would show), sends a message holding a
 * random marker, and the marker appears nowhere in the capture, neither
 * raw nor as hex or base64, whether the connection uses Noise or TLS 1.3.
 * The relay's own control run, the marker written through it without
 * libp2p, shows the search finds a plaintext marker.
 */
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer } from 'node:net'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { createLibp2p } from 'libp2p'
import { TestCluster, waitFor } from '../lib/nodes.ts'
import type { AccordNode } from '../../node/index.ts'
import type { ConnectionEncrypter, Libp2p } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Server, Socket } from 'node:net'

const ECHO_PROTOCOL = '/accord-test/echo/1.0.0'

/** A TCP relay to `port` on 127.0.0.1 that keeps a copy of every byte it passes, both ways. */
class CapturingRelay {
  readonly chunks: Buffer[] = []
  readonly #server: Server
  readonly #sockets = new Set<Socket>()

  private constructor (server: Server) {
    this.#server = server
  }

  static async start (targetPort: number): Promise<CapturingRelay> {
    const relay: CapturingRelay = new CapturingRelay(createServer(client => {
      const upstream = connect(targetPort, '127.0.0.1')
      relay.#pipe(client, upstream)
      relay.#pipe(upstream, client)
    }))
    relay.#server.listen(0, '127.0.0.1')
    await once(relay.#server, 'listening')
    return relay
  }

  #pipe (from: Socket, to: Socket): void {
    this.#sockets.add(from)
    from.on('data', (chunk: Buffer) => {
      this.chunks.push(Buffer.from(chunk))
      to.write(chunk)
    })
    from.on('end', () => { to.end() })
    from.on('error', () => { to.destroy() })
    from.on('close', () => { this.#sockets.delete(from); to.destroy() })
  }

  get port (): number {
    return (this.#server.address() as { port: number }).port
  }

  /** Everything captured (both directions; each chunk whole, so a marker is never split by the search). */
  get bytes (): Buffer {
    return Buffer.concat(this.chunks)
  }

  async stop (): Promise<void> {
    for (const socket of this.#sockets) { socket.destroy() }
    this.#server.close()
    await once(this.#server, 'close')
  }
}

/** The marker in the three spellings the capture is searched for. */
function spellings (marker: Buffer): Buffer[] {
  return [marker, Buffer.from(marker.toString('hex')), Buffer.from(marker.toString('base64'))]
}

function tcpPort (address: Multiaddr): number {
  return Number(address.getComponents().find(c => c.name === 'tcp')?.value)
}

describe('no plaintext on the wire (a capturing TCP relay on loopback)', function () {
  this.timeout(60_000)
  let cluster: TestCluster
  let node: AccordNode
  let relay: CapturingRelay | undefined
  const peers: Libp2p[] = []

  beforeEach(async () => {
    cluster = new TestCluster()
    node = await cluster.add({ raft: false })
    // echoes one framed message: the marker crosses the wire both ways
    await node.libp2p.handle(ECHO_PROTOCOL, async (stream) => {
      const lp = lpStream(stream)
      await lp.write(await lp.read())
      await stream.close()
    })
    relay = await CapturingRelay.start(tcpPort(node.libp2p.getMultiaddrs()[0]))
  })

  afterEach(async () => {
    await Promise.all(peers.splice(0).map(async p => { await p.stop() }))
    await relay?.stop()
    relay = undefined
    await cluster.stop()
  })

  function started (): CapturingRelay {
    if (relay == null) { throw new Error('the relay did not start') }
    return relay
  }

  async function peerWith (encrypter: (components: any) => ConnectionEncrypter): Promise<Libp2p> {
    const peer = await createLibp2p({ transports: [tcp()], connectionEncrypters: [encrypter], streamMuxers: [yamux()] })
    peers.push(peer)
    return peer
  }

  const encrypters = [['Noise', noise, '/noise'], ['TLS 1.3', tls, '/tls/1.0.0']] as const
  encrypters.forEach(([name, encrypter, protocol]) => {
    it(`${name}: the marker, raw, hex or base64, is nowhere in the captured bytes`, async () => {
      const capture = started()
      const peer = await peerWith(encrypter())
      const marker = randomBytes(32)
      const message = Buffer.concat([Buffer.from('marker: '), ...spellings(marker).flatMap(s => [s, Buffer.from(' ')])])

      const stream = await peer.dialProtocol(multiaddr(`/ip4/127.0.0.1/tcp/${capture.port}/p2p/${node.libp2p.peerId.toString()}`), ECHO_PROTOCOL)
      const lp = lpStream(stream)
      await lp.write(message)
      const echoed = Buffer.from((await lp.read()).subarray())
      await stream.close()

      // the message went through the relay and came back whole
      expect(peer.getConnections(node.libp2p.peerId).map(c => [tcpPort(c.remoteAddr), c.encryption])).to.deep.equal([[capture.port, protocol]])
      expect(echoed.equals(message)).to.equal(true)
      const captured = capture.bytes
      expect(captured.byteLength).to.be.greaterThan(2 * message.byteLength)
      // the capture is of the real wire: the negotiation before encryption is readable
      expect(captured.includes(`${protocol}\n`)).to.equal(true)
      for (const spelling of spellings(marker)) {
        expect(captured.includes(spelling), `marker ${spelling.toString('hex').slice(0, 16)}... in the capture`).to.equal(false)
      }
      // nor the protocol id negotiated inside the encrypted connection
      expect(captured.includes(ECHO_PROTOCOL)).to.equal(false)
    })
  })

  it('control: a marker written through the relay without libp2p is found in the capture', async () => {
    const capture = started()
    const marker = randomBytes(32)
    const socket = connect(capture.port, '127.0.0.1')
    await once(socket, 'connect')
    socket.write(Buffer.concat(spellings(marker)))
    await waitFor(() => capture.bytes.byteLength >= 32 + 64 + 44, 'the relay to capture the bytes')
    socket.destroy()
    for (const spelling of spellings(marker)) {
      expect(capture.bytes.includes(spelling)).to.equal(true)
    }
  })
})
