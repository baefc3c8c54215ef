/**
 * The bytes of a topology report in the cluster-metadata store: one CBOR
 * map. Each peer is named once, in `peers`; the lists refer to it by index
 * (a peer is often connected, in the DHT table and in a mesh at once):
 *
 * `{ v: 1, reportedAt, peers: [id, ...], connections: [{ peer: i, addr,
 * direction: 'inbound'|'outbound' }], dhtBuckets: [{ prefix: '0110',
 * peers: [i, ...] }], mesh: [{ topic, peers: [i, ...] }],
 * truncated: ['connections'|'dht'|'mesh', ...] }`
 *
 * A report read from the store is remote input: decodeReport() bounds the
 * decoding, checks every field against REPORT_LIMITS and returns a reason
 * instead of throwing.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { encode } from 'cborg'
import { decodeBoundedCbor } from '../raft/codec.ts'
import { groupSize, isReportableText, LIST_NAMES, REPORT_LIMITS, takeGroups } from './report.ts'
import type { ConnectionEntry, DhtBucket, ListName, MeshTopic, TopologyReport } from './report.ts'

export const REPORT_VERSION = 1

export type ReportRejectReason =
  /** Larger than REPORT_LIMITS.reportBytesMax. */
  | 'oversize'
  /** Not CBOR, or nested or numerous beyond decodeBoundedCbor's bounds. */
  | 'malformed'
  /** A report version this node does not read. */
  | 'version'
  /** A field missing, unknown, of the wrong type or out of range. */
  | 'invalid'
  /** A list longer than its limit. */
  | 'too-many'

export const REJECT_REASONS: readonly ReportRejectReason[] = ['oversize', 'malformed', 'version', 'invalid', 'too-many']

export type ReportDecodeResult =
  | { ok: true, report: TopologyReport }
  | { ok: false, reason: ReportRejectReason, error: string }

interface WireReport {
  v: number
  reportedAt: number
  peers: string[]
  connections: Array<{ peer: number, addr: string, direction: ConnectionEntry['direction'] }>
  dhtBuckets: Array<{ prefix: string, peers: number[] }>
  mesh: Array<{ topic: string, peers: number[] }>
  truncated: ListName[]
}

/**
 * The report's bytes, within REPORT_LIMITS: while it names more than
 * peersMax peers or takes more than reportBytesMax bytes, its longest list
 * is halved (and named in `truncated`).
 */
export function encodeReport (report: TopologyReport): Uint8Array {
  let current = report
  for (;;) {
    const wire = toWire(current)
    if (wire.peers.length <= REPORT_LIMITS.peersMax) {
      const bytes = encode(wire)
      if (bytes.byteLength <= REPORT_LIMITS.reportBytesMax) { return bytes }
    }
    current = halveLongestList(current)
  }
}

function toWire (report: TopologyReport): WireReport {
  const peers: string[] = []
  const indexes = new Map<string, number>()
  const indexOf = (peer: string): number => {
    let index = indexes.get(peer)
    if (index === undefined) {
      index = peers.push(peer) - 1
      indexes.set(peer, index)
    }
    return index
  }
  return {
    v: REPORT_VERSION,
    reportedAt: report.reportedAt,
    peers,
    connections: report.connections.map(c => ({ peer: indexOf(c.peer), addr: c.remoteAddr, direction: c.direction })),
    dhtBuckets: report.dhtBuckets.map(b => ({ prefix: b.prefix, peers: b.peers.map(indexOf) })),
    mesh: report.mesh.map(m => ({ topic: m.topic, peers: m.peers.map(indexOf) })),
    truncated: report.truncated
  }
}

function halveLongestList (report: TopologyReport): TopologyReport {
  const sizes: Record<ListName, number> = {
    connections: report.connections.length,
    dht: groupSize(report.dhtBuckets),
    mesh: groupSize(report.mesh)
  }
  const longest = LIST_NAMES.reduce((a, b) => sizes[b] > sizes[a] ? b : a)
  if (sizes[longest] === 0) { throw new RangeError('topology: an empty report exceeds reportBytesMax') }
  const truncated = LIST_NAMES.filter(name => name === longest || report.truncated.includes(name))
  const half = Math.floor(sizes[longest] / 2)
  switch (longest) {
    case 'connections': return { ...report, connections: report.connections.slice(0, half), truncated }
    case 'dht': return { ...report, dhtBuckets: takeGroups(report.dhtBuckets, half), truncated }
    default: return { ...report, mesh: takeGroups(report.mesh, half), truncated }
  }
}

class Rejection extends Error {
  readonly reason: ReportRejectReason
  constructor (reason: ReportRejectReason, message: string) {
    super(message)
    this.reason = reason
  }
}

/** Reads a report from the store; never throws. */
export function decodeReport (bytes: Uint8Array): ReportDecodeResult {
  if (bytes.byteLength > REPORT_LIMITS.reportBytesMax) {
    return { ok: false, reason: 'oversize', error: `${bytes.byteLength} bytes, more than ${REPORT_LIMITS.reportBytesMax}` }
  }
  let input: unknown
  try {
    input = decodeBoundedCbor(bytes)
  } catch (err) {
    return { ok: false, reason: 'malformed', error: (err as Error).message }
  }
  try {
    return { ok: true, report: readReport(input) }
  } catch (err) {
    if (err instanceof Rejection) { return { ok: false, reason: err.reason, error: err.message } }
    throw err
  }
}

/** A peer id in the one spelling libp2p gives it (so one peer is never two nodes of the view). */
export function isPeerIdString (value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > REPORT_LIMITS.peerIdCharsMax) { return false }
  try {
    return peerIdFromString(value).toString() === value
  } catch {
    return false
  }
}

function readReport (input: unknown): TopologyReport {
  const report = record(input, 'report', ['v', 'reportedAt', 'peers', 'connections', 'dhtBuckets', 'mesh', 'truncated'])
  if (report.v !== REPORT_VERSION) { throw new Rejection('version', `report version ${String(report.v)}, not ${REPORT_VERSION}`) }
  const reportedAt = report.reportedAt
  if (!Number.isSafeInteger(reportedAt) || (reportedAt as number) < 0) { throw new Rejection('invalid', 'reportedAt is not a time') }

  const peers = list(report.peers, 'peers', REPORT_LIMITS.peersMax)
  for (const peer of peers) {
    if (!isPeerIdString(peer)) { throw new Rejection('invalid', 'peers holds something that is not a peer id') }
  }
  if (new Set(peers).size !== peers.length) { throw new Rejection('invalid', 'peers names a peer twice') }
  const peerAt = (index: unknown, where: string): string => {
    if (!Number.isInteger(index) || (index as number) < 0 || (index as number) >= peers.length) { throw new Rejection('invalid', `${where} refers to no peer`) }
    return peers[index as number] as string
  }
  const peerList = (value: unknown, where: string, max: number): string[] => list(value, where, max).map(i => peerAt(i, where))

  const connections = list(report.connections, 'connections', REPORT_LIMITS.connectionsMax).map((value): ConnectionEntry => {
    const c = record(value, 'a connection', ['peer', 'addr', 'direction'])
    if (c.direction !== 'inbound' && c.direction !== 'outbound') { throw new Rejection('invalid', 'a connection\'s direction is neither inbound nor outbound') }
    const addr = text(c.addr, 'a connection\'s addr', REPORT_LIMITS.addrCharsMax)
    if (addr !== '' && !addr.startsWith('/')) { throw new Rejection('invalid', 'a connection\'s addr is not a multiaddr') }
    return { peer: peerAt(c.peer, 'a connection'), remoteAddr: addr, direction: c.direction }
  })

  const dhtBuckets = list(report.dhtBuckets, 'dhtBuckets', REPORT_LIMITS.dhtPeersMax).map((value): DhtBucket => {
    const b = record(value, 'a DHT bucket', ['prefix', 'peers'])
    const prefix = text(b.prefix, 'a DHT bucket\'s prefix', REPORT_LIMITS.bucketPrefixBitsMax)
    if (!/^[01]*$/.test(prefix)) { throw new Rejection('invalid', 'a DHT bucket\'s prefix is not a string of bits') }
    return { prefix, peers: peerList(b.peers, 'a DHT bucket', REPORT_LIMITS.dhtPeersMax) }
  })
  const dhtPeers = dhtBuckets.reduce((n, b) => n + b.peers.length, 0)
  if (dhtPeers > REPORT_LIMITS.dhtPeersMax) { throw new Rejection('too-many', `${dhtPeers} DHT peers, more than ${REPORT_LIMITS.dhtPeersMax}`) }

  const mesh = list(report.mesh, 'mesh', REPORT_LIMITS.meshTopicsMax).map((value): MeshTopic => {
    const m = record(value, 'a mesh topic', ['topic', 'peers'])
    const topic = text(m.topic, 'a mesh topic\'s name', REPORT_LIMITS.topicCharsMax)
    if (topic === '') { throw new Rejection('invalid', 'a mesh topic has no name') }
    return { topic, peers: peerList(m.peers, `mesh topic ${topic}`, REPORT_LIMITS.meshPeersPerTopicMax) }
  })

  const truncated = list(report.truncated, 'truncated', LIST_NAMES.length)
  if (!truncated.every(name => LIST_NAMES.includes(name as ListName)) || new Set(truncated).size !== truncated.length) {
    throw new Rejection('invalid', 'truncated names something other than connections, dht and mesh, or names one twice')
  }
  return { reportedAt: reportedAt as number, connections, dhtBuckets, mesh, truncated: truncated as ListName[] }
}

/** A map with exactly these keys. */
function record (value: unknown, what: string, keys: string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value == null || Array.isArray(value) || value instanceof Uint8Array) { throw new Rejection('invalid', `${what} is not a map`) }
  const present = Object.keys(value)
  const unknown = present.find(k => !keys.includes(k))
  if (unknown !== undefined) { throw new Rejection('invalid', `${what} has an unknown field "${unknown.slice(0, 32)}"`) }
  const missing = keys.find(k => !present.includes(k))
  if (missing !== undefined) { throw new Rejection('invalid', `${what} has no ${missing}`) }
  return value as Record<string, unknown>
}

function list (value: unknown, what: string, max: number): unknown[] {
  if (!Array.isArray(value)) { throw new Rejection('invalid', `${what} is not a list`) }
  if (value.length > max) { throw new Rejection('too-many', `${what} has ${value.length} entries, more than ${max}`) }
  return value
}

/** A string of at most `max` characters, none of them a control character (see isReportableText). */
function text (value: unknown, what: string, max: number): string {
  if (typeof value !== 'string') { throw new Rejection('invalid', `${what} is not a string`) }
  if (!isReportableText(value, max)) { throw new Rejection('invalid', `${what} is longer than ${max} characters or holds a control character`) }
  return value
}
