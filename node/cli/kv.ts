import { UserError } from '../errors.ts'
import { apiRequest, resolveApiTarget } from './api-client.ts'
import { parseFlagsAndPositionals } from './args.ts'

export const KV_HELP = `Usage: accord kv <put|get|del|cas> KEY [VALUE] [flags]

Read and write the replicated KV store through a node's HTTP API.
Writes go to the Raft leader wherever they are sent.

  accord kv put KEY VALUE
  accord kv get KEY [--consistency linearizable|lease|stale]
  accord kv del KEY
  accord kv cas KEY --expected OLD|--absent VALUE

  --api URL        the node's HTTP API (default http://127.0.0.1:7070)
  --data-dir DIR   find the API (and its token) of the node running from DIR
  --token T        bearer token (also ACCORD_API_TOKEN)
`

export async function kvCommand (args: string[]): Promise<void> {
  const [action, ...rest] = args
  if (action === undefined || !['put', 'get', 'del', 'cas'].includes(action)) { throw new UserError('kv: expected put, get, del or cas (see accord kv --help)') }
  const takesValue = action === 'put' || action === 'cas'
  const { values: flags, positionals } = parseFlagsAndPositionals(`kv ${action}`, rest, {
    api: { type: 'string' },
    'data-dir': { type: 'string' },
    token: { type: 'string' },
    consistency: { type: 'string' },
    expected: { type: 'string' },
    absent: { type: 'boolean' }
  }, takesValue ? 2 : 1)
  const [key, value] = positionals
  if (key === undefined) { throw new UserError(`kv ${action}: a KEY is required`) }
  // a flag meant for another action must not be dropped silently (put --expected would overwrite blindly)
  if (action !== 'cas' && (flags.expected !== undefined || flags.absent === true)) { throw new UserError(`kv ${action}: --expected and --absent belong to kv cas`) }
  if (action !== 'get' && flags.consistency !== undefined) { throw new UserError(`kv ${action}: --consistency belongs to kv get`) }
  const target = await resolveApiTarget(flags)
  const path = `/v1/kv/${encodeURIComponent(key)}`
  if ((action === 'put' || action === 'cas') && value === undefined) { throw new UserError(`kv ${action}: a VALUE is required`) }

  let response: { status: number, json: any }
  switch (action) {
    case 'put':
      response = await apiRequest(target, 'PUT', path, { body: value })
      break
    case 'get':
      response = await apiRequest(target, 'GET', `${path}?consistency=${encodeURIComponent(flags.consistency ?? 'linearizable')}`)
      break
    case 'del':
      response = await apiRequest(target, 'DELETE', path)
      break
    default: {
      if ((flags.expected === undefined) === (flags.absent !== true)) { throw new UserError('kv cas: give exactly one of --expected OLD or --absent') }
      response = await apiRequest(target, 'POST', `${path}/cas`, { body: JSON.stringify({ expected: flags.expected ?? null, value }) })
    }
  }
  if (response.status === 200) {
    process.stdout.write(action === 'get' ? `${String(response.json.value)}\n` : `ok (index ${String(response.json.index)})\n`)
    return
  }
  if (response.status === 409 && response.json.error === 'cas-mismatch') {
    throw new UserError(`kv cas: the current value is ${response.json.current === null ? 'absent' : JSON.stringify(response.json.current)}`)
  }
  const leader = response.json.leader !== undefined ? ` (leader: ${String(response.json.leader)})` : ''
  throw new UserError(`kv ${action}: ${response.status} ${String(response.json.error ?? '')}${leader}`)
}
