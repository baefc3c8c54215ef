/**
 * A new key is confirmed before it is used.
 *
 * When the core of a session is done, each new member signs, with its new
 * share, `accord/dkg/confirm/1 ‖ session id ‖ group key` and sends that
 * partial to every participant. A node stores its new share, or (an old
 * member left out of a reshare) deletes its old one, only once T partials
 * verify under the public shares its own run computed and combine into a
 * signature under the group key. That proves that T members hold working
 * shares of the very key this node computed. A member whose view differs
 * (one that missed an equivocation the others caught, or was fed deals the
 * others were not) cannot confirm, stores nothing and keeps the old key:
 * no member goes on with a key the others dropped, and no old share is
 * deleted for a new group that cannot sign. Partials are checked one by
 * one, so a bad one is named. Without T of them in time the session
 * aborts, and the old key stays.
 */
import { checkPartials } from '../../identity/threshold/tbls.ts'
import type { PartialSignature, ThresholdPublicKey } from '../../identity/threshold/tbls.ts'

const CONFIRM_DOMAIN = new TextEncoder().encode('accord/dkg/confirm/1\n')

/** What a new member signs with its new share to confirm the key of `session`. */
export function confirmationMessage (session: Uint8Array, groupKey: Uint8Array): Uint8Array {
  const message = new Uint8Array(CONFIRM_DOMAIN.byteLength + 1 + session.byteLength + groupKey.byteLength)
  message.set(CONFIRM_DOMAIN, 0)
  // the session id's length first: ids are 1..64 bytes, and the key follows
  message[CONFIRM_DOMAIN.byteLength] = session.byteLength
  message.set(session, CONFIRM_DOMAIN.byteLength + 1)
  message.set(groupKey, CONFIRM_DOMAIN.byteLength + 1 + session.byteLength)
  return message
}

/** Whether `message` is under the confirmation domain: only a session's end signs those, never a signing round. */
export function isConfirmationMessage (message: Uint8Array): boolean {
  return message.byteLength >= CONFIRM_DOMAIN.byteLength && CONFIRM_DOMAIN.every((byte, i) => message[i] === byte)
}

/**
 * The partials of one session's confirmation, as this node checks them: at
 * most one per share index, checked together once T are at hand (one
 * multi-pairing). T valid partials under the public shares of this node's
 * commitments are the confirmation: they always combine into a signature
 * under the group key, so none is combined.
 */
export class KeyConfirmation {
  readonly deadlineMs: number
  /** Indices whose partial did not verify. */
  readonly bad: number[] = []
  readonly #key: ThresholdPublicKey
  readonly #message: Uint8Array
  readonly #valid = new Map<number, PartialSignature>()
  readonly #unchecked = new Map<number, PartialSignature>()

  constructor (key: ThresholdPublicKey, message: Uint8Array, deadlineMs: number) {
    this.#key = key
    this.#message = message
    this.deadlineMs = deadlineMs
  }

  get valid (): number { return this.#valid.size }

  /** Partials kept so far, checked or not (bad ones aside). */
  get received (): number { return this.#valid.size + this.#unchecked.size }

  get threshold (): number { return this.#key.threshold }

  /** Keep a partial to check; the first one of its index counts. */
  add (partial: PartialSignature): void {
    const { index } = partial
    if (this.#valid.has(index) || this.#unchecked.has(index) || this.bad.includes(index)) { return }
    this.#unchecked.set(index, partial)
  }

  /** Whether T partials are valid, checking the ones kept once there may be enough; `bad`: the indices this call found bad. */
  check (): { confirmed: boolean, bad: number[] } {
    if (this.#valid.size < this.#key.threshold && this.#valid.size + this.#unchecked.size >= this.#key.threshold) {
      const { valid, bad } = checkPartials(this.#key, this.#message, [...this.#unchecked.values()])
      this.#unchecked.clear()
      for (const partial of valid) { this.#valid.set(partial.index, partial) }
      this.bad.push(...bad)
      return { confirmed: this.#valid.size >= this.#key.threshold, bad }
    }
    return { confirmed: this.#valid.size >= this.#key.threshold, bad: [] }
  }
}
