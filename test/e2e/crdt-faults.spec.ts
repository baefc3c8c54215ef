/**
 * CRDTs under process faults: 3 `accord start` processes on loopback, Raft
 * off, a short anti-entropy interval.
 *
 * - A node frozen with SIGSTOP while the others change a pn-counter and an
 * or-set takes none of it meanwhile; after SIGCONT it converges to the
 * others' values.
 * - rga tombstones are collected only once every member holds their delete:
 * with a member frozen, sync rounds go by and nothing is collected; after
 * SIGCONT every node collects them.
 * - A node killed with SIGKILL and restarted from its data dir
 * (`accord start --data-dir DIR` alone) reloads its saved state: started
 * while the others are frozen (so nothing reaches it by sync), it answers
 * the values it held when killed; once the others run again it catches up
 * with the ops made while it was down.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { expect } from 'aegir/chai'
import { CRDT_SETTINGS_DEFAULTS } from '../../node/crdt/service.ts'
import { createCrdt, crdtOp, crdtValues, waitForConnected, waitForCrdtValues } from '../lib/crdt-cluster.ts'
import { testPortBase } from '../lib/ports.ts'
import { RaftScenario } from '../lib/scenario.ts'
import { waitFor } from '../lib/wait.ts'
import type { ScenarioNode } from '../lib/scenario.ts'

const NODES = 3
const COUNTER = 'hits'
const SET = 'tags'

describe(`CRDTs under process faults (${NODES} OS processes)`, function () {
  this.timeout(180_000)
  let root: string
  let scenario: RaftScenario
  /** The counter's value once every op is joined. */
  let total: number
  /** The set's elements once every op is joined. */
  let elements: Set<string>

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-crdt-faults-'))
    scenario = new RaftScenario()
    total = 0
    elements = new Set()
    const base = testPortBase()
    await scenario.startCluster(Array.from({ length: NODES }, (_, i) => ({
      dataDir: join(root, `node-${i}`),
      apiUrl: `http://127.0.0.1:${base + i}`,
      args: ['--listen', `/ip4/127.0.0.1/tcp/${base + 100 + i}`, '--api', `127.0.0.1:${base + i}`, '--raft', 'off', '--crdt-sync-interval-ms', '300']
    })), { waitForVoters: false })
    await waitForConnected(scenario.nodes, NODES - 1, 'every node to be connected to every other')
    await createCrdt(scenario.nodes[0], COUNTER, 'pn-counter')
    await createCrdt(scenario.nodes[0], SET, 'or-set')
    // every node makes a few ops; all converge
    for (const node of scenario.nodes) { await ops(node.index, `before-${node.index}`, 3) }
    await waitForCrdtValues(scenario.nodes, expected(), 'all nodes to converge at the start')
  })

  afterEach(async function () {
    await scenario.stopAll()
    if (this.currentTest?.state === 'failed') { console.log(scenario.log.join('\n')) } // eslint-disable-line no-console
    await rm(root, { recursive: true, force: true })
  })

  /** `count` increments of i + 1 and one decrement of 1 on node `i`, and `count` adds of `<prefix>-<n>` with one of them removed again. */
  async function ops (i: number, prefix: string, count: number): Promise<void> {
    const node = scenario.nodes[i]
    for (let n = 0; n < count; n++) {
      await crdtOp(node, COUNTER, { op: 'increment', by: i + 1 })
      total += i + 1
      await crdtOp(node, SET, { op: 'add', value: `${prefix}-${n}` })
      elements.add(`${prefix}-${n}`)
    }
    await crdtOp(node, COUNTER, { op: 'decrement', by: 1 })
    total -= 1
    await crdtOp(node, SET, { op: 'remove', value: `${prefix}-0` })
    elements.delete(`${prefix}-0`)
  }

  const expected = (): Record<string, unknown> => ({ [COUNTER]: total, [SET]: [...elements] })

  /** A sample from the node's /metrics, by its full name with labels (-1 when absent). */
  async function metric (node: ScenarioNode, sample: string): Promise<number> {
    const text = await (await fetch(`${node.apiUrl}/metrics`)).text()
    const line = text.split('\n').find(l => l.startsWith(`${sample} `))
    return line === undefined ? -1 : Number(line.slice(sample.length + 1))
  }

  it('a node frozen by SIGSTOP while the others make ops converges with them after SIGCONT', async () => {
    scenario.pause(2)
    await ops(0, 'frozen-a', 5)
    await ops(1, 'frozen-b', 5)
    await waitForCrdtValues(scenario.nodes.slice(0, 2), expected(), 'the running nodes to converge while node 2 is frozen')
    scenario.resume(2)
    await waitForCrdtValues(scenario.nodes, expected(), 'the resumed node to converge with the others')
  })

  it('a frozen member holds back the collection of rga tombstones until it has reported holding their delete', async () => {
    const [first, second] = scenario.nodes
    await createCrdt(first, 'text', 'rga')
    await crdtOp(first, 'text', { op: 'insert', index: 0, text: 'hello brave world' })
    await waitForCrdtValues(scenario.nodes, { ...expected(), text: 'hello brave world' }, 'every node to hold the text')
    scenario.pause(2)
    await crdtOp(second, 'text', { op: 'delete', index: 6, length: 6 })
    await waitForCrdtValues(scenario.nodes.slice(0, 2), { ...expected(), text: 'hello world' }, 'the running nodes to see the delete')
    // ten sync rounds between the running nodes: their reports cover the delete, the frozen node's do not
    const rounds = await metric(first, 'accord_crdt_sync_rounds_total{role="client",result="ok"}')
    await waitFor(async () => await metric(first, 'accord_crdt_sync_rounds_total{role="client",result="ok"}') >= rounds + 10, 'ten sync rounds', 60_000)
    expect(await metric(first, 'accord_crdt_unstable_tombstone_units{name="text"}')).to.equal(6)
    scenario.resume(2)
    await waitForCrdtValues(scenario.nodes, { ...expected(), text: 'hello world' }, 'the resumed node to converge')
    await waitFor(async () => {
      const held = await Promise.all(scenario.nodes.map(async n => metric(n, 'accord_crdt_unstable_tombstone_units{name="text"}')))
      return held.every(units => units === 0)
    }, 'every node to collect the tombstones', 60_000)
  })

  it('a node killed by SIGKILL reloads its saved state at restart and catches up with the ops made while it was down', async () => {
    // node 2's last ops, saved within the persist debounce (documented: a crash loses at most that much)
    await ops(2, 'last-of-2', 2)
    await waitForCrdtValues(scenario.nodes, expected(), 'all nodes to converge before the kill')
    await sleep(CRDT_SETTINGS_DEFAULTS.persistDebounceMs * 3)
    const atKill = expected()
    await scenario.kill(2)
    const registry = JSON.parse(await readFile(join(scenario.nodes[2].dataDir, 'crdt', 'registry.json'), 'utf8'))
    expect(registry.crdts.map((c: { name: string }) => c.name).sort()).to.deep.equal([COUNTER, SET].sort())

    await ops(0, 'down-a', 4)
    await ops(1, 'down-b', 4)
    await waitForCrdtValues(scenario.nodes.slice(0, 2), expected(), 'the running nodes to converge while node 2 is down')

    // with the others frozen, node 2 can learn nothing by sync: what it answers comes from its files
    scenario.pause(0)
    scenario.pause(1)
    await scenario.restart(2)
    const reloaded = await crdtValues([scenario.nodes[2]], COUNTER)
    const reloadedSet = await crdtValues([scenario.nodes[2]], SET)
    expect({ [COUNTER]: reloaded[0], [SET]: reloadedSet[0] }).to.deep.equal({ [COUNTER]: atKill[COUNTER], [SET]: [...(atKill[SET] as string[])].map(x => JSON.stringify(x)).sort() })
    scenario.resume(0)
    scenario.resume(1)
    await waitForCrdtValues(scenario.nodes, expected(), 'the restarted node to catch up with the ops made while it was down')
    // and it takes part again: an op on it reaches the others
    await ops(2, 'after-restart', 2)
    await waitForCrdtValues(scenario.nodes, expected(), 'all nodes to converge on the restarted node\'s new ops')
  })
})
