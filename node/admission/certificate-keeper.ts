/**
 * Keeping this node's own group certificate current, once it admits with
 * the DKG group key. It needs a new one:
 *
 * - after a rotation of its node key ('rotated'): its certificate names
 * the peer id it took over from, and no member may certify a peer id alone;
 * - before its certificate expires ('expiring'): within the renewal window
 * of its expiry (Admission's groupCertRenewBeforeMs, at most a third of its
 * lifetime).
 *
 * Admission's attempt is a signing round of the group. A failed one is
 * tried again with a growing wait (firstDelayMs, doubled, at most 30 s),
 * at most attemptsMax rounds in a row; the check that runs every
 * checkEveryMs starts again while a certificate is still needed. An attempt
 * that cannot succeed (this node holds no share of the group key) ends the
 * episode at once, and it is logged with what to do.
 */
import type { Logger } from 'pino'

export type CertificateNeed = 'rotated' | 'expiring'

/** One attempt's result: saved and in use, worth trying again, or not possible from this node. */
export type CertificateAttempt = 'done' | 'retry' | 'impossible'

export interface CertificateKeeperInit {
  firstDelayMs: number
  attemptsMax: number
  checkEveryMs: number
  /** Why this node needs a new certificate now, or null. */
  need(): CertificateNeed | null
  attempt(need: CertificateNeed): Promise<CertificateAttempt>
  log: Logger
}

const DELAY_MS_MAX = 30_000

export class CertificateKeeper {
  readonly #init: CertificateKeeperInit
  #checkTimer: ReturnType<typeof setInterval> | undefined
  #retryTimer: ReturnType<typeof setTimeout> | undefined
  /** An episode of attempts runs (from the first round to done, impossible or attemptsMax). */
  #busy = false
  #running = false

  constructor (init: CertificateKeeperInit) {
    this.#init = init
  }

  start (): void {
    this.#running = true
    this.#checkTimer = setInterval(() => { this.check() }, this.#init.checkEveryMs)
    this.check()
  }

  stop (): void {
    this.#running = false
    clearInterval(this.#checkTimer)
    clearTimeout(this.#retryTimer)
  }

  /** Start an episode of attempts if a certificate is needed and none runs. */
  check (): void {
    if (!this.#running || this.#busy || this.#init.need() === null) { return }
    this.#busy = true
    this.#schedule(0)
  }

  #schedule (attempt: number): void {
    const need = this.#init.need()
    if (!this.#running || need === null) {
      this.#busy = false
      return
    }
    if (attempt >= this.#init.attemptsMax) {
      this.#busy = false
      this.#init.log.error({ need, attempts: attempt }, need === 'rotated'
        ? 'the group did not certify this node\'s new peer id: check that the members accepted its hand-over (accord admission show on them), then run "accord admission use-group-key" here'
        : 'the group did not renew this node\'s certificate; it asks again later, or run "accord admission use-group-key" here')
      return
    }
    const delayMs = Math.min(DELAY_MS_MAX, this.#init.firstDelayMs * 2 ** Math.min(attempt, 16))
    this.#retryTimer = setTimeout(() => {
      this.#init.attempt(need).then(result => {
        if (result === 'retry') {
          this.#schedule(attempt + 1)
          return
        }
        this.#busy = false
      }, () => { this.#schedule(attempt + 1) })
    }, delayMs)
  }
}
