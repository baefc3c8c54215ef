/**
 * Durable storage for the Raft core: hard state and log in a write-ahead
 * log of its own (wal.ts), snapshots in files beside it, in the directory
 * `<dataDir>/raft`. Files: layout.ts; record encodings: records.ts; what a
 * damaged log may and may not lose (the durability rule): recovery.ts.
 *
 * Group commit: each persist()/saveSnapshot() is validated and encoded when
 * it is called, then queued. A single writer turns everything queued into
 * ONE frame appended to the log and fdatasync'd once, so writes that arrive
 * while a sync is in flight share the next one. Writes become durable, and
 * their promises resolve, in call order, with one exception:
 *
 * Snapshot staging. A snapshot from saveSnapshot() larger than
 * `snapshotBatchBytes` (a large KV state) would hold every later Ready for
 * as long as it takes to write it. Its file is therefore written ("staged")
 * next to the queue, under a temporary name nothing reads; only when it is
 * synced does its commit (renaming the file into place, and an `S` record in
 * a frame) join the queue, so saveSnapshot() resolves after writes issued
 * later. A snapshot persisted from a Ready meanwhile supersedes the staging
 * (it stops, its file is deleted, saveSnapshot() resolves false). A crash
 * before the commit leaves only a temporary file, which open() deletes. A
 * Ready's own snapshot (the follower waits for it anyway) is written inside
 * the queue, as is a smaller saveSnapshot().
 *
 * After a frame that moved the snapshot is durable, the segments that hold
 * no live entry any more and the older snapshot files are deleted.
 *
 * A write error is fatal: the storage rejects that write, everything queued
 * behind it, a staging in progress, and every later call (the in-memory view
 * of the log may no longer match the disk; restart the node).
 */
import { mkdir, readdir, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { KV_DEFAULTS, kvSnapshotBytesMax } from '../../../protocols/kv/index.ts'
import { RAFT_DEFAULTS } from '../../../protocols/raft/index.ts'
import { createLogger } from '../../logger.ts'
import { StorageCorruptionError, StorageLimitError } from './errors.ts'
import { SNAPSHOT_DIR, TMP_SUFFIX, parseSnapshotName, snapshotPath } from './layout.ts'
import { lockStore } from './lock.ts'
import { migrateFormat1 } from './migrate.ts'
import { ENTRY_RECORD_OVERHEAD_BYTES, SNAPSHOT_RECORD_BYTES, VOTE_BYTES_MAX, encodeEntryRecord, encodeHardStateRecord } from './records.ts'
import { readSnapshotFile, writeSnapshotFile } from './snapshot-file.ts'
import { Wal, syncDir } from './wal.ts'
import { applyOp, planBatch } from './write-plan.ts'
import type { LogState } from './records.ts'
import type { Replay } from './recovery.ts'
import type { EncodedEntry, WriteOp } from './write-plan.ts'
import type { ConfState, Entry, EntryType, HardState, RestoredState, Snapshot } from '../../../protocols/raft/index.ts'

const MIB = 1024 * 1024

export const RAFT_STORAGE_DEFAULTS = {
  /** Largest entry payload; keep it >= RaftConfig.proposalBytesMax. */
  entryBytesMax: RAFT_DEFAULTS.proposalBytesMax,
  /** Largest single write (entries + hard state); also caps a coalesced frame. */
  batchBytesMax: 64 * MIB,
  /** Largest snapshot payload: the largest snapshot of a KV store with KV_DEFAULTS (kvSnapshotBytesMax, 389 MiB). */
  snapshotBytesMax: kvSnapshotBytesMax(KV_DEFAULTS),
  /** Snapshot files are written and checksummed in chunks of this size. */
  snapshotChunkBytes: MIB,
  /** saveSnapshot() stages a snapshot larger than this next to the write queue; a smaller one is written in the queue. */
  snapshotBatchBytes: 4 * MIB,
  /** persist()/saveSnapshot() calls waiting for the writer; more are rejected. */
  pendingWritesMax: 1024,
  /** Write-ahead log segments are preallocated to this size; a frame that does not fit starts a new one. */
  segmentBytes: 64 * MIB
} as const

export type RaftStorageLimits = { -readonly [K in keyof typeof RAFT_STORAGE_DEFAULTS]: number }

/** The part of a pino Logger the storage uses. */
export interface StorageLogger {
  warn(fields: Record<string, unknown>, message: string): void
  /** Receives the report of a migration from format 1 (migrate.ts). */
  info?(fields: Record<string, unknown>, message: string): void
}

export interface RaftStorageOptions extends Partial<RaftStorageLimits> {
  /** Receives the warnings about what open() cut off or deleted, and the report of a migration. Default: JSON lines on stderr. */
  logger?: StorageLogger
  /**
   * Called after every synced frame (for a Prometheus histogram): how long
   * the write + fdatasync took, how many log entries and how many bytes it
   * held. Must not throw (an exception is logged and ignored).
   */
  onFsync?(durationMs: number, entries: number, bytes: number): void
}

/** What a Ready asks to persist (a Ready itself fits this type). */
export interface PersistUpdate {
  hardState?: HardState
  entries?: Entry[]
  /** A snapshot received from the leader: it replaces the whole log. */
  snapshot?: Snapshot
  /**
   * Ready.mustSync. false is honoured only when nothing but the commit index
   * changes (its frame is written but not synced: losing it in a power loss
   * is harmless); default true.
   */
  mustSync?: boolean
}

/** Where a node keeps its Raft storage. */
export function raftStorageDir (dataDir: string): string {
  return join(dataDir, 'raft')
}

/** Frames up to this much larger than batchBytesMax are read back (the hard state and snapshot records of a group). */
const FRAME_SLACK_BYTES = MIB

type CompactOp = Extract<WriteOp, { kind: 'compact' }>

interface Pending {
  op: WriteOp
  resolve(): void
  reject(err: Error): void
}

/** A large snapshot saveSnapshot() is writing next to the queue (see "Snapshot staging" above). */
interface Staging {
  readonly index: number
  /** Why the staging must stop before its next chunk; null while it goes on. */
  stop: 'superseded' | 'closed' | Error | null
  /** The commit write, set once the file is durable and it was queued. */
  commit: WriteOp | null
  /** Resolves once no write of this staging is in flight or will start (all written, or stopped and its file deleted). */
  readonly written: Promise<void>
}

interface StorageInit {
  dir: string
  wal: Wal
  replay: Replay
  snapshot: Snapshot | null
  unlock(): Promise<void>
  limits: RaftStorageLimits
  logger: StorageLogger
  onFsync: RaftStorageOptions['onFsync']
}

export class RaftStorage {
  readonly dir: string
  private readonly wal: Wal
  /** What the disk holds: the state after the last frame written, and where its live entries lie. */
  private readonly replay: Replay
  private readonly unlock: () => Promise<void>
  private readonly limits: RaftStorageLimits
  private readonly logger: StorageLogger
  private readonly onFsync: RaftStorageOptions['onFsync']
  /** What the disk will hold once every queued write is done; new writes are validated against it. */
  private projected: LogState
  private readonly queue: Pending[] = []
  private draining: Promise<void> | null = null
  private lastWrite: Promise<void> = Promise.resolve()
  /** The saveSnapshot() staging in progress, from its start until its call settles. */
  private staging: Staging | null = null
  /** Numbers the temporary snapshot files of this process. */
  private tmpFiles = 0
  /** The snapshot open() read to check it, handed out by the first load() (the node's start reads it next). */
  private openedSnapshot: Snapshot | null
  private failure: Error | null = null
  private closed = false

  /**
   * Opens (or creates) the store in `dir`: takes its lock, migrates a store
   * of format 1 (LevelDB) to this format (migrate.ts), replays the
   * write-ahead log into an index of where each live entry lies (reading
   * one segment at a time), checks the snapshot file, cuts off a torn tail
   * and deletes what no live state refers to (see recovery.ts). Throws
   * StorageCorruptionError, StorageFormatError or UserError (locked by
   * another process) without changing anything else (a format-1 store
   * refused stays as it was).
   */
  static async open (dir: string, options: RaftStorageOptions = {}): Promise<RaftStorage> {
    const limits = resolveLimits(options)
    const logger = options.logger ?? createLogger('warn', { component: 'raft-storage' })
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const unlock = await lockStore(dir)
    let wal: Wal | null = null
    try {
      await migrateFormat1(dir, { limits, logger })
      const opened = await Wal.open(dir, {
        segmentBytes: limits.segmentBytes,
        frameBytesMax: Math.max(limits.batchBytesMax, RAFT_STORAGE_DEFAULTS.batchBytesMax) + FRAME_SLACK_BYTES,
        logger
      })
      wal = opened.wal
      const { state } = opened.replay
      // read now, so that a missing or damaged snapshot refuses the start
      const snapshot = state.snapshotIndex > 0 ? await readSnapshot(dir, state, limits) : null
      await removeStraySnapshots(dir, state.snapshotIndex, logger)
      await wal.release(opened.replay.index.oldestSegment() ?? wal.currentSegment)
      return new RaftStorage({ dir, wal, replay: opened.replay, snapshot, unlock, limits, logger, onFsync: options.onFsync })
    } catch (err) {
      await wal?.close()
      await unlock()
      throw err
    }
  }

  private constructor (init: StorageInit) {
    this.dir = init.dir
    this.wal = init.wal
    this.replay = init.replay
    this.unlock = init.unlock
    this.limits = init.limits
    this.logger = init.logger
    this.onFsync = init.onFsync
    this.projected = copyState(init.replay.state)
    this.openedSnapshot = init.snapshot
  }

  /**
   * What the node restarts from: hard state, snapshot, entries after the
   * snapshot, read from the files (after every queued write is done).
   */
  async load (): Promise<RestoredState> {
    this.checkUsable()
    await this.idle()
    const state = this.replay.state
    const { hardState, snapshotIndex, lastIndex } = state
    const entries = await this.wal.readEntries(this.replay.index, snapshotIndex + 1, lastIndex)
    const restored: RestoredState = { hardState: { ...hardState }, entries }
    const opened = this.openedSnapshot
    this.openedSnapshot = null
    if (snapshotIndex > 0) {
      restored.snapshot = opened?.meta.index === snapshotIndex ? opened : await readSnapshot(this.dir, state, this.limits)
    }
    return restored
  }

  /**
   * Makes one Ready durable: its snapshot (replacing the whole log), then its
   * entries (replacing the log from entries[0].index on), then its hard
   * state, all in one synced frame (shared with other writes queued at the
   * same time). Resolves once durable; only then may the Ready's messages be
   * sent. Rejects, having queued nothing, when the update is malformed, does
   * not fit the log, or exceeds a limit (StorageLimitError).
   *
   * While saveSnapshot() stages a snapshot, entries must start after its
   * index (as if it were stored already), and a Ready's snapshot supersedes
   * it (that saveSnapshot() resolves false).
   */
  async persist (update: PersistUpdate): Promise<void> {
    this.checkUsable()
    const op = this.prepareReady(update)
    if (op === null) {
      // Nothing to write: resolve once everything queued before is durable.
      await this.lastWrite
      return
    }
    await this.enqueue(op)
  }

  /**
   * After RaftNode.compact() returned `snapshot`: stores it and drops the log
   * entries up to its index (entries after it stay). Resolves true once
   * stored. A snapshot larger than `snapshotBatchBytes` is staged next to the
   * write queue (see "Snapshot staging" above): writes issued later go on
   * meanwhile and may resolve first. It resolves false, having stored
   * nothing, when a Ready's snapshot was persisted meanwhile (that one is
   * the node's snapshot now) or the storage was closed meanwhile.
   *
   * Throws, having written nothing, when the snapshot is malformed or does
   * not fit the log (RangeError), or while another saveSnapshot() is staging
   * a snapshot (one at a time; small ones that ride in the queue may overlap
   * each other). Rejects when a write fails (the storage then fails, as
   * persist() does). The snapshot data is read until the call settles: do
   * not modify it meanwhile.
   */
  async saveSnapshot (snapshot: Snapshot): Promise<boolean> {
    this.checkUsable()
    if (this.staging !== null) {
      throw new Error(`saveSnapshot: the snapshot at index ${this.staging.index} is still being saved; ` +
        'call saveSnapshot() again once that call has settled')
    }
    checkSnapshot(snapshot, this.limits)
    const { index, term } = snapshot.meta
    const { snapshotIndex, lastIndex, lastTerm, hardState } = this.projected
    if (index <= snapshotIndex) { throw new RangeError(`saveSnapshot: index ${index} is not after the stored snapshot (${snapshotIndex})`) }
    if (index > hardState.commit) { throw new RangeError(`saveSnapshot: index ${index} is not committed (commit ${hardState.commit})`) }
    if (index === lastIndex && term !== lastTerm) {
      throw new RangeError(`saveSnapshot: term ${term} does not match the term of log entry ${index} (${lastTerm})`)
    }
    this.checkQueueRoom()
    if (snapshot.data.length <= this.limits.snapshotBatchBytes) {
      await this.enqueue({ kind: 'compact', snapshot: { snapshot, staged: null }, sync: true, bytes: SNAPSHOT_RECORD_BYTES })
      return true
    }
    return this.stage(snapshot)
  }

  /**
   * Waits for queued writes, then closes the log and releases the lock. A
   * snapshot being staged stops after its current chunk (its saveSnapshot()
   * resolves false). Later calls reject.
   */
  async close (): Promise<void> {
    if (this.closed) { return }
    this.closed = true
    const staging = this.staging
    if (staging !== null) {
      if (staging.commit === null) { staging.stop ??= 'closed' }
      await staging.written
    }
    await this.idle()
    await this.wal.close()
    await this.unlock()
  }

  // ------------------------------------------------------------ validation

  private checkUsable (): void {
    if (this.closed) { throw new Error(`raft storage ${this.dir} is closed`) }
    if (this.failure !== null) {
      throw new Error(`raft storage ${this.dir} failed and accepts no more writes (restart the node): ${this.failure.message}`,
        { cause: this.failure })
    }
  }

  /** Validates and encodes a Ready's update; null when there is nothing to write. */
  private prepareReady (update: PersistUpdate): WriteOp | null {
    if (typeof update !== 'object' || update === null) { throw new TypeError('persist: update must be an object') }
    const { hardState, entries = [], snapshot, mustSync = true } = update
    if (!Array.isArray(entries)) { throw new TypeError('persist: entries must be an array') }
    if (hardState === undefined && entries.length === 0 && snapshot === undefined) { return null }
    if (hardState !== undefined) { checkHardState(hardState) }
    const encodedEntries = this.encodeEntries(entries, this.logAfterSnapshot(snapshot))
    let bytes = 0
    for (const { record } of encodedEntries) { bytes += record.length }
    if (bytes > this.limits.batchBytesMax) {
      throw new StorageLimitError(`persist: ${entries.length} entries take ${bytes} bytes, more than batchBytesMax ` +
        `(${this.limits.batchBytesMax}); nothing was written`)
    }
    if (snapshot !== undefined) { bytes += SNAPSHOT_RECORD_BYTES }
    if (hardState !== undefined) { bytes += encodeHardStateRecord(hardState).length }
    const sync = mustSync || entries.length > 0 || snapshot !== undefined || changesTermOrVote(this.projected.hardState, hardState)
    const op: WriteOp = { kind: 'ready', entries: encodedEntries, sync, bytes }
    if (hardState !== undefined) { op.hardState = { term: hardState.term, vote: hardState.vote, commit: hardState.commit } }
    if (snapshot !== undefined) { op.snapshot = { snapshot, staged: null } }
    return op
  }

  /**
   * The projected log once a Ready's snapshot (if any) has replaced it. With
   * no snapshot, a snapshot being staged counts as stored: entries may not
   * rewrite what it covers.
   */
  private logAfterSnapshot (snapshot: Snapshot | undefined): LogState {
    const base = this.projected
    if (snapshot === undefined) {
      const staging = this.staging
      return staging?.commit === null && staging.stop === null ? { ...base, snapshotIndex: staging.index } : base
    }
    checkSnapshot(snapshot, this.limits)
    const { index, term } = snapshot.meta
    if (index <= base.snapshotIndex) {
      throw new RangeError(`persist: snapshot index ${index} is not after the stored snapshot (${base.snapshotIndex})`)
    }
    return { ...base, snapshotIndex: index, snapshotTerm: term, lastIndex: index, lastTerm: term }
  }

  private encodeEntries (entries: Entry[], base: LogState): EncodedEntry[] {
    if (entries.length === 0) { return [] }
    const first = entries[0]?.index
    if (!isPositive(first) || first <= base.snapshotIndex || first > base.lastIndex + 1) {
      throw new RangeError(`persist: entries start at ${first}, but the log holds ${base.snapshotIndex + 1}..${base.lastIndex} ` +
        `(the first new entry must be in ${base.snapshotIndex + 1}..${base.lastIndex + 1})`)
    }
    return entries.map((entry, i) => {
      checkEntry(entry, this.limits)
      if (entry.index !== first + i) { throw new RangeError(`persist: entries are not contiguous at index ${entry.index}`) }
      return { entry, record: encodeEntryRecord(entry) }
    })
  }

  // ------------------------------------------------------ snapshot staging

  private nextTmpPath (index: number): string {
    return `${snapshotPath(this.dir, index)}.${process.pid}-${++this.tmpFiles}${TMP_SUFFIX}`
  }

  /** Writes the snapshot's file next to the queue, then queues its commit; false when stopped first (see saveSnapshot). */
  private async stage (snapshot: Snapshot): Promise<boolean> {
    const { promise: written, resolve: writingDone } = Promise.withResolvers<void>()
    const staging: Staging = { index: snapshot.meta.index, stop: null, commit: null, written }
    this.staging = staging
    const tmp = this.nextTmpPath(snapshot.meta.index)
    try {
      let complete: boolean
      try {
        complete = await writeSnapshotFile(tmp, snapshot, this.limits.snapshotChunkBytes, () => staging.stop !== null)
      } catch (err) {
        this.fail(err instanceof Error ? err : new Error(String(err)), [])
        throw err
      } finally {
        writingDone()
      }
      if (staging.stop instanceof Error) { throw staging.stop }
      if (!complete || staging.stop !== null) {
        await unlink(tmp).catch(() => {})
        return false
      }
      const commit: CompactOp = { kind: 'compact', snapshot: { snapshot, staged: tmp }, sync: true, bytes: SNAPSHOT_RECORD_BYTES }
      staging.commit = commit
      // The call was counted against pendingWritesMax when it was made.
      await this.enqueue(commit, false)
      return true
    } finally {
      this.staging = null
    }
  }

  /** A Ready's snapshot supersedes a staging that has not queued its commit yet. */
  private supersedeStaging (op: WriteOp): void {
    if (op.kind === 'ready' && op.snapshot !== undefined && this.staging?.commit === null) { this.staging.stop ??= 'superseded' }
  }

  // ---------------------------------------------------------- group commit

  private checkQueueRoom (): void {
    if (this.queue.length >= this.limits.pendingWritesMax) {
      throw new StorageLimitError(`raft storage: ${this.queue.length} writes are already queued (pendingWritesMax); nothing was written`)
    }
  }

  /** Queues a validated write; throws (queuing nothing) when it cannot be taken. */
  private enqueue (op: WriteOp, checkRoom = true): Promise<void> {
    if (checkRoom) { this.checkQueueRoom() }
    const after = applyOp(this.projected, op)
    if (after.hardState.commit > after.lastIndex) {
      throw new RangeError(`persist: commit ${after.hardState.commit} would be beyond the last log index ${after.lastIndex}`)
    }
    this.supersedeStaging(op)
    this.projected = after
    const { promise, resolve, reject } = Promise.withResolvers<void>()
    this.queue.push({ op, resolve, reject })
    this.lastWrite = promise
    if (this.draining === null) { this.draining = this.drain() }
    return promise
  }

  private async drain (): Promise<void> {
    // Let writes issued in the same tick as the first one join its frame.
    await Promise.resolve()
    try {
      while (this.queue.length > 0) {
        const group = this.takeGroup()
        try {
          await this.writeGroup(group)
          for (const p of group) { p.resolve() }
        } catch (err) {
          this.fail(err instanceof Error ? err : new Error(String(err)), group)
          return
        }
      }
    } finally {
      this.draining = null
    }
  }

  private async writeGroup (group: Pending[]): Promise<void> {
    const before = copyState(this.replay.state)
    const plan = planBatch(before, group.map(p => p.op))
    if (plan.snapshots.length > 0) {
      for (const { snapshot, staged } of plan.snapshots) {
        let tmp = staged
        if (tmp === null) {
          tmp = this.nextTmpPath(snapshot.meta.index)
          await writeSnapshotFile(tmp, snapshot, this.limits.snapshotChunkBytes)
        }
        await rename(tmp, snapshotPath(this.dir, snapshot.meta.index))
      }
      // the files are in place before a frame names them
      await syncDir(join(this.dir, SNAPSHOT_DIR))
    }
    const started = performance.now()
    const { seq, offset } = await this.wal.append(plan.frame, plan.sync, before)
    if (plan.sync && this.onFsync !== undefined) {
      try {
        this.onFsync(performance.now() - started, plan.entries, plan.frame.length)
      } catch (err) {
        this.logger.warn({ dir: this.dir, err }, 'raft storage: the onFsync hook threw')
      }
    }
    for (const { record, offset: at, bytes } of plan.records) { this.replay.apply(record, { seq, offset: offset + at, bytes }) }
    if (plan.state.snapshotIndex !== before.snapshotIndex) {
      // The frame is durable; this only reclaims space, and open() redoes it after a crash.
      await this.wal.release(this.replay.index.oldestSegment() ?? this.wal.currentSegment)
      await removeStraySnapshots(this.dir, plan.state.snapshotIndex)
    }
  }

  /** The oldest queued writes that fit in one frame (at least one). */
  private takeGroup (): Pending[] {
    let bytes = this.queue[0].op.bytes
    let count = 1
    while (count < this.queue.length && bytes + this.queue[count].op.bytes <= this.limits.batchBytesMax) {
      bytes += this.queue[count].op.bytes
      count++
    }
    return this.queue.splice(0, count)
  }

  private fail (err: Error, group: Pending[]): void {
    this.failure ??= err
    for (const p of group) { p.reject(err) }
    const later = new Error(`raft storage ${this.dir}: an earlier write failed: ${err.message}`, { cause: err })
    for (const p of this.queue.splice(0)) { p.reject(later) }
    if (this.staging?.commit === null) { this.staging.stop = later }
  }

  private async idle (): Promise<void> {
    while (this.draining !== null) { await this.draining }
  }
}

/** The live snapshot's file, checked against the log state. */
async function readSnapshot (dir: string, state: LogState, limits: RaftStorageLimits): Promise<Snapshot> {
  const { snapshotIndex, snapshotTerm } = state
  const read = await readSnapshotFile(snapshotPath(dir, snapshotIndex), snapshotIndex, snapshotTerm, limits.snapshotBytesMax)
  if (typeof read === 'string') { throw new StorageCorruptionError(dir, `the snapshot at index ${snapshotIndex} is unreadable: ${read}`, snapshotIndex) }
  return read
}

function copyState (state: LogState): LogState {
  return { ...state, hardState: { ...state.hardState } }
}

/**
 * Deletes snapshot files other than the live one (older snapshots, a
 * snapshot renamed into place whose frame never came) and, at open (with a
 * logger), temporary files of snapshots being written when the node stopped.
 * Temporary files at run time belong to a staging in progress.
 */
async function removeStraySnapshots (dir: string, snapshotIndex: number, logger?: StorageLogger): Promise<void> {
  const snapDir = join(dir, SNAPSHOT_DIR)
  const stray = (await readdir(snapDir)).filter(name => {
    const index = parseSnapshotName(name)
    return index === null ? logger !== undefined && name.endsWith(TMP_SUFFIX) : index !== snapshotIndex
  })
  if (stray.length === 0) { return }
  logger?.warn({ dir, snapshotIndex, files: stray },
    'raft storage: deleting snapshot files left behind by an interrupted compaction or snapshot install')
  for (const name of stray) { await unlink(join(snapDir, name)) }
  await syncDir(snapDir)
}

function resolveLimits (options: RaftStorageOptions): RaftStorageLimits {
  const limits: RaftStorageLimits = { ...RAFT_STORAGE_DEFAULTS }
  for (const key of Object.keys(RAFT_STORAGE_DEFAULTS) as Array<keyof RaftStorageLimits>) {
    const value = options[key]
    if (value === undefined) { continue }
    if (!Number.isSafeInteger(value) || value < 1) { throw new RangeError(`raft storage: ${key} must be a positive integer, got ${String(value)}`) }
    limits[key] = value
  }
  if (limits.entryBytesMax + ENTRY_RECORD_OVERHEAD_BYTES > limits.batchBytesMax || limits.snapshotChunkBytes > limits.batchBytesMax) {
    throw new RangeError('raft storage: batchBytesMax must hold at least one largest entry and one snapshot chunk')
  }
  return limits
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isPositive = (v: unknown): v is number => isCount(v) && v > 0
const ENTRY_TYPES = new Set<unknown>(['normal', 'conf-change'] satisfies EntryType[])

function changesTermOrVote (old: HardState, next: HardState | undefined): boolean {
  return next !== undefined && (next.term !== old.term || next.vote !== old.vote)
}

function checkHardState (hardState: HardState): void {
  const { term, vote, commit } = hardState ?? {}
  if (!isCount(term) || !isCount(commit) || (vote !== null && (typeof vote !== 'string' || vote.length === 0))) {
    throw new TypeError('persist: hardState must be { term, vote: string | null, commit } with non-negative integers')
  }
  if (vote !== null && Buffer.byteLength(vote) > VOTE_BYTES_MAX) {
    throw new StorageLimitError(`persist: a vote of ${Buffer.byteLength(vote)} bytes is longer than VOTE_BYTES_MAX (${VOTE_BYTES_MAX}); nothing was written`)
  }
}

function checkEntry (entry: Entry, limits: RaftStorageLimits): void {
  if (typeof entry !== 'object' || entry === null || !isPositive(entry.index) || !isPositive(entry.term) ||
    !ENTRY_TYPES.has(entry.type) || !(entry.data instanceof Uint8Array)) {
    throw new TypeError('persist: an entry must be { index, term (positive integers), type, data: Uint8Array }')
  }
  if (entry.data.length > limits.entryBytesMax) {
    throw new StorageLimitError(`persist: entry ${entry.index} has ${entry.data.length} data bytes, more than entryBytesMax ` +
      `(${limits.entryBytesMax}); nothing was written`)
  }
}

function checkSnapshot (snapshot: Snapshot, limits: RaftStorageLimits): void {
  const meta = snapshot?.meta
  if (typeof meta !== 'object' || meta === null || !isPositive(meta.index) || !isPositive(meta.term) ||
    !isConfState(meta.conf) || !(snapshot.data instanceof Uint8Array)) {
    throw new TypeError('snapshot must be { meta: { index, term, conf }, data: Uint8Array }')
  }
  if (snapshot.data.length > limits.snapshotBytesMax) {
    throw new StorageLimitError(`snapshot at index ${meta.index} has ${snapshot.data.length} bytes, more than snapshotBytesMax ` +
      `(${limits.snapshotBytesMax}); nothing was written`)
  }
}

function isConfState (conf: ConfState): boolean {
  const names = (v: unknown): boolean => Array.isArray(v) && v.every(s => typeof s === 'string')
  return typeof conf === 'object' && conf !== null && names(conf.voters) && names(conf.votersOutgoing) &&
    names(conf.learners) && names(conf.learnersNext) && typeof conf.autoLeave === 'boolean'
}
