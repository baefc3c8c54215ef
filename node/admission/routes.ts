/*
 * HTTP routes of admission:
 *
 *   POST /v1/admission/tokens  {"ttlSeconds":N}  → {"token":"accord-join-1....","expiresAt":ISO}
 *   GET  /v1/admission                          → the cluster key id, the group key (once switched),
 *                                                 approvals, the peers admitted now, the key
 *                                                 hand-overs accepted and this node's own rotation
 *   POST /v1/admission/approvals {"peer":ID,"ttlSeconds":N} → {"peer","expiresAt"}: this node gives its
 *                                                 partial to a group certificate for that peer until then
 *   POST /v1/admission/group-key {}             → switch to group-signed certificates:
 *                                                 {"groupKey","threshold","expiresAt"} (409 when it cannot)
 */
import { clusterKeyId } from '../../identity/cluster-credentials.ts'
import { UserError } from '../errors.ts'
import { HttpError, readJsonBody } from '../http-api.ts'
import type { Admission } from './admission.ts'
import type { Route } from '../http-api.ts'

const BODY_BYTES_MAX = 1024

export function admissionRoutes (admission: Admission): Route[] {
  return [
    {
      method: 'POST',
      path: /^\/v1\/admission\/tokens$/,
      handle: async (request) => {
        const body = await readJsonBody(request, BODY_BYTES_MAX, ['ttlSeconds'])
        const ttlSecondsMax = admission.limits.tokenTtlMsMax / 1000
        const ttlSeconds = body.ttlSeconds ?? admission.limits.tokenTtlMsDefault / 1000
        if (!Number.isSafeInteger(ttlSeconds) || (ttlSeconds as number) < 1 || (ttlSeconds as number) > ttlSecondsMax) {
          throw new HttpError(400, `"ttlSeconds" must be an integer in 1..${ttlSecondsMax}`)
        }
        if (admission.credentials == null) { throw new HttpError(503, 'this node has not joined its cluster yet') }
        const { token, expiresAtMs } = await admission.createJoinToken((ttlSeconds as number) * 1000)
        return { status: 200, json: { token, expiresAt: new Date(expiresAtMs).toISOString() } }
      }
    },
    {
      method: 'GET',
      path: /^\/v1\/admission$/,
      handle: async () => ({ status: 200, json: admissionSummary(admission) })
    },
    {
      method: 'POST',
      path: /^\/v1\/admission\/approvals$/,
      handle: async (request) => {
        const body = await readJsonBody(request, BODY_BYTES_MAX, ['peer', 'ttlSeconds'])
        const ttlSecondsMax = admission.limits.tokenTtlMsMax / 1000
        const ttlSeconds = body.ttlSeconds ?? admission.limits.tokenTtlMsDefault / 1000
        if (!Number.isSafeInteger(ttlSeconds) || (ttlSeconds as number) < 1 || (ttlSeconds as number) > ttlSecondsMax) {
          throw new HttpError(400, `"ttlSeconds" must be an integer in 1..${ttlSecondsMax}`)
        }
        if (typeof body.peer !== 'string') { throw new HttpError(400, '"peer" must be a peer id') }
        let expiresAtMs: number
        try {
          expiresAtMs = admission.approve(body.peer, (ttlSeconds as number) * 1000)
        } catch (err) {
          throw new HttpError(400, (err as Error).message)
        }
        return { status: 200, json: { peer: body.peer, expiresAt: new Date(expiresAtMs).toISOString() } }
      }
    },
    {
      method: 'POST',
      path: /^\/v1\/admission\/group-key$/,
      handle: async (request) => {
        await readJsonBody(request, BODY_BYTES_MAX, [])
        try {
          const { groupKey, threshold, expiresAtMs } = await admission.useGroupKey()
          return { status: 200, json: { groupKey: Buffer.from(groupKey).toString('hex'), threshold, expiresAt: new Date(expiresAtMs).toISOString() } }
        } catch (err) {
          if (err instanceof UserError) { throw new HttpError(409, err.message) }
          throw err
        }
      }
    }
  ]
}

export interface AdmissionSummary {
  /** A short id of the cluster key (null while the node is still joining). */
  clusterKeyId: string | null
  /** The DKG group key (hex) once this node admits with it (`accord admission use-group-key`), else null. */
  groupKey: string | null
  /** A join must carry a proof of work of this many bits (0: none). */
  joinPowBits: number
  /** Peers this node's operator approved for a group certificate, until when. */
  approvals: Array<{ peer: string, expiresAt: string }>
  admittedPeers: string[]
  /** Other members' key hand-overs this node accepted: the retired peer id, the one that took over, the sequence. */
  handovers: Array<{ oldPeer: string, newPeer: string, sequence: number }>
  /** This node's own key rotation (`accord keys rotate`): the peer id it took over from and the sequence, else null. */
  keyRotation: { predecessor: string, sequence: number } | null
  /** Rotated under the group key, and the group has not signed a certificate for this peer id yet (the members admit it by its hand-over meanwhile). */
  awaitingGroupCertificate: boolean
}

export function admissionSummary (admission: Admission): AdmissionSummary {
  const credentials = admission.credentials
  return {
    clusterKeyId: credentials == null ? null : clusterKeyId(credentials.clusterPublicKey),
    groupKey: credentials?.groupKey == null ? null : Buffer.from(credentials.groupKey).toString('hex'),
    joinPowBits: admission.joinPowBits,
    approvals: admission.approvals().map(a => ({ peer: a.peer, expiresAt: new Date(a.expiresAtMs).toISOString() })),
    admittedPeers: admission.admittedPeers().sort(),
    handovers: admission.handovers(),
    keyRotation: admission.ownHandover,
    awaitingGroupCertificate: admission.awaitingGroupCertificate
  }
}
