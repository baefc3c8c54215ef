/**
 * Membership (SWIM with Lifeguard) across a network partition: 10
 * `accord start` processes in 10 network namespaces, stand-ins for 10
 * machines on one switch, Raft off (membership alone). Split 6/4 by
 * blackhole routes (NetnsLab.partition): each side declares every member
 * of the other dead and keeps its own alive. Healed: the dead-but-live
 * members hear of their deaths from the reconnect probes, refute, and
 * every member is alive everywhere again.
 *
 * Needs root and iproute2 (test/lib/netns.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { NetnsLab } from '../lib/netns.ts'
import { MembershipWatch, RaftScenario } from '../lib/scenario.ts'

const NODES = 10
const SIDE_A = [0, 1, 2, 3, 4, 5]
const SIDE_B = [6, 7, 8, 9]
/** Bounds a hung wait only (below the test timeout, so a failure names what it waited for). */
const DEADLINE_MS = 60_000

describe(`membership across a partition (${NODES} processes in ${NODES} network namespaces)`, function () {
  this.timeout(180_000)
  const lab = new NetnsLab(NODES, { net: 11, hostAccess: true })
  const scenario = new RaftScenario()
  const watch = new MembershipWatch(scenario)
  let root: string

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-membership-netns-'))
    await lab.create()
    await scenario.startCluster(lab.hosts.map((host, i) => ({
      dataDir: join(root, `node-${i}`),
      wrap: host.wrap,
      apiUrl: `http://${host.address}:7070`,
      args: ['--listen', `/ip4/${host.address}/tcp/4001`, '--api', `${host.address}:7070`, '--raft', 'off']
    })), { waitForVoters: false })
  })

  afterEach(function () {
    if (this.currentTest?.state === 'failed') { console.log(scenario.log.join('\n')) } // eslint-disable-line no-console
  })

  after(async () => {
    await scenario.stopAll()
    await lab.destroy()
    await rm(root, { recursive: true, force: true })
  })

  it(`every node holds all ${NODES} members alive`, async () => {
    await watch.waitForAllAlive(DEADLINE_MS)
    for (const node of scenario.nodes) {
      expect((await watch.members(node)).map(m => m.peerId).sort()).to.deep.equal(scenario.nodes.map(n => n.peerId).sort())
    }
  })

  it(`split ${SIDE_A.length}/${SIDE_B.length}: each side holds every member of the other dead and its own alive`, async () => {
    await lab.partition([SIDE_A.map(i => lab.hosts[i]), SIDE_B.map(i => lab.hosts[i])])
    scenario.note(`partitioned ${SIDE_A.join(',')} | ${SIDE_B.join(',')}`)
    const sameSide = (a: number, b: number): boolean => SIDE_A.includes(a) === SIDE_A.includes(b)
    await watch.waitForStates((observer, subject) => sameSide(observer, subject) ? 'alive' : 'dead',
      'each side to hold the other dead and itself alive', DEADLINE_MS)
  })

  it('healed: every member is alive everywhere again', async () => {
    await lab.heal()
    scenario.note('healed')
    await watch.waitForAllAlive(DEADLINE_MS)
  })
})
