/**
 * Safety properties of a PBFT run, checked as it goes. Only honest
 * replicas are held to them (a Byzantine one may do anything):
 *
 * - agreement: no two honest replicas execute different batches (by
 * digest) at the same seq;
 * - order: an honest replica executes seqs consecutively from where its
 * state stands (its restored snapshot, or a state it installed);
 * - durability before signing: every message an honest replica sends that
 * it signed was durable on its disk when it was sent;
 * - no double signing: an honest replica never signs two different
 * pre-prepares, prepares or commits for one view and seq, nor two
 * checkpoints for one seq with different state digests, even across a
 * crash and restart;
 * - no false accusation: an honest replica never publishes, nor acts on,
 * evidence against an honest replica.
 */
import { unreachable } from '../../../protocols/common/assert.ts'
import { batchDigest } from '../../../protocols/pbft/index.ts'
import { signatureKey } from './store.ts'
import type { PbftDurable } from './store.ts'
import type { Evidence, ExecutableBatch, NodeId, PbftCrypto, PbftMessage, SignedMessage } from '../../../protocols/pbft/types.ts'

export class PbftInvariantViolation extends Error {
  override name = 'PbftInvariantViolation'
}

const VOTES: ReadonlySet<string> = new Set(['pre-prepare', 'prepare', 'commit', 'checkpoint', 'view-change', 'new-view'])

export class PbftInvariants {
  readonly stats = { executedBatches: 0, executedRequests: 0, signedSends: 0, statesInstalled: 0, badPartialEvidence: 0 }
  private readonly crypto: PbftCrypto
  /** The digest first executed at each seq by an honest replica, and by whom. */
  private readonly executed = new Map<number, { digest: string, by: string }>()
  /** Per honest instance: the last seq its state reflects. */
  private readonly lastExecuted = new Map<string, number>()
  /** Per replica id: what it signed, by "type view seq" (checkpoints: "checkpoint seq"). */
  private readonly signedBy = new Map<NodeId, Map<string, string>>()

  constructor (crypto: PbftCrypto) {
    this.crypto = crypto
  }

  /** An honest instance starts (again) with its state at `seq`. */
  startInstance (instance: string, seq: number): void {
    this.lastExecuted.set(instance, seq)
  }

  stateInstalled (instance: string, seq: number): void {
    this.stats.statesInstalled++
    const last = this.lastExecuted.get(instance) ?? 0
    if (seq <= last) { throw new PbftInvariantViolation(`order: ${instance} installed the state of seq ${seq} while at ${last}`) }
    this.lastExecuted.set(instance, seq)
  }

  execute (instance: string, batch: ExecutableBatch): void {
    this.stats.executedBatches++
    this.stats.executedRequests += batch.requests.length
    const last = this.lastExecuted.get(instance) ?? 0
    if (batch.seq !== last + 1) { throw new PbftInvariantViolation(`order: ${instance} executed seq ${batch.seq} right after ${last}`) }
    this.lastExecuted.set(instance, batch.seq)
    const digest = batchDigest(batch.requests, this.crypto)
    const first = this.executed.get(batch.seq)
    if (first === undefined) {
      this.executed.set(batch.seq, { digest, by: instance })
    } else if (first.digest !== digest) {
      throw new PbftInvariantViolation(`agreement: ${instance} executed batch ${digest.slice(0, 12)} at seq ${batch.seq}, ${first.by} executed ${first.digest.slice(0, 12)} there`)
    }
  }

  /** Honest replica `by` published (`how`) or accepted evidence; `offenderHonest`: whether the run holds its offender honest. */
  accused (by: string, how: 'published' | 'accepted', evidence: Evidence, offenderHonest: boolean): void {
    if (how === 'published' && evidence.kind === 'bad-checkpoint-partial') { this.stats.badPartialEvidence++ }
    if (offenderHonest) { throw new PbftInvariantViolation(`accusation: ${by} ${how} ${evidence.kind} evidence against honest ${evidence.offender}`) }
  }

  /** An honest replica `id` sends `message`; `durable` is its disk as it is now. */
  send (id: NodeId, message: PbftMessage, durable: PbftDurable): void {
    if (!VOTES.has(message.type) || !('replica' in message) || message.replica !== id) { return }
    const signed = message as SignedMessage
    this.stats.signedSends++
    this.signedOnce(id, signed)
    if (signed.type === 'new-view') { for (const prePrepare of signed.prePrepares) { this.signedOnce(id, prePrepare) } }
    if (!durable.signed.has(signatureKey(signed.signature))) {
      throw new PbftInvariantViolation(`durability: ${id} sent a ${describeSigned(signed)} it signed before it was durable`)
    }
  }

  private signedOnce (id: NodeId, message: SignedMessage): void {
    let key: string
    let content: string
    switch (message.type) {
      case 'pre-prepare':
      case 'prepare':
      case 'commit':
        key = `${message.type} v${message.view} s${message.seq}`
        content = message.digest
        break
      case 'checkpoint':
        key = `checkpoint s${message.seq}`
        content = message.stateDigest
        break
      default:
        return
    }
    let signed = this.signedBy.get(id)
    if (signed === undefined) {
      signed = new Map()
      this.signedBy.set(id, signed)
    }
    const before = signed.get(key)
    if (before === undefined) {
      signed.set(key, content)
    } else if (before !== content) {
      throw new PbftInvariantViolation(`double signing: ${id} signed two different ${key}: ${before.slice(0, 12)} and ${content.slice(0, 12)}`)
    }
  }
}

export function describeSigned (message: SignedMessage): string {
  switch (message.type) {
    case 'pre-prepare':
    case 'prepare':
    case 'commit':
      return `${message.type} v${message.view} s${message.seq} ${message.digest.slice(0, 8)}`
    case 'checkpoint':
      return `checkpoint s${message.seq} ${message.stateDigest.slice(0, 8)}`
    case 'view-change':
      return `view-change v${message.view} stable ${message.stable.seq}`
    case 'new-view':
      return `new-view v${message.view}`
    default:
      return unreachable(message)
  }
}
