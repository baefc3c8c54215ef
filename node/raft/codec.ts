/**
 * Wire codec of the Raft transport (`/accord/raft/1.0.0`).
 *
 * Every length-prefixed frame holds one CBOR map (cborg: deterministic
 * encoding, map keys sorted) with a version tag and a kind, one of
 * `{ v: 1, kind: 'message', message: Message }`,
 * `{ v: 1, kind: 'snapshot-begin', message: SnapshotMessage, dataBytes }` or
 * `{ v: 1, kind: 'snapshot-chunk', data: Uint8Array }`.
 *
 * A Message maps 1:1 onto CBOR (field names as in protocols/raft/types.ts,
 * Uint8Array as a byte string). A snapshot larger than a frame travels as a
 * `snapshot-begin` (the message with empty `snapshot.data`, and the length
 * of the real data) followed by consecutive `snapshot-chunk` frames.
 *
 * Decoding never throws: bytes from the network are either a checked Frame
 * or a rejection with a reason. It accepts only the one canonical encoding
 * (it re-encodes the checked frame and compares), so there is exactly one
 * byte form per frame and unknown fields, floats or non-minimal lengths are
 * refused rather than silently dropped.
 */
import { Buffer } from 'node:buffer'
import { decode, encode, Tokenizer, Type } from 'cborg'
import { validateMessage } from '../../protocols/raft/index.ts'
import type { Message, SnapshotMessage } from '../../protocols/raft/index.ts'
import type { DecodeOptions, Token } from 'cborg'

export const WIRE_VERSION = 1
/** Largest frame (the length prefix excluded) either side writes or reads. */
export const FRAME_BYTES_MAX = 4 * 1024 * 1024
/** Snapshot data bytes per `snapshot-chunk` frame (well below FRAME_BYTES_MAX). */
export const SNAPSHOT_CHUNK_BYTES = 1024 * 1024
/**
 * CBOR items (every number, string, byte string, array and map counts one)
 * per frame. The largest legal MsgApp (65536 entries of 9 items) needs ~600k;
 * the bound caps how many JS objects a hostile 4 MiB frame can make us build.
 */
export const DECODE_ITEMS_MAX = 1 << 20
/** Nesting of arrays and maps per frame (a snapshot's conf lists sit at depth 6). */
export const DECODE_DEPTH_MAX = 8

export type Frame =
  | { kind: 'message', message: Message }
  /** `message.snapshot.data` is empty; `dataBytes` bytes follow in chunks. */
  | { kind: 'snapshot-begin', message: SnapshotMessage, dataBytes: number }
  | { kind: 'snapshot-chunk', data: Uint8Array }

export type DecodeRejectReason =
  /** More than FRAME_BYTES_MAX bytes. */
  | 'too-large'
  /** Not well-formed strict CBOR (truncated, trailing bytes, tags, indefinite lengths, ...). */
  | 'cbor'
  /** More than DECODE_ITEMS_MAX items or nested deeper than DECODE_DEPTH_MAX. */
  | 'too-complex'
  /** A wire version we do not speak. */
  | 'version'
  /** Not one of the frame shapes above. */
  | 'shape'
  /** The message fails protocols/raft validateMessage. */
  | 'invalid-message'
  /** Valid content in a byte form other than the canonical one. */
  | 'non-canonical'

export type FrameDecodeResult =
  | { ok: true, frame: Frame }
  | { ok: false, reason: DecodeRejectReason, error: string }

export type MessageDecodeResult =
  | { ok: true, message: Message }
  | { ok: false, reason: DecodeRejectReason, error: string }

const DECODE_OPTIONS: DecodeOptions = {
  strict: true,
  allowIndefinite: false,
  allowUndefined: false,
  coerceUndefinedToNull: false,
  allowInfinity: false,
  allowNaN: false,
  allowBigInt: false,
  rejectDuplicateMapKeys: true,
  useMaps: false
}

class TooComplexError extends Error {}

/**
 * cborg's tokenizer plus a count of items and a stack of open containers,
 * so a frame of a million nested arrays or tiny maps is refused while it is
 * being read instead of being built (or overflowing the call stack).
 */
class BoundedTokenizer {
  readonly #inner: Tokenizer
  #items = 0
  /** Children still expected by each open array or map (a map entry counts two). */
  readonly #open: number[] = []

  constructor (data: Uint8Array, options: DecodeOptions = DECODE_OPTIONS) {
    this.#inner = new Tokenizer(data, options)
  }

  done (): boolean { return this.#inner.done() }

  pos (): number { return this.#inner.pos() }

  next (): Token {
    const token = this.#inner.next()
    if (++this.#items > DECODE_ITEMS_MAX) { throw new TooComplexError(`more than ${DECODE_ITEMS_MAX} CBOR items`) }
    while (this.#open.length > 0 && this.#open[this.#open.length - 1] === 0) { this.#open.pop() }
    if (this.#open.length > 0) { this.#open[this.#open.length - 1]-- }
    const isArray = Type.equals(token.type, Type.array)
    if ((isArray || Type.equals(token.type, Type.map)) && token.value > 0) {
      this.#open.push(isArray ? token.value : token.value * 2)
      if (this.#open.length > DECODE_DEPTH_MAX) { throw new TooComplexError(`nested deeper than ${DECODE_DEPTH_MAX}`) }
    }
    return token
  }
}

/**
 * Decodes CBOR from the network within the same item and depth bounds as
 * frames (DECODE_ITEMS_MAX, DECODE_DEPTH_MAX): for other protocols' bodies
 * (the client protocol). Throws on malformed or too complex input.
 */
export function decodeBoundedCbor (bytes: Uint8Array, options: DecodeOptions = { rejectDuplicateMapKeys: true }): unknown {
  return decode(bytes, { ...options, tokenizer: new BoundedTokenizer(bytes, options) })
}

function checkedMessage (message: Message): Message {
  const checked = validateMessage(message)
  if (checked instanceof Error) { throw checked }
  return checked
}

function wireObject (frame: Frame): Record<string, unknown> {
  switch (frame.kind) {
    case 'message': return { v: WIRE_VERSION, kind: frame.kind, message: frame.message }
    case 'snapshot-begin': return { v: WIRE_VERSION, kind: frame.kind, message: frame.message, dataBytes: frame.dataBytes }
    default: return { v: WIRE_VERSION, kind: frame.kind, data: frame.data }
  }
}

/**
 * Encodes one frame. The message is checked with validateMessage first and
 * only its known fields are written: an invalid outbound message is a bug
 * in the caller and throws (InvalidMessageError / RangeError). The result may
 * exceed FRAME_BYTES_MAX; the caller checks.
 */
export function encodeFrame (frame: Frame): Uint8Array {
  switch (frame.kind) {
    case 'message':
      return encode(wireObject({ kind: 'message', message: checkedMessage(frame.message) }))
    case 'snapshot-begin': {
      const message = checkedMessage(frame.message)
      if (message.type !== 'snapshot' || message.snapshot.data.byteLength !== 0) { throw new RangeError('snapshot-begin carries a snapshot message with empty data') }
      if (!Number.isSafeInteger(frame.dataBytes) || frame.dataBytes < 0) { throw new RangeError('snapshot-begin dataBytes must be a non-negative integer') }
      return encode(wireObject({ kind: 'snapshot-begin', message, dataBytes: frame.dataBytes }))
    }
    default:
      if (!(frame.data instanceof Uint8Array) || frame.data.byteLength === 0) { throw new RangeError('snapshot-chunk data must be non-empty bytes') }
      return encode(wireObject(frame))
  }
}

/** One `message` frame. Throws on an invalid message (see encodeFrame). */
export function encodeMessage (message: Message): Uint8Array {
  return encodeFrame({ kind: 'message', message })
}

/**
 * The frames that carry a snapshot message of any size: a `snapshot-begin`
 * and then the data in chunks of `chunkBytes`. Lazy, so a sender holds one
 * encoded chunk at a time; the chunks are views of `message.snapshot.data`
 * until encoded.
 */
export function * snapshotFrames (message: SnapshotMessage, chunkBytes = SNAPSHOT_CHUNK_BYTES): Generator<Uint8Array, void, undefined> {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > FRAME_BYTES_MAX - 64) { throw new RangeError('chunkBytes out of range') }
  const { data } = message.snapshot
  yield encodeFrame({ kind: 'snapshot-begin', message: { ...message, snapshot: { ...message.snapshot, data: new Uint8Array(0) } }, dataBytes: data.byteLength })
  for (let at = 0; at < data.byteLength; at += chunkBytes) {
    yield encodeFrame({ kind: 'snapshot-chunk', data: data.subarray(at, at + chunkBytes) })
  }
}

function reject (reason: DecodeRejectReason, error: string): { ok: false, reason: DecodeRejectReason, error: string } {
  return { ok: false, reason, error }
}

function hasExactKeys (value: Record<string, unknown>, keys: string[]): boolean {
  const own = Object.keys(value)
  return own.length === keys.length && keys.every(k => Object.hasOwn(value, k))
}

/** memcmp through Node's Buffer (a JS loop costs ~3 ms per MiB chunk). */
function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)
}

/** Decodes one frame from the network. Never throws. */
export function decodeFrame (bytes: Uint8Array): FrameDecodeResult {
  if (!(bytes instanceof Uint8Array)) { return reject('shape', 'input must be a Uint8Array') }
  if (bytes.byteLength > FRAME_BYTES_MAX) { return reject('too-large', `frame of ${bytes.byteLength} bytes exceeds ${FRAME_BYTES_MAX}`) }
  // a plain Uint8Array view: cborg copies byte strings with slice(), which on
  // a Node Buffer would return a view pinning the whole frame instead
  const input = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let value: unknown
  try {
    value = decode(input, { ...DECODE_OPTIONS, tokenizer: new BoundedTokenizer(input) })
  } catch (err) {
    if (err instanceof TooComplexError) { return reject('too-complex', err.message) }
    if (err instanceof Error) { return reject('cbor', err.message) }
    return reject('cbor', 'undecodable')
  }
  const parsed = parseFrame(value)
  if (!parsed.ok) { return parsed }
  let canonical: Uint8Array
  try {
    canonical = encode(wireObject(parsed.frame))
  } catch (err) {
    return reject('shape', `cannot re-encode: ${(err as Error).message}`)
  }
  if (!sameBytes(canonical, input)) { return reject('non-canonical', 'frame is not in canonical form (unknown fields or non-minimal encoding)') }
  return parsed
}

function parseFrame (value: unknown): FrameDecodeResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) { return reject('shape', 'frame must be a map') }
  const wire = value as Record<string, unknown>
  if (typeof wire.v !== 'number') { return reject('shape', 'frame has no version') }
  if (wire.v !== WIRE_VERSION) { return reject('version', `unsupported wire version ${wire.v}`) }
  switch (wire.kind) {
    case 'message': return parseMessageFrame(wire)
    case 'snapshot-begin': return parseSnapshotBegin(wire)
    case 'snapshot-chunk': return parseSnapshotChunk(wire)
    default: return reject('shape', 'unknown frame kind')
  }
}

function parseMessageFrame (wire: Record<string, unknown>): FrameDecodeResult {
  if (!hasExactKeys(wire, ['v', 'kind', 'message'])) { return reject('shape', 'message frame has unexpected fields') }
  const message = validateMessage(wire.message)
  if (message instanceof Error) { return reject('invalid-message', message.message) }
  return { ok: true, frame: { kind: 'message', message } }
}

function parseSnapshotBegin (wire: Record<string, unknown>): FrameDecodeResult {
  if (!hasExactKeys(wire, ['v', 'kind', 'message', 'dataBytes'])) { return reject('shape', 'snapshot-begin frame has unexpected fields') }
  const { dataBytes } = wire
  if (typeof dataBytes !== 'number' || !Number.isSafeInteger(dataBytes) || dataBytes < 0) { return reject('shape', 'dataBytes must be a non-negative integer') }
  const message = validateMessage(wire.message)
  if (message instanceof Error) { return reject('invalid-message', message.message) }
  if (message.type !== 'snapshot' || message.snapshot.data.byteLength !== 0) { return reject('shape', 'snapshot-begin must carry a snapshot message with empty data') }
  return { ok: true, frame: { kind: 'snapshot-begin', message, dataBytes } }
}

function parseSnapshotChunk (wire: Record<string, unknown>): FrameDecodeResult {
  if (!hasExactKeys(wire, ['v', 'kind', 'data'])) { return reject('shape', 'snapshot-chunk frame has unexpected fields') }
  const { data } = wire
  if (!(data instanceof Uint8Array) || data.byteLength === 0) { return reject('shape', 'snapshot-chunk data must be non-empty bytes') }
  return { ok: true, frame: { kind: 'snapshot-chunk', data } }
}

/** Decodes a frame that must be a single `message` frame. Never throws. */
export function decodeMessage (bytes: Uint8Array): MessageDecodeResult {
  const decoded = decodeFrame(bytes)
  if (!decoded.ok) { return decoded }
  if (decoded.frame.kind !== 'message') { return reject('shape', `expected a message frame, got ${decoded.frame.kind}`) }
  return { ok: true, message: decoded.frame.message }
}
