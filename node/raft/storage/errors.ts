import { UserError } from '../../errors.ts'

const RECOVERY_ADVICE = 'To recover: remove this node from the cluster (through another member), delete DIR, ' +
  'and add the node back as a new member; it then catches up from the leader.'

/**
 * Data that may have been acknowledged to the cluster is unreadable. The node
 * must not start: silently losing an acknowledged entry (or a vote) can break
 * Raft's safety, so the operator has to replace this member.
 */
export class StorageCorruptionError extends UserError {
  override name = 'StorageCorruptionError'
  readonly dir: string
  /** The log index at fault, or null when the record is not an entry. */
  readonly index: number | null

  constructor (dir: string, problem: string, index: number | null = null) {
    super(`raft storage ${dir}: ${problem}. This data may have been acknowledged to the cluster, so the node refuses ` +
      `to start rather than silently lose it. ${RECOVERY_ADVICE.replace('DIR', dir)}`)
    this.dir = dir
    this.index = index
  }
}

/**
 * The store is intact (every record passes its checksum) but holds a state
 * the node cannot start from: a snapshot that does not restore, or a log
 * the Raft core refuses. Written by a bug or by hand, never by a crash.
 */
export class StoredStateError extends UserError {
  override name = 'StoredStateError'
  readonly dir: string

  constructor (dir: string, problem: string) {
    super(`raft storage ${dir}: ${problem}. The node cannot start from it. To recover: put back a copy of ${dir} ` +
      `saved while the node was stopped, or ${RECOVERY_ADVICE.slice('To recover: '.length).replace('DIR', dir)}`)
    this.dir = dir
  }
}

/** The directory holds a different format version, or is not a Raft store at all. */
export class StorageFormatError extends UserError {
  override name = 'StorageFormatError'
  readonly dir: string

  constructor (dir: string, problem: string) {
    super(`raft storage ${dir}: ${problem}`)
    this.dir = dir
  }
}

/** A write exceeds a configured bound; nothing of it was written. */
export class StorageLimitError extends RangeError {
  override name = 'StorageLimitError'
}
