/** Reading a node's Prometheus /metrics in tests. */

/** accord's own metrics (accord_*) served at `apiUrl`/metrics, by name; labelled series are left out. */
export async function scrapeMetrics (apiUrl: string | null): Promise<Map<string, number>> {
  if (apiUrl == null) { throw new Error('the node serves no HTTP API') }
  const text = await (await fetch(`${apiUrl}/metrics`)).text()
  return new Map([...text.matchAll(/^(accord_\w+) (\S+)$/gm)].map(m => [m[1], Number(m[2])]))
}
