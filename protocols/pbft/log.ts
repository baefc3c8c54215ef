/**
 * The message log: per sequence number in the watermarks, what this replica
 * holds of the current view (the accepted pre-prepare, prepares and commits
 * by replica) and what survives view changes (the prepared certificate of
 * the highest view, the committed certificate).
 */
import { assert, unreachable } from '../common/assert.ts'
import type { Commit, CommittedCertificate, NodeId, PrePrepare, Prepare, PreparedCertificate, SignedMessage } from './types.ts'

export interface Slot {
  seq: number
  /** The view the fields below belong to. */
  view: number
  prePrepare: PrePrepare | null
  prepares: Map<NodeId, Prepare>
  commits: Map<NodeId, Commit>
  /** Prepared in `view`: this replica sent its commit. */
  sentCommit: boolean
  /** Prepared in the highest view this replica saw it prepared in (carried in view changes). */
  prepared: PreparedCertificate | null
  committed: CommittedCertificate | null
}

export class SlotLog {
  readonly #slots = new Map<number, Slot>()

  get (seq: number): Slot | undefined {
    return this.#slots.get(seq)
  }

  /** The slot of `seq` for `view`: what it held of an earlier view is dropped, except the certificates. */
  at (seq: number, view: number): Slot {
    let slot = this.#slots.get(seq)
    if (slot === undefined) {
      slot = { seq, view, prePrepare: null, prepares: new Map(), commits: new Map(), sentCommit: false, prepared: null, committed: null }
      this.#slots.set(seq, slot)
    } else if (slot.view < view) {
      slot.view = view
      slot.prePrepare = null
      slot.prepares = new Map()
      slot.commits = new Map()
      slot.sentCommit = false
    }
    assert(slot.view >= view, 'a slot is never taken back to an earlier view')
    return slot
  }

  /** Drops every slot at or below `seq` (a stable checkpoint). */
  forgetThrough (seq: number): void {
    for (const key of this.#slots.keys()) {
      if (key <= seq) { this.#slots.delete(key) }
    }
  }

  values (): IterableIterator<Slot> {
    return this.#slots.values()
  }

  /** Prepared certificates for view changes, in seq order. */
  preparedCertificates (): PreparedCertificate[] {
    const certificates: PreparedCertificate[] = []
    for (const slot of this.#slots.values()) {
      if (slot.prepared !== null) { certificates.push(slot.prepared) }
    }
    return certificates.sort((a, b) => a.prePrepare.seq - b.prePrepare.seq)
  }
}

/** The slot a signed message takes: this replica never signs two different messages for one. */
export function signedKey (message: SignedMessage): string {
  switch (message.type) {
    case 'pre-prepare': case 'prepare': case 'commit': return `${message.type}/${message.view}/${message.seq}`
    case 'checkpoint': return `checkpoint/${message.seq}`
    case 'view-change': case 'new-view': return `${message.type}/${message.view}`
    default: return unreachable(message)
  }
}

export function signedSeq (message: SignedMessage): number | null {
  return message.type === 'view-change' || message.type === 'new-view' ? null : message.seq
}
