/**
 * The clock, timers and randomness a protocol driver uses, handed in rather
 * than read from globals: production passes `systemRuntime`, the simulator
 * passes one on its virtual time (test/sim/runtime.ts), so the very driver
 * that runs in production runs in the simulator and replays from a seed.
 */
import { randomBytes } from 'node:crypto'

/** What a protocol driver takes from its surroundings instead of reading them itself, so a simulator can run the production driver in virtual time and replay it from a seed. */
export interface DriverRuntime {
  /** Monotonic milliseconds (performance.now() in production). */
  now(): number
  /** Runs `run` once after `ms`; the returned function cancels it. */
  setTimeout(run: () => void, ms: number): () => void
  /** Runs `run` every `ms`; the returned function cancels it. */
  setInterval(run: () => void, ms: number): () => void
  /** Runs `run` soon, after the work in progress (setImmediate in production). */
  defer(run: () => void): void
  /** A 32-bit seed for a core's rng (crypto randomness in production). */
  seed(): number
}

/** Node's timers, performance.now() and crypto randomness. */
export const systemRuntime: DriverRuntime = {
  now: () => performance.now(),
  setTimeout: (run, ms) => {
    const timer = setTimeout(run, ms)
    return () => { clearTimeout(timer) }
  },
  setInterval: (run, ms) => {
    const timer = setInterval(run, ms)
    return () => { clearInterval(timer) }
  },
  defer: run => { setImmediate(run) },
  seed: () => randomBytes(4).readUInt32LE()
}
