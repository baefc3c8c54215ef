/**
 * Fixed ports for the OS processes of e2e tests. They stay below Linux's
 * ephemeral range (32768 and up by default), where the local port of any
 * outgoing connection on the machine could already hold one: a daemon then
 * fails to start with "address already in use".
 */

/** A random base for a test's ports, which it uses as base .. base + 199. */
export function testPortBase (): number {
  return 20_000 + Math.floor(Math.random() * 12_000)
}
