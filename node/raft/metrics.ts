/**
 * Prometheus metrics of the Raft group, on the node's registry.
 */
import { Counter, Gauge, Histogram } from 'prom-client'
import type { RaftDriverMetrics } from './driver.ts'
import type { RaftTransportStats } from './transport.ts'
import type { KvStats } from '../../protocols/kv/index.ts'
import type { RaftStatus } from '../../protocols/raft/index.ts'
import type { Registry } from 'prom-client'

interface Observed { status: RaftStatus, transport: RaftTransportStats, lastSnapshotIndex: number, kv: KvStats, localHealth: number }

export interface RaftMetrics extends RaftDriverMetrics {
  fsync(durationMs: number, entries: number): void
  /** Where gauges read their values when scraped. */
  observe(source: () => Observed): void
}

export function raftMetrics (registry: Registry): RaftMetrics {
  const registers = [registry]
  const proposals = new Counter({ name: 'accord_raft_proposals_total', help: 'KV commands proposed on this node as leader', registers })
  const commits = new Counter({ name: 'accord_raft_committed_entries_total', help: 'Log entries committed and applied on this node', registers })
  const elections = new Counter({ name: 'accord_raft_elections_total', help: 'Term changes seen by this node (each is an election)', registers })
  const leaderChanges = new Counter({ name: 'accord_raft_leader_changes_total', help: 'Changes of the leader this node follows', registers })
  const silentFollowers = new Counter({ name: 'accord_raft_silent_follower_resets_total', help: 'Times this leader reopened its streams to a follower that sent no answer for a check-quorum period (down, cut off, or its streams stopped carrying data)', registers })
  const leaderConnectionLosses = new Counter({ name: 'accord_raft_leader_connection_losses_total', help: 'Times every connection to the leader closed and this follower campaigned without waiting for the election timeout', registers })
  const snapshotsRejected = new Counter({ name: 'accord_raft_snapshots_rejected_total', help: 'Snapshots received that failed their check (malformed, other KV limits) and were dropped before being stored', registers })
  const fsync = new Histogram({
    name: 'accord_raft_fsync_duration_seconds',
    help: 'Duration of each synced write batch of the Raft log',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1],
    registers
  })
  const fsyncEntries = new Counter({ name: 'accord_raft_fsync_entries_total', help: 'Log entries made durable', registers })
  let source: (() => Observed) | undefined
  // one scrape collects every gauge in turn: read the status once for all of them
  let observed: Observed | undefined
  const observe = (): Observed | undefined => {
    if (observed === undefined && source !== undefined) {
      observed = source()
      setImmediate(() => { observed = undefined })
    }
    return observed
  }
  const gauge = (name: string, help: string, read: (s: Observed) => number): void => {
    // eslint-disable-next-line no-new
    new Gauge({ name, help, registers, collect () { const s = observe(); if (s !== undefined) { this.set(read(s)) } } })
  }
  gauge('accord_raft_term', 'Current term', s => s.status.term)
  gauge('accord_raft_commit_index', 'Commit index', s => s.status.commit)
  gauge('accord_raft_apply_lag_entries', 'Committed entries not yet applied', s => s.status.commit - s.kv.appliedIndex)
  gauge('accord_raft_is_leader', '1 when this node is the leader', s => s.status.role === 'leader' ? 1 : 0)
  gauge('accord_raft_local_health', 'Lifeguard-style local health of this node: 0 while its ticks come on time, up to 8 while its event loop lags (its election timeout is multiplied by 1 + this)', s => s.localHealth)
  gauge('accord_raft_voters', 'Voters in the configuration', s => s.status.conf.voters.length)
  gauge('accord_raft_transport_messages_sent', 'Raft messages written to streams', s => s.transport.messagesSent)
  gauge('accord_raft_transport_messages_received', 'Raft messages received', s => s.transport.messagesReceived)
  gauge('accord_raft_transport_dropped', 'Raft messages dropped (all reasons)', s => Object.values(s.transport.dropped).reduce((a, b) => a + b, 0))
  gauge('accord_raft_snapshot_index', 'Index of the last snapshot this node took or installed', s => s.lastSnapshotIndex)
  gauge('accord_raft_transport_snapshots_sent', 'Snapshots sent to followers behind the compacted log', s => s.transport.snapshotsSent)
  gauge('accord_raft_transport_snapshots_received', 'Snapshots received from the leader', s => s.transport.snapshotsReceived)
  gauge('accord_raft_transport_snapshots_evicted', 'Snapshots being received from another peer, dropped to make room for the leader\'s', s => s.transport.snapshotsEvicted)
  gauge('accord_kv_keys', 'Keys in the KV store', s => s.kv.keys)
  gauge('accord_kv_data_bytes', 'Key and value bytes in the KV store (what dataBytesMax bounds)', s => s.kv.dataBytes)
  gauge('accord_kv_sessions', 'Client sessions the KV store remembers (sessionsMax bounds them)', s => s.kv.sessions)
  gauge('accord_raft_transport_frames_rejected', 'Malformed or unauthorized Raft frames rejected', s => Object.values(s.transport.framesRejected).reduce((a, b) => a + b, 0))
  return {
    onProposal: () => { proposals.inc() },
    onCommit: (entries) => { commits.inc(entries) },
    onElection: () => { elections.inc() },
    onLeaderChange: () => { leaderChanges.inc() },
    onLeaderConnectionLost: () => { leaderConnectionLosses.inc() },
    onSilentFollower: () => { silentFollowers.inc() },
    onSnapshotRejected: () => { snapshotsRejected.inc() },
    fsync: (durationMs, entries) => {
      fsync.observe(durationMs / 1000)
      fsyncEntries.inc(entries)
    },
    observe: (read) => { source = read }
  }
}
