import { expect } from 'aegir/chai'
import { TimerLateness } from '../../node/driver-scheduling.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { RAFT_DEFAULTS } from '../../protocols/raft/index.ts'
import { runUntilAsync, simRuntime } from '../sim/runtime.ts'
import { Scheduler } from '../sim/scheduler.ts'
import { testDriver } from './raft-driver-helpers.ts'
import { Cluster } from './raft-harness.ts'
import type { DriverRuntime } from '../../node/runtime.ts'

const ABC = ['a', 'b', 'c']
const ELECTION_TIMEOUT_TICKS = RAFT_DEFAULTS.electionTimeoutTicks
const SCORE_MAX = RAFT_DEFAULTS.localHealthScoreMax

/** Ticks b and c until one of them leads (a is down); returns the new leader and the ticks it took. */
function newLeaderAfterCrash (c: Cluster): { leader: string, ticks: number } {
  for (let ticks = 0; ticks <= 1000; ticks++) {
    const leader = c.leaders().find(id => id !== 'a')
    if (leader !== undefined) { return { leader, ticks } }
    c.tick(1, ['b', 'c'])
  }
  throw new Error(`no new leader within 1000 ticks\n${c.describe()}`)
}

describe('raft: local health (Lifeguard) gates campaigns', () => {
  it('a follower marked unhealthy does not campaign: the healthy one is elected, whatever the random timeouts', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const c = new Cluster(ABC, { seed })
      c.elect('a')
      c.crash('a')
      c.node('b').setLocalHealth(SCORE_MAX)
      expect(newLeaderAfterCrash(c).leader, `seed ${seed}`).to.equal('c')
    }
  })

  it('...nor after forgetLeader(): the healthy follower takes over', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const c = new Cluster(ABC, { seed })
      c.elect('a')
      c.crash('a')
      c.node('b').setLocalHealth(SCORE_MAX)
      c.node('b').forgetLeader('a')
      c.node('c').forgetLeader('a')
      expect(newLeaderAfterCrash(c).leader, `seed ${seed}`).to.equal('c')
    }
  })

  it('unhealthy followers still elect a leader, after (1 + score) times their election timeout (liveness does not rest on health)', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const c = new Cluster(ABC, { seed })
      c.elect('a')
      c.crash('a')
      c.node('b').setLocalHealth(1)
      c.node('c').setLocalHealth(1)
      const { leader, ticks } = newLeaderAfterCrash(c)
      expect(leader, `seed ${seed}`).to.be.oneOf(['b', 'c'])
      expect(ticks, `seed ${seed}`).to.be.at.least(2 * ELECTION_TIMEOUT_TICKS)
    }
  })

  it('a node that recovers its health campaigns at its usual timeout again', () => {
    const c = new Cluster(ABC)
    c.elect('a')
    c.crash('a')
    c.node('b').setLocalHealth(SCORE_MAX)
    c.node('c').setLocalHealth(SCORE_MAX)
    c.node('b').setLocalHealth(0)
    c.node('c').setLocalHealth(0)
    expect(newLeaderAfterCrash(c).ticks).to.be.below(2 * ELECTION_TIMEOUT_TICKS)
  })

  it('refuses a score that is not an integer in 0..localHealthScoreMax', () => {
    const c = new Cluster(ABC)
    for (const score of [-1, SCORE_MAX + 1, 1.5, Number.NaN, '1' as unknown as number]) {
      expect(() => { c.node('a').setLocalHealth(score) }, String(score)).to.throw(RangeError, /local health score/)
    }
  })
})

describe('TimerLateness (local health from a timer\'s lateness)', () => {
  it('stays 0 while the timer fires on time, rises by one per tick a whole interval late, up to the maximum, and falls by one per tick on time', () => {
    const lateness = new TimerLateness(50, 3, 0)
    const scores: number[] = []
    let now = 0
    const fire = (afterMs: number): void => { now += afterMs; scores.push(lateness.fired(now)) }
    fire(50); fire(60); fire(99) // on time, or less than an interval late
    fire(100); fire(250); fire(100); fire(100) // late: up to the maximum, 3
    expect(lateness.lateMs).to.equal(50)
    fire(50); fire(50); fire(50); fire(50)
    expect(scores).to.deep.equal([0, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0])
    expect(lateness.score).to.equal(0)
  })
})

describe('raft driver: local health from its own ticks', function () {
  this.timeout(30_000)

  const ID = 'node-a'
  const TICK_MS = 10
  /** A one-voter driver on virtual time; `lagMs(now)` is how far behind its clock says its ticks run. */
  const leaderAt = async (lagPerTickMs: number): Promise<{ leaderAtMs: number | null, score: number }> => {
    const scheduler = new Scheduler()
    const base = simRuntime(scheduler, createRng(7))
    // each tick appears lagPerTickMs later than the one before it should
    const runtime: DriverRuntime = { ...base, now: () => scheduler.now * (1 + lagPerTickMs / TICK_MS) }
    const driver = testDriver({
      id: ID,
      bootstrapConf: { voters: [ID], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false },
      runtime,
      tickIntervalMs: TICK_MS,
      electionTimeoutTicks: 4
    })
    driver.start()
    // 2 x the longest randomized timeout (4-7 ticks) of a healthy node
    await runUntilAsync(scheduler, 16 * TICK_MS, () => driver.status().role === 'leader')
    const result = { leaderAtMs: driver.status().role === 'leader' ? scheduler.now : null, score: driver.localHealthScore }
    void driver.stop()
    return result
  }

  it('ticks on time: health 0, the node campaigns at its election timeout', async () => {
    const { leaderAtMs, score } = await leaderAt(0)
    expect(leaderAtMs).to.not.equal(null)
    expect(score).to.equal(0)
  })

  it('every tick a whole interval late: the score rises and the node holds back its campaign', async () => {
    const { leaderAtMs, score } = await leaderAt(TICK_MS)
    expect(leaderAtMs).to.equal(null)
    expect(score).to.be.above(0)
  })
})
