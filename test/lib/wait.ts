/**
 * Polls `condition` until it holds; throws naming `what` after `deadlineMs`.
 * The deadline only keeps a broken test from hanging: the time taken is
 * never asserted on (that is what benchmarks are for).
 */
export async function waitFor (condition: () => Promise<boolean> | boolean, what: string, deadlineMs = 60_000, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + deadlineMs
  while (!(await condition())) {
    if (Date.now() > deadline) { throw new Error(`gave up waiting for: ${what}`) }
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
}
