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

export class ByteWriter {
  private readonly chunks: Uint8Array[] = []
  private readonly scratch: number[] = []
  private length = 0

  u8 (value: number): this {
    this.scratch.push(value & 0xff)
    return this
  }

  varint (value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) { throw new RangeError(`varint out of range: ${value}`) }
    while (value >= 0x80) {
      this.scratch.push((value % 0x80) | 0x80)
      value = Math.floor(value / 0x80)
    }
    this.scratch.push(value)
    return this
  }

  raw (bytes: Uint8Array): this {
    this.flushScratch()
    this.chunks.push(bytes)
    this.length += bytes.length
    return this
  }

  /** A varint length followed by the bytes. */
  bytes (bytes: Uint8Array): this {
    return this.varint(bytes.length).raw(bytes)
  }

  utf8 (text: string): this {
    return this.bytes(encodeUtf8(text))
  }

  finish (): Uint8Array {
    this.flushScratch()
    const out = new Uint8Array(this.length)
    let offset = 0
    for (const chunk of this.chunks) {
      out.set(chunk, offset)
      offset += chunk.length
    }
    return out
  }

  private flushScratch (): void {
    if (this.scratch.length === 0) { return }
    this.chunks.push(Uint8Array.from(this.scratch))
    this.length += this.scratch.length
    this.scratch.length = 0
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
