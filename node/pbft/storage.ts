/**
 * The durable PBFT store of a replica, in `<dataDir>/pbft`:
 *
 * | file            | content                                                               |
 * |-----------------|-----------------------------------------------------------------------|
 * | `log`           | append-only frames (../storage-frames.ts) of encodeRecord(PersistRecord) |
 * | `snapshot`      | SNAPSHOT_MAGIC, a frame of encodeRecord({kind:'stable'}), a frame of the state |
 * | `isolated.json` | the blocklist: `{"version":1,"isolated":[{"peer","reason"}]}`        |
 *
 * append() is a group commit: records handed in while a write is under way
 * go into the next write, and every write ends with an fdatasync before its
 * callers' promises resolve (what a replica signs is durable before it is
 * sent). While the disk syncs fast, the write and the sync are made on the
 * event loop's thread (PBFT_SYNC_APPEND_MS_MAX), which costs less CPU. The
 * snapshot and the blocklist are replaced atomically (temporary file,
 * fsync, rename, directory fsync).
 *
 * Compaction: saveSnapshot() first makes the snapshot durable, then rewrites
 * the log without what the checkpoint makes useless (seqs at or below it,
 * views before the current one), also atomically. A crash between the two
 * leaves the old log beside the new snapshot: load() filters it the same way.
 *
 * Load: a torn tail of the log (the last append cut short by a crash) is cut
 * off at the last whole frame, and the file truncated there so the next
 * append follows a whole frame. A bad frame before the tail, a frame whose
 * checksum holds but that does not decode, or a bad snapshot or blocklist
 * cannot come from a crash: load() throws PbftStorageCorruptionError naming
 * the directory, and the node refuses to start rather than forget what it
 * signed (which could make it equivocate).
 */
import { fdatasyncSync, writeSync, writevSync } from 'node:fs'
import { access, mkdir, open, readFile, rename, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { unreachable } from '../../protocols/common/assert.ts'
import { writeFileAtomic } from '../config.ts'
import { UserError } from '../errors.ts'
import { encodeFrame, readFrames } from '../storage-frames.ts'
import type { PbftStore } from './driver.ts'
import type { Isolation, IsolationReason, PersistRecord, StableCheckpoint } from '../../protocols/pbft/types.ts'
import type { FileHandle } from 'node:fs/promises'

export const PBFT_STORAGE_SUBDIR = 'pbft'
const LOG_FILE = 'log'
const SNAPSHOT_FILE = 'snapshot'
const ISOLATED_FILE = 'isolated.json'
const SNAPSHOT_MAGIC = new TextEncoder().encode('accord-pbft-snapshot-1\n')
const ISOLATED_FORMAT_VERSION = 1
const ISOLATION_REASONS: readonly IsolationReason[] = ['equivocation', 'bad-checkpoint-partial', 'invalid-signature', 'watermark-flood', 'operator']

/** Largest record frame read back (a pre-prepare with a full batch, a view change with its certificates). */
export const PBFT_RECORD_BYTES_MAX = 64 * 1024 * 1024
/** Blocklist entries kept (evidence can name at most the replica set; operators add a few more). */
export const PBFT_ISOLATED_MAX = 4096

/** How records are turned into bytes and back (the core's encodeRecord / decodeRecord). */
export interface RecordCodec {
  encode(record: PersistRecord): Uint8Array
  decode(bytes: Uint8Array): { ok: true, record: PersistRecord } | { ok: false, error: string }
}

export interface PbftFileStoreOptions {
  codec: RecordCodec
  /** Largest snapshot (the KV store's largest snapshot for its limits). */
  snapshotBytesMax: number
  /** Called with the duration and record count of each synced append. */
  onFsync?(durationMs: number, records: number): void
}

/** The PBFT store holds something a crash cannot have written: the node must not start from it. */
export class PbftStorageCorruptionError extends UserError {
  override name = 'PbftStorageCorruptionError'
  readonly dir: string

  constructor (dir: string, problem: string) {
    super(`pbft storage ${dir}: ${problem}. What this replica signed may be lost, so it refuses to start rather than ` +
      `risk signing conflicting messages. To recover: move ${dir} away and restart the node; it then catches up from ` +
      'the other replicas by state transfer (it may be isolated for a view it signed before).')
    this.dir = dir
  }
}

export function pbftStorageDir (dataDir: string): string {
  return join(dataDir, PBFT_STORAGE_SUBDIR)
}

/** The sequence number a record is about, or null for records kept regardless of seq. */
function recordSeq (record: PersistRecord): number | null {
  switch (record.kind) {
    case 'view': return null
    case 'signed': {
      const m = record.message
      return m.type === 'view-change' || m.type === 'new-view' ? null : m.seq
    }
    case 'accepted': return record.prePrepare.seq
    case 'prepared': return record.certificate.prePrepare.seq
    case 'committed': return record.certificate.prePrepare.seq
    case 'stable': return record.checkpoint.seq
    default: return unreachable(record)
  }
}

/** The view of a record that belongs to one (view records and signed view changes / new views), else null. */
function recordView (record: PersistRecord): number | null {
  if (record.kind === 'view') { return record.view }
  if (record.kind === 'signed' && (record.message.type === 'view-change' || record.message.type === 'new-view')) { return record.message.view }
  return null
}

/**
 * The records still useful once `checkpoint` is stable and durable: none
 * about a seq at or below it (the stable record of the checkpoint itself
 * stays, so a restarted core learns it), the last view record, and view
 * changes and new views of that view or later.
 */
export function compactRecords (records: PersistRecord[], checkpoint: StableCheckpoint): PersistRecord[] {
  let view = -1
  let lastViewRecord = -1
  records.forEach((r, i) => { if (r.kind === 'view') { view = r.view; lastViewRecord = i } })
  return records.filter((r, i) => {
    if (r.kind === 'view') { return i === lastViewRecord }
    if (r.kind === 'stable') { return r.checkpoint.seq >= checkpoint.seq }
    const seq = recordSeq(r)
    if (seq !== null) { return seq > checkpoint.seq }
    return (recordView(r) ?? view) >= view
  })
}

interface PendingAppend {
  frames: Uint8Array[]
  records: number
  resolve(): void
  reject(err: unknown): void
}

/**
 * An append whose write and fdatasync took at most this long is followed by
 * one made on the event loop's thread (writevSync, fdatasyncSync): on a fast
 * disk that costs less than half the CPU of the thread pool and promise
 * round trips (measured here: about 75 against 190 µs per append, and a
 * replica appends once or twice per batch), while the thread sleeps in the
 * kernel; a slower one goes back to the thread pool, so that a slow disk does
 * not stall timers and network. Durability is the same either way.
 */
export const PBFT_SYNC_APPEND_MS_MAX = 2

/** Writes every byte of `frames` at the end of `fd` (opened for appending). */
function writeAllSync (fd: number, frames: Uint8Array[]): void {
  let total = 0
  for (const frame of frames) { total += frame.byteLength }
  let written = writevSync(fd, frames)
  if (written >= total) { return }
  const rest = Buffer.concat(frames).subarray(written)
  written = 0
  while (written < rest.byteLength) { written += writeSync(fd, rest, written) }
}

export class PbftFileStore implements PbftStore {
  readonly dir: string
  readonly #options: PbftFileStoreOptions
  #log: FileHandle | null = null
  /** Appends waiting for the write under way. */
  #pending: PendingAppend[] = []
  #writing: Promise<void> | null = null
  /** Snapshot and log rewrites run one at a time, and never during an append write. */
  #exclusive: Promise<void> = Promise.resolve()
  #closed = false
  /** Whether the next append writes and syncs on this thread (see PBFT_SYNC_APPEND_MS_MAX). */
  #syncAppends = true

  private constructor (dir: string, options: PbftFileStoreOptions) {
    this.dir = dir
    this.#options = options
  }

  /** Whether `dir` holds a replica's log or snapshot: the node ran the replica driver there (as a replica or a learner). */
  static async holdsReplicaState (dir: string): Promise<boolean> {
    const present = async (file: string): Promise<boolean> => access(join(dir, file)).then(() => true, () => false)
    return await present(LOG_FILE) || await present(SNAPSHOT_FILE)
  }

  /** Opens (creating) the store in `dir`; call load() before anything else. */
  static async open (dir: string, options: PbftFileStoreOptions): Promise<PbftFileStore> {
    if (await mkdir(dir, { recursive: true, mode: 0o700 }) !== undefined) { await syncDir(dirname(dir)) }
    return new PbftFileStore(dir, options)
  }

  async load (): Promise<{ records: PersistRecord[], snapshot: { checkpoint: StableCheckpoint, data: Uint8Array } | null, isolated: Isolation[] }> {
    const snapshot = await this.#readSnapshot()
    const logPath = join(this.dir, LOG_FILE)
    let created = false
    const bytes = await readFile(logPath).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') { created = true; return new Uint8Array(0) } throw err })
    const read = readFrames(bytes, PBFT_RECORD_BYTES_MAX)
    if (!read.ok) { throw new PbftStorageCorruptionError(this.dir, `log frame at byte ${read.offset}: ${read.error}`) }
    let records: PersistRecord[] = []
    for (const [i, payload] of read.payloads.entries()) {
      const decoded = this.#options.codec.decode(payload)
      if (!decoded.ok) { throw new PbftStorageCorruptionError(this.dir, `log record ${i} does not decode: ${decoded.error}`) }
      records.push(decoded.record)
    }
    this.#log = await open(logPath, 'a+', 0o600)
    // a new file's name must be durable too, or a crash could lose the log however well its data was synced
    if (created) { await syncDir(this.dir) }
    if (read.wholeBytes < bytes.byteLength) {
      // the torn tail of a crashed append: nothing in it was acknowledged
      await this.#log.truncate(read.wholeBytes)
      await this.#log.sync()
    }
    if (snapshot !== null) { records = compactRecords(records, snapshot.checkpoint) }
    return { records, snapshot, isolated: await this.#readIsolated() }
  }

  /** Resolves once `records` are on disk (fdatasync); appends made meanwhile share one write. */
  async append (records: PersistRecord[]): Promise<void> {
    if (records.length === 0) { return }
    this.#checkOpen()
    const frames = records.map(r => encodeFrame(this.#options.codec.encode(r)))
    const done = new Promise<void>((resolve, reject) => { this.#pending.push({ frames, records: records.length, resolve, reject }) })
    this.#writing ??= this.#writeLoop()
    await done
  }

  async saveSnapshot (checkpoint: StableCheckpoint, data: Uint8Array): Promise<void> {
    this.#checkOpen()
    if (data.byteLength > this.#options.snapshotBytesMax) { throw new RangeError(`pbft snapshot of ${data.byteLength} bytes exceeds snapshotBytesMax (${this.#options.snapshotBytesMax})`) }
    await this.#runExclusive(async () => {
      const header = encodeFrame(this.#options.codec.encode({ kind: 'stable', checkpoint }))
      const body = encodeFrame(data)
      const file = new Uint8Array(SNAPSHOT_MAGIC.byteLength + header.byteLength + body.byteLength)
      file.set(SNAPSHOT_MAGIC, 0)
      file.set(header, SNAPSHOT_MAGIC.byteLength)
      file.set(body, SNAPSHOT_MAGIC.byteLength + header.byteLength)
      await writeFileAtomic(join(this.dir, SNAPSHOT_FILE), file)
      await this.#rewriteLog(checkpoint)
    })
  }

  async saveIsolated (isolated: Isolation[]): Promise<void> {
    this.#checkOpen()
    if (isolated.length > PBFT_ISOLATED_MAX) { throw new RangeError(`pbft blocklist of ${isolated.length} entries exceeds ${PBFT_ISOLATED_MAX}`) }
    const body = { version: ISOLATED_FORMAT_VERSION, isolated: isolated.map(({ peer, reason }) => ({ peer, reason })) }
    await writeFileAtomic(join(this.dir, ISOLATED_FILE), JSON.stringify(body, null, 2) + '\n')
  }

  /** Waits for writes under way, then closes the log. */
  async close (): Promise<void> {
    if (this.#closed) { return }
    this.#closed = true
    await this.#writing?.catch(() => {})
    await this.#exclusive.catch(() => {})
    await this.#log?.close()
    this.#log = null
  }

  #checkOpen (): void {
    if (this.#closed) { throw new Error(`pbft storage ${this.dir} is closed`) }
    if (this.#log === null) { throw new Error(`pbft storage ${this.dir}: load() first`) }
  }

  async #writeLoop (): Promise<void> {
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending
        this.#pending = []
        try {
          await this.#runExclusive(async () => {
            const log = this.#log
            if (log === null) { throw new Error(`pbft storage ${this.dir} is closed`) }
            const started = performance.now()
            const frames = batch.flatMap(p => p.frames)
            if (this.#syncAppends) {
              writeAllSync(log.fd, frames)
              fdatasyncSync(log.fd)
            } else {
              await log.writev(frames)
              await log.datasync()
            }
            const took = performance.now() - started
            this.#syncAppends = took <= PBFT_SYNC_APPEND_MS_MAX
            this.#options.onFsync?.(took, batch.reduce((n, p) => n + p.records, 0))
          })
          for (const p of batch) { p.resolve() }
        } catch (err) {
          for (const p of batch) { p.reject(err) }
        }
      }
    } finally {
      this.#writing = null
    }
  }

  async #runExclusive (work: () => Promise<void>): Promise<void> {
    const run = this.#exclusive.then(work, work)
    this.#exclusive = run.catch(() => {})
    await run
  }

  /** Replaces the log with its records still useful above `checkpoint` (atomically), and reopens it. */
  async #rewriteLog (checkpoint: StableCheckpoint): Promise<void> {
    const path = join(this.dir, LOG_FILE)
    const read = readFrames(await readFile(path), PBFT_RECORD_BYTES_MAX)
    if (!read.ok) { throw new PbftStorageCorruptionError(this.dir, `log frame at byte ${read.offset}: ${read.error}`) }
    const records = read.payloads.map((payload, i) => {
      const decoded = this.#options.codec.decode(payload)
      if (!decoded.ok) { throw new PbftStorageCorruptionError(this.dir, `log record ${i} does not decode: ${decoded.error}`) }
      return decoded.record
    })
    const kept = compactRecords(records, checkpoint).map(r => encodeFrame(this.#options.codec.encode(r)))
    const tmp = `${path}.compact.tmp`
    const file = await open(tmp, 'w', 0o600)
    try {
      await file.writev(kept)
      await file.sync()
    } catch (err) {
      await file.close()
      await unlink(tmp).catch(() => {})
      throw err
    }
    await file.close()
    await this.#log?.close()
    this.#log = null
    await rename(tmp, path)
    await syncDir(this.dir)
    this.#log = await open(path, 'a+', 0o600)
  }

  async #readSnapshot (): Promise<{ checkpoint: StableCheckpoint, data: Uint8Array } | null> {
    let bytes: Uint8Array
    try {
      bytes = await readFile(join(this.dir, SNAPSHOT_FILE))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') { return null }
      throw err
    }
    const magic = bytes.subarray(0, SNAPSHOT_MAGIC.byteLength)
    if (magic.byteLength !== SNAPSHOT_MAGIC.byteLength || magic.some((b, i) => b !== SNAPSHOT_MAGIC[i])) {
      throw new PbftStorageCorruptionError(this.dir, 'the snapshot file does not start with the pbft snapshot header')
    }
    const read = readFrames(bytes.subarray(SNAPSHOT_MAGIC.byteLength), Math.max(PBFT_RECORD_BYTES_MAX, this.#options.snapshotBytesMax))
    // written atomically: anything short of two whole frames and nothing else is damage, not a crash
    if (!read.ok || read.payloads.length !== 2 || read.wholeBytes !== bytes.byteLength - SNAPSHOT_MAGIC.byteLength) {
      throw new PbftStorageCorruptionError(this.dir, `the snapshot file is damaged${read.ok ? '' : `: ${read.error}`}`)
    }
    const header = this.#options.codec.decode(read.payloads[0])
    if (!header.ok || header.record.kind !== 'stable') {
      throw new PbftStorageCorruptionError(this.dir, `the snapshot's checkpoint does not decode${header.ok ? '' : `: ${header.error}`}`)
    }
    return { checkpoint: header.record.checkpoint, data: read.payloads[1].slice() }
  }

  async #readIsolated (): Promise<Isolation[]> {
    let text: string
    try {
      text = await readFile(join(this.dir, ISOLATED_FILE), 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') { return [] }
      throw err
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      throw new PbftStorageCorruptionError(this.dir, `${ISOLATED_FILE} is not JSON`)
    }
    const body = parsed as { version?: unknown, isolated?: unknown }
    if (body?.version !== ISOLATED_FORMAT_VERSION || !Array.isArray(body.isolated) || body.isolated.length > PBFT_ISOLATED_MAX) {
      throw new PbftStorageCorruptionError(this.dir, `${ISOLATED_FILE} is not a version ${ISOLATED_FORMAT_VERSION} blocklist`)
    }
    return body.isolated.map((entry: unknown, i: number) => {
      const { peer, reason } = (entry ?? {}) as { peer?: unknown, reason?: unknown }
      if (typeof peer !== 'string' || peer === '' || !ISOLATION_REASONS.includes(reason as IsolationReason)) {
        throw new PbftStorageCorruptionError(this.dir, `${ISOLATED_FILE} entry ${i} is not {peer, reason}`)
      }
      return { peer, reason: reason as IsolationReason }
    })
  }
}

async function syncDir (dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => null)
  if (handle == null) { return }
  try { await handle.sync() } catch { /* some file systems cannot fsync a directory */ } finally { await handle.close() }
}
