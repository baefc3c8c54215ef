/**
 * The replicated key-value state machine: what every replica applies, in log
 * order, to committed entries. Pure and deterministic: the same entries give
 * the same results, state and snapshot bytes on every replica.
 *
 * Exactly-once (Raft dissertation §6.3): every command carries a client
 * session (clientId, sequence). The session table remembers, per client, the
 * last sequence that took effect and its result. A retry of that sequence
 * gets the saved result back without applying again; an older sequence is
 * rejected as 'stale-sequence'. A session starts with sequence 1; a command
 * from an unknown client with a higher sequence is 'session-expired'.
 *
 * The table holds at most `sessionsMax` sessions. Adding one more evicts the
 * least recently used session, where "used" is measured by the index of the
 * last entry that touched it (never a wall clock), so every replica evicts
 * the same one. Consequence: a client whose session was evicted gets
 * 'session-expired' for every later command, including a very old retry,
 * which is therefore never applied twice; the client must start a new
 * session under a new clientId. The one gap: if a session is evicted while
 * a retry of its *first* command (sequence 1) is still in flight, that retry
 * looks like a new session and is applied again. Sessions that go idle are
 * the first to be evicted, and an evicted session's sequence-1 command was
 * answered long before, so this needs a retry delayed past sessionsMax newer
 * sessions; clients should not retry sequence 1 indefinitely.
 *
 * Commands rejected with 'invalid-command', 'stale-sequence' or
 * 'session-expired' change nothing and do not consume their sequence.
 */
import { assert, unreachable } from '../common/assert.ts'
import { bytesEqual, utf8ByteLength } from './codec.ts'
import { decodeCommand, resolveKvLimits, validateCommand } from './command.ts'
import { KvSnapshotDecoder, KvSnapshotEncoder, encodeSnapshot, nobleSha256 } from './snapshot.ts'
import { newKvTree } from './tree.ts'
import type { KvCommand, KvLimits } from './command.ts'
import type { KvApplyResult, KvRejection, KvSavedResult, KvSession } from './results.ts'
import type { CreateSha256, KvSnapshotState } from './snapshot.ts'
import type { KvTree } from './tree.ts'

export type KvRestoreResult = { ok: true } | { ok: false, error: string }

export interface KvStateMachineOptions {
  /** The SHA-256 of snapshots (see CreateSha256); `@noble/hashes` by default. */
  createSha256?: CreateSha256
}

/**
 * A snapshot being checked, independently of the state: decodeSome() until
 * it returns true, then result(); install() replaces the state with it.
 */
export interface KvSnapshotCheck {
  /** Decodes about `workBytes` more; true once result() may be called. */
  decodeSome(workBytes: number): boolean
  /** Whether the snapshot is well-formed and fits this store's limits, and the index it reflects. */
  result(): KvCheckResult
  /** Replaces the whole state with the checked snapshot's (only after result() was ok). */
  install(): void
}

export type KvCheckResult = { ok: true, appliedIndex: number } | { ok: false, error: string }

/** A restore in progress: decodeSome() until it returns true, then finish(). */
export interface KvRestore {
  /** Decodes about `workBytes` more; true once finish() may be called. */
  decodeSome(workBytes: number): boolean
  /** Installs the decoded state, or refuses a bad snapshot leaving the state as it was. */
  finish(): KvRestoreResult
}

export interface KvStats {
  appliedIndex: number
  keys: number
  /** key + value bytes over the store, the quantity dataBytesMax bounds */
  dataBytes: number
  sessions: number
}

export class KvStateMachine {
  readonly limits: Readonly<KvLimits>
  /** Values are never changed in place (a write stores another array), so a clone can share them. */
  private data: KvTree = newKvTree()
  private dataBytes = 0
  /** Map iteration order is LRU order: first = smallest lastIndex. */
  private sessions = new Map<string, KvSession>()
  private applied = 0

  readonly #createSha256: CreateSha256

  constructor (limits: Partial<KvLimits> = {}, options: KvStateMachineOptions = {}) {
    this.limits = Object.freeze(resolveKvLimits(limits))
    this.#createSha256 = options.createSha256 ?? nobleSha256
  }

  /** The index of the last entry applied (or skipped); 0 initially. */
  get appliedIndex (): number {
    return this.applied
  }

  /** A copy of the value, or null when the key is absent. */
  get (key: string): Uint8Array | null {
    return this.data.get(key)?.slice() ?? null
  }

  stats (): KvStats {
    return { appliedIndex: this.applied, keys: this.data.size, dataBytes: this.dataBytes, sessions: this.sessions.size }
  }

  /**
   * Applies the committed entry `index` (entries arrive in increasing index
   * order; gaps are entries that carried no KV command). An empty entry is a
   * no-op. Malformed or invalid commands yield an error result; this never
   * throws on entry content.
   *
   * A value written is kept as a view into `commandBytes`, which must not be
   * changed afterwards (log entries never are). A copy per value would be one
   * more small ArrayBuffer for the garbage collector to track: at 900k keys
   * that tripled the longest pause (from ~100 to ~300 ms and more, see
   * docs/benchmarks.md, "Snapshot stalls"). The view keeps the rest of the command
   * alive, a few dozen bytes, as long as the value lives; callers pass the
   * entry's own exact-size buffer, never a view into a larger one.
   */
  apply (index: number, commandBytes: Uint8Array): KvApplyResult {
    this.advance(index)
    if (commandBytes.length === 0) { return { ok: true, index, type: 'noop' } }

    const decoded = decodeCommand(commandBytes)
    if (!decoded.ok) { return rejection(index, 'invalid-command', decoded.error) }
    const command = decoded.command
    const validation = validateCommand(command, this.limits)
    if (!validation.ok) { return rejection(index, 'invalid-command', validation.message) }

    const { clientId, sequence } = command.session
    const session = this.sessions.get(clientId)
    if (session === undefined) {
      if (sequence !== 1) {
        return rejection(index, 'session-expired', `no session for client ${JSON.stringify(clientId)}: it expired or never existed; start a new session with sequence 1`)
      }
    } else if (sequence < session.sequence) {
      return rejection(index, 'stale-sequence', `sequence ${sequence} is older than ${session.sequence}, the last one applied for this client`)
    } else if (sequence === session.sequence) {
      this.touch(session, index)
      return { ...session.result }
    }

    const result = this.execute(index, command)
    const saved = toSaved(result)
    if (session === undefined) {
      this.evictIfFull()
      this.sessions.set(clientId, { clientId, sequence, lastIndex: index, result: saved })
    } else {
      session.sequence = sequence
      session.result = saved
      this.touch(session, index)
    }
    return result
  }

  /** Records that entry `index` was applied outside the KV store (e.g. a membership change). */
  skip (index: number): void {
    this.advance(index)
  }

  /** The whole state (data, sessions, appliedIndex) as canonical bytes. */
  snapshot (): Uint8Array {
    // encoded in one go: nothing changes meanwhile, so no clone is needed
    return encodeSnapshot(this.capture(false), this.#createSha256)
  }

  /**
   * Starts encoding a snapshot of the state as it is now; the encoder works
   * on an O(1) copy-on-write clone, so applying may go on between its steps
   * and the bytes are still those of this moment.
   */
  beginSnapshot (): KvSnapshotEncoder {
    return new KvSnapshotEncoder(this.capture(true), this.#createSha256)
  }

  /**
   * Replaces the whole state with a snapshot's. A malformed snapshot, or one
   * taken under different limits, is refused and the state is left as it was.
   */
  restore (bytes: Uint8Array): KvRestoreResult {
    const restore = this.beginRestore(bytes)
    while (!restore.decodeSome(Infinity)) { /* one call does it all */ }
    return restore.finish()
  }

  /**
   * restore() in steps: decodeSome() until it returns true, then finish().
   * Nothing may be applied in between (finish() checks).
   */
  beginRestore (bytes: Uint8Array): KvRestore {
    const check = this.checkSnapshot(bytes)
    const appliedBefore = this.applied
    return {
      decodeSome: workBytes => check.decodeSome(workBytes),
      finish: () => {
        assert(this.applied === appliedBefore, 'entries were applied during a restore')
        const result = check.result()
        if (!result.ok) { return result }
        check.install()
        return { ok: true }
      }
    }
  }

  /**
   * Decodes and fully validates a snapshot (format, checksum, this store's
   * limits) without touching the state, so applying may go on between the
   * steps; install() then replaces the state with it at once. A node checks
   * a snapshot received from the network this way before it makes it
   * durable, and installs the very decoding afterwards.
   */
  checkSnapshot (bytes: Uint8Array): KvSnapshotCheck {
    const decoder = new KvSnapshotDecoder(bytes, this.limits, this.#createSha256)
    let installed = false
    return {
      decodeSome: workBytes => decoder.decodeSome(workBytes),
      result: () => {
        const decoded = decoder.result()
        return decoded.ok ? { ok: true, appliedIndex: decoded.state.appliedIndex } : decoded
      },
      install: () => {
        const decoded = decoder.result()
        assert(decoded.ok, 'installing a snapshot that failed its check')
        assert(!installed, 'a checked snapshot is installed once')
        installed = true
        const { state } = decoded
        this.data = state.entries
        this.dataBytes = decoded.dataBytes
        this.sessions = new Map(state.sessions.map(session => [session.clientId, session]))
        this.applied = state.appliedIndex
      }
    }
  }

  /** The state to encode; `frozen`: a copy that later applies leave alone. */
  private capture (frozen: boolean): KvSnapshotState {
    const sessions = [...this.sessions.values()]
    return {
      appliedIndex: this.applied,
      limits: this.limits,
      entries: frozen ? this.data.clone() : this.data,
      // sessions change in place (touch, apply)
      sessions: frozen ? sessions.map(session => ({ ...session })) : sessions
    }
  }

  private advance (index: number): void {
    assert(Number.isSafeInteger(index) && index > this.applied, `KV apply index ${index} must follow appliedIndex ${this.applied}`)
    this.applied = index
  }

  private execute (index: number, command: KvCommand): KvApplyResult {
    const current = this.data.get(command.key)
    switch (command.type) {
      case 'put':
        return this.write(command.key, current, command.value)
          ? { ok: true, index, type: 'put' }
          : { ok: false, index, reason: 'quota-exceeded' }
      case 'delete':
        if (current === undefined) { return { ok: true, index, type: 'delete', deleted: false } }
        this.write(command.key, current, null)
        return { ok: true, index, type: 'delete', deleted: true }
      case 'cas': {
        const matches = command.expected === null
          ? current === undefined
          : current !== undefined && bytesEqual(current, command.expected)
        if (!matches) { return { ok: false, index, reason: 'cas-mismatch', current: current?.slice() ?? null } }
        return this.write(command.key, current, command.value)
          ? { ok: true, index, type: 'cas' }
          : { ok: false, index, reason: 'quota-exceeded' }
      }
      default:
        return unreachable(command)
    }
  }

  /**
   * Sets (or with null deletes) a key whose value is `previous` (as the
   * caller already looked it up); false, changing nothing, if the quota
   * would be exceeded.
   */
  private write (key: string, previous: Uint8Array | undefined, value: Uint8Array | null): boolean {
    const keyBytes = utf8ByteLength(key)
    const before = previous === undefined ? 0 : keyBytes + previous.length
    const after = value === null ? 0 : keyBytes + value.length
    const total = this.dataBytes - before + after
    if (after > before && total > this.limits.dataBytesMax) { return false }
    // Kept as a view into the command bytes, not copied (see apply()).
    if (value === null) { this.data.delete(key) } else { this.data.set(key, value) }
    this.dataBytes = total
    return true
  }

  private touch (session: KvSession, index: number): void {
    session.lastIndex = index
    // re-insert to move it to the most recently used end
    this.sessions.delete(session.clientId)
    this.sessions.set(session.clientId, session)
  }

  private evictIfFull (): void {
    while (this.sessions.size >= this.limits.sessionsMax) {
      const oldest = this.sessions.keys().next()
      assert(oldest.done !== true, 'session table is full but empty')
      this.sessions.delete(oldest.value)
    }
  }
}

function rejection (index: number, reason: KvRejection, message: string): KvApplyResult {
  return { ok: false, index, reason, message }
}

function toSaved (result: KvApplyResult): KvSavedResult {
  if (result.ok) {
    assert(result.type !== 'noop', 'a no-op has no session')
    return result.type === 'delete'
      ? { ok: true, index: result.index, type: 'delete', deleted: result.deleted }
      : { ok: true, index: result.index, type: result.type }
  }
  assert(result.reason === 'cas-mismatch' || result.reason === 'quota-exceeded', `a ${result.reason} result is not saved`)
  return { ok: false, index: result.index, reason: result.reason }
}
