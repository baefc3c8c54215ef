/*
 * HTTP routes of membership:
 *
 *   GET /v1/members → {"members":[{"peerId","state","incarnation","meta":{...},"addresses":[...]}, ...]}
 *
 * This node is listed too; dead and left members stay listed until the
 * core forgets them (deadRetentionTicks). `meta` is the member's metadata
 * as JSON when it holds a JSON object (what accord's daemon sets), else
 * {"base64": "..."}.
 */
import type { Member, MembershipService } from './service.ts'
import type { Route } from '../http-api.ts'

export interface MemberView {
  peerId: string
  state: Member['state']
  incarnation: number
  meta: Record<string, unknown>
  addresses: string[]
}

export function membershipRoutes (membership: MembershipService): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/v1\/members$/,
      handle: async () => ({ status: 200, json: { members: memberViews(membership) } })
    }
  ]
}

/** The members, sorted by peer id, with their metadata read as JSON where it is. */
export function memberViews (membership: MembershipService): MemberView[] {
  return membership.members()
    .map(m => ({ peerId: m.peerId, state: m.state, incarnation: m.incarnation, meta: readMeta(m.meta), addresses: m.addresses }))
    .sort((a, b) => a.peerId.localeCompare(b.peerId))
}

function readMeta (meta: Uint8Array): Record<string, unknown> {
  if (meta.byteLength === 0) { return {} }
  try {
    const json: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(meta))
    if (typeof json === 'object' && json != null && !Array.isArray(json)) { return json as Record<string, unknown> }
  } catch { /* not JSON: shown as bytes */ }
  return { base64: Buffer.from(meta).toString('base64') }
}
