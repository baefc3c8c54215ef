import { UserError } from '../errors.ts'
import { apiRequest, resolveApiTarget } from './api-client.ts'
import { parseFlagsAndPositionals } from './args.ts'
import { parseDuration } from './token.ts'

export const ADMISSION_HELP = `Usage: accord admission approve PEER_ID [--ttl DURATION] [flags]
       accord admission use-group-key [flags]
       accord admission show [flags]

Admission with the cluster's DKG group key (see accord keys dkg): once
switched, a new member's certificate must be signed by the group, so T
members' operators must approve the peer; one member cannot admit alone.

  accord admission approve PEER_ID [--ttl 1h]
      until the approval expires, this node gives its partial signature to
      a group certificate for PEER_ID (run it on T members; the new node
      then joins with a join token as before)
  accord admission use-group-key
      switch this node to group-signed certificates: the group signs this
      node's own certificate, and from then on the node accepts only
      certificates signed by the group key (those signed by the cluster key
      are refused). Needs a DKG key of threshold 2 or more; run it on every
      member of the DKG group
  accord admission show
      the cluster key id, the group key (once switched), approvals, the
      proof of work joins must carry, the peers admitted now, this node's
      key rotation and the other members' key hand-overs it accepted

  --ttl DURATION   an approval's lifetime: 30s, 15m, 1h, 2d (default 1h, at most 7d)
  --api URL | --data-dir DIR | --token T   which node to ask, as for accord status
`

export async function admissionCommand (args: string[]): Promise<void> {
  const [action, ...rest] = args
  if (action !== 'approve' && action !== 'use-group-key' && action !== 'show') { throw new UserError('admission: expected approve, use-group-key or show (see accord admission --help)') }
  const { values: flags, positionals } = parseFlagsAndPositionals(`admission ${action}`, rest, {
    ttl: { type: 'string' }, api: { type: 'string' }, 'data-dir': { type: 'string' }, token: { type: 'string' }
  }, action === 'approve' ? 1 : 0)
  const target = await resolveApiTarget(flags)
  if (action === 'approve') {
    const peer = positionals[0]
    if (peer === undefined) { throw new UserError('admission approve: a PEER_ID is required') }
    const ttlSeconds = parseDuration(flags.ttl ?? '1h', '--ttl')
    const response = await apiRequest(target, 'POST', '/v1/admission/approvals', { body: JSON.stringify({ peer, ttlSeconds }) })
    if (response.status !== 200) { throw new UserError(`admission approve: ${response.status} ${String(response.json.error ?? '')}`) }
    process.stdout.write(`approved ${String(response.json.peer)} until ${String(response.json.expiresAt)}\n`)
    return
  }
  if (action === 'use-group-key') {
    const response = await apiRequest(target, 'POST', '/v1/admission/group-key', { body: '{}', timeoutMs: 30_000 })
    if (response.status !== 200) { throw new UserError(`admission use-group-key: ${response.status} ${String(response.json.error ?? '')}`) }
    process.stdout.write(`admitting with group key ${String(response.json.groupKey)} (${String(response.json.threshold)} members sign a certificate)\n`)
    process.stdout.write(`this node's group certificate expires ${String(response.json.expiresAt)}\n`)
    return
  }
  const response = await apiRequest(target, 'GET', '/v1/admission')
  if (response.status !== 200) { throw new UserError(`admission show: ${response.status} ${String(response.json.error ?? '')}`) }
  printAdmission(response.json)
}

/** `accord admission show`'s lines, from GET /v1/admission's answer. */
function printAdmission (s: Record<string, any>): void {
  process.stdout.write(`cluster key  ${String(s.clusterKeyId)}\n`)
  process.stdout.write(`group key    ${s.groupKey == null ? 'none (certificates are signed by the cluster key)' : String(s.groupKey)}\n`)
  process.stdout.write(`join pow     ${s.joinPowBits === 0 ? 'off' : `${String(s.joinPowBits)} bits`}\n`)
  for (const a of s.approvals as Array<{ peer: string, expiresAt: string }>) { process.stdout.write(`approved     ${a.peer} until ${a.expiresAt}\n`) }
  process.stdout.write(`admitted     ${(s.admittedPeers as string[]).length} peer(s)\n`)
  if (s.keyRotation != null) { process.stdout.write(`this key     rotation ${String(s.keyRotation.sequence)}, took over from ${String(s.keyRotation.predecessor)}${s.awaitingGroupCertificate === true ? ' (the group has not certified this peer id yet)' : ''}\n`) }
  for (const h of (s.handovers ?? []) as Array<{ oldPeer: string, newPeer: string, sequence: number }>) { process.stdout.write(`hand-over    ${h.oldPeer} -> ${h.newPeer} (rotation ${h.sequence})\n`) }
}
