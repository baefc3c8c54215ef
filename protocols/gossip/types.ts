/**
 * Plain-data shapes of the anti-entropy core: entries, the two messages it
 * exchanges, the events it reports and the results of its inputs. Everything
 * here is data (no methods, no callbacks) except EntryAuth, the injected
 * signer, so a driver can encode, log or compare the rest.
 */

/** A node's id: its libp2p PeerId string in production, anything non-empty in tests. */
export type NodeId = string

/**
 * One key of one node's metadata at one version. Only `node` writes its
 * entries; everyone else relays them, signature and all.
 * - `value` null is a tombstone: the key was deleted (kept so that the
 * deletion spreads).
 * - `key` '' is a floor (value null): every entry of `node` below `version`
 * is void. A node writes one to drop its tombstones, or after a restart
 * that made it forget what it had published (see README).
 */
export interface Entry {
  node: NodeId
  key: string
  value: Uint8Array | null
  version: number
  /** The node's signature over entryPayload(node, key, value, version). */
  signature: Uint8Array
}

/**
 * Signs this node's entries and checks everyone's (the service uses the
 * node's Ed25519 libp2p key: a PeerId string embeds the public key).
 * Synchronous, and must not throw on a malformed signature (return false).
 */
export interface EntryAuth {
  sign(payload: Uint8Array): Uint8Array
  verify(node: NodeId, payload: Uint8Array, signature: Uint8Array): boolean
}

/** An entry on the wire, inside the NodeDelta that names its node. */
export interface WireEntry {
  key: string
  value: Uint8Array | null
  version: number
  signature: Uint8Array
  /**
   * Ticks since the owner wrote it, as far as the relays know (each adds
   * the ticks it held the entry). Not signed: it only feeds the receiver's
   * convergence estimate (tuning.ts), whose effect is bounded.
   */
  ageTicks: number
}

/** One node's entries above `after`, in increasing version order (a floor, if any, first). */
export interface NodeDelta {
  node: NodeId
  /**
   * The version these entries follow: every entry of `node` the sender holds
   * above `after` is here, up to the last one (a prefix cut by the message
   * size). The receiver takes them only if it holds `node` at `after` or
   * above, so that it never skips a version.
   */
  after: number
  entries: WireEntry[]
}

/**
 * A digest page: the sender's highest version of every node whose id is in
 * (after, until] (code-unit order; null: open on that side). A node in the
 * range that is not listed is one the sender does not hold (version 0).
 */
export interface DigestPage {
  after: NodeId | null
  until: NodeId | null
  /** In ascending id order. */
  versions: DigestEntry[]
}

export interface DigestEntry {
  node: NodeId
  version: number
}

/**
 * What the initiator of an exchange wants back:
 * - 'entries' (pull): the entries its page shows it lacks;
 * - 'digest' (push): the peer's page for the range, to push what the peer lacks;
 * - 'both' (push-pull): both in one answer, then it pushes what the peer lacks.
 */
export type Want = 'entries' | 'digest' | 'both'
export const WANTS: readonly Want[] = ['entries', 'digest', 'both']

/** Opens an exchange. In push mode the page lists no versions (only its range matters). */
export interface DigestMessage {
  type: 'digest'
  from: NodeId
  to: NodeId
  page: DigestPage
  want: Want
}

/**
 * Entries, and (answering a digest that wants one) the sender's own page for
 * the range, so that the initiator can send back what the sender lacks.
 */
export interface DeltaMessage {
  type: 'delta'
  from: NodeId
  to: NodeId
  deltas: NodeDelta[]
  page: DigestPage | null
}

export type GossipMessage = DigestMessage | DeltaMessage
export type GossipMessageType = GossipMessage['type']
export const GOSSIP_MESSAGE_TYPES: readonly GossipMessageType[] = ['digest', 'delta']

export type GossipMode = 'push' | 'pull' | 'push-pull'
export const GOSSIP_MODES: readonly GossipMode[] = ['push', 'pull', 'push-pull']

export type GossipEvent =
  /**
   * A key of `node` changed in our store (our own writes included): a new
   * value, or `deleted` (a tombstone, or a floor that voided it).
   */
  | { type: 'entry:update', node: NodeId, key: string, version: number, deleted: boolean }
  /**
   * We met an entry of ours at `seen`, above our version counter (we
   * restarted and forgot, or someone replays): the counter jumped above it,
   * a floor voided everything older and our current values went out again,
   * now at `version`.
   */
  | { type: 'version:raised', seen: number, version: number }

export interface Ready {
  /** Messages to send, each to its `to`. Loss is tolerated: sending is best effort. */
  messages: GossipMessage[]
  events: GossipEvent[]
}

export type StepRejectReason =
  /** Malformed: wrong types, out-of-range numbers, unsorted lists, unknown type. */
  | 'invalid-message'
  /** Larger than messageBytesMax (by the byte model in size.ts), or a field over its own limit. */
  | 'too-large'
  | 'wrong-recipient'
  | 'from-self'
  /** An entry whose signature does not verify: the whole message is refused. */
  | 'forged-entry'
  /** repliesPerIntervalMax digests answered in this interval already. */
  | 'busy'

/**
 * A refused message changed nothing. An accepted one may still have been
 * partly dropped (a node delta with a gap, over a limit, implausible, or of
 * a forgotten node): the counters tell.
 */
export type StepResult = { ok: true } | { ok: false, reason: StepRejectReason, detail?: string }

export type WriteResult = { ok: true, version: number } | { ok: false, reason: 'invalid-key' | 'too-large' | 'too-many-keys' | 'not-found' | 'versions-exhausted', detail?: string }

export interface GossipCounters {
  invalidMessages: number
  /** Well-formed messages refused (wrong recipient, from ourselves, a forged entry, busy). */
  refusedMessages: number
  /** Entries whose signature did not verify (their messages were refused). */
  forgedEntries: number
  /** Node deltas relayed for a node VERSION_JUMP_MAX or more above the version we hold for it: dropped. */
  implausibleDeltas: number
  /** Node deltas that start above the version we hold (they would skip versions): dropped. */
  gapDeltas: number
  /** Node deltas that would take a node, or the store, past its limits: dropped. */
  overLimitDeltas: number
  /** Node deltas of a node new to us while the store holds nodesMax nodes: dropped. */
  nodesRefused: number
  /** Node deltas of a node forget() dropped, relayed by another within forgetRetentionTicks: dropped. */
  forgottenDeltas: number
  entriesReceived: number
  /** Received entries we already held (at that version or newer, or below the node's floor). */
  entriesDuplicate: number
  entriesApplied: number
  /** Digests not answered: repliesPerIntervalMax reached. */
  repliesRefused: number
  /** Pages in deltas we did not ask for (no exchange open with the sender): ignored. */
  unexpectedPages: number
  exchangesStarted: number
  /** Exchanges whose answer did not come within exchangeTimeoutTicks (push and push-pull only). */
  exchangesExpired: number
  /** Our own entries met above our counter (see the version:raised event). */
  versionRaises: number
  /** Floors written to drop our tombstones (more than keysPerNodeMax of them). */
  compactions: number
  outboxDropped: number
  eventsDropped: number
}

export interface AntiEntropyStatus {
  id: NodeId
  mode: GossipMode
  adaptive: boolean
  /** Peers contacted per round, and ticks between rounds: the configured values, or the tuned ones. */
  fanout: number
  intervalTicks: number
  /** Share of received entries we already held (moving average; 0 before any). */
  duplicateRate: number
  /** Estimated ticks between a write and its arrival here (moving average of new entries' ages; null before any). */
  convergenceTicks: number | null
  /** Nodes in the store (self included once it wrote). */
  nodes: number
  /** Entries held over all nodes: values and tombstones (floors not counted). */
  entries: number
  /** Of which live values... */
  values: number
  /** ... and tombstones. */
  tombstones: number
  /** Bytes of the store by the byte model. */
  bytes: number
  /** Our version counter. */
  version: number
  rounds: number
  peers: number
  pendingExchanges: number
  forgotten: number
  tick: number
  counters: GossipCounters
}
