/**
 * Binary encoding of a whole document (encodeRga) and its decoding into a
 * new replica (loadRga). Items are written in document order, adjacent
 * ones that continue each other (same replica, ids and timestamps following
 * on, both live or both deleted) as one, in columns:
 *
 * - u8 0xa7, u8 version (1)
 * - varint replica count, ids as UTF-8 (the replicas with ops, sorted)
 * - varint version vector entry per replica, varint lamport
 * - varint item count n
 * - replica column: varint run count, runs of (replica index, count)
 * - timestamp column: varint run count, runs of (zigzag(lamport - seq),
 * count); a replica that worked alone has timestamps equal to its seqs:
 * one run
 * - item column, per item: varint length << 2 | deleted << 1 | jump, and
 * when jump is set, where its ids start: expected is where the previous
 * item of the same replica ended; a jump is a varint k < RECENT_ENDS, the
 * k-th most recent earlier expected value (text typed, deleted and retyped
 * interleaves runs, whose ends come back), else RECENT_ENDS +
 * zigzag(seq - expected)
 * - text: the live items' text concatenated (see text.ts: packed ASCII,
 * UTF-8 or WTF-8)
 *
 * Tombstones are lengths only (no text, no deleter); a loaded replica knows
 * they were deleted within the saved version vector (Rga.loadedVersion).
 * Decoding checks every count against the bytes left, ids against the
 * version vector, that no two items share an id, and that the text has the
 * live length; it returns an error rather than throwing.
 */
import { ByteReader, ByteWriter, DecodeError } from '../../kv/codec.ts'
import { readReplicaTable } from './codec.ts'
import { Bucket, Item } from './item.ts'
import { Rga } from './rga.ts'
import { readText, writeText } from './text.ts'
import type { RgaOptions } from './rga.ts'
import type { Result } from './types.ts'

const MAGIC = 0xa7
const SNAPSHOT_VERSION = 1
/** How many recent ends of items a jump can name (see above). */
const RECENT_ENDS = 16
/** Items per bucket of the id index of a loaded document. */
const BUCKET_FILL = 64

const zigzag = (v: number): number => v >= 0 ? v * 2 : -v * 2 - 1

/** Moves (or adds) `value` to the front of `recent`, keeping RECENT_ENDS. */
function touch (recent: number[], value: number): void {
  const at = recent.indexOf(value)
  if (at >= 0) {
    recent.copyWithin(1, 0, at)
    recent[0] = value
    return
  }
  recent.unshift(value)
  if (recent.length > RECENT_ENDS) { recent.length = RECENT_ENDS }
}
const unzigzag = (z: number): number => z % 2 === 0 ? z / 2 : -(z + 1) / 2

/** Runs of equal values, for the replica and timestamp columns. */
class RunColumn {
  readonly values: number[] = []
  readonly counts: number[] = []

  push (value: number): void {
    const last = this.values.length - 1
    if (last >= 0 && this.values[last] === value) {
      this.counts[last]++
    } else {
      this.values.push(value)
      this.counts.push(1)
    }
  }

  write (writer: ByteWriter): void {
    writer.varint(this.values.length)
    for (let i = 0; i < this.values.length; i++) { writer.varint(this.values[i]).varint(this.counts[i]) }
  }
}

export function encodeRga (doc: Rga): Uint8Array {
  const writer = new ByteWriter(4096)
  writer.u8(MAGIC).u8(SNAPSHOT_VERSION)
  // the table lists the replicas with ops, by id: equal documents encode equally, whatever order they met their replicas in
  const table = doc.replicas.map((_r, i) => i).filter(i => doc.replicas[i].next > 0)
    .sort((x, y) => doc.replicas[x].id < doc.replicas[y].id ? -1 : 1)
  const slot = new Array<number>(doc.replicas.length).fill(-1)
  table.forEach((rep, k) => { slot[rep] = k })
  writer.varint(table.length)
  for (const rep of table) { writer.utf8(doc.replicas[rep].id) }
  for (const rep of table) { writer.varint(doc.replicas[rep].next) }
  writer.varint(doc.lamport)

  const reps = new RunColumn()
  const stamps = new RunColumn()
  const items = new ByteWriter(4096)
  const texts: string[] = []
  const expected = new Array<number>(doc.replicas.length).fill(0)
  const recent = doc.replicas.map((): number[] => [])
  let count = 0
  // the item being written, extended while the next continues it
  let rep = -1
  let seq = 0
  let lam = 0
  let len = 0
  let deleted = false
  const flush = (): void => {
    if (rep < 0) { return }
    count++
    reps.push(slot[rep])
    stamps.push(zigzag(lam - seq))
    const jump = seq !== expected[rep]
    items.varint(len * 4 + (deleted ? 2 : 0) + (jump ? 1 : 0))
    if (jump) {
      const k = recent[rep].indexOf(seq)
      items.varint(k >= 0 ? k : RECENT_ENDS + zigzag(seq - expected[rep]))
    }
    touch(recent[rep], expected[rep])
    expected[rep] = seq + len
  }
  for (let c = doc.head as typeof doc.head | null; c !== null; c = c.next) {
    for (const item of c.items) {
      if (item.rep === rep && item.deleted === deleted && item.seq === seq + len && item.lam === lam + len) {
        len += item.len
      } else {
        flush()
        rep = item.rep
        seq = item.seq
        lam = item.lam
        len = item.len
        deleted = item.deleted
      }
      if (!item.deleted) { texts.push(item.text) }
    }
  }
  flush()
  writer.varint(count)
  reps.write(writer)
  stamps.write(writer)
  writer.raw(items.view())
  writeText(writer, texts.join(''))
  return writer.finish()
}

/** Reads `count` values from runs of (value, count), each value checked by `check`. */
function readRuns (reader: ByteReader, what: string, count: number, check: (value: number) => void): number[] {
  const runs = reader.varint(`${what} run count`)
  if (runs > count || runs * 2 > reader.remaining) { throw new DecodeError(`${runs} ${what} runs do not fit`) }
  const values = new Array<number>(count)
  let n = 0
  for (let r = 0; r < runs; r++) {
    const value = reader.varint(what)
    check(value)
    const length = reader.varint(`${what} run length`)
    if (length === 0 || n + length > count) { throw new DecodeError(`${what} runs do not add up to ${count}`) }
    values.fill(value, n, n + length)
    n += length
  }
  if (n !== count) { throw new DecodeError(`${what} runs do not add up to ${count}`) }
  return values
}

/** A new replica `replica` holding the encoded document. */
export function loadRga (bytes: Uint8Array, replica: string, options: RgaOptions = {}): Result<Rga> {
  try {
    return { ok: true, value: decode(bytes, replica, options) }
  } catch (err) {
    if (err instanceof DecodeError) { return { ok: false, error: err.message } }
    throw err
  }
}

function decode (bytes: Uint8Array, replica: string, options: RgaOptions): Rga {
  const reader = new ByteReader(bytes)
  if (reader.u8('magic') !== MAGIC) { throw new DecodeError('not an RGA document') }
  const version = reader.u8('version')
  if (version !== SNAPSHOT_VERSION) { throw new DecodeError(`unknown RGA document version ${version}`) }
  const table = readReplicaTable(reader)
  const next = table.map(() => reader.varint('version vector entry'))
  const lamport = reader.varint('lamport')
  const count = reader.varint('item count')
  if (count > reader.remaining) { throw new DecodeError(`${count} items in ${reader.remaining} bytes`) }
  const reps = readRuns(reader, 'replica', count, value => {
    if (value >= table.length) { throw new DecodeError(`replica ${value} is not in the table of ${table.length}`) }
  })
  const stamps = readRuns(reader, 'timestamp offset', count, () => {})

  const doc = new Rga(replica, options)
  const local = table.map(id => doc.replicaIndex(id))
  const expected = new Array<number>(table.length).fill(0)
  const recent = table.map((): number[] => [])
  const items: Item[] = []
  const byReplica: Item[][] = table.map(() => [])
  const placeholder = new Bucket(0)
  let liveLength = 0
  for (let i = 0; i < count; i++) {
    const header = reader.varint('item')
    const len = Math.floor(header / 4)
    const deleted = Math.floor(header / 2) % 2 === 1
    const rep = reps[i]
    let seq = expected[rep]
    if (header % 2 === 1) {
      const k = reader.varint('seq jump')
      if (k < RECENT_ENDS) {
        if (k >= recent[rep].length) { throw new DecodeError(`item ${i} names recent end ${k} of ${recent[rep].length}`) }
        seq = recent[rep][k]
      } else {
        seq += unzigzag(k - RECENT_ENDS)
      }
    }
    touch(recent[rep], expected[rep])
    const lam = seq + unzigzag(stamps[i])
    if (len === 0 || seq < 0 || seq + len > next[rep] || lam < 0 || lam + len > lamport) {
      throw new DecodeError(`item ${i} has an empty or out-of-range id or timestamp`)
    }
    expected[rep] = seq + len
    const item = new Item(local[rep], seq, lam, len, '', doc.head, placeholder)
    if (deleted) {
      item.deleted = true
    } else {
      liveLength += len
    }
    items.push(item)
    byReplica[rep].push(item)
  }
  // packed ASCII holds 8 characters in 7 bytes; raw() bounds the bytes read
  const text = readText(reader, 'text', reader.remaining * 2)
  reader.end('document')
  if (text.length !== liveLength) { throw new DecodeError(`text has ${text.length} units, the live items ${liveLength}`) }
  let at = 0
  for (const item of items) {
    if (!item.deleted) {
      item.text = text.slice(at, at + item.len)
      at += item.len
    }
  }
  for (let r = 0; r < table.length; r++) {
    const mine = byReplica[r]
    let sorted = true
    for (let i = 1; i < mine.length && sorted; i++) { sorted = mine[i - 1].seq < mine[i].seq }
    if (!sorted) { mine.sort((a, b) => a.seq - b.seq) }
    for (let i = 1; i < mine.length; i++) {
      if (mine[i - 1].seq + mine[i - 1].len > mine[i].seq) { throw new DecodeError(`two items of replica ${table[r]} share ids`) }
    }
    const state = doc.replicas[local[r]]
    state.next = next[r]
    for (let i = 0; i < mine.length; i += BUCKET_FILL) {
      const bucket = new Bucket(mine[i].seq)
      bucket.pieces = mine.slice(i, i + BUCKET_FILL)
      for (const item of bucket.pieces) { item.bucket = bucket }
      state.buckets.push(bucket)
    }
  }
  doc.lamport = lamport
  doc.rebuildChunks(items)
  doc.loadedVersion = doc.version()
  return doc
}
