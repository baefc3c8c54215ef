import { expect } from 'aegir/chai'
import { pino } from 'pino'
import { PbftClientDriver } from '../../node/pbft/client-driver.ts'
import { PBFT_CONFIGURATION_KEY, PbftReplicaDriver } from '../../node/pbft/driver.ts'
import { decodeResult, encodeOperation, encodeResult } from '../../node/pbft/operations.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { approve, encodeReconfiguration, signingPayload, signRequest } from '../../protocols/pbft/index.ts'
import { SimKeyring } from '../sim/pbft/crypto.ts'
import { runUntilAsync, simRuntime } from '../sim/runtime.ts'
import { Scheduler } from '../sim/scheduler.ts'
import type { PbftDriverLimits, PbftStore } from '../../node/pbft/driver.ts'
import type { PbftOperation, PbftResult } from '../../node/pbft/operations.ts'
import type { DriverRuntime } from '../../node/runtime.ts'
import type { Isolation, NodeId, PbftMessage, PersistRecord, PrePrepare, Prepare, Reply, StableCheckpoint } from '../../protocols/pbft/index.ts'

const REPLICAS = ['r0', 'r1', 'r2', 'r3']
const LIMITS = { checkpointInterval: 2, watermarkWindow: 8 }
const text = new TextEncoder()

/** A store in memory; `gate` holds appends until released (to see what leaves before they are durable). */
class MemoryStore implements PbftStore {
  records: PersistRecord[] = []
  snapshot: { checkpoint: StableCheckpoint, data: Uint8Array } | null = null
  isolated: Isolation[] = []
  held: Array<() => void> | null = null
  /** What was made durable, in order: 'snapshot N', or 'stable N' for an append holding that record. */
  readonly journal: string[] = []

  async load (): ReturnType<PbftStore['load']> {
    return { records: [...this.records], snapshot: this.snapshot, isolated: [...this.isolated] }
  }

  async append (records: PersistRecord[]): Promise<void> {
    if (this.held !== null) { await new Promise<void>(resolve => { this.held?.push(resolve) }) }
    this.records.push(...records)
    for (const record of records) { if (record.kind === 'stable') { this.journal.push(`stable ${record.checkpoint.seq}`) } }
  }

  async saveSnapshot (checkpoint: StableCheckpoint, data: Uint8Array): Promise<void> {
    this.snapshot = { checkpoint, data }
    this.journal.push(`snapshot ${checkpoint.seq}`)
  }

  async saveIsolated (isolated: Isolation[]): Promise<void> {
    this.isolated = [...isolated]
  }

  release (): void {
    const held = this.held ?? []
    this.held = null
    for (const resolve of held) { resolve() }
  }
}

interface Sent { from: NodeId, to: NodeId, message: PbftMessage }

/** Four replicas on one virtual clock, messages delivered after 1 ms unless `drop` says otherwise. */
class Harness {
  readonly scheduler = new Scheduler()
  readonly runtime: DriverRuntime = simRuntime(this.scheduler, createRng(1))
  readonly keyring = new SimKeyring(1)
  readonly stores = new Map<NodeId, MemoryStore>(REPLICAS.map(id => [id, new MemoryStore()]))
  readonly drivers = new Map<NodeId, PbftReplicaDriver>()
  readonly clients = new Map<NodeId, PbftClientDriver>()
  readonly sent: Sent[] = []
  /** State fetches answer with these bytes instead of the holder's (a lying holder). */
  readonly lies = new Map<NodeId, Uint8Array>()
  drop: (sent: Sent) => boolean = () => false
  readonly warnings: string[] = []

  async start (id: NodeId, options: { faulty?: 'equivocate', driverLimits?: Partial<PbftDriverLimits> } = {}): Promise<PbftReplicaDriver> {
    const log = pino({ level: 'warn' }, { write: (line: string) => { this.warnings.push(line) } })
    const driver = await PbftReplicaDriver.create({
      id,
      replicas: REPLICAS,
      crypto: this.keyring.cryptoFor(id),
      store: this.stores.get(id) as MemoryStore,
      transport: {
        send: (to, message) => { this.send({ from: id, to, message }) },
        fetchState: async (from, seq) => this.lies.get(from) ?? this.drivers.get(from)?.serveState(seq) ?? null
      },
      runtime: this.runtime,
      tickIntervalMs: 10,
      limits: LIMITS,
      log,
      ...options
    })
    this.drivers.set(id, driver)
    driver.start()
    return driver
  }

  async startAll (driverLimits: Partial<PbftDriverLimits> = {}): Promise<void> {
    for (const id of REPLICAS) { await this.start(id, { driverLimits }) }
  }

  client (id: NodeId): PbftClientDriver {
    const client = new PbftClientDriver({
      id,
      replicas: REPLICAS,
      crypto: this.keyring.cryptoFor(id),
      send: (to, message) => { this.send({ from: id, to, message }) },
      runtime: this.runtime,
      tickIntervalMs: 10,
      retransmitMs: 100
    })
    this.clients.set(id, client)
    client.start()
    return client
  }

  async run (ms: number, until: () => boolean = () => false): Promise<void> {
    await runUntilAsync(this.scheduler, this.scheduler.now + ms, until)
  }

  /** Submits and runs the clock until the result is in. */
  async submit (client: PbftClientDriver, operation: PbftOperation, readOnly = false): Promise<PbftResult> {
    let result: Uint8Array | null = null
    void client.submit(encodeOperation(operation), { readOnly }).then(bytes => { result = bytes })
    await this.run(5000, () => result !== null)
    if (result === null) { throw new Error(`no result for ${JSON.stringify(operation)}`) }
    const decoded = decodeResult(result)
    if (!decoded.ok) { throw new Error(decoded.error) }
    return decoded.result
  }

  private send (sent: Sent): void {
    this.sent.push(sent)
    if (this.drop(sent)) { return }
    this.scheduler.after(1, () => {
      const { from, to, message } = sent
      if (message.type === 'reply') {
        this.clients.get(to)?.receive(message, from)
      } else {
        this.drivers.get(to)?.receive(message, from)
      }
    })
  }
}

const put = (key: string, value: string): PbftOperation => ({ type: 'kv', command: { type: 'put', key, value: text.encode(value) } })
const get = (key: string): PbftOperation => ({ type: 'get', key })
const valueOf = (result: PbftResult): string | null => {
  if (result.type !== 'value') { throw new Error(`not a value: ${JSON.stringify(result)}`) }
  return result.value === null ? null : new TextDecoder().decode(result.value)
}

describe('pbft driver', function () {
  this.timeout(20_000)

  it('executes ordered KV operations and ordered and read-only gets on every replica', async () => {
    const h = new Harness()
    await h.startAll()
    const client = h.client('c1')
    expect(await h.submit(client, put('k', 'v1'))).to.deep.equal({ type: 'kv', result: { ok: true, index: 1, type: 'put' } })
    expect(valueOf(await h.submit(client, get('k')))).to.equal('v1')
    expect(valueOf(await h.submit(client, get('k'), true))).to.equal('v1')
    expect(await h.submit(client, { type: 'null' })).to.deep.equal({ type: 'null' })
    await h.run(200)
    // the ordered get and the null operation took KV indexes too, alike everywhere
    for (const driver of h.drivers.values()) {
      expect(driver.kv.appliedIndex).to.equal(3)
      expect(new TextDecoder().decode(driver.kv.get('k') ?? new Uint8Array())).to.equal('v1')
    }
  })

  it('sends nothing of a Ready before its records are durable', async () => {
    const h = new Harness()
    await h.startAll()
    const primary = h.stores.get('r0') as MemoryStore
    primary.held = []
    const client = h.client('c1')
    void client.submit(encodeOperation(put('k', 'v')))
    await h.run(50)
    const prePrepares = (): Sent[] => h.sent.filter(s => s.message.type === 'pre-prepare')
    expect(primary.held).to.have.length.greaterThan(0)
    expect(prePrepares()).to.have.length(0)
    primary.release()
    await h.run(50)
    expect(prePrepares().map(s => s.to).sort()).to.deep.equal(['r1', 'r2', 'r3'])
    const signed = primary.records.filter(r => r.kind === 'signed' && r.message.type === 'pre-prepare')
    expect(signed).to.have.length.greaterThan(0)
  })

  it('answers read-only requests for gets only, and only when the client signed them', async () => {
    const h = new Harness()
    await h.startAll()
    const driver = h.drivers.get('r1') as PbftReplicaDriver
    const crypto = h.keyring.cryptoFor('c9')
    const readOnlyPut = signRequest({ client: 'c9', timestamp: 1, operation: encodeOperation(put('k', 'v')), readOnly: true }, crypto)
    const refused = driver.receive(readOnlyPut, 'c9')
    expect(refused).to.deep.include({ ok: false, reason: 'malformed' })
    const reply = h.sent.find(s => s.from === 'r1' && s.message.type === 'reply')?.message as Reply
    expect(reply.result).to.deep.equal(encodeResult({ type: 'invalid', message: 'a kv operation cannot be read-only' }))
    expect(driver.kv.appliedIndex).to.equal(0)
    const forged = { ...signRequest({ client: 'c9', timestamp: 2, operation: encodeOperation(get('k')), readOnly: true }, crypto), client: 'c8' }
    expect(driver.receive(forged, 'c9')).to.deep.include({ ok: false, reason: 'bad-signature' })
    expect(h.sent.filter(s => s.to === 'c8')).to.have.length(0)
  })

  it('answers a read-only get only once its state reflects every batch it had prepared when the request came', async () => {
    const h = new Harness()
    await h.startAll()
    // r1 prepares the write but hears no commit: it cannot execute it
    h.drop = sent => sent.to === 'r1' && sent.message.type === 'commit'
    const writer = h.client('c1')
    await h.submit(writer, put('k', 'new'))
    const r1 = h.drivers.get('r1') as PbftReplicaDriver
    expect(r1.executed).to.equal(0)
    const read = signRequest({ client: 'c2', timestamp: 1, operation: encodeOperation(get('k')), readOnly: true }, h.keyring.cryptoFor('c2'))
    expect(r1.receive(read, 'c2')).to.deep.equal({ ok: true })
    await h.run(50)
    const answers = (): Reply[] => h.sent.filter(s => s.from === 'r1' && s.to === 'c2').map(s => s.message as Reply)
    expect(answers()).to.have.length(0)
    // the next write makes r1 fetch what it missed; then the read is answered, with the value written
    h.drop = () => false
    await h.submit(writer, put('other', 'x'))
    await h.run(500, () => answers().length > 0)
    expect(answers().map(reply => valueOf((decodeResult(reply.result) as { ok: true, result: PbftResult }).result))).to.deep.equal(['new'])
  })

  it('answers a retransmitted request that already executed with its last reply, without ordering it again', async () => {
    const h = new Harness()
    await h.startAll()
    const client = h.client('c1')
    await h.submit(client, put('k', 'v'))
    await h.run(100)
    const request = h.sent.find(s => s.message.type === 'request' && s.from === 'c1')?.message as PbftMessage
    const repliesBefore = h.sent.filter(s => s.from === 'r2' && s.message.type === 'reply').length
    const prePreparesBefore = h.sent.filter(s => s.message.type === 'pre-prepare').length
    expect((h.drivers.get('r2') as PbftReplicaDriver).receive(request, 'c1')).to.deep.equal({ ok: true })
    await h.run(100)
    expect(h.sent.filter(s => s.from === 'r2' && s.message.type === 'reply')).to.have.length(repliesBefore + 1)
    expect(h.sent.filter(s => s.message.type === 'pre-prepare')).to.have.length(prePreparesBefore)
  })

  it('snapshots the state at stable checkpoints, restarts from its store, and serves that state', async () => {
    const h = new Harness()
    await h.startAll()
    const client = h.client('c1')
    for (let i = 1; i <= 5; i++) { await h.submit(client, put(`k${i}`, `v${i}`)) }
    await h.run(300)
    const store = h.stores.get('r2') as MemoryStore
    expect(store.snapshot?.checkpoint.seq).to.be.at.least(4)
    const before = (h.drivers.get('r2') as PbftReplicaDriver).kv.snapshot()
    await h.drivers.get('r2')?.stop()
    const restarted = await h.start('r2')
    await h.run(100)
    expect(restarted.kv.snapshot()).to.deep.equal(before)
    const seq = store.snapshot?.checkpoint.seq ?? 0
    expect(h.keyring.cryptoFor('x').digest(restarted.serveState(seq) ?? new Uint8Array())).to.equal(store.snapshot?.checkpoint.stateDigest)
  })

  it('writes an accepted reconfiguration into the state, switches sets at its checkpoint, and restarts in the new set', async () => {
    const h = new Harness()
    await h.startAll()
    const client = h.client('c1')
    const next = ['r0', 'r1', 'r2']
    const approvals = next.map(id => approve(1, next, id, h.keyring.cryptoFor(id)))
    let answer: Uint8Array | null = null
    void client.submit(encodeReconfiguration({ epoch: 1, replicas: next, approvals })).then(bytes => { answer = bytes })
    await h.run(5000, () => answer !== null)
    const configured = decodeResult(answer ?? new Uint8Array())
    expect(configured.ok && configured.result).to.deep.include({ type: 'configured', epoch: 1 })
    // a client cannot write the configuration itself
    expect(await h.submit(client, put(PBFT_CONFIGURATION_KEY, 'mine'))).to.deep.include({ type: 'invalid' })
    for (let i = 1; i <= 12; i++) { await h.submit(client, put(`k${i}`, `v${i}`)) }
    await h.run(500)
    for (const id of REPLICAS) {
      expect((h.drivers.get(id) as PbftReplicaDriver).status(), id).to.deep.include({ epoch: 1, member: id !== 'r3', n: 3 })
    }
    await h.drivers.get('r1')?.stop()
    const restarted = await h.start('r1')
    expect(restarted.status()).to.deep.include({ epoch: 1, member: true, n: 3 })
    expect(await h.submit(client, put('after', 'restart'))).to.deep.include({ type: 'kv' })
  })

  it('stores a stable checkpoint\'s snapshot before the record saying it holds that state', async () => {
    const h = new Harness()
    await h.startAll()
    const client = h.client('c1')
    for (let i = 1; i <= 6; i++) { await h.submit(client, put(`k${i}`, `v${i}`)) }
    await h.run(300)
    for (const store of h.stores.values()) {
      const stable = store.journal.filter(line => line.startsWith('stable'))
      expect(stable).to.have.length.greaterThan(0)
      // a crash between the two must not leave a stable record without its state
      for (const line of stable) {
        const seq = line.split(' ')[1]
        expect(store.journal.indexOf(`snapshot ${seq}`), `${line} in ${store.journal.join(', ')}`).to.be.within(0, store.journal.indexOf(line))
      }
    }
  })

  it('catches up by state transfer, refusing a state that does not match the proven digest', async () => {
    const h = new Harness()
    await h.startAll()
    // r3 hears nothing until the others are well past a stable checkpoint
    let cut = true
    h.drop = sent => cut && (sent.to === 'r3' || sent.from === 'r3')
    const client = h.client('c1')
    for (let i = 1; i <= 12; i++) { await h.submit(client, put(`k${i % 3}`, `v${i}`)) }
    await h.run(200)
    // every holder lies at first: nothing is installed, and the driver tries again later
    for (const id of ['r0', 'r1', 'r2']) { h.lies.set(id, text.encode(`not the state of ${id}`)) }
    cut = false
    await h.submit(client, put('k9', 'last'))
    await h.run(300)
    const r3 = h.drivers.get('r3') as PbftReplicaDriver
    const r0 = h.drivers.get('r0') as PbftReplicaDriver
    expect(h.warnings.some(line => line.includes('does not match its proven digest'))).to.equal(true)
    expect(r3.executed).to.be.below(r0.executed)
    h.lies.clear()
    await h.run(3000, () => r3.executed === r0.executed)
    expect(r3.executed).to.equal(r0.executed)
    expect(r3.kv.snapshot()).to.deep.equal(r0.kv.snapshot())
  })

  it('faulty: as primary it sends two signed pre-prepares for one seq with different batches, and says so loudly', async () => {
    const h = new Harness()
    await h.start('r0', { faulty: 'equivocate' })
    for (const id of ['r1', 'r2', 'r3']) { await h.start(id) }
    expect(h.warnings.some(line => line.includes('DELIBERATELY BYZANTINE'))).to.equal(true)
    const client = h.client('c1')
    void client.submit(encodeOperation(put('k', 'v')))
    await h.run(30)
    const prePrepares = h.sent.filter(s => s.from === 'r0' && s.message.type === 'pre-prepare').map(s => s.message as PrePrepare)
    const first = prePrepares.filter(p => p.seq === 1)
    expect(new Set(first.map(p => p.digest)).size).to.equal(2)
    const crypto = h.keyring.cryptoFor('x')
    for (const p of first) { expect(crypto.verify('r0', signingPayload(p), p.signature)).to.equal(true) }
  })

  it('faulty: as backup it sends conflicting signed prepares, and the honest replicas produce evidence and isolate it', async () => {
    const h = new Harness()
    const evidence: string[] = []
    for (const id of ['r0', 'r1', 'r2']) { await h.start(id) }
    await h.start('r3', { faulty: 'equivocate' })
    const client = h.client('c1')
    await h.submit(client, put('k', 'v'))
    await h.run(300)
    const prepares = h.sent.filter(s => s.from === 'r3' && s.message.type === 'prepare').map(s => s.message as Prepare)
    expect(new Set(prepares.filter(p => p.seq === 1).map(p => p.digest)).size).to.equal(2)
    for (const id of ['r0', 'r1', 'r2']) {
      const status = (h.drivers.get(id) as PbftReplicaDriver).status()
      if (status.isolated.some(i => i.peer === 'r3')) { evidence.push(id) }
    }
    expect(evidence.length).to.be.greaterThan(0)
    expect((h.stores.get(evidence[0]) as MemoryStore).isolated.map(i => i.peer)).to.include('r3')
  })

  describe('limits', () => {
    it('readOnlyWaitingMax: read-only requests beyond it, waiting for the state, are refused', async () => {
      const h = new Harness()
      await h.startAll({ readOnlyWaitingMax: 2 })
      h.drop = sent => sent.to === 'r1' && sent.message.type === 'commit'
      await h.submit(h.client('c1'), put('k', 'v'))
      const r1 = h.drivers.get('r1') as PbftReplicaDriver
      const crypto = h.keyring.cryptoFor('c2')
      const read = (timestamp: number): PbftMessage => signRequest({ client: 'c2', timestamp, operation: encodeOperation(get('k')), readOnly: true }, crypto)
      expect(r1.receive(read(1), 'c2')).to.deep.equal({ ok: true })
      expect(r1.receive(read(2), 'c2')).to.deep.equal({ ok: true })
      expect(r1.receive(read(3), 'c2')).to.deep.include({ ok: false, reason: 'buffer-full' })
    })

    /** Whether r2 answers c1's first request again at once, from its last replies, when c1 sends it once more (else it goes to the core). */
    async function answersRetransmission (driverLimits: Partial<PbftDriverLimits>, value: string): Promise<boolean> {
      const h = new Harness()
      await h.startAll(driverLimits)
      await h.submit(h.client('c1'), put('k', value))
      await h.submit(h.client('c2'), put('k', 'other'))
      await h.run(100)
      const request = h.sent.find(s => s.message.type === 'request' && s.from === 'c1')?.message as PbftMessage
      const replies = (): number => h.sent.filter(s => s.from === 'r2' && s.to === 'c1').length
      const before = replies()
      ;(h.drivers.get('r2') as PbftReplicaDriver).receive(request, 'c1')
      return replies() > before
    }

    it('lastRepliesMax: beyond it, the least recent client\'s last reply is forgotten', async () => {
      expect(await answersRetransmission({ lastRepliesMax: 2 }, 'v')).to.equal(true)
      expect(await answersRetransmission({ lastRepliesMax: 1 }, 'v')).to.equal(false)
    })

    it('lastRepliesBytesMax: beyond it, the least recent client\'s last reply is forgotten', async () => {
      // each put result takes a few bytes: room for two, then for one
      const one = encodeResult({ type: 'kv', result: { ok: true, index: 1, type: 'put' } }).byteLength
      expect(await answersRetransmission({ lastRepliesBytesMax: 2 * one }, 'v')).to.equal(true)
      expect(await answersRetransmission({ lastRepliesBytesMax: one }, 'v')).to.equal(false)
    })
  })
})
