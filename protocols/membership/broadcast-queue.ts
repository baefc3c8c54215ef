/**
 * The transmit-limited queue of membership updates waiting to be
 * piggybacked (memberlist's TransmitLimitedQueue). SWIM spreads news by
 * infection: each update rides on the next few messages a member sends and
 * reaches everyone in O(log N) protocol periods with high probability, so
 * each update is handed out at most retransmitMult * ceil(log10(N + 1))
 * times and then forgotten.
 *
 * Order: least transmitted first, newest first among equals (fresh news
 * spreads fastest; an update that has gone out many times is probably
 * known). A newer update about a member replaces the queued one about it.
 * The queue holds at most `max` updates; beyond it the most transmitted,
 * oldest ones are dropped.
 *
 * Layout: one array per transmit count ("bucket"), each sorted by enqueue
 * sequence, so taking k updates costs O(k log n) plus the ones skipped for
 * size, never a sort of the whole queue.
 */
import { assert } from '../common/assert.ts'
import { UPDATE_BYTES_MIN, updateBytes } from './size.ts'
import type { MemberId, Update } from './types.ts'

interface Queued {
  readonly update: Update
  readonly bytes: number
  /** Enqueue order: higher is newer. */
  readonly seq: number
  transmits: number
}

export function retransmitLimit (retransmitMult: number, liveMembers: number): number {
  return retransmitMult * Math.ceil(Math.log10(liveMembers + 1))
}

export class BroadcastQueue {
  readonly max: number
  private readonly byMember = new Map<MemberId, Queued>()
  /** buckets[t]: the updates transmitted t times, by ascending seq. */
  private readonly buckets: Queued[][] = []
  private nextSeq = 0
  /** Updates dropped because the queue was full. */
  dropped = 0

  constructor (max: number) {
    assert(Number.isSafeInteger(max) && max >= 1, 'broadcast queue: max must be a positive integer')
    this.max = max
  }

  get size (): number {
    return this.byMember.size
  }

  /** The queued update about `id`, if any. */
  get (id: MemberId): Update | undefined {
    return this.byMember.get(id)?.update
  }

  /** How many times the queued update about `id` went out (undefined: none queued). */
  transmitsOf (id: MemberId): number | undefined {
    return this.byMember.get(id)?.transmits
  }

  /** Queues `update`, replacing any queued update about the same member. */
  enqueue (update: Update): void {
    this.remove(update.id)
    const entry: Queued = { update, bytes: updateBytes(update), seq: this.nextSeq++, transmits: 0 }
    this.byMember.set(update.id, entry)
    this.bucket(0).push(entry)
    while (this.byMember.size > this.max) { this.dropOldest() }
  }

  remove (id: MemberId): void {
    const entry = this.byMember.get(id)
    if (entry === undefined) { return }
    this.byMember.delete(id)
    this.removeFromBucket(entry)
  }

  /**
   * Takes updates for one message: least transmitted and newest first, each
   * if it fits in what is left of `budgetBytes`, skipping updates about
   * the members in `skip`. Each taken update counts one transmission and leaves the queue
   * once it reaches `limit` (updates already at or past a `limit` that
   * shrank are dropped as they are met).
   */
  take (budgetBytes: number, limit: number, skip: readonly MemberId[] = []): Update[] {
    assert(limit >= 1, 'broadcast queue: limit must be at least 1')
    const taken: Queued[] = []
    let left = budgetBytes
    for (let t = 0; t < this.buckets.length && left >= UPDATE_BYTES_MIN; t++) {
      const bucket = this.buckets[t]
      if (t >= limit) {
        for (const entry of [...bucket]) { this.remove(entry.update.id) }
        continue
      }
      for (let i = bucket.length - 1; i >= 0 && left >= UPDATE_BYTES_MIN; i--) {
        const entry = bucket[i]
        if (entry.bytes > left || skip.includes(entry.update.id)) { continue }
        taken.push(entry)
        left -= entry.bytes
      }
    }
    for (const entry of taken) {
      this.removeFromBucket(entry)
      entry.transmits++
      if (entry.transmits >= limit) {
        this.byMember.delete(entry.update.id)
      } else {
        insertBySeq(this.bucket(entry.transmits), entry)
      }
    }
    return taken.map(entry => entry.update)
  }

  /** For tests: the queue's internal consistency. */
  checkInvariants (): void {
    let count = 0
    for (const [t, bucket] of this.buckets.entries()) {
      for (let i = 0; i < bucket.length; i++) {
        const entry = bucket[i]
        assert(entry.transmits === t, 'broadcast queue: entry in the wrong bucket')
        assert(this.byMember.get(entry.update.id) === entry, 'broadcast queue: bucket entry not indexed')
        assert(i === 0 || bucket[i - 1].seq < entry.seq, 'broadcast queue: bucket out of order')
        count++
      }
    }
    assert(count === this.byMember.size, 'broadcast queue: index and buckets disagree')
    assert(count <= this.max, 'broadcast queue: over its limit')
  }

  private bucket (transmits: number): Queued[] {
    while (this.buckets.length <= transmits) { this.buckets.push([]) }
    return this.buckets[transmits]
  }

  private removeFromBucket (entry: Queued): void {
    const bucket = this.buckets[entry.transmits]
    const i = indexBySeq(bucket, entry.seq)
    assert(i >= 0 && bucket[i] === entry, 'broadcast queue: entry missing from its bucket')
    bucket.splice(i, 1)
  }

  /** Drops the most transmitted, oldest update. */
  private dropOldest (): void {
    for (let t = this.buckets.length - 1; t >= 0; t--) {
      const oldest = this.buckets[t][0]
      if (oldest === undefined) { continue }
      this.remove(oldest.update.id)
      this.dropped++
      return
    }
    assert(false, 'broadcast queue: over its limit with no entry to drop')
  }
}

function indexBySeq (bucket: Queued[], seq: number): number {
  let lo = 0
  let hi = bucket.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const s = bucket[mid].seq
    if (s === seq) { return mid }
    if (s < seq) { lo = mid + 1 } else { hi = mid - 1 }
  }
  return -1
}

function insertBySeq (bucket: Queued[], entry: Queued): void {
  let lo = 0
  let hi = bucket.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (bucket[mid].seq < entry.seq) { lo = mid + 1 } else { hi = mid }
  }
  bucket.splice(lo, 0, entry)
}
