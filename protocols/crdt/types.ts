/**
 * Shared shapes of the CRDT core: results, JSON values and the uniform
 * interface every type offers to a service that handles CRDTs generically.
 */
import type { ByteReader, ByteWriter } from '../kv/codec.ts'

export type Result<T> = { ok: true, value: T } | { ok: false, error: string }

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/** Who is mutating and when: `now` is physical time in ms, read by the caller (only LWW types use it). */
export interface MutationEnv {
  readonly replica: string
  readonly now: number
}

/**
 * One CRDT type. States are immutable values: `apply` returns a delta (itself
 * a state of the type) and `join` returns a new state, never mutating its
 * arguments (only `absorb`, where a type has it, changes its first). `apply(state, op)` never throws on a malformed op; it returns
 * an error.
 */
export interface CrdtType<S> {
  readonly name: string
  empty(): S
  apply(state: S, op: unknown, env: MutationEnv): Result<S>
  join(a: S, b: S): S
  /**
   * Optional, for types whose states are costly to copy (rga): joins b into
   * a, which it may change, and returns the result; b is only read. For a
   * holder that owns a and drops it afterwards (CrdtReplica); anyone else
   * calls join.
   */
  absorb?(a: S, b: S): S
  value(state: S): JsonValue
  /** Writes the body of a state (no header); canonical: equal states give equal bytes. */
  write(writer: ByteWriter, state: S): void
  /** Reads a body written by `write`; throws DecodeError on malformed input. `depth` bounds nesting. */
  read(reader: ByteReader, depth: number): S
}

export const ok = <T>(value: T): Result<T> => ({ ok: true, value })
export const fail = <T>(error: string): Result<T> => ({ ok: false, error })
