import { UserError } from '../errors.ts'
import { apiRequest, resolveApiTarget } from './api-client.ts'
import { parseFlags } from './args.ts'
import type { NodeStatus } from '../accord-node.ts'

export const STATUS_HELP = `Usage: accord status [--api URL | --data-dir DIR] [--token T] [--json]

Show a node's status: identity, addresses, cluster members and connections.
  --api URL        the node's HTTP API (default http://127.0.0.1:7070)
  --data-dir DIR   find the API (and its token) of the node running from DIR
  --token T        bearer token (also ACCORD_API_TOKEN)
  --json           print the raw JSON
`

export async function statusCommand (args: string[]): Promise<void> {
  const flags = parseFlags('status', args, {
    api: { type: 'string' },
    'data-dir': { type: 'string' },
    token: { type: 'string' },
    json: { type: 'boolean' }
  })
  const target = await resolveApiTarget(flags)
  const { status, json } = await apiRequest(target, 'GET', '/v1/status')
  if (status !== 200) { throw new UserError(`status: the API answered ${status}: ${String(json.error ?? '')}`) }
  if (flags.json === true) {
    process.stdout.write(JSON.stringify(json, null, 2) + '\n')
    return
  }
  process.stdout.write(formatStatus(json as NodeStatus))
}

export function formatStatus (s: NodeStatus): string {
  const lines = [
    `peer id    ${s.peerId}`,
    `version    ${s.version}`,
    `cluster    ${s.cluster} (${s.mode} discovery)`,
    `admission  cluster key ${s.admission.clusterKeyId ?? 'none yet (joining)'}${s.admission.groupKey != null ? `, group key ${s.admission.groupKey.slice(0, 16)}` : ''}, ${s.admission.admittedPeers.length} peer(s) admitted`,
    `uptime     ${Math.round(s.uptimeMs / 1000)} s`,
    `api        ${s.api ?? 'off'}`,
    `dht table  ${s.dhtRoutingTableSize} peers`,
    'addresses',
    ...s.addresses.map(a => `  ${a}`),
    ...membersLines(s),
    metadataLine(s),
    // (a node of an older version has no crdt in its status)
    ...(s.crdt == null ? [] : [`crdt       ${s.crdt.count} of at most ${s.crdt.crdtsMax}; anti-entropy every ${(s.crdt.syncIntervalMs / 1000).toFixed(1)} s${s.crdt.writers == null ? '' : `; ${s.crdt.writers.length} writer(s) allowed`}`]),
    `connections ${s.peers.length}`,
    ...s.peers.map(p => `  ${p.peerId} ${p.encryption.join(',')} ${p.multiplexer.join(',')}${p.member ? ' member' : ''}`),
    ...(s.raft == null
      ? ['raft       off']
      : [
          `raft       ${s.raft.role}, term ${s.raft.term}, leader ${s.raft.leader ?? 'none'}`,
          `           commit ${s.raft.commit}, applied ${s.raft.applied}, last snapshot ${s.raft.lastSnapshotIndex}`,
          `           ${s.raft.voters.length} voters, ${s.raft.learners.length} learners${s.raft.joint ? ' (joint)' : ''}${s.raft.formed === false ? `; ${s.raft.formation ?? 'raft group not formed'}` : ''}`
        ]),
    ...bftLines(s)
  ]
  return lines.join('\n') + '\n'
}

/** The PBFT replica (or learner): view, primary, epoch, checkpoints and who it isolated. */
function bftLines (s: NodeStatus): string[] {
  const b = s.bft
  if (b == null) { return ['bft        off'] }
  const head = `bft        ${b.role}, n ${b.n}, f ${b.f}`
  if (b.role === 'client') { return [head] }
  return [
    `${head}, view ${String(b.view)}${b.viewChanging ? ' (changing)' : ''}, primary ${b.primary ?? 'none'}`,
    `           epoch ${String(b.epoch)}, stable checkpoint ${String(b.stableCheckpoint)}, watermarks ${String(b.lowWatermark)}..${String(b.highWatermark)}, executed ${String(b.executed)}`,
    ...(b.compactCheckpoints ? [`           compact checkpoint certificates: one signature of group key ${b.checkpointGroupKey ?? ''}`] : []),
    ...(b.pending === null ? [] : [`           epoch ${b.pending.epoch} decided: ${b.pending.replicas.length} replicas, in force past seq ${b.pending.afterSeq}`]),
    ...(b.isolated.length === 0 ? [] : [`           isolated: ${b.isolated.map(i => `${i.peerId} (${i.reason})`).join(', ')}`])
  ]
}

/** The cluster-metadata store, and the gossip parameters adaptive tuning chose for it. */
function metadataLine (s: NodeStatus): string {
  const m = s.metadata
  if (m == null) { return 'metadata   off' }
  const tuning = m.adaptive ? `adaptive, ${Math.round(m.duplicateRate * 100)}% duplicates` : 'fixed'
  return `metadata   ${m.nodes} nodes, ${m.entries} entries; anti-entropy ${m.mode}, fanout ${m.fanout} every ${(m.intervalMs / 1000).toFixed(1)} s (${tuning})`
}

/** Each member with its membership state (SWIM) and whether discovery keeps a connection to it. */
function membersLines (s: NodeStatus): string[] {
  const states = new Map((s.membership ?? []).filter(m => m.peerId !== s.peerId).map(m => [m.peerId, m.state]))
  const connected = new Map(s.members.map(m => [m.peerId, m.connected]))
  const ids = [...new Set([...states.keys(), ...connected.keys()])].sort()
  const counts = new Map<string, number>()
  for (const state of states.values()) { counts.set(state, (counts.get(state) ?? 0) + 1) }
  const summary = [...counts].map(([state, n]) => `${n} ${state}`).join(', ')
  return [
    `members    ${ids.length}${summary === '' ? '' : ` (${summary})`}`,
    ...ids.map(id => `  ${id} ${states.get(id) ?? 'unknown'}, ${connected.get(id) === true ? 'connected' : 'disconnected'}`)
  ]
}
