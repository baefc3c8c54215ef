/*
 * HTTP routes of admission:
 *
 *   POST /v1/admission/tokens  {"ttlSeconds":N}  → {"token":"accord-join-1....","expiresAt":ISO}
 *   GET  /v1/admission                          → the cluster key id and the peers admitted now
 */
import { clusterKeyId } from '../../identity/cluster-credentials.ts'
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
    }
  ]
}

export interface AdmissionSummary {
  /** A short id of the cluster key (null while the node is still joining). */
  clusterKeyId: string | null
  admittedPeers: string[]
}

export function admissionSummary (admission: Admission): AdmissionSummary {
  const credentials = admission.credentials
  return {
    clusterKeyId: credentials == null ? null : clusterKeyId(credentials.clusterPublicKey),
    admittedPeers: admission.admittedPeers().sort()
  }
}
