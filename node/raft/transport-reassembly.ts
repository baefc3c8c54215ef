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
 */
import type { SnapshotMessage } from '../../protocols/raft/index.ts'

export type ReassemblyRejectReason =
  /** The declared snapshot size exceeds snapshotBytesMax. */
  | 'snapshot-too-large'
  /** reassembliesMax reassemblies are already in progress for other peers. */
  | 'snapshot-busy'
  /** A chunk without a begin, or a begin/message in the middle of a reassembly on the same stream. */
  | 'unexpected-frame'
  /** Chunks add up to more than the declared size. */
  | 'snapshot-overrun'

export type ReassemblyResult =
  | { ok: true, complete?: SnapshotMessage }
  | { ok: false, reason: ReassemblyRejectReason }

export interface ReassemblyLimits {
  snapshotBytesMax: number
  reassembliesMax: number
}

interface Reassembly {
  /** The stream the chunks must arrive on. */
  owner: object
  message: SnapshotMessage
  dataBytes: number
  chunks: Uint8Array[]
  receivedBytes: number
}

export class SnapshotReassembler {
  readonly #limits: ReassemblyLimits
  readonly #byPeer = new Map<string, Reassembly>()
  #superseded = 0

  constructor (limits: ReassemblyLimits) {
    if (!Number.isSafeInteger(limits.snapshotBytesMax) || limits.snapshotBytesMax < 0) { throw new RangeError('snapshotBytesMax must be a non-negative integer') }
    if (!Number.isSafeInteger(limits.reassembliesMax) || limits.reassembliesMax < 1) { throw new RangeError('reassembliesMax must be a positive integer') }
    this.#limits = limits
  }

  /** Reassemblies in progress. */
  get size (): number { return this.#byPeer.size }

  /** Snapshot bytes buffered across all reassemblies. */
  get bufferedBytes (): number {
    let total = 0
    for (const r of this.#byPeer.values()) { total += r.receivedBytes }
    return total
  }

  /** Reassemblies replaced by a newer begin from the same peer. */
  get superseded (): number { return this.#superseded }

  /** Whether `owner` (a stream) is in the middle of a snapshot: then only chunks may follow. */
  isOpen (peer: string, owner: object): boolean {
    return this.#byPeer.get(peer)?.owner === owner
  }

  begin (peer: string, owner: object, message: SnapshotMessage, dataBytes: number): ReassemblyResult {
    if (dataBytes > this.#limits.snapshotBytesMax) { return { ok: false, reason: 'snapshot-too-large' } }
    const current = this.#byPeer.get(peer)
    if (current?.owner === owner) { return { ok: false, reason: 'unexpected-frame' } }
    if (current !== undefined) {
      this.#byPeer.delete(peer)
      this.#superseded++
    } else if (this.#byPeer.size >= this.#limits.reassembliesMax) {
      return { ok: false, reason: 'snapshot-busy' }
    }
    if (dataBytes === 0) { return { ok: true, complete: message } }
    this.#byPeer.set(peer, { owner, message, dataBytes, chunks: [], receivedBytes: 0 })
    return { ok: true }
  }

  chunk (peer: string, owner: object, data: Uint8Array): ReassemblyResult {
    const r = this.#byPeer.get(peer)
    if (r === undefined || r.owner !== owner) { return { ok: false, reason: 'unexpected-frame' } }
    if (r.receivedBytes + data.byteLength > r.dataBytes) {
      this.#byPeer.delete(peer)
      return { ok: false, reason: 'snapshot-overrun' }
    }
    r.chunks.push(data)
    r.receivedBytes += data.byteLength
    if (r.receivedBytes < r.dataBytes) { return { ok: true } }
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
}
