/**
 * Plain-data shapes of the membership core: the messages it exchanges, the
 * membership updates they carry, the events it reports and the results of
 * its inputs. Everything here is data (no methods, no callbacks), so a
 * driver can encode it, log it or compare it.
 */

/** A member's id: its libp2p PeerId string in production, anything non-empty in tests. */
export type MemberId = string

/**
 * alive < suspect < dead < left at the same incarnation (see precedence.ts).
 * `left` is `dead` by the member's own choice (leave()).
 */
export type MemberState = 'alive' | 'suspect' | 'dead' | 'left'

/** "`id` is alive at `incarnation` with metadata `meta`" (the only update that carries metadata). */
export interface AliveUpdate {
  kind: 'alive'
  id: MemberId
  incarnation: number
  meta: Uint8Array
}

/** "`from` could not reach `id` at `incarnation`" (its suspicion, which other members confirm). */
export interface SuspectUpdate {
  kind: 'suspect'
  id: MemberId
  incarnation: number
  from: MemberId
}

/** "`from` declared `id` dead at `incarnation`" (its suspicion timed out). */
export interface DeadUpdate {
  kind: 'dead'
  id: MemberId
  incarnation: number
  from: MemberId
}

/** "`id` left at `incarnation`": sent only by the member itself, through leave(). */
export interface LeftUpdate {
  kind: 'left'
  id: MemberId
  incarnation: number
}

export type Update = AliveUpdate | SuspectUpdate | DeadUpdate | LeftUpdate
export type UpdateKind = Update['kind']

interface MessageBase {
  from: MemberId
  to: MemberId
  /** Membership updates piggybacked on the message (SWIM's infection-style dissemination). */
  updates: Update[]
}

/** A probe: answer with an ack carrying the same seq. */
export interface PingMessage extends MessageBase {
  type: 'ping'
  seq: number
}

/** The answer to a ping; an intermediary forwards the target's ack with the prober's seq. */
export interface AckMessage extends MessageBase {
  type: 'ack'
  seq: number
  /**
   * The acking member does not know the pinger (it missed the pinger's
   * alive update, or forgot it): the pinger introduces itself with a ping
   * carrying its alive update.
   * Infection-style dissemination misses a member now and then; without
   * this, only anti-entropy would ever fix it.
   */
  announce: boolean
}

/**
 * Lifeguard: an intermediary asked for an indirect probe could not reach the
 * target within its probe timeout. The prober counts nacks it expected but
 * did not get as evidence that it is itself slow or cut off.
 */
export interface NackMessage extends MessageBase {
  type: 'nack'
  seq: number
}

/** "Probe `target` for me" (SWIM's indirect probe); `nack`: answer with a nack on timeout. */
export interface PingReqMessage extends MessageBase {
  type: 'ping-req'
  seq: number
  target: MemberId
  nack: boolean
}

/**
 * Asks a member for one page of its member list: the members whose ids sort
 * after `after` (null: from the start). Sent by a joiner to its seed, page
 * after page, and now and then by any member to a random one (a sync). The
 * sender's own alive update rides in `updates`, so the recipient learns of
 * it and spreads the news.
 */
export interface JoinMessage extends MessageBase {
  type: 'join'
  after: MemberId | null
}

/**
 * One page of the seed's member list, in id order: alive and suspect members
 * as alive updates (their incarnation and metadata). `next` is the cursor of
 * the next page, null on the last.
 */
export interface JoinAckMessage extends MessageBase {
  type: 'join-ack'
  members: AliveUpdate[]
  next: MemberId | null
}

export type Message = PingMessage | AckMessage | NackMessage | PingReqMessage | JoinMessage | JoinAckMessage
export type MessageType = Message['type']
export const MESSAGE_TYPES: readonly MessageType[] = ['ping', 'ack', 'nack', 'ping-req', 'join', 'join-ack']

/** What members() and member() report about one member. */
export interface MemberInfo {
  id: MemberId
  state: MemberState
  incarnation: number
  meta: Uint8Array
}

/**
 * What happened, as data, in the order it happened. `member:*` events about
 * other members follow their state; this member's own refutations come as
 * `member:alive` with its own id, its leave() as `member:leave`.
 */
export type MembershipEvent =
  /** A member became known, or came back after being dead or left (at a higher incarnation). */
  | { type: 'member:join', id: MemberId, incarnation: number, meta: Uint8Array }
  /** An alive member's metadata changed. */
  | { type: 'member:update', id: MemberId, incarnation: number, meta: Uint8Array }
  | { type: 'member:suspect', id: MemberId, incarnation: number, from: MemberId }
  /** A suspect member refuted the suspicion (for our own id: we refuted one about us). */
  | { type: 'member:alive', id: MemberId, incarnation: number }
  | { type: 'member:dead', id: MemberId, incarnation: number, from: MemberId }
  | { type: 'member:leave', id: MemberId, incarnation: number }
  /** join(): the member list of `seed` was transferred. */
  | { type: 'join:done', seed: MemberId, pages: number }
  /** join(): no seed answered within joinAttemptsMax attempts. */
  | { type: 'join:failed', seeds: MemberId[] }
  /** leave(): the left update was handed out its full retransmit count; the driver may stop the node. */
  | { type: 'leave:done' }

export interface Ready {
  /** Messages to send, each to its `to`. Loss is tolerated: sending is best effort. */
  messages: Message[]
  events: MembershipEvent[]
  /**
   * Updates this member originated since the last ready(), for a driver
   * that also spreads news on a broadcast channel (the service: a gossipsub
   * topic): its own alive update at start, join(), setMeta() and on each
   * refutation, its left update on leave(), each suspicion it starts or
   * confirms with its own probe, and the death that ends a suspicion it
   * started (the others whose timers run out declare it too, but do not
   * publish it: see fireSuspicions). At most publishUpdatesMax, one per
   * member (the newest). News
   * learnt from others is never here: their authors published it already,
   * and the channel forwards it. Every one of these is piggybacked too, so
   * a driver may ignore this field.
   */
  publish: Update[]
}

export type StepRejectReason =
  /** Malformed: wrong types, out-of-range numbers, unknown type. */
  | 'invalid-message'
  /** Larger than messageBytesMax (by the byte model in size.ts), or a field over its own limit. */
  | 'too-large'
  | 'wrong-recipient'
  | 'from-self'
  /** A ping-req from a member we do not know: we do not probe on behalf of strangers. */
  | 'unknown-sender'
  /** A ping-req for a member we do not know (or that is dead or left). */
  | 'unknown-target'
  /** Pending indirect probes or join answers are at their limit. */
  | 'busy'
  /** A join-ack nobody asked for. */
  | 'unexpected'
  /** This member has left (or is leaving and the message would need it to act). */
  | 'left'

/**
 * A rejected message changed nothing (its piggybacked updates were not
 * applied either). An accepted one may still have had no effect (a late
 * ack, say): the counters tell.
 */
export type StepResult = { ok: true } | { ok: false, reason: StepRejectReason, detail?: string }

export type SetMetaResult = { ok: true, incarnation: number } | { ok: false, reason: 'too-large' | 'left', detail?: string }

export interface MembershipCounters {
  invalidMessages: number
  rejectedMessages: number
  /** Acks that matched no probe or relay (late, duplicated, or reconnect pings). */
  unmatchedAcks: number
  probes: number
  probesFailed: number
  indirectProbes: number
  nacksSent: number
  /** Nacks an indirect probe expected but did not get (each raises the health multiplier). */
  nacksMissed: number
  refutations: number
  /** Suspicions this node holds that began, its own or ones it heard of (each starts a suspicion timer here). */
  suspicionsStarted: number
  deadDeclared: number
  /** New members not added because the table held membersMax members. */
  membersRefused: number
  /** Updates about members we do not know that could not be applied (suspect/dead/left of a stranger). */
  updatesIgnored: number
  /** Relayed updates whose incarnation ran more than INCARNATION_JUMP_MAX ahead of ours for the member (a lie): dropped. */
  updatesImplausible: number
  /** Queued broadcasts dropped because the queue held broadcastQueueMax. */
  broadcastsDropped: number
  outboxDropped: number
  eventsDropped: number
  /** Pings sent to dead members so that a live one, cut off before, can refute. */
  reconnectProbes: number
  joinRequestsRefused: number
  /** Our alive update queued again because a stale accusation about us came by. */
  reannouncements: number
  /** Periodic one-page pulls of a random member's list. */
  syncs: number
  /** Pings carrying our alive update, sent to a member whose ack said it did not know us. */
  introductions: number
  /** Pings sent to a member right after we began suspecting it, carrying the accusation. */
  suspectNotices: number
  /** Updates handed out in Ready.publish. */
  updatesPublished: number
  /** Updates to publish dropped because publishUpdatesMax were waiting (they still piggyback). */
  publishDropped: number
  /** Broadcast batches accepted by receiveGossip() (rejected ones count in invalidMessages or rejectedMessages). */
  gossipBatches: number
  /** Updates from receiveGossip() that changed our view (a state, an incarnation, metadata or a new confirmation). */
  gossipNews: number
}

export interface MembershipStatus {
  id: MemberId
  incarnation: number
  /** Lifeguard's local health multiplier, 0 (healthy) .. awarenessMax. */
  healthMultiplier: number
  /** The current protocol period and probe timeout in ticks (scaled by the health multiplier + 1). */
  probeIntervalTicks: number
  probeTimeoutTicks: number
  /** Members in the table, self and dead/left tombstones included. */
  members: number
  /** alive + suspect members, self included. */
  liveMembers: number
  suspicions: number
  broadcastsQueued: number
  pendingRelays: number
  joining: boolean
  leaving: boolean
  left: boolean
  tick: number
  counters: MembershipCounters
}
