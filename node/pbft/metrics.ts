/**
 * Prometheus metrics of the PBFT replica and its transport, on the node's
 * registry. `reason` labels are fixed words (the core's StepRejectReason or
 * the transport's PbftFrameRejectReason), never remote input.
 */
import { Counter, Gauge } from 'prom-client'
import type { PbftDriverMetrics } from './driver.ts'
import type { PbftFrameRejectReason } from './transport.ts'
import type { PbftStatus, StepRejectReason } from '../../protocols/pbft/types.ts'
import type { Registry } from 'prom-client'

export interface PbftMetrics extends PbftDriverMetrics {
  onRejected(reason: StepRejectReason | PbftFrameRejectReason): void
  /** Where the gauges read the replica's status when scraped. */
  observe(status: () => PbftStatus | null): void
  /** A checkpoint's partial threshold signature did not verify under its sender's public share. */
  onBadCheckpointPartial(): void
}

export function pbftMetrics (registry: Registry): PbftMetrics {
  const registers = [registry]
  const viewChanges = new Counter({ name: 'accord_pbft_view_changes_total', help: 'Views this replica entered (each a view change started or completed)', registers })
  const rejected = new Counter({ name: 'accord_pbft_rejected_total', help: 'PBFT messages rejected, by reason (core and transport)', labelNames: ['reason'], registers })
  const evidence = new Counter({ name: 'accord_pbft_evidence_total', help: 'Evidence of misbehaviour produced here or received (and verified) from the evidence topic', labelNames: ['direction'], registers })
  const executed = new Counter({ name: 'accord_pbft_executed_requests_total', help: 'Client requests executed by this replica', registers })
  const badPartials = new Counter({ name: 'accord_pbft_bad_checkpoint_partials_total', help: 'Checkpoint partial signatures (compact certificates) that did not verify under their sender\'s public share', registers })
  const statesInstalled = new Counter({ name: 'accord_pbft_state_transfers_total', help: 'States of stable checkpoints fetched from other replicas and installed here', registers })
  let lag = 0
  let status: (() => PbftStatus | null) | undefined
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'accord_pbft_checkpoint_lag',
    help: 'Batches executed beyond the last stable checkpoint (what a garbage collection would free)',
    registers,
    collect () {
      const s = status?.()
      this.set(s != null ? Math.max(0, s.executed - s.stableCheckpoint) : lag)
    }
  })
  // eslint-disable-next-line no-new
  new Gauge({ name: 'accord_pbft_view', help: 'The view this replica is in', registers, collect () { const s = status?.(); if (s != null) { this.set(s.view) } } })
  // eslint-disable-next-line no-new
  new Gauge({ name: 'accord_pbft_isolated_peers', help: 'Peers this replica isolated (blocklist)', registers, collect () { const s = status?.(); if (s != null) { this.set(s.isolated.length) } } })
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'accord_pbft_peer_score',
    help: 'Suspicion without proof of each other replica: 100 trusted, down to 0 (a primary at suspicionViewChangeScore is replaced)',
    labelNames: ['peer'],
    registers,
    collect () {
      // one series per replica of the set: bounded by n
      for (const { peer, score } of status?.()?.scores ?? []) { this.set({ peer }, score) }
    }
  })
  return {
    onViewChange: () => { viewChanges.inc() },
    onRejected: (reason) => { rejected.inc({ reason }) },
    onEvidence: (direction) => { evidence.inc({ direction }) },
    onCheckpoint: (stableSeq, executedSeq) => { lag = Math.max(0, executedSeq - stableSeq) },
    onExecuted: (requests) => { executed.inc(requests) },
    onStateInstalled: () => { statesInstalled.inc() },
    observe: (read) => { status = read },
    onBadCheckpointPartial: () => { badPartials.inc() }
  }
}
