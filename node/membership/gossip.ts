/**
 * Membership news on gossipsub, beside SWIM's piggybacking: the updates the
 * core originates (Ready.publish) go out on `accord/<cluster>/membership/1`
 * as CBOR `{ updates }`, and what arrives there is checked by a topic
 * validator and fed to the core's receiveGossip(). gossipsub forwards what
 * the validator accepts, so a batch crosses the cluster in a few mesh hops
 * instead of the O(log N) protocol periods of piggybacking.
 *
 * The validator, for each message (StrictSign: `msg.from` is the author,
 * who signed it; the propagation source is the peer that handed it to us):
 * - Reject (gossipsub then penalises the source, see topic.ts): unsigned;
 * a revoked author; more than
 * messageBytesMax bytes; not CBOR of a map; refused by the core
 * (malformed or oversize updates; news implausibly far ahead is only
 * dropped, by the core, as from a piggyback).
 * - Ignore (not applied, not forwarded, no penalty): our own message come
 * back; a core that has stopped or left; a source that admission has not
 * admitted (yet: a member that just connected forwards messages before
 * the certificate exchange ends, and a penalty would sink an honest
 * member below the graylist for minutes; a stranger is closed by
 * admission's grace period instead); an author this node cannot
 * vouch for. Admission knows only the peers connected to this node, so
 * an author counts as a member when admission admitted it or our
 * membership view holds it alive or suspect; an author that is neither
 * may still be a member that joined a moment ago and reached us through
 * one that admitted it, so its forwarder, an admitted member, is not
 * punished for it.
 * - Accept otherwise: the core has applied the batch.
 * Each Reject, and each Ignore of an unknown author, is counted in
 * accord_refusals_total{protocol=<topic>,reason} and logged at debug;
 * every message in accord_membership_gossip_messages_total{result}.
 */
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { encode } from 'cborg'
import { isLive, updateBytes } from '../../protocols/membership/index.ts'
import { decodeBoundedCbor } from '../raft/codec.ts'
import type { MembershipMetrics } from './metrics.ts'
import type { MembershipNode, Update } from '../../protocols/membership/index.ts'
import type { GossipMetrics } from '../gossip-metrics.ts'
import type { Refusals } from '../refusals.ts'
import type { GossipSub, Message } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'

/** Why a message on the topic was not applied (fixed words: they label accord_refusals_total). */
export type GossipRefusal = 'unsigned' | 'not-admitted' | 'author-revoked' | 'author-unknown' | 'too-large' | 'malformed' | 'invalid-message'

export interface MembershipGossipInit {
  pubsub: GossipSub
  topic: string
  /** This node's peer id (its own messages coming back are ignored). */
  self: string
  admission: { isAdmitted(peer: string): boolean, isRevoked(peer: string): boolean, readonly refusals: Refusals }
  /** A larger message is rejected before it is decoded. */
  messageBytesMax: number
  /** A published message holds updates of at most this many bytes (the core's byte model); a batch is split beyond it. */
  batchBytesMax: number
  /** The core now (undefined once stopped). */
  core(): MembershipNode | undefined
  /** Called after the core took a batch (to send and report what it produced). */
  afterInput(): void
  metrics: MembershipMetrics
  bytes: GossipMetrics
  log: Logger
}

export class MembershipGossip {
  readonly topic: string
  readonly #init: MembershipGossipInit

  constructor (init: MembershipGossipInit) {
    this.topic = init.topic
    this.#init = init
  }

  /** Validate the topic and subscribe to it (gossipsub must have started). */
  start (): void {
    this.#init.pubsub.topicValidators.set(this.topic, this.#validate)
    this.#init.pubsub.subscribe(this.topic)
  }

  stop (): void {
    const { pubsub } = this.#init
    if (pubsub.topicValidators.get(this.topic) === this.#validate) { pubsub.topicValidators.delete(this.topic) }
    try {
      pubsub.unsubscribe(this.topic)
    } catch (err) {
      // gossipsub stopped first: nothing to leave
      this.#init.log.debug({ err: (err as Error).message }, 'membership: could not unsubscribe from the topic')
    }
  }

  /** Publish a Ready's `publish` batch, split into messages of at most batchBytesMax (by the byte model). */
  publish (updates: readonly Update[]): void {
    const { pubsub, bytes, metrics, log } = this.#init
    for (const batch of splitByBytes(updates, this.#init.batchBytesMax)) {
      const data = encode({ updates: batch })
      bytes.published(this.topic, data.byteLength)
      metrics.gossip('published')
      pubsub.publish(this.topic, data).catch((err: Error) => {
        log.debug({ err: err.message, updates: batch.length }, 'membership: publish failed')
      })
    }
  }

  readonly #validate = (source: PeerId, msg: Message): TopicValidatorResult => {
    const { admission, metrics } = this.#init
    const core = this.#init.core()
    if (core == null) { return TopicValidatorResult.Ignore }
    this.#init.bytes.received(this.topic, msg.data.byteLength)
    const from = source.toString()
    if (msg.type !== 'signed') { return this.#refuse(TopicValidatorResult.Reject, from, null, 'unsigned') }
    const author = msg.from.toString()
    if (!admission.isAdmitted(from)) { return this.#refuse(TopicValidatorResult.Ignore, from, author, 'not-admitted') }
    if (author === this.#init.self) {
      metrics.gossip('ignored')
      return TopicValidatorResult.Ignore
    }
    if (admission.isRevoked(author)) { return this.#refuse(TopicValidatorResult.Reject, from, author, 'author-revoked') }
    if (!admission.isAdmitted(author) && !isLive(core.stateOf(author))) { return this.#refuse(TopicValidatorResult.Ignore, from, author, 'author-unknown') }
    if (msg.data.byteLength > this.#init.messageBytesMax) {
      return this.#refuse(TopicValidatorResult.Reject, from, author, 'too-large', `${msg.data.byteLength} bytes > ${this.#init.messageBytesMax}`)
    }
    let decoded: unknown
    try {
      decoded = decodeBoundedCbor(msg.data)
    } catch (err) {
      return this.#refuse(TopicValidatorResult.Reject, from, author, 'malformed', (err as Error).message)
    }
    if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) {
      return this.#refuse(TopicValidatorResult.Reject, from, author, 'malformed', 'not a map')
    }
    const result = core.receiveGossip(author, (decoded as { updates?: unknown }).updates)
    if (!result.ok) {
      // from-self cannot happen (checked above); left: we are on our way out, the sender did nothing wrong
      if (result.reason !== 'invalid-message' && result.reason !== 'too-large') {
        metrics.gossip('ignored')
        return TopicValidatorResult.Ignore
      }
      return this.#refuse(TopicValidatorResult.Reject, from, author, result.reason, result.detail)
    }
    metrics.gossip('accepted')
    this.#init.afterInput()
    return TopicValidatorResult.Accept
  }

  #refuse (result: TopicValidatorResult, source: string, author: string | null, reason: GossipRefusal, detail?: string): TopicValidatorResult {
    this.#init.metrics.gossip(result === TopicValidatorResult.Reject ? 'rejected' : 'ignored')
    this.#init.admission.refusals.refuse(source, this.topic, reason, { author, ...(detail !== undefined ? { detail } : {}) })
    this.#init.log.debug({ source, author, reason, detail, result }, 'membership: gossip message not applied')
    return result
  }
}

/** `updates` in order, in runs of at most `budget` bytes each (an update larger than the budget goes alone). */
export function splitByBytes (updates: readonly Update[], budget: number): Update[][] {
  const batches: Update[][] = []
  let batch: Update[] = []
  let bytes = 0
  for (const u of updates) {
    const size = updateBytes(u)
    if (batch.length > 0 && bytes + size > budget) {
      batches.push(batch)
      batch = []
      bytes = 0
    }
    batch.push(u)
    bytes += size
  }
  if (batch.length > 0) { batches.push(batch) }
  return batches
}
