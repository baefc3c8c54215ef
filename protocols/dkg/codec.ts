/**
 * The binary encoding of DKG messages, for the service that will carry
 * them: a version byte, a type tag, the session and sender, then the fields
 * in a fixed order (varint counts, points and proofs as raw fixed-size
 * bytes, ids as length-prefixed UTF-8). The decoder checks sizes and counts
 * against the limits before it reads further and returns a reason on
 * anything malformed; it never throws. Points are not decoded here: the
 * node checks them (and everything else) in step().
 */
import { G1_BYTES, SCALAR_BYTES } from '../../identity/bls.ts'
import { SEALED_SHARE_BYTES } from '../../identity/threshold/share-box.ts'
import { unreachable } from '../common/assert.ts'
import { ByteReader, ByteWriter, DecodeError } from '../kv/codec.ts'
import { ID_CHARS_MAX, PARTICIPANTS_MAX, SESSION_BYTES_MAX } from './config.ts'
import type { Complaint, DealMessage, DkgMessage } from './types.ts'

export const DKG_ENCODING_VERSION = 1
/** Above the largest valid message: a justification with PARTICIPANTS_MAX commitments, boxes and revealed shares. */
export const DKG_MESSAGE_BYTES_MAX = 256 * 1024

const TAGS = { deal: 1, response: 2, justification: 3 } as const
const MISSING = 1
const BAD_SHARE = 2
const PROOF_BYTES = 2 * SCALAR_BYTES
const ID_BYTES_MAX = 3 * ID_CHARS_MAX

export function encodeDkgMessage (message: DkgMessage): Uint8Array {
  const w = new ByteWriter(1024).u8(DKG_ENCODING_VERSION).u8(TAGS[message.type]).bytes(message.session).utf8(message.from)
  switch (message.type) {
    case 'deal':
      writeDeal(w, message)
      break
    case 'response':
      w.varint(message.complaints.length)
      for (const c of message.complaints) {
        if (c.kind === 'missing') {
          w.u8(MISSING).utf8(c.dealer)
        } else {
          w.u8(BAD_SHARE).utf8(c.dealer).raw(c.boxKey).raw(c.proof)
        }
      }
      break
    case 'justification':
      writeDeal(w, message.deal)
      w.varint(message.shares.length)
      for (const s of message.shares) { w.utf8(s.member).raw(s.share) }
      break
    default:
      unreachable(message)
  }
  return w.finish()
}

export type DecodeResult = { ok: true, message: DkgMessage } | { ok: false, error: string }

export function decodeDkgMessage (bytes: Uint8Array): DecodeResult {
  if (!(bytes instanceof Uint8Array)) { return { ok: false, error: 'a message is bytes' } }
  if (bytes.length > DKG_MESSAGE_BYTES_MAX) { return { ok: false, error: `a message is at most ${DKG_MESSAGE_BYTES_MAX} bytes, got ${bytes.length}` } }
  try {
    const r = new ByteReader(bytes)
    const version = r.u8('version')
    if (version !== DKG_ENCODING_VERSION) { return { ok: false, error: `unsupported version ${version}` } }
    const tag = r.u8('type')
    const session = Uint8Array.from(r.bytes('session', SESSION_BYTES_MAX))
    const from = r.utf8('from', ID_BYTES_MAX)
    let message: DkgMessage
    if (tag === TAGS.deal) {
      message = { type: 'deal', session, from, ...readDeal(r) }
    } else if (tag === TAGS.response) {
      message = { type: 'response', session, from, complaints: readList(r, 'complaints', () => readComplaint(r)) }
    } else if (tag === TAGS.justification) {
      const deal = readDeal(r)
      const shares = readList(r, 'shares', () => ({ member: r.utf8('member', ID_BYTES_MAX), share: fixed(r, SCALAR_BYTES, 'share') }))
      message = { type: 'justification', session, from, deal, shares }
    } else {
      return { ok: false, error: `unknown message type ${tag}` }
    }
    r.end('the message')
    return { ok: true, message }
  } catch (err) {
    if (err instanceof DecodeError) { return { ok: false, error: err.message } }
    throw err
  }
}

function writeDeal (w: ByteWriter, deal: Pick<DealMessage, 'commitments' | 'ephemeral' | 'boxes'>): void {
  w.varint(deal.commitments.length)
  for (const c of deal.commitments) { w.raw(c) }
  w.raw(deal.ephemeral)
  w.varint(deal.boxes.length)
  for (const b of deal.boxes) { w.raw(b) }
}

function readDeal (r: ByteReader): Pick<DealMessage, 'commitments' | 'ephemeral' | 'boxes'> {
  const commitments = readList(r, 'commitments', () => fixed(r, G1_BYTES, 'commitment'))
  const ephemeral = fixed(r, G1_BYTES, 'ephemeral key')
  const boxes = readList(r, 'boxes', () => fixed(r, SEALED_SHARE_BYTES, 'box'))
  return { commitments, ephemeral, boxes }
}

function readComplaint (r: ByteReader): Complaint {
  const kind = r.u8('complaint kind')
  const dealer = r.utf8('dealer', ID_BYTES_MAX)
  if (kind === MISSING) { return { kind: 'missing', dealer } }
  if (kind === BAD_SHARE) { return { kind: 'bad-share', dealer, boxKey: fixed(r, G1_BYTES, 'box key'), proof: fixed(r, PROOF_BYTES, 'proof') } }
  throw new DecodeError(`unknown complaint kind ${kind}`)
}

function readList<T> (r: ByteReader, what: string, read: () => T): T[] {
  const count = r.varint(`${what} count`)
  if (count > PARTICIPANTS_MAX) { throw new DecodeError(`${count} ${what}, more than ${PARTICIPANTS_MAX}`) }
  return Array.from({ length: count }, read)
}

/** A copy, so a decoded message does not pin the whole frame. */
function fixed (r: ByteReader, length: number, what: string): Uint8Array {
  return Uint8Array.from(r.raw(length, what))
}
