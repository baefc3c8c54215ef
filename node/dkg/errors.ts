/** Why the DKG service refuses input or a request. */
/** Refused input, by a fixed reason (the refusals counter's label). */
export class DkgError extends Error {
  readonly reason: string

  constructor (reason: string, message: string) {
    super(message)
    this.reason = reason
    this.name = 'DkgError'
  }
}
