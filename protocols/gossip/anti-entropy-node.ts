/**
 * One node of the replicated cluster-metadata store, as an I/O-free core
 * (the shape of the membership core: inputs are method calls, outputs are
 * data drained with ready()).
 *
 * Each node writes only its own keys (set, delete), each write at the next
 * version of its counter and signed with its key; everyone else relays the
 * entries, signature and all. Scuttlebutt reconciliation (van Renesse et
 * al. 2008): a digest says, per node, the highest version held; the answer
 * to a digest is, per node, every entry above it in increasing version
 * order, so an answer cut short by the message size still leaves a valid
 * high-water mark. Every intervalTicks a node opens an exchange with
 * `fanout` random peers, in one of three modes:
 *
 * - pull: digest(want entries) -> delta (what the initiator lacks)
 * - push: digest(want digest, range only) -> delta(page) -> delta (what the peer lacks)
 * - push-pull: digest(want both) -> delta(entries + page) -> delta (what the peer lacks)
 *
 * A digest page covers a range of node ids (size.ts bounds it): a large
 * cluster's digest goes a page per exchange, round-robin.
 *
 * No I/O, no clock, no Math.random: time is tick(), randomness the injected Rng.
 */
import { assert, unreachable } from '../common/assert.ts'
import { isValidNodeId, limitsOf, RAISE_MARGIN, RELAY_SLACK, resolveConfig, VERSION_JUMP_MAX, VERSION_MAX } from './config.ts'
import { entryPayload } from './payload.ts'
import { DIGEST_VERSION_BYTES, entryBytes, gossipMessageBytes, headerBytes, idBytes, nodeDeltaBytes, nodeDeltaHeadBytes, pageBytes, pageHeadBytes } from './size.ts'
import { Store, storedEntry } from './store.ts'
import { GossipMeter, onNews, retune, TUNE_EVERY_ROUNDS } from './tuning.ts'
import { InvalidMessageError, validateGossipMessage, validateNodeDelta } from './validate.ts'
import type { AntiEntropyConfig, AntiEntropyConfigInit, GossipLimits } from './config.ts'
import type { DeltaPlan, NodeRecord, StoreChange, StoredEntry } from './store.ts'
import type { TuningParameters } from './tuning.ts'
import type {
  AntiEntropyStatus, DeltaMessage, DigestMessage, DigestPage, Entry, GossipCounters, GossipEvent, GossipMessage, GossipMode,
  NodeDelta, NodeId, Ready, StepRejectReason, StepResult, Want, WriteResult
} from './types.ts'
import type { Rng } from '../common/rng.ts'

const OK: StepResult = { ok: true }

const WANT_OF_MODE: Record<GossipMode, Want> = { pull: 'entries', push: 'digest', 'push-pull': 'both' }

/** An entry we hold that a peer's digest shows it lacks, from `after` on. */
interface Candidate {
  record: NodeRecord
  after: number
}

export class AntiEntropyNode {
  readonly id: NodeId
  /** The limits inbound messages are checked against (a service sizes its frames and HTTP checks by them). */
  readonly limits: GossipLimits
  private readonly config: AntiEntropyConfig
  private readonly rng: Rng
  private readonly store = new Store()
  private readonly meter = new GossipMeter()
  private params: TuningParameters
  private peers: readonly NodeId[] = []
  private now = 0
  private rounds = 0
  private nextRoundTick: number
  /** Where the next digest page starts (null: at the first id). */
  private cursor: NodeId | null = null
  /** Exchanges waiting for the peer's page (push, push-pull): peer -> deadline tick, oldest first. */
  private readonly pending = new Map<NodeId, number>()
  /** Nodes forget() dropped: node -> the tick until which others' relays of them are refused, oldest first. */
  private readonly forgotten = new Map<NodeId, number>()
  private repliesLeft: number
  private replyWindowStart = 0
  private outbox: GossipMessage[] = []
  private events: GossipEvent[] = []
  private readonly counters: GossipCounters = {
    invalidMessages: 0,
    refusedMessages: 0,
    forgedEntries: 0,
    implausibleDeltas: 0,
    gapDeltas: 0,
    overLimitDeltas: 0,
    nodesRefused: 0,
    forgottenDeltas: 0,
    entriesReceived: 0,
    entriesDuplicate: 0,
    entriesApplied: 0,
    repliesRefused: 0,
    unexpectedPages: 0,
    exchangesStarted: 0,
    exchangesExpired: 0,
    versionRaises: 0,
    compactions: 0,
    outboxDropped: 0,
    eventsDropped: 0
  }

  /**
   * @param config - this node's id and auth, plus any settings that differ from ANTI_ENTROPY_DEFAULTS
   * @param rng - the only source of randomness (peers, page rotation, phase)
   */
  constructor (config: AntiEntropyConfigInit, rng: Rng) {
    this.config = resolveConfig(config)
    this.id = this.config.id
    this.limits = limitsOf(this.config)
    this.rng = rng
    this.params = { fanout: this.config.fanout, intervalTicks: this.config.intervalTicks }
    this.repliesLeft = this.config.repliesPerIntervalMax
    this.loadSnapshot(this.config.snapshot)
    // Whatever we published above our snapshot, we forgot: void it.
    if (this.config.initialVersion > this.counter && !this.republishAbove(this.config.initialVersion, null)) {
      throw new RangeError('gossip config: initialVersion leaves no room for our floor and values below VERSION_MAX')
    }
    // A random phase, so that nodes started together do not gossip in lockstep.
    this.nextRoundTick = this.rng.intBetween(1, this.config.intervalTicks)
    this.assertInvariants()
  }

  // ---------------------------------------------------------------- writes

  /** Sets our value for `key` (copied); it spreads with the next rounds. */
  set (key: string, value: Uint8Array): WriteResult {
    if (!(value instanceof Uint8Array)) { throw new TypeError('set: value must be a Uint8Array') }
    const bad = this.keyProblem(key)
    if (bad !== null) { return bad }
    if (value.byteLength > this.config.valueBytesMax) {
      return { ok: false, reason: 'too-large', detail: `${value.byteLength} bytes > valueBytesMax ${this.config.valueBytesMax}` }
    }
    const version = this.counter + 1
    if (version > VERSION_MAX) { return { ok: false, reason: 'versions-exhausted' } }
    const entry = this.signed(key, value.slice(), version)
    const plan = this.store.plan(this.id, [entry])
    if (plan.values > this.config.keysPerNodeMax) {
      return { ok: false, reason: 'too-many-keys', detail: `keysPerNodeMax ${this.config.keysPerNodeMax}` }
    }
    // Room for the floor a compaction or a restart would add.
    const floorReserve = plan.record?.floor != null ? 0 : entryBytes({ key: '', value: null, signature: entry.signature })
    if (plan.bytes + floorReserve > this.config.bytesPerNodeMax) {
      return { ok: false, reason: 'too-large', detail: `our entries would exceed bytesPerNodeMax ${this.config.bytesPerNodeMax}` }
    }
    if (!this.storeHolds(plan)) { return { ok: false, reason: 'too-large', detail: 'the store is full (storeBytesMax)' } }
    this.report(this.store.commit(plan))
    this.noteNews()
    this.assertInvariants()
    return { ok: true, version }
  }

  /**
   * Deletes our value for `key`: a tombstone spreads the deletion. Past
   * keysPerNodeMax tombstones, a floor replaces them all (our values are
   * written again above it), and the floor's version is returned.
   */
  delete (key: string): WriteResult {
    const bad = this.keyProblem(key)
    if (bad !== null) { return bad }
    const record = this.store.get(this.id)
    const held = record?.entries.get(key)
    if (record === undefined || held === undefined || held.value === null) { return { ok: false, reason: 'not-found' } }
    if (record.tombstones >= this.config.keysPerNodeMax) {
      const floor = this.counter + 1
      if (!this.republishAbove(this.counter, key)) { return { ok: false, reason: 'versions-exhausted' } }
      this.counters.compactions++
      this.report([{ node: this.id, key, version: floor, deleted: true }])
      this.noteNews()
      this.assertInvariants()
      return { ok: true, version: floor }
    }
    const version = this.counter + 1
    if (version > VERSION_MAX) { return { ok: false, reason: 'versions-exhausted' } }
    this.report(this.store.commit(this.store.plan(this.id, [this.signed(key, null, version)])))
    this.noteNews()
    this.assertInvariants()
    return { ok: true, version }
  }

  // ---------------------------------------------------------------- driver inputs

  /**
   * Who to gossip with: the live members (membership's view). Our own id is
   * ignored, duplicates too. Bad ids, or more than peersMax, throw (a
   * driver's bug).
   */
  setPeers (ids: readonly NodeId[]): void {
    if (!Array.isArray(ids)) { throw new TypeError('setPeers: ids must be an array') }
    const unique = new Set<NodeId>()
    for (const id of ids) {
      if (!isValidNodeId(id)) { throw new RangeError(`setPeers: invalid id ${JSON.stringify(id)}`) }
      if (id !== this.id) { unique.add(id) }
    }
    if (unique.size > this.config.peersMax) { throw new RangeError(`setPeers: more than peersMax (${this.config.peersMax}) peers`) }
    this.peers = [...unique]
  }

  /**
   * Drops `node` and its entries (membership reaped it). For
   * forgetRetentionTicks, its entries relayed by others are refused, so that
   * the copies peers still hold do not flow back; the node itself may send
   * them (it is alive after all), and then they are taken.
   */
  forget (node: NodeId): void {
    if (!isValidNodeId(node)) { throw new RangeError(`forget: invalid id ${JSON.stringify(node)}`) }
    if (node === this.id) { throw new RangeError('forget: a node cannot forget itself') }
    const version = this.store.versionOf(node)
    this.report(this.store.remove(node).map(key => ({ node, key, version, deleted: true })))
    this.forgotten.delete(node)
    if (this.forgotten.size >= this.config.nodesMax) { this.forgotten.delete(this.forgotten.keys().next().value as NodeId) }
    this.forgotten.set(node, this.now + this.config.forgetRetentionTicks)
    this.assertInvariants()
  }

  /** One tick of the driver's clock. */
  tick (): void {
    this.now++
    for (const [peer, deadline] of this.pending) {
      if (deadline > this.now) { break }
      this.pending.delete(peer)
      this.counters.exchangesExpired++
    }
    for (const [node, until] of this.forgotten) {
      if (until > this.now) { break }
      this.forgotten.delete(node)
    }
    if (this.now >= this.nextRoundTick) { this.round() }
    this.assertInvariants()
  }

  /**
   * Feeds one message from the network. Never throws on bad input: a
   * malformed or oversized message is rejected ('invalid-message',
   * 'too-large'), and so is one carrying an entry whose signature does not
   * verify ('forged-entry'); a rejected message changes nothing.
   */
  step (input: unknown): StepResult {
    const m = validateGossipMessage(input, this.limits)
    if (m instanceof InvalidMessageError) {
      this.counters.invalidMessages++
      return { ok: false, reason: m.reason, detail: m.message }
    }
    if (m.to !== this.id) { return this.refuse('wrong-recipient') }
    if (m.from === this.id) { return this.refuse('from-self') }
    let result: StepResult
    switch (m.type) {
      case 'digest': result = this.answerDigest(m); break
      case 'delta': result = this.takeDelta(m); break
      default: unreachable(m)
    }
    this.assertInvariants()
    return result
  }

  // ---------------------------------------------------------------- output

  hasReady (): boolean {
    return this.outbox.length > 0 || this.events.length > 0
  }

  /** Drains the messages to send and the events since the last call. */
  ready (): Ready {
    const ready = { messages: this.outbox, events: this.events }
    this.outbox = []
    this.events = []
    return ready
  }

  // ---------------------------------------------------------------- queries (returned bytes are the store's: do not modify them)

  /** `node`'s value for `key`, as far as we know (undefined: none, or deleted). */
  get (node: NodeId, key: string): Uint8Array | undefined {
    return this.store.get(node)?.entries.get(key)?.value ?? undefined
  }

  /** `node`'s live values, by key. */
  entriesOf (node: NodeId): Array<{ key: string, value: Uint8Array, version: number }> {
    const record = this.store.get(node)
    if (record === undefined) { return [] }
    const live: Array<{ key: string, value: Uint8Array, version: number }> = []
    for (const e of record.entries.values()) {
      if (e.value !== null) { live.push({ key: e.key, value: e.value, version: e.version }) }
    }
    return live.sort((a, b) => compareKeys(a.key, b.key))
  }

  /** The nodes we hold entries of (ourselves once we wrote), in id order. */
  nodes (): NodeId[] {
    return this.store.sortedIds()
  }

  /** Our version for `node` (what our digest says; 0: none). */
  versionOf (node: NodeId): number {
    return this.store.versionOf(node)
  }

  /** Every entry held, tombstones and floors included, by node then version: what config.snapshot takes back. */
  snapshot (): Entry[] {
    return this.store.entries()
  }

  status (): AntiEntropyStatus {
    return {
      id: this.id,
      mode: this.config.mode,
      adaptive: this.config.adaptive,
      fanout: this.params.fanout,
      intervalTicks: this.params.intervalTicks,
      duplicateRate: this.meter.duplicateRate ?? 0,
      convergenceTicks: this.meter.convergenceTicks,
      nodes: this.store.size,
      entries: this.store.values + this.store.tombstones,
      values: this.store.values,
      tombstones: this.store.tombstones,
      bytes: this.store.bytes,
      version: this.counter,
      rounds: this.rounds,
      peers: this.peers.length,
      pendingExchanges: this.pending.size,
      forgotten: this.forgotten.size,
      tick: this.now,
      counters: { ...this.counters }
    }
  }

  // ---------------------------------------------------------------- rounds

  private round (): void {
    this.rounds++
    this.meter.endRound()
    if (this.config.adaptive && this.rounds % TUNE_EVERY_ROUNDS === 0) {
      const { duplicateRate, convergenceTicks, quietRounds } = this.meter
      this.params = retune(this.params, { fanout: this.config.fanout, intervalTicks: this.config.intervalTicks },
        { peers: this.peers.length, duplicateRate, convergenceTicks, quietRounds }, this.config)
    }
    this.nextRoundTick = this.now + this.params.intervalTicks
    const want = WANT_OF_MODE[this.config.mode]
    for (const peer of this.randomPeers(this.params.fanout)) {
      // In push mode only the range matters: the peer describes it.
      const page = this.pageOf(this.cursor, null, want !== 'digest')
      this.cursor = page.until
      this.counters.exchangesStarted++
      if (want !== 'entries') { this.openExchange(peer) }
      this.send({ type: 'digest', from: this.id, to: peer, page, want })
    }
  }

  /** Our own write: news to spread. */
  private noteNews (): void {
    this.meter.noteWrite()
    this.wake()
  }

  /** News: a quiet cluster's stretched interval returns to the configured one, and the next round comes no later than that. */
  private wake (): void {
    if (!this.config.adaptive) { return }
    this.params = onNews(this.params, { fanout: this.config.fanout, intervalTicks: this.config.intervalTicks })
    this.nextRoundTick = Math.min(this.nextRoundTick, this.now + this.params.intervalTicks)
  }

  private openExchange (peer: NodeId): void {
    this.pending.delete(peer)
    if (this.pending.size >= this.config.pendingExchangesMax) { this.pending.delete(this.pending.keys().next().value as NodeId) }
    this.pending.set(peer, this.now + this.config.exchangeTimeoutTicks)
  }

  /**
   * Up to `k` distinct peers at random: random draws (4k at most), then, if
   * they fell short, the next ones from a random position on.
   */
  private randomPeers (k: number): NodeId[] {
    const n = this.peers.length
    const want = Math.min(k, n)
    const chosen = new Set<number>()
    for (let i = 0; i < 4 * want && chosen.size < want; i++) { chosen.add(this.rng.intBetween(0, n - 1)) }
    if (chosen.size < want) {
      const start = this.rng.intBetween(0, n - 1)
      for (let i = 0; chosen.size < want; i++) { chosen.add((start + i) % n) }
    }
    return [...chosen].map(i => this.peers[i])
  }

  // ---------------------------------------------------------------- exchanges

  private answerDigest (m: DigestMessage): StepResult {
    if (this.now - this.replyWindowStart >= this.params.intervalTicks) {
      this.replyWindowStart = this.now
      this.repliesLeft = this.config.repliesPerIntervalMax
    }
    if (this.repliesLeft <= 0) {
      this.counters.repliesRefused++
      return this.refuse('busy', 'repliesPerIntervalMax digests answered this interval')
    }
    this.repliesLeft--
    const page = m.want === 'entries' ? null : this.pageOf(m.page.after, m.page.until, true)
    const reply: DeltaMessage = { type: 'delta', from: this.id, to: m.from, deltas: [], page }
    if (m.want !== 'digest') { reply.deltas = this.deltasFor(m.page, this.budgetOf(reply)) }
    if (page !== null || reply.deltas.length > 0) { this.send(reply) }
    return OK
  }

  /**
   * Takes the entries of a delta, in two steps: every node delta is checked
   * and planned, and the signatures of the entries we would take are
   * verified; one bad signature refuses the whole message. Then the plans
   * within limits are committed. A page in it (the answer to our digest) is
   * answered with what the peer lacks.
   */
  private takeDelta (m: DeltaMessage): StepResult {
    const plans: DeltaPlan[] = []
    let ownSeen = 0
    let received = 0
    let duplicates = 0
    for (const d of m.deltas) {
      received += d.entries.length
      if (d.node === this.id) {
        const counter = this.counter
        duplicates += d.entries.filter(e => e.version <= counter).length
        ownSeen = Math.max(ownSeen, this.ownVersionAbove(d))
        continue
      }
      if (this.dropped(d, m.from)) { continue }
      const plan = this.store.plan(d.node, d.entries.map(e => storedEntry(e, this.now)))
      duplicates += plan.duplicates
      plans.push(plan)
    }
    const forged = this.countForged(m.deltas, plans)
    if (forged > 0) {
      this.counters.forgedEntries += forged
      return this.refuse('forged-entry', `${forged} entries whose signature does not verify`)
    }
    this.counters.entriesReceived += received
    this.counters.entriesDuplicate += duplicates
    this.meter.noteReceived(received, duplicates)
    for (const plan of plans) {
      if (!this.fits(plan)) { continue }
      // The node itself sent it: it is alive, whatever forget() said.
      this.forgotten.delete(plan.node)
      for (const e of plan.take) { this.meter.noteFresh(e.ageTicks) }
      if (plan.take.length > 0) { this.wake() }
      this.counters.entriesApplied += plan.take.length + (plan.floor === null ? 0 : 1)
      this.report(this.store.commit(plan))
    }
    if (ownSeen > 0) { this.raise(ownSeen) }
    if (m.page !== null) {
      if (this.pending.delete(m.from)) {
        const push: DeltaMessage = { type: 'delta', from: this.id, to: m.from, deltas: [], page: null }
        push.deltas = this.deltasFor(m.page, this.budgetOf(push))
        if (push.deltas.length > 0) { this.send(push) }
      } else {
        this.counters.unexpectedPages++
      }
    }
    return OK
  }

  /**
   * Our own entries, relayed back: the highest version above our counter
   * (we restarted and forgot, or someone replays), or 0 if none is (or it
   * is implausibly far above).
   */
  private ownVersionAbove (d: NodeDelta): number {
    const last = d.entries[d.entries.length - 1].version
    if (last <= this.counter) { return 0 }
    if (last > this.counter + VERSION_JUMP_MAX) {
      this.counters.implausibleDeltas++
      return 0
    }
    return last
  }

  /** Whether a node delta is dropped before planning (and counted). */
  private dropped (d: NodeDelta, from: NodeId): boolean {
    const until = this.forgotten.get(d.node)
    if (until !== undefined && from !== d.node) {
      this.counters.forgottenDeltas++
      return true
    }
    const held = this.store.versionOf(d.node)
    if (d.after > held) {
      this.counters.gapDeltas++
      return true
    }
    const last = d.entries[d.entries.length - 1].version
    if (from !== d.node && held > 0 && last > held + VERSION_JUMP_MAX) {
      this.counters.implausibleDeltas++
      return true
    }
    return false
  }

  /**
   * Verifies the entries we would take (the plans' and our own above our
   * counter); entries we hold already are dropped unverified, as
   * duplicates. Returns how many failed.
   */
  private countForged (deltas: readonly NodeDelta[], plans: readonly DeltaPlan[]): number {
    let forged = 0
    for (const plan of plans) {
      if (plan.floor !== null && !this.verifies(plan.node, plan.floor)) { forged++ }
      for (const e of plan.take) {
        if (!this.verifies(plan.node, e)) { forged++ }
      }
    }
    const counter = this.counter
    for (const d of deltas) {
      if (d.node !== this.id) { continue }
      for (const e of d.entries) {
        if (e.version > counter && !this.verifies(this.id, e)) { forged++ }
      }
    }
    return forged
  }

  /** An auth that throws (it should not) counts as a signature that does not verify: step() never throws on remote input. */
  private verifies (node: NodeId, e: Omit<Entry, 'node'>): boolean {
    try {
      return this.config.auth.verify(node, entryPayload(node, e.key, e.value, e.version), e.signature)
    } catch {
      return false
    }
  }

  /** Whether a plan keeps the node and the store within their limits (counted when not). */
  private fits (plan: DeltaPlan): boolean {
    if (plan.record === undefined && !this.roomForNode()) {
      this.counters.nodesRefused++
      return false
    }
    const keysMax = RELAY_SLACK * this.config.keysPerNodeMax
    if (plan.values > keysMax || plan.tombstones > keysMax || plan.bytes > RELAY_SLACK * this.config.bytesPerNodeMax || !this.storeHolds(plan)) {
      this.counters.overLimitDeltas++
      return false
    }
    return true
  }

  /** Room for one more node besides us (a slot stays free for our own entries). */
  private roomForNode (): boolean {
    const reserved = this.store.get(this.id) === undefined ? 1 : 0
    return this.store.size + reserved < this.config.nodesMax
  }

  private storeHolds (plan: DeltaPlan): boolean {
    return this.store.bytes - (plan.record?.bytes ?? 0) + plan.bytes <= this.config.storeBytesMax
  }

  /**
   * We met our own entry at `seen`, above our counter: we published it in a
   * life we forgot (or it is replayed). Like a SWIM refutation, we go above
   * it, by RAISE_MARGIN: a floor voids everything we published up to it,
   * and our current values go out again at new versions.
   */
  private raise (seen: number): void {
    if (!this.republishAbove(Math.min(seen + RAISE_MARGIN, VERSION_MAX - 1), null)) {
      this.counters.implausibleDeltas++
      return
    }
    this.counters.versionRaises++
    this.emit({ type: 'version:raised', seen, version: this.counter })
  }

  /**
   * A floor at seen + 1, then each of our values (but `without`) again
   * above it, oldest first. False if VERSION_MAX leaves no room.
   */
  private republishAbove (seen: number, without: string | null): boolean {
    const record = this.store.get(this.id)
    const values = [...(record?.entries.values() ?? [])].filter(e => e.value !== null && e.key !== without).sort((a, b) => a.version - b.version)
    if (seen + 1 + values.length > VERSION_MAX) { return false }
    let version = seen + 1
    const entries = [this.signed('', null, version)]
    for (const e of values) { entries.push(this.signed(e.key, e.value, ++version)) }
    this.store.commit(this.store.plan(this.id, entries))
    return true
  }

  // ---------------------------------------------------------------- pages and deltas

  /**
   * Our digest page from `after` on, up to `until` or as far as
   * digestBytesMax and digestEntriesMax allow (then `until` is the last id
   * listed). `withVersions` false: the range only (push asks the peer for
   * its page of it).
   */
  private pageOf (after: NodeId | null, until: NodeId | null, withVersions: boolean): DigestPage {
    const versions: DigestPage['versions'] = []
    // The head without `until`; each id is checked with room for itself as
    // the page's end, or the requested end if that is longer.
    let bytes = pageHeadBytes(after, null)
    const untilBytes = until === null ? 0 : idBytes(until)
    let last: NodeId | null = null
    const { records, start } = this.store.sortedFrom(after)
    for (let i = start; i < records.length; i++) {
      const record = records[i]
      if (until !== null && record.id > until) { break }
      const size = record.idBytes + DIGEST_VERSION_BYTES
      if (versions.length >= this.config.digestEntriesMax || bytes + size + Math.max(untilBytes, record.idBytes) > this.config.digestBytesMax) {
        return { after, until: last, versions: withVersions ? versions : [] }
      }
      bytes += size
      versions.push({ node: record.id, version: record.version })
      last = record.id
    }
    return { after, until, versions: withVersions ? versions : [] }
  }

  /**
   * The entries a peer's page shows it lacks, as node deltas within
   * `budget` bytes. Nodes are taken from a random one on, so that a budget
   * too small for all does not always favour the same ones.
   */
  private deltasFor (page: DigestPage, budget: number): NodeDelta[] {
    const candidates: Candidate[] = []
    const theirs = page.versions
    let j = 0
    const { records, start: first } = this.store.sortedFrom(page.after)
    for (let i = first; i < records.length; i++) {
      const record = records[i]
      if (page.until !== null && record.id > page.until) { break }
      while (j < theirs.length && theirs[j].node < record.id) { j++ }
      const after = j < theirs.length && theirs[j].node === record.id ? theirs[j].version : 0
      if (record.version > after) { candidates.push({ record, after }) }
    }
    const deltas: NodeDelta[] = []
    if (candidates.length === 0) { return deltas }
    let left = budget
    const start = this.rng.intBetween(0, candidates.length - 1)
    for (let i = 0; i < candidates.length; i++) {
      const { record, after } = candidates[(start + i) % candidates.length]
      if (left <= nodeDeltaHeadBytes(record.id)) { continue }
      const delta = this.store.deltaOf(record, after, left, this.now)
      if (delta === null) { continue }
      deltas.push(delta)
      left -= nodeDeltaBytes(delta)
    }
    return deltas
  }

  /** Bytes left for node deltas in a message (its header and page counted). */
  private budgetOf (m: DeltaMessage): number {
    return this.config.messageBytesMax - headerBytes(m) - (m.page === null ? 0 : pageBytes(m.page))
  }

  // ---------------------------------------------------------------- plumbing

  private get counter (): number {
    return this.store.versionOf(this.id)
  }

  private signed (key: string, value: Uint8Array | null, version: number): StoredEntry {
    const signature = this.config.auth.sign(entryPayload(this.id, key, value, version))
    return storedEntry({ key, value, version, signature, ageTicks: 0 }, this.now)
  }

  private keyProblem (key: string): WriteResult | null {
    if (typeof key !== 'string' || key.length === 0 || key.length > this.config.keyLengthMax) {
      return { ok: false, reason: 'invalid-key', detail: `a key is a string of 1..${this.config.keyLengthMax} characters` }
    }
    return null
  }

  /** Loads config.snapshot: each node's entries checked as a delta from version 0, signatures verified. Bad ones throw. */
  private loadSnapshot (entries: readonly Entry[]): void {
    const byNode = new Map<NodeId, Entry[]>()
    for (const e of entries) {
      if (typeof e !== 'object' || e === null || !isValidNodeId(e.node)) { throw new RangeError('gossip snapshot: an entry without a valid node id') }
      const list = byNode.get(e.node) ?? []
      list.push(e)
      byNode.set(e.node, list)
    }
    for (const [node, list] of byNode) {
      list.sort((a, b) => a.version - b.version)
      const delta = validateNodeDelta({ node, after: 0, entries: list.map(e => ({ ...e, ageTicks: 0 })) }, this.limits)
      if (delta instanceof InvalidMessageError) { throw new RangeError(`gossip snapshot: entries of ${node}: ${delta.message}`) }
      const plan = this.store.plan(node, delta.entries.map(e => storedEntry(e, 0)))
      if (this.countForged([], [plan]) > 0) { throw new RangeError(`gossip snapshot: an entry of ${node} whose signature does not verify`) }
      const own = node === this.id
      if (own && (plan.values > this.config.keysPerNodeMax || plan.tombstones > this.config.keysPerNodeMax || plan.bytes > this.config.bytesPerNodeMax)) {
        throw new RangeError('gossip snapshot: our own entries exceed keysPerNodeMax or bytesPerNodeMax')
      }
      if (!own && !this.fits(plan)) { throw new RangeError(`gossip snapshot: the entries of ${node} exceed the store's limits`) }
      this.store.commit(plan)
    }
  }

  private refuse (reason: StepRejectReason, detail?: string): StepResult {
    this.counters.refusedMessages++
    return detail === undefined ? { ok: false, reason } : { ok: false, reason, detail }
  }

  private send (m: GossipMessage): void {
    assert(gossipMessageBytes(m) <= this.config.messageBytesMax, 'gossip: built a message over messageBytesMax')
    if (this.outbox.length >= this.config.outboxMessagesMax) {
      this.counters.outboxDropped++
      return
    }
    this.outbox.push(m)
  }

  private report (changes: readonly StoreChange[]): void {
    for (const c of changes) { this.emit({ type: 'entry:update', node: c.node, key: c.key, version: c.version, deleted: c.deleted }) }
  }

  private emit (event: GossipEvent): void {
    if (this.events.length >= this.config.eventsMax) {
      this.counters.eventsDropped++
      return
    }
    this.events.push(event)
  }

  /** Cheap invariants, checked after every input. */
  private assertInvariants (): void {
    const c = this.config
    assert(this.store.size <= c.nodesMax, 'gossip: more than nodesMax nodes')
    assert(this.store.bytes <= c.storeBytesMax, 'gossip: store over storeBytesMax')
    assert(this.outbox.length <= c.outboxMessagesMax, 'gossip: outbox over its limit')
    assert(this.events.length <= c.eventsMax, 'gossip: events over their limit')
    assert(this.pending.size <= c.pendingExchangesMax, 'gossip: pending exchanges over their limit')
    assert(this.forgotten.size <= c.nodesMax, 'gossip: forgotten nodes over nodesMax')
    assert(c.fanoutMin <= this.params.fanout && this.params.fanout <= c.fanoutMax, 'gossip: fanout out of bounds')
    assert(c.intervalTicksMin <= this.params.intervalTicks && this.params.intervalTicks <= c.intervalTicksMax, 'gossip: interval out of bounds')
    const own = this.store.get(this.id)
    assert(own === undefined || (own.values <= c.keysPerNodeMax && own.tombstones <= c.keysPerNodeMax && own.bytes <= c.bytesPerNodeMax),
      'gossip: our own entries over their limits')
  }

  /**
   * Every invariant, at O(entries) cost: for tests and the simulator.
   * Throws an AssertionError naming the first one broken.
   */
  checkInvariants (): void {
    this.assertInvariants()
    this.store.checkInvariants()
  }
}

/** Code-unit order. */
function compareKeys (a: string, b: string): number {
  if (a === b) { return 0 }
  return a < b ? -1 : 1
}
