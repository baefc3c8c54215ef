/**
 * Sessions for writes that bring none (HTTP requests without
 * x-accord-client-id). The KV state machine remembers every session it saw,
 * up to sessionsMax, evicting the least recently used; a fresh session per
 * request made anonymous traffic evict the sessions of clients that manage
 * their own (at 4,000 writes/s, a 10,000-session table turned over in 2.5 s)
 * and filled every snapshot with 10,000 one-shot sessions.
 *
 * Instead a request borrows a session for its whole life (the service's
 * retries across leader changes reuse it, so the write still applies at most
 * once) and gives it back; the next borrower uses the next sequence. A
 * session is never used by two requests at once, so its sequences are
 * proposed in increasing order; when a request gave up while its command was
 * still on its way, that command is either applied before the next sequence
 * or refused as stale after it, never applied twice. The table holds about
 * as many of this node's sessions as it had anonymous writes in flight at
 * once.
 */
import type { ClientSession, KvApplyResult } from '../../protocols/kv/index.ts'

/** Idle sessions kept for reuse; beyond, returned sessions are dropped (the KV table evicts them in time). */
export const SESSION_POOL_IDLE_MAX = 256

export class SessionPool {
  readonly #prefix: string
  readonly #idleMax: number
  #created = 0
  /** Sessions ready to borrow, with the sequence their next command uses. */
  readonly #idle: ClientSession[] = []

  /** `prefix` must be unique to this process run, so sequences never clash with an earlier run's. */
  constructor (prefix: string, idleMax = SESSION_POOL_IDLE_MAX) {
    this.#prefix = prefix
    this.#idleMax = idleMax
  }

  /** Sessions waiting to be borrowed. */
  get idle (): number {
    return this.#idle.length
  }

  /**
   * Runs `write` with a borrowed session and gives it back, whatever the
   * outcome. A session the state machine evicted while it sat idle
   * (sessionsMax newer sessions since) comes back 'session-expired', which
   * applied nothing: the write is tried once more with a fresh session.
   */
  async withSession (write: (session: ClientSession) => Promise<KvApplyResult>): Promise<KvApplyResult> {
    let session = this.borrow()
    try {
      const result = await write(session)
      if (result.ok || result.reason !== 'session-expired') { return result }
      session = this.fresh()
      return await write(session)
    } finally {
      this.giveBack(session)
    }
  }

  /** An idle session, or a new one (sequence 1). */
  borrow (): ClientSession {
    return this.#idle.pop() ?? this.fresh()
  }

  /** A new session, sequence 1 (also for a borrowed one the state machine had evicted). */
  fresh (): ClientSession {
    return { clientId: `${this.#prefix}-${++this.#created}`, sequence: 1 }
  }

  /** Returns a session whose command with `session.sequence` was proposed (or may have been). */
  giveBack (session: ClientSession): void {
    if (this.#idle.length >= this.#idleMax) { return }
    this.#idle.push({ clientId: session.clientId, sequence: session.sequence + 1 })
  }
}
