/**
 * Shape checks for ops that come from elsewhere (decoded or handed to
 * Rga.apply): an op that fails them is refused with an error, never thrown on.
 */
import type { Op } from './types.ts'

/** Replica ids are at most this many UTF-16 units. */
export const REPLICA_ID_LENGTH_MAX = 256
/** An insert carries at most this many units, a delete at most this many ranges. */
export const OP_TEXT_LENGTH_MAX = 1 << 24
export const OP_RANGES_MAX = 1 << 20

function isReplica (id: unknown): id is string {
  return typeof id === 'string' && id.length > 0 && id.length <= REPLICA_ID_LENGTH_MAX
}

function isCount (n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
}

/** null when `op` is well formed, else what is wrong with it. */
export function validateOp (op: Op): string | null {
  if (typeof op !== 'object' || op === null) { return 'op is not an object' }
  if (!isReplica(op.replica)) { return 'op replica id is not a string of 1 to 256 units' }
  if (!isCount(op.seq)) { return 'op seq is not a non-negative safe integer' }
  if (op.kind === 'insert') {
    if (typeof op.text !== 'string' || op.text.length === 0 || op.text.length > OP_TEXT_LENGTH_MAX) { return 'insert text is empty, too long or not a string' }
    if (!isCount(op.lamport) || !Number.isSafeInteger(op.lamport + op.text.length) || !Number.isSafeInteger(op.seq + op.text.length)) { return 'insert lamport or seq out of range' }
    if (op.origin !== null && (typeof op.origin !== 'object' || !isReplica(op.origin.replica) || !isCount(op.origin.seq))) { return 'insert origin is malformed' }
    if (op.origin !== null && op.origin.replica === op.replica && op.origin.seq >= op.seq) { return 'insert origin is not before the insert' }
    return null
  }
  if (op.kind === 'delete') {
    if (!Array.isArray(op.ranges) || op.ranges.length === 0 || op.ranges.length > OP_RANGES_MAX) { return 'delete ranges are empty or too many' }
    for (const range of op.ranges) {
      if (typeof range !== 'object' || range === null || !isReplica(range.replica) || !isCount(range.seq) || !isCount(range.length) || range.length === 0 || !Number.isSafeInteger(range.seq + range.length)) {
        return 'delete range is malformed'
      }
    }
    return null
  }
  return 'op kind is neither insert nor delete'
}
