/** Protocol id and limits of the Raft transport (protocol ids are versioned: a change of wire format gets a new id). */
import { KV_DEFAULTS, kvSnapshotBytesMax } from '../../protocols/kv/index.ts'
import { FRAME_BYTES_MAX, SNAPSHOT_CHUNK_BYTES } from './codec.ts'

export const RAFT_PROTOCOL = '/accord/raft/1.0.0'

const KIB = 1024
const MIB = 1024 * KIB

export interface RaftTransportLimits {
  /** Messages queued per peer; when full the oldest is dropped (see node/outbound-queue.ts). */
  outboundQueueMessagesMax: number
  /** Encoded bytes queued per peer (at least FRAME_BYTES_MAX, so any frame fits). */
  outboundQueueBytesMax: number
  /**
   * Largest snapshot data either side sends or reassembles. The default is
   * the largest snapshot a KV store with KV_DEFAULTS can produce
   * (kvSnapshotBytesMax, 389 MiB), so any follower can catch up; a node
   * whose store has other limits passes kvSnapshotBytesMax(its limits).
   */
  snapshotBytesMax: number
  /** Snapshot data bytes per chunk frame. */
  snapshotChunkBytes: number
  /** Snapshots being reassembled at once, across all peers (one per peer at most; the leader's always finds room). */
  snapshotReassembliesMax: number
  /**
   * A snapshot being reassembled must receive another snapshotChunkBytes
   * (or its last bytes) within this long of its begin frame, and of each
   * time it did, or it is dropped: a minimum rate, below a sender's (which
   * gives up a chunk it cannot write within its writeTimeoutMs: keep this
   * above that), that a peer dripping a byte every few seconds to hold a
   * slot does not meet.
   */
  snapshotProgressTimeoutMs: number
  /** Peers with outbound state (queue, stream, backoff). */
  peersMax: number
  /** Small frames coalesced into one write, in bytes. */
  writeBatchBytesMax: number
  /**
   * An inbound stream with no frame for this long is closed (the sender
   * reopens on its next message). Set it to a few election timeouts: a
   * leader's heartbeats keep its streams busy, idle follower-to-follower
   * streams are released.
   */
  readIdleTimeoutMs: number
  /** A write (one frame or batch) that cannot be flushed for this long fails its stream. */
  writeTimeoutMs: number
  /** Dial plus protocol negotiation of an outbound stream. */
  dialTimeoutMs: number
  /** Wait after the first failed dial or stream; doubles per consecutive failure up to the max. */
  reconnectBackoffMinMs: number
  reconnectBackoffMaxMs: number
  /** Graceful close of each stream on stop() before it is aborted. */
  streamCloseTimeoutMs: number
  /** Registrar limits per connection: one long-lived stream each way, plus room for a replacement. */
  maxInboundStreams: number
  maxOutboundStreams: number
}

export const RAFT_TRANSPORT_DEFAULTS: Readonly<RaftTransportLimits> = {
  outboundQueueMessagesMax: 4096,
  outboundQueueBytesMax: 64 * MIB,
  snapshotBytesMax: kvSnapshotBytesMax(KV_DEFAULTS),
  snapshotChunkBytes: SNAPSHOT_CHUNK_BYTES,
  snapshotReassembliesMax: 2,
  snapshotProgressTimeoutMs: 20_000,
  peersMax: 1024,
  writeBatchBytesMax: 256 * KIB,
  readIdleTimeoutMs: 30_000,
  writeTimeoutMs: 10_000,
  dialTimeoutMs: 5_000,
  reconnectBackoffMinMs: 100,
  reconnectBackoffMaxMs: 5_000,
  streamCloseTimeoutMs: 1_000,
  maxInboundStreams: 4,
  maxOutboundStreams: 2
}

/** Fills defaults and rejects limits that cannot work (a programming error: throws RangeError). */
export function resolveLimits (init: Partial<RaftTransportLimits>): RaftTransportLimits {
  const limits: RaftTransportLimits = { ...RAFT_TRANSPORT_DEFAULTS }
  for (const [key, value] of Object.entries(init) as Array<[keyof RaftTransportLimits, number | undefined]>) {
    if (!(key in RAFT_TRANSPORT_DEFAULTS)) { continue }
    if (value === undefined) { continue }
    if (!Number.isSafeInteger(value) || value < 1) { throw new RangeError(`raft transport: ${key} must be a positive integer, got ${String(value)}`) }
    limits[key] = value
  }
  if (limits.outboundQueueBytesMax < FRAME_BYTES_MAX) { throw new RangeError(`raft transport: outboundQueueBytesMax must be at least FRAME_BYTES_MAX (${FRAME_BYTES_MAX})`) }
  if (limits.snapshotChunkBytes > FRAME_BYTES_MAX - 64) { throw new RangeError('raft transport: snapshotChunkBytes must leave room for the frame header') }
  if (limits.reconnectBackoffMaxMs < limits.reconnectBackoffMinMs) { throw new RangeError('raft transport: reconnectBackoffMaxMs must be at least reconnectBackoffMinMs') }
  return limits
}
