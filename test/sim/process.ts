/**
 * One incarnation of a simulated node's process. Everything the node does
 * (its driver's timers and deferred work, its fsync completions, the
 * messages and requests that reach it) runs through `run`: a paused process
 * (GC pause, SIGSTOP) runs nothing until the pause ends, and what reaches it
 * meanwhile waits, in order; a crashed one runs nothing ever again, so the
 * work of a crashed driver simply never resumes.
 */
import { simRuntime } from './runtime.ts'
import type { Scheduler } from './scheduler.ts'
import type { DriverRuntime } from '../../node/runtime.ts'
import type { Rng } from '../../protocols/common/rng.ts'

export class SimProcess {
  alive = true
  /** The production driver's runtime, on virtual time, gated by this process. */
  readonly runtime: DriverRuntime
  private readonly scheduler: Scheduler
  private pausedUntilMs = 0

  constructor (scheduler: Scheduler, rng: Rng) {
    this.scheduler = scheduler
    const base = simRuntime(scheduler, rng)
    this.runtime = {
      now: base.now,
      seed: base.seed,
      setTimeout: (run, ms) => base.setTimeout(() => { this.run(run) }, ms),
      setInterval: (run, ms) => {
        // intervals missed during a pause are not made up (as with Node's
        // timers after a blocked event loop): one run when it ends
        let waiting = false
        return base.setInterval(() => {
          if (waiting) { return }
          waiting = true
          this.run(() => {
            waiting = false
            run()
          })
        }, ms)
      },
      defer: run => { base.defer(() => { this.run(run) }) }
    }
  }

  /** Runs `work` now, or when a pause ends; never once crashed. */
  run (work: () => void): void {
    if (!this.alive) { return }
    if (this.scheduler.now < this.pausedUntilMs) {
      this.scheduler.at(this.pausedUntilMs, () => { this.run(work) })
      return
    }
    work()
  }

  /** Runs `work` (through run()) `delayMs` from now. */
  after (delayMs: number, work: () => void): void {
    this.scheduler.after(delayMs, () => { this.run(work) })
  }

  /** Freezes the process for `durationMs`. */
  pause (durationMs: number): void {
    this.pausedUntilMs = Math.max(this.pausedUntilMs, this.scheduler.now + durationMs)
  }

  crash (): void {
    this.alive = false
  }
}
