/**
 * The signing policy of a member of the DKG group, for messages outside
 * the reserved domains (./signing.ts):
 *
 * - 'open' (the default): the member gives its partial to any message a
 * member of the group asks for. One member can then have the group sign
 * anything: the threshold only stands for T machines being up.
 * - 'approve': the member gives its partial only to a message its own
 * operator approved (`accord keys approve`), by SHA-256, until the
 * approval expires. Then T operators must agree to each signature.
 *
 * The member that asks signs with its own share in either case: its
 * operator asked.
 */
import { createHash } from 'node:crypto'

export type SignPolicy = 'open' | 'approve'
export const SIGN_POLICIES: readonly SignPolicy[] = ['open', 'approve']

/** Approvals held at once; beyond, a new one is refused until some expire. */
export const MESSAGE_APPROVALS_MAX = 1024
/** The longest an approval lasts. */
export const MESSAGE_APPROVAL_TTL_MS_MAX = 7 * 24 * 3600_000

export function messageDigest (message: Uint8Array): string {
  return createHash('sha256').update(message).digest('hex')
}

export class MessageApprovals {
  readonly approvalsMax: number
  /** SHA-256 (hex) → expiry (ms); at most approvalsMax. */
  readonly #approved = new Map<string, number>()

  constructor (approvalsMax = MESSAGE_APPROVALS_MAX) {
    this.approvalsMax = approvalsMax
  }

  /** Approve `message` for ttlMs. Throws RangeError on a bad lifetime or when approvalsMax unexpired approvals are held. */
  approve (message: Uint8Array, ttlMs: number, nowMs = Date.now()): { digest: string, expiresAtMs: number } {
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 1000 || ttlMs > MESSAGE_APPROVAL_TTL_MS_MAX) {
      throw new RangeError(`an approval lasts 1 s to ${MESSAGE_APPROVAL_TTL_MS_MAX / 3600_000} h`)
    }
    for (const [digest, expiresAtMs] of this.#approved) {
      if (expiresAtMs <= nowMs) { this.#approved.delete(digest) }
    }
    const digest = messageDigest(message)
    if (!this.#approved.has(digest) && this.#approved.size >= this.approvalsMax) { throw new RangeError(`${this.approvalsMax} message approvals are held already`) }
    const expiresAtMs = nowMs + ttlMs
    this.#approved.set(digest, expiresAtMs)
    return { digest, expiresAtMs }
  }

  isApproved (message: Uint8Array, nowMs = Date.now()): boolean {
    const expiresAtMs = this.#approved.get(messageDigest(message))
    return expiresAtMs !== undefined && expiresAtMs > nowMs
  }
}
