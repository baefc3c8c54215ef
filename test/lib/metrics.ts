/** Reading a node's Prometheus /metrics in tests. */

/** accord's own metrics (accord_*) served at `apiUrl`/metrics, by name; labelled series are left out. */
export async function scrapeMetrics (apiUrl: string | null): Promise<Map<string, number>> {
  if (apiUrl == null) { throw new Error('the node serves no HTTP API') }
  const text = await (await fetch(`${apiUrl}/metrics`)).text()
  return new Map([...text.matchAll(/^(accord_\w+) (\S+)$/gm)].map(m => [m[1], Number(m[2])]))
}

/** A node's `accord_refusals_total` for one protocol and reason, read from its registry. */
export async function refusalCount (node: { metrics: import('prom-client').Registry }, protocol: string, reason: string): Promise<number> {
  const metric = node.metrics.getSingleMetric('accord_refusals_total')
  if (metric == null) { return 0 }
  const { values } = await metric.get()
  return values.find(v => v.labels.protocol === protocol && v.labels.reason === reason)?.value ?? 0
}

/** All of a node's `accord_refusals_total`, as `protocol/reason`: count. */
export async function refusalCounts (node: { metrics: import('prom-client').Registry }): Promise<Record<string, number>> {
  const metric = node.metrics.getSingleMetric('accord_refusals_total')
  if (metric == null) { return {} }
  const { values } = await metric.get()
  return Object.fromEntries(values.map(v => [`${v.labels.protocol}/${v.labels.reason}`, v.value]))
}
