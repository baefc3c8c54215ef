/**
 * The RGA text sequence (rga/) as a registry type.
 *
 * A state is a document: an `Rga` that keeps its op history (OpHistory),
 * i.e. the set of ops it has seen (integrated, plus those still waiting in
 * its pending buffer for their dependencies). Join is the union of the op
 * sets: joining b into a applies to a the ops of b that a lacks
 * (`b.opsSince(a.version())`, in causal order) and b's pending ops; an op
 * seen before is a duplicate. So joins are commutative, associative and
 * idempotent in the text, the version vector and the encoding. A delta is
 * a document too: the one op an edit made (waiting in the delta's pending
 * buffer, its origin being elsewhere); `encodeState` ships it as an op
 * batch.
 *
 * Ownership: `Rga` is mutable and the registry's states are values, so
 * `join(a, b)` copies a (snapshot and reload: O(n)) and applies b to the
 * copy; `apply` does not change the state either (it computes the op with
 * `prepareInsert`/`prepareDelete`). A holder that owns its state
 * (`CrdtReplica`, and through it the CRDT service) uses `absorb(a, b)`
 * instead, which applies b to a in place (O(what a lacks)) and returns a;
 * b is only read. Never share one document between two holders.
 *
 * Encoding (the body after the registry's header): the op batch (rga/
 * codec.ts) of the history in (rank, replica, seq) order, then the pending
 * ops by (replica, seq), length-prefixed. Decoding replays it into a new
 * document (O(n) integrations, none buffered) and refuses a batch that does
 * not re-encode to the same bytes, so equal states have equal bytes.
 *
 * Compaction (`compactRgaDoc`): once every live member holds the ops up to
 * a stable version vector, the document collects the tombstones stable
 * under it (Rga.collectStable) and its history drops those ops (its base).
 * A compacted state is encoded as an empty field (its mark), the history's
 * ops after the base, the pending ops, a snapshot of the document (rga/snapshot.ts), then
 * the base; decoding loads the snapshot and takes the ops as its history.
 * Joining stays the union of op sets for every replica at or past the
 * base: the ops it lacks are in the history. A replica behind the base
 * (one that was not a member when the base became stable, or was absent
 * too long) cannot take them as ops: an empty one adopts the document,
 * and one holding ops of its own restarts from the document and re-applies
 * its ops that the document lacks; those that depend on collected
 * tombstones cannot be placed and are dropped (`RgaJoinStats.dropped`).
 *
 * Local ops: `{op: 'insert', index, text}` (text: 1..RGA_INSERT_LENGTH_MAX
 * UTF-16 units, index 0..length), `{op: 'delete', index, length}` (length
 * >= 1, index + length <= length); positions in UTF-16 units; other fields
 * are refused.
 */
import { bytesEqual, DecodeError } from '../kv/codec.ts'
import { compareClocks } from './causal.ts'
import { CRDT_ENCODING_BYTES_MAX } from './codec.ts'
import { readGCounter, writeGCounter } from './g-counter.ts'
import { opOf } from './ops.ts'
import { decodeOps, encodeOps } from './rga/codec.ts'
import { OpHistory, opSize } from './rga/history.ts'
import { Rga } from './rga/rga.ts'
import { encodeRga, loadRga } from './rga/snapshot.ts'
import { REPLICA_ID_LENGTH_MAX } from './rga/validate.ts'
import type { OpRecord } from './ops.ts'
import type { Op, VersionVector } from './rga/types.ts'
import type { CrdtType, MutationEnv, Result } from './types.ts'
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

/** Most UTF-16 units one insert op may carry. */
export const RGA_INSERT_LENGTH_MAX = 65_536

/**
 * The replica id documents are made under. Only their ops' authors matter
 * (the registry's ops name theirs, env.replica): this one never writes.
 */
const DOC_REPLICA = '\u0000registry'

/** A new, empty document that keeps its history. */
export function emptyRgaDoc (): Rga {
  return new Rga(DOC_REPLICA, { history: new OpHistory() })
}

/** Every op `doc` holds: its history in canonical causal order, then its pending ops. */
export function rgaDocOps (doc: Rga): Op[] {
  return [...doc.opsSince(), ...doc.pendingOps()]
}

/** A copy of `doc` (history and pending ops included) that shares nothing mutable with it. */
export function cloneRgaDoc (doc: Rga): Rga {
  const loaded = loadRga(encodeRga(doc), DOC_REPLICA, { history: doc.history?.clone() ?? new OpHistory() })
  if (!loaded.ok) { throw new Error(`rga: a document failed to reload: ${loaded.error}`) }
  for (const op of doc.pendingOps()) { loaded.value.apply(op) }
  return loaded.value
}

/** What joins have dropped since start: ops of a replica behind a compacted base that depend on collected tombstones. */
export const rgaJoinStats = { dropped: 0 }

/**
 * Joins `b` into `a`, changing a (its owner's copy) and returning it. Ops
 * of b that a cannot take (its pending buffer is full, or an op names a
 * unit that is not one) are left out; a later join brings them. When a is
 * behind b's compacted base it cannot take b's ops: the result is then a
 * copy of b with a's own ops re-applied (see Compaction above).
 */
export function absorbRga (a: Rga, b: Rga): Rga {
  if (a === b) { return a }
  const base = b.history?.base
  if (base !== undefined && base.size > 0 && !covers(a.version(), base)) { return restartFrom(b, a) }
  for (const op of b.opsSince(a.version())) { a.apply(op) }
  for (const op of b.pendingOps()) { a.apply(op) }
  return a
}

/**
 * A copy of `b` with the ops of `a` that it lacks: a's own history, in
 * causal order. An op that cannot be placed (it depends on a collected
 * tombstone), and every later op of its replica, which waits for it, are
 * dropped and counted. a's pending ops are others' ops that sync brings
 * again: they go too.
 */
function restartFrom (b: Rga, a: Rga): Rga {
  const restarted = cloneRgaDoc(b)
  const waiting = restarted.takePending()
  for (const op of a.opsSince(restarted.version())) {
    if (!restarted.apply(op).ok) { rgaJoinStats.dropped++ }
  }
  rgaJoinStats.dropped += restarted.takePending().length
  for (const op of waiting) { restarted.apply(op) }
  return restarted
}

/** Whether version `v` holds every op within `base`. */
function covers (v: VersionVector, base: ReadonlyMap<string, number>): boolean {
  const order = compareClocks(v, base)
  return order === 'after' || order === 'equal'
}

/**
 * Collects what is causally stable under `stable` (every live member holds
 * the ops it covers; see Rga.stableFrontier, which computes it): the
 * tombstones within it, and the history's ops within it. Returns the units
 * of tombstone removed.
 */
export function compactRgaDoc (doc: Rga, stable: VersionVector): number {
  const units = doc.collectStable(stable)
  doc.history?.truncate(stable)
  return units
}

export function joinRga (a: Rga, b: Rga): Rga {
  return absorbRga(cloneRgaDoc(a), b)
}

const INSERT_FIELDS = ['op', 'index', 'text']
const DELETE_FIELDS = ['op', 'index', 'length']

function indexField (op: OpRecord, field: string, min: number): Result<number> {
  const value = op[field]
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    return { ok: false, error: `${field} must be ${min === 0 ? 'a non-negative' : 'a positive'} safe integer` }
  }
  return { ok: true, value }
}

/** The delta of a local op: a document holding just that op. */
export function applyRga (state: Rga, op: unknown, env: MutationEnv): Result<Rga> {
  const parsed = opOf(op, 'rga', ['insert', 'delete'])
  if (!parsed.ok) { return parsed }
  if (typeof env.replica !== 'string' || env.replica.length === 0 || env.replica.length > REPLICA_ID_LENGTH_MAX) {
    return { ok: false, error: `replica id must be a string of 1..${REPLICA_ID_LENGTH_MAX} units` }
  }
  const fields = parsed.value.op === 'insert' ? INSERT_FIELDS : DELETE_FIELDS
  const extra = Object.keys(parsed.value).find(k => !fields.includes(k))
  if (extra !== undefined) { return { ok: false, error: `rga ${parsed.value.op} has no field ${JSON.stringify(extra.slice(0, 64))} (fields: ${fields.join(', ')})` } }
  const index = indexField(parsed.value, 'index', 0)
  if (!index.ok) { return index }
  let made: Op | null
  if (parsed.value.op === 'insert') {
    const text = parsed.value.text
    if (typeof text !== 'string' || text.length === 0 || text.length > RGA_INSERT_LENGTH_MAX) {
      return { ok: false, error: `text must be a string of 1..${RGA_INSERT_LENGTH_MAX} UTF-16 units` }
    }
    if (index.value > state.length) { return { ok: false, error: `index ${index.value} is past the end of the text (length ${state.length})` } }
    made = state.prepareInsert(index.value, text, env.replica)
  } else {
    const length = indexField(parsed.value, 'length', 1)
    if (!length.ok) { return length }
    if (index.value + length.value > state.length) {
      return { ok: false, error: `delete of ${length.value} at ${index.value} runs past the end of the text (length ${state.length})` }
    }
    made = state.prepareDelete(index.value, length.value, env.replica)
  }
  if (made === null) { return { ok: false, error: 'the op changes nothing' } }
  const delta = emptyRgaDoc()
  const applied = delta.apply(made)
  return applied.ok ? { ok: true, value: delta } : applied
}

export function writeRga (writer: ByteWriter, state: Rga): void {
  const base = state.history?.base
  if (base === undefined || base.size === 0) {
    writer.bytes(encodeOps(rgaDocOps(state)))
    return
  }
  // an empty first field marks a compacted state (an op batch is never empty)
  writer.bytes(new Uint8Array(0))
  writer.bytes(encodeOps(state.opsSince()))
  writer.bytes(encodeOps(state.pendingOps()))
  writer.bytes(encodeRga(state))
  writeGCounter(writer, base)
}

export function readRga (reader: ByteReader): Rga {
  const first = reader.bytes('rga ops', CRDT_ENCODING_BYTES_MAX)
  // a state with no compacted base: its ops and nothing else
  if (first.byteLength > 0) {
    const doc = emptyRgaDoc()
    applyAll(doc, decodedOps(first))
    checkCanonical(rgaDocOps(doc), first)
    return doc
  }
  const bytes = reader.bytes('rga ops', CRDT_ENCODING_BYTES_MAX)
  const ops = decodedOps(bytes)
  const pendingBytes = reader.bytes('rga pending ops', CRDT_ENCODING_BYTES_MAX)
  const pending = decodedOps(pendingBytes)
  const documentBytes = reader.bytes('rga document', CRDT_ENCODING_BYTES_MAX)
  const base = readGCounter(reader)
  if (base.size === 0) { throw new DecodeError('rga compacted base is empty') }
  const history = new OpHistory()
  history.truncate(base)
  const doc = loadRga(documentBytes, DOC_REPLICA, { history })
  if (!doc.ok) { throw new DecodeError(`rga document: ${doc.error}`) }
  const version = doc.value.version()
  if (!covers(version, base)) { throw new DecodeError('rga compacted base is past the document') }
  for (const op of ops) {
    // the document holds these ops: they are its history after the base
    if (op.seq < (base.get(op.replica) ?? 0) || op.seq + opSize(op) > (version.get(op.replica) ?? 0)) {
      throw new DecodeError(`rga op ${op.replica}:${op.seq} is not between the base and the document's version`)
    }
    history.record(op)
  }
  checkCanonical(doc.value.opsSince(), bytes)
  applyAll(doc.value, pending)
  checkCanonical(doc.value.pendingOps(), pendingBytes)
  return doc.value
}

function decodedOps (bytes: Uint8Array): Op[] {
  const ops = decodeOps(bytes)
  if (!ops.ok) { throw new DecodeError(`rga ops: ${ops.error}`) }
  return ops.value
}

function applyAll (doc: Rga, ops: Op[]): void {
  for (const op of ops) {
    const applied = doc.apply(op)
    if (!applied.ok) { throw new DecodeError(`rga op ${op.replica}:${op.seq}: ${applied.error}`) }
  }
}

function checkCanonical (ops: Op[], bytes: Uint8Array): void {
  if (!bytesEqual(encodeOps(ops), bytes)) { throw new DecodeError('rga ops are not in canonical order') }
}

export const rgaType: CrdtType<Rga> = {
  name: 'rga',
  empty: emptyRgaDoc,
  apply: applyRga,
  join: joinRga,
  absorb: absorbRga,
  value: (state) => state.toString(),
  write: writeRga,
  read: readRga
}
