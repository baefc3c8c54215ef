import { UserError } from '../errors.ts'
import { rotateDataDirNodeKey } from '../key-rotation.ts'
import { apiRequest, resolveApiTarget } from './api-client.ts'
import { parseFlags, parseFlagsAndPositionals } from './args.ts'
import { parseDuration } from './token.ts'

export const KEYS_HELP = `Usage: accord keys dkg --threshold T [--members ID,ID,...] [flags]
       accord keys reshare --threshold T --members ID,ID,... [flags]
       accord keys show [flags]
       accord keys sign MESSAGE [flags]
       accord keys approve MESSAGE [--ttl 1h] [flags]
       accord keys rotate --data-dir DIR

Threshold BLS keys made by distributed key generation (DKG) among the
cluster's nodes, through a node's HTTP API. No node ever holds the whole
secret: each member keeps a share in its keystore (identity.key), and any T
members' partial signatures make a signature under the group key.

  accord keys dkg --threshold T [--members ID,...]
      run a DKG from this node among the members (default: the PBFT
      replicas in force; this node must be one of them) and wait for it to
      end. Members that do not answer within a few seconds are left out;
      the run aborts, keeping the old key, when fewer than T take part.
  accord keys reshare --threshold T --members ID,...
      hand the group key this node holds a share of to a new group (the
      members, T of them to sign), keeping the group key: the old members
      deal their shares, the new members store new ones, old members left
      out delete theirs. Aborts, keeping the old group as it was, when fewer
      than the old threshold of old members or T new members take part.
  accord keys show
      the group key this node holds a share of: threshold, size, its index
  accord keys sign MESSAGE
      a threshold signature of MESSAGE (UTF-8) by the group
  accord keys approve MESSAGE [--ttl 1h]
      under --keys-sign-policy approve, this node gives its partial to a
      member's request to sign MESSAGE (UTF-8) until the approval expires
      (at most 7d; at most 1024 held, in memory, so a restart forgets them)
  accord keys rotate --data-dir DIR
      a new node key (a new peer id) for the stopped node of DIR; refused
      while a node runs from DIR. identity.key keeps the new key and a
      hand-over statement signed by the old and the new key; at its next
      start the node shows it to the members, which admit the new peer id
      as this member and refuse the old one from then on. Under the DKG
      group key, the group then signs the new peer id's certificate (the
      node must hold a share of that key). Environment: ACCORD_PASSPHRASE
      for an encrypted key.

  --api URL        the node's HTTP API (default http://127.0.0.1:7070)
  --data-dir DIR   find the API (and its token) of the node running from DIR
  --token T        bearer token (also ACCORD_API_TOKEN)
`

export async function keysCommand (args: string[]): Promise<void> {
  const [action, ...rest] = args
  if (action === 'rotate') {
    await rotate(rest)
    return
  }
  if (action !== 'dkg' && action !== 'reshare' && action !== 'show' && action !== 'sign' && action !== 'approve') { throw new UserError('keys: expected dkg, reshare, show, sign, approve or rotate (see accord keys --help)') }
  const { values: flags, positionals } = parseFlagsAndPositionals(`keys ${action}`, rest, {
    api: { type: 'string' },
    'data-dir': { type: 'string' },
    token: { type: 'string' },
    ...(action === 'dkg' || action === 'reshare' ? { threshold: { type: 'string' }, members: { type: 'string' } } : {}),
    ...(action === 'approve' ? { ttl: { type: 'string' } } : {})
  }, action === 'sign' || action === 'approve' ? 1 : 0)
  const target = await resolveApiTarget(flags)
  if (action === 'show') {
    await show(target)
  } else if (action === 'sign') {
    await sign(target, positionals[0])
  } else if (action === 'approve') {
    await approve(target, positionals[0], parseDuration((flags as { ttl?: string }).ttl ?? '1h', '--ttl'))
  } else {
    await runDkg(target, action, flags as { threshold?: string, members?: string })
  }
}

async function rotate (args: string[]): Promise<void> {
  const flags = parseFlags('keys rotate', args, { 'data-dir': { type: 'string' } })
  const dataDir = flags['data-dir']
  if (dataDir === undefined || dataDir === '') { throw new UserError('keys rotate: --data-dir is required') }
  const rotated = await rotateDataDirNodeKey(dataDir, { passphrase: process.env.ACCORD_PASSPHRASE })
  process.stdout.write(`rotated the node key in ${rotated.path} (rotation ${rotated.sequence})\nold peer id  ${rotated.oldPeerId}\nnew peer id  ${rotated.newPeerId}\n` +
    'start the node: it shows the hand-over to the members, which admit the new peer id and refuse the old one\n')
}

type Target = Awaited<ReturnType<typeof resolveApiTarget>>

async function show (target: Target): Promise<void> {
  const response = await apiRequest(target, 'GET', '/v1/keys')
  if (response.status !== 200) { throw new UserError(`keys show: ${response.status} ${String(response.json.error ?? '')}`) }
  const key = response.json.key
  if (key == null) {
    process.stdout.write('no DKG key on this node (accord keys dkg makes one)\n')
    return
  }
  process.stdout.write(`group key  ${String(key.groupKey)}\nthreshold  ${String(key.threshold)} of ${String(key.n)}\nthis node  index ${String(key.index)}\nsession    ${String(key.session)}\n`)
}

async function sign (target: Target, message: string | undefined): Promise<void> {
  if (message === undefined) { throw new UserError('keys sign: a MESSAGE is required') }
  const response = await apiRequest(target, 'POST', '/v1/keys/sign', { body: JSON.stringify({ message }), timeoutMs: 30_000 })
  if (response.status !== 200) { throw new UserError(`keys sign: ${response.status} ${String(response.json.error ?? '')}`) }
  const bad = response.json.bad as number[]
  process.stdout.write(`${String(response.json.signature)}\n`)
  process.stderr.write(`signed by indices ${(response.json.signers as number[]).join(', ')}${bad.length > 0 ? `; bad partials from ${bad.join(', ')}` : ''}\n`)
}

async function approve (target: Target, message: string | undefined, ttlSeconds: number): Promise<void> {
  if (message === undefined) { throw new UserError('keys approve: a MESSAGE is required') }
  const response = await apiRequest(target, 'POST', '/v1/keys/approvals', { body: JSON.stringify({ message, ttlSeconds }) })
  if (response.status !== 200) { throw new UserError(`keys approve: ${response.status} ${String(response.json.error ?? '')}`) }
  process.stdout.write(`approved sha-256 ${String(response.json.digest)} until ${String(response.json.expiresAt)}${response.json.signPolicy === 'open' ? ' (this node signs any message: --keys-sign-policy open)' : ''}\n`)
}

async function runDkg (target: Target, action: 'dkg' | 'reshare', flags: { threshold?: string, members?: string }): Promise<void> {
  const { threshold, members } = flags
  if (threshold === undefined || !/^[1-9][0-9]*$/.test(threshold)) { throw new UserError(`keys ${action}: --threshold T (a positive integer) is required`) }
  if (action === 'reshare' && members === undefined) { throw new UserError('keys reshare: --members ID,... (the new group) is required') }
  const body = {
    threshold: Number(threshold),
    ...(members !== undefined ? { members: members.split(',').map(id => id.trim()).filter(id => id !== '') } : {})
  }
  // the members' keys are awaited up to 5 s, then the DKG's phases (at most 3·(20 + 2n) ticks of 100 ms)
  const response = await apiRequest(target, 'POST', `/v1/keys/${action}`, { body: JSON.stringify(body), timeoutMs: 120_000 })
  if (response.status === 409 && response.json.state === 'aborted') { throw new UserError(`keys ${action}: aborted: ${String(response.json.reason)}`) }
  if (response.status !== 200) { throw new UserError(`keys ${action}: ${response.status} ${String(response.json.error ?? '')}`) }
  const s = response.json
  const self = s.retired === true ? 'this node left the group and deleted its share' : `this node has index ${String(s.index)}`
  process.stdout.write(`done in ${String(s.durationMs)} ms: group key ${String(s.groupKey)}\n${String(s.threshold)} of ${String(s.members.length)}, ${String(s.participants.length)} took part; ${self}\n`)
}
