/**
 * Sending DKG datagrams: the datagram channel's framing (one CBOR frame on
 * a stream of its own), but retried. The channel's own send is best effort
 * for gossip, whose next round repairs a loss; a DKG sends each message
 * once, and a lost deal costs a justification round or the dealer's
 * exclusion, so a failed send (a stream reset, a timeout on a busy peer)
 * is tried again, `attempts` times in all, with a growing pause.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { encode } from 'cborg'
import { dialTargetOf, sendOneMessage } from '../datagram.ts'
import type { DatagramCounters } from '../datagram.ts'
import type { AccordHost } from '../host.ts'
import type { Logger } from 'pino'

export interface DkgSenderInit {
  host: AccordHost
  protocol: string
  counters: DatagramCounters
  /** Sends in flight at once, retries included; beyond, a message is dropped and counted. */
  sendsInFlightMax: number
  /** One attempt (dial, open, write, close) that takes longer is abandoned. */
  timeoutMs: number
  /** Tries of one message, the first included. */
  attempts: number
  /** The pause before the second try; doubled before each further one. */
  retryPauseMs: number
  addressesOf(id: string): string[]
  log: Logger
}

export class DkgSender {
  readonly #init: DkgSenderInit
  #inFlight = 0
  #open = true

  constructor (init: DkgSenderInit) {
    this.#init = init
  }

  stop (): void { this.#open = false }

  send (message: { type: string, to: string, [field: string]: unknown }): void {
    const { counters, log } = this.#init
    if (!this.#open) { return }
    if (this.#inFlight >= this.#init.sendsInFlightMax) {
      counters.dropped('sends-full')
      return
    }
    const bytes = encode(message)
    this.#inFlight++
    void this.#deliver(message, bytes).catch(err => {
      counters.dropped('unreachable')
      log.debug({ to: message.to, type: message.type, err: (err as Error).message }, 'dkg: send failed')
    }).finally(() => { this.#inFlight-- })
  }

  async #deliver (message: { type: string, to: string }, bytes: Uint8Array): Promise<void> {
    const { host, protocol, counters, timeoutMs, attempts, retryPauseMs } = this.#init
    const to = peerIdFromString(message.to)
    for (let attempt = 1; ; attempt++) {
      try {
        const target = await dialTargetOf(host, to, () => this.#init.addressesOf(message.to))
        if (target == null) { throw new Error('no address') }
        await sendOneMessage(host, target, protocol, bytes, timeoutMs)
        counters.sent(message.type, bytes.byteLength)
        return
      } catch (err) {
        if (attempt >= attempts || !this.#open) { throw err }
        await new Promise(resolve => setTimeout(resolve, retryPauseMs * 2 ** (attempt - 1)))
      }
    }
  }
}
