/**
 * An error whose message is meant for the person running accord: the CLI
 * prints it as one line, without a stack trace, and exits non-zero.
 */
export class UserError extends Error {
  override name = 'UserError'
}
