/**
 * Text as bytes. Positions are UTF-16 units, like JS strings, so an edit
 * can split a surrogate pair and a run can hold a lone surrogate, which
 * UTF-8 cannot carry (TextEncoder would turn it into U+FFFD and replicas
 * would differ). Well-formed text (the usual case) is plain UTF-8; text with
 * a lone surrogate is WTF-8: UTF-8 that also encodes lone surrogates as
 * their 3-byte form. Text that is all ASCII (the editing traces are) is
 * packed 7 bits a character, an eighth smaller. A mode next to the length
 * says which: varint (length << 2 | mode), length in bytes for UTF-8 and
 * WTF-8, in characters for packed ASCII.
 */
import { ByteReader, ByteWriter, DecodeError, decodeUtf8, encodeUtf8 } from '../../kv/codec.ts'

const MODE_UTF8 = 0
const MODE_WTF8 = 1
const MODE_ASCII7 = 2

const NON_ASCII = /[^\u0000-\u007f]/ // eslint-disable-line no-control-regex

/** Writes the mode and length and the bytes (see above). */
export function writeText (writer: ByteWriter, text: string): void {
  if (!NON_ASCII.test(text)) {
    writer.varint(text.length * 4 + MODE_ASCII7).raw(packAscii7(text))
    return
  }
  if (text.isWellFormed()) {
    const bytes = encodeUtf8(text)
    writer.varint(bytes.length * 4 + MODE_UTF8).raw(bytes)
    return
  }
  const bytes = encodeWtf8(text)
  writer.varint(bytes.length * 4 + MODE_WTF8).raw(bytes)
}

/** Reads what writeText wrote; at most `bytesMax` bytes of text. Throws DecodeError. */
export function readText (reader: ByteReader, what: string, bytesMax: number): string {
  const header = reader.varint(`${what} length`)
  const length = Math.floor(header / 4)
  const mode = header % 4
  if (length > bytesMax) { throw new DecodeError(`${what} is ${length} bytes, more than ${bytesMax}`) }
  if (mode === MODE_ASCII7) { return unpackAscii7(reader.raw(Math.ceil(length * 7 / 8), what), length, what) }
  const bytes = reader.raw(length, what)
  if (mode === MODE_UTF8) { return decodeUtf8(bytes, what) }
  if (mode === MODE_WTF8) { return decodeWtf8(bytes, what) }
  throw new DecodeError(`${what} has unknown text mode ${mode}`)
}

function packAscii7 (text: string): Uint8Array {
  const out = new Uint8Array(Math.ceil(text.length * 7 / 8))
  let n = 0
  let acc = 0
  let bits = 0
  for (let i = 0; i < text.length; i++) {
    acc |= text.charCodeAt(i) << bits
    bits += 7
    if (bits >= 8) {
      out[n++] = acc & 0xff
      acc >>>= 8
      bits -= 8
    }
  }
  if (bits > 0) { out[n] = acc }
  return out
}

const asciiDecoder = new TextDecoder('utf-8')

function unpackAscii7 (packed: Uint8Array, length: number, what: string): string {
  const out = new Uint8Array(length)
  let n = 0
  let acc = 0
  let bits = 0
  for (let i = 0; i < packed.length; i++) {
    acc |= packed[i] << bits
    bits += 8
    while (bits >= 7 && n < length) {
      out[n++] = acc & 0x7f
      acc >>>= 7
      bits -= 7
    }
  }
  // the padding of the last byte must be zero: one encoding per text
  if (acc !== 0) { throw new DecodeError(`${what} has stray bits after its packed characters`) }
  return asciiDecoder.decode(out)
}

function encodeWtf8 (text: string): Uint8Array {
  const out = new Uint8Array(text.length * 3)
  let n = 0
  for (let i = 0; i < text.length; i++) {
    let cp = text.charCodeAt(i)
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < text.length) {
      const low = text.charCodeAt(i + 1)
      if (low >= 0xdc00 && low <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00)
        i++
      }
    }
    if (cp < 0x80) {
      out[n++] = cp
    } else if (cp < 0x800) {
      out[n++] = 0xc0 | (cp >> 6)
      out[n++] = 0x80 | (cp & 0x3f)
    } else if (cp < 0x10000) {
      out[n++] = 0xe0 | (cp >> 12)
      out[n++] = 0x80 | ((cp >> 6) & 0x3f)
      out[n++] = 0x80 | (cp & 0x3f)
    } else {
      out[n++] = 0xf0 | (cp >> 18)
      out[n++] = 0x80 | ((cp >> 12) & 0x3f)
      out[n++] = 0x80 | ((cp >> 6) & 0x3f)
      out[n++] = 0x80 | (cp & 0x3f)
    }
  }
  return out.slice(0, n)
}

/** Strict WTF-8: shortest forms only, no encoded surrogate pair (that must be 4 bytes). */
function decodeWtf8 (bytes: Uint8Array, what: string): string {
  const units: number[] = []
  const bad = (): never => { throw new DecodeError(`${what} is not valid WTF-8`) }
  const cont = (i: number): number => {
    if (i >= bytes.length || (bytes[i] & 0xc0) !== 0x80) { bad() }
    return bytes[i] & 0x3f
  }
  let lastHigh = false
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i]
    let cp: number
    if (b < 0x80) {
      cp = b
      i += 1
    } else if (b >= 0xc2 && b < 0xe0) {
      cp = ((b & 0x1f) << 6) | cont(i + 1)
      i += 2
    } else if (b >= 0xe0 && b < 0xf0) {
      cp = ((b & 0x0f) << 12) | (cont(i + 1) << 6) | cont(i + 2)
      if (cp < 0x800) { bad() }
      i += 3
    } else if (b >= 0xf0 && b < 0xf5) {
      cp = ((b & 0x07) << 18) | (cont(i + 1) << 12) | (cont(i + 2) << 6) | cont(i + 3)
      if (cp < 0x10000 || cp > 0x10ffff) { bad() }
      i += 4
    } else {
      return bad()
    }
    const isLow = cp >= 0xdc00 && cp <= 0xdfff
    if (lastHigh && isLow) { bad() }
    lastHigh = cp >= 0xd800 && cp <= 0xdbff
    if (cp >= 0x10000) {
      cp -= 0x10000
      units.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff))
    } else {
      units.push(cp)
    }
  }
  let text = ''
  for (let i = 0; i < units.length; i += 8192) {
    text += String.fromCharCode(...units.slice(i, i + 8192))
  }
  return text
}
