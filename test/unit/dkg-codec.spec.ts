import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { decodeDkgMessage, encodeDkgMessage, DKG_MESSAGE_BYTES_MAX } from '../../protocols/dkg/codec.ts'
import { PARTICIPANTS_MAX } from '../../protocols/dkg/config.ts'
import { DkgNode } from '../../protocols/dkg/dkg-node.ts'
import { freshConfigs, participants, run } from './dkg-harness.ts'
import type { DealMessage, DkgMessage, JustificationMessage, ResponseMessage } from '../../protocols/dkg/types.ts'

const bytes = (length: number, fill: number): Uint8Array => new Uint8Array(length).fill(fill)

describe('DKG wire encoding', () => {
  const list = participants(['a', 'b', 'c', 'd'], 'codec')
  const deal = new DkgNode(freshConfigs(list, 3).get('a')!).ready().messages[0] as DealMessage
  const response: ResponseMessage = {
    type: 'response',
    session: deal.session,
    from: 'b',
    complaints: [{ kind: 'missing', dealer: 'c' }, { kind: 'bad-share', dealer: 'ä', boxKey: bytes(48, 1), proof: bytes(64, 2) }]
  }
  const justification: JustificationMessage = {
    type: 'justification',
    session: deal.session,
    from: 'a',
    deal: { commitments: deal.commitments, ephemeral: deal.ephemeral, boxes: deal.boxes },
    shares: [{ member: 'd', share: bytes(32, 3) }]
  }

  it('round-trips every message type', () => {
    for (const message of [deal, response, justification] as DkgMessage[]) {
      const decoded = decodeDkgMessage(encodeDkgMessage(message))
      expect(decoded).to.deep.equal({ ok: true, message })
    }
  })

  it('carries a whole DKG: every message of a run survives encoding and the run still agrees', () => {
    const result = run(freshConfigs(list, 3), {
      tamper: (m) => {
        const decoded = decodeDkgMessage(encodeDkgMessage(m))
        if (!decoded.ok) { throw new Error(decoded.error) }
        return decoded.message
      }
    })
    expect([...result.outcomes.values()].map(o => o.status)).to.deep.equal(['done', 'done', 'done', 'done'])
  })

  it('never throws on corrupted frames: the decoder and the node answer with a reason', () => {
    const frames = [deal, response, justification].map(encodeDkgMessage)
    const config = freshConfigs(list, 3).get('c')!
    let node = new DkgNode(config)
    fc.assert(fc.property(fc.nat({ max: 2 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (which, flips) => {
      const frame = Uint8Array.from(frames[which])
      for (const [at, value] of flips) { frame[at % frame.length] = value }
      const decoded = decodeDkgMessage(frame)
      if (decoded.ok) {
        const result = node.step(decoded.message)
        expect(typeof result.ok).to.equal('boolean')
        if (result.ok) { node = new DkgNode(config) } // a fresh node for the next one
      } else {
        expect(decoded.error).to.be.a('string')
      }
    }), { numRuns: 300 })
  })

  it('refuses truncated, trailing, oversize, unknown and over-long input with a reason', () => {
    const encoded = encodeDkgMessage(response)
    expect(decodeDkgMessage(encoded.subarray(0, encoded.length - 1))).to.deep.equal({ ok: false, error: 'proof runs past the end (64 bytes, 63 left)' })
    expect(decodeDkgMessage(Uint8Array.from([...encoded, 0]))).to.deep.equal({ ok: false, error: '1 trailing bytes after the message' })
    expect(decodeDkgMessage(new Uint8Array(DKG_MESSAGE_BYTES_MAX + 1))).to.deep.equal({ ok: false, error: `a message is at most ${DKG_MESSAGE_BYTES_MAX} bytes, got ${DKG_MESSAGE_BYTES_MAX + 1}` })
    expect(decodeDkgMessage(Uint8Array.from([2, 1]))).to.deep.equal({ ok: false, error: 'unsupported version 2' })
    expect(decodeDkgMessage(Uint8Array.from([1, 9, 0, 0]))).to.deep.equal({ ok: false, error: 'unknown message type 9' })
    expect(decodeDkgMessage(new Uint8Array(0))).to.deep.equal({ ok: false, error: 'truncated before version' })
    expect(decodeDkgMessage(Uint8Array.from([1, 1, 65, ...bytes(65, 0)]))).to.deep.equal({ ok: false, error: 'session is 65 bytes, more than 64' })
    // A count above PARTICIPANTS_MAX is refused before anything is allocated for it.
    const tooMany = encodeDkgMessage({ ...response, complaints: [] })
    tooMany[tooMany.length - 1] = 0x81 // varint 257: 0x81 0x02
    expect(decodeDkgMessage(Uint8Array.from([...tooMany, 0x02]))).to.deep.equal({ ok: false, error: `${PARTICIPANTS_MAX + 1} complaints, more than ${PARTICIPANTS_MAX}` })
    const badKind = encodeDkgMessage({ ...response, complaints: [{ kind: 'missing', dealer: 'c' }] })
    badKind[badKind.length - 3] = 7
    expect(decodeDkgMessage(badKind)).to.deep.equal({ ok: false, error: 'unknown complaint kind 7' })
  })
})
