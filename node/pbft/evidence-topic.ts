/**
 * Evidence of misbehaviour on gossipsub, `accord/<cluster>/evidence/1`.
 *
 * Evidence is self-certifying (two conflicting messages the offender
 * signed, or a checkpoint it signed with a partial that fails under its
 * share), so any peer may relay it: the topic validator decodes it and
 * checks it against the replica set and this node's threshold group
 * (checkEvidence) and rejects anything else, which costs the sender
 * gossipsub score. A bad partial this node cannot judge (it holds no
 * group, or another one) is ignored instead: neither delivered nor
 * relayed, and not held against the sender, which may hold the group. What
 * passes goes to `onEvidence` (the replica driver, which isolates the
 * offender).
 */
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { checkEvidence, decodeEvidence, encodeEvidence } from '../../protocols/pbft/index.ts'
import type { EvidenceCheck } from '../../protocols/pbft/index.ts'
import type { Evidence, NodeId, PbftCrypto, PbftThresholdGroup } from '../../protocols/pbft/types.ts'
import type { GossipSub, Message } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'

/** Largest evidence message accepted (two signed messages; a pre-prepare may carry a whole batch; a checkpoint is some 300 bytes). */
export const EVIDENCE_BYTES_MAX = 16 * 1024 * 1024

/**
 * Evidence produced here is published again after these delays: a peer
 * whose mesh or subscription was not ready the first time gets it later
 * (a receiver that has it already ignores the copy).
 */
export const EVIDENCE_REPUBLISH_DELAYS_MS: readonly number[] = [1_000, 5_000, 30_000]

export function evidenceTopic (cluster: string): string {
  return `accord/${cluster}/evidence/1`
}

export interface EvidenceTopicInit {
  pubsub: GossipSub
  cluster: string
  /** The replicas evidence may be against and from: the set in force, and a pending one (they change with reconfigurations). */
  replicas(): readonly NodeId[]
  crypto: PbftCrypto
  /** The threshold group this node holds (bad checkpoint partials are judged with it); absent or null: none. */
  group?(): PbftThresholdGroup | null
  onEvidence(evidence: Evidence): void
  /** Evidence that failed validation (counted as a rejection). */
  onInvalid?(source: string, error: string): void
  /** Evidence this node cannot judge (a bad partial under a group it does not hold): ignored. */
  onUnjudgeable?(source: string, error: string): void
  log: Logger
}

export class EvidenceTopic {
  readonly topic: string
  readonly #init: EvidenceTopicInit
  /** Pending republications (a few per offender: each is isolated once). */
  readonly #timers = new Set<ReturnType<typeof setTimeout>>()

  constructor (init: EvidenceTopicInit) {
    this.topic = evidenceTopic(init.cluster)
    this.#init = init
  }

  /** Validate the topic and subscribe to it (gossipsub must have started). */
  start (): void {
    const { pubsub } = this.#init
    pubsub.topicValidators.set(this.topic, this.#validate)
    pubsub.addEventListener('message', this.#onMessage)
    pubsub.subscribe(this.topic)
  }

  stop (): void {
    const { pubsub } = this.#init
    for (const timer of this.#timers) { clearTimeout(timer) }
    this.#timers.clear()
    pubsub.removeEventListener('message', this.#onMessage)
    if (pubsub.topicValidators.get(this.topic) === this.#validate) { pubsub.topicValidators.delete(this.topic) }
    try {
      pubsub.unsubscribe(this.topic)
    } catch (err) {
      this.#init.log.debug({ err: (err as Error).message }, 'pbft: could not unsubscribe from the evidence topic')
    }
  }

  /** Publishes `evidence` now and again after EVIDENCE_REPUBLISH_DELAYS_MS. */
  publish (evidence: Evidence): void {
    const data = encodeEvidence(evidence)
    const send = (): void => {
      this.#init.pubsub.publish(this.topic, data).catch((err: Error) => {
        this.#init.log.debug({ err: err.message }, 'pbft: publishing evidence failed')
      })
    }
    send()
    for (const delayMs of EVIDENCE_REPUBLISH_DELAYS_MS) {
      const timer = setTimeout(() => { this.#timers.delete(timer); send() }, delayMs)
      this.#timers.add(timer)
    }
  }

  /** Checks evidence fully: only what every honest replica would act on is forwarded. */
  check (data: Uint8Array): { ok: true, evidence: Evidence } | Exclude<EvidenceCheck, { ok: true }> {
    if (data.byteLength > EVIDENCE_BYTES_MAX) { return { ok: false, error: `${data.byteLength} bytes exceed ${EVIDENCE_BYTES_MAX}` } }
    const decoded = decodeEvidence(data)
    if (!decoded.ok) { return decoded }
    const checked = checkEvidence(decoded.evidence, this.#init.replicas(), this.#init.crypto, this.#init.group?.() ?? null)
    if (!checked.ok) { return checked }
    return { ok: true, evidence: decoded.evidence }
  }

  readonly #validate = (source: PeerId, msg: Message): TopicValidatorResult => {
    const checked = this.check(msg.data)
    if (checked.ok) { return TopicValidatorResult.Accept }
    if (checked.unjudgeable === true) {
      this.#init.onUnjudgeable?.(source.toString(), checked.error)
      return TopicValidatorResult.Ignore
    }
    this.#init.onInvalid?.(source.toString(), checked.error)
    return TopicValidatorResult.Reject
  }

  readonly #onMessage = (event: CustomEvent<Message>): void => {
    if (event.detail.topic !== this.topic) { return }
    // validated already; decoded again here (rare: evidence is exceptional)
    const checked = this.check(event.detail.data)
    if (checked.ok) { this.#init.onEvidence(checked.evidence) }
  }
}
