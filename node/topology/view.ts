/**
 * The overlay as the members report it: every node's topology report,
 * read from the cluster-metadata store, merged into one graph.
 *
 * An edge is one node's claim about its own neighbours: `from` is always
 * the node whose report holds it (the store says whose report it is), so a
 * report cannot speak for another node. A link both ends report is two
 * edges, one each way.
 */
import { decodeReport, isPeerIdString, REJECT_REASONS } from './codec.ts'
import { compareStrings, REPORT_LIMITS } from './report.ts'
import type { ReportDecodeResult, ReportRejectReason } from './codec.ts'
import type { ConnectionEntry, ListName, TopologyReport } from './report.ts'

export type EdgeKind = 'connection' | 'dht' | `mesh:${string}`

export interface TopologyNode {
  peerId: string
  /** Whether the view holds this node's own report (false: only others name it, or its report was skipped). */
  reported: boolean
  /** When the node made its report (its own clock, ms since the epoch). */
  reportedAt?: number
  /** Its non-empty kad-dht buckets: the Kademlia-id prefix and how many peers each holds. */
  dhtBuckets?: Array<{ prefix: string, peers: number }>
  /** The gossipsub topics it subscribes to. */
  meshTopics?: string[]
  /** The lists its report had to cut. */
  truncated?: ListName[]
}

export interface TopologyEdge {
  /** The node that reported this edge. */
  from: string
  to: string
  /** Sorted: 'connection', 'dht', then 'mesh:<topic>' by topic. */
  kinds: EdgeKind[]
  /** Present with kind 'connection': each open connection, as `from` sees it. */
  connections?: Array<Pick<ConnectionEntry, 'direction' | 'remoteAddr'>>
}

export interface SkippedReport {
  peerId: string
  reason: ReportRejectReason
}

export interface TopologyGraph {
  /** The node whose view this is. */
  self: string
  /** Sorted by peer id: every node that reported, and every node a report names. */
  nodes: TopologyNode[]
  /** Sorted by from, then to. */
  edges: TopologyEdge[]
  /** Reports found in the store but not read (malformed, oversize, wrong types...). */
  skipped: SkippedReport[]
  /** Reports beyond reportsMax, left out of this view. */
  reportsOmitted: number
}

export interface ReceivedReport {
  peerId: string
  report: TopologyReport
}

/** Merges reports into nodes and edges (pure: the unit of the view). Self-loops are dropped. */
export function mergeReports (received: ReceivedReport[]): Pick<TopologyGraph, 'nodes' | 'edges'> {
  const nodes = new Map<string, TopologyNode>()
  const edges = new Map<string, TopologyEdge>()
  const named = (peerId: string): void => {
    if (!nodes.has(peerId)) { nodes.set(peerId, { peerId, reported: false }) }
  }
  for (const { peerId: from, report } of received) {
    nodes.set(from, {
      peerId: from,
      reported: true,
      reportedAt: report.reportedAt,
      dhtBuckets: report.dhtBuckets.map(b => ({ prefix: b.prefix, peers: b.peers.length })),
      meshTopics: report.mesh.map(m => m.topic),
      truncated: report.truncated
    })
    const edge = (to: string, kind: EdgeKind): TopologyEdge | undefined => {
      if (to === from) { return undefined }
      named(to)
      const key = `${from} ${to}`
      let found = edges.get(key)
      if (found === undefined) {
        found = { from, to, kinds: [] }
        edges.set(key, found)
      }
      if (!found.kinds.includes(kind)) { found.kinds.push(kind) }
      return found
    }
    for (const c of report.connections) {
      const found = edge(c.peer, 'connection')
      if (found !== undefined) { (found.connections ??= []).push({ direction: c.direction, remoteAddr: c.remoteAddr }) }
    }
    for (const bucket of report.dhtBuckets) {
      for (const peer of bucket.peers) { edge(peer, 'dht') }
    }
    for (const { topic, peers } of report.mesh) {
      for (const peer of peers) { edge(peer, `mesh:${topic}`) }
    }
  }
  for (const edge of edges.values()) { edge.kinds.sort(compareKinds) }
  return {
    nodes: [...nodes.values()].sort((a, b) => compareStrings(a.peerId, b.peerId)),
    edges: [...edges.values()].sort((a, b) => compareStrings(a.from, b.from) || compareStrings(a.to, b.to))
  }
}

/** A value in the store: whose, and which version of it. */
export interface StoredReport {
  peerId: string
  value: Uint8Array
  version: number
}

interface ReadReport {
  peerId: string
  version: number
  result: ReportDecodeResult
  /** Whether the store named a peer id as the writer. */
  writerNamed: boolean
}

export interface ReportReaderOptions {
  /** Reports read into one view, at most (this node's first, then by peer id). */
  reportsMax: number
  /** Told about each report skipped, once per version. */
  onReject?(peerId: string, reason: ReportRejectReason, error: string): void
}

/**
 * Reads the reports in the store into views. Each stored version is
 * decoded once: the decoded reports are kept per node, for the nodes of the
 * latest read only (at most reportsMax), and each bad version is counted
 * once in `rejected`.
 */
export class ReportReader {
  readonly rejected: Record<ReportRejectReason, number> = Object.fromEntries(REJECT_REASONS.map(r => [r, 0])) as Record<ReportRejectReason, number>
  readonly #options: ReportReaderOptions
  readonly #decoded = new Map<string, Omit<ReadReport, 'peerId'>>()

  constructor (options: ReportReaderOptions) {
    this.#options = options
  }

  /** The graph of the reports in `stored` (the store's entries), as node `self` sees it. */
  view (self: string, stored: StoredReport[]): TopologyGraph {
    const { read, omitted } = this.refresh(self, stored)
    const received: ReceivedReport[] = []
    const skipped: SkippedReport[] = []
    for (const { peerId, result, writerNamed } of read) {
      if (result.ok) {
        received.push({ peerId, report: result.report })
      } else if (writerNamed) {
        skipped.push({ peerId, reason: result.reason })
      }
    }
    const { nodes, edges } = mergeReports(received)
    // a node whose report was skipped is still a node of the cluster
    const merged = new Map(nodes.map(n => [n.peerId, n]))
    for (const { peerId } of skipped) {
      if (!merged.has(peerId)) { merged.set(peerId, { peerId, reported: false }) }
    }
    return {
      self,
      nodes: [...merged.values()].sort((a, b) => compareStrings(a.peerId, b.peerId)),
      edges,
      skipped,
      reportsOmitted: omitted
    }
  }

  /** Decodes the versions not seen yet (counting the bad ones) and forgets the nodes no longer read. */
  refresh (self: string, stored: StoredReport[]): { read: ReadReport[], omitted: number } {
    const ordered = [...stored.filter(s => s.peerId === self), ...stored.filter(s => s.peerId !== self).sort((a, b) => compareStrings(a.peerId, b.peerId))]
    const kept = ordered.slice(0, this.#options.reportsMax)
    const read = kept.map(({ peerId, value, version }): ReadReport => {
      const cached = this.#decoded.get(peerId)
      if (cached?.version === version) { return { peerId, ...cached } }
      // the store names the writer; a name that is not a peer id is counted, never shown
      const writerNamed = isPeerIdString(peerId)
      const result: ReportDecodeResult = writerNamed ? decodeReport(value) : { ok: false, reason: 'invalid', error: 'the store names no peer id as the writer' }
      if (!result.ok) {
        this.rejected[result.reason]++
        this.#options.onReject?.(peerId.slice(0, REPORT_LIMITS.peerIdCharsMax), result.reason, result.error)
      }
      this.#decoded.set(peerId, { version, result, writerNamed })
      return { peerId, version, result, writerNamed }
    })
    const readIds = new Set(kept.map(s => s.peerId))
    for (const peerId of this.#decoded.keys()) {
      if (!readIds.has(peerId)) { this.#decoded.delete(peerId) }
    }
    return { read, omitted: ordered.length - kept.length }
  }
}

/** 'connection' first, then 'dht', then the mesh topics by name. */
function compareKinds (a: EdgeKind, b: EdgeKind): number {
  return kindRank(a) - kindRank(b) || compareStrings(a, b)
}

function kindRank (kind: EdgeKind): number {
  if (kind === 'connection') { return 0 }
  return kind === 'dht' ? 1 : 2
}
