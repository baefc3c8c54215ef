/**
 * accord installs `@chainsafe/libp2p-yamux` with a patch (patches/, applied by
 * `npm ci` through patch-package): a stream grants its sender more credit
 * once half its receive window is used, as go-yamux and rust-yamux do,
 * instead of after every data frame. These tests fail if the patch is not
 * applied, and check that flow control still carries data far beyond one
 * window.
 */
import { yamux } from '@chainsafe/libp2p-yamux'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import type { Stream, StreamMuxer } from '@libp2p/interface'

const FRAME_HEADER_BYTES = 12
const WINDOW_BYTES = 256 * 1024

interface Pair { sender: Stream, receiver: Stream, muxers: StreamMuxer[], bytesBackToSender(): number }

async function connectedStreams (): Promise<Pair> {
  const [outbound, inbound] = multiaddrConnectionPair()
  let bytesBack = 0
  outbound.addEventListener('message', event => { bytesBack += event.data.byteLength })
  const factory = yamux()()
  const senderMuxer = factory.createStreamMuxer(outbound)
  const receiverMuxer = factory.createStreamMuxer(inbound)
  const accepted = new Promise<Stream>(resolve => {
    receiverMuxer.addEventListener('stream', event => { resolve(event.detail) }, { once: true })
  })
  const sender = await senderMuxer.createStream()
  // the receiver learns of the stream from its first frame
  sender.send(Uint8Array.of(0))
  const receiver = await accepted
  return { sender, receiver, muxers: [senderMuxer, receiverMuxer], bytesBackToSender: () => bytesBack }
}

/** Resolves once `stream` has received `bytes` bytes in all. */
async function receiveBytes (stream: Stream, bytes: number): Promise<void> {
  let received = 0
  await new Promise<void>(resolve => {
    stream.addEventListener('message', event => {
      received += event.data.byteLength
      if (received >= bytes) { resolve() }
    })
  })
}

describe('yamux window updates (patched)', () => {
  let pair: Pair

  afterEach(async () => {
    for (const muxer of pair.muxers) { muxer.abort(new Error('test over')) }
  })

  it('sends no window update for 200 small frames that use less than half the window', async () => {
    pair = await connectedStreams()
    const received = receiveBytes(pair.receiver, 200 * 100)
    const before = pair.bytesBackToSender()
    for (let i = 0; i < 200; i++) {
      pair.sender.send(new Uint8Array(100))
      // one frame each: let the previous one leave first
      await new Promise(resolve => setImmediate(resolve))
    }
    await received
    // unpatched, the receiver answered every data frame with a 12-byte window update
    expect(pair.bytesBackToSender() - before).to.be.below(10 * FRAME_HEADER_BYTES)
  })

  it('carries 16 windows of data to the end, granting credit as the window is used', async () => {
    pair = await connectedStreams()
    const total = 16 * WINDOW_BYTES
    const received = receiveBytes(pair.receiver, total)
    const chunk = new Uint8Array(64 * 1024)
    for (let sent = 0; sent < total; sent += chunk.byteLength) {
      if (!pair.sender.send(chunk)) { await pair.sender.onDrain() }
    }
    await received
    expect(pair.bytesBackToSender(), 'window updates were sent').to.be.above(0)
  })
})
