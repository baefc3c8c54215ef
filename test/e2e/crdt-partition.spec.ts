/**
 * CRDTs across a network partition: 5 `accord start` processes in 5
 * network namespaces (stand-ins for 5 machines on one switch), Raft off.
 * A pn-counter and an or-set are created and spread to all; the network is
 * split 3/2 by blackhole routes (NetnsLab.partition); both sides change
 * both CRDTs concurrently (increments and decrements; adds and removes,
 * among them an element removed on one side while added again on the
 * other); each side converges on its own; healed, all 5 converge to the
 * same values: the counter to the sum of every op, the set by add-wins.
 *
 * Needs root and iproute2 (test/lib/netns.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { CRDT_DEADLINE_MS, createCrdt, crdtOp, crdtRequest, waitForConnected, waitForCrdtValues } from '../lib/crdt-cluster.ts'
import { NetnsLab } from '../lib/netns.ts'
import { waitFor } from '../lib/nodes.ts'
import { RaftScenario } from '../lib/scenario.ts'
import type { ScenarioNode } from '../lib/scenario.ts'

const NODES = 5
const SIDE_A = [0, 1, 2]
const SIDE_B = [3, 4]
const COUNTER = 'hits'
const SET = 'tags'

describe(`CRDTs across a partition (${NODES} processes in ${NODES} network namespaces)`, function () {
  this.timeout(180_000)
  const lab = new NetnsLab(NODES, { net: 13, hostAccess: true })
  const scenario = new RaftScenario()
  let root: string
  /** The counter's value once every op below is joined: the sum of them all. */
  let expectedTotal = 0

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-crdt-netns-'))
    await lab.create()
    await scenario.startCluster(lab.hosts.map((host, i) => ({
      dataDir: join(root, `node-${i}`),
      wrap: host.wrap,
      apiUrl: `http://${host.address}:7070`,
      args: ['--listen', `/ip4/${host.address}/tcp/4001`, '--api', `${host.address}:7070`, '--raft', 'off', '--crdt-sync-interval-ms', '300']
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

  const nodes = (indices: number[]): ScenarioNode[] => indices.map(i => scenario.nodes[i])
  const op = async (i: number, name: string, body: Record<string, unknown>): Promise<void> => { await crdtOp(scenario.nodes[i], name, body) }
  async function counterOp (i: number, by: number): Promise<void> {
    await op(i, COUNTER, { op: by >= 0 ? 'increment' : 'decrement', by: Math.abs(by) })
    expectedTotal += by
  }

  it(`the CRDTs created on node 0 reach all ${NODES} nodes and converge`, async () => {
    // every node connected to every other: each side keeps a full mesh of its own once split
    await waitForConnected(scenario.nodes, NODES - 1, 'every node to be connected to every other')
    await createCrdt(scenario.nodes[0], COUNTER, 'pn-counter')
    await createCrdt(scenario.nodes[0], SET, 'or-set')
    await waitFor(async () => {
      const answers = await Promise.all(scenario.nodes.map(async node => crdtRequest(node, 'GET', `/v1/crdt/${SET}`).catch(() => null)))
      return answers.every(a => a?.status === 200)
    }, 'every node to hold both CRDTs', CRDT_DEADLINE_MS)
    await counterOp(0, 10)
    await counterOp(3, -4)
    for (const [i, x] of [[0, 'x'], [1, 'y'], [4, 'z']] as const) { await op(i, SET, { op: 'add', value: x }) }
    await waitForCrdtValues(scenario.nodes, { [COUNTER]: 6, [SET]: ['x', 'y', 'z'] }, 'all nodes to converge before the split')
  })

  it(`split ${SIDE_A.length}/${SIDE_B.length}: concurrent ops on both sides, each side converges on its own`, async () => {
    await lab.partition([SIDE_A.map(i => lab.hosts[i]), SIDE_B.map(i => lab.hosts[i])])
    scenario.note(`partitioned ${SIDE_A.join(',')} | ${SIDE_B.join(',')}`)
    const before = expectedTotal
    // side A: +3 +3 +3 -2 -1 +7 (+13)
    for (const [i, by] of [[0, 3], [1, 3], [2, 3], [0, -2], [1, -1], [2, 7]] as const) { await counterOp(i, by) }
    // side B: -5 +11 -1 +2 (+7)
    for (const [i, by] of [[3, -5], [4, 11], [3, -1], [4, 2]] as const) { await counterOp(i, by) }
    // x: removed on A while added again on B (add wins); z: added again on A while removed on B (add wins);
    // y: removed on B only; a1, a2 added on A; b1 added, b2 added then removed (by the same node) on B
    await op(0, SET, { op: 'remove', value: 'x' })
    await op(3, SET, { op: 'add', value: 'x' })
    await op(1, SET, { op: 'add', value: 'z' })
    await op(4, SET, { op: 'remove', value: 'z' })
    await op(3, SET, { op: 'remove', value: 'y' })
    await op(2, SET, { op: 'add', value: 'a1' })
    await op(0, SET, { op: 'add', value: 'a2' })
    await op(4, SET, { op: 'add', value: 'b1' })
    await op(3, SET, { op: 'add', value: 'b2' })
    await op(3, SET, { op: 'remove', value: 'b2' })
    await waitForCrdtValues(nodes(SIDE_A), { [COUNTER]: before + 13, [SET]: ['y', 'z', 'a1', 'a2'] }, 'side A to converge on its own ops')
    await waitForCrdtValues(nodes(SIDE_B), { [COUNTER]: before + 7, [SET]: ['x', 'b1'] }, 'side B to converge on its own ops')
  })

  it(`healed: all ${NODES} converge to the same values, the counter to the sum of every op`, async () => {
    await lab.heal()
    scenario.note('healed')
    expect(expectedTotal).to.equal(6 + 13 + 7)
    await waitForCrdtValues(scenario.nodes, { [COUNTER]: expectedTotal, [SET]: ['x', 'z', 'a1', 'a2', 'b1'] }, 'all nodes to converge after the heal')
    // and every node holds the same ops of every replica
    for (const name of [COUNTER, SET]) {
      const vectors = await Promise.all(scenario.nodes.map(async node => (await crdtRequest(node, 'GET', `/v1/crdt/${name}`)).json.versionVector))
      for (const vector of vectors.slice(1)) { expect(vector).to.deep.equal(vectors[0]) }
    }
  })
})
