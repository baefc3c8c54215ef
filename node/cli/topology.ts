import { UserError } from '../errors.ts'
import { renderDot, renderText } from '../topology/render.ts'
import { apiRequest, resolveApiTarget } from './api-client.ts'
import { parseFlagsAndPositionals } from './args.ts'
import type { TopologyGraph } from '../topology/view.ts'

export const TOPOLOGY_HELP = `Usage: accord topology [--dot | --json] [flags]

Show the overlay as the cluster's nodes report it: for each node, its
connections (direction and remote address), its DHT buckets and its
gossipsub mesh per topic. Each node publishes its own report through the
cluster-metadata store; an edge is what the node it starts at reported.

  --dot              print a Graphviz digraph (accord topology --dot | dot -Tsvg > overlay.svg)
  --json             print the answer of GET /v1/topology as it is
  --api URL | --data-dir DIR | --token T   which node to ask, as for accord status
`

export async function topologyCommand (args: string[]): Promise<void> {
  const { values: flags } = parseFlagsAndPositionals('topology', args, {
    dot: { type: 'boolean' }, json: { type: 'boolean' }, api: { type: 'string' }, 'data-dir': { type: 'string' }, token: { type: 'string' }
  }, 0)
  if (flags.dot === true && flags.json === true) { throw new UserError('topology: --dot and --json exclude each other') }
  const target = await resolveApiTarget(flags)
  const response = await apiRequest(target, 'GET', '/v1/topology')
  if (response.status !== 200) { throw new UserError(`topology: ${response.status} ${String(response.json.error ?? '')}`) }
  if (flags.json === true) {
    process.stdout.write(`${JSON.stringify(response.json, null, 2)}\n`)
    return
  }
  const graph = response.json as TopologyGraph
  process.stdout.write(flags.dot === true ? renderDot(graph) : renderText(graph))
}
