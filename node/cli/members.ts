import { UserError } from '../errors.ts'
import { apiRequest, resolveApiTarget } from './api-client.ts'
import { parseFlagsAndPositionals } from './args.ts'
import type { MemberView } from '../membership/routes.ts'

export const MEMBERS_HELP = `Usage: accord members [--json] [flags]

Show the cluster's members as this node's membership protocol (SWIM) sees
them: alive, suspect, dead or left, with each one's incarnation, version
and API address. The node itself is listed too.

  --json             print the answer of GET /v1/members as it is
  --api URL | --data-dir DIR | --token T   which node to ask, as for accord status
`

export async function membersCommand (args: string[]): Promise<void> {
  const { values: flags } = parseFlagsAndPositionals('members', args, {
    json: { type: 'boolean' }, api: { type: 'string' }, 'data-dir': { type: 'string' }, token: { type: 'string' }
  }, 0)
  const target = await resolveApiTarget(flags)
  const response = await apiRequest(target, 'GET', '/v1/members')
  if (response.status !== 200) { throw new UserError(`members: ${response.status} ${String(response.json.error ?? '')}`) }
  if (flags.json === true) {
    process.stdout.write(`${JSON.stringify(response.json, null, 2)}\n`)
    return
  }
  process.stdout.write(membersTable(response.json.members as MemberView[]))
}

export function membersTable (members: MemberView[]): string {
  const rows = [['peer id', 'state', 'incarnation', 'version', 'api']]
  for (const m of members) {
    rows.push([m.peerId, m.state, String(m.incarnation), String(m.meta.version ?? ''), String(m.meta.api ?? '')])
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  return rows.map(r => r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n'
}
