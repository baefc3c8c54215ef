/**
 * Raft's safety properties (Raft paper, figure 3), checked on everything the
 * cores hand out. The checker keeps a shadow copy of each node's log built
 * from its Ready batches (what the node has declared it holds), plus global
 * registries of every entry, commit and application ever seen:
 *
 * - election safety: at most one leader per term, and no node grants two
 * votes in one term (not even across a crash);
 * - log matching: two entries with the same index and term are identical
 * and follow the same term at index - 1 (which by induction makes the
 * logs identical up to there);
 * - leader completeness: a new leader's log holds every entry known to be
 * committed in an earlier term;
 * - state machine safety: no two nodes commit or apply different entries at
 * one index, every node applies in index order without gaps, and state
 * machine snapshots taken at the same index are byte-identical;
 * - durability: a node grants only votes, and acknowledges only entries,
 * that are on its disk.
 */
import type { DurableState } from './disk.ts'
import type { Entry, Message, NodeId, Ready, Role } from '../../protocols/raft/index.ts'

export class InvariantViolation extends Error {
  override name = 'InvariantViolation'
}

interface EntryRecord {
  term: number
  hash: number
}

interface CommittedEntry extends EntryRecord {
  node: NodeId
  /**
   * The term of the node that first reported it committed: the entry was
   * committed in this term or earlier. (Usually exactly: a leader reports
   * its commits in the Ready that carries the news to its followers.)
   */
  termSeen: number
}

interface RegisteredEntry extends EntryRecord {
  /** Term of the entry before it in the log that held it (0: unknown, after a snapshot boundary). */
  prevTerm: number
  node: NodeId
}

/** A node's log as its Ready batches described it. */
class ShadowLog {
  snapshotIndex = 0
  snapshotTerm = 0
  /** Entry records from snapshotIndex + 1 on. */
  entries: EntryRecord[] = []

  lastIndex (): number {
    return this.snapshotIndex + this.entries.length
  }

  at (index: number): EntryRecord | undefined {
    return this.entries[index - this.snapshotIndex - 1]
  }

  termAt (index: number): number | undefined {
    return index === this.snapshotIndex ? this.snapshotTerm : this.at(index)?.term
  }

  restore (index: number, term: number): void {
    this.snapshotIndex = index
    this.snapshotTerm = term
    this.entries = []
  }
}

interface NodeView {
  log: ShadowLog
  term: number
  role: Role
  /** Commit claims already checked up to here. */
  commitChecked: number
  lastApplied: number
}

export class InvariantChecker {
  private readonly views = new Map<NodeId, NodeView>()
  private readonly leaderOfTerm = new Map<number, NodeId>()
  /** Every (index, term) entry seen in any log: index -> records (one per term). */
  private readonly registry: Array<RegisteredEntry[] | undefined> = []
  /** Entries known to be committed, by index. */
  private readonly committed: Array<CommittedEntry | undefined> = []
  private committedMax = 0
  private readonly applied: Array<(EntryRecord & { node: NodeId }) | undefined> = []
  private readonly snapshotHashes = new Map<number, { hash: number, node: NodeId }>()
  /** Votes granted on the wire: "node@term" -> candidate. */
  private readonly votes = new Map<string, NodeId>()
  /** Counters for the run summary. */
  readonly stats = { leaders: 0, entries: 0, commits: 0, applies: 0, snapshots: 0, staleTermAcks: 0 }
  private readonly tolerateStaleTermAcks: boolean

  /** `tolerateStaleTermAcks`: see SimOptions.tolerateStaleTermAcks. */
  constructor (tolerateStaleTermAcks = false) {
    this.tolerateStaleTermAcks = tolerateStaleTermAcks
  }

  /** A node starts (empty, or from its durable state after a crash). */
  startNode (node: NodeId, durable: DurableState): void {
    const log = new ShadowLog()
    if (durable.snapshot !== undefined) { log.restore(durable.snapshot.meta.index, durable.snapshot.meta.term) }
    for (const entry of durable.entries) { log.entries.push(record(entry)) }
    const snapshotIndex = durable.snapshot?.meta.index ?? 0
    this.views.set(node, {
      log,
      term: durable.hardState.term,
      role: 'follower',
      commitChecked: durable.hardState.commit,
      // The state machine replays from the snapshot after a restart.
      lastApplied: snapshotIndex
    })
    // What was durable must still agree with everything known.
    this.checkCommitted(node, log, snapshotIndex, durable.hardState.commit)
  }

  /** The node handed out `rd` (called right after ready(), before anything is persisted). */
  observeReady (node: NodeId, rd: Ready): void {
    const view = this.view(node)
    const { log } = view
    if (rd.snapshot !== undefined) {
      const { index, term } = rd.snapshot.meta
      this.expectCommitted(node, index, term, undefined, 'a snapshot received from the leader')
      log.restore(index, term)
    }
    if (rd.entries.length > 0) { this.appendToShadow(node, log, rd.entries) }
    if (rd.hardState !== undefined) {
      if (rd.hardState.term < view.term) { throw new InvariantViolation(`${node}: term went back from ${view.term} to ${rd.hardState.term}`) }
      view.term = rd.hardState.term
      if (rd.hardState.commit > view.commitChecked) {
        this.checkCommitted(node, log, view.commitChecked, rd.hardState.commit)
        view.commitChecked = rd.hardState.commit
      }
    }
    if (rd.softState !== undefined) { view.role = rd.softState.role }
    if (view.role === 'leader') { this.observeLeader(node, view) }
  }

  /**
   * The node sends `message`; `durable` is what its disk holds at that
   * moment. A granted vote is never taken back, even across a crash; an
   * acknowledged entry is on disk. (Nothing is required of a leader's own
   * appends: it may send them while writing the same entries, Raft thesis
   * §10.2.1; a commit index covering them leaves in a later Ready only.)
   */
  observeSend (message: Message, durable: DurableState): void {
    if (message.type === 'vote-response' && !message.reject) {
      const { term, vote } = durable.hardState
      if (term < message.term || (term === message.term && vote !== message.to)) {
        throw new InvariantViolation(`durability: ${message.from} grants its vote to ${message.to} in term ${message.term} but its disk holds term ${term}, vote ${vote ?? '-'}`)
      }
      const key = `${message.from}@${message.term}`
      const earlier = this.votes.get(key)
      if (earlier !== undefined && earlier !== message.to) {
        throw new InvariantViolation(`vote safety: ${message.from} voted for ${earlier} and then for ${message.to} in term ${message.term}`)
      }
      this.votes.set(key, message.to)
    } else if (message.type === 'append-response' && !message.reject && message.index > 0) {
      const lastDurable = durable.entries.at(-1)?.index ?? durable.snapshot?.meta.index ?? 0
      if (lastDurable >= message.index) { return }
      if (this.tolerateStaleTermAcks && message.term < this.view(message.from).term) {
        this.stats.staleTermAcks++
        return
      }
      throw new InvariantViolation(`durability: ${message.from} acknowledges index ${message.index} to ${message.to} (term ${message.term}) but its disk ends at ${lastDurable}`)
    }
  }

  /** The node applied a committed entry to its state machine. */
  observeApply (node: NodeId, entry: Entry): void {
    const view = this.view(node)
    if (entry.index !== view.lastApplied + 1) {
      throw new InvariantViolation(`${node} applied entry ${entry.index} right after ${view.lastApplied}`)
    }
    view.lastApplied = entry.index
    const mine = record(entry)
    const known = this.applied[entry.index]
    if (known === undefined) {
      this.applied[entry.index] = { ...mine, node }
      this.stats.applies++
    } else if (known.term !== mine.term || known.hash !== mine.hash) {
      throw new InvariantViolation(`state machine safety: ${node} applied ${describe(entry.index, mine)} but ${known.node} applied ${describe(entry.index, known)}`)
    }
    this.expectCommitted(node, entry.index, mine.term, mine.hash, 'an applied entry')
  }

  /** The node's state machine took (compaction) or installed (from the leader, or restored at start) a snapshot of its state at `index`. */
  observeSnapshot (node: NodeId, index: number, data: Uint8Array, source: 'compaction' | 'installed'): void {
    const hash = fnv1a(data, 0)
    const known = this.snapshotHashes.get(index)
    if (known === undefined) {
      this.snapshotHashes.set(index, { hash, node })
      this.stats.snapshots++
    } else if (known.hash !== hash) {
      throw new InvariantViolation(`state machine safety: the state of ${node} at index ${index} (${source}) differs from the state of ${known.node} at that index`)
    }
    if (source === 'installed') { this.view(node).lastApplied = index }
  }

  private observeLeader (node: NodeId, view: NodeView): void {
    const known = this.leaderOfTerm.get(view.term)
    if (known === node) { return }
    if (known !== undefined) {
      throw new InvariantViolation(`election safety: ${known} and ${node} are both leaders of term ${view.term}`)
    }
    this.leaderOfTerm.set(view.term, node)
    this.stats.leaders++
    // Leader completeness: every entry committed in an earlier term is in
    // its log. (Not every entry committed so far: a node can learn it won
    // an old term's election late, e.g. after a pause, when later terms
    // have committed more.)
    const { log } = view
    for (let index = log.snapshotIndex + 1; index <= this.committedMax; index++) {
      const committed = this.committed[index]
      if (committed === undefined || committed.termSeen >= view.term) { continue }
      const mine = log.at(index)
      if (mine === undefined || mine.term !== committed.term || mine.hash !== committed.hash) {
        throw new InvariantViolation(`leader completeness: ${node} leads term ${view.term} but its log has ${mine === undefined ? 'nothing' : describe(index, mine)} where ${committed.node} committed ${describe(index, committed)}`)
      }
    }
  }

  private appendToShadow (node: NodeId, log: ShadowLog, entries: Entry[]): void {
    const first = entries[0].index
    if (first <= log.snapshotIndex || first > log.lastIndex() + 1) {
      throw new InvariantViolation(`${node}: Ready entries start at ${first}, its log spans (${log.snapshotIndex}, ${log.lastIndex()}]`)
    }
    log.entries.length = first - log.snapshotIndex - 1
    let prevTerm = log.termAt(first - 1) ?? 0
    for (const entry of entries) {
      const mine = record(entry)
      this.register(node, entry.index, mine, prevTerm)
      log.entries.push(mine)
      prevTerm = mine.term
    }
  }

  private register (node: NodeId, index: number, entry: EntryRecord, prevTerm: number): void {
    let records = this.registry[index]
    if (records === undefined) {
      records = []
      this.registry[index] = records
    }
    const known = records.find(r => r.term === entry.term)
    if (known === undefined) {
      records.push({ ...entry, prevTerm, node })
      this.stats.entries++
      return
    }
    if (known.hash !== entry.hash) {
      throw new InvariantViolation(`log matching: ${node} and ${known.node} hold different entries at index ${index} term ${entry.term}`)
    }
    if (known.prevTerm !== 0 && prevTerm !== 0 && known.prevTerm !== prevTerm) {
      throw new InvariantViolation(`log matching: entry ${index}/${entry.term} follows term ${prevTerm} on ${node} but term ${known.prevTerm} on ${known.node}`)
    }
    if (known.prevTerm === 0) { known.prevTerm = prevTerm }
  }

  /** `node` claims entries (from, to] of its log are committed. */
  private checkCommitted (node: NodeId, log: ShadowLog, from: number, to: number): void {
    if (to > log.lastIndex()) {
      throw new InvariantViolation(`${node} claims commit ${to} beyond its last entry ${log.lastIndex()}`)
    }
    for (let index = Math.max(from, log.snapshotIndex) + 1; index <= to; index++) {
      const mine = log.at(index)
      if (mine === undefined) { continue }
      this.expectCommitted(node, index, mine.term, mine.hash, 'its log')
    }
  }

  /** Records (or checks against the record) that `index` committed with this entry. */
  private expectCommitted (node: NodeId, index: number, term: number, hash: number | undefined, what: string): void {
    const known = this.committed[index]
    if (known === undefined) {
      if (hash === undefined) { return }
      this.committed[index] = { term, hash, node, termSeen: this.view(node).term }
      this.committedMax = Math.max(this.committedMax, index)
      this.stats.commits++
      return
    }
    if (known.term !== term || (hash !== undefined && known.hash !== hash)) {
      throw new InvariantViolation(`state machine safety: ${node} committed ${describe(index, { term, hash: hash ?? 0 })} (${what}) but ${known.node} committed ${describe(index, known)}`)
    }
  }

  private view (node: NodeId): NodeView {
    const view = this.views.get(node)
    if (view === undefined) { throw new Error(`invariants: unknown node ${node}`) }
    return view
  }
}

function record (entry: Entry): EntryRecord {
  return { term: entry.term, hash: fnv1a(entry.data, entry.type === 'conf-change' ? 1 : 0) }
}

function describe (index: number, entry: EntryRecord): string {
  return `entry ${index}/${entry.term} (#${entry.hash.toString(16)})`
}

/** FNV-1a over `bytes`, seeded with a tag byte. */
function fnv1a (bytes: Uint8Array, tag: number): number {
  let hash = Math.imul(0x811c9dc5 ^ tag, 0x01000193) >>> 0
  for (let i = 0; i < bytes.length; i++) {
    hash = Math.imul(hash ^ bytes[i], 0x01000193) >>> 0
  }
  return (hash ^ bytes.length) >>> 0
}
