/**
 * Key layout of the Raft storage database (LevelDB via classic-level, in its
 * own directory `<dataDir>/raft`, separate from the libp2p datastore).
 *
 * Keys are bytes; a one-byte ASCII prefix names the record kind. Numbers in
 * keys are fixed-width big-endian, so LevelDB's bytewise key order is index
 * order and a log range is one iterator seek.
 *
 * | key                                   | value (see records.ts)                                  |
 * |---------------------------------------|---------------------------------------------------------|
 * | `V`                                   | format record: CBOR `{ magic, version }`                |
 * | `H`                                   | state record: CBOR hard state + log bounds              |
 * |                                       | `{ term, vote, commit, snapshotIndex, snapshotTerm,`    |
 * |                                       | `lastIndex, lastTerm }`                                 |
 * | `E` u64be(index)                      | log entry: binary `index u64, term u64, type u8, data`  |
 * | `M`                                   | snapshot metadata: CBOR `{ index, term, conf,`          |
 * |                                       | `dataBytes, chunks }`                                   |
 * | `S` u64be(snapshotIndex) u32be(chunk) | snapshot data chunk (at most `snapshotChunkBytes`)      |
 *
 * Every value starts with a big-endian CRC32 of (key ‖ rest of the value), so
 * a bit flip, a torn value or a record stored under the wrong key is
 * detected. The live log is exactly the entries with snapshotIndex < index
 * <= lastIndex of the state record, and the live snapshot is the one `M`
 * names (its index is the state record's snapshotIndex). `E` records outside
 * that range and `S` chunks of any other snapshot are never read: garbage left
 * by an interrupted cleanup, or chunks staged for a snapshot whose commit
 * batch (the `M` and `H` records) never came (a crash, or a newer snapshot
 * superseded it). open() deletes them; the cleanups at run time delete them
 * too, sparing only the chunks of the snapshot saveSnapshot() is staging at
 * that moment.
 *
 * Changing any of this is a format change: bump FORMAT_VERSION.
 */

export const FORMAT_MAGIC = 'accord-raft-storage'
export const FORMAT_VERSION = 1

const PREFIX_FORMAT = 0x56 // 'V'
const PREFIX_STATE = 0x48 // 'H'
const PREFIX_ENTRY = 0x45 // 'E'
const PREFIX_SNAPSHOT_META = 0x4d // 'M'
const PREFIX_SNAPSHOT_CHUNK = 0x53 // 'S'

const U32 = 0x1_0000_0000

export const FORMAT_KEY = Uint8Array.of(PREFIX_FORMAT)
export const STATE_KEY = Uint8Array.of(PREFIX_STATE)
export const SNAPSHOT_META_KEY = Uint8Array.of(PREFIX_SNAPSHOT_META)

/** All `E` keys sort in [ENTRY_KEYS_START, ENTRY_KEYS_END). */
export const ENTRY_KEYS_START = Uint8Array.of(PREFIX_ENTRY)
export const ENTRY_KEYS_END = Uint8Array.of(PREFIX_ENTRY + 1)
/** All `S` keys sort in [CHUNK_KEYS_START, CHUNK_KEYS_END). */
export const CHUNK_KEYS_START = Uint8Array.of(PREFIX_SNAPSHOT_CHUNK)
export const CHUNK_KEYS_END = Uint8Array.of(PREFIX_SNAPSHOT_CHUNK + 1)

export function writeU64 (view: DataView, offset: number, value: number): void {
  view.setUint32(offset, Math.floor(value / U32))
  view.setUint32(offset + 4, value >>> 0)
}

export function readU64 (view: DataView, offset: number): number {
  return view.getUint32(offset) * U32 + view.getUint32(offset + 4)
}

export function entryKey (index: number): Uint8Array {
  const key = new Uint8Array(9)
  key[0] = PREFIX_ENTRY
  writeU64(new DataView(key.buffer), 1, index)
  return key
}

/** The index of an `E` key, or null if `key` is not an entry key. */
export function entryKeyIndex (key: Uint8Array): number | null {
  if (key.length !== 9 || key[0] !== PREFIX_ENTRY) { return null }
  return readU64(new DataView(key.buffer, key.byteOffset, key.byteLength), 1)
}

/** Bytes of every `S` key. */
export const CHUNK_KEY_BYTES = 13

/** The key of chunk `chunk` of the snapshot at `snapshotIndex`. */
export function chunkKey (snapshotIndex: number, chunk: number): Uint8Array {
  const key = new Uint8Array(CHUNK_KEY_BYTES)
  key[0] = PREFIX_SNAPSHOT_CHUNK
  const view = new DataView(key.buffer)
  writeU64(view, 1, snapshotIndex)
  view.setUint32(9, chunk)
  return key
}

/** The first key after every chunk of the snapshot at `snapshotIndex`. */
export function chunkKeysEnd (snapshotIndex: number): Uint8Array {
  return chunkKey(snapshotIndex + 1, 0)
}

/** Every chunk key of the snapshot at `snapshotIndex`, as a LevelDB range. */
export function chunkKeyRange (snapshotIndex: number): { gte: Uint8Array, lt: Uint8Array } {
  return { gte: chunkKey(snapshotIndex, 0), lt: chunkKeysEnd(snapshotIndex) }
}

export function parseChunkKey (key: Uint8Array): { snapshotIndex: number, chunk: number } | null {
  if (key.length !== CHUNK_KEY_BYTES || key[0] !== PREFIX_SNAPSHOT_CHUNK) { return null }
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength)
  return { snapshotIndex: readU64(view, 1), chunk: view.getUint32(9) }
}
