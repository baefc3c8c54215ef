/**
 * Reassembles snapshot messages that arrive as a `snapshot-begin` frame and
 * consecutive `snapshot-chunk` frames on one inbound stream.
 *
 * Bounds: the declared size is at most `snapshotBytesMax` and the chunks may
 * not exceed it; one reassembly per peer (a new begin from the same peer on
 * another stream replaces the older one: that stream was abandoned by the
 * sender, which reconnected); at most `reassembliesMax` across all peers.
 * Memory grows only as chunks actually arrive: nothing is allocated for the
 * declared size up front, so a lying begin frame costs nothing.
 *
 * The slots are not first come, first served, or two peers could keep the
 * leader's snapshot out for good (lagging followers and new learners would
 * never catch up):
 * - the leader this node follows (`isLeader`) always gets one: when all are
 * taken, its begin evicts another peer's reassembly (the one that made the
 * least progress lately);
 * - a reassembly must go on receiving: another `progressBytes` (or its last
 * bytes) within `progressTimeoutMs` of its begin and of each time it did,
 * or it is dropped. A peer that sends a begin and then one byte every few
 * seconds loses its slot. The rate this asks for (1 MiB per 20 s with the
 * transport's defaults) is far below what a sender keeps up: it gives up
 * a chunk it could not write within its own writeTimeoutMs.
 *
 * Time is passed in (`nowMs`), so the rules are tested without a clock.
 */
import type { SnapshotMessage } from '../../protocols/raft/index.ts'

export type ReassemblyRejectReason =
  /** The declared snapshot size exceeds snapshotBytesMax. */
  | 'snapshot-too-large'
  /** reassembliesMax reassemblies are already in progress for other peers, none from the leader's begin can evict. */
  | 'snapshot-busy'
  /** A chunk without a begin, or a begin/message in the middle of a reassembly on the same stream. */
  | 'unexpected-frame'
  /** Chunks add up to more than the declared size. */
  | 'snapshot-overrun'
  /** The reassembly received too little for too long (see progressTimeoutMs): dropped. */
  | 'snapshot-too-slow'

export type ReassemblyResult =
  | { ok: true, complete?: SnapshotMessage }
  | { ok: false, reason: ReassemblyRejectReason }

/** Why a reassembly was dropped while its stream was not sending (see onDropped). */
export type ReassemblyDropReason = 'snapshot-evicted' | 'snapshot-too-slow'

export interface ReassemblyLimits {
  snapshotBytesMax: number
  reassembliesMax: number
  /** The progress a reassembly must make within progressTimeoutMs: this many more bytes (or the rest). */
  progressBytes: number
  progressTimeoutMs: number
}

export interface ReassemblyHooks {
  /** Whether `peer` is the leader this node follows now (default: nobody is). */
  isLeader?(peer: string): boolean
  /** A reassembly was dropped to make room (evicted for the leader, or too slow): its stream should be closed. */
  onDropped?(peer: string, owner: object, reason: ReassemblyDropReason): void
}

interface Reassembly {
  /** The stream the chunks must arrive on. */
  owner: object
  message: SnapshotMessage
  dataBytes: number
  chunks: Uint8Array[]
  receivedBytes: number
  /** receivedBytes must reach this by progressDeadlineMs. */
  progressTargetBytes: number
  progressDeadlineMs: number
}

export class SnapshotReassembler {
  readonly #limits: ReassemblyLimits
  readonly #hooks: ReassemblyHooks
  readonly #byPeer = new Map<string, Reassembly>()
  #superseded = 0
  #bufferedBytesPeak = 0
  #evicted = 0
  #tooSlow = 0

  constructor (limits: ReassemblyLimits, hooks: ReassemblyHooks = {}) {
    if (!Number.isSafeInteger(limits.snapshotBytesMax) || limits.snapshotBytesMax < 0) { throw new RangeError('snapshotBytesMax must be a non-negative integer') }
    if (!Number.isSafeInteger(limits.reassembliesMax) || limits.reassembliesMax < 1) { throw new RangeError('reassembliesMax must be a positive integer') }
    if (!Number.isSafeInteger(limits.progressBytes) || limits.progressBytes < 1) { throw new RangeError('progressBytes must be a positive integer') }
    if (!Number.isSafeInteger(limits.progressTimeoutMs) || limits.progressTimeoutMs < 1) { throw new RangeError('progressTimeoutMs must be a positive integer') }
    this.#limits = limits
    this.#hooks = hooks
  }

  /** Reassemblies in progress. */
  get size (): number { return this.#byPeer.size }

  /** The most snapshot bytes buffered at once (across all reassemblies) since this reassembler was made. */
  get bufferedBytesPeak (): number { return this.#bufferedBytesPeak }

  /** Snapshot bytes buffered across all reassemblies. */
  get bufferedBytes (): number {
    let total = 0
    for (const r of this.#byPeer.values()) { total += r.receivedBytes }
    return total
  }

  /** Reassemblies replaced by a newer begin from the same peer. */
  get superseded (): number { return this.#superseded }

  /** Reassemblies evicted to make room for the leader's. */
  get evicted (): number { return this.#evicted }

  /** Reassemblies dropped for receiving too little for too long. */
  get tooSlow (): number { return this.#tooSlow }

  /** Whether `owner` (a stream) is in the middle of a snapshot: then only chunks may follow. */
  isOpen (peer: string, owner: object): boolean {
    return this.#byPeer.get(peer)?.owner === owner
  }

  begin (peer: string, owner: object, message: SnapshotMessage, dataBytes: number, nowMs: number): ReassemblyResult {
    if (dataBytes > this.#limits.snapshotBytesMax) { return { ok: false, reason: 'snapshot-too-large' } }
    const current = this.#byPeer.get(peer)
    if (current?.owner === owner) { return { ok: false, reason: 'unexpected-frame' } }
    if (current !== undefined) {
      this.#byPeer.delete(peer)
      this.#superseded++
    } else if (this.#byPeer.size >= this.#limits.reassembliesMax) {
      this.#dropStalled(nowMs)
      if (this.#byPeer.size >= this.#limits.reassembliesMax && !this.#evictForLeader(peer)) { return { ok: false, reason: 'snapshot-busy' } }
    }
    if (dataBytes === 0) { return { ok: true, complete: message } }
    this.#byPeer.set(peer, {
      owner,
      message,
      dataBytes,
      chunks: [],
      receivedBytes: 0,
      progressTargetBytes: Math.min(dataBytes, this.#limits.progressBytes),
      progressDeadlineMs: nowMs + this.#limits.progressTimeoutMs
    })
    return { ok: true }
  }

  chunk (peer: string, owner: object, data: Uint8Array, nowMs: number): ReassemblyResult {
    const r = this.#byPeer.get(peer)
    if (r === undefined || r.owner !== owner) { return { ok: false, reason: 'unexpected-frame' } }
    if (nowMs > r.progressDeadlineMs) {
      this.#byPeer.delete(peer)
      this.#tooSlow++
      return { ok: false, reason: 'snapshot-too-slow' }
    }
    if (r.receivedBytes + data.byteLength > r.dataBytes) {
      this.#byPeer.delete(peer)
      return { ok: false, reason: 'snapshot-overrun' }
    }
    r.chunks.push(data)
    r.receivedBytes += data.byteLength
    this.#bufferedBytesPeak = Math.max(this.#bufferedBytesPeak, this.bufferedBytes)
    if (r.receivedBytes < r.dataBytes) {
      if (r.receivedBytes >= r.progressTargetBytes) {
        r.progressTargetBytes = Math.min(r.dataBytes, r.receivedBytes + this.#limits.progressBytes)
        r.progressDeadlineMs = nowMs + this.#limits.progressTimeoutMs
      }
      return { ok: true }
    }
    this.#byPeer.delete(peer)
    const whole = new Uint8Array(r.dataBytes)
    let at = 0
    for (const chunk of r.chunks) {
      whole.set(chunk, at)
      at += chunk.byteLength
    }
    r.chunks.length = 0
    return { ok: true, complete: { ...r.message, snapshot: { ...r.message.snapshot, data: whole } } }
  }

  /** Forgets the reassembly `owner` was receiving (its stream ended). Returns whether there was one. */
  discard (peer: string, owner: object): boolean {
    if (this.#byPeer.get(peer)?.owner !== owner) { return false }
    this.#byPeer.delete(peer)
    return true
  }

  clear (): void {
    this.#byPeer.clear()
  }

  /** Drops every reassembly past its progress deadline (a stalled stream sends nothing that would find out). */
  #dropStalled (nowMs: number): void {
    for (const [peer, r] of [...this.#byPeer]) {
      if (nowMs <= r.progressDeadlineMs) { continue }
      this.#byPeer.delete(peer)
      this.#tooSlow++
      this.#notifyDropped(peer, r.owner, 'snapshot-too-slow')
    }
  }

  /** When `peer` is the leader: evicts another peer's reassembly, the one whose progress is due first. */
  #evictForLeader (peer: string): boolean {
    if (this.#hooks.isLeader?.(peer) !== true) { return false }
    let victim: [string, Reassembly] | undefined
    for (const entry of this.#byPeer) {
      if (victim === undefined || entry[1].progressDeadlineMs < victim[1].progressDeadlineMs) { victim = entry }
    }
    if (victim === undefined) { return false }
    this.#byPeer.delete(victim[0])
    this.#evicted++
    this.#notifyDropped(victim[0], victim[1].owner, 'snapshot-evicted')
    return true
  }

  #notifyDropped (peer: string, owner: object, reason: ReassemblyDropReason): void {
    this.#hooks.onDropped?.(peer, owner, reason)
  }
}
