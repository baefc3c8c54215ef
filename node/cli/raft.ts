import { UserError } from '../errors.ts'
import { apiRequest, resolveApiTarget } from './api-client.ts'
import { parseFlagsAndPositionals } from './args.ts'
import { MIGRATE_HELP, migrateCommand } from './raft-migrate.ts'
import { FORCE_NEW_CLUSTER_HELP, forceNewClusterCommand } from './raft-recover.ts'
import type { RaftSummary } from '../raft/service.ts'

export const RAFT_HELP = `Usage: accord raft <command> [PEER-ID] [flags]

Inspect and change the Raft group through a node's HTTP API. Changes are
carried out by the leader, one at a time.

  accord raft members                  voters, learners, leader and progress
  accord raft add-learner PEER-ID      add a node that receives the log but does not vote
  accord raft promote PEER-ID          make a caught-up learner a voter
  accord raft remove PEER-ID           remove a node (it may be down)
  accord raft transfer-leader PEER-ID  hand leadership to a voter
  accord raft force-new-cluster ...    DANGER: recover from a lost quorum, offline
                                       (accord raft force-new-cluster --help)
  accord raft migrate --data-dir DIR   carry a Raft store of storage format 1
                                       (LevelDB) over to format 2, offline
                                       (accord raft migrate --help)

  --api URL | --data-dir DIR | --token T   as for accord status
`

export async function raftCommand (args: string[]): Promise<void> {
  const [action, ...rest] = args
  if (action === 'force-new-cluster') {
    if (rest.includes('--help')) {
      process.stdout.write(FORCE_NEW_CLUSTER_HELP)
      return
    }
    await forceNewClusterCommand(rest)
    return
  }
  if (action === 'migrate') {
    if (rest.includes('--help')) {
      process.stdout.write(MIGRATE_HELP)
      return
    }
    await migrateCommand(rest)
    return
  }
  const changes = ['add-learner', 'promote', 'remove', 'transfer-leader']
  if (action !== 'members' && !changes.includes(action ?? '')) { throw new UserError('raft: expected members, add-learner, promote, remove or transfer-leader') }
  const { values: flags, positionals } = parseFlagsAndPositionals(`raft ${action}`, rest, {
    api: { type: 'string' }, 'data-dir': { type: 'string' }, token: { type: 'string' }
  }, changes.includes(action) ? 1 : 0)
  const node = positionals[0]
  if (changes.includes(action) && node === undefined) { throw new UserError(`raft ${action}: a PEER-ID is required`) }
  const target = await resolveApiTarget(flags)

  const response = action === 'members'
    ? await apiRequest(target, 'GET', '/v1/raft/members')
    : action === 'transfer-leader'
      ? await apiRequest(target, 'POST', '/v1/raft/transfer-leader', { body: JSON.stringify({ to: node }) })
      : await apiRequest(target, 'POST', '/v1/raft/members', { body: JSON.stringify({ action, node }) })
  if (response.status === 404) { throw new UserError('raft: this node runs without Raft (--raft off)') }
  if (response.status >= 300) { throw new UserError(`raft ${action}: ${response.status} ${String(response.json.error ?? '')}`) }
  if (action === 'transfer-leader') {
    process.stdout.write(`transferring leadership to ${String(node)}\n`)
    return
  }
  process.stdout.write(formatMembers(response.json as RaftSummary))
}

function formatMembers (s: RaftSummary): string {
  const lines = [`term ${s.term}, leader ${s.leader ?? 'none'}, commit ${s.commit}, applied ${s.applied}${s.joint ? ', joint configuration' : ''}`]
  for (const [kind, ids] of [['voter', s.voters], ['learner', s.learners]] as const) {
    for (const id of ids) {
      const p = s.progress?.[id]
      lines.push(`  ${kind.padEnd(7)} ${id}${id === s.leader ? ' (leader)' : ''}${p != null ? ` match ${p.match} ${p.state}` : ''}`)
    }
  }
  return lines.join('\n') + '\n'
}
