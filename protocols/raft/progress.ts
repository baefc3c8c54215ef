import { assert, unreachable } from '../common/assert.ts'
import type { ProgressStateName } from './types.ts'

/**
 * The sliding window of MsgApps sent to one follower and not yet
 * acknowledged, bounded by message count and by bytes (etcd's Inflights).
 * A ring buffer of (last index, bytes) pairs in send order.
 */
export class Inflights {
  private readonly indexes: number[]
  private readonly sizes: number[]
  private start = 0
  private count = 0
  private bytes = 0
  private readonly countMax: number
  private readonly bytesMax: number

  constructor (countMax: number, bytesMax: number) {
    this.countMax = countMax
    this.bytesMax = bytesMax
    this.indexes = new Array<number>(countMax).fill(0)
    this.sizes = new Array<number>(countMax).fill(0)
  }

  get length (): number {
    return this.count
  }

  get inflightBytes (): number {
    return this.bytes
  }

  full (): boolean {
    return this.count === this.countMax || this.bytes >= this.bytesMax
  }

  add (lastIndex: number, bytes: number): void {
    assert(!this.full(), 'inflights: add while full')
    if (this.count > 0) {
      assert(lastIndex > this.indexes[(this.start + this.count - 1) % this.countMax], 'inflights: indexes must increase')
    }
    const slot = (this.start + this.count) % this.countMax
    this.indexes[slot] = lastIndex
    this.sizes[slot] = bytes
    this.count++
    this.bytes += bytes
  }

  /** Frees every message whose last index is <= index (they were acknowledged). */
  freeLE (index: number): void {
    while (this.count > 0 && this.indexes[this.start] <= index) {
      this.bytes -= this.sizes[this.start]
      this.start = (this.start + 1) % this.countMax
      this.count--
    }
    if (this.count === 0) { this.start = 0 }
  }

  /** Frees the oldest message (a heartbeat response proves the follower is alive). */
  freeFirstOne (): void {
    if (this.count > 0) { this.freeLE(this.indexes[this.start]) }
  }

  reset (): void {
    this.start = 0
    this.count = 0
    this.bytes = 0
  }
}

/**
 * The leader's view of one follower (etcd's tracker.Progress):
 * - probe: send one MsgApp per heartbeat interval until the follower's
 * position is found;
 * - replicate: stream MsgApps optimistically, bounded by the Inflights window;
 * - snapshot: a snapshot is in flight; send nothing until it is reported.
 */
export class Progress {
  match = 0
  next: number
  state: ProgressStateName = 'probe'
  /** In probe state: a probe was sent and its answer (or a heartbeat answer) is awaited. */
  probeSent = false
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0
  /** Heard from since the last check-quorum round. */
  recentActive: boolean
  isLearner: boolean
  readonly inflights: Inflights

  constructor (next: number, isLearner: boolean, inflights: Inflights, recentActive: boolean) {
    assert(next >= 1, 'progress: next must be >= 1')
    this.next = next
    this.isLearner = isLearner
    this.inflights = inflights
    this.recentActive = recentActive
  }

  private resetState (state: ProgressStateName): void {
    this.probeSent = false
    this.pendingSnapshot = 0
    this.state = state
    this.inflights.reset()
  }

  becomeProbe (): void {
    // After a snapshot, probe from just past the snapshot the follower now has.
    const fromSnapshot = this.state === 'snapshot' ? this.pendingSnapshot : 0
    this.resetState('probe')
    this.next = Math.max(this.match + 1, fromSnapshot + 1)
  }

  becomeReplicate (): void {
    this.resetState('replicate')
    this.next = this.match + 1
  }

  becomeSnapshot (snapshotIndex: number): void {
    this.resetState('snapshot')
    this.pendingSnapshot = snapshotIndex
  }

  /** Records an acknowledgement up to `index`; false if it was stale. */
  maybeUpdate (index: number): boolean {
    let updated = false
    if (this.match < index) {
      this.match = index
      updated = true
      this.probeSent = false
    }
    this.next = Math.max(this.next, index + 1)
    return updated
  }

  /**
   * Handles a rejection of the MsgApp whose prevIndex was `rejected`, with the
   * follower's hint that its log may match up to `matchHint`. False when the
   * rejection is stale (an answer to an older message).
   */
  maybeDecrTo (rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) { return false }
      this.next = this.match + 1
      return true
    }
    if (this.next - 1 !== rejected) { return false }
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1)
    this.probeSent = false
    return true
  }

  /** Updates the window after sending `entries` entries (`bytes` bytes) ending at `lastIndex`. */
  sentEntries (entries: number, lastIndex: number, bytes: number): void {
    if (this.state === 'replicate') {
      if (entries > 0) {
        this.next = lastIndex + 1
        this.inflights.add(lastIndex, bytes)
      }
    } else if (this.state === 'probe') {
      this.probeSent = true
    } else {
      assert(false, `progress: sending entries in state ${this.state}`)
    }
  }

  isPaused (): boolean {
    switch (this.state) {
      case 'probe': return this.probeSent
      case 'replicate': return this.inflights.full()
      case 'snapshot': return true
      default: return unreachable(this.state)
    }
  }
}
