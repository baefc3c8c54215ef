/**
 * The seeded fault schedule ("chaos") and the operator: every
 * CHAOS_INTERVAL_MS of the fault phase it may crash a node (restarting it
 * later from its disk), pause one (GC pause, SIGSTOP), cut the network (a
 * node isolated, a split in two, or one-way cuts) and heal it later, ask
 * the leader to hand leadership over, or change the membership (add a
 * learner, promote it, demote or remove a voter, or a joint swap), and tell
 * nodes their leader's connection closed (rightly after a crash, wrongly
 * now and then), per the run's options. Crashes, pauses and cuts hit the leader half of the time.
 *
 * Clock skew: each node's clock runs at its own fixed rate in
 * [1 - clockSkew, 1 + clockSkew] (its tick period is tickMs scaled by it).
 * ReadIndex reads must stay linearizable under any skew and any pause, so
 * most profiles use up to 30% skew and pauses.
 *
 * Lease reads (readOnlyMode 'lease') trust time instead: a leader answers
 * reads alone while it believes no other leader can exist. That holds only
 * if the leader's lease, measured on its clock from the last time a quorum
 * acknowledged it, ends before any follower of that quorum, measured on its
 * own clock, can vote for someone else (electionTimeoutTicks after it last
 * heard from the leader). Skew shrinks the margin between the two, and a
 * pause (a frozen leader keeps its lease until it ticks again) breaks it
 * outright; so the lease profiles run without skew and without pauses, the
 * most favourable setting there is. (The core's lease ends
 * leaseSafetyMarginTicks before the followers' promise can; see
 * protocols/raft/lease.ts.)
 */
import type { SimCluster } from './cluster.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { ConfChange, Message, NodeId } from '../../protocols/raft/index.ts'

const CHAOS_INTERVAL_MS = 50
/** Nodes the operator may add over a run, beyond the founders. */
const EXTRA_NODES_MAX = 3

export class FaultInjector {
  private readonly cluster: SimCluster
  private readonly rng: Rng
  private active = false
  /** Bumped by every partition, so a stale heal does not undo a newer one. */
  private partitionGeneration = 0
  private partitioned = false
  private extraNodes = 0
  /** Voters whose removal was proposed, with the index of the proposal. */
  private readonly removing = new Map<NodeId, number>()
  /** Removed nodes still running until their retirement (SimOptions.removedLingerMs). */
  private readonly lingering = new Set<NodeId>()

  constructor (cluster: SimCluster, rng: Rng) {
    this.cluster = cluster
    this.rng = rng
  }

  start (): void {
    this.active = true
    this.cluster.scheduler.after(CHAOS_INTERVAL_MS, () => { this.roll() })
  }

  /** Ends the fault phase: heal every link, restart every node, a clean network from now on. */
  stopAndHeal (): void {
    this.active = false
    this.partitioned = false
    for (const id of this.lingering) { this.cluster.retire(id) }
    this.lingering.clear()
    this.cluster.network.heal()
    this.cluster.network.faults = { ...this.cluster.network.faults, dropRate: 0, duplicateRate: 0, delayRate: 0 }
    for (const id of this.cluster.servers()) { this.cluster.restart(id) }
    this.cluster.trace.add('FAULTS STOP: network healed, every node restarted')
  }

  /** Shuts down nodes whose removal has been applied by the current leader. */
  retireRemoved (): void {
    if (this.removing.size === 0) { return }
    const leader = this.cluster.leader()
    if (leader === null) { return }
    const { conf, applied } = leader.status
    const members = new Set([...conf.voters, ...conf.votersOutgoing, ...conf.learners, ...conf.learnersNext])
    for (const [id, index] of this.removing) {
      // Decided once the leader's configuration reflects everything up to the proposal.
      if (applied < index) { continue }
      if (!members.has(id)) {
        this.removing.delete(id)
        this.retireLater(id)
      } else if (!conf.votersOutgoing.includes(id)) {
        this.removing.delete(id) // the removal was lost (while joint, it is still under way)
      }
    }
  }

  /**
   * A removed node that has not heard of its removal keeps campaigning for
   * a while (its messages meet the others' peer filters), then stops.
   */
  private retireLater (id: NodeId): void {
    const lingerMs = this.active ? this.cluster.options.removedLingerMs : 0
    if (lingerMs === 0) {
      this.cluster.retire(id)
      return
    }
    this.lingering.add(id)
    this.cluster.trace.add(`LINGER ${id} (removed, still running)`)
    this.cluster.scheduler.after(this.rng.intBetween(0, lingerMs), () => {
      if (this.lingering.delete(id)) { this.cluster.retire(id) }
    })
  }

  /** An outsider sends one hostile message to a random node (see SimOptions.outsider). */
  private outsiderMessage (): void {
    const to = pick(this.rng, this.cluster.servers())
    const from = 'x1'
    const term = this.rng.intBetween(1, 1000)
    const roll = this.rng.nextFloat()
    const message: Message = roll < 0.3
      ? { type: 'heartbeat', from, to, term, commit: this.rng.intBetween(0, 1000), readRound: 0 }
      : roll < 0.55
        ? { type: 'append', from, to, term, prevIndex: this.rng.intBetween(0, 100), prevTerm: this.rng.intBetween(0, term), commit: 1000, entries: [] }
        : roll < 0.8
          ? { type: 'vote', from, to, term, lastIndex: 1_000_000, lastTerm: term, transfer: this.rng.chance(0.5) }
          : { type: 'snapshot', from, to, term, snapshot: { meta: { index: this.rng.intBetween(1, 10_000), term, conf: { voters: [from], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data: new Uint8Array(8).fill(0xab) } }
    this.cluster.trace.add(`OUTSIDER sends ${message.type} term ${term} to ${to}`)
    this.cluster.network.send(message)
  }

  private roll (): void {
    if (!this.active) { return }
    const { options } = this.cluster
    if (options.outsider && this.rng.chance(0.2)) { this.outsiderMessage() }
    if (options.crashes && this.rng.chance(0.06)) { this.crashOne() }
    if (options.pauses && this.rng.chance(0.04)) { this.pauseOne() }
    if (options.partitions && !this.partitioned && this.rng.chance(0.06)) { this.partition() }
    if (options.transfers && this.rng.chance(0.02)) { this.transfer() }
    if (options.membership && this.rng.chance(0.06)) { this.changeMembership() }
    if (options.leaderLossHints && this.rng.chance(0.03)) { this.falseLeaderLossHint() }
    this.retireRemoved()
    this.cluster.scheduler.after(CHAOS_INTERVAL_MS, () => { this.roll() })
  }

  /** A random node, the leader half of the time (where most of the trouble is). */
  private victim (candidates: NodeId[]): NodeId {
    const leader = this.cluster.leader()
    if (leader !== null && candidates.includes(leader.id) && this.rng.chance(0.5)) { return leader.id }
    return pick(this.rng, candidates)
  }

  private pauseOne (): void {
    const up = this.cluster.servers().filter(id => this.cluster.isUp(id))
    if (up.length === 0) { return }
    this.cluster.pause(this.victim(up), this.rng.intBetween(10, 600))
  }

  private crashOne (): void {
    const up = this.cluster.servers().filter(id => this.cluster.isUp(id))
    if (up.length <= 1) { return }
    const id = this.victim(up)
    this.cluster.crash(id)
    if (this.cluster.options.leaderLossHints) { this.hintLoss(id, up.filter(other => other !== id)) }
    this.cluster.scheduler.after(this.rng.intBetween(20, 800), () => {
      if (this.active) { this.cluster.restart(id) }
    })
  }

  /** The OS of a crashed process resets its connections: most peers hear of it within a few ms. */
  private hintLoss (crashed: NodeId, peers: NodeId[]): void {
    for (const peer of peers) {
      if (!this.rng.chance(0.9)) { continue }
      this.cluster.scheduler.after(this.rng.intBetween(0, 5), () => {
        if (!this.cluster.isUp(peer)) { return }
        this.cluster.trace.add(`HINT ${peer}: connection to ${crashed} closed`)
        this.cluster.node(peer).forgetLeader(crashed)
      })
    }
  }

  /**
   * A partition that resets connections (a firewall answering with RSTs):
   * nodes now cut off from a live leader may be told it is gone, which is
   * true of their side only. The leader may still believe it leads.
   */
  private hintCutOffLeader (): void {
    const leader = this.cluster.leader()
    if (leader === null) { return }
    for (const peer of this.cluster.servers()) {
      if (peer === leader.id || !this.cluster.isUp(peer) || !this.cluster.network.isCut(leader.id, peer)) { continue }
      if (!this.rng.chance(0.5)) { continue }
      this.cluster.trace.add(`HINT ${peer}: connection to ${leader.id} closed (cut off, it is alive)`)
      this.cluster.node(peer).forgetLeader(leader.id)
    }
  }

  /** A connection to a live leader closes (churn, a limit): the hint is wrong. */
  private falseLeaderLossHint (): void {
    const up = this.cluster.servers().filter(id => this.cluster.isUp(id))
    if (up.length === 0) { return }
    const peer = pick(this.rng, up)
    const leader = this.cluster.node(peer).status().leader
    if (leader === null || leader === peer) { return }
    this.cluster.trace.add(`HINT ${peer}: connection to ${leader} closed (it is alive)`)
    this.cluster.node(peer).forgetLeader(leader)
  }

  private partition (): void {
    const { network, trace } = this.cluster
    const nodes = this.cluster.servers()
    const victim = this.victim(nodes)
    const others = nodes.filter(id => id !== victim)
    const kind = this.rng.intBetween(0, 3)
    if (kind === 0) {
      network.partition([[victim], others])
      trace.add(`PARTITION isolate ${victim}`)
    } else if (kind === 1) {
      const side = nodes.filter(() => this.rng.chance(0.5))
      network.partition([side, nodes.filter(id => !side.includes(id))])
      trace.add(`PARTITION split [${side.join(' ')}]`)
    } else if (kind === 2) {
      // One way: the victim hears everyone but nobody hears it (or the reverse).
      const outbound = this.rng.chance(0.5)
      for (const other of others) {
        if (outbound) { network.cutLink(victim, other) } else { network.cutLink(other, victim) }
      }
      trace.add(`PARTITION ${victim} ${outbound ? 'cannot send' : 'cannot receive'}`)
    } else {
      const other = pick(this.rng, others)
      network.cutLink(victim, other)
      trace.add(`PARTITION link ${victim}>${other} cut`)
    }
    this.cluster.stats.partitions++
    this.partitioned = true
    if (this.cluster.options.leaderLossHints) { this.hintCutOffLeader() }
    const generation = ++this.partitionGeneration
    this.cluster.scheduler.after(this.rng.intBetween(50, 1200), () => {
      if (!this.active || generation !== this.partitionGeneration) { return }
      network.heal()
      this.partitioned = false
      trace.add('HEAL network')
    })
  }

  private transfer (): void {
    const leader = this.cluster.leader()
    if (leader === null) { return }
    const candidates = leader.status.conf.voters.filter(id => id !== leader.id)
    if (candidates.length === 0) { return }
    const to = pick(this.rng, candidates)
    const refused = this.cluster.node(leader.id).transferLeadership(to)
    this.cluster.trace.add(`TRANSFER ${leader.id} -> ${to}: ${refused ?? 'ok'}`)
    if (refused === null) { this.cluster.stats.transfers++ }
  }

  private changeMembership (): void {
    const leader = this.cluster.leader()
    if (leader === null) { return }
    const { conf } = leader.status
    if (conf.votersOutgoing.length > 0) { return } // joint: the leader leaves it by itself
    const change = this.pickChange(conf.voters, conf.learners)
    if (change === null) { return }
    const index = this.cluster.node(leader.id).changeMembership(change)
    this.cluster.trace.add(`CONF ${leader.id} proposes ${JSON.stringify(change.changes)}: ${index !== null ? `index ${index}` : 'refused'}`)
    if (index === null) { return }
    this.cluster.stats.confChanges++
    for (const single of change.changes) {
      if (single.type === 'remove') { this.removing.set(single.node, index) }
      if (single.type === 'add-learner' && !this.cluster.disks.has(single.node)) {
        this.cluster.startNode(single.node)
        this.cluster.trace.add(`START ${single.node} (empty, joining)`)
      }
    }
  }

  private pickChange (voters: NodeId[], learners: NodeId[]): ConfChange | null {
    const roll = this.rng.nextFloat()
    if (learners.length > 0 && roll < 0.5) {
      const learner = pick(this.rng, learners)
      // Sometimes a joint swap: the learner replaces a voter in one step.
      if (voters.length >= 3 && this.rng.chance(0.4)) {
        return { changes: [{ type: 'promote', node: learner }, { type: 'remove', node: pick(this.rng, voters) }] }
      }
      return { changes: [{ type: 'promote', node: learner }] }
    }
    if (roll < 0.7 && this.extraNodes < EXTRA_NODES_MAX) {
      this.extraNodes++
      return { changes: [{ type: 'add-learner', node: `n${this.cluster.options.nodes + this.extraNodes}` }] }
    }
    if (voters.length >= 3) {
      const voter = pick(this.rng, voters)
      return { changes: [{ type: roll < 0.85 ? 'add-learner' : 'remove', node: voter }] }
    }
    return null
  }
}

function pick<T> (rng: Rng, items: T[]): T {
  return items[rng.intBetween(0, items.length - 1)]
}
