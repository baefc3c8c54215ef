/**
 * The topology view: reports merged into nodes and edges, each edge the
 * claim of the node that reported it; bad reports skipped and counted
 * once per version; at most reportsMax reports read.
 */
import { expect } from 'aegir/chai'
import { encodeReport } from '../../node/topology/codec.ts'
import { mergeReports, ReportReader } from '../../node/topology/view.ts'
import { peerIds, reportNaming } from './topology-fixtures.ts'
import type { TopologyReport } from '../../node/topology/report.ts'

const empty = (reportedAt = 1): TopologyReport => ({ reportedAt, connections: [], dhtBuckets: [], mesh: [], truncated: [] })

describe('topology view', () => {
  let a: string, b: string, c: string, d: string
  before(async () => { [a, b, c, d] = await peerIds(4) })

  it('a link both ends report is an edge each way, each with what its reporter saw', () => {
    const fromA: TopologyReport = { ...empty(), connections: [{ peer: b, remoteAddr: '/ip4/127.0.0.1/tcp/4002', direction: 'outbound' }], dhtBuckets: [{ prefix: '1', peers: [b] }] }
    const fromB: TopologyReport = { ...empty(), connections: [{ peer: a, remoteAddr: '/ip4/127.0.0.1/tcp/51000', direction: 'inbound' }], mesh: [{ topic: 't', peers: [a] }] }
    const { nodes, edges } = mergeReports([{ peerId: a, report: fromA }, { peerId: b, report: fromB }])
    expect(nodes.map(n => n.peerId)).to.deep.equal([a, b].sort())
    expect(nodes.every(n => n.reported)).to.equal(true)
    const ab = edges.find(e => e.from === a && e.to === b)
    const ba = edges.find(e => e.from === b && e.to === a)
    expect(ab).to.deep.equal({ from: a, to: b, kinds: ['connection', 'dht'], connections: [{ direction: 'outbound', remoteAddr: '/ip4/127.0.0.1/tcp/4002' }] })
    expect(ba).to.deep.equal({ from: b, to: a, kinds: ['connection', 'mesh:t'], connections: [{ direction: 'inbound', remoteAddr: '/ip4/127.0.0.1/tcp/51000' }] })
    expect(edges).to.have.lengthOf(2)
  })

  it('a report speaks only for its reporter: edges it names start at the reporter, a peer it names without a report is an unreported node', () => {
    // c lists a and b as its peers; nothing in its report can make an edge a → b
    const fromC = reportNaming([a, b])
    const { nodes, edges } = mergeReports([{ peerId: c, report: fromC }])
    expect(edges.every(e => e.from === c)).to.equal(true)
    expect(edges.map(e => e.to).sort()).to.deep.equal([a, b].sort())
    expect(nodes.find(n => n.peerId === a)).to.deep.equal({ peerId: a, reported: false })
    expect(nodes.find(n => n.peerId === c)).to.include({ reported: true, reportedAt: fromC.reportedAt })
  })

  it('one edge per reporter and peer: several connections and kinds merge, kinds sorted, self-loops dropped', () => {
    const report: TopologyReport = {
      ...empty(),
      connections: [
        { peer: b, remoteAddr: '/ip4/127.0.0.1/tcp/1', direction: 'outbound' },
        { peer: b, remoteAddr: '/ip4/127.0.0.1/tcp/2', direction: 'inbound' },
        { peer: a, remoteAddr: '/ip4/127.0.0.1/tcp/3', direction: 'inbound' }
      ],
      dhtBuckets: [{ prefix: '0', peers: [b] }],
      mesh: [{ topic: 'z', peers: [b] }, { topic: 'm', peers: [b] }]
    }
    const { edges } = mergeReports([{ peerId: a, report }])
    expect(edges).to.have.lengthOf(1)
    expect(edges[0].kinds).to.deep.equal(['connection', 'dht', 'mesh:m', 'mesh:z'])
    expect(edges[0].connections).to.have.lengthOf(2)
  })

  it('reads the store: skips and counts a bad report once per version, keeps the good ones, lists the skipped node', () => {
    const reader = new ReportReader({ reportsMax: 16 })
    const garbage = Uint8Array.from([0xff, 0x00])
    const stored = [
      { peerId: a, value: encodeReport(reportNaming([b])), version: 1 },
      { peerId: c, value: garbage, version: 7 }
    ]
    const first = reader.view(a, stored)
    expect(first.skipped).to.deep.equal([{ peerId: c, reason: 'malformed' }])
    expect(first.nodes.map(n => n.peerId)).to.have.members([a, b, c])
    expect(first.nodes.find(n => n.peerId === c)?.reported).to.equal(false)
    expect(first.edges.map(e => [e.from, e.to])).to.deep.equal([[a, b]])
    // the same version again: not counted again; a new bad version: counted
    reader.view(a, stored)
    expect(reader.rejected.malformed).to.equal(1)
    reader.view(a, [stored[0], { peerId: c, value: garbage, version: 8 }])
    expect(reader.rejected.malformed).to.equal(2)
    // fixed: c's next version is read
    const fixed = reader.view(a, [stored[0], { peerId: c, value: encodeReport(reportNaming([a])), version: 9 }])
    expect(fixed.skipped).to.deep.equal([])
    expect(fixed.edges.map(e => [e.from, e.to])).to.deep.include([c, a])
  })

  it('a store entry whose writer is no peer id is counted and kept out of the view', () => {
    const rejections: string[] = []
    const reader = new ReportReader({ reportsMax: 16, onReject: (peerId, reason) => { rejections.push(`${peerId} ${reason}`) } })
    const view = reader.view(a, [{ peerId: 'x"\n', value: encodeReport(reportNaming([b])), version: 1 }])
    expect(view.nodes).to.deep.equal([])
    expect(view.skipped).to.deep.equal([])
    expect(reader.rejected.invalid).to.equal(1)
    expect(rejections).to.deep.equal(['x"\n invalid'])
  })

  it('reads at most reportsMax reports, this node\'s first, and says how many it left out', () => {
    const reader = new ReportReader({ reportsMax: 2 })
    const stored = [a, b, c, d].map((peerId, i) => ({ peerId, value: encodeReport(empty(i)), version: 1 }))
    const self = [a, b, c, d].sort()[3]
    const view = reader.view(self, stored)
    expect(view.reportsOmitted).to.equal(2)
    const reported = view.nodes.filter(n => n.reported).map(n => n.peerId)
    expect(reported).to.have.lengthOf(2)
    expect(reported).to.include(self)
    expect(reported).to.include([a, b, c, d].sort()[0])
  })
})
