/*
 * Which Raft messages a node takes in, on top of admission (only admitted
 * peers reach the transport at all).
 *
 * - From a member of this node's configuration (voters, outgoing voters,
 *   learners, learners to be) or from the leader it follows: everything.
 * - From any other admitted peer: only what a leader sends (append,
 *   heartbeat, snapshot), and votes from a candidate whose log is ahead of
 *   ours. A node that missed the conf change adding a member does not know
 *   that member; if the member has since become leader (or is campaigning
 *   with the log that holds the change), refusing it would leave this node
 *   behind for good. Under Raft's crash-fault model an admitted peer sends
 *   leader traffic only when it was elected, that is, when it is a member
 *   of a configuration this node has not applied yet, and a candidate ahead
 *   of us holds entries we lack.
 * - Everything else is refused: a removed member that keeps campaigning,
 *   or an admitted node outside the group, cannot move our term.
 *
 * The configuration is read from the driver again when the driver says
 * the leader or the configuration changed (its configurationVersion), and
 * at least every refreshMs (for the last log index): between reads, a
 * message costs a clock read, a version check and a Set lookup. Without the
 * version, a node that joined read its empty configuration as it started
 * and, for up to refreshMs after it became a voter, refused the leader's
 * answer to its own ReadIndex request, so its read waited for its timeout.
 */
import type { ConfState, Message } from '../../protocols/raft/index.ts'

const LEADER_MESSAGES: ReadonlySet<Message['type']> = new Set(['append', 'heartbeat', 'snapshot'])
const DEFAULT_REFRESH_MS = 100

export interface RaftPeerFilterSource {
  /** The configuration, the leader followed and the last log index, now. */
  state(): { conf: ConfState, leader: string | null, lastIndex: number }
  /** Changes when the leader or the configuration changed (RaftDriver.configurationVersion); without it, only refreshMs applies. */
  version?(): number
}

export interface RaftPeerFilterOptions {
  refreshMs?: number
  /** The clock, in ms (tests pass their own). */
  now?(): number
}

export class RaftPeerFilter {
  readonly #source: RaftPeerFilterSource
  readonly #refreshMs: number
  readonly #now: () => number
  #known = new Set<string>()
  #leader: string | null = null
  #lastIndex = 0
  #readAtMs = -Infinity
  #version: number | undefined

  constructor (source: RaftPeerFilterSource, options: RaftPeerFilterOptions = {}) {
    this.#source = source
    this.#refreshMs = options.refreshMs ?? DEFAULT_REFRESH_MS
    this.#now = options.now ?? (() => performance.now())
  }

  /** Whether to step `message`; false means refuse (the caller counts and logs it). */
  accepts (message: Message): boolean {
    if (this.#now() - this.#readAtMs >= this.#refreshMs || this.#source.version?.() !== this.#version) { this.#read() }
    if (this.#knows(message.from)) { return true }
    if (LEADER_MESSAGES.has(message.type)) { return true }
    return (message.type === 'vote' || message.type === 'pre-vote') && message.lastIndex > this.#lastIndex
  }

  #knows (peer: string): boolean {
    return peer === this.#leader || this.#known.has(peer)
  }

  #read (): void {
    this.#version = this.#source.version?.()
    const { conf, leader, lastIndex } = this.#source.state()
    this.#known = new Set([...conf.voters, ...conf.votersOutgoing, ...conf.learners, ...conf.learnersNext])
    this.#leader = leader
    this.#lastIndex = lastIndex
    this.#readAtMs = this.#now()
  }
}
