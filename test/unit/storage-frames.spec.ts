import { expect } from 'aegir/chai'
import { FRAME_HEADER_BYTES, allZero, encodeFrame, readFrames, sealFrame } from '../../node/storage-frames.ts'

const concat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts))
const damaged = (frame: Uint8Array): Uint8Array => { const copy = frame.slice(); copy[copy.length - 1] ^= 0x40; return copy }
const wild = (length: number): Uint8Array => { const w = new Uint8Array(FRAME_HEADER_BYTES); new DataView(w.buffer).setUint32(0, length); return w }

describe('storage frames (shared by the PBFT log and the Raft write-ahead log)', () => {
  const a = encodeFrame(Uint8Array.of(1, 2, 3))
  const b = encodeFrame(new Uint8Array(100).fill(7))

  it('seals a frame assembled in place exactly as encodeFrame does', () => {
    const frame = new Uint8Array(FRAME_HEADER_BYTES + 3)
    frame.set([1, 2, 3], FRAME_HEADER_BYTES)
    expect(sealFrame(frame)).to.deep.equal(a)
  })

  it('reports where each payload starts', () => {
    const read = readFrames(concat(a, b), 1024)
    expect(read).to.deep.include({ ok: true, offsets: [FRAME_HEADER_BYTES, a.length + FRAME_HEADER_BYTES], wholeBytes: a.length + b.length, torn: false })
  })

  it('takes a bad frame followed by nothing but zeros for a torn tail (a preallocated file)', () => {
    const read = readFrames(concat(a, damaged(b), new Uint8Array(5000)), 1024)
    expect(read).to.deep.include({ ok: true, wholeBytes: a.length, torn: true })
  })

  it('tells zeros after the last whole frame (not torn) from a short torn header', () => {
    expect(readFrames(concat(a, new Uint8Array(5000)), 1024)).to.deep.include({ ok: true, wholeBytes: a.length, torn: false })
    expect(readFrames(concat(a, new Uint8Array(5)), 1024)).to.deep.include({ ok: true, wholeBytes: a.length, torn: false })
    expect(readFrames(concat(a, Uint8Array.of(0, 0, 1)), 1024)).to.deep.include({ ok: true, wholeBytes: a.length, torn: true })
    expect(readFrames(concat(a, b.subarray(0, b.length - 1)), 1024)).to.deep.include({ ok: true, wholeBytes: a.length, torn: true })
  })

  it('refuses a bad frame followed by zeros and then data', () => {
    const bytes = concat(a, damaged(b), new Uint8Array(100), Uint8Array.of(9))
    expect(readFrames(bytes, 1024)).to.deep.equal({ ok: false, offset: a.length, error: 'checksum mismatch' })
  })

  it('takes a wild length followed by zeros for a torn tail, and refuses one followed by data even past the end', () => {
    expect(readFrames(concat(a, wild(0x7fffffff), new Uint8Array(64)), 1024)).to.deep.include({ ok: true, wholeBytes: a.length, torn: true })
    expect(readFrames(concat(a, wild(0x7fffffff), b), 1024)).to.deep.include({ ok: false, offset: a.length })
  })

  it('checks zeros across its 64 KiB steps', () => {
    const bytes = new Uint8Array(200_000)
    expect(allZero(bytes)).to.equal(true)
    expect(allZero(bytes.subarray(3))).to.equal(true)
    bytes[131_072] = 1
    expect(allZero(bytes)).to.equal(false)
    expect(allZero(bytes.subarray(131_073))).to.equal(true)
    expect(allZero(new Uint8Array(0))).to.equal(true)
  })
})
