/**
 * Two ways a protocol driver spends the turns of its runtime (runtime.ts),
 * shared by the Raft and PBFT drivers: a pass of work that many triggers
 * coalesce into (the Ready loop), and long work cut into slices that yield
 * to the event loop (encoding or checking a large snapshot).
 */
import type { DriverRuntime } from './runtime.ts'

/**
 * Runs `pass` on a later turn (runtime.defer) when requested; requests made
 * while a pass is queued or running coalesce into one more pass after it,
 * made only while `mayRunAgain()` holds (the driver neither stopped nor
 * failed). A pass that rejects goes to `onError`.
 */
export class CoalescedPass {
  readonly #runtime: DriverRuntime
  readonly #pass: () => Promise<void>
  readonly #onError: (err: Error) => void
  readonly #mayRunAgain: () => boolean
  #running = false
  #again = false

  constructor (runtime: DriverRuntime, pass: () => Promise<void>, onError: (err: Error) => void, mayRunAgain: () => boolean) {
    this.#runtime = runtime
    this.#pass = pass
    this.#onError = onError
    this.#mayRunAgain = mayRunAgain
  }

  /** A pass is queued or running. */
  get running (): boolean {
    return this.#running
  }

  request (): void {
    if (this.#running) {
      this.#again = true
      return
    }
    this.#running = true
    this.#runtime.defer(() => {
      this.#pass().catch(err => { this.#onError(err as Error) }).finally(() => {
        this.#running = false
        if (this.#again && this.#mayRunAgain()) {
          this.#again = false
          this.request()
        }
      })
    })
  }
}

/**
 * Long work runs in slices of about this long, then yields to the event
 * loop, so that a large state (hundreds of MB) does not stop ticks,
 * heartbeats and client requests for seconds.
 */
export const SLICE_MS = 5
/** Work per step inside a slice (bytes, see KvSnapshotEncoder.encodeSome). */
export const SLICE_STEP_BYTES = 64 * 1024

/**
 * Runs `step` (about SLICE_STEP_BYTES of work per call) until it returns
 * true, yielding to the event loop (runtime.defer) every `sliceMs`. False
 * when `abandoned()` turned true at a yield.
 */
export async function inSlices (runtime: DriverRuntime, step: (workBytes: number) => boolean, abandoned: () => boolean, sliceMs = SLICE_MS): Promise<boolean> {
  for (;;) {
    const sliceEnd = runtime.now() + sliceMs
    do {
      if (step(SLICE_STEP_BYTES)) { return true }
    } while (runtime.now() < sliceEnd)
    await new Promise<void>(resolve => { runtime.defer(resolve) })
    if (abandoned()) { return false }
  }
}

/**
 * Lifeguard-style local health from the lateness of a periodic timer: a
 * tick that comes a whole interval or more late (the event loop lagged:
 * CPU starved, a long GC pause, the process was stopped) raises the score
 * by one, up to `scoreMax`; a tick on time lowers it by one. 0 is healthy.
 * Fed to the Raft core (RaftNode.setLocalHealth), so that a node that is
 * slow itself does not start elections its healthy peers need not have.
 */
export class TimerLateness {
  readonly #intervalMs: number
  readonly #scoreMax: number
  #lastMs: number
  #score = 0
  #lateMs = 0

  constructor (intervalMs: number, scoreMax: number, nowMs: number) {
    this.#intervalMs = intervalMs
    this.#scoreMax = scoreMax
    this.#lastMs = nowMs
  }

  get score (): number {
    return this.#score
  }

  /** How late the last firing came, in ms (0 or less: on time). */
  get lateMs (): number {
    return this.#lateMs
  }

  /** The timer fired at `nowMs`; returns the new score. */
  fired (nowMs: number): number {
    const lateMs = this.#lateMs = nowMs - this.#lastMs - this.#intervalMs
    this.#lastMs = nowMs
    this.#score = lateMs >= this.#intervalMs ? Math.min(this.#scoreMax, this.#score + 1) : Math.max(0, this.#score - 1)
    return this.#score
  }
}
