/**
 * Durable storage for the Raft core: hard state, log and snapshot in LevelDB
 * (classic-level), in a database directory of its own (`<dataDir>/raft`).
 * Key layout and record encodings: layout.ts, records.ts. What a damaged
 * store may and may not lose (the durability rule): recovery.ts.
 *
 * Group commit: each persist()/saveSnapshot() is validated and encoded when
 * it is called, then queued. A single writer turns everything queued into ONE
 * LevelDB batch written with `sync: true` (one fsync), so writes that arrive
 * while a sync is in flight share the next fsync. Writes become durable, and
 * their promises resolve, in call order, with one exception:
 *
 * Snapshot staging. A snapshot from saveSnapshot() that does not fit in one
 * `snapshotBatchBytes` batch (a large KV state) would hold every later Ready
 * for as long as it takes to write it. Its chunks are therefore written
 * ("staged") next to the queue, in synced batches of their own, under the
 * snapshot's own index, where nothing reads them yet; each batch is sealed
 * just before it is written. Only when every chunk is durable does a small
 * commit write (`M` + `H` records) join the queue, so saveSnapshot() resolves
 * after writes issued later. Meanwhile the chunks are spared by the cleanups,
 * and a snapshot persisted from a Ready supersedes the staging (it stops, its
 * chunks are deleted, saveSnapshot() resolves false). A crash before the
 * commit leaves only unreferenced chunks, which open() deletes. A Ready's own
 * snapshot (the follower waits for it anyway) is staged inside the queue.
 *
 * A write error is fatal: the storage rejects that write, everything queued
 * behind it, a staging in progress, and every later call (the in-memory view
 * of the log may no longer match the disk; restart the node).
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { KV_DEFAULTS, kvSnapshotBytesMax } from '../../../protocols/kv/index.ts'
import { RAFT_DEFAULTS } from '../../../protocols/raft/index.ts'
import { UserError } from '../../errors.ts'
import { createLogger } from '../../logger.ts'
import { StorageLimitError } from './errors.ts'
import { SNAPSHOT_META_KEY, chunkKeyRange, entryKey } from './layout.ts'
import { ENTRY_OVERHEAD_BYTES, encodeEntryValue, encodeSnapshotMetaValue } from './records.ts'
import { checkFormat, clearStrays, readStore } from './recovery.ts'
import { applyOp, chunkRunBytes, planBatch, recordBytes, sealChunks, snapshotChunks, splitChunkRun } from './write-plan.ts'
import type { LogState } from './records.ts'
import type { RaftDb, StoreContents } from './recovery.ts'
import type { ChunkRun, EncodedEntry, EncodedSnapshot, KeyValue, WriteOp } from './write-plan.ts'
import type { ConfState, Entry, EntryType, HardState, RestoredState, Snapshot } from '../../../protocols/raft/index.ts'

const MIB = 1024 * 1024

export const RAFT_STORAGE_DEFAULTS = {
  /** Largest entry payload; keep it >= RaftConfig.proposalBytesMax. */
  entryBytesMax: RAFT_DEFAULTS.proposalBytesMax,
  /** Largest single write (entries + hard state + a snapshot small enough to ride along); also caps a coalesced batch. */
  batchBytesMax: 64 * MIB,
  /** Largest snapshot payload: the largest snapshot of a KV store with KV_DEFAULTS (kvSnapshotBytesMax, 389 MiB). */
  snapshotBytesMax: kvSnapshotBytesMax(KV_DEFAULTS),
  /** Snapshot data is stored in chunks of this size. */
  snapshotChunkBytes: MIB,
  /**
   * saveSnapshot() stages a snapshot whose chunk records take more than this
   * next to the write queue, in synced batches of at most this size (at
   * least one chunk each); a smaller one rides in its commit batch.
   */
  snapshotBatchBytes: 4 * MIB,
  /** persist()/saveSnapshot() calls waiting for the writer; more are rejected. */
  pendingWritesMax: 1024
} as const

export type RaftStorageLimits = { -readonly [K in keyof typeof RAFT_STORAGE_DEFAULTS]: number }

/** The part of a pino Logger the storage uses. */
export interface StorageLogger {
  warn(fields: Record<string, unknown>, message: string): void
}

export interface RaftStorageOptions extends Partial<RaftStorageLimits> {
  /** Receives the warnings about records dropped at open. Default: JSON lines on stderr. */
  logger?: StorageLogger
  /**
   * Called after every synced batch (for a Prometheus histogram): how long
   * the write + fsync took, how many log entries and how many bytes it held.
   * Must not throw (an exception is logged and ignored).
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
   * changes (losing that in a crash is harmless); default true.
   */
  mustSync?: boolean
}

/** Where a node keeps its Raft storage. */
export function raftStorageDir (dataDir: string): string {
  return join(dataDir, 'raft')
}

type CompactOp = Extract<WriteOp, { kind: 'compact' }>

interface Pending {
  op: WriteOp
  resolve(): void
  reject(err: Error): void
}

/** A large snapshot saveSnapshot() is writing next to the queue (see "Snapshot staging" above). */
interface Staging {
  readonly index: number
  /** Why the staging must stop before its next batch; null while it goes on. */
  stop: 'superseded' | 'closed' | Error | null
  /** The commit write, set once every chunk is durable and it was queued. */
  commit: WriteOp | null
  /** Resolves once no chunk write of this staging is in flight or will start (all written, or stopped and its chunks deleted). */
  readonly written: Promise<void>
}

interface StorageInit {
  dir: string
  db: RaftDb
  limits: RaftStorageLimits
  logger: StorageLogger
  onFsync: RaftStorageOptions['onFsync']
  contents: StoreContents
}

export class RaftStorage {
  readonly dir: string
  private readonly db: RaftDb
  private readonly limits: RaftStorageLimits
  private readonly logger: StorageLogger
  private readonly onFsync: RaftStorageOptions['onFsync']
  /** What the disk holds: the state after the last completed batch. */
  private durable: LogState
  /** What the disk will hold once every queued write is done; new writes are validated against it. */
  private projected: LogState
  /** What open() read, handed out by the first load() unless a write came first. */
  private opened: RestoredState | null
  private readonly queue: Pending[] = []
  private draining: Promise<void> | null = null
  private lastWrite: Promise<void> = Promise.resolve()
  /** The saveSnapshot() staging in progress, from its start until its call settles. */
  private staging: Staging | null = null
  /** The cleanup of stray records in progress (it never rejects; the writer handles its failure). */
  private cleaning: Promise<void> | null = null
  private failure: Error | null = null
  private closed = false

  /**
   * Opens (or creates) the store in `dir`, verifies all of it and removes
   * records outside the live log (see recovery.ts). Throws
   * StorageCorruptionError, StorageFormatError or UserError (locked by
   * another process) without changing anything.
   */
  static async open (dir: string, options: RaftStorageOptions = {}): Promise<RaftStorage> {
    const limits = resolveLimits(options)
    const logger = options.logger ?? createLogger('warn', { component: 'raft-storage' })
    await mkdir(dir, { recursive: true })
    const db: RaftDb = new ClassicLevel<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' })
    try {
      await db.open()
    } catch (err) {
      const reason = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message
      throw new UserError(`cannot open raft storage ${dir} (is another node using this data dir?): ${reason}`, { cause: err })
    }
    try {
      await checkFormat(db, dir)
      const contents = await readStore(db, dir)
      await removeStrays(db, dir, contents, logger)
      return new RaftStorage({ dir, db, limits, logger, onFsync: options.onFsync, contents })
    } catch (err) {
      await db.close()
      throw err
    }
  }

  private constructor (init: StorageInit) {
    this.dir = init.dir
    this.db = init.db
    this.limits = init.limits
    this.logger = init.logger
    this.onFsync = init.onFsync
    this.durable = this.projected = init.contents.state
    this.opened = init.contents.restored
  }

  /** What the node restarts from: hard state, snapshot, entries after the snapshot. */
  async load (): Promise<RestoredState> {
    this.checkUsable()
    const opened = this.opened
    if (opened !== null) {
      this.opened = null
      return opened
    }
    await this.idle()
    return (await readStore(this.db, this.dir)).restored
  }

  /**
   * Makes one Ready durable: its snapshot (replacing the whole log), then its
   * entries (replacing the log from entries[0].index on), then its hard
   * state, all in one synced batch (shared with other writes queued at the
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
    const { snapshotBatchBytes } = this.limits
    const encoded = this.encodeSnapshot(snapshot, snapshotBatchBytes, snapshotBatchBytes)
    const commit: CompactOp = { kind: 'compact', snapshot: { ...encoded, staged: [] }, sync: true, bytes: snapshotInlineBytes(encoded) }
    if (encoded.staged.length === 0) {
      await this.enqueue(commit)
      return true
    }
    return this.stage(commit, encoded.staged)
  }

  /**
   * Waits for queued writes, then closes the database. A snapshot being
   * staged stops after its current batch (its saveSnapshot() resolves false).
   * Later calls reject.
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
    await this.db.close()
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
    for (const { record: [key, value] } of encodedEntries) { bytes += key.length + value.length }
    if (bytes > this.limits.batchBytesMax) {
      throw new StorageLimitError(`persist: ${entries.length} entries take ${bytes} bytes, more than batchBytesMax ` +
        `(${this.limits.batchBytesMax}); nothing was written`)
    }
    const { batchBytesMax } = this.limits
    const encodedSnapshot = snapshot === undefined ? undefined : this.encodeSnapshot(snapshot, batchBytesMax - bytes, batchBytesMax)
    if (encodedSnapshot !== undefined) { bytes += snapshotInlineBytes(encodedSnapshot) }
    const sync = mustSync || entries.length > 0 || snapshot !== undefined || changesTermOrVote(this.projected.hardState, hardState)
    const op: WriteOp = { kind: 'ready', entries: encodedEntries, sync, bytes }
    if (hardState !== undefined) { op.hardState = { term: hardState.term, vote: hardState.vote, commit: hardState.commit } }
    if (encodedSnapshot !== undefined) { op.snapshot = encodedSnapshot }
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
      const key = entryKey(entry.index)
      return { index: entry.index, term: entry.term, record: [key, encodeEntryValue(key, entry)] }
    })
  }

  /**
   * Describes a snapshot's records: its chunks ride in the commit batch if
   * they fit in `inlineBytesMax`, else they are staged in runs of at most
   * `stagedBatchBytes`. Nothing is sealed here (see sealChunks()).
   */
  private encodeSnapshot (snapshot: Snapshot, inlineBytesMax: number, stagedBatchBytes: number): EncodedSnapshot {
    const { meta: { index, term, conf }, data } = snapshot
    const chunks = snapshotChunks(index, data, this.limits.snapshotChunkBytes)
    const metaValue = encodeSnapshotMetaValue(SNAPSHOT_META_KEY, { index, term, conf, dataBytes: data.length, chunks: chunks.count })
    const inline = chunkRunBytes(chunks) <= inlineBytesMax
    return {
      index,
      term,
      meta: [SNAPSHOT_META_KEY, metaValue],
      inline: inline ? chunks : null,
      staged: inline ? [] : splitChunkRun(chunks, stagedBatchBytes)
    }
  }

  // ------------------------------------------------------ snapshot staging

  /** Writes `runs` next to the queue, then queues `commit`; false when stopped first (see saveSnapshot). */
  private async stage (commit: CompactOp, runs: ChunkRun[]): Promise<boolean> {
    const { promise: written, resolve: writingDone } = Promise.withResolvers<void>()
    const staging: Staging = { index: commit.snapshot.index, stop: null, commit: null, written }
    this.staging = staging
    try {
      try {
        // A cleanup fixes its key ranges when it starts: let one that
        // started before this staging existed finish before writing.
        await this.cleaning
        for (const run of runs) {
          if (staging.stop !== null) { break }
          await this.writeBatch(sealChunks(run), true, 0)
        }
        if (staging.stop === 'superseded' || staging.stop === 'closed') { await this.db.clear(chunkKeyRange(staging.index)) }
      } catch (err) {
        this.fail(err instanceof Error ? err : new Error(String(err)), [])
        throw err
      } finally {
        writingDone()
      }
      if (staging.stop instanceof Error) { throw staging.stop }
      if (staging.stop !== null) { return false }
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

  /**
   * Before a group writes a Ready's snapshot at the index of a (superseded)
   * staging: both use the same chunk keys, so wait until the staging stopped
   * and deleted its chunks.
   */
  private async untilStagingStopped (group: Pending[]): Promise<void> {
    const staging = this.staging
    if (staging !== null && group.some(p => p.op.kind === 'ready' && p.op.snapshot?.index === staging.index)) {
      await staging.written
    }
  }

  /** The staging whose chunks a cleanup after `group` must spare (0: none); its own commit in `group` makes them live. */
  private stagingToSpare (group: Pending[]): number {
    const staging = this.staging
    return staging === null || group.some(p => p.op === staging.commit) ? 0 : staging.index
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
    this.opened = null
    const { promise, resolve, reject } = Promise.withResolvers<void>()
    this.queue.push({ op, resolve, reject })
    this.lastWrite = promise
    if (this.draining === null) { this.draining = this.drain() }
    return promise
  }

  private async drain (): Promise<void> {
    // Let writes issued in the same tick as the first one join its batch.
    await Promise.resolve()
    try {
      while (this.queue.length > 0) {
        const group = this.takeGroup()
        try {
          await this.untilStagingStopped(group)
          const plan = planBatch(this.durable, group.map(p => p.op))
          for (const run of plan.staged) { await this.writeBatch(sealChunks(run), true, 0) }
          await this.writeBatch(plan.records, plan.sync, plan.entries)
          this.durable = plan.state
          const spared = this.stagingToSpare(group)
          for (const p of group) { p.resolve() }
          // The resolved writes are durable already; the cleanup only
          // reclaims space, and open() redoes it after a crash.
          if (plan.needsCleanup) { await this.cleanup(plan.state, spared) }
        } catch (err) {
          this.fail(err instanceof Error ? err : new Error(String(err)), group)
          return
        }
      }
    } finally {
      this.draining = null
    }
  }

  private async cleanup (state: LogState, stagingIndex: number): Promise<void> {
    const cleaning = clearStrays(this.db, state, stagingIndex)
    this.cleaning = cleaning.catch(() => {})
    try {
      await cleaning
    } finally {
      this.cleaning = null
    }
  }

  /** The oldest queued writes that fit in one batch (at least one). */
  private takeGroup (): Pending[] {
    let bytes = this.queue[0].op.bytes
    let count = 1
    while (count < this.queue.length && bytes + this.queue[count].op.bytes <= this.limits.batchBytesMax) {
      bytes += this.queue[count].op.bytes
      count++
    }
    return this.queue.splice(0, count)
  }

  private async writeBatch (records: KeyValue[], sync: boolean, entries: number): Promise<void> {
    const batch = this.db.batch()
    for (const [key, value] of records) { batch.put(key, value) }
    const started = performance.now()
    await batch.write({ sync })
    if (sync && this.onFsync !== undefined) {
      try {
        this.onFsync(performance.now() - started, entries, recordBytes(records))
      } catch (err) {
        this.logger.warn({ dir: this.dir, err }, 'raft storage: the onFsync hook threw')
      }
    }
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

async function removeStrays (db: RaftDb, dir: string, contents: StoreContents, logger: StorageLogger): Promise<void> {
  const { state, strays } = contents
  if (strays.entriesAbove > 0) {
    logger.warn({ dir, lastIndex: state.lastIndex, records: strays.entriesAbove, corrupt: strays.entriesAboveCorrupt },
      'raft storage: truncating log records after the last durable index; no completed write had them in its log, ' +
      'so they were never acknowledged')
  }
  if (strays.entriesBelow > 0 || strays.chunks > 0) {
    logger.warn({ dir, snapshotIndex: state.snapshotIndex, entries: strays.entriesBelow, snapshotChunks: strays.chunks },
      'raft storage: deleting records left behind by an interrupted compaction or snapshot install')
  }
  if (strays.entriesAbove + strays.entriesBelow + strays.chunks > 0) { await clearStrays(db, state) }
}

function resolveLimits (options: RaftStorageOptions): RaftStorageLimits {
  const limits: RaftStorageLimits = { ...RAFT_STORAGE_DEFAULTS }
  for (const key of Object.keys(RAFT_STORAGE_DEFAULTS) as Array<keyof RaftStorageLimits>) {
    const value = options[key]
    if (value === undefined) { continue }
    if (!Number.isSafeInteger(value) || value < 1) { throw new RangeError(`raft storage: ${key} must be a positive integer, got ${String(value)}`) }
    limits[key] = value
  }
  if (limits.entryBytesMax + ENTRY_OVERHEAD_BYTES + 9 > limits.batchBytesMax || limits.snapshotChunkBytes > limits.batchBytesMax) {
    throw new RangeError('raft storage: batchBytesMax must hold at least one largest entry and one snapshot chunk')
  }
  return limits
}

function snapshotInlineBytes (snapshot: EncodedSnapshot): number {
  return (snapshot.inline === null ? 0 : chunkRunBytes(snapshot.inline)) + recordBytes([snapshot.meta])
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
