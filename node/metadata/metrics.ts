/**
 * Prometheus metrics of the cluster-metadata store (anti-entropy), on the
 * node's registry: its messages and bytes, and, read when scraped, its
 * store and the parameters adaptive tuning chose.
 */
import { Counter, Gauge } from 'prom-client'
import type { AntiEntropyStatus } from '../../protocols/gossip/index.ts'
import type { DatagramCounters } from '../datagram.ts'
import type { Registry } from 'prom-client'

export interface MetadataMetrics extends DatagramCounters {
  /** Where gauges read their values when scraped. */
  observe(source: () => AntiEntropyStatus, tickMs: number): void
}

export function metadataMetrics (registry: Registry): MetadataMetrics {
  const registers = [registry]
  const messagesSent = new Counter({ name: 'accord_metadata_messages_sent_total', help: 'Anti-entropy messages sent, by type', labelNames: ['type'], registers })
  const bytesSent = new Counter({ name: 'accord_metadata_bytes_sent_total', help: 'Bytes of anti-entropy messages sent (frames, without stream overhead)', registers })
  const bytesReceived = new Counter({ name: 'accord_metadata_bytes_received_total', help: 'Bytes of anti-entropy messages received', registers })
  const dropped = new Counter({ name: 'accord_metadata_sends_dropped_total', help: 'Anti-entropy messages not sent: too many sends in flight, a bad recipient id, or the peer could not be reached in time', labelNames: ['reason'], registers })
  let source: (() => AntiEntropyStatus) | undefined
  let tick = 0
  const gauge = (name: string, help: string, read: (s: AntiEntropyStatus) => number): void => {
    // eslint-disable-next-line no-new
    new Gauge({ name, help, registers, collect () { if (source !== undefined) { this.set(read(source())) } } })
  }
  gauge('accord_metadata_fanout', 'Peers contacted per anti-entropy round (adaptive tuning\'s current choice)', s => s.fanout)
  gauge('accord_metadata_interval_seconds', 'Time between anti-entropy rounds (adaptive tuning\'s current choice)', s => s.intervalTicks * tick / 1000)
  gauge('accord_metadata_duplicate_rate', 'Share of entries received that this node already held (recent rounds)', s => s.duplicateRate)
  gauge('accord_metadata_nodes', 'Nodes whose entries this node holds, itself included', s => s.nodes)
  gauge('accord_metadata_entries', 'Entries held (values and deletions) over all nodes', s => s.entries)
  gauge('accord_metadata_bytes', 'Bytes of keys and values held over all nodes', s => s.bytes)
  return {
    sent: (type, bytes) => { messagesSent.inc({ type }); bytesSent.inc(bytes) },
    received: (bytes) => { bytesReceived.inc(bytes) },
    dropped: (reason) => { dropped.inc({ reason }) },
    observe: (read, tickMs) => { source = read; tick = tickMs }
  }
}
