/**
 * Prometheus metrics of the membership service, on the node's registry.
 */
import { Counter, Gauge, Histogram } from 'prom-client'
import type { MembershipStatus } from '../../protocols/membership/index.ts'
import type { Registry } from 'prom-client'

export interface MembershipMetrics {
  sent(type: string, bytes: number): void
  received(bytes: number): void
  dropped(reason: 'sends-full' | 'bad-recipient' | 'no-address' | 'unreachable'): void
  event(type: string): void
  /** This node refuted a suspicion of itself: a false positive of whoever suspected it. */
  refuted(): void
  /** A message on the membership topic: published, or received and accepted, rejected or ignored (gossip.ts). */
  gossip(result: 'published' | 'accepted' | 'rejected' | 'ignored'): void
  probeRtt(ms: number): void
  /** Where gauges read their values when scraped. */
  observe(source: () => MembershipStatus): void
}

export function membershipMetrics (registry: Registry): MembershipMetrics {
  const registers = [registry]
  const messagesSent = new Counter({ name: 'accord_membership_messages_sent_total', help: 'SWIM messages sent, by type', labelNames: ['type'], registers })
  const bytesSent = new Counter({ name: 'accord_membership_bytes_sent_total', help: 'Bytes of SWIM messages sent (frames, without stream overhead)', registers })
  const bytesReceived = new Counter({ name: 'accord_membership_bytes_received_total', help: 'Bytes of SWIM messages received', registers })
  const dropped = new Counter({ name: 'accord_membership_sends_dropped_total', help: 'SWIM messages not sent: too many sends in flight, a bad recipient id, no known address, or the peer could not be reached in time', labelNames: ['reason'], registers })
  const events = new Counter({ name: 'accord_membership_events_total', help: 'Membership changes seen by this node (member:join, member:suspect, member:dead...)', labelNames: ['type'], registers })
  const refutations = new Counter({ name: 'accord_membership_refutations_total', help: 'Suspicions of this node that it refuted: each a false positive, since it was alive to refute', registers })
  const gossip = new Counter({ name: 'accord_membership_gossip_messages_total', help: 'Messages on the membership gossipsub topic: published by this node, or received and accepted, rejected (the sender is penalised) or ignored', labelNames: ['result'], registers })
  const rtt = new Histogram({
    name: 'accord_membership_probe_rtt_seconds',
    help: 'Round trip of direct probes (ping to ack)',
    buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2],
    registers
  })
  let source: (() => MembershipStatus) | undefined
  const gauge = (name: string, help: string, read: (s: MembershipStatus) => number): void => {
    // eslint-disable-next-line no-new
    new Gauge({ name, help, registers, collect () { if (source !== undefined) { this.set(read(source())) } } })
  }
  gauge('accord_membership_live_members', 'Members alive or suspect in this node\'s view, itself included', s => s.liveMembers)
  gauge('accord_membership_suspicions', 'Members this node suspects now', s => s.suspicions)
  gauge('accord_membership_health_multiplier', 'Lifeguard\'s local health multiplier (0 healthy; probe interval and timeout scale by it + 1)', s => s.healthMultiplier)
  gauge('accord_membership_probe_interval_ticks', 'The current protocol period, in ticks', s => s.probeIntervalTicks)
  gauge('accord_membership_suspicions_started', 'Suspicions this node took on: started by its own probes or heard from others', s => s.counters.suspicionsStarted)
  gauge('accord_membership_messages_rejected', 'Messages received and rejected (malformed, too large, or not acted on)', s => s.counters.invalidMessages + s.counters.rejectedMessages)
  return {
    sent: (type, bytes) => { messagesSent.inc({ type }); bytesSent.inc(bytes) },
    received: (bytes) => { bytesReceived.inc(bytes) },
    dropped: (reason) => { dropped.inc({ reason }) },
    event: (type) => { events.inc({ type }) },
    refuted: () => { refutations.inc() },
    gossip: (result) => { gossip.inc({ result }) },
    probeRtt: (ms) => { rtt.observe(ms / 1000) },
    observe: (read) => { source = read }
  }
}
