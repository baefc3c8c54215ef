/*
 * HTTP routes of topology discovery:
 *
 *   GET /v1/topology → {"self","nodes":[...],"edges":[...],"skipped":[...],"reportsOmitted"}
 *
 * The shape is TopologyGraph (view.ts); node/topology/README.md describes it.
 */
import type { TopologyService } from './service.ts'
import type { Route } from '../http-api.ts'

export function topologyRoutes (topology: Pick<TopologyService, 'view'>): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/v1\/topology$/,
      handle: async () => ({ status: 200, json: topology.view() })
    }
  ]
}
