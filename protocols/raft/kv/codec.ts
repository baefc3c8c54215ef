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

export function bytesEqual (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && compareBytes(a, b) === 0
}

/** Appends to one buffer that doubles as it fills (commands are small, snapshots many MB). */
export class ByteWriter {
  private buffer: Uint8Array
  private length = 0

  constructor (initialBytes = 256) {
    this.buffer = new Uint8Array(initialBytes)
  }

  u8 (value: number): this {
    this.reserve(1)
    this.buffer[this.length++] = value & 0xff
    return this
  }

  varint (value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) { throw new RangeError(`varint out of range: ${value}`) }
    this.reserve(VARINT_BYTES_MAX)
    while (value >= 0x80) {
      this.buffer[this.length++] = (value % 0x80) | 0x80
      value = Math.floor(value / 0x80)
    }
    this.buffer[this.length++] = value
    return this
  }

  raw (bytes: Uint8Array): this {
    this.reserve(bytes.length)
    this.buffer.set(bytes, this.length)
    this.length += bytes.length
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
    const start = this.length + VARINT_BYTES_MAX
    const { written } = utf8Encoder.encodeInto(text, this.buffer.subarray(start, start + bytesMax))
    this.varint(written)
    this.buffer.copyWithin(this.length, start, start + written)
    this.length += written
    return this
  }

  /** The bytes written so far, without a copy: valid until the next write. */
  view (): Uint8Array {
    return this.buffer.subarray(0, this.length)
  }

  finish (): Uint8Array {
    return this.buffer.slice(0, this.length)
  }

  private reserve (bytes: number): void {
    if (this.length + bytes <= this.buffer.length) { return }
    const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.length + bytes))
    grown.set(this.buffer.subarray(0, this.length))
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
    const bytes = this.bytes(what, lengthMax)
    try {
      return utf8Decoder.decode(bytes)
    } catch {
      throw new DecodeError(`${what} is not valid UTF-8`)
    }
  }

  end (what: string): void {
    if (this.remaining !== 0) { throw new DecodeError(`${this.remaining} trailing bytes after ${what}`) }
  }
}
