import { UserError } from '../errors.ts'
import { apiRequest, resolveApiTarget } from './api-client.ts'
import { parseFlagsAndPositionals } from './args.ts'

export const BFT_HELP = `Usage: accord bft <put|get|del|cas> KEY [VALUE] [flags]
       accord bft <isolate|readmit> PEER_ID [flags]
       accord bft approve ID,ID,... [flags]
       accord bft reconfigure ID,ID,... --approval TOKEN ... [flags]

Read and write the Byzantine-fault-tolerant KV store (PBFT) through a node's
HTTP API. The node is the PBFT client: it signs each request with its own key
and answers once f+1 replicas agree (reads: a quorum of read-only replies, or
an ordered read). The node need not be a replica: any node started with the
replica set (--bft-replicas or --bft-genesis) runs a client.

  accord bft put KEY VALUE
  accord bft get KEY
  accord bft del KEY
  accord bft cas KEY --expected OLD|--absent VALUE

The operator's blocklist (the node must be a replica; it acts on its own
blocklist only, persisted in its data directory):

  accord bft isolate PEER_ID   deny the peer and ignore its PBFT messages
  accord bft readmit PEER_ID   take the peer off the blocklist

Changing the replica set (reconfiguration) needs the approvals of a quorum
of the replicas in force (3 of 4, 5 of 7): each of their operators runs
approve on their own node and hands the printed token over; anyone then runs
reconfigure on any node (a replica adds its own approval). The new set orders
from the first checkpoint past the reconfiguration's seq + the watermark
window; a node being added must run as a learner first (accord start
--bft-learner) so that it has the state when its turn comes.

  accord bft approve ID,ID,...        print this replica's approval token of that set
  accord bft reconfigure ID,ID,... --approval TOKEN [--approval TOKEN ...]

  --api URL        the node's HTTP API (default http://127.0.0.1:7070)
  --data-dir DIR   find the API (and its token) of the node running from DIR
  --token T        bearer token (also ACCORD_API_TOKEN)
`

export async function bftCommand (args: string[]): Promise<void> {
  const [action, ...rest] = args
  if (action === 'isolate' || action === 'readmit') {
    await blocklistCommand(action, rest)
    return
  }
  if (action === 'approve' || action === 'reconfigure') {
    await reconfigurationCommand(action, rest)
    return
  }
  if (action === undefined || !['put', 'get', 'del', 'cas'].includes(action)) { throw new UserError('bft: expected put, get, del, cas, isolate, readmit, approve or reconfigure (see accord bft --help)') }
  const takesValue = action === 'put' || action === 'cas'
  const { values: flags, positionals } = parseFlagsAndPositionals(`bft ${action}`, rest, {
    api: { type: 'string' },
    'data-dir': { type: 'string' },
    token: { type: 'string' },
    expected: { type: 'string' },
    absent: { type: 'boolean' }
  }, takesValue ? 2 : 1)
  const [key, value] = positionals
  if (key === undefined) { throw new UserError(`bft ${action}: a KEY is required`) }
  if (action !== 'cas' && (flags.expected !== undefined || flags.absent === true)) { throw new UserError(`bft ${action}: --expected and --absent belong to bft cas`) }
  if (takesValue && value === undefined) { throw new UserError(`bft ${action}: a VALUE is required`) }
  const target = await resolveApiTarget(flags)
  const path = `/v1/bft/kv/${encodeURIComponent(key)}`
  // a view change can take a few seconds: wait as long as the node does (its requestTimeoutMs is 10 s)
  const timeoutMs = 15_000

  let response: { status: number, json: any }
  switch (action) {
    case 'put':
      response = await apiRequest(target, 'PUT', path, { body: value, timeoutMs })
      break
    case 'get':
      response = await apiRequest(target, 'GET', path, { timeoutMs })
      break
    case 'del':
      response = await apiRequest(target, 'DELETE', path, { timeoutMs })
      break
    default: {
      if ((flags.expected === undefined) === (flags.absent !== true)) { throw new UserError('bft cas: give exactly one of --expected OLD or --absent') }
      response = await apiRequest(target, 'POST', `${path}/cas`, { body: JSON.stringify({ expected: flags.expected ?? null, value }), timeoutMs })
    }
  }
  process.stdout.write(answerLine(action, key, response))
}

async function blocklistCommand (action: 'isolate' | 'readmit', args: string[]): Promise<void> {
  const { values: flags, positionals } = parseFlagsAndPositionals(`bft ${action}`, args, {
    api: { type: 'string' },
    'data-dir': { type: 'string' },
    token: { type: 'string' }
  }, 1)
  const [peer] = positionals
  if (peer === undefined) { throw new UserError(`bft ${action}: a PEER_ID is required`) }
  const target = await resolveApiTarget(flags)
  const response = action === 'isolate'
    ? await apiRequest(target, 'POST', '/v1/bft/isolated', { body: JSON.stringify({ peerId: peer }) })
    : await apiRequest(target, 'DELETE', `/v1/bft/isolated/${encodeURIComponent(peer)}`)
  if (response.status !== 200) { throw new UserError(`bft ${action}: ${response.status} ${String(response.json.error ?? '')}`) }
  let done = 'isolated'
  if (action === 'readmit') { done = response.json.readmitted === true ? 'readmitted' : 'was not isolated' }
  process.stdout.write(`${peer}: ${done}\n`)
}

const APPROVAL_TOKEN_PREFIX = 'bftapproval1.'
const APPROVAL_TOKEN_CHARS_MAX = 256 * 1024

/** An approval as one pasteable word: the prefix and the base64url of the JSON that POST /v1/bft/approvals answers. */
function approvalToken (approval: unknown): string {
  return APPROVAL_TOKEN_PREFIX + Buffer.from(JSON.stringify(approval)).toString('base64url')
}

function approvalFromToken (token: string): unknown {
  if (!token.startsWith(APPROVAL_TOKEN_PREFIX) || token.length > APPROVAL_TOKEN_CHARS_MAX) { throw new UserError(`bft reconfigure: "${token.slice(0, 40)}" is not an approval token (accord bft approve prints one)`) }
  try {
    return JSON.parse(Buffer.from(token.slice(APPROVAL_TOKEN_PREFIX.length), 'base64url').toString('utf8'))
  } catch {
    throw new UserError(`bft reconfigure: the approval token "${token.slice(0, 40)}..." is damaged`)
  }
}

async function reconfigurationCommand (action: 'approve' | 'reconfigure', args: string[]): Promise<void> {
  const { values: flags, positionals } = parseFlagsAndPositionals(`bft ${action}`, args, {
    api: { type: 'string' },
    'data-dir': { type: 'string' },
    token: { type: 'string' },
    ...(action === 'reconfigure' ? { approval: { type: 'string', multiple: true } } : {})
  }, 1)
  const [list] = positionals
  if (list === undefined) { throw new UserError(`bft ${action}: the new replica set is required, as ID,ID,...`) }
  const replicas = list.split(',').map(id => id.trim()).filter(id => id !== '')
  const target = await resolveApiTarget(flags)
  if (action === 'approve') {
    const response = await apiRequest(target, 'POST', '/v1/bft/approvals', { body: JSON.stringify({ replicas }) })
    if (response.status !== 200) { throw new UserError(`bft approve: ${response.status} ${String(response.json.error ?? '')}`) }
    process.stderr.write(`approval of epoch ${String(response.json.epoch)} (${replicas.length} replicas) by ${String(response.json.replica)}; hand this token to whoever runs accord bft reconfigure:\n`)
    process.stdout.write(`${approvalToken(response.json)}\n`)
    return
  }
  const tokens = (flags as { approval?: string[] }).approval ?? []
  const approvals = tokens.map(approvalFromToken)
  // the replicas order it, then the new set waits for its checkpoint: longer than a write
  const response = await apiRequest(target, 'PUT', '/v1/bft/replicas', { body: JSON.stringify({ replicas, approvals }), contentType: 'application/json', timeoutMs: 30_000 })
  if (response.status !== 200) { throw new UserError(`bft reconfigure: ${response.status} ${String(response.json.error ?? '')}`) }
  process.stdout.write(`epoch ${String(response.json.epoch)}: ${replicas.length} replicas, decided; the new set orders the seqs past ${String(response.json.afterSeq)}\n`)
}

/** What a successful answer prints; a failed one becomes a one-line UserError. */
function answerLine (action: string, key: string, response: { status: number, json: any }): string {
  if (response.status === 200) { return action === 'get' ? `${String(response.json.value)}\n` : `ok (index ${String(response.json.index)})\n` }
  if (response.status === 404 && action === 'get') { throw new UserError(`bft get: no such key: ${key}`) }
  if (response.status === 409 && response.json.error === 'cas-mismatch') { throw new UserError('bft cas: the current value differs') }
  throw new UserError(`bft ${action}: ${response.status} ${String(response.json.error ?? '')}`)
}
