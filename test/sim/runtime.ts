/**
 * The production drivers' runtime (node/runtime.ts) on the simulator's
 * virtual time and seeded randomness, and the loop that runs the scheduler
 * while letting the drivers' promise continuations run between events.
 */
import type { Scheduler } from './scheduler.ts'
import type { DriverRuntime } from '../../node/runtime.ts'
import type { Rng } from '../../protocols/common/rng.ts'

/** Timers on `scheduler`'s virtual clock; `seed()` draws from `rng`. Cancelling sets a flag the event checks. */
export function simRuntime (scheduler: Scheduler, rng: Rng): DriverRuntime {
  return {
    now: () => scheduler.now,
    setTimeout: (run, ms) => {
      let cancelled = false
      scheduler.after(ms, () => { if (!cancelled) { run() } })
      return () => { cancelled = true }
    },
    setInterval: (run, ms) => {
      if (!(ms > 0)) { throw new RangeError(`simRuntime: interval must be positive, got ${ms}`) }
      let cancelled = false
      const fire = (): void => {
        if (cancelled) { return }
        scheduler.after(ms, fire)
        run()
      }
      scheduler.after(ms, fire)
      return () => { cancelled = true }
    },
    defer: run => { scheduler.after(0, run) },
    seed: () => rng.nextUint32()
  }
}

/**
 * Events between two turns of the real event loop: the simulation does not
 * depend on them (nothing in it uses a real timer or I/O), but mocha's
 * timeouts and a worker's messages do.
 */
const EVENTS_PER_TURN = 1000

/**
 * Scheduler.runUntil for asynchronous drivers: after every event, the
 * promise continuations it made ready run, and those they make ready, until
 * none is left, before the next event is taken, as they would on a real
 * event loop before the next timer or I/O callback. What runs when depends
 * on the events alone, so a seed replays exactly. Stops when `stop()` holds
 * (checked before every event) or when no event is due by `untilMs`, in
 * which case the clock moves to `untilMs`.
 *
 * How the queue is drained: the next step is queued as a microtask that
 * queues a nextTick callback. The microtask runs after those the event
 * queued itself, and Node runs nextTick callbacks only once the microtask
 * queue is empty, descendants included. This costs far less than a
 * setImmediate per event, which goes round the event loop (an I/O poll
 * each time).
 */
export async function runUntilAsync (scheduler: Scheduler, untilMs: number, stop: () => boolean = () => false): Promise<void> {
  const { promise, resolve, reject } = Promise.withResolvers<void>()
  let events = 0
  const step = (): void => {
    try {
      if (stop()) {
        resolve()
        return
      }
      if (!scheduler.runNext(untilMs)) {
        // nothing is due: runUntil only moves the clock to untilMs
        scheduler.runUntil(untilMs)
        resolve()
        return
      }
    } catch (err) {
      reject(err)
      return
    }
    if (++events % EVENTS_PER_TURN === 0) {
      setImmediate(step)
    } else {
      queueMicrotask(() => { process.nextTick(step) })
    }
  }
  // the first event waits for the work already in progress, too
  queueMicrotask(() => { process.nextTick(step) })
  return promise
}
