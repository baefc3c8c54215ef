/**
 * Bytes on accord's gossipsub topics, one metric for every service that
 * uses a topic: `accord_gossip_bytes_total{topic,direction}`, direction
 * `out` for what this node published and `in` for what reached it (before
 * validation, so rejected messages count too). Payload bytes only: not
 * gossipsub's framing, signatures or control messages, nor what it
 * forwards for others.
 *
 * Each service asks for the counter on the node's registry; the first
 * creates it, the others get the same one (prom-client refuses a second
 * metric of one name). Labels stay bounded: topics are accord's own,
 * one per cluster and kind.
 */
import { Counter } from 'prom-client'
import type { Registry } from 'prom-client'

export const GOSSIP_BYTES_METRIC = 'accord_gossip_bytes_total'

export type GossipDirection = 'in' | 'out'

export interface GossipMetrics {
  published(topic: string, bytes: number): void
  received(topic: string, bytes: number): void
}

/** The node's gossip byte counter, made on first use. */
export function gossipBytesCounter (registry: Registry): Counter<'topic' | 'direction'> {
  const existing = registry.getSingleMetric(GOSSIP_BYTES_METRIC)
  if (existing instanceof Counter) { return existing as Counter<'topic' | 'direction'> }
  if (existing !== undefined) { throw new Error(`${GOSSIP_BYTES_METRIC} is registered, but not as a counter`) }
  return new Counter({
    name: GOSSIP_BYTES_METRIC,
    help: 'Payload bytes on accord\'s gossipsub topics: published by this node (out) and received by it, valid or not (in)',
    labelNames: ['topic', 'direction'],
    registers: [registry]
  })
}

export function gossipMetrics (registry: Registry): GossipMetrics {
  const bytes = gossipBytesCounter(registry)
  return {
    published: (topic, n) => { bytes.inc({ topic, direction: 'out' }, n) },
    received: (topic, n) => { bytes.inc({ topic, direction: 'in' }, n) }
  }
}
