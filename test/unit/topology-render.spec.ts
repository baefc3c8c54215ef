/**
 * `accord topology` output: the text of a known graph, and its Graphviz
 * dot, in which every id and label is a quoted string even when a topic
 * holds quotes and backslashes.
 */
import { expect } from 'aegir/chai'
import { quote, renderDot, renderText } from '../../node/topology/render.ts'
import type { TopologyGraph } from '../../node/topology/view.ts'

/** Three nodes: A (this node) and B reported, C is only named; one report skipped. */
const graph: TopologyGraph = {
  self: 'A',
  nodes: [
    { peerId: 'A', reported: true, reportedAt: Date.UTC(2025, 0, 2, 3, 4, 5), dhtBuckets: [{ prefix: '0', peers: 1 }, { prefix: '1', peers: 1 }], meshTopics: ['t'], truncated: [] },
    { peerId: 'B', reported: true, reportedAt: Date.UTC(2025, 0, 2, 3, 4, 6), dhtBuckets: [], meshTopics: [], truncated: ['connections'] },
    { peerId: 'C', reported: false },
    { peerId: 'D', reported: false }
  ],
  edges: [
    { from: 'A', to: 'B', kinds: ['connection', 'dht', 'mesh:t'], connections: [{ direction: 'outbound', remoteAddr: '/ip4/127.0.0.1/tcp/4002' }] },
    { from: 'A', to: 'C', kinds: ['dht'] },
    { from: 'B', to: 'A', kinds: ['connection'], connections: [{ direction: 'inbound', remoteAddr: '/ip4/127.0.0.1/tcp/50000' }, { direction: 'outbound', remoteAddr: '' }] }
  ],
  skipped: [{ peerId: 'D', reason: 'too-many' }],
  reportsOmitted: 0
}

/** A DOT quoted string: no bare double quote inside, any backslash escapes the next character. */
const QUOTED = '"(?:[^"\\\\]|\\\\.)*"'
const ATTRIBUTES = `\\[(?:[a-z]+=(?:${QUOTED}|[a-z]+))(?:, [a-z]+=(?:${QUOTED}|[a-z]+))*\\]`
const NODE_STATEMENT = new RegExp(`^  ${QUOTED}(?: ${ATTRIBUTES})?;$`)
const EDGE_STATEMENT = new RegExp(`^  ${QUOTED} -> ${QUOTED} ${ATTRIBUTES};$`)

/** Checks the digraph's structure line by line (the only shapes renderDot writes); returns the statements. */
function dotStatements (dot: string): { nodes: string[], edges: string[] } {
  const lines = dot.trimEnd().split('\n')
  expect(lines[0]).to.equal('digraph topology {')
  expect(lines[1]).to.equal('  node [shape=box, fontname="monospace"];')
  expect(lines[lines.length - 1]).to.equal('}')
  const nodes: string[] = []
  const edges: string[] = []
  for (const line of lines.slice(2, -1)) {
    if (EDGE_STATEMENT.test(line)) { edges.push(line) } else if (NODE_STATEMENT.test(line)) { nodes.push(line) } else { expect.fail(`not a DOT statement: ${line}`) }
  }
  return { nodes, edges }
}

describe('topology rendering', () => {
  it('prints a known graph as text: each node, what it reported, its edges, then the skipped reports', () => {
    expect(renderText(graph)).to.equal([
      'topology seen by A: 4 nodes (2 reported), 3 edges',
      '',
      'A (this node)',
      '  reported 2025-01-02T03:04:05.000Z; dht buckets: 0*:1 1*:1; topics: t',
      '  -> B  connection (outbound /ip4/127.0.0.1/tcp/4002), dht, mesh:t',
      '  -> C  dht',
      '',
      'B',
      '  reported 2025-01-02T03:04:06.000Z; dht buckets: none; topics: none; lists cut: connections',
      '  -> A  connection (inbound /ip4/127.0.0.1/tcp/50000; outbound)',
      '',
      'C',
      '  no report',
      '',
      'D',
      '  no report',
      '',
      'skipped reports: D (too-many)',
      ''
    ].join('\n'))
  })

  it('says how many reports were left out beyond the view\'s limit', () => {
    expect(renderText({ ...graph, reportsOmitted: 3 })).to.match(/\n3 reports left out \(more than the view reads\)\n$/)
  })

  it('prints a known graph as dot: quoted ids, this node bold, unreported nodes dashed, edges without a connection dashed', () => {
    expect(renderDot(graph)).to.equal([
      'digraph topology {',
      '  node [shape=box, fontname="monospace"];',
      '  "A" [label="A\\n(this node)", style="bold"];',
      '  "B";',
      '  "C" [style="dashed"];',
      '  "D" [style="dashed"];',
      '  "A" -> "B" [label="connection, dht, mesh:t"];',
      '  "A" -> "C" [label="dht", style="dashed"];',
      '  "B" -> "A" [label="connection"];',
      '}',
      ''
    ].join('\n'))
    const { nodes, edges } = dotStatements(renderDot(graph))
    expect(nodes).to.have.lengthOf(4)
    expect(edges).to.have.lengthOf(3)
  })

  it('dot stays valid when a topic holds quotes, backslashes and a line break', () => {
    const topic = 'a"b\\c" -> "evil";\nx'
    const hostile: TopologyGraph = { ...graph, edges: [{ from: 'A', to: 'B', kinds: [`mesh:${topic}`] }] }
    const { edges } = dotStatements(renderDot(hostile))
    expect(edges).to.deep.equal([`  "A" -> "B" [label=${quote(`mesh:${topic}`)}, style="dashed"];`])
    expect(quote('a"b\\c\nd')).to.equal('"a\\"b\\\\c\\nd"')
  })
})
