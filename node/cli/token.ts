import { UserError } from '../errors.ts'
import { apiRequest, resolveApiTarget } from './api-client.ts'
import { parseFlagsAndPositionals } from './args.ts'

export const TOKEN_HELP = `Usage: accord token create [--ttl DURATION] [flags]

Make a join token on a member of the cluster: a new node joins with
  accord start --bootstrap <member address> --join-token TOKEN
A token admits any number of nodes until it expires; keep it secret.

  --ttl DURATION     lifetime: 30s, 15m, 1h, 2d (default 1h, at most 7d)
  --api URL | --data-dir DIR | --token T   which node to ask, as for accord status
`

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 }

/** "90s", "15m", "1h", "2d" → seconds. */
export function parseDuration (text: string, flag: string): number {
  const match = /^(\d{1,9})([smhd])$/.exec(text)
  if (match == null) { throw new UserError(`${flag} "${text}" is not a duration (30s, 15m, 1h, 2d)`) }
  return Number(match[1]) * UNIT_SECONDS[match[2]]
}

export async function tokenCommand (args: string[]): Promise<void> {
  const [action, ...rest] = args
  if (action !== 'create') { throw new UserError('token: expected "create" (accord token --help)') }
  const { values: flags } = parseFlagsAndPositionals('token create', rest, {
    ttl: { type: 'string' }, api: { type: 'string' }, 'data-dir': { type: 'string' }, token: { type: 'string' }
  }, 0)
  const ttlSeconds = parseDuration(flags.ttl ?? '1h', '--ttl')
  const target = await resolveApiTarget(flags)
  const response = await apiRequest(target, 'POST', '/v1/admission/tokens', { body: JSON.stringify({ ttlSeconds }) })
  if (response.status !== 200) { throw new UserError(`token create: ${response.status} ${String(response.json.error ?? '')}`) }
  process.stdout.write(`${String(response.json.token)}\n`)
  process.stderr.write(`expires ${String(response.json.expiresAt)}\n`)
}
