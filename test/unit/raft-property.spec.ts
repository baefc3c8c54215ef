import { expect } from 'aegir/chai'
import { createRng } from '../../protocols/common/rng.ts'
import { Cluster, dec, enc } from './raft-harness.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { ConfChange, ConfState, NodeId } from '../../protocols/raft/index.ts'

/**
 * Random schedules (message loss, duplication, reordering, partitions,
 * crashes and restarts from disk, compaction, leadership transfers) over
 * many seeds, checking Raft's safety properties after every step:
 * - election safety: at most one leader per term;
 * - log matching: two persisted logs agreeing on (index, term) agree on
 * every entry up to there;
 * - state machine safety: applied sequences are prefixes of one another;
 * and, once the faults stop, that the cluster converges (liveness).
 */
// A longer sweep: RAFT_PROPERTY_SEEDS=2000 aegir test -t node -f test/unit/raft-property.spec.ts
const SEEDS = Number(process.env.RAFT_PROPERTY_SEEDS ?? 60)
const STEPS = 400

describe('raft: randomized safety', function () {
  this.timeout(120000)

  const only = process.env.RAFT_SEED
  for (let seed = 1; seed <= SEEDS; seed++) {
    if (only !== undefined && Number(only) !== seed) { continue }
    it(`seed ${seed}`, () => runSchedule(seed))
  }
})

function runSchedule (seed: number): void {
  const rng = createRng(seed)
  const ids = rng.chance(0.5) ? ['n1', 'n2', 'n3'] : ['n1', 'n2', 'n3', 'n4', 'n5']
  const c = new Cluster(ids, {
    seed,
    config: {
      preVote: rng.chance(0.8),
      checkQuorum: rng.chance(0.8),
      inflightMessagesMax: rng.intBetween(1, 8),
      messageEntriesMax: rng.intBetween(1, 6)
    }
  })
  const lossRate = rng.nextFloat() * 0.3
  const leaderOfTerm = new Map<number, NodeId>()
  let proposals = 0
  let restarts = 0

  // ReadIndex linearizability: a read must observe every entry committed
  // anywhere before it was requested.
  const readFloor = new Map<string, number>()
  let reads = 0
  const checkReads = (): void => {
    for (const id of ids) {
      for (const state of c.readStates.get(id)!.splice(0)) {
        const floor = readFloor.get(dec(state.requestCtx))
        expect(floor, 'a read state answers a read we made').to.not.equal(undefined)
        expect(state.index, `read ${dec(state.requestCtx)} at ${id} is stale`).to.be.at.least(floor!)
      }
    }
  }
  const check = (): void => {
    checkElectionSafety(c, leaderOfTerm)
    checkStateMachineSafety(c, ids)
    checkReads()
  }

  for (let step = 0; step < STEPS; step++) {
    const action = rng.nextFloat()
    if (action < 0.35) {
      for (const id of ids) { if (!c.down.has(id) && rng.chance(0.8)) { c.node(id).tick() } }
    } else if (action < 0.75) {
      deliverSome(c, rng, lossRate)
    } else if (action < 0.84) {
      for (const id of c.leaders()) { c.node(id).propose(enc(`v${++proposals}`)) }
    } else if (action < 0.87) {
      const id = pick(rng, ids)
      if (!c.down.has(id)) {
        const ctx = `read-${++reads}`
        readFloor.set(ctx, Math.max(...ids.map(n => c.down.has(n) ? c.disks.get(n)!.hardState.commit : c.node(n).status().commit)))
        c.node(id).readIndex(enc(ctx))
      }
    } else if (action < 0.91) {
      const id = pick(rng, ids)
      if (!c.down.has(id) && c.down.size < Math.floor((ids.length - 1) / 2)) { c.crash(id) } else if (c.down.has(id)) { c.restart(id, ++restarts) }
    } else if (action < 0.94) {
      const cut = ids.filter(() => rng.chance(0.3))
      c.partition(cut, ids.filter(id => !cut.includes(id)))
    } else if (action < 0.97) {
      c.heal()
    } else if (action < 0.99) {
      const id = pick(rng, ids)
      if (!c.down.has(id)) { c.compact(id) }
    } else {
      const [leader] = c.leaders()
      if (leader !== undefined) { c.node(leader).transferLeadership(pick(rng, ids)) }
    }
    c.processAllReady()
    check()
    if (step % 50 === 0) { checkLogMatching(c, ids) }
  }

  // Faults stop: the cluster must converge and keep working. Without
  // pre-vote a node that was cut off may still depose the leader once, so
  // a proposal is retried with a new leader if needed.
  c.heal()
  for (const id of ids) { if (c.down.has(id)) { c.restart(id, ++restarts) } }
  c.stabilize()
  const converged = (): boolean => ids.every(id => c.applied.get(id)!.at(-1)?.startsWith('final') === true) &&
    ids.every(id => JSON.stringify(c.applied.get(id)) === JSON.stringify(c.applied.get(ids[0])))
  for (let attempt = 0; attempt < 5 && !converged(); attempt++) {
    c.tickUntil(() => c.leaders().length === 1 && c.node(c.leaders()[0]).status().leadTransferee === null, 400)
    c.node(c.leaders()[0]).propose(enc(`final-${attempt}`))
    c.stabilize()
    c.tick(3)
  }
  check()
  checkLogMatching(c, ids)
  expect(converged(), `cluster did not converge (seed ${seed}): ${JSON.stringify([...c.applied])}`).to.equal(true)
}

describe('raft: randomized membership changes', function () {
  this.timeout(120000)
  const seeds = Number(process.env.RAFT_PROPERTY_SEEDS ?? 60) / 2
  const only = process.env.RAFT_SEED
  for (let seed = 1; seed <= seeds; seed++) {
    if (only !== undefined && Number(only) !== seed) { continue }
    it(`seed ${seed}`, () => runMembershipSchedule(seed))
  }
})

/**
 * Like runSchedule, with random membership changes (learners added,
 * promoted, voters removed, joint swaps) among six nodes of which three
 * found the cluster.
 */
function runMembershipSchedule (seed: number): void {
  const rng = createRng(seed + 100000)
  const all = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6']
  const c = new Cluster(['n1', 'n2', 'n3'], {
    seed,
    config: { preVote: rng.chance(0.7), checkQuorum: rng.chance(0.7), messageEntriesMax: rng.intBetween(1, 6) }
  })
  for (const id of all.slice(3)) { c.start(id) }
  const lossRate = rng.nextFloat() * 0.2
  const leaderOfTerm = new Map<number, NodeId>()
  let proposals = 0
  let restarts = 0
  let changes = 0

  for (let step = 0; step < STEPS; step++) {
    const action = rng.nextFloat()
    if (action < 0.3) {
      for (const id of all) { if (!c.down.has(id) && rng.chance(0.8)) { c.node(id).tick() } }
    } else if (action < 0.7) {
      deliverSome(c, rng, lossRate)
    } else if (action < 0.8) {
      for (const id of c.leaders()) { c.node(id).propose(enc(`v${++proposals}`)) }
    } else if (action < 0.9) {
      const [leader] = c.leaders()
      if (leader !== undefined && c.node(leader).proposeConfChange(randomConfChange(rng, c.node(leader).status().conf, all)).ok) { changes++ }
    } else if (action < 0.93) {
      const id = pick(rng, all)
      if (!c.down.has(id) && c.down.size === 0) { c.crash(id) } else if (c.down.has(id)) { c.restart(id, ++restarts) }
    } else if (action < 0.96) {
      const cut = all.filter(() => rng.chance(0.3))
      c.partition(cut, all.filter(id => !cut.includes(id)))
    } else if (action < 0.98) {
      c.heal()
    } else {
      const id = pick(rng, all)
      if (!c.down.has(id)) { c.compact(id) }
    }
    c.processAllReady()
    checkElectionSafety(c, leaderOfTerm)
    checkStateMachineSafety(c, all)
    if (step % 50 === 0) { checkLogMatching(c, all) }
  }

  c.heal()
  for (const id of all) { if (c.down.has(id)) { c.restart(id, ++restarts) } }
  c.stabilize()
  let members: NodeId[] = []
  const converged = (): boolean => members.length > 0 &&
    members.every(id => c.applied.get(id)!.at(-1)?.startsWith('final') === true) &&
    members.every(id => JSON.stringify(c.applied.get(id)) === JSON.stringify(c.applied.get(members[0])))
  for (let attempt = 0; attempt < 5 && !converged(); attempt++) {
    c.tickUntil(() => c.leaders().length === 1 && c.node(c.leaders()[0]).status().leadTransferee === null, 600)
    const leader = c.leaders()[0]
    c.node(leader).propose(enc(`final-${attempt}`))
    c.stabilize()
    c.tick(5)
    const conf = c.node(c.leaders()[0] ?? leader).status().conf
    members = [...conf.voters, ...conf.learners]
  }
  checkStateMachineSafety(c, all)
  checkLogMatching(c, all)
  expect(converged(), `members ${members} did not converge (seed ${seed}, ${changes} changes)`).to.equal(true)
  for (const id of members) { expect(c.node(id).status().conf.voters).to.deep.equal(c.node(members[0]).status().conf.voters) }
}

function randomConfChange (rng: Rng, conf: ConfState, all: NodeId[]): ConfChange {
  const target = pick(rng, all)
  const kind = rng.intBetween(0, 2)
  if (conf.learners.includes(target)) {
    // Promote, or a joint swap: promote the learner and remove a voter.
    return kind < 2
      ? { changes: [{ type: 'promote', node: target }] }
      : { changes: [{ type: 'promote', node: target }, { type: 'remove', node: pick(rng, conf.voters) }] }
  }
  if (!conf.voters.includes(target)) { return { changes: [{ type: kind === 0 ? 'add-voter' : 'add-learner', node: target }] } }
  if (conf.voters.length > 2) { return { changes: [{ type: kind === 0 ? 'add-learner' : 'remove', node: target }] } }
  return { changes: [] }
}

function deliverSome (c: Cluster, rng: Rng, lossRate: number): void {
  const n = rng.intBetween(1, 12)
  for (let i = 0; i < n && c.queue.length > 0; i++) {
    // Mostly in order, sometimes reordered.
    const index = rng.chance(0.8) ? 0 : rng.intBetween(0, c.queue.length - 1)
    const [m] = c.queue.splice(index, 1)
    if (rng.chance(0.05)) { c.queue.push(m) } // duplicate
    if (c.deliver(m, rng.chance(lossRate))) { c.processReady(m.to) }
  }
}

function pick<T> (rng: Rng, items: T[]): T {
  return items[rng.intBetween(0, items.length - 1)]
}

function checkElectionSafety (c: Cluster, leaderOfTerm: Map<number, NodeId>): void {
  for (const id of c.leaders()) {
    const term = c.node(id).status().term
    const known = leaderOfTerm.get(term)
    expect(known === undefined || known === id, `two leaders in term ${term}: ${known} and ${id}`).to.equal(true)
    leaderOfTerm.set(term, id)
  }
}

function checkStateMachineSafety (c: Cluster, ids: NodeId[]): void {
  for (const x of ids) {
    for (const y of ids) {
      if (x >= y) { continue }
      const ax = c.applied.get(x)!
      const ay = c.applied.get(y)!
      const n = Math.min(ax.length, ay.length)
      expect(ax.slice(0, n), `applied sequences of ${x} and ${y} diverge`).to.deep.equal(ay.slice(0, n))
    }
  }
}

function checkLogMatching (c: Cluster, ids: NodeId[]): void {
  const logs = ids.map(id => new Map(c.disks.get(id)!.entries.map(e => [e.index, e])))
  for (let i = 0; i < logs.length; i++) {
    for (let j = i + 1; j < logs.length; j++) {
      let highestMatch = 0
      for (const [index, e] of logs[i]) {
        if (logs[j].get(index)?.term === e.term) { highestMatch = Math.max(highestMatch, index) }
      }
      for (const [index, e] of logs[i]) {
        if (index > highestMatch) { continue }
        const other = logs[j].get(index)
        if (other === undefined) { continue }
        expect(other.term, `log matching at ${index} between ${ids[i]} and ${ids[j]}`).to.equal(e.term)
        expect(dec(other.data)).to.equal(dec(e.data))
      }
    }
  }
}
