/**
 * Binary encoding of op batches (what a replica ships):
 *
 * - u8 version (1)
 * - varint replica count, each replica id as UTF-8 (<= 1024 bytes)
 * - varint op count, then per op:
 * - insert: u8 0, varint replica, seq, lamport, origin replica + 1 (0: at
 * the start) [, origin seq], text (see text.ts)
 * - delete: u8 1, varint replica, seq, range count, per range replica, seq, length
 *
 * Replicas are indexes into the batch's table. Decoding is bounded by the
 * input (every count is checked against the bytes left) and by the limits
 * in validate.ts, and returns an error rather than throwing.
 */
import { ByteReader, ByteWriter, DecodeError } from '../../kv/codec.ts'
import { readText, writeText } from './text.ts'
import { OP_RANGES_MAX, OP_TEXT_LENGTH_MAX, REPLICA_ID_LENGTH_MAX, validateOp } from './validate.ts'
import type { IdRange, Op, Result } from './types.ts'

const OPS_VERSION = 1
const KIND_INSERT = 0
const KIND_DELETE = 1

export function encodeOps (ops: Op[]): Uint8Array {
  const table = new Map<string, number>()
  const ref = (id: string): number => {
    let index = table.get(id)
    if (index === undefined) {
      index = table.size
      table.set(id, index)
    }
    return index
  }
  const body = new ByteWriter(64)
  body.varint(ops.length)
  for (const op of ops) {
    if (op.kind === 'insert') {
      body.u8(KIND_INSERT).varint(ref(op.replica)).varint(op.seq).varint(op.lamport)
      if (op.origin === null) {
        body.varint(0)
      } else {
        body.varint(ref(op.origin.replica) + 1).varint(op.origin.seq)
      }
      writeText(body, op.text)
    } else {
      body.u8(KIND_DELETE).varint(ref(op.replica)).varint(op.seq).varint(op.ranges.length)
      for (const range of op.ranges) { body.varint(ref(range.replica)).varint(range.seq).varint(range.length) }
    }
  }
  const out = new ByteWriter(body.length + 16 + table.size * 16)
  out.u8(OPS_VERSION).varint(table.size)
  for (const id of table.keys()) { out.utf8(id) }
  return out.raw(body.view()).finish()
}

export function decodeOps (bytes: Uint8Array): Result<Op[]> {
  try {
    const reader = new ByteReader(bytes)
    const version = reader.u8('version')
    if (version !== OPS_VERSION) { return { ok: false, error: `unknown op encoding version ${version}` } }
    const table = readReplicaTable(reader)
    const replica = (): string => {
      const index = reader.varint('replica')
      if (index >= table.length) { throw new DecodeError(`replica ${index} is not in the table of ${table.length}`) }
      return table[index]
    }
    const count = reader.varint('op count')
    if (count > reader.remaining) { throw new DecodeError(`${count} ops in ${reader.remaining} bytes`) }
    const ops: Op[] = []
    for (let i = 0; i < count; i++) {
      const kind = reader.u8('op kind')
      let op: Op
      if (kind === KIND_INSERT) {
        const author = replica()
        const seq = reader.varint('seq')
        const lamport = reader.varint('lamport')
        const originRef = reader.varint('origin')
        if (originRef > table.length) { throw new DecodeError('origin replica is not in the table') }
        const origin = originRef === 0 ? null : { replica: table[originRef - 1], seq: reader.varint('origin seq') }
        const text = readText(reader, 'insert text', OP_TEXT_LENGTH_MAX * 3)
        op = { kind: 'insert', replica: author, seq, lamport, origin, text }
      } else if (kind === KIND_DELETE) {
        const author = replica()
        const seq = reader.varint('seq')
        const rangeCount = reader.varint('range count')
        if (rangeCount > OP_RANGES_MAX || rangeCount * 3 > reader.remaining) { throw new DecodeError(`${rangeCount} ranges do not fit`) }
        const ranges: IdRange[] = []
        for (let r = 0; r < rangeCount; r++) {
          ranges.push({ replica: replica(), seq: reader.varint('range seq'), length: reader.varint('range length') })
        }
        op = { kind: 'delete', replica: author, seq, ranges }
      } else {
        throw new DecodeError(`unknown op kind ${kind}`)
      }
      const invalid = validateOp(op)
      if (invalid !== null) { throw new DecodeError(invalid) }
      ops.push(op)
    }
    reader.end('ops')
    return { ok: true, value: ops }
  } catch (err) {
    if (err instanceof DecodeError) { return { ok: false, error: err.message } }
    throw err
  }
}

/** varint count and the ids; bounded by the bytes left. */
export function readReplicaTable (reader: ByteReader): string[] {
  const count = reader.varint('replica count')
  if (count > reader.remaining) { throw new DecodeError(`${count} replicas in ${reader.remaining} bytes`) }
  const table: string[] = []
  const seen = new Set<string>()
  for (let i = 0; i < count; i++) {
    const id = reader.utf8('replica id', REPLICA_ID_LENGTH_MAX * 4)
    if (id.length === 0 || id.length > REPLICA_ID_LENGTH_MAX || seen.has(id)) { throw new DecodeError('replica id is empty, too long or repeated') }
    seen.add(id)
    table.push(id)
  }
  return table
}
