/**
 * Checksummed frames of the PBFT storage files: `length u32be ‖
 * crc32(payload) u32be ‖ payload`. CRC32 (zlib's, native in Node) for the
 * reasons given in node/raft/storage/records.ts: it detects torn and
 * flipped bytes, fast; the disk is not an adversary.
 *
 * readFrames() tells a torn tail (the last append cut short by a crash:
 * an incomplete header or payload, a frame claiming more bytes than the
 * file has, a last frame whose checksum fails, or zeros) from corruption
 * before it (a bad frame followed by more data), which a crash cannot
 * cause. Payloads are never empty.
 */
import { crc32 } from 'node:zlib'

export const FRAME_HEADER_BYTES = 8

export function encodeFrame (payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength)
  const view = new DataView(frame.buffer)
  view.setUint32(0, payload.byteLength)
  view.setUint32(4, crc32(payload))
  frame.set(payload, FRAME_HEADER_BYTES)
  return frame
}

export type ReadFramesResult =
  /** `payloads` in order; `wholeBytes` is where the last whole frame ends (less than the input's length when the tail is torn). */
  | { ok: true, payloads: Uint8Array[], wholeBytes: number }
  /** A frame that is not the last one fails its checksum or its length: not a torn tail. */
  | { ok: false, offset: number, error: string }

export function readFrames (bytes: Uint8Array, payloadBytesMax: number): ReadFramesResult {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const payloads: Uint8Array[] = []
  let offset = 0
  while (offset < bytes.byteLength) {
    if (bytes.byteLength - offset < FRAME_HEADER_BYTES) { break }
    const length = view.getUint32(offset)
    // no frame is empty: zeros are the unwritten tail of a crashed append
    if (length === 0) {
      if (bytes.subarray(offset).every(b => b === 0)) { break }
      return { ok: false, offset, error: 'empty frame' }
    }
    const end = offset + FRAME_HEADER_BYTES + length
    if (length > payloadBytesMax) {
      // a crash tears the tail, it does not write a wild length before more data
      if (end >= bytes.byteLength) { break }
      return { ok: false, offset, error: `frame of ${length} bytes exceeds the limit of ${payloadBytesMax}` }
    }
    if (end > bytes.byteLength) { break }
    const payload = bytes.subarray(offset + FRAME_HEADER_BYTES, end)
    if (crc32(payload) !== view.getUint32(offset + 4)) {
      if (end === bytes.byteLength) { break }
      return { ok: false, offset, error: 'checksum mismatch' }
    }
    payloads.push(payload)
    offset = end
  }
  return { ok: true, payloads, wholeBytes: offset }
}
