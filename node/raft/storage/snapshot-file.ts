/**
 * Snapshot files (`snap/<index>.snap`, see layout.ts): a frame of CBOR
 * metadata `{ magic, version, index, term, conf }`, then a frame of one
 * marker byte and the snapshot data (frames are never empty, a snapshot's
 * data may be). A file is written under a temporary name in chunks of
 * `chunkBytes`, checksummed chunk by chunk (a 389 MiB snapshot never blocks
 * the event loop in one go), fdatasync'd, and only then renamed into place.
 */
import { open, readFile, unlink } from 'node:fs/promises'
import { crc32 } from 'node:zlib'
import { decode, encode } from 'cborg'
import { FRAME_HEADER_BYTES, encodeFrame, readFrames } from '../../storage-frames.ts'
import { FORMAT_VERSION } from './layout.ts'
import type { ConfState, Snapshot } from '../../../protocols/raft/index.ts'

const SNAPSHOT_MAGIC = 'accord-raft-snapshot'
const DATA_MARKER = 0x44 // 'D'
/** Largest metadata frame read back (a configuration of many members). */
const META_BYTES_MAX = 1024 * 1024

/**
 * Writes `snapshot` to `tmpPath` and syncs it. Between chunks, `stopped()`
 * may end the write: the file is then deleted and false returned.
 */
export async function writeSnapshotFile (tmpPath: string, snapshot: Snapshot, chunkBytes: number, stopped: () => boolean = () => false): Promise<boolean> {
  const { meta: { index, term, conf }, data } = snapshot
  const { voters, votersOutgoing, learners, learnersNext, autoLeave } = conf
  const meta = encodeFrame(encode({ magic: SNAPSHOT_MAGIC, version: FORMAT_VERSION, index, term, conf: { voters, votersOutgoing, learners, learnersNext, autoLeave } }))
  const file = await open(tmpPath, 'w', 0o600)
  let done = false
  try {
    await file.write(meta, 0, meta.length, 0)
    const dataHeader = meta.length
    const marker = Uint8Array.of(DATA_MARKER)
    await file.write(marker, 0, 1, dataHeader + FRAME_HEADER_BYTES)
    let crc = crc32(marker)
    let position = dataHeader + FRAME_HEADER_BYTES + 1
    for (let start = 0; start < data.length; start += chunkBytes) {
      if (stopped()) { return false }
      const chunk = data.subarray(start, start + chunkBytes)
      crc = crc32(chunk, crc)
      await file.write(chunk, 0, chunk.length, position)
      position += chunk.length
    }
    const header = new Uint8Array(FRAME_HEADER_BYTES)
    new DataView(header.buffer).setUint32(0, data.length + 1)
    new DataView(header.buffer).setUint32(4, crc)
    await file.write(header, 0, header.length, dataHeader)
    await file.datasync()
    done = true
    return true
  } finally {
    await file.close()
    if (!done) { await unlink(tmpPath).catch(() => {}) }
  }
}

/** The snapshot in `path`, or why it cannot be read. */
export async function readSnapshotFile (path: string, index: number, term: number, dataBytesMax: number): Promise<Snapshot | string> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'its file is missing' : `its file cannot be read (${(err as Error).message})`
  }
  const read = readFrames(bytes, Math.max(META_BYTES_MAX, dataBytesMax + 1))
  // written whole before it was renamed: anything but two whole frames is damage
  if (!read.ok || read.payloads.length !== 2 || read.wholeBytes !== bytes.length || read.payloads[1][0] !== DATA_MARKER) {
    return `its file is damaged${read.ok ? '' : ` (${read.error} at byte ${read.offset})`}`
  }
  let meta: Record<string, unknown>
  try {
    meta = decode(read.payloads[0]) as Record<string, unknown>
  } catch {
    return 'its metadata does not decode'
  }
  if (meta?.magic !== SNAPSHOT_MAGIC || meta.index !== index || meta.term !== term || !isConfState(meta.conf)) {
    return `its metadata does not match (expected index ${index}, term ${term})`
  }
  const data = read.payloads[1].subarray(1)
  return { meta: { index, term, conf: meta.conf }, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) }
}

function isConfState (conf: unknown): conf is ConfState {
  const names = (v: unknown): boolean => Array.isArray(v) && v.every(s => typeof s === 'string')
  const c = conf as ConfState
  return typeof c === 'object' && c !== null && names(c.voters) && names(c.votersOutgoing) &&
    names(c.learners) && names(c.learnersNext) && typeof c.autoLeave === 'boolean'
}
