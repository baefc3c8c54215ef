/**
 * Checksummed frames of accord's append-only files (the PBFT log, the Raft
 * write-ahead log): `length u32be ‖ crc32(payload) u32be ‖ payload`. CRC32
 * (zlib's, native in Node; not CRC-32C, which no installed package provides
 * and which detects the same burst lengths) because it detects torn and
 * flipped bytes, fast (~2.5 GB/s here on large payloads); the disk is not an
 * adversary, so a cryptographic hash would buy nothing.
 *
 * readFrames() tells a torn tail (the last append cut short by a crash:
 * an incomplete header or payload, a frame claiming more bytes than the
 * file has, a last frame whose checksum fails, or zeros) from corruption
 * before it (a bad frame followed by more data), which a crash cannot
 * cause. A bad frame followed by nothing but zeros is a torn tail too: a
 * preallocated file (the Raft WAL's segments) or a file system that grew
 * the file before the data arrived holds zeros where the append did not
 * reach. Payloads are never empty.
 */
import { crc32 } from 'node:zlib'

export const FRAME_HEADER_BYTES = 8

/**
 * Fills in the header of `frame`, whose payload was written at
 * FRAME_HEADER_BYTES (so a caller assembles a frame without a second copy).
 */
export function sealFrame (frame: Uint8Array): Uint8Array {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
  view.setUint32(0, frame.byteLength - FRAME_HEADER_BYTES)
  view.setUint32(4, crc32(frame.subarray(FRAME_HEADER_BYTES)))
  return frame
}

export function encodeFrame (payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength)
  frame.set(payload, FRAME_HEADER_BYTES)
  return sealFrame(frame)
}

export type ReadFramesResult =
  /**
   * `payloads` in order, and the file offset where each starts; `wholeBytes`
   * is where the last whole frame ends (less than the input's length when
   * zeros or a torn tail follow); `torn`: something other than zeros
   * follows the last whole frame.
   */
  | { ok: true, payloads: Uint8Array[], offsets: number[], wholeBytes: number, torn: boolean }
  /** A frame that is not the last one fails its checksum or its length: not a torn tail. */
  | { ok: false, offset: number, error: string }

const ZEROS = new Uint8Array(64 * 1024)

/** Whether every byte is zero (compared 64 KiB at a time: a segment's preallocated tail is tens of MiB). */
export function allZero (bytes: Uint8Array): boolean {
  const zeros = Buffer.from(ZEROS.buffer)
  for (let start = 0; start < bytes.length; start += ZEROS.length) {
    const part = bytes.subarray(start, start + ZEROS.length)
    if (!Buffer.from(part.buffer, part.byteOffset, part.length).equals(zeros.subarray(0, part.length))) { return false }
  }
  return true
}

export function readFrames (bytes: Uint8Array, payloadBytesMax: number): ReadFramesResult {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const payloads: Uint8Array[] = []
  const offsets: number[] = []
  let offset = 0
  /** The frames up to `offset`; `torn`: what follows is not all zeros. */
  const whole = (torn: boolean): ReadFramesResult => ({ ok: true, payloads, offsets, wholeBytes: offset, torn })
  while (offset < bytes.byteLength) {
    if (bytes.byteLength - offset < FRAME_HEADER_BYTES) { return whole(!allZero(bytes.subarray(offset))) }
    const length = view.getUint32(offset)
    // no frame is empty: zeros are the unwritten tail of a crashed append
    if (length === 0) {
      if (allZero(bytes.subarray(offset))) { return whole(false) }
      return { ok: false, offset, error: 'empty frame' }
    }
    // from here on a tail is torn: its length field is not zero
    const end = offset + FRAME_HEADER_BYTES + length
    if (length > payloadBytesMax) {
      // a crash tears the tail, it does not write a wild length before more data
      if (allZero(bytes.subarray(offset + FRAME_HEADER_BYTES))) { return whole(true) }
      return { ok: false, offset, error: `frame of ${length} bytes exceeds the limit of ${payloadBytesMax}` }
    }
    if (end > bytes.byteLength) { return whole(true) }
    const payload = bytes.subarray(offset + FRAME_HEADER_BYTES, end)
    if (crc32(payload) !== view.getUint32(offset + 4)) {
      if (allZero(bytes.subarray(end))) { return whole(true) }
      return { ok: false, offset, error: 'checksum mismatch' }
    }
    payloads.push(payload)
    offsets.push(offset + FRAME_HEADER_BYTES)
    offset = end
  }
  return whole(false)
}
