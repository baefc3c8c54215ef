/**
 * Failover when the leader hangs, end to end: 3 `accord start` processes
 * with the default Raft timing, and a leader stopped with SIGSTOP (as a
 * frozen machine or a cut cable: its connections stay open, so only the
 * election timeout tells the followers). A new leader must be elected and
 * take writes; the old one, resumed, must follow it and hold those writes.
 * How long the failover takes is measured by `npm run bench:raft --
 * --failover stop`, not asserted here.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { scrapeMetrics } from '../lib/metrics.ts'
import { testPortBase } from '../lib/ports.ts'
import { RaftScenario } from '../lib/scenario.ts'
import { waitFor } from '../lib/wait.ts'

describe('raft: the leader hangs (SIGSTOP, 3 OS processes)', function () {
  this.timeout(240_000)
  let root: string
  let scenario: RaftScenario

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-hang-'))
    scenario = new RaftScenario()
    const base = testPortBase()
    await scenario.startCluster([0, 1, 2].map(i => ({
      dataDir: join(root, `node-${i}`),
      apiUrl: `http://127.0.0.1:${base + i}`,
      args: ['--listen', `/ip4/127.0.0.1/tcp/${base + 100 + i}`, '--api', `127.0.0.1:${base + i}`]
    })))
  })

  afterEach(async function () {
    await scenario.stopAll()
    if (this.currentTest?.state === 'failed') { console.log(scenario.log.join('\n')) } // eslint-disable-line no-console
    await rm(root, { recursive: true, force: true })
  })

  async function put (node: number, key: string, value: string): Promise<number> {
    return (await scenario.request(scenario.nodes[node], 'PUT', `/v1/kv/${key}`, value, 10_000)).status
  }

  async function followsAgain (node: number): Promise<void> {
    await waitFor(async () => (await scenario.raftStatus(scenario.nodes[node]))?.role === 'follower', `node ${node} to follow again`, 30_000)
  }

  /** accord_raft_leader_connection_losses_total of every node but `except`. */
  async function connectionLossesOfOthers (except: number): Promise<number[]> {
    const others = scenario.nodes.filter(node => node.index !== except)
    return Promise.all(others.map(async node => (await scrapeMetrics(node.apiUrl)).get('accord_raft_leader_connection_losses_total') ?? NaN))
  }

  it('a new leader is elected by the election timeout alone and commits a write; the resumed leader follows it and holds the write', async () => {
    const leader = await scenario.waitForLeader('the first leader')
    expect(await put(leader, 'before', 'one')).to.equal(200)
    const termBefore = (await scenario.raftStatus(scenario.nodes[leader]))?.term ?? NaN

    scenario.pause(leader)
    const successor = await scenario.waitForLeader('a leader elected while the old one hangs', leader)
    expect(await put(successor, 'during', 'two')).to.equal(200)
    expect((await scenario.raftStatus(scenario.nodes[successor]))?.term).to.be.above(termBefore)
    // no connection closed: the followers found out by the election timeout (see forgetLeader for the other way)
    expect(await connectionLossesOfOthers(leader)).to.deep.equal([0, 0])

    scenario.resume(leader)
    const successorId = scenario.nodes[successor].peerId
    await waitFor(async () => {
      const status = await scenario.raftStatus(scenario.nodes[leader])
      return status?.role === 'follower' && status.leader === successorId
    }, 'the resumed leader to follow its successor', 30_000)
    const read = await scenario.request(scenario.nodes[leader], 'GET', '/v1/kv/during?consistency=linearizable')
    expect(read).to.deep.include({ status: 200 })
    expect(read.json.value).to.equal('two')
  })

  it('three hangs in a row, each of the leader of the moment: every time a new leader takes writes, and no write is lost', async () => {
    const written: string[] = []
    for (let round = 0; round < 3; round++) {
      const leader = await scenario.waitForLeader(`the leader before hang ${round + 1}`)
      scenario.pause(leader)
      const successor = await scenario.waitForLeader(`a leader elected during hang ${round + 1}`, leader)
      expect(await put(successor, `round-${round}`, `v${round}`), `round ${round + 1}`).to.equal(200)
      written.push(`round-${round}`)
      scenario.resume(leader)
      // the resumed node catches up before the next round (else the next hang could stop a majority's worth of log)
      await followsAgain(leader)
    }
    for (const node of scenario.nodes) {
      for (const [round, key] of written.entries()) {
        const read = await scenario.request(node, 'GET', `/v1/kv/${key}?consistency=linearizable`)
        expect(read.json.value, `${key} on node ${node.index}`).to.equal(`v${round}`)
      }
    }
  })
})
