/**
 * Membership (SWIM with Lifeguard) end to end: `accord start` processes on
 * loopback. Every node lists every member alive, itself included, with the
 * version and API address it announced; a node killed with SIGKILL is
 * declared dead by every other, and alive again once restarted; a node
 * paused for less than the suspicion timeout refutes and is never declared
 * dead; `accord members` prints the table.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { testPortBase } from '../lib/ports.ts'
import { runCli } from '../lib/processes.ts'
import { RaftScenario } from '../lib/scenario.ts'
import { waitFor } from '../lib/wait.ts'
import type { MemberView } from '../../node/membership/routes.ts'
import type { ScenarioNode } from '../lib/scenario.ts'

/** Bounds a hung wait only (below the test timeout, so a failure names what it waited for). */
const DEADLINE_MS = 60_000
const NODES = 4

describe('membership (4 OS processes)', function () {
  this.timeout(240_000)
  let root: string
  let scenario: RaftScenario

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-membership-'))
    scenario = new RaftScenario()
    const base = testPortBase()
    await scenario.startCluster(Array.from({ length: NODES }, (_, i) => ({
      dataDir: join(root, `node-${i}`),
      apiUrl: `http://127.0.0.1:${base + i}`,
      args: ['--listen', `/ip4/127.0.0.1/tcp/${base + 100 + i}`, '--api', `127.0.0.1:${base + i}`, '--cluster', 'demo']
    })))
  })

  after(async () => {
    await scenario?.stopAll()
    await rm(root, { recursive: true, force: true })
  })

  const membersOf = async (node: ScenarioNode): Promise<MemberView[]> => (await scenario.request(node, 'GET', '/v1/members')).json.members
  const stateOn = async (node: ScenarioNode, peerId: string): Promise<string | undefined> => (await membersOf(node)).find(m => m.peerId === peerId)?.state

  it('every node lists all members alive, itself included, with the version and API address each announced', async () => {
    const ids = scenario.nodes.map(n => n.peerId)
    for (const node of scenario.nodes) {
      await waitFor(async () => {
        const members = await membersOf(node)
        return ids.every(id => members.some(m => m.peerId === id && m.state === 'alive' && typeof m.meta.api === 'string'))
      }, `node ${node.index} to list all ${NODES} members alive with their API address`, DEADLINE_MS)
    }
    const members = await membersOf(scenario.nodes[0])
    expect(members.map(m => m.peerId).sort()).to.deep.equal([...ids].sort())
    for (const node of scenario.nodes) {
      const entry = members.find(m => m.peerId === node.peerId)
      expect(entry?.meta.api).to.equal(node.apiUrl)
      expect(entry?.meta.version).to.be.a('string')
    }
    const table = await runCli(['members', '--api', scenario.nodes[1].apiUrl])
    expect(table.code, table.stderr).to.equal(0)
    expect(table.stdout.split('\n')[0]).to.match(/^peer id\s+state\s+incarnation\s+version\s+api$/)
    for (const id of ids) { expect(table.stdout).to.match(new RegExp(`${id}\\s+alive`)) }
  })

  it('a node paused for less than the suspicion timeout is never declared dead, and is alive again after', async () => {
    const paused = scenario.nodes[3]
    const watchers = scenario.nodes.slice(0, 3)
    const seenDead: string[] = []
    scenario.pause(3)
    const until = Date.now() + 2_000
    while (Date.now() < until) {
      for (const node of watchers) {
        if (await stateOn(node, paused.peerId) === 'dead') { seenDead.push(`node ${node.index}`) }
      }
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    scenario.resume(3)
    for (const node of watchers) {
      await waitFor(async () => await stateOn(node, paused.peerId) === 'alive', `node ${node.index} to see node 3 alive again`, DEADLINE_MS)
    }
    expect(seenDead).to.deep.equal([])
  })

  it('a node killed with SIGKILL is declared dead by every other', async () => {
    const killed = scenario.nodes[2]
    await scenario.kill(2)
    for (const node of scenario.nodes.filter(n => n.index !== 2)) {
      await waitFor(async () => await stateOn(node, killed.peerId) === 'dead', `node ${node.index} to declare node 2 dead`, DEADLINE_MS)
    }
  })

  it('the killed node, restarted from its data dir, is alive again on every node', async () => {
    await scenario.restart(2)
    const restarted = scenario.nodes[2].peerId
    for (const node of scenario.nodes) {
      await waitFor(async () => await stateOn(node, restarted) === 'alive', `node ${node.index} to see node 2 alive again`, DEADLINE_MS)
    }
  })
})
