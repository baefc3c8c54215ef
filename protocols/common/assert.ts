/**
 * Always-on invariant checks (TigerBeetle style). An assertion failure means
 * a bug in accord, never bad input: inputs from the network are validated and
 * rejected with an error before they reach code guarded by assert().
 */
export class AssertionError extends Error {
  override name = 'AssertionError'
}

export function assert (condition: unknown, message = 'assertion failed'): asserts condition {
  if (condition === false || condition === undefined || condition === null || condition === 0 || condition === '') {
    throw new AssertionError(message)
  }
}

export function unreachable (value: never, message = 'unreachable'): never {
  throw new AssertionError(`${message}: ${JSON.stringify(value)}`)
}
