/**
 * Messages that arrived early (for a view this replica has not entered, or
 * above its high watermark), kept to be stepped again later. Bounded by
 * futureMessagesMax messages and futureBytesMax encoded bytes (a single
 * pre-prepare may carry megabytes), and each peer gets an equal share of
 * both so that one Byzantine peer cannot crowd the others out.
 */
import { encodeMessage } from './encoding.ts'
import type { NodeId, ReplicaMessage } from './types.ts'

interface PeerQueue {
  messages: ReplicaMessage[]
  bytes: number
}

export class FutureBuffer {
  readonly #perPeerMax: number
  readonly #perPeerBytesMax: number
  readonly #queues = new Map<NodeId, PeerQueue>()

  constructor (limits: { futureMessagesMax: number, futureBytesMax: number }, replicas: number) {
    this.#perPeerMax = Math.max(1, Math.floor(limits.futureMessagesMax / replicas))
    this.#perPeerBytesMax = Math.max(1, Math.floor(limits.futureBytesMax / replicas))
  }

  add (message: ReplicaMessage, link: NodeId): boolean {
    const queue = this.#queues.get(link) ?? { messages: [], bytes: 0 }
    if (queue.messages.length >= this.#perPeerMax) { return false }
    const bytes = encodeMessage(message).byteLength
    if (queue.bytes + bytes > this.#perPeerBytesMax) { return false }
    queue.messages.push(message)
    queue.bytes += bytes
    this.#queues.set(link, queue)
    return true
  }

  /** Everything buffered, emptied; what is still early is buffered again by its caller. */
  take (): Array<{ message: ReplicaMessage, link: NodeId }> {
    const out: Array<{ message: ReplicaMessage, link: NodeId }> = []
    for (const [link, queue] of this.#queues) {
      for (const message of queue.messages) { out.push({ message, link }) }
    }
    this.#queues.clear()
    return out
  }

  forget (peer: NodeId): void {
    this.#queues.delete(peer)
  }
}
