/**
 * Helpers for tests that start real accord nodes (libp2p over TCP on
 * loopback) in the test process.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { createAccordNode } from '../../node/index.ts'
import { waitFor } from './wait.ts'
import type { AccordConfig, AccordNode, CreateAccordNodeOptions } from '../../node/index.ts'

export { waitFor }

export const silentLogger = pino({ level: 'silent' })

export class TestCluster {
  readonly nodes: AccordNode[] = []
  readonly #dirs: string[] = []

  /**
   * Start a node in a new data dir. A node given bootstrap peers joins with
   * a token made by the first of them that is a node of this TestCluster
   * (unless options.joinToken says otherwise).
   */
  async add (config: Partial<AccordConfig> = {}, options: Omit<CreateAccordNodeOptions, 'logger'> = {}): Promise<AccordNode> {
    const dataDir = await mkdtemp(join(tmpdir(), 'accord-test-'))
    this.#dirs.push(dataDir)
    const joinToken = options.joinToken ?? await this.#tokenFor(config.bootstrap ?? [])
    const node = await createAccordNode({
      dataDir,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      api: null,
      discoveryIntervalMs: 1000,
      ...config
    }, { ...options, logger: silentLogger, joinToken })
    this.nodes.push(node)
    return node
  }

  /**
   * Start a stopped node again from its data dir, with the settings it
   * saved there (listen and API addresses, bootstrap peers, Raft settings),
   * as `accord start --data-dir` does after a restart.
   */
  async restart (node: AccordNode, config: Partial<AccordConfig> = {}, options: Omit<CreateAccordNodeOptions, 'logger' | 'joinToken'> = {}): Promise<AccordNode> {
    await node.stop()
    const restarted = await createAccordNode({ ...config, dataDir: node.config.dataDir }, { ...options, logger: silentLogger })
    this.nodes.push(restarted)
    return restarted
  }

  async #tokenFor (bootstrap: string[]): Promise<string | undefined> {
    const sponsor = this.nodes.find(n => bootstrap.some(addr => addr.endsWith(`/p2p/${n.libp2p.peerId.toString()}`)) && n.admission.credentials != null)
    return sponsor == null ? undefined : (await sponsor.admission.createJoinToken()).token
  }

  async newDataDir (): Promise<string> {
    const dataDir = await mkdtemp(join(tmpdir(), 'accord-test-'))
    this.#dirs.push(dataDir)
    return dataDir
  }

  async stop (): Promise<void> {
    await Promise.all(this.nodes.map(async n => { await n.stop() }))
    await Promise.all(this.#dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
  }
}

export function addressOf (node: AccordNode): string {
  return node.libp2p.getMultiaddrs()[0].toString()
}

/**
 * A Raft group over real libp2p: the first node founds it, the others join
 * as learners through it and are promoted; resolves once all are voters.
 */
export async function formRaftGroup (cluster: TestCluster, size = 3, settings: Partial<AccordConfig> = {}): Promise<AccordNode[]> {
  const config = { api: '127.0.0.1:0', raftTickMs: 50, ...settings }
  const first = await cluster.add(config)
  const nodes = [first]
  for (let i = 1; i < size; i++) { nodes.push(await cluster.add({ ...config, bootstrap: [addressOf(first)] })) }
  await waitFor(() => nodes.every(n => n.raft?.summary().voters.length === size), `all ${size} nodes to become voters`)
  return nodes
}

export function leaderOf (nodes: AccordNode[]): AccordNode {
  const leader = nodes.find(n => n.raft?.summary().role === 'leader')
  if (leader == null) { throw new Error('no leader') }
  return leader
}

export function connectedMembers (node: AccordNode): string[] {
  return node.members().filter(m => m.connected).map(m => m.peerId).sort()
}
