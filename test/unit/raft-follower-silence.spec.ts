/**
 * A leader reopens its streams to a follower that stopped answering
 * (FollowerSilence, and the driver that acts on it).
 */
import { expect } from 'aegir/chai'
import { FollowerSilence } from '../../node/raft/follower-silence.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { runUntilAsync, simRuntime } from '../sim/runtime.ts'
import { Scheduler } from '../sim/scheduler.ts'
import { testDriver } from './raft-driver-helpers.ts'
import type { Message } from '../../protocols/raft/index.ts'

describe('FollowerSilence', () => {
  it('reports a follower once per limit of ticks without an answer, and starts counting again', () => {
    const silence = new FollowerSilence(3)
    expect(silence.tick(['b', 'c'])).to.deep.equal([])
    expect(silence.tick(['b', 'c'])).to.deep.equal([])
    expect(silence.tick(['b', 'c'])).to.deep.equal(['b', 'c'])
    expect(silence.tick(['b', 'c'])).to.deep.equal([])
    expect(silence.tick(['b', 'c'])).to.deep.equal([])
    expect(silence.tick(['b', 'c'])).to.deep.equal(['b', 'c'])
  })

  it('an answer starts the count again; a follower that answers every tick is never reported', () => {
    const silence = new FollowerSilence(2)
    for (let i = 0; i < 10; i++) {
      silence.heard('b')
      expect(silence.tick(['b', 'c'])).to.not.include('b')
    }
  })

  it('forgets followers no longer listed, and everything on clear()', () => {
    const silence = new FollowerSilence(2)
    silence.tick(['b'])
    silence.tick([])
    // b starts from zero when it comes back
    expect(silence.tick(['b'])).to.deep.equal([])
    silence.clear()
    expect(silence.tick(['b'])).to.deep.equal([])
    expect(silence.tick(['b'])).to.deep.equal(['b'])
  })

  it('refuses a limit that is not a positive integer', () => {
    expect(() => new FollowerSilence(0)).to.throw(RangeError)
    expect(() => new FollowerSilence(1.5)).to.throw(RangeError)
  })
})

describe('raft driver: a leader reopens the streams to a silent follower', function () {
  this.timeout(30_000)
  const TICK_MS = 10
  const CHECK_QUORUM_TICKS = 8

  /** A leader of voter a with learner b, for `ticks` ticks; b answers every heartbeat when `answering`. */
  async function leaderWithLearner (ticks: number, answering: boolean): Promise<string[]> {
    const scheduler = new Scheduler()
    const resets: string[] = []
    const ref: { driver?: ReturnType<typeof testDriver> } = {}
    const driver = ref.driver = testDriver({
      id: 'a',
      bootstrapConf: { voters: ['a'], votersOutgoing: [], learners: ['b'], learnersNext: [], autoLeave: false },
      runtime: simRuntime(scheduler, createRng(3)),
      tickIntervalMs: TICK_MS,
      checkQuorumTicks: CHECK_QUORUM_TICKS,
      outbox: {
        send: (to: string, message: Message) => {
          if (!answering || message.type !== 'heartbeat') { return }
          // b's answer arrives on the next turn, as from the network
          scheduler.after(1, () => { ref.driver?.step({ type: 'heartbeat-response', from: to, to: 'a', term: message.term, readRound: message.readRound }) })
        },
        resetPeer: to => { resets.push(to) }
      }
    })
    driver.start()
    await runUntilAsync(scheduler, ticks * TICK_MS)
    expect(driver.status().role).to.equal('leader')
    await driver.stop()
    return resets
  }

  it('a learner that never answers has its streams reset once per check-quorum period', async () => {
    const resets = await leaderWithLearner(CHECK_QUORUM_TICKS * 5, false)
    expect(resets.length).to.be.within(3, 5)
    expect(new Set(resets)).to.deep.equal(new Set(['b']))
  })

  it('a learner that answers is left alone', async () => {
    expect(await leaderWithLearner(CHECK_QUORUM_TICKS * 5, true)).to.deep.equal([])
  })
})
