/**
 * accord installs `@libp2p/tcp` with a patch (patches/, applied by `npm ci`
 * through patch-package): a connection writes the buffers of one send of up
 * to 16 KiB as one buffer, in one write syscall. Each Noise message is sent
 * as its 2-byte length and its ciphertext; unpatched, each went out in a
 * write syscall of its own, so every message cost two syscalls (and, on
 * loopback, two wake-ups of the receiver). This test fails if the patch is
 * not applied.
 */
import { Socket } from 'node:net'
import { lpStream } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { plainPeer } from '../lib/peers.ts'
import type { Libp2p } from '@libp2p/interface'

const ECHO = '/accord-test/echo/1.0.0'

type WriteOne = (chunk: Buffer, encoding: string, callback: (error?: Error | null) => void) => void

describe('the patched @libp2p/tcp', () => {
  let nodes: Libp2p[] = []
  const writeOne = Object.getOwnPropertyDescriptor(Socket.prototype, '_write')?.value as WriteOne

  afterEach(async () => {
    Socket.prototype._write = writeOne
    await Promise.all(nodes.map(async node => node.stop()))
    nodes = []
  })

  it('writes a Noise message, its length and its ciphertext, in one write', async () => {
    const [a, b] = nodes = await Promise.all([plainPeer(), plainPeer()])
    await b.handle(ECHO, async (stream) => {
      const lp = lpStream(stream)
      for (;;) { await lp.write(await lp.read()) }
    })
    const echo = lpStream(await a.dialProtocol(b.getMultiaddrs()[0], ECHO))
    // a lone 2-byte chunk is a Noise length, written apart from its ciphertext
    let loneLengths = 0
    let messages = 0
    Socket.prototype._write = function (this: Socket, chunk: Buffer, encoding: string, callback: (error?: Error | null) => void) {
      if (chunk.byteLength === 2) { loneLengths++ } else { messages++ }
      writeOne.call(this, chunk, encoding, callback)
    }
    // each round trip is a Noise message each way
    for (let i = 0; i < 20; i++) {
      await echo.write(Uint8Array.of(i))
      expect((await echo.read()).subarray()).to.deep.equal(Uint8Array.of(i))
    }
    expect(loneLengths).to.equal(0)
    expect(messages).to.be.at.least(40)
  })
})
