/**
 * What a member knows about every other: one immutable record per member.
 *
 * Records are replaced, never mutated, so a Roster (the members known at
 * start) can be shared by many nodes: a node keeps the roster as its base
 * and only its own changes beside it. A real node has one roster and pays
 * nothing for this; the simulator runs 10,000 nodes that start from the same
 * 10,000-member roster without 10^8 copies.
 */
import { assert } from '../common/assert.ts'
import { INCARNATION_MAX, isValidMemberId, META_BYTES_FLOOR } from './config.ts'
import type { MemberId, MemberState } from './types.ts'

export interface MemberRecord {
  readonly id: MemberId
  readonly state: MemberState
  readonly incarnation: number
  readonly meta: Uint8Array
  /** The tick of the last state change (tombstone age). */
  readonly changedTick: number
}

/** Members known at start, all alive; build with createRoster(), share freely. */
export interface Roster {
  readonly records: ReadonlyMap<MemberId, MemberRecord>
  /** The ids in the order given. */
  readonly ids: readonly MemberId[]
  /** The largest metadata in it (a node refuses a roster over its own limit). */
  readonly metaBytesMax: number
}

export interface RosterEntry {
  id: MemberId
  incarnation?: number
  meta?: Uint8Array
}

/** Checks and freezes a roster (duplicates and bad entries throw: a programming or configuration error). */
export function createRoster (entries: readonly RosterEntry[], metaBytesMax: number = META_BYTES_FLOOR): Roster {
  const records = new Map<MemberId, MemberRecord>()
  const ids: MemberId[] = []
  let largest = 0
  for (const entry of entries) {
    const { id, incarnation = 0, meta = new Uint8Array(0) } = entry
    if (!isValidMemberId(id)) { throw new RangeError(`roster: invalid member id ${JSON.stringify(id)}`) }
    if (records.has(id)) { throw new RangeError(`roster: duplicate member ${id}`) }
    if (!Number.isSafeInteger(incarnation) || incarnation < 0 || incarnation > INCARNATION_MAX) { throw new RangeError(`roster: bad incarnation for ${id}`) }
    if (!(meta instanceof Uint8Array) || meta.byteLength > metaBytesMax) { throw new RangeError(`roster: metadata of ${id} is not a Uint8Array of at most ${metaBytesMax} bytes`) }
    largest = Math.max(largest, meta.byteLength)
    records.set(id, Object.freeze({ id, state: 'alive', incarnation, meta: meta.slice(), changedTick: 0 }))
    ids.push(id)
  }
  return Object.freeze({ records, ids: Object.freeze(ids), metaBytesMax: largest })
}

const EMPTY: ReadonlyMap<MemberId, MemberRecord> = new Map()

export class MemberTable {
  private readonly base: ReadonlyMap<MemberId, MemberRecord>
  /** Our changes to the base: a record, or null for a base member we removed. */
  private readonly own = new Map<MemberId, MemberRecord | null>()
  private count: number

  constructor (roster?: Roster) {
    this.base = roster?.records ?? EMPTY
    this.count = this.base.size
  }

  get size (): number {
    return this.count
  }

  get (id: MemberId): MemberRecord | undefined {
    const mine = this.own.get(id)
    if (mine !== undefined) { return mine ?? undefined }
    return this.base.get(id)
  }

  has (id: MemberId): boolean {
    return this.get(id) !== undefined
  }

  /** Adds or replaces the record of `record.id`. */
  set (record: MemberRecord): void {
    if (!this.has(record.id)) { this.count++ }
    this.own.set(record.id, record)
  }

  delete (id: MemberId): void {
    if (!this.has(id)) { return }
    this.count--
    if (this.base.has(id)) { this.own.set(id, null) } else { this.own.delete(id) }
  }

  /** Every record: the base's in roster order, then the ones added since. */
  * records (): IterableIterator<MemberRecord> {
    for (const [id, record] of this.base) {
      const mine = this.own.get(id)
      if (mine === undefined) { yield record } else if (mine !== null) { yield mine }
    }
    for (const [id, record] of this.own) {
      if (record !== null && !this.base.has(id)) { yield record }
    }
  }

  /** For tests: the count matches the records. */
  checkInvariants (): void {
    let n = 0
    for (const record of this.records()) {
      assert(this.get(record.id) === record, 'member table: iteration and lookup disagree')
      n++
    }
    assert(n === this.count, 'member table: count is off')
  }
}
