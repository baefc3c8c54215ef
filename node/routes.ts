import type { NodeStatus } from './accord-node.ts'
import type { Route } from './http-api.ts'
import type { Registry } from 'prom-client'

export function statusRoutes (deps: { status(): Promise<NodeStatus>, metrics: Registry }): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/v1\/status$/,
      handle: async () => ({ status: 200, json: await deps.status() })
    },
    {
      method: 'GET',
      path: /^\/metrics$/,
      handle: async () => ({ status: 200, text: await deps.metrics.metrics(), contentType: deps.metrics.contentType })
    }
  ]
}
