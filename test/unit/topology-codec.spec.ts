/**
 * Topology reports in the cluster-metadata store: encoded within their
 * bounds, read back whole, and every malformed, oversize, mistyped or
 * overlong report refused with its reason, never thrown.
 */
import { expect } from 'aegir/chai'
import { encode } from 'cborg'
import { decodeBoundedCbor } from '../../node/raft/codec.ts'
import { decodeReport, encodeReport, REPORT_VERSION } from '../../node/topology/codec.ts'
import { REPORT_LIMITS } from '../../node/topology/report.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { mutate, randomBytes } from '../lib/bytes-fuzz.ts'
import { peerIds, reportNaming } from './topology-fixtures.ts'
import type { ReportRejectReason } from '../../node/topology/codec.ts'
import type { TopologyReport } from '../../node/topology/report.ts'

describe('topology report codec', () => {
  let peers: string[]
  before(async () => { peers = await peerIds(3) })

  /** A valid report on the wire, as a plain object to spoil. */
  const wire = (): Record<string, any> => ({
    v: REPORT_VERSION,
    reportedAt: 1_700_000_000_000,
    peers: [peers[0], peers[1]],
    connections: [{ peer: 0, addr: '/ip4/127.0.0.1/tcp/4001', direction: 'outbound' }],
    dhtBuckets: [{ prefix: '01', peers: [0, 1] }],
    mesh: [{ topic: 'accord/test/membership/1', peers: [1] }],
    truncated: []
  })

  it('reads back what it wrote, naming each peer once', () => {
    const report = reportNaming(peers)
    const bytes = encodeReport(report)
    expect(decodeReport(bytes)).to.deep.equal({ ok: true, report })
    // the three peers are in all three lists, but listed once each
    expect((decodeBoundedCbor(bytes) as { peers: string[] }).peers).to.have.members(peers).and.have.lengthOf(3)
    expect(decodeReport(encode(wire())).ok).to.equal(true)
  })

  it('a report at every list limit, with the longest addresses, is cut to fit reportBytesMax and says which lists were cut', async () => {
    const many = await peerIds(REPORT_LIMITS.connectionsMax + REPORT_LIMITS.dhtPeersMax, 100)
    const longAddr = (i: number): string => `/dns4/${'a'.repeat(REPORT_LIMITS.addrCharsMax - 20)}/tcp/${i}`.slice(0, REPORT_LIMITS.addrCharsMax)
    const report: TopologyReport = {
      reportedAt: 1,
      connections: many.slice(0, REPORT_LIMITS.connectionsMax).map((peer, i) => ({ peer, remoteAddr: longAddr(i), direction: 'inbound' })),
      dhtBuckets: [{ prefix: '1', peers: many.slice(REPORT_LIMITS.connectionsMax) }],
      mesh: [{ topic: 't', peers: many.slice(0, REPORT_LIMITS.meshPeersPerTopicMax) }],
      truncated: []
    }
    const bytes = encodeReport(report)
    expect(bytes.byteLength).to.be.at.most(REPORT_LIMITS.reportBytesMax)
    const decoded = decodeReport(bytes)
    if (!decoded.ok) { throw new Error(decoded.error) }
    expect(decoded.report.truncated).to.include('connections')
    expect(decoded.report.connections.length).to.be.below(report.connections.length)
    // what is kept is the start of each list, unchanged
    expect(decoded.report.connections).to.deep.equal(report.connections.slice(0, decoded.report.connections.length))
    expect(decoded.report.dhtBuckets[0].peers).to.deep.equal(report.dhtBuckets[0].peers.slice(0, decoded.report.dhtBuckets[0].peers.length))
  })

  it('a report naming more than peersMax distinct peers is cut until it names at most peersMax', async () => {
    const many = await peerIds(REPORT_LIMITS.connectionsMax + REPORT_LIMITS.dhtPeersMax + 20, 500)
    const report: TopologyReport = {
      reportedAt: 1,
      connections: many.slice(0, REPORT_LIMITS.connectionsMax).map(peer => ({ peer, remoteAddr: '', direction: 'outbound' })),
      dhtBuckets: [{ prefix: '', peers: many.slice(REPORT_LIMITS.connectionsMax, REPORT_LIMITS.connectionsMax + REPORT_LIMITS.dhtPeersMax) }],
      mesh: [{ topic: 't', peers: many.slice(-20) }],
      truncated: []
    }
    const decoded = decodeReport(encodeReport(report))
    if (!decoded.ok) { throw new Error(decoded.error) }
    const named = new Set([...decoded.report.connections.map(c => c.peer), ...decoded.report.dhtBuckets.flatMap(b => b.peers), ...decoded.report.mesh.flatMap(m => m.peers)])
    expect(named.size).to.be.at.most(REPORT_LIMITS.peersMax)
    expect(decoded.report.truncated).to.not.deep.equal([])
  })

  /** [what, the report's bytes, expected reason] */
  const cases = (): Array<[string, Uint8Array, ReportRejectReason]> => {
    const spoilt = (edit: (w: Record<string, any>) => void): Uint8Array => { const w = wire(); edit(w); return encode(w) }
    return [
      ['more bytes than reportBytesMax', encode({ ...wire(), pad: 'x'.repeat(REPORT_LIMITS.reportBytesMax) }), 'oversize'],
      ['not CBOR', Uint8Array.from([0xff, 0xfe, 0x00]), 'malformed'],
      ['CBOR cut short', encode(wire()).subarray(0, 40), 'malformed'],
      ['arrays nested 100 deep', encode(Array.from({ length: 99 }).reduce<unknown>(inner => [inner], [])), 'malformed'],
      ['version 2', spoilt(w => { w.v = 2 }), 'version'],
      ['an array instead of a map', encode([wire()]), 'invalid'],
      ['an unknown field', spoilt(w => { w.extra = 1 }), 'invalid'],
      ['no mesh', spoilt(w => { delete w.mesh }), 'invalid'],
      ['a negative reportedAt', spoilt(w => { w.reportedAt = -1 }), 'invalid'],
      ['a string reportedAt', spoilt(w => { w.reportedAt = 'now' }), 'invalid'],
      ['a peer that is not a peer id', spoilt(w => { w.peers[1] = 'not-a-peer' }), 'invalid'],
      ['a peer id as bytes', spoilt(w => { w.peers[1] = new Uint8Array(38) }), 'invalid'],
      ['a peer named twice', spoilt(w => { w.peers[1] = w.peers[0] }), 'invalid'],
      ['a peer index beyond the peers', spoilt(w => { w.connections[0].peer = 2 }), 'invalid'],
      ['a fractional peer index', spoilt(w => { w.dhtBuckets[0].peers[0] = 0.5 }), 'invalid'],
      ['a negative peer index', spoilt(w => { w.mesh[0].peers[0] = -1 }), 'invalid'],
      ['a direction that is neither', spoilt(w => { w.connections[0].direction = 'sideways' }), 'invalid'],
      ['an addr with a control character', spoilt(w => { w.connections[0].addr = '/ip4/1.2.3.4\n/tcp/1' }), 'invalid'],
      ['an addr that is not a multiaddr', spoilt(w => { w.connections[0].addr = 'ip4/1.2.3.4' }), 'invalid'],
      ['an addr longer than addrCharsMax', spoilt(w => { w.connections[0].addr = `/${'a'.repeat(REPORT_LIMITS.addrCharsMax)}` }), 'invalid'],
      ['a connection with an extra field', spoilt(w => { w.connections[0].from = w.peers[1] }), 'invalid'],
      ['a bucket prefix that is not bits', spoilt(w => { w.dhtBuckets[0].prefix = '012' }), 'invalid'],
      ['a topic with no name', spoilt(w => { w.mesh[0].topic = '' }), 'invalid'],
      ['a topic holding an escape sequence', spoilt(w => { w.mesh[0].topic = 'a\u001b[2Jb' }), 'invalid'],
      ['truncated naming an unknown list', spoilt(w => { w.truncated = ['everything'] }), 'invalid'],
      ['a list given as a map', spoilt(w => { w.connections = { 0: w.connections[0] } }), 'invalid'],
      ['more peers than peersMax', spoilt(w => { w.peers = new Array(REPORT_LIMITS.peersMax + 1).fill(w.peers[0]) }), 'too-many'],
      ['more connections than connectionsMax', spoilt(w => { w.connections = new Array(REPORT_LIMITS.connectionsMax + 1).fill(w.connections[0]) }), 'too-many'],
      ['more DHT peers than dhtPeersMax across buckets', spoilt(w => { w.dhtBuckets = [{ prefix: '0', peers: new Array(REPORT_LIMITS.dhtPeersMax).fill(0) }, { prefix: '1', peers: [1] }] }), 'too-many'],
      ['more topics than meshTopicsMax', spoilt(w => { w.mesh = new Array(REPORT_LIMITS.meshTopicsMax + 1).fill(w.mesh[0]) }), 'too-many'],
      ['more mesh peers in a topic than meshPeersPerTopicMax', spoilt(w => { w.mesh[0].peers = new Array(REPORT_LIMITS.meshPeersPerTopicMax + 1).fill(0) }), 'too-many']
    ]
  }

  it('refuses every bad report with its reason', () => {
    for (const [what, bytes, reason] of cases()) {
      const result = decodeReport(bytes)
      expect(result.ok, what).to.equal(false)
      if (!result.ok) {
        expect(result.reason, `${what}: ${result.error}`).to.equal(reason)
        expect(result.error, what).to.be.a('string').and.not.equal('')
      }
    }
  })

  it('never throws on random or mutated bytes (seeded)', () => {
    const rng = createRng(0x7090)
    const donors = [encodeReport(reportNaming(peers)), encode(wire())]
    let refused = 0
    for (let i = 0; i < 3000; i++) {
      const bytes = i % 3 === 0 ? randomBytes(rng, rng.intBetween(0, 200)) : mutate(rng, donors[i % 2], donors)
      const result = decodeReport(bytes)
      if (!result.ok) { refused++ }
    }
    // most edits break the report; the test is that none threw
    expect(refused).to.be.above(1000)
  })
})
