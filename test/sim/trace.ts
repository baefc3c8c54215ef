/**
 * The simulator's event trace: the last `keep` lines always (printed when a
 * run fails), every line when `full` is set (replays, determinism tests).
 */
import type { Message } from '../../protocols/raft/index.ts'

export class Trace {
  private readonly ring: string[]
  private next = 0
  private count = 0
  readonly full: string[] | null
  private readonly clock: () => number

  constructor (clock: () => number, keep: number, full: boolean) {
    this.clock = clock
    this.ring = new Array<string>(keep)
    this.full = full ? [] : null
  }

  add (line: string): void {
    const stamped = `${this.clock().toFixed(2).padStart(9)}ms ${line}`
    this.ring[this.next] = stamped
    this.next = (this.next + 1) % this.ring.length
    this.count++
    this.full?.push(stamped)
  }

  /** How many lines were added in total. */
  get length (): number {
    return this.count
  }

  /** The last `n` lines, oldest first. */
  tail (n: number): string[] {
    const kept = Math.min(this.count, this.ring.length, n)
    const lines: string[] = []
    for (let i = kept; i > 0; i--) {
      lines.push(this.ring[(this.next - i + this.ring.length) % this.ring.length])
    }
    return lines
  }
}

/** One-line rendering of a Raft message for the trace. */
export function describeMessage (m: Message): string {
  const head = `${m.type} ${m.from}->${m.to} t${m.term}`
  switch (m.type) {
    case 'append': {
      const entries = m.entries.length === 0 ? '' : ` [${m.entries[0].index}..${m.entries[m.entries.length - 1].index}]`
      return `${head} prev=${m.prevIndex}/${m.prevTerm} commit=${m.commit}${entries}`
    }
    case 'append-response':
      return `${head} index=${m.index}${m.reject ? ` reject hint=${m.rejectHint}/${m.hintTerm}` : ''}`
    case 'vote':
    case 'pre-vote':
      return `${head} last=${m.lastIndex}/${m.lastTerm}${m.transfer ? ' transfer' : ''}`
    case 'vote-response':
    case 'pre-vote-response':
      return `${head}${m.reject ? ' reject' : ' grant'}`
    case 'heartbeat':
      return `${head} commit=${m.commit} round=${m.readRound}`
    case 'heartbeat-response':
      return `${head} round=${m.readRound}`
    case 'snapshot':
      return `${head} snap=${m.snapshot.meta.index}/${m.snapshot.meta.term}`
    case 'read-index-response':
      return `${head} index=${m.index}`
    default:
      return head
  }
}
