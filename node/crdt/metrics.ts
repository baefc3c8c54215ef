/**
 * Prometheus metrics of the CRDT service, on the node's registry: delta
 * bytes published and received, how long joins take, each CRDT's state
 * size and tombstones (read when scraped), what was refused and why,
 * anti-entropy rounds by outcome, and what causal stability collected.
 */
import { Counter, Gauge, Histogram } from 'prom-client'
import type { Registry } from 'prom-client'

/** Why a delta or a synchronised state was not joined (fixed words: they label accord_crdt_deltas_rejected_total). */
export type CrdtRejectReason =
  | 'unsigned'
  | 'not-admitted'
  | 'author-revoked'
  | 'author-unknown'
  | 'not-writer'
  | 'too-large'
  | 'malformed'
  | 'unknown-type'
  | 'type-mismatch'
  | 'limit'

export type CrdtSyncResult = 'ok' | 'failed'

export interface CrdtMetrics {
  /** A gossip message of `bytes` carrying the deltas of `ops` ops went out. */
  deltaSent(bytes: number, ops: number): void
  deltaReceived(bytes: number): void
  /** A join took `seconds`. */
  merged(seconds: number): void
  rejected(reason: CrdtRejectReason): void
  sync(result: CrdtSyncResult, role: 'client' | 'server'): void
  /** Where the gauges read their values when scraped: name -> encoded bytes, and tombstone units held (null: a type without). */
  observe(source: () => Iterable<[string, number, number | null]>): void
  /** Compaction by causal stability removed `units` units of tombstone. */
  collected(units: number): void
  /** Sync sent a peer one CRDT's whole state, or the join of the deltas it lacked, of `bytes`. */
  syncSent(kind: 'state' | 'deltas', bytes: number): void
}

export function crdtMetrics (registry: Registry): CrdtMetrics {
  const registers = [registry]
  const deltaBytes = new Counter({ name: 'accord_crdt_delta_bytes_total', help: 'Bytes of CRDT deltas published by this node (out) and received on the CRDT topics, valid or not (in)', labelNames: ['direction'], registers })
  const deltaMessages = new Counter({ name: 'accord_crdt_delta_messages_total', help: 'Gossip messages of CRDT deltas published by this node (one may carry the deltas of several ops: a batch)', registers })
  const deltaOps = new Counter({ name: 'accord_crdt_delta_ops_total', help: 'Local ops whose deltas this node published on gossip', registers })
  const mergeSeconds = new Histogram({ name: 'accord_crdt_merge_seconds', help: 'Time to decode and join one remote delta or state', buckets: [0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5], registers })
  const rejected = new Counter({ name: 'accord_crdt_deltas_rejected_total', help: 'Remote deltas and synchronised states not joined, by reason', labelNames: ['reason'], registers })
  const syncs = new Counter({ name: 'accord_crdt_sync_rounds_total', help: 'Anti-entropy exchanges over /accord/sync/1.0.0, by role and result', labelNames: ['role', 'result'], registers })
  const syncSent = new Counter({ name: 'accord_crdt_sync_sent_bytes_total', help: 'Bytes of CRDT states and delta groups sent in anti-entropy exchanges, by kind (state: the whole state; deltas: the join of the logged deltas the peer lacked)', labelNames: ['kind'], registers })
  const collected = new Counter({ name: 'accord_crdt_collected_units_total', help: 'Units of rga tombstone removed once causally stable (every member holds their delete)', registers })
  let source: (() => Iterable<[string, number, number | null]>) | undefined
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'accord_crdt_state_bytes',
    help: 'Encoded size of each CRDT\'s state',
    labelNames: ['name'],
    registers,
    collect () {
      this.reset()
      if (source === undefined) { return }
      for (const [name, bytes] of source()) { this.set({ name }, bytes) }
    }
  })
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'accord_crdt_unstable_tombstone_units',
    help: 'Units of rga tombstone held because not every member is known to hold their delete yet',
    labelNames: ['name'],
    registers,
    collect () {
      this.reset()
      if (source === undefined) { return }
      for (const [name, , tombstones] of source()) {
        if (tombstones !== null) { this.set({ name }, tombstones) }
      }
    }
  })
  return {
    deltaSent: (bytes, ops) => {
      deltaBytes.inc({ direction: 'out' }, bytes)
      deltaMessages.inc()
      deltaOps.inc(ops)
    },
    deltaReceived: (bytes) => { deltaBytes.inc({ direction: 'in' }, bytes) },
    merged: (seconds) => { mergeSeconds.observe(seconds) },
    rejected: (reason) => { rejected.inc({ reason }) },
    sync: (result, role) => { syncs.inc({ role, result }) },
    observe: (read) => { source = read },
    collected: (units) => { collected.inc(units) },
    syncSent: (kind, bytes) => { syncSent.inc({ kind }, bytes) }
  }
}
