/**
 * The RGA's public shapes: ids, operations and version vectors.
 *
 * A replica is named by a string (a peer id, say). Every operation a replica
 * makes takes the next values of its own sequence counter: an insert of n
 * UTF-16 units takes n (one per unit, the units' ids), a delete takes one.
 * So a replica's operations form a gap-free sequence, and "seen everything
 * up to counter c from replica r" is one number per replica: the version
 * vector.
 */

/** One UTF-16 unit's identity: the replica that inserted it and its counter there. */
export interface Id {
  replica: string
  seq: number
}

/** `length` consecutive ids of one replica, from `seq`. */
export interface IdRange {
  replica: string
  seq: number
  length: number
}

/**
 * Insert `text` right after the unit `origin` (null: at the start), as it
 * was at the author. The units get ids (replica, seq + i) and Lamport
 * timestamps lamport + i, which order concurrent inserts after the same origin.
 */
export interface InsertOp {
  kind: 'insert'
  replica: string
  seq: number
  lamport: number
  origin: Id | null
  text: string
}

/** Delete (tombstone) the units in `ranges`; the op itself takes counter `seq` of `replica`. */
export interface DeleteOp {
  kind: 'delete'
  replica: string
  seq: number
  ranges: IdRange[]
}

export type Op = InsertOp | DeleteOp

/** For each replica, how many of its counters this replica has integrated (its next expected seq). */
export type VersionVector = Map<string, number>

export type { Result } from '../types.ts'

/** What applying a remote op did. */
export type ApplyStatus = 'applied' | 'duplicate' | 'pending'
