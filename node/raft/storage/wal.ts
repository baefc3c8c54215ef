/**
 * The Raft write-ahead log: numbered segment files (layout.ts) of
 * checksummed frames (node/storage-frames.ts), one frame per group commit.
 *
 * Segments are preallocated to `segmentBytes` with ftruncate. Node has no
 * fallocate; on ext4 here a synced 300-byte write into a preallocated file
 * took 0.12 to 0.14 ms against 0.16 to 0.18 ms when it grew the file, and
 * writing the zeros out bought nothing more. A frame that does not fit in
 * the current segment goes to a new one; a frame larger than a segment
 * grows its file.
 *
 * append() writes a frame at the end of the log on the event loop's thread
 * (a copy into the page cache) and, when asked, fdatasyncs it in the thread
 * pool. Not the PBFT store's synchronous fdatasync (PBFT_SYNC_APPEND_MS_MAX
 * in node/pbft/storage.ts): a Raft leader's appends to its followers go out
 * while its own sync runs, and a sync that held the event loop held them
 * back (measured: 1-client p50 4.1 to 5.2 ms against 3.3 ms before, same
 * hour, bench:raft).
 *
 * open() replays the segments one at a time (one segment's bytes in memory
 * at once), keeping only a LogIndex of where each live entry lies;
 * readEntries() reads entries when they are needed. release() deletes the
 * segments that hold no live entry any more (everything in them is in a
 * durable snapshot).
 */
import { writeSync } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { FRAME_HEADER_BYTES, readFrames, sealFrame } from '../../storage-frames.ts'
import { StorageCorruptionError, StorageFormatError } from './errors.ts'
import { FORMAT_VERSION, LEVELDB_BACKUP_DIR, LEVELDB_MARKER_FILE, LOCK_FILE, SNAPSHOT_DIR, TMP_SUFFIX, WAL_DIR, parseSegmentName, segmentPath } from './layout.ts'
import { MalformedRecordError, decodeRecord, encodeHeadRecord } from './records.ts'
import { EMPTY_STATE, ReplayError, Replay } from './recovery.ts'
import type { StorageLogger } from './raft-storage.ts'
import type { LogState } from './records.ts'
import type { LogIndex } from './recovery.ts'
import type { Entry } from '../../../protocols/raft/index.ts'
import type { FileHandle } from 'node:fs/promises'

export interface WalOptions {
  segmentBytes: number
  /** Largest frame payload read back (a larger length is damage). */
  frameBytesMax: number
  logger: StorageLogger
}

export interface WalOpened {
  wal: Wal
  replay: Replay
}

/** fsyncs a directory, so that file creations, renames and deletions in it survive a crash. */
export async function syncDir (dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try { await handle.sync() } finally { await handle.close() }
}

export class Wal {
  readonly dir: string
  private readonly options: WalOptions
  /** Every segment present, oldest first; the last one is written. */
  private readonly segments: number[]
  private file: FileHandle
  /** Where the next frame goes in the current segment. */
  private position: number
  /** Where the current segment's first frame after its head starts. */
  private headEnd: number
  /** The last frame written was not synced. */
  private unsynced = false

  private constructor (dir: string, options: WalOptions, segments: number[], file: FileHandle, position: number, headEnd: number) {
    this.dir = dir
    this.options = options
    this.segments = segments
    this.file = file
    this.position = position
    this.headEnd = headEnd
  }

  get currentSegment (): number { return this.segments[this.segments.length - 1] }

  /**
   * Opens the log in `dir` (created when the directory holds no store),
   * replays it, and cuts off a torn tail. Throws StorageCorruptionError or
   * StorageFormatError having changed nothing else.
   */
  static async open (dir: string, options: WalOptions): Promise<WalOpened> {
    const walDir = join(dir, WAL_DIR)
    const names = await readdir(walDir).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') { return null } throw err })
    const seqs = (names ?? []).map(parseSegmentName).filter((s): s is number => s !== null).sort((a, b) => a - b)
    if (seqs.length === 0) { return Wal.create(dir, options) }
    seqs.forEach((seq, i) => {
      if (i > 0 && seq !== seqs[i - 1] + 1) { throw new StorageCorruptionError(dir, `write-ahead log segment ${seqs[i - 1] + 1} is missing`) }
    })

    let replay: Replay | null = null
    let tail: SegmentTail = { position: 0, headEnd: 0, torn: false, bytes: 0 }
    for (const [i, seq] of seqs.entries()) {
      const scanned = await scanSegment(dir, seq, i === seqs.length - 1, replay, options)
      replay = scanned.replay
      tail = scanned.tail
    }
    if (replay === null) { throw new Error('unreachable: no segment replayed') }
    try { replay.finish() } catch (err) {
      if (err instanceof ReplayError) { throw new StorageCorruptionError(dir, err.message, err.index) }
      throw err
    }
    for (const name of names ?? []) {
      if (name.endsWith(TMP_SUFFIX)) { await unlink(join(walDir, name)) } // a segment whose creation a crash cut short
    }
    const current = seqs[seqs.length - 1]
    const file = await open(segmentPath(dir, current), 'r+')
    try {
      if (tail.torn) {
        // zeros from the end of the last whole frame, the preallocation kept: the next append follows a whole frame
        await file.truncate(tail.position)
        await file.truncate(Math.max(tail.bytes, options.segmentBytes))
        await file.datasync()
      }
    } catch (err) {
      await file.close()
      throw err
    }
    return { wal: new Wal(dir, options, seqs, file, tail.position, tail.headEnd), replay }
  }

  /** A new store: checks the directory holds nothing else, then writes segment 1. */
  private static async create (dir: string, options: WalOptions): Promise<WalOpened> {
    // the backup of a migrated format-1 store stays (the operator deletes it); an empty log is created next to it
    const known = new Set([LOCK_FILE, WAL_DIR, SNAPSHOT_DIR, LEVELDB_BACKUP_DIR])
    const names = await readdir(dir)
    if (names.includes(LEVELDB_MARKER_FILE)) {
      // RaftStorage.open() migrates such a store first (migrate.ts): only a direct Wal.open() gets here
      throw new StorageFormatError(dir, `it holds the LevelDB raft store of an earlier accord (storage format 1), but the write-ahead log reads version ${FORMAT_VERSION}; ` +
        'migrate it first (accord raft migrate)')
    }
    const snapshots = await readdir(join(dir, SNAPSHOT_DIR)).catch(() => [])
    if (snapshots.some(name => !name.endsWith(TMP_SUFFIX))) {
      throw new StorageCorruptionError(dir, `it has snapshot files (${snapshots.slice(0, 3).join(', ')}) but no write-ahead log segment`)
    }
    const others = names.filter(n => !known.has(n))
    if (others.length > 0) {
      throw new StorageFormatError(dir, `it has files but no write-ahead log (${others.slice(0, 3).join(', ')}), so it is not an accord raft store ` +
        '(or is damaged); point accord at another data dir, or move this directory away')
    }
    await mkdir(join(dir, WAL_DIR), { recursive: true, mode: 0o700 })
    await mkdir(join(dir, SNAPSHOT_DIR), { recursive: true, mode: 0o700 })
    await syncDir(dir)
    const { file, headEnd } = await Wal.newSegment(dir, 1, EMPTY_STATE, options.segmentBytes)
    return { wal: new Wal(dir, options, [1], file, headEnd, headEnd), replay: new Replay(EMPTY_STATE) }
  }

  /** Writes segment `seq` with its head, synced, under a temporary name, then renames it into place. */
  private static async newSegment (dir: string, seq: number, state: LogState, segmentBytes: number): Promise<{ file: FileHandle, headEnd: number }> {
    const path = segmentPath(dir, seq)
    const tmp = path + TMP_SUFFIX
    const record = encodeHeadRecord(FORMAT_VERSION, seq, state)
    const frame = new Uint8Array(FRAME_HEADER_BYTES + record.length)
    frame.set(record, FRAME_HEADER_BYTES)
    sealFrame(frame)
    const file = await open(tmp, 'w+', 0o600)
    try {
      await file.truncate(Math.max(segmentBytes, frame.length))
      await file.write(frame, 0, frame.length, 0)
      await file.datasync()
      await rename(tmp, path)
      await syncDir(join(dir, WAL_DIR))
    } catch (err) {
      await file.close()
      throw err
    }
    return { file, headEnd: frame.length }
  }

  /**
   * Appends a sealed frame (FRAME_HEADER_BYTES of header room, see
   * sealFrame) and syncs it when `sync`; `state` is the log state before
   * the frame (a new segment's head). Resolves to where the frame's payload
   * starts.
   */
  async append (frame: Uint8Array, sync: boolean, state: LogState): Promise<{ seq: number, offset: number }> {
    if (this.position > this.headEnd && this.position + frame.length > this.options.segmentBytes) { await this.rotate(state) }
    const position = this.position
    // the write only copies into the page cache: made here, it saves a thread-pool round trip
    for (let written = 0; written < frame.length;) {
      written += writeSync(this.file.fd, frame, written, frame.length - written, position + written)
    }
    if (sync) { await this.file.datasync() }
    this.unsynced = !sync
    this.position += frame.length
    return { seq: this.currentSegment, offset: position + FRAME_HEADER_BYTES }
  }

  private async rotate (state: LogState): Promise<void> {
    // a segment is durable before the next one exists (see recovery.ts)
    if (this.unsynced) { await this.file.datasync() }
    const seq = this.currentSegment + 1
    const { file, headEnd } = await Wal.newSegment(this.dir, seq, state, this.options.segmentBytes)
    const old = this.file
    this.file = file
    this.segments.push(seq)
    this.position = this.headEnd = headEnd
    this.unsynced = false
    await old.close()
  }

  /** Deletes the segments before `seq` (never the current one); their deletion is synced. */
  async release (seq: number): Promise<number> {
    let count = 0
    while (this.segments.length > 1 && this.segments[0] < seq) {
      await unlink(segmentPath(this.dir, this.segments[0]))
      this.segments.shift()
      count++
    }
    if (count > 0) { await syncDir(join(this.dir, WAL_DIR)) }
    return count
  }

  /** Entries from..to (inclusive) as `index` locates them, each with its own copy of its data. */
  async readEntries (index: LogIndex, from: number, to: number): Promise<Entry[]> {
    const entries: Entry[] = []
    let i = from
    while (i <= to) {
      // one read per run of entries in the same segment
      const first = index.get(i)
      if (first === undefined) { throw new RangeError(`raft storage: entry ${i} is not in the log index`) }
      let j = i
      while (j < to && index.get(j + 1)?.seq === first.seq) { j++ }
      const last = index.get(j)!
      const length = last.offset + last.bytes - first.offset
      const bytes = new Uint8Array(length)
      // a handle of its own, also for the current segment: a rotation may close that one meanwhile
      const file = await open(segmentPath(this.dir, first.seq), 'r')
      try {
        for (let read = 0; read < length;) {
          const { bytesRead } = await file.read(bytes, read, length - read, first.offset + read)
          if (bytesRead === 0) { throw new Error(`raft storage: segment ${first.seq} ends before entry ${j}`) }
          read += bytesRead
        }
      } finally {
        await file.close()
      }
      for (let k = i; k <= j; k++) {
        const { record } = decodeRecord(bytes, index.get(k)!.offset - first.offset)
        if (record.kind !== 'entry' || record.entry.index !== k) { throw new Error(`raft storage: the log index points entry ${k} at another record`) }
        entries.push(record.entry)
      }
      i = j + 1
    }
    return entries
  }

  /** Closes the current segment (its last frame's data was synced, or was commit-only). */
  async close (): Promise<void> {
    await this.file.close()
  }
}

/** Where the last segment's frames end, as open() found it. */
interface SegmentTail {
  position: number
  headEnd: number
  torn: boolean
  bytes: number
}

/**
 * Reads segment `seq` whole and replays its frames into `replay` (created
 * from its head when this is the first segment).
 */
async function scanSegment (dir: string, seq: number, last: boolean, previous: Replay | null, options: WalOptions): Promise<{ replay: Replay, tail: SegmentTail }> {
  const bytes = await readFile(segmentPath(dir, seq))
  const problem = (what: string, index: number | null = null): StorageCorruptionError =>
    new StorageCorruptionError(dir, `write-ahead log segment ${seq}: ${what}`, index)
  const read = readFrames(bytes, options.frameBytesMax)
  if (!read.ok) { throw problem(`the frame at byte ${read.offset} is damaged (${read.error}) and more data follows it`) }
  const [headPayload, ...payloads] = read.payloads
  if (headPayload === undefined) { throw problem('it has no whole head frame') }
  let head
  try {
    head = decodeRecord(headPayload, 0).record
  } catch (err) {
    throw problem(`its head does not decode (${(err as Error).message})`)
  }
  if (head.kind !== 'head') { throw problem('it does not start with a head record') }
  if (head.version !== FORMAT_VERSION) {
    throw new StorageFormatError(dir, `it has storage format version ${head.version}, but this accord reads version ${FORMAT_VERSION}; ` +
      `run an accord release that reads version ${head.version}, or remove this node from the cluster, delete ${dir} and add it back as a new member`)
  }
  if (head.seq !== seq) { throw problem(`its head names segment ${head.seq}`) }
  let replay = previous
  try {
    if (replay === null) { replay = new Replay(head.state) } else { replay.checkHead(seq, head.state) }
  } catch (err) {
    throw problem((err as Error).message)
  }
  for (const [f, payload] of payloads.entries()) {
    const frameOffset = read.offsets[f + 1]
    try {
      for (let at = 0; at < payload.length;) {
        const { record, end } = decodeRecord(payload, at)
        replay.apply(record, { seq, offset: frameOffset + at, bytes: end - at })
        at = end
      }
    } catch (err) {
      if (err instanceof MalformedRecordError) { throw problem(`the frame at byte ${frameOffset - FRAME_HEADER_BYTES} does not decode (${err.message})`) }
      if (err instanceof ReplayError) { throw problem(err.message, err.index) }
      throw err
    }
  }
  // readFrames() already looked at what follows the last whole frame (a segment's preallocated zeros are tens of MiB)
  const { torn } = read
  if (torn) {
    if (!last) { throw problem(`it has damaged data after its last whole frame (byte ${read.wholeBytes})`) }
    options.logger.warn({ dir, segment: seq, offset: read.wholeBytes, bytes: bytes.length - read.wholeBytes },
      'raft storage: cutting off a torn write at the end of the write-ahead log; it was never acknowledged')
  }
  const headEnd = read.offsets[1] === undefined ? read.wholeBytes : read.offsets[1] - FRAME_HEADER_BYTES
  return { replay, tail: { position: read.wholeBytes, headEnd, torn, bytes: bytes.length } }
}
