/**
 * A topology view (GET /v1/topology) as text for a terminal, or as a
 * Graphviz digraph (`accord topology --dot | dot -Tsvg > overlay.svg`).
 */
import type { TopologyEdge, TopologyGraph, TopologyNode } from './view.ts'

/** One block per node: what its report says, then one line per edge it reported. */
export function renderText (graph: TopologyGraph): string {
  const reported = graph.nodes.filter(n => n.reported).length
  const lines = [`topology seen by ${graph.self}: ${count(graph.nodes.length, 'node')} (${reported} reported), ${count(graph.edges.length, 'edge')}`]
  const edgesFrom = groupEdges(graph.edges)
  for (const node of graph.nodes) {
    lines.push('', `${node.peerId}${node.peerId === graph.self ? ' (this node)' : ''}`)
    lines.push(`  ${describeNode(node)}`)
    for (const edge of edgesFrom.get(node.peerId) ?? []) {
      lines.push(`  -> ${edge.to}  ${describeEdge(edge)}`)
    }
  }
  if (graph.skipped.length > 0) {
    lines.push('', `skipped reports: ${graph.skipped.map(s => `${s.peerId} (${s.reason})`).join(', ')}`)
  }
  if (graph.reportsOmitted > 0) {
    lines.push('', `${count(graph.reportsOmitted, 'report')} left out (more than the view reads)`)
  }
  return `${lines.join('\n')}\n`
}

function describeNode (node: TopologyNode): string {
  if (!node.reported) { return 'no report' }
  const parts = [`reported ${node.reportedAt === undefined ? '?' : new Date(node.reportedAt).toISOString()}`]
  const buckets = node.dhtBuckets ?? []
  // a bucket's prefix is the start of its peers' Kademlia ids ("*": the table never split)
  parts.push(buckets.length === 0 ? 'dht buckets: none' : `dht buckets: ${buckets.map(b => `${b.prefix}*:${b.peers}`).join(' ')}`)
  const topics = node.meshTopics ?? []
  parts.push(topics.length === 0 ? 'topics: none' : `topics: ${topics.join(', ')}`)
  if ((node.truncated ?? []).length > 0) { parts.push(`lists cut: ${(node.truncated ?? []).join(', ')}`) }
  return parts.join('; ')
}

function describeEdge (edge: TopologyEdge): string {
  return edge.kinds.map(kind => {
    if (kind !== 'connection' || edge.connections === undefined) { return kind }
    return `connection (${edge.connections.map(c => `${c.direction}${c.remoteAddr === '' ? '' : ` ${c.remoteAddr}`}`).join('; ')})`
  }).join(', ')
}

/**
 * A Graphviz digraph: an arrow per reported edge (solid where the reporter
 * has a connection, dashed for DHT and mesh knowledge alone), this node in
 * bold, nodes that sent no report dashed. Every id and label is quoted.
 */
export function renderDot (graph: TopologyGraph): string {
  const lines = ['digraph topology {', '  node [shape=box, fontname="monospace"];']
  for (const node of graph.nodes) {
    const attributes: string[] = []
    const styles: string[] = []
    if (node.peerId === graph.self) {
      attributes.push(`label=${quote(`${node.peerId}\n(this node)`)}`)
      styles.push('bold')
    }
    if (!node.reported) { styles.push('dashed') }
    if (styles.length > 0) { attributes.push(`style=${quote(styles.join(','))}`) }
    lines.push(`  ${quote(node.peerId)}${attributes.length > 0 ? ` [${attributes.join(', ')}]` : ''};`)
  }
  for (const edge of graph.edges) {
    const attributes = [`label=${quote(edge.kinds.join(', '))}`]
    if (!edge.kinds.includes('connection')) { attributes.push('style="dashed"') }
    lines.push(`  ${quote(edge.from)} -> ${quote(edge.to)} [${attributes.join(', ')}];`)
  }
  lines.push('}')
  return `${lines.join('\n')}\n`
}

/** A DOT quoted string: backslash and double quote escaped, a line break as DOT's \n. */
export function quote (text: string): string {
  return `"${text.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll(/\r?\n/g, '\\n')}"`
}

function groupEdges (edges: TopologyEdge[]): Map<string, TopologyEdge[]> {
  const byFrom = new Map<string, TopologyEdge[]>()
  for (const edge of edges) {
    const list = byFrom.get(edge.from) ?? []
    list.push(edge)
    byFrom.set(edge.from, list)
  }
  return byFrom
}

function count (n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}
