/**
 * PBFT end to end: 4 `accord start` processes, all replicas, the KV written
 * and read through the HTTP API (the serving node is the PBFT client).
 *
 * - kill -9 the primary: a view change completes and writes resume;
 * restarted, it catches up by state transfer (the others garbage-collected
 * their logs past a stable checkpoint while it was down);
 * - one replica started with --byzantine: it is detected, evidence is
 * produced, and every honest replica lists it as isolated;
 * - a fifth process started with --bft-learner is added to the set by the
 * CLI (accord bft approve on two replicas, accord bft reconfigure on a
 * third), orders writes, and a replica is then removed the same way.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { identityFor } from '../lib/identities.ts'
import { testPortBase } from '../lib/ports.ts'
import { DaemonProcess, joinTokenFrom, runCli } from '../lib/processes.ts'
import { waitFor } from '../lib/wait.ts'
import type { BftSummary } from '../../node/pbft/service.ts'

/** More than the core's checkpointInterval (64): the others' logs are collected past a stable checkpoint. */
const WRITES_WHILE_DOWN = 100

interface Replica {
  index: number
  dataDir: string
  apiUrl: string
  peerId: string
  daemon: DaemonProcess | null
}

async function request (node: Replica, method: string, path: string, body?: string): Promise<{ status: number, json: any }> {
  const response = await fetch(`${node.apiUrl}${path}`, {
    method,
    body,
    headers: method === 'PUT' ? { 'content-type': 'application/octet-stream' } : {},
    signal: AbortSignal.timeout(20_000)
  })
  return { status: response.status, json: await response.json().catch(() => ({})) }
}

async function bftStatus (node: Replica): Promise<BftSummary | null> {
  try {
    const { status, json } = await request(node, 'GET', '/v1/status')
    return status === 200 ? json.bft : null
  } catch {
    return null
  }
}

async function metric (node: Replica, line: RegExp): Promise<number> {
  const text = await (await fetch(`${node.apiUrl}/metrics`)).text()
  return text.split('\n').filter(l => line.test(l)).reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0)
}

describe('pbft end to end (4 OS processes)', function () {
  this.timeout(300_000)
  let root: string
  let replicas: Replica[]

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'accord-pbft-e2e-'))
    replicas = []
  })
  afterEach(async () => {
    await Promise.all(replicas.map(async r => { await r.daemon?.stop('SIGKILL') }))
    await rm(root, { recursive: true, force: true })
  })

  /**
   * Starts the 4 replicas (the replica set made from their identities
   * first), given by --bft-replicas or in a --bft-genesis file; `byzantine`
   * run with --byzantine; then `learners` more nodes with --bft-learner.
   */
  async function start (byzantine: number[] = [], from: 'flag' | 'genesis' = 'flag', learners = 0): Promise<void> {
    const base = testPortBase()
    replicas = []
    for (let index = 0; index < 4 + learners; index++) {
      const { dataDir, peerId } = await identityFor(join(root, `node-${index}`))
      replicas.push({ index, dataDir, apiUrl: `http://127.0.0.1:${base + index}`, peerId, daemon: null })
    }
    const genesis = join(root, 'genesis.json')
    const set4 = replicas.slice(0, 4).map(r => r.peerId)
    await writeFile(genesis, JSON.stringify({ replicas: set4 }))
    const set = from === 'flag' ? ['--bft-replicas', set4.join(',')] : ['--bft-genesis', genesis]
    const args = (r: Replica): string[] => [
      '--listen', `/ip4/127.0.0.1/tcp/${base + 100 + r.index}`, '--api', `127.0.0.1:${base + r.index}`,
      '--raft', 'off', ...set, ...(byzantine.includes(r.index) ? ['--byzantine'] : []), ...(r.index >= 4 ? ['--bft-learner'] : [])
    ]
    const first = replicas[0]
    first.daemon = new DaemonProcess(first.dataDir, args(first))
    const info = await first.daemon.ready()
    const token = await joinTokenFrom(first.dataDir)
    for (const r of replicas.slice(1)) {
      r.daemon = new DaemonProcess(r.dataDir, [...args(r), '--bootstrap', info.multiaddrs[0], '--join-token', token])
    }
    for (const r of replicas.slice(1)) { await r.daemon?.ready() }
    // writes start once every replica serves every other (admitted), so none times out relaying to a primary that does not serve it yet
    const ids = replicas.map(o => o.peerId)
    for (const r of replicas) {
      await waitFor(async () => {
        const { json } = await request(r, 'GET', '/v1/status').catch(() => ({ json: null }))
        const admitted: string[] = json?.admission?.admittedPeers ?? []
        return ids.every(id => id === r.peerId || admitted.includes(id))
      }, `replica ${r.index} to admit the others`, 60_000)
    }
  }

  async function put (via: Replica, key: string, value: string): Promise<void> {
    const { status, json } = await request(via, 'PUT', `/v1/bft/kv/${key}`, value)
    expect(status, JSON.stringify(json)).to.equal(200)
  }

  it('kill -9 the primary: a view change completes and writes resume; restarted, it catches up by state transfer', async () => {
    await start()
    const client = replicas[1]
    await waitFor(async () => (await request(client, 'PUT', '/v1/bft/kv/before', 'kill').catch(() => ({ status: 0 }))).status === 200, 'a first write to succeed', 90_000)
    // (a view change may have happened already while the nodes were connecting)
    const before = await bftStatus(client)
    if (before?.view == null) { throw new Error('no bft status') }
    const viewBefore = before.view
    const primary = replicas.find(r => r.peerId === before?.primary)
    if (primary === undefined) { throw new Error('the primary is not one of the replicas') }
    const others = replicas.filter(r => r !== primary)

    await primary.daemon?.stop('SIGKILL')
    primary.daemon = null
    // the write that finds the primary gone waits out the view change
    await waitFor(async () => (await request(others[0], 'PUT', '/v1/bft/kv/after', 'view-change').catch(() => ({ status: 0 }))).status === 200, 'a write after the primary was killed', 90_000)
    for (const r of others) {
      await waitFor(async () => ((await bftStatus(r))?.view ?? 0) > viewBefore, `replica ${r.index} to be in a later view`, 60_000)
    }
    expect((await request(others[1], 'GET', '/v1/bft/kv/after')).json).to.include({ value: 'view-change' })
    // the CLI, as a person uses it
    const cliPut = await runCli(['bft', 'put', 'cli', 'written', '--api', others[2].apiUrl])
    expect(cliPut.code, cliPut.stderr).to.equal(0)
    const cliGet = await runCli(['bft', 'get', 'cli', '--api', others[0].apiUrl])
    expect(cliGet.stdout).to.equal('written\n')
    const cliCas = await runCli(['bft', 'cas', 'cli', '--expected', 'other', 'new', '--api', others[0].apiUrl])
    expect(cliCas.code).to.equal(2)
    expect(cliCas.stderr).to.include('the current value differs')
    const cliStatus = await runCli(['status', '--api', others[0].apiUrl])
    expect(cliStatus.stdout).to.match(/^bft +replica, n 4, f 1, view \d+( \(changing\))?, primary 12D3KooW/m)

    for (let i = 0; i < WRITES_WHILE_DOWN; i++) { await put(others[i % others.length], `k${i}`, `v${i}`) }
    const executed = (await bftStatus(others[0]))?.executed ?? 0

    primary.daemon = new DaemonProcess(primary.dataDir, [])
    await primary.daemon.ready()
    await waitFor(async () => ((await bftStatus(primary))?.executed ?? 0) >= executed, 'the restarted replica to catch up', 90_000)
    expect(await metric(primary, /^accord_pbft_state_transfers_total /)).to.be.at.least(1)
    expect((await request(primary, 'GET', `/v1/bft/kv/k${WRITES_WHILE_DOWN - 1}`)).json).to.include({ value: `v${WRITES_WHILE_DOWN - 1}` })
  })

  it('reconfiguration with the CLI: a learner process is added by a quorum\'s approvals and orders writes; a replica is then removed', async () => {
    await start([], 'flag', 1)
    const [a, b, c, d, e] = replicas
    await waitFor(async () => (await request(a, 'PUT', '/v1/bft/kv/before', 'genesis').catch(() => ({ status: 0 }))).status === 200, 'a first write to succeed', 90_000)
    expect(await bftStatus(e)).to.include({ role: 'learner', epoch: 0, n: 4 })

    /** Approval tokens from each of `approvers`, then the reconfiguration through `via`: what the CLI prints. */
    const reconfigure = async (set: string[], approvers: Replica[], via: Replica): Promise<string> => {
      const tokens: string[] = []
      for (const approver of approvers) {
        const approved = await runCli(['bft', 'approve', set.join(','), '--api', approver.apiUrl])
        expect(approved.code, approved.stderr).to.equal(0)
        tokens.push(approved.stdout.trim())
      }
      const done = await runCli(['bft', 'reconfigure', set.join(','), ...tokens.flatMap(t => ['--approval', t]), '--api', via.apiUrl])
      expect(done.code, done.stderr).to.equal(0)
      return done.stdout
    }
    const five = replicas.map(r => r.peerId)
    expect(await reconfigure(five, [b, c], a)).to.match(/^epoch 1: 5 replicas, decided; the new set orders the seqs past \d+\n$/)
    for (const r of replicas) {
      await waitFor(async () => { const s = await bftStatus(r); return s?.epoch === 1 && s.n === 5 }, `node ${r.index} to have epoch 1 in force`, 60_000)
    }
    expect(await bftStatus(e)).to.include({ role: 'replica', f: 1 })
    await put(e, 'added', 'epoch 1')
    expect((await request(a, 'GET', '/v1/bft/kv/added')).json).to.include({ value: 'epoch 1' })

    // 4 approvals of 5 now: three tokens and the submitting replica's own
    const withoutD = five.filter(id => id !== d.peerId)
    expect(await reconfigure(withoutD, [a, b, c], e)).to.match(/^epoch 2: 4 replicas/)
    await waitFor(async () => (await bftStatus(d))?.role === 'learner', 'the removed replica to become a learner', 60_000)
    for (const r of [a, b, c, e]) {
      await waitFor(async () => { const s = await bftStatus(r); return s?.epoch === 2 && s.n === 4 }, `node ${r.index} to have epoch 2 in force`, 60_000)
    }
    // the removed node is still a client, of the new set
    await put(d, 'removed', 'epoch 2')
    expect((await request(e, 'GET', '/v1/bft/kv/removed')).json).to.include({ value: 'epoch 2' })
    const cliStatus = await runCli(['status', '--api', d.apiUrl])
    expect(cliStatus.stdout).to.match(/^bft +learner, n 4, f 1/m)
  })

  it('a replica started with --byzantine is detected: evidence, and every honest replica isolates it', async () => {
    await start([3], 'genesis')
    const faulty = replicas[3]
    const honest = replicas.slice(0, 3)
    await waitFor(async () => (await request(honest[0], 'PUT', '/v1/bft/kv/first', 'write').catch(() => ({ status: 0 }))).status === 200, 'a first write to succeed', 90_000)
    for (let i = 0; i < 10; i++) { await put(honest[i % 3], `k${i}`, `v${i}`) }
    for (const r of honest) {
      await waitFor(async () => (await bftStatus(r))?.isolated.some(e => e.peerId === faulty.peerId) === true, `replica ${r.index} to isolate the faulty one`, 60_000)
      expect((await bftStatus(r))?.isolated).to.deep.include({ peerId: faulty.peerId, reason: 'equivocation' })
    }
    let produced = 0
    for (const r of honest) { produced += await metric(r, /^accord_pbft_evidence_total\{direction="produced"\}/) }
    expect(produced).to.be.at.least(1)
    expect(faulty.daemon?.logSoFar).to.include('DELIBERATELY')
    // the honest three still serve
    await put(honest[1], 'after', 'isolation')

    // an operator takes it off one replica's blocklist, and puts it back
    const readmit = await runCli(['bft', 'readmit', faulty.peerId, '--api', honest[0].apiUrl])
    expect(readmit.stdout).to.include(`${faulty.peerId}: readmitted`)
    expect((await bftStatus(honest[0]))?.isolated.some(e => e.peerId === faulty.peerId)).to.equal(false)
    const isolate = await runCli(['bft', 'isolate', faulty.peerId, '--api', honest[0].apiUrl])
    expect(isolate.stdout).to.include(`${faulty.peerId}: isolated`)
    await waitFor(async () => (await bftStatus(honest[0]))?.isolated.some(e => e.peerId === faulty.peerId) === true, 'the operator\'s isolation', 30_000)
  })
  it('refuses a bad replica set, or --byzantine or --bft-learner without one, in one line', async () => {
    const dataDir = join(root, 'bad')
    const genesis = join(root, 'empty.json')
    await writeFile(genesis, JSON.stringify({ replicas: [] }))
    const empty = await runCli(['start', '--data-dir', dataDir, '--bft-genesis', genesis, '--api', 'off'])
    expect(empty.code).to.equal(2)
    expect(empty.stderr).to.include('must hold {"replicas"')
    const notAPeer = await runCli(['start', '--data-dir', dataDir, '--bft-replicas', 'nobody', '--api', 'off'])
    expect(notAPeer.code).to.equal(2)
    expect(notAPeer.stderr).to.include('not a peer id')
    const alone = await runCli(['start', '--data-dir', dataDir, '--byzantine', '--api', 'off'])
    expect(alone.code).to.equal(2)
    expect(alone.stderr).to.include('--byzantine needs a PBFT replica set')
    const learner = await runCli(['start', '--data-dir', dataDir, '--bft-learner', '--api', 'off'])
    expect(learner.code).to.equal(2)
    expect(learner.stderr).to.include('--bft-learner needs the PBFT replica set')
  })
})
