/**
 * A deterministic stand-in for a DKG threshold group, for the PBFT unit
 * harness and simulator (PbftThresholdGroup): a member's partial is
 * sha256("partial" ‖ secret ‖ member ‖ payload), the group signature
 * sha256("group" ‖ secret ‖ payload). combine checks every partial against
 * its member and makes the group signature only from `threshold` valid ones
 * of distinct members, as tbls.combine does; nothing else can make it (the
 * secret stands for the shares). Nothing here is secure.
 */
import { createHash } from 'node:crypto'
import type { NodeId, PbftThresholdGroup } from '../../protocols/pbft/types.ts'

export interface FakeGroupOptions {
  /** Distinguishes groups (a group made with another seed signs nothing this one accepts). */
  seed?: string
  /** A member whose signPartial gives garbage (a lying replica). */
  liar?: NodeId
  /** The shares' generation: a reshare keeps the key and the group signatures, changes every partial (and the id). */
  shares?: string
}

export class FakeThresholdGroup {
  readonly members: readonly NodeId[]
  readonly threshold: number
  /** Differs with the seed and the members (as a reshare or a new DKG changes a real group's). */
  readonly id: string
  readonly groupKey: Uint8Array
  readonly #seed: string
  readonly #shares: string
  readonly #liar: NodeId | undefined

  constructor (members: readonly NodeId[], threshold: number, options: FakeGroupOptions = {}) {
    this.members = [...members]
    this.threshold = threshold
    this.#seed = options.seed ?? 'group'
    this.#shares = options.shares ?? ''
    this.#liar = options.liar
    this.groupKey = hash('key', this.#seed, new Uint8Array(0)).subarray(0, 48)
    this.id = Buffer.from(hash('id', `${this.#seed}/${this.#shares}/${this.members.join(',')}`, new Uint8Array(0))).toString('hex')
  }

  partial (member: NodeId, payload: Uint8Array): Uint8Array {
    return widen(hash('partial', `${this.#seed}/${this.#shares}/${member}`, payload))
  }

  signature (payload: Uint8Array): Uint8Array {
    return widen(hash('group', this.#seed, payload))
  }

  /** What replica `self` is given: its own partials (none when it is not a member), and the public side. */
  for (self: NodeId): PbftThresholdGroup & { combined: number, bad: NodeId[] } {
    const group = {
      id: this.id,
      groupKey: this.groupKey,
      members: this.members,
      threshold: this.threshold,
      combined: 0,
      bad: [] as NodeId[],
      signPartial: (payload: Uint8Array): Uint8Array | null => {
        if (!this.members.includes(self)) { return null }
        return self === this.#liar ? widen(hash('garbage', self, payload)) : this.partial(self, payload)
      },
      verifyGroup: (payload: Uint8Array, signature: Uint8Array) => equal(signature, this.signature(payload)),
      verifyPartial: (member: NodeId, payload: Uint8Array, partial: Uint8Array) => this.members.includes(member) && equal(partial, this.partial(member, payload)),
      combine: (partials: ReadonlyMap<NodeId, Uint8Array>, payload: Uint8Array) => {
        const bad: NodeId[] = []
        let valid = 0
        for (const [member, partial] of partials) {
          if (this.members.includes(member) && equal(partial, this.partial(member, payload))) { valid++ } else { bad.push(member) }
        }
        group.combined++
        group.bad.push(...bad)
        return valid >= this.threshold ? { ok: true as const, signature: this.signature(payload), bad } : { ok: false as const, bad }
      }
    }
    return group
  }
}

function hash (kind: string, secret: string, payload: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`${kind}\0${secret}\0`).update(payload).digest())
}

/** 96 bytes, the size of a BLS G2 signature, so that the encoding's bounds hold. */
function widen (digest: Uint8Array): Uint8Array {
  const out = new Uint8Array(96)
  out.set(digest)
  out.set(digest, 32)
  out.set(digest, 64)
  return out
}

function equal (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i])
}
