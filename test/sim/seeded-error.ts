/**
 * A simulator run that broke a property: its seed, what broke, the command
 * that replays it and the tail of its trace, in one error the specs and
 * replay scripts of every simulator (membership, gossip) catch alike.
 */
export class SeededSimError extends Error {
  readonly seed: number
  readonly kind: string
  readonly replay: string
  /** The whole trace, when the run kept it (fullTrace). */
  readonly trace: string[] | null

  constructor (replay: string, seed: number, kind: string, detail: string, traceTail: string[], trace: string[] | null) {
    super(`seed ${seed}: ${kind}: ${detail}\nreplay: ${replay}\n--- last trace lines ---\n${traceTail.join('\n')}`)
    this.seed = seed
    this.kind = kind
    this.replay = replay
    this.trace = trace
  }
}
