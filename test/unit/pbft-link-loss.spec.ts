/**
 * Fast failover (PbftReplica.linkDown / linkUp): a backup told that the
 * primary's link is down starts the view change at once when it holds
 * requests waiting to execute, instead of waiting out the request timer;
 * with nothing waiting, a link that drops (or flaps) changes nothing.
 */
import { expect } from 'aegir/chai'
import { pino } from 'pino'
import { PbftClientDriver } from '../../node/pbft/client-driver.ts'
import { PbftReplicaDriver } from '../../node/pbft/driver.ts'
import { decodeResult, encodeOperation } from '../../node/pbft/operations.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { PbftClient, SCORE_MAX, SUSPICION_POINTS } from '../../protocols/pbft/index.ts'
import { SimKeyring } from '../sim/pbft/crypto.ts'
import { runUntilAsync, simRuntime } from '../sim/runtime.ts'
import { Scheduler } from '../sim/scheduler.ts'
import { Cluster, clientRequest, testCrypto } from './pbft-harness.ts'
import type { PbftStore } from '../../node/pbft/driver.ts'
import type { ClientRequest, NodeId, PbftMessage, PersistRecord, Reply } from '../../protocols/pbft/index.ts'

/** A request timer that never fires within these tests: whatever changes views here is the link loss. */
const SLOW_TIMER = { requestTimeoutTicks: 10_000, slowPrimaryTicks: 10_000 }

function scoreOf (cluster: Cluster, at: string, peer: string): number | undefined {
  return cluster.replica(at).status().scores.find(s => s.peer === peer)?.score
}

describe('pbft link loss', () => {
  it('a link to the primary that drops with nothing waiting starts no view change, however long it stays down or often it flaps', () => {
    const cluster = new Cluster(4, { requestTimeoutTicks: 4 })
    for (let flap = 0; flap < 5; flap++) {
      for (const id of ['r1', 'r2', 'r3']) { expect(cluster.replica(id).linkDown('r0')).to.equal(true) }
      cluster.tick(10)
      for (const id of ['r1', 'r2', 'r3']) { cluster.replica(id).linkUp('r0') }
      cluster.tick(2)
    }
    // a lone replica whose link stays down is not pushed out of its view either
    cluster.replica('r3').linkDown('r0')
    cluster.tick(50)
    for (const id of cluster.ids) {
      const status = cluster.replica(id).status()
      expect(status.view, id).to.equal(0)
      expect(status.viewChanging, id).to.equal(false)
      expect(scoreOf(cluster, id, 'r0') ?? SCORE_MAX, id).to.equal(SCORE_MAX)
    }
    // and the primary still orders
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain()
    for (const id of cluster.ids) { expect(cluster.state(id).executed, id).to.deep.equal(['c1@1']) }
  })

  it('a request arriving while the primary\'s link is down starts the view change at once, without a tick; the new primary orders it', () => {
    const cluster = new Cluster(4, SLOW_TIMER)
    cluster.crash('r0')
    for (const id of ['r1', 'r2', 'r3']) { cluster.replica(id).linkDown('r0') }
    const request = clientRequest('c1', 1)
    // the client's retransmission reaches the backups (not r1, the next primary: the others relay it after the NEW-VIEW)
    for (const id of ['r2', 'r3']) {
      expect(cluster.submit(id, request)).to.deep.equal({ ok: true })
      expect(cluster.replica(id).status().viewChanging, id).to.equal(true)
      expect(scoreOf(cluster, id, 'r0'), id).to.equal(SCORE_MAX - SUSPICION_POINTS['request-timeout'])
    }
    // r1 holds nothing: it joins the f+1 asking for view 1, then sends the NEW-VIEW as its primary
    expect(cluster.replica('r1').status().viewChanging).to.equal(false)
    cluster.drain()
    for (const id of ['r1', 'r2', 'r3']) {
      const status = cluster.replica(id).status()
      expect(status.view, id).to.equal(1)
      expect(status.viewChanging, id).to.equal(false)
      expect(cluster.state(id).executed, id).to.deep.equal(['c1@1'])
    }
    cluster.expectAgreement()
  })

  it('a link that drops while requests wait starts the view change at once', () => {
    const cluster = new Cluster(4, SLOW_TIMER)
    // r0 stops answering before the request reaches it; the backups hold it
    cluster.crash('r0')
    for (const id of ['r1', 'r2', 'r3']) { cluster.submit(id, clientRequest('c1', 1)) }
    cluster.tick(3)
    for (const id of ['r1', 'r2', 'r3']) { expect(cluster.replica(id).status().viewChanging, id).to.equal(false) }
    for (const id of ['r1', 'r2', 'r3']) {
      cluster.replica(id).linkDown('r0')
      expect(cluster.replica(id).status().viewChanging, id).to.equal(true)
    }
    cluster.drain()
    for (const id of ['r1', 'r2', 'r3']) {
      expect(cluster.replica(id).status().view, id).to.equal(1)
      expect(cluster.state(id).executed, id).to.deep.equal(['c1@1'])
    }
  })

  it('a link that came back up before the request arrived changes nothing', () => {
    const cluster = new Cluster(4, SLOW_TIMER)
    for (const id of ['r1', 'r2', 'r3']) {
      cluster.replica(id).linkDown('r0')
      cluster.replica(id).linkUp('r0')
      cluster.submit(id, clientRequest('c1', 1))
    }
    cluster.drain()
    for (const id of cluster.ids) {
      expect(cluster.replica(id).status().view, id).to.equal(0)
      expect(cluster.state(id).executed, id).to.deep.equal(['c1@1'])
    }
  })

  it('only the primary\'s link matters: a backup\'s link down with requests waiting changes nothing', () => {
    const cluster = new Cluster(4, SLOW_TIMER)
    cluster.replica('r1').linkDown('r2')
    cluster.replica('r1').linkDown('r3')
    // held by r1 only (its relay to r0 is lost): it waits, as it would without link loss
    cluster.filter = e => e.message.type !== 'request'
    cluster.submit('r1', clientRequest('c1', 1))
    cluster.drain()
    expect(cluster.replica('r1').status().viewChanging).to.equal(false)
    expect(cluster.replica('r1').linksDown).to.deep.equal(['r2', 'r3'])
  })

  it('keeps link state for the replicas of the set only (not for itself, not for strangers)', () => {
    const cluster = new Cluster(4, SLOW_TIMER)
    const r1 = cluster.replica('r1')
    expect(r1.linkDown('r1')).to.equal(false)
    for (let i = 0; i < 100; i++) { expect(r1.linkDown(`stranger-${i}`)).to.equal(false) }
    expect(r1.linkDown('r3')).to.equal(true)
    expect(r1.linkDown('r3')).to.equal(true)
    expect(r1.linkDown('r0')).to.equal(true)
    expect(r1.linksDown).to.deep.equal(['r0', 'r3'])
    r1.linkUp('r3')
    r1.linkUp('stranger-1')
    expect(r1.linksDown).to.deep.equal(['r0'])
  })

  it('the primary itself ignores link loss (it orders what it holds)', () => {
    const cluster = new Cluster(4, SLOW_TIMER)
    const r0 = cluster.replica('r0')
    for (const id of ['r1', 'r2', 'r3']) { r0.linkDown(id) }
    cluster.submit('r0', clientRequest('c1', 1))
    expect(r0.status().viewChanging).to.equal(false)
    expect(r0.status().view).to.equal(0)
  })

  describe('the client', () => {
    const replicas = ['r0', 'r1', 'r2', 'r3']
    const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
    const client = (): PbftClient => new PbftClient({ id: 'c1', replicas, crypto: testCrypto('c1'), retransmitTicks: 1000, outstandingMax: 8, firstTimestamp: 1 })
    const reply = (replica: string, timestamp: number, view: number): Reply =>
      ({ type: 'reply', replica, client: 'c1', view, timestamp, readOnly: false, result: bytes('ok') })
    const sent = (c: PbftClient): Array<[string, number]> => c.ready().messages.map(m => [m.to, (m.message as ClientRequest).timestamp])

    it('sends its waiting ordered requests to every replica still reachable as soon as the primary\'s link goes down, not after retransmitTicks', () => {
      const c = client()
      c.submit(bytes('a'), false)
      c.submit(bytes('b'), false)
      c.submit(bytes('read'), true)
      c.ready()
      expect(c.linkDown('r0')).to.equal(true)
      // the read-only request went to every replica already
      expect(sent(c)).to.deep.equal([['r1', 1], ['r2', 1], ['r3', 1], ['r1', 2], ['r2', 2], ['r3', 2]])
      // again: nothing new
      c.linkDown('r0')
      expect(c.hasReady()).to.equal(false)
      // a new request while it is down goes to every replica reachable, too
      c.submit(bytes('c'), false)
      expect(sent(c)).to.deep.equal([['r1', 4], ['r2', 4], ['r3', 4]])
      // up again: to the primary alone
      c.linkUp('r0')
      c.submit(bytes('d'), false)
      expect(sent(c)).to.deep.equal([['r0', 5]])
    })

    it('a backup\'s link going down, or a stranger\'s, sends nothing', () => {
      const c = client()
      c.submit(bytes('a'), false)
      c.ready()
      expect(c.linkDown('r2')).to.equal(true)
      expect(c.linkDown('stranger')).to.equal(false)
      expect(c.hasReady()).to.equal(false)
      // while a backup is down, a retransmission skips it
      c.linkDown('r0')
      expect(sent(c)).to.deep.equal([['r1', 1], ['r3', 1]])
    })

    it('learning a later view from f+1 replies sends what still waits to the new primary', () => {
      const c = client()
      c.submit(bytes('a'), false)
      c.submit(bytes('b'), false)
      c.ready()
      c.receiveReply(reply('r1', 1, 1), 'r1')
      c.receiveReply(reply('r2', 1, 1), 'r2')
      const ready = c.ready()
      expect(ready.results.map(r => r.timestamp)).to.deep.equal([1])
      expect(c.view).to.equal(1)
      expect(ready.messages.map(m => [m.to, (m.message as ClientRequest).timestamp])).to.deep.equal([['r1', 2]])
      c.submit(bytes('c'), false)
      expect(sent(c)).to.deep.equal([['r1', 3]])
    })
  })

  it('drivers: the primary\'s process gone (its connections closed), a write completes through the new primary with the request timer and the client\'s retransmission both out of reach', async function () {
    this.timeout(20_000)
    const ids = ['r0', 'r1', 'r2', 'r3']
    const scheduler = new Scheduler()
    const runtime = simRuntime(scheduler, createRng(7))
    const keyring = new SimKeyring(7)
    const dead = new Set<NodeId>()
    const drivers = new Map<NodeId, PbftReplicaDriver>()
    const send = (from: NodeId, to: NodeId, message: PbftMessage): void => {
      if (dead.has(from) || dead.has(to)) { return }
      scheduler.after(1, () => {
        if (message.type === 'reply') { client.receive(message, from) } else { drivers.get(to)?.receive(message, from) }
      })
    }
    const client = new PbftClientDriver({ id: 'c1', replicas: ids, crypto: keyring.cryptoFor('c1'), send: (to, message) => { send('c1', to, message) }, runtime, tickIntervalMs: 10, retransmitMs: 100_000 })
    for (const id of ids) {
      const records: PersistRecord[] = []
      const store: PbftStore = {
        load: async () => ({ records: [...records], snapshot: null, isolated: [] }),
        append: async (more) => { records.push(...more) },
        saveSnapshot: async () => {},
        saveIsolated: async () => {}
      }
      const driver = await PbftReplicaDriver.create({
        id,
        replicas: ids,
        crypto: keyring.cryptoFor(id),
        store,
        transport: { send: (to, message) => { send(id, to, message) }, fetchState: async () => null },
        runtime,
        tickIntervalMs: 10,
        // 100 s of request timer and suspicion: only link loss can change views within this test
        limits: { requestTimeoutTicks: 10_000, slowPrimaryTicks: 10_000 },
        log: pino({ level: 'silent' })
      })
      drivers.set(id, driver)
      driver.start()
    }
    client.start()
    const write = async (key: string): Promise<boolean> => {
      let done = false
      void client.submit(encodeOperation({ type: 'kv', command: { type: 'put', key, value: new Uint8Array([1]) } })).then(bytes => { done = decodeResult(bytes).ok })
      await runUntilAsync(scheduler, scheduler.now + 5_000, () => done)
      return done
    }
    expect(await write('before')).to.equal(true)
    // kill -9 of r0: its sockets close, every peer sees its last connection to r0 go
    dead.add('r0')
    await drivers.get('r0')?.stop()
    for (const id of ['r1', 'r2', 'r3']) { drivers.get(id)?.linkDown('r0') }
    client.linkDown('r0')
    expect(await write('after')).to.equal(true)
    for (const id of ['r1', 'r2', 'r3']) {
      expect(drivers.get(id)?.status().view, id).to.equal(1)
      expect(drivers.get(id)?.kv.get('after'), id).to.deep.equal(new Uint8Array([1]))
    }
    client.stop()
    for (const driver of drivers.values()) { await driver.stop() }
  })
})
