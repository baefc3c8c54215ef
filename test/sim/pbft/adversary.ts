/**
 * What a Byzantine replica does to its own outgoing messages (see Adversary
 * in options.ts). The replica itself is a real driver; the adversary sits
 * between it and the network, and may drop, delay, corrupt, forge, replay or
 * add messages. Everything it signs, it signs with its own key (it has no
 * other): a message "signed" in another's name carries a bad signature.
 */
import { conflictingPrePrepare, conflictingPrepare } from '../../../node/pbft/faulty.ts'
import { signingPayload } from '../../../protocols/pbft/index.ts'
import type { Adversary } from './options.ts'
import type { Rng } from '../../../protocols/common/rng.ts'
import type { NodeId, Outbound, PbftCrypto, PbftMessage, PrePrepare, Prepare } from '../../../protocols/pbft/types.ts'

/** A message to send after `delayMs` (0: now). */
export interface Emission {
  delayMs: number
  outbound: Outbound
}

/** Old messages a replayer keeps. */
const REPLAY_KEPT = 64
/** Messages one flood burst sends. */
const FLOOD_BURST = 6

export class AdversaryModule {
  readonly kind: Adversary
  readonly stats = { dropped: 0, delayed: 0, corrupted: 0, forged: 0, replayed: 0, flooded: 0 }
  private readonly self: NodeId
  private readonly replicas: NodeId[]
  private readonly crypto: PbftCrypto
  private readonly rng: Rng
  private readonly kept: PbftMessage[] = []

  constructor (kind: Adversary, self: NodeId, replicas: NodeId[], crypto: PbftCrypto, rng: Rng) {
    this.kind = kind
    this.self = self
    this.replicas = replicas
    this.crypto = crypto
    this.rng = rng
  }

  /** A message this replica received (a replayer keeps it). */
  observe (message: PbftMessage): void {
    if (this.kind !== 'replay' || message.type === 'request' || message.type === 'reply') { return }
    this.kept.push(message)
    if (this.kept.length > REPLAY_KEPT) { this.kept.splice(0, this.kept.length - REPLAY_KEPT) }
  }

  /** What becomes of one outgoing message. */
  rewrite (outbound: Outbound): Emission[] {
    const { message } = outbound
    switch (this.kind) {
      case 'silent':
        this.stats.dropped++
        return []
      case 'slow':
        if (message.type !== 'pre-prepare') { return [{ delayMs: 0, outbound }] }
        this.stats.delayed++
        return [{ delayMs: this.rng.intBetween(80, 250), outbound }]
      case 'forge':
        return this.forge(outbound)
      case 'replay':
        return this.replay(outbound)
      case 'flood':
        return this.flood(outbound)
      case 'split':
        return [{ delayMs: 0, outbound: this.split(outbound) }]
      default:
        return [{ delayMs: 0, outbound }]
    }
  }

  /** Replicas at odd positions get another batch (pre-prepare) or digest (prepare); the others the original. */
  private split (outbound: Outbound): Outbound {
    const { message, to } = outbound
    if (this.replicas.indexOf(to) % 2 === 0 || !('replica' in message) || message.replica !== this.self) { return outbound }
    if (message.type === 'pre-prepare' && message.batch.length > 0) { return { to, message: conflictingPrePrepare(message, this.crypto) } }
    if (message.type === 'prepare') { return { to, message: conflictingPrepare(message, this.crypto) } }
    return outbound
  }

  private forge (outbound: Outbound): Emission[] {
    const { message, to } = outbound
    if (!('signature' in message) || message.type === 'request') { return [{ delayMs: 0, outbound }] }
    const roll = this.rng.nextFloat()
    if (roll < 0.25) {
      // an invalid signature on its own authenticated link
      this.stats.corrupted++
      const signature = message.signature.slice()
      signature[this.rng.intBetween(0, signature.length - 1)] ^= 0xff
      return [{ delayMs: 0, outbound: { to, message: { ...message, signature } as PbftMessage } }]
    }
    if (roll < 0.4 && (message.type === 'prepare' || message.type === 'commit')) {
      // the same vote in another replica's name, signed with its own key
      this.stats.forged++
      const victim = this.pick(this.replicas.filter(r => r !== this.self && r !== to))
      const forged = this.resigned({ ...message, replica: victim })
      return [{ delayMs: 0, outbound }, { delayMs: 0, outbound: { to, message: forged } }]
    }
    return [{ delayMs: 0, outbound }]
  }

  private replay (outbound: Outbound): Emission[] {
    this.observe(outbound.message)
    const emissions: Emission[] = [{ delayMs: 0, outbound }]
    if (this.kept.length > 0 && this.rng.chance(0.3)) {
      this.stats.replayed++
      const old = this.kept[this.rng.intBetween(0, this.kept.length - 1)]
      emissions.push({ delayMs: this.rng.intBetween(0, 50), outbound: { to: this.pick(this.replicas.filter(r => r !== this.self)), message: old } })
    }
    return emissions
  }

  private flood (outbound: Outbound): Emission[] {
    const emissions: Emission[] = [{ delayMs: 0, outbound }]
    const { message } = outbound
    if (!this.rng.chance(0.25) || !('view' in message) || message.type === 'reply') { return emissions }
    for (let i = 0; i < FLOOD_BURST; i++) {
      this.stats.flooded++
      const farView = this.rng.chance(0.5)
      const view = message.view + (farView ? this.rng.intBetween(1, 1000) : 0)
      const seq = this.rng.intBetween(1000, 1_000_000)
      const digest = this.crypto.digest(Uint8Array.of(i, ...new TextEncoder().encode(`${seq}`)))
      const vote: Prepare = { type: 'prepare', view, seq, digest, replica: this.self, signature: new Uint8Array() }
      const flooded: Prepare | PrePrepare = this.rng.chance(0.5)
        ? vote
        : { type: 'pre-prepare', view, seq, digest: this.crypto.digest(new Uint8Array()), batch: [], replica: this.self, signature: new Uint8Array() }
      emissions.push({ delayMs: 0, outbound: { to: outbound.to, message: this.resigned(flooded) } })
    }
    return emissions
  }

  private resigned<M extends Prepare | PrePrepare | Extract<PbftMessage, { type: 'commit' }>> (message: M): M {
    return { ...message, signature: this.crypto.sign(signingPayload({ ...message, signature: new Uint8Array() })) }
  }

  private pick<T> (items: T[]): T {
    return items[this.rng.intBetween(0, items.length - 1)]
  }
}
