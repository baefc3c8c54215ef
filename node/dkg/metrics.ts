/**
 * Prometheus metrics of the DKG service, on the node's registry: its
 * datagrams, sessions by outcome, equivocations caught and bad partial
 * signatures. Refused input is counted by admission's refusals.
 */
import { Counter, Gauge } from 'prom-client'
import type { DatagramCounters } from '../datagram.ts'
import type { Registry } from 'prom-client'

export interface DkgMetrics extends DatagramCounters {
  sessions: Counter<'outcome'>
  equivocations: Counter
  badPartials: Counter
}

export function dkgMetrics (registry: Registry, active: () => number): DkgMetrics {
  const registers = [registry]
  const messagesSent = new Counter({ name: 'accord_dkg_messages_sent_total', help: 'DKG datagrams sent, by kind', labelNames: ['type'], registers })
  const bytesSent = new Counter({ name: 'accord_dkg_bytes_sent_total', help: 'Bytes of DKG datagrams sent', registers })
  const bytesReceived = new Counter({ name: 'accord_dkg_bytes_received_total', help: 'Bytes of DKG datagrams received', registers })
  const dropped = new Counter({ name: 'accord_dkg_sends_dropped_total', help: 'DKG datagrams not sent, by reason', labelNames: ['reason'], registers })
  // eslint-disable-next-line no-new
  new Gauge({ name: 'accord_dkg_sessions_active', help: 'DKG sessions not yet done or aborted', registers, collect () { this.set(active()) } })
  return {
    sent: (type, bytes) => { messagesSent.inc({ type }); bytesSent.inc(bytes) },
    received: (bytes) => { bytesReceived.inc(bytes) },
    dropped: (reason) => { dropped.inc({ reason }) },
    sessions: new Counter({ name: 'accord_dkg_sessions_total', help: 'DKG sessions started, done and aborted', labelNames: ['outcome'], registers }),
    equivocations: new Counter({ name: 'accord_dkg_equivocations_total', help: 'Dealers caught signing two different deals in one session', registers }),
    badPartials: new Counter({ name: 'accord_dkg_bad_partials_total', help: 'Partial signatures received that did not verify', registers })
  }
}
