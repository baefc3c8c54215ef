/**
 * A node's topology report: what this node sees of the overlay right now
 * (its connections, its kad-dht routing table by bucket, its gossipsub mesh
 * per topic), read from the libp2p services it runs. Every list is cut at
 * a named limit, and the report says which lists were cut.
 */
import type { Connection } from '@libp2p/interface'

export type ListName = 'connections' | 'dht' | 'mesh'
export const LIST_NAMES: readonly ListName[] = ['connections', 'dht', 'mesh']

export interface ConnectionEntry {
  peer: string
  /** The connection's remote address ('' when it is not reportable: see isReportableText). */
  remoteAddr: string
  direction: 'inbound' | 'outbound'
}

/**
 * A leaf of kad-dht's routing table: the peers whose Kademlia id (SHA-256
 * of the peer id's multihash) starts with `prefix`, a string of bits.
 */
export interface DhtBucket {
  prefix: string
  peers: string[]
}

/** A gossipsub topic this node subscribes to, and its mesh peers for it (possibly none). */
export interface MeshTopic {
  topic: string
  peers: string[]
}

export interface TopologyReport {
  /** When the node made this report (ms since the epoch, by its own clock); reports are made only when something changed. */
  reportedAt: number
  connections: ConnectionEntry[]
  /** Non-empty buckets only, by prefix. */
  dhtBuckets: DhtBucket[]
  mesh: MeshTopic[]
  /** The lists that were cut to fit the limits. */
  truncated: ListName[]
}

/**
 * The bounds of one report. The encoded report must stay below the
 * cluster-metadata store's 16 KiB per value; the list caps keep a typical
 * report (a peer id is ~52 characters) well within it, and the encoder cuts
 * further when one does not fit (reportBytesMax).
 */
export const REPORT_LIMITS = {
  reportBytesMax: 15 * 1024,
  /** Distinct peers named in one report (the encoded report lists each once). */
  peersMax: 256,
  connectionsMax: 128,
  /** Peers across all DHT buckets (and so buckets, which are never empty). */
  dhtPeersMax: 128,
  meshTopicsMax: 32,
  meshPeersPerTopicMax: 64,
  addrCharsMax: 256,
  topicCharsMax: 256,
  /** kad-dht's trie is at most 256 bits deep (its ids are SHA-256 digests). */
  bucketPrefixBitsMax: 256,
  /** Longer than any peer id libp2p makes (an RSA key's CIDv1 is ~62 characters). */
  peerIdCharsMax: 128
} as const

/**
 * The gossipsub calls a report makes. getMeshPeers is a method of
 * `@libp2p/gossipsub` 17's GossipSub class, not of its exported interface:
 * it is looked for, and a pubsub without it reads as no topics.
 */
export interface MeshSource {
  getTopics(): string[]
  getMeshPeers(topic: string): string[]
}

export interface ReportSources {
  connections: Connection[]
  /** The kad-dht service, if the node runs one (read as described at dhtBucketsOf). */
  dht?: unknown
  /** The gossipsub service, if the node runs one (a MeshSource). */
  pubsub?: unknown
}

/** The node's report now, lists sorted (an unchanged overlay gives an equal report) and cut at REPORT_LIMITS. */
export function collectReport (sources: ReportSources, reportedAt: number): TopologyReport {
  const truncated: ListName[] = []
  const cut = <T>(list: T[], max: number, name: ListName): T[] => {
    if (list.length <= max) { return list }
    if (!truncated.includes(name)) { truncated.push(name) }
    return list.slice(0, max)
  }

  const connections = sources.connections
    .filter(c => c.status === 'open')
    .map(c => {
      const addr = c.remoteAddr.toString()
      return { peer: c.remotePeer.toString(), remoteAddr: isReportableText(addr, REPORT_LIMITS.addrCharsMax) ? addr : '', direction: c.direction }
    })
    .sort((a, b) => compareStrings(a.peer, b.peer) || compareStrings(a.remoteAddr, b.remoteAddr) || compareStrings(a.direction, b.direction))

  const buckets = dhtBucketsOf(sources.dht)
  const dhtPeers = groupSize(buckets)
  const dhtBuckets = dhtPeers > REPORT_LIMITS.dhtPeersMax ? takeGroups(buckets, REPORT_LIMITS.dhtPeersMax) : buckets
  if (dhtBuckets !== buckets) { truncated.push('dht') }

  // a topic a reader would refuse is left out (an app may name topics as it likes)
  const pubsub = meshSourceOf(sources.pubsub)
  const allTopics = pubsub?.getTopics() ?? []
  const topics = allTopics.filter(t => t !== '' && isReportableText(t, REPORT_LIMITS.topicCharsMax)).sort(compareStrings)
  if (topics.length < allTopics.length) { truncated.push('mesh') }
  const mesh = cut(topics, REPORT_LIMITS.meshTopicsMax, 'mesh').map(topic => ({
    topic,
    peers: cut([...(pubsub?.getMeshPeers(topic) ?? [])].sort(compareStrings), REPORT_LIMITS.meshPeersPerTopicMax, 'mesh')
  }))

  return {
    reportedAt,
    connections: cut(connections, REPORT_LIMITS.connectionsMax, 'connections'),
    dhtBuckets,
    mesh,
    truncated: LIST_NAMES.filter(name => truncated.includes(name))
  }
}

/**
 * Text a report may carry: at most `max` characters and no control
 * character (reports are printed on terminals and in dot files).
 */
export function isReportableText (value: string, max: number): boolean {
  return value.length <= max && !/\p{Cc}/u.test(value)
}

function meshSourceOf (pubsub: unknown): MeshSource | undefined {
  const source = pubsub as Partial<MeshSource> | undefined
  return typeof source?.getTopics === 'function' && typeof source.getMeshPeers === 'function' ? source as MeshSource : undefined
}

/** A node of kad-dht's routing-table trie: a leaf holds peers; an inner node has two children. */
interface TrieNode {
  peers?: Array<{ peerId: { toString(): string } }>
  left?: TrieNode
  right?: TrieNode
}

/**
 * The non-empty buckets of kad-dht's routing table. kad-dht 16 keeps it
 * as a binary trie at `routingTable.kb.root` (its KBucket): a leaf has
 * `peers`, an inner node `left` (next bit 0) and `right` (next bit 1). Its
 * typed API shows only the table's size, so the trie is read defensively:
 * another shape reads as no buckets.
 */
export function dhtBucketsOf (dht: unknown): DhtBucket[] {
  const root = (dht as { routingTable?: { kb?: { root?: TrieNode } } } | undefined)?.routingTable?.kb?.root
  const buckets: DhtBucket[] = []
  const walk = (node: TrieNode | undefined, prefix: string): void => {
    if (node == null || prefix.length > REPORT_LIMITS.bucketPrefixBitsMax) { return }
    if (Array.isArray(node.peers)) {
      if (node.peers.length > 0) { buckets.push({ prefix, peers: node.peers.map(p => p.peerId.toString()).sort(compareStrings) }) }
      return
    }
    walk(node.left, `${prefix}0`)
    walk(node.right, `${prefix}1`)
  }
  walk(root, '')
  return buckets
}

/** Entries of grouped lists (buckets, mesh topics): each peer counts one, and a group with no peers counts one too. */
export function groupSize (groups: Array<{ peers: string[] }>): number {
  return groups.reduce((n, g) => n + Math.max(1, g.peers.length), 0)
}

/** The first `count` entries of grouped lists (as groupSize counts them), groups kept in order. */
export function takeGroups<G extends { peers: string[] }> (groups: G[], count: number): G[] {
  const kept: G[] = []
  let left = count
  for (const group of groups) {
    if (left <= 0) { break }
    const take = Math.min(left, Math.max(1, group.peers.length))
    kept.push({ ...group, peers: group.peers.slice(0, take) })
    left -= take
  }
  return kept
}

/** Strings by UTF-16 code units (the same order on every machine, unlike localeCompare). */
export function compareStrings (a: string, b: string): number {
  if (a < b) { return -1 }
  return a > b ? 1 : 0
}
