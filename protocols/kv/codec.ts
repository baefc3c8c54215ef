/**
 * Byte-level helpers for the KV command and snapshot encodings: unsigned
 * LEB128 varints (canonical: the shortest form only, at most 2^53 - 1),
 * length-prefixed byte strings and UTF-8 text.
 *
 * ByteReader throws DecodeError on malformed input; the public decoders catch
 * it and return an error value, so nothing escapes to the caller.
 */

const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** 8 varint bytes carry 56 bits, enough for any safe integer. */
const VARINT_BYTES_MAX = 8

export class DecodeError extends Error {
  override name = 'DecodeError'
}

export function encodeUtf8 (text: string): Uint8Array {
  return utf8Encoder.encode(text)
}

/** Strict UTF-8 decoding; throws DecodeError naming `what` on invalid input. */
export function decodeUtf8 (bytes: Uint8Array, what: string): string {
  try {
    return utf8Decoder.decode(bytes)
  } catch {
    throw new DecodeError(`${what} is not valid UTF-8`)
  }
}

/** What `encodeUtf8(text).length` would be, without allocating. */
export function utf8ByteLength (text: string): number {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit < 0x80) { bytes += 1 } else if (unit < 0x800) { bytes += 2 } else if (isHighSurrogate(unit) && i + 1 < text.length && isLowSurrogate(text.charCodeAt(i + 1))) {
      // a surrogate pair is one 4-byte code point
      bytes += 4
      i++
    } else { bytes += 3 } // includes a lone surrogate, which TextEncoder turns into U+FFFD
  }
  return bytes
}

function isHighSurrogate (unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff
}

function isLowSurrogate (unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff
}

export function varintByteLength (value: number): number {
  let bytes = 1
  while (value >= 0x80) {
    value = Math.floor(value / 0x80)
    bytes++
  }
  return bytes
}

/** Compares byte strings lexicographically (shorter prefix first). */
export function compareBytes (a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length)
  for (let i = 0; i < length; i++) {
    if (a[i] !== b[i]) { return a[i] - b[i] }
  }
  return a.length - b.length
}

/**
 * Compares strings by their UTF-8 bytes without encoding them: that is code
 * point order, which UTF-16 code unit order matches except where a surrogate
 * (U+D800..DFFF, half of a code point above U+FFFF) meets a unit from U+E000
 * on. Only there are the units remapped so that surrogates sort last.
 */
export function compareUtf8 (a: string, b: string): number {
  const length = Math.min(a.length, b.length)
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) {
      return x >= 0xd800 && y >= 0xd800 ? codePointRank(x) - codePointRank(y) : x - y
    }
  }
  return a.length - b.length
}

function codePointRank (unit: number): number {
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000
}

export function bytesEqual (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && compareBytes(a, b) === 0
}

/** Appends to one buffer that doubles as it fills (commands are small, snapshots many MB). */
export class ByteWriter {
  private buffer: Uint8Array
  private written = 0

  constructor (initialBytes = 256) {
    this.buffer = new Uint8Array(initialBytes)
  }

  /** Bytes written so far. */
  get length (): number {
    return this.written
  }

  u8 (value: number): this {
    this.reserve(1)
    this.buffer[this.written++] = value & 0xff
    return this
  }

  varint (value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) { throw new RangeError(`varint out of range: ${value}`) }
    this.reserve(VARINT_BYTES_MAX)
    while (value >= 0x80) {
      this.buffer[this.written++] = (value % 0x80) | 0x80
      value = Math.floor(value / 0x80)
    }
    this.buffer[this.written++] = value
    return this
  }

  raw (bytes: Uint8Array): this {
    this.reserve(bytes.length)
    this.buffer.set(bytes, this.written)
    this.written += bytes.length
    return this
  }

  /** A varint length followed by the bytes. */
  bytes (bytes: Uint8Array): this {
    return this.varint(bytes.length).raw(bytes)
  }

  utf8 (text: string): this {
    // encoded in place behind room for the longest length prefix, then moved
    // up against the prefix once the length is known
    const bytesMax = text.length * 3
    this.reserve(VARINT_BYTES_MAX + bytesMax)
    const start = this.written + VARINT_BYTES_MAX
    const encoded = utf8Encoder.encodeInto(text, this.buffer.subarray(start, start + bytesMax)).written
    this.varint(encoded)
    this.buffer.copyWithin(this.written, start, start + encoded)
    this.written += encoded
    return this
  }

  /** The bytes written so far, without a copy: valid until the next write. */
  view (): Uint8Array {
    return this.buffer.subarray(0, this.written)
  }

  finish (): Uint8Array {
    return this.buffer.slice(0, this.written)
  }

  private reserve (bytes: number): void {
    if (this.written + bytes <= this.buffer.length) { return }
    const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.written + bytes))
    grown.set(this.buffer.subarray(0, this.written))
    this.buffer = grown
  }
}

export class ByteReader {
  private readonly buffer: Uint8Array
  offset = 0

  constructor (buffer: Uint8Array) {
    this.buffer = buffer
  }

  get remaining (): number {
    return this.buffer.length - this.offset
  }

  u8 (what: string): number {
    if (this.remaining < 1) { throw new DecodeError(`truncated before ${what}`) }
    return this.buffer[this.offset++]
  }

  varint (what: string): number {
    let value = 0
    let scale = 1
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      const byte = this.u8(what)
      value += (byte & 0x7f) * scale
      if (value > Number.MAX_SAFE_INTEGER) { throw new DecodeError(`${what} exceeds 2^53 - 1`) }
      if ((byte & 0x80) === 0) {
        if (byte === 0 && i > 0) { throw new DecodeError(`${what} is not in shortest form`) }
        return value
      }
      scale *= 0x80
    }
    throw new DecodeError(`${what} varint is too long`)
  }

  /** Zero-copy view of the next `length` bytes. */
  raw (length: number, what: string): Uint8Array {
    if (length > this.remaining) { throw new DecodeError(`${what} runs past the end (${length} bytes, ${this.remaining} left)`) }
    const view = this.buffer.subarray(this.offset, this.offset + length)
    this.offset += length
    return view
  }

  /** A varint length, checked against `lengthMax`, followed by the bytes. */
  bytes (what: string, lengthMax = Number.MAX_SAFE_INTEGER): Uint8Array {
    const length = this.varint(`${what} length`)
    if (length > lengthMax) { throw new DecodeError(`${what} is ${length} bytes, more than ${lengthMax}`) }
    return this.raw(length, what)
  }

  utf8 (what: string, lengthMax?: number): string {
    return decodeUtf8(this.bytes(what, lengthMax), what)
  }

  end (what: string): void {
    if (this.remaining !== 0) { throw new DecodeError(`${this.remaining} trailing bytes after ${what}`) }
  }
}
