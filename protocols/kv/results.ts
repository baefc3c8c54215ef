/** What applying a log entry to the KV state machine produced. */
export type KvApplyResult =
  /** noop: an empty entry (a new leader's no-op) */
  | { ok: true, index: number, type: 'noop' | 'put' | 'cas' }
  | { ok: true, index: number, type: 'delete', deleted: boolean }
  /**
   * `current` is the value the cas found (null: absent). A retried command
   * gets its saved result back without `current`: sessions store no values,
   * so their memory stays bounded by sessionsMax x clientIdBytesMax.
   */
  | { ok: false, index: number, reason: 'cas-mismatch', current?: Uint8Array | null }
  | { ok: false, index: number, reason: 'quota-exceeded' }
  /** Rejected before taking effect; the sequence number was not consumed. */
  | { ok: false, index: number, reason: KvRejection, message: string }

export type KvRejection = 'invalid-command' | 'stale-sequence' | 'session-expired'

/**
 * The outcome of a command that took effect (successfully or not), as a
 * session remembers it and returns it to retries. `index` is the entry that
 * applied it.
 */
export type KvSavedResult =
  | { ok: true, index: number, type: 'put' | 'cas' }
  | { ok: true, index: number, type: 'delete', deleted: boolean }
  | { ok: false, index: number, reason: 'cas-mismatch' }
  | { ok: false, index: number, reason: 'quota-exceeded' }

export interface KvSession {
  clientId: string
  /** the last sequence number that took effect */
  sequence: number
  /** the last entry that touched the session (applied or retried): the LRU clock */
  lastIndex: number
  result: KvSavedResult
}
