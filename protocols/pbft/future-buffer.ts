/**
 * Messages that arrived early (for a view this replica has not entered, or
 * above its high watermark), kept to be stepped again later. Bounded by
 * futureMessagesMax, and each peer gets an equal share of it so that one
 * Byzantine peer cannot crowd the others out.
 */
import type { NodeId, ReplicaMessage } from './types.ts'

export class FutureBuffer {
  readonly #perPeerMax: number
  readonly #messages = new Map<NodeId, ReplicaMessage[]>()

  constructor (futureMessagesMax: number, replicas: number) {
    this.#perPeerMax = Math.max(1, Math.floor(futureMessagesMax / replicas))
  }

  add (message: ReplicaMessage, link: NodeId): boolean {
    const queue = this.#messages.get(link) ?? []
    if (queue.length >= this.#perPeerMax) { return false }
    queue.push(message)
    this.#messages.set(link, queue)
    return true
  }

  /** Everything buffered, emptied; what is still early is buffered again by its caller. */
  take (): Array<{ message: ReplicaMessage, link: NodeId }> {
    const out: Array<{ message: ReplicaMessage, link: NodeId }> = []
    for (const [link, queue] of this.#messages) {
      for (const message of queue) { out.push({ message, link }) }
    }
    this.#messages.clear()
    return out
  }

  forget (peer: NodeId): void {
    this.#messages.delete(peer)
  }
}
