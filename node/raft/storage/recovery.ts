/**
 * Reading the Raft store back at start-up, and the durability rule that
 * decides what a damaged store may lose.
 *
 * Facts the rule rests on. Every write is one LevelDB batch with
 * `sync: true`; LevelDB applies a batch atomically, also across a crash (a
 * batch torn by the crash fails LevelDB's own log checksum and is dropped
 * whole). Every batch rewrites the state record (`H`) with the log bounds it
 * leaves behind, so after a crash `H` describes the log exactly as the last
 * batch that reached the disk left it.
 *
 * Protected (never dropped; damage => StorageCorruptionError, nothing
 * written): the format record, the state record (it holds the vote: losing
 * it could let this node vote twice in a term), the snapshot it names, and
 * every entry in (snapshotIndex, lastIndex]. Why all of them, not only up to
 * max(commit, snapshotIndex): an entry up to commit was acknowledged by a
 * quorum, but a follower also acknowledges every entry it appended as soon as
 * the persist that wrote it resolves, and a leader counts its own persisted
 * entries towards commit. So every entry of a completed batch counts as
 * acknowledged. A batch that reached the disk although its sync call never
 * returned (the crash came in between) cannot be told apart from a completed
 * one, so it is protected as well. The entries must be present, pass their
 * checksum, carry their own index, and form a contiguous run whose last term
 * matches the state record.
 *
 * Repaired (deleted with a logged warning, checksum valid or not): `E`
 * records after lastIndex or at/below snapshotIndex, and snapshot chunks of
 * any other snapshot. The last batch that reached the disk does not have them
 * in its live log: either a completed write dropped them on purpose (a newer
 * leader overwrote an uncommitted suffix, a compaction folded them into the
 * snapshot, a snapshot install replaced the log) and the crash came before
 * its cleanup ran, or they are a torn tail that no completed write contains,
 * or they are chunks that saveSnapshot() staged in batches of their own for a
 * snapshot whose commit batch (`M` + `H`) never reached the disk: the node
 * restarts from the previous snapshot, and that snapshot was never reported
 * stored. Either way nothing may rely on them any more.
 *
 * What no rule can see: LevelDB losing a whole synced batch at the very end
 * of its log (a disk that lies about fsync). A batch lost in the middle is
 * caught when a later state record names entries that only it held.
 */
import { StorageCorruptionError, StorageFormatError } from './errors.ts'
import {
  CHUNK_KEYS_END, CHUNK_KEYS_START, ENTRY_KEYS_END, ENTRY_KEYS_START, FORMAT_KEY, FORMAT_VERSION, SNAPSHOT_META_KEY, STATE_KEY,
  chunkKeyRange, entryKey, entryKeyIndex, parseChunkKey
} from './layout.ts'
import {
  decodeEntryValue, decodeFormatValue, decodeSnapshotMetaValue, decodeStateValue, encodeFormatValue, encodeStateValue, openRecord
} from './records.ts'
import type { LogState } from './records.ts'
import type { Entry, RestoredState, Snapshot } from '../../../protocols/raft/index.ts'
import type { ClassicLevel } from 'classic-level'

export type RaftDb = ClassicLevel<Uint8Array, Uint8Array>

export const EMPTY_STATE: LogState = Object.freeze({
  hardState: Object.freeze({ term: 0, vote: null, commit: 0 }),
  snapshotIndex: 0,
  snapshotTerm: 0,
  lastIndex: 0,
  lastTerm: 0
})

/** Records outside the live log, found at open (see "Repaired" above). */
export interface StrayRecords {
  /** `E` records at or below snapshotIndex. */
  entriesBelow: number
  /** `E` records after lastIndex, and how many of them fail their checksum. */
  entriesAbove: number
  entriesAboveCorrupt: number
  /** Snapshot chunks of snapshots other than the current one. */
  chunks: number
}

export interface StoreContents {
  state: LogState
  restored: RestoredState
  strays: StrayRecords
}

/**
 * Checks the format record; an empty directory becomes an empty store (format
 * and state records written in one synced batch).
 */
export async function checkFormat (db: RaftDb, dir: string): Promise<void> {
  const value = await db.get(FORMAT_KEY)
  if (value === undefined) {
    if ((await db.keys({ limit: 1 }).all()).length > 0) {
      throw new StorageFormatError(dir, 'it has data but no format record, so it is not an accord raft store (or is damaged); ' +
        'point accord at another data dir, or move this directory away')
    }
    await db.batch([
      { type: 'put', key: FORMAT_KEY, value: encodeFormatValue(FORMAT_KEY, FORMAT_VERSION) },
      { type: 'put', key: STATE_KEY, value: encodeStateValue(STATE_KEY, EMPTY_STATE) }
    ], { sync: true })
    return
  }
  const version = decodeFormatValue(FORMAT_KEY, value)
  if (version === null) { throw new StorageCorruptionError(dir, 'the format record is corrupt (checksum or content)') }
  if (version !== FORMAT_VERSION) {
    throw new StorageFormatError(dir, `it has storage format version ${version}, but this accord reads version ${FORMAT_VERSION}; ` +
      `run an accord release that reads version ${version}, or remove this node from the cluster, delete ${dir} and add it back as a new member`)
  }
}

/** Reads and verifies the whole live state (format must have been checked). */
export async function readStore (db: RaftDb, dir: string): Promise<StoreContents> {
  const state = await readState(db, dir)
  const snapshot = state.snapshotIndex > 0 ? await readSnapshot(db, dir, state) : undefined
  const entries = await readEntries(db, dir, state)
  const restored: RestoredState = { hardState: { ...state.hardState }, entries }
  if (snapshot !== undefined) { restored.snapshot = snapshot }
  return { state, restored, strays: await countStrays(db, state) }
}

async function readState (db: RaftDb, dir: string): Promise<LogState> {
  const value = await db.get(STATE_KEY)
  if (value === undefined) { throw new StorageCorruptionError(dir, 'the state record (term, vote, commit, log bounds) is missing') }
  const state = decodeStateValue(STATE_KEY, value)
  if (state === null) { throw new StorageCorruptionError(dir, 'the state record (term, vote, commit, log bounds) is corrupt') }
  const { hardState, snapshotIndex, snapshotTerm, lastIndex, lastTerm } = state
  if (snapshotIndex > lastIndex || hardState.commit > lastIndex || (lastIndex === snapshotIndex && lastTerm !== snapshotTerm)) {
    throw new StorageCorruptionError(dir, `the state record is inconsistent (snapshot ${snapshotIndex}/${snapshotTerm}, ` +
      `last ${lastIndex}/${lastTerm}, commit ${hardState.commit})`)
  }
  return state
}

async function readSnapshot (db: RaftDb, dir: string, state: LogState): Promise<Snapshot> {
  const value = await db.get(SNAPSHOT_META_KEY)
  const meta = value === undefined ? null : decodeSnapshotMetaValue(SNAPSHOT_META_KEY, value)
  const index = state.snapshotIndex
  if (meta === null) { throw new StorageCorruptionError(dir, `the metadata of the snapshot at index ${index} is missing or corrupt`, index) }
  if (meta.index !== index || meta.term !== state.snapshotTerm) {
    throw new StorageCorruptionError(dir, `the snapshot metadata (${meta.index}/${meta.term}) does not match the state record ` +
      `(${index}/${state.snapshotTerm})`, index)
  }
  const data = new Uint8Array(meta.dataBytes)
  let chunk = 0
  let offset = 0
  for await (const [key, value] of db.iterator(chunkKeyRange(index))) {
    const body = openRecord(key, value)
    if (parseChunkKey(key)?.chunk !== chunk || body === null || offset + body.length > data.length) {
      throw new StorageCorruptionError(dir, `chunk ${chunk} of the snapshot at index ${index} is missing or corrupt`, index)
    }
    data.set(body, offset)
    offset += body.length
    chunk++
  }
  if (chunk !== meta.chunks || offset !== meta.dataBytes) {
    throw new StorageCorruptionError(dir, `the snapshot at index ${index} is incomplete (${chunk} of ${meta.chunks} chunks, ` +
      `${offset} of ${meta.dataBytes} bytes)`, index)
  }
  return { meta: { index, term: meta.term, conf: meta.conf }, data }
}

async function readEntries (db: RaftDb, dir: string, state: LogState): Promise<Entry[]> {
  const { snapshotIndex, lastIndex } = state
  const entries: Entry[] = []
  if (lastIndex === snapshotIndex) { return entries }
  const missing = (index: number): StorageCorruptionError => new StorageCorruptionError(dir,
    `log entry ${index} is missing (the log must hold every index from ${snapshotIndex + 1} to ${lastIndex})`, index)
  let expected = snapshotIndex + 1
  for await (const [key, value] of db.iterator({ gte: entryKey(expected), lte: entryKey(lastIndex) })) {
    if (entryKeyIndex(key) !== expected) { throw missing(expected) }
    const entry = decodeEntryValue(key, value, expected)
    if (entry === null) { throw new StorageCorruptionError(dir, `log entry ${expected} is corrupt (checksum or header mismatch)`, expected) }
    entries.push(entry)
    expected++
  }
  if (expected !== lastIndex + 1) { throw missing(expected) }
  const last = entries[entries.length - 1]
  if (last.term !== state.lastTerm) {
    throw new StorageCorruptionError(dir, `log entry ${lastIndex} has term ${last.term} but the state record says ${state.lastTerm}`, lastIndex)
  }
  return entries
}

async function countStrays (db: RaftDb, state: LogState): Promise<StrayRecords> {
  const strays: StrayRecords = { entriesBelow: 0, entriesAbove: 0, entriesAboveCorrupt: 0, chunks: 0 }
  strays.entriesBelow = (await db.keys({ gte: ENTRY_KEYS_START, lt: entryKey(state.snapshotIndex + 1) }).all()).length
  for await (const [key, value] of db.iterator({ gt: entryKey(state.lastIndex), lt: ENTRY_KEYS_END })) {
    strays.entriesAbove++
    const index = entryKeyIndex(key)
    if (index === null || decodeEntryValue(key, value, index) === null) { strays.entriesAboveCorrupt++ }
  }
  for (const range of strayChunkRanges(state.snapshotIndex)) {
    strays.chunks += (await db.keys(range).all()).length
  }
  return strays
}

/** Key ranges of every snapshot chunk except those of the snapshots at the `kept` indexes (0: no snapshot). */
export function strayChunkRanges (...kept: number[]): Array<{ gte: Uint8Array, lt: Uint8Array }> {
  const ranges: Array<{ gte: Uint8Array, lt: Uint8Array }> = []
  let from: Uint8Array = CHUNK_KEYS_START
  for (const index of [...new Set(kept)].filter(i => i > 0).sort((a, b) => a - b)) {
    const { gte, lt } = chunkKeyRange(index)
    ranges.push({ gte: from, lt: gte })
    from = lt
  }
  ranges.push({ gte: from, lt: CHUNK_KEYS_END })
  return ranges
}

/**
 * Deletes the records countStrays() found (and anything else outside the
 * live state), except the chunks of the snapshot at `stagingIndex`, which
 * saveSnapshot() is staging (0: none). The key ranges are fixed when the
 * cleanup starts, so a staging must not begin writing while one runs.
 */
export async function clearStrays (db: RaftDb, state: LogState, stagingIndex = 0): Promise<void> {
  await db.clear({ gte: ENTRY_KEYS_START, lt: entryKey(state.snapshotIndex + 1) })
  await db.clear({ gt: entryKey(state.lastIndex), lt: ENTRY_KEYS_END })
  for (const range of strayChunkRanges(state.snapshotIndex, stagingIndex)) { await db.clear(range) }
}
