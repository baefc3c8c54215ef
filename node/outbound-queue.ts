/**
 * The bounded outbound queue of one peer of a stream transport (Raft's and
 * PBFT's, see peer-outbox.ts).
 *
 * Full queue policy: drop the OLDEST item. Both protocols tolerate loss,
 * and newer messages supersede older ones: in Raft a newer heartbeat or
 * MsgApp carries a newer commit, a vote request a newer term, and a lost
 * MsgApp is caught by the follower's rejection and resent from the
 * leader's log; PBFT retransmits what a replica or client still waits for.
 * Dropping the newest instead would let a backlog of stale messages (from a
 * term or view this node has left) starve a vote request or a new leader's
 * first heartbeat.
 *
 * A snapshot item (Raft's) holds a reference to the caller's snapshot
 * message, never a copy of its data, so its cost here is only its first
 * frame; at most one snapshot is queued per peer (a newer one replaces the
 * older, which is stale).
 */

/** A frame to write as it is, or a snapshot `S` written as several frames. */
export type QueueItem<S = unknown> =
  | { kind: 'frame', frame: Uint8Array, bytes: number }
  | { kind: 'snapshot', message: S, bytes: number }

export interface OutboundQueueLimits {
  messagesMax: number
  bytesMax: number
}

export class OutboundQueue<S = unknown> {
  readonly #limits: OutboundQueueLimits
  #items: QueueItem<S>[] = []
  /** Index of the first live item: shifting an array is O(n), so advance a head and compact now and then. */
  #head = 0
  #bytes = 0
  #bytesPeak = 0

  constructor (limits: OutboundQueueLimits) {
    if (!Number.isSafeInteger(limits.messagesMax) || limits.messagesMax < 1) { throw new RangeError('messagesMax must be a positive integer') }
    if (!Number.isSafeInteger(limits.bytesMax) || limits.bytesMax < 1) { throw new RangeError('bytesMax must be a positive integer') }
    this.#limits = limits
  }

  get length (): number { return this.#items.length - this.#head }

  get bytes (): number { return this.#bytes }

  /** Highest `bytes` ever held: tests check it never passed the bound. */
  get bytesPeak (): number { return this.#bytesPeak }

  /**
   * Adds an item and returns what was dropped to make room (oldest first),
   * or the item itself when it alone exceeds the byte bound.
   */
  push (item: QueueItem<S>): QueueItem<S>[] {
    if (item.bytes > this.#limits.bytesMax) { return [item] }
    const dropped: QueueItem<S>[] = []
    if (item.kind === 'snapshot') {
      const older = this.#removeWhere(i => i.kind === 'snapshot')
      if (older !== undefined) { dropped.push(older) }
    }
    while (this.length > 0 && (this.length + 1 > this.#limits.messagesMax || this.#bytes + item.bytes > this.#limits.bytesMax)) {
      dropped.push(this.#shiftUnchecked())
    }
    this.#items.push(item)
    this.#bytes += item.bytes
    this.#bytesPeak = Math.max(this.#bytesPeak, this.#bytes)
    return dropped
  }

  shift (): QueueItem<S> | undefined {
    return this.length === 0 ? undefined : this.#shiftUnchecked()
  }

  /** The first item, if it is a plain frame (for batching writes). */
  peekFrame (): (QueueItem<S> & { kind: 'frame' }) | undefined {
    const item = this.#items[this.#head]
    return item?.kind === 'frame' ? item : undefined
  }

  /** Removes and returns everything. */
  clear (): QueueItem<S>[] {
    const all = this.#items.slice(this.#head)
    this.#items = []
    this.#head = 0
    this.#bytes = 0
    return all
  }

  #shiftUnchecked (): QueueItem<S> {
    const item = this.#items[this.#head]
    this.#items[this.#head] = undefined as unknown as QueueItem<S>
    this.#head++
    this.#bytes -= item.bytes
    if (this.#head === this.#items.length) {
      this.#items = []
      this.#head = 0
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return item
  }

  #removeWhere (match: (item: QueueItem<S>) => boolean): QueueItem<S> | undefined {
    for (let i = this.#head; i < this.#items.length; i++) {
      const item = this.#items[i]
      if (match(item)) {
        this.#items.splice(i, 1)
        this.#bytes -= item.bytes
        return item
      }
    }
    return undefined
  }
}
