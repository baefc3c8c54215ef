/**
 * Raft under faults, end to end: 5 `accord start` processes, clients
 * writing and reading through the HTTP API the whole time, and a nemesis.
 * Each scenario's history must be linearizable (which also means no
 * acknowledged write was lost: the final reads are part of the history),
 * and in the end every node must answer and have applied all that was
 * committed. In most scenarios the nodes snapshot every few hundred
 * entries, and the nodes that were killed, paused or cut off come back
 * behind the others' compacted logs, so they catch up by InstallSnapshot;
 * one keeps the default interval, so they catch up from the log alone.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { API_TOKEN_FILE } from '../../node/http-api.ts'
import { scrapeMetrics } from '../lib/metrics.ts'
import { NetnsLab } from '../lib/netns.ts'
import { testPortBase } from '../lib/ports.ts'
import { describeFailure, RaftScenario } from '../lib/scenario.ts'

const CLIENTS = { clients: 5, keys: 4, requestTimeoutMs: 3000, thinkMs: 20 }
/**
 * A snapshot interval small enough that snapshots, log compaction and
 * InstallSnapshot to nodes that were down or cut off happen under the
 * faults (the default, 100,000 entries, is never reached in a test).
 */
const SNAPSHOT_ENTRIES = 200
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('raft under faults (5 OS processes)', function () {
  this.timeout(300_000)
  let root: string
  let scenario: RaftScenario

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-faults-'))
    scenario = new RaftScenario()
  })

  afterEach(async function () {
    const failed = this.currentTest?.state === 'failed'
    if (failed) { await scenario.keepEvidence() }
    await scenario.stopAll()
    if (failed) {
      // the nodes' data dirs (with stderr.log) stay for a post-mortem
      console.log(`${scenario.log.join('\n')}\ndata dirs kept in ${root}`) // eslint-disable-line no-console
      return
    }
    await rm(root, { recursive: true, force: true })
  })

  async function loopbackCluster (extraArgs: string[] = []): Promise<void> {
    const base = testPortBase()
    await scenario.startCluster([0, 1, 2, 3, 4].map(i => ({
      dataDir: join(root, `node-${i}`),
      apiUrl: `http://127.0.0.1:${base + i}`,
      args: ['--listen', `/ip4/127.0.0.1/tcp/${base + 100 + i}`, '--api', `127.0.0.1:${base + i}`, ...extraArgs]
    })))
  }

  /** accord_raft_leader_connection_losses_total of every node but `except`. */
  async function connectionLossesOfOthers (except: number): Promise<number[]> {
    const others = scenario.nodes.filter(node => node.index !== except)
    return Promise.all(others.map(async node => (await scrapeMetrics(node.apiUrl)).get('accord_raft_leader_connection_losses_total') ?? NaN))
  }

  function expectLinearizable (): void {
    const result = scenario.check()
    expect(result.ok, describeFailure(scenario, result)).to.equal(true)
    expect(scenario.acknowledgedWrites).to.be.greaterThan(20)
  }

  /** Every node serves and caught up, and snapshotted at least once (a node that installed one from the leader counts). */
  async function expectAllCaughtUpWithSnapshots (): Promise<void> {
    await scenario.waitForAllCaughtUp()
    for (const node of scenario.nodes) {
      const status = await scenario.raftStatus(node)
      expect(status?.lastSnapshotIndex, `last snapshot of node ${node.index}`).to.be.above(0)
    }
  }

  it('kill -9 of the leader, twice, and restarts; the restarted node catches up by snapshot', async () => {
    await loopbackCluster(['--raft-snapshot-entries', String(SNAPSHOT_ENTRIES)])
    scenario.startClients({ ...CLIENTS, seed: 1 })
    await sleep(2000)
    for (let round = 0; round < 2; round++) {
      const leader = await scenario.waitForLeader('a leader')
      const lossesBefore = await connectionLossesOfOthers(leader)
      await scenario.kill(leader)
      const successor = await scenario.waitForLeader('a new leader', leader)
      // the OS reset the dead leader's connections: its followers noticed
      // (and did not wait out the election timeout)
      const lossesAfter = await connectionLossesOfOthers(leader)
      expect(lossesAfter.filter((n, i) => n > lossesBefore[i]).length, 'followers that noticed the leader\'s connections close').to.be.at.least(3)
      // the others compact their logs past anything the dead node holds, so
      // it can only catch up by a snapshot (its restart reads the interval
      // from the settings saved in its data dir)
      const logBound = await scenario.lastIndexOfOthers([leader])
      await sleep(2000)
      await scenario.compactPast(logBound, [leader], successor)
      await scenario.restart(leader)
      await scenario.waitForSnapshotPast(leader, logBound)
      await sleep(1500)
    }
    await scenario.stopClients()
    await scenario.finalReads(CLIENTS.keys)
    expectLinearizable()
    await expectAllCaughtUpWithSnapshots()
  })

  it('SIGSTOP of the leader for longer than the election timeout, then SIGCONT; it catches up by snapshot', async () => {
    await loopbackCluster(['--raft-snapshot-entries', String(SNAPSHOT_ENTRIES)])
    scenario.startClients({ ...CLIENTS, seed: 2 })
    await sleep(2000)
    const leader = await scenario.waitForLeader('a leader')
    scenario.pause(leader)
    const successor = await scenario.waitForLeader('a leader elected while the old one sleeps', leader)
    // the sleeping leader wakes up behind the others' compacted logs (the
    // follower paused below may not: appends sent to it before the others
    // compacted wait in its socket buffer)
    const logBound = await scenario.lastIndexOfOthers([leader])
    await sleep(2000)
    await scenario.compactPast(logBound, [leader], successor)
    scenario.resume(leader)
    await scenario.waitForSnapshotPast(leader, logBound)
    await sleep(3000)
    // a follower paused too: nothing should notice much
    const follower = (leader + 1) % 5
    scenario.pause(follower)
    await sleep(3000)
    scenario.resume(follower)
    await sleep(1500)
    await scenario.stopClients()
    await scenario.finalReads(CLIENTS.keys)
    expectLinearizable()
    await expectAllCaughtUpWithSnapshots()
  })

  it('SIGSTOP of the leader, then kill -9 of a follower, with the default snapshot interval; both catch up from the log alone', async () => {
    await loopbackCluster()
    scenario.startClients({ ...CLIENTS, seed: 3 })
    await sleep(2000)
    // the old leader wakes up behind, possibly holding entries of its term
    // that were never committed: the new leader's appends find where the
    // logs diverge and overwrite its tail
    const leader = await scenario.waitForLeader('a leader')
    scenario.pause(leader)
    await scenario.waitForLeader('a leader elected while the old one sleeps', leader)
    await sleep(2000)
    scenario.resume(leader)
    await sleep(2000)
    const current = await scenario.waitForLeader('the current leader')
    const follower = [0, 1, 2, 3, 4].find(i => i !== current && i !== leader) ?? 0
    await scenario.kill(follower)
    await sleep(2000)
    await scenario.restart(follower)
    await sleep(2000)
    await scenario.stopClients()
    await scenario.finalReads(CLIENTS.keys)
    expectLinearizable()
    await scenario.waitForAllCaughtUp()
    for (const node of scenario.nodes) {
      const status = await scenario.raftStatus(node)
      expect(status?.lastSnapshotIndex, `node ${node.index} caught up without any snapshot`).to.equal(0)
    }
  })

  describe('in network namespaces', () => {
    const lab = new NetnsLab(5, { net: 9, hostAccess: true })
    before(async () => { await lab.create() })
    after(async () => { await lab.destroy() })

    it('partitions a minority with the leader, heals (the minority catches up by snapshot), then partitions a majority, heals', async () => {
      // one API token for all five (off loopback each node needs one): client
      // sessions belong to the token, and the clients retry across nodes
      const token = randomBytes(32).toString('base64url')
      for (let i = 0; i < lab.hosts.length; i++) {
        await mkdir(join(root, `node-${i}`), { recursive: true, mode: 0o700 })
        await writeFile(join(root, `node-${i}`, API_TOKEN_FILE), token + '\n', { mode: 0o600 })
      }
      await scenario.startCluster(lab.hosts.map((host, i) => ({
        dataDir: join(root, `node-${i}`),
        wrap: host.wrap,
        apiUrl: `http://${host.address}:7070`,
        args: ['--listen', `/ip4/${host.address}/tcp/4001`, '--api', `${host.address}:7070`, '--raft-snapshot-entries', String(SNAPSHOT_ENTRIES)]
      })))
      scenario.startClients({ ...CLIENTS, seed: 3 })
      await sleep(2000)

      // the leader and one follower cut off: the other three elect a leader and go on
      const leader = await scenario.waitForLeader('a leader')
      const minority = [leader, (leader + 1) % 5]
      for (const i of minority) { await lab.setLink(lab.hosts[i], false) }
      scenario.note(`partitioned minority ${minority.join(',')}`)
      // the majority elects a leader and compacts past the minority's logs
      const majorityLeader = await scenario.waitForLeader('a leader of the majority', minority)
      const logBound = await scenario.lastIndexOfOthers(minority)
      await sleep(3000)
      await scenario.compactPast(logBound, minority, majorityLeader)
      for (const i of minority) { await lab.setLink(lab.hosts[i], true) }
      scenario.note('healed')
      await scenario.waitForLeader('a leader after healing the minority')
      for (const i of minority) { await scenario.waitForSnapshotPast(i, logBound) }
      await sleep(2000)

      // three cut off: no side has a quorum until it heals
      const majority = [0, 1, 2]
      for (const i of majority) { await lab.setLink(lab.hosts[i], false) }
      scenario.note(`partitioned majority ${majority.join(',')}`)
      await sleep(5000)
      for (const i of majority) { await lab.setLink(lab.hosts[i], true) }
      scenario.note('healed')
      await sleep(3000)
      await scenario.stopClients()
      await scenario.finalReads(CLIENTS.keys)
      expectLinearizable()
      await expectAllCaughtUpWithSnapshots()
    })
  })
})
