import { expect } from 'aegir/chai'
import { decode, encode } from 'cborg'
import { cborArray } from '../../node/dkg/transport.ts'

describe('dkg transport: batches', () => {
  it('a batch frame is the CBOR array of its messages, each encoded once', () => {
    for (const n of [1, 2, 23, 24, 255, 256, 300]) {
      const messages = Array.from({ length: n }, (_, i) => ({ type: 'msg', from: 'a', to: 'b', i, body: new Uint8Array(i % 7) }))
      const frame = cborArray(messages.map(m => encode(m)))
      expect(frame).to.deep.equal(encode(messages))
      expect(decode(frame)).to.deep.equal(messages)
    }
  })
})
