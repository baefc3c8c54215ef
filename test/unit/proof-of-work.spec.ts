import { expect } from 'aegir/chai'
import { leadingZeroBits, POW_BITS_MAX, POW_NONCE_BYTES, solveProofOfWork, verifyProofOfWork } from '../../identity/proof-of-work.ts'

const PEER = '12D3KooWBgGPPFcyRAPbLGWXLFjcjikNTyadCcc145S32zMsXm7p'
const OTHER_PEER = '12D3KooWJuF5P5wRMT2T6XaUxhkqLkoBfnaseXN4BcSmz6YeXzPq'
const input = { cluster: 'prod', peer: PEER }

describe('join proof of work', () => {
  it('counts leading zero bits', () => {
    expect(leadingZeroBits(new Uint8Array([0, 0, 1]))).to.equal(23)
    expect(leadingZeroBits(new Uint8Array([0x80]))).to.equal(0)
    expect(leadingZeroBits(new Uint8Array([0, 0x10]))).to.equal(11)
    expect(leadingZeroBits(new Uint8Array(4))).to.equal(32)
  })

  it('a solved proof verifies for its peer, cluster and difficulty', () => {
    const nonce = solveProofOfWork(input, 12) as Uint8Array
    expect(nonce).to.have.length(POW_NONCE_BYTES)
    expect(verifyProofOfWork(input, 12, nonce)).to.equal(true)
  })

  it('is deterministic: the same input gives the same nonce (no randomness, no clock)', () => {
    expect(solveProofOfWork(input, 10)).to.deep.equal(solveProofOfWork(input, 10))
  })

  it('is refused for another peer id or another cluster', () => {
    // a 12-bit proof passes for another input by chance once in 4096; these inputs are fixed and do not
    const nonce = solveProofOfWork(input, 12) as Uint8Array
    expect(verifyProofOfWork({ cluster: 'prod', peer: OTHER_PEER }, 12, nonce)).to.equal(false)
    expect(verifyProofOfWork({ cluster: 'dev', peer: PEER }, 12, nonce)).to.equal(false)
    // the names are length-prefixed: moving bytes between them is another input
    expect(verifyProofOfWork({ cluster: 'prod1', peer: PEER.slice(1) }, 12, nonce)).to.equal(false)
  })

  it('a proof made at a lower difficulty does not count at a higher one (the difficulty is hashed in)', () => {
    // under the 5- or 16-bit input the same nonce hashes to something else (fixed inputs: no flakiness)
    const nonce = solveProofOfWork(input, 4) as Uint8Array
    expect(verifyProofOfWork(input, 4, nonce)).to.equal(true)
    expect(verifyProofOfWork(input, 16, nonce)).to.equal(false)
    expect(verifyProofOfWork(input, 5, nonce)).to.equal(false)
  })

  it('a slice of the search can come up empty, and the next slice goes on from there', () => {
    const nonce = solveProofOfWork(input, 12) as Uint8Array
    const found = Number(new DataView(nonce.buffer, nonce.byteOffset).getBigUint64(0))
    expect(solveProofOfWork(input, 12, 0, found)).to.equal(null)
    expect(solveProofOfWork(input, 12, found, 1)).to.deep.equal(nonce)
  })

  it('bounds its input: difficulty range, name lengths, nonce length; verification never throws', () => {
    expect(() => solveProofOfWork(input, 0)).to.throw(RangeError)
    expect(() => solveProofOfWork(input, POW_BITS_MAX + 1)).to.throw(RangeError)
    expect(() => solveProofOfWork({ cluster: 'x'.repeat(129), peer: PEER }, 4)).to.throw(RangeError)
    expect(() => solveProofOfWork(input, 4, -1)).to.throw(RangeError)
    const nonce = solveProofOfWork(input, 4) as Uint8Array
    expect(verifyProofOfWork(input, 0, nonce)).to.equal(false)
    expect(verifyProofOfWork(input, 4.5, nonce)).to.equal(false)
    expect(verifyProofOfWork(input, 4, nonce.subarray(1))).to.equal(false)
    expect(verifyProofOfWork(input, 4, 'nonce')).to.equal(false)
    expect(verifyProofOfWork({ cluster: 'prod', peer: 'x'.repeat(200) }, 4, nonce)).to.equal(false)
  })
})
