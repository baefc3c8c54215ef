import { expect } from 'aegir/chai'
import { PENDING_PROPOSALS_MAX, PENDING_READS_MAX, RaftDriver, RaftError } from '../../node/raft/driver.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { KvStateMachine, encodeCommand } from '../../protocols/kv/index.ts'
import { waitFor } from '../lib/wait.ts'
import { runUntilAsync, simRuntime } from '../sim/runtime.ts'
import { Scheduler } from '../sim/scheduler.ts'
import { testDriver } from './raft-driver-helpers.ts'
import type { RaftDriverOptions, RaftLogStore } from '../../node/raft/driver.ts'
import type { KvCommand } from '../../protocols/kv/index.ts'
import type { Message, Snapshot } from '../../protocols/raft/index.ts'

const ID = 'node-a'
const conf = { voters: [ID], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }

/** A store whose writes complete only when released, to hold Readies in flight. */
class GatedStore implements RaftLogStore {
  writes = 0
  /** Highest entry index handed to persist(). */
  lastEntryIndex = 0
  open = true
  readonly #waiting: Array<() => void> = []
  async persist (update: Parameters<RaftLogStore['persist']>[0]): Promise<void> {
    this.writes++
    this.lastEntryIndex = Math.max(this.lastEntryIndex, update.entries.at(-1)?.index ?? 0)
    if (!this.open) { await new Promise<void>(resolve => { this.#waiting.push(resolve) }) }
  }

  readonly snapshots: Snapshot[] = []
  async saveSnapshot (snapshot: Snapshot): Promise<boolean> {
    this.snapshots.push(snapshot)
    return true
  }

  release (): void {
    this.open = true
    for (const resolve of this.#waiting.splice(0)) { resolve() }
  }
}

function driverWith (store: RaftLogStore, overrides: Partial<RaftDriverOptions> = {}): RaftDriver {
  return testDriver({ id: ID, store, bootstrapConf: conf, ...overrides })
}

const put = (sequence: number, key = 'k'): KvCommand => ({ type: 'put', session: { clientId: 'c', sequence }, key, value: new Uint8Array([sequence % 256]) })

/** Puts through `driver` (the leader) with one client session, one write at a time; each resolves with its index. */
function sequentialWriter (driver: RaftDriver): (key: string, value: Uint8Array) => Promise<number> {
  let sequence = 0
  return async (key, value) => {
    const result = await driver.propose({ type: 'put', session: { clientId: 'c', sequence: ++sequence }, key, value })
    expect(result.ok).to.equal(true)
    return result.index
  }
}

async function untilLeader (driver: RaftDriver): Promise<void> {
  await waitFor(() => driver.status().role === 'leader', 'the driver to lead', 10_000, 5)
}

describe('raft driver (one node, in memory)', function () {
  this.timeout(30_000)

  it('applies proposals and serves linearizable reads after the barrier', async () => {
    const driver = driverWith(new GatedStore())
    driver.start()
    try {
      await untilLeader(driver)
      const result = await driver.propose(put(1))
      expect(result).to.deep.include({ ok: true, type: 'put' })
      const index = await driver.readBarrier()
      expect(index).to.be.at.least(result.index)
      expect(driver.kv.get('k')).to.deep.equal(new Uint8Array([1]))
    } finally {
      await driver.stop()
    }
  })

  it('runs on the runtime it is given: elected, applying and snapshotting in virtual time, the same way from the same seed', async () => {
    const run = async (seed: number): Promise<string[]> => {
      const scheduler = new Scheduler()
      const store = new GatedStore()
      const driver = driverWith(store, { runtime: simRuntime(scheduler, createRng(seed)), tickIntervalMs: 10, snapshotEveryEntries: 3 })
      driver.start()
      const events: string[] = []
      await runUntilAsync(scheduler, 10_000, () => driver.status().role === 'leader')
      events.push(`leader at ${scheduler.now} ms`)
      for (let sequence = 1; sequence <= 4; sequence++) {
        let applied: number | null = null
        driver.propose(put(sequence)).then(result => { applied = result.index }, () => {})
        await runUntilAsync(scheduler, scheduler.now + 1000, () => applied !== null)
        events.push(`put ${sequence} applied at index ${applied} at ${scheduler.now} ms`)
      }
      await runUntilAsync(scheduler, scheduler.now + 1000, () => store.snapshots.length > 0)
      events.push(`snapshot at index ${store.snapshots[0]?.meta.index} at ${scheduler.now} ms`)
      void driver.stop()
      return events
    }
    const events = await run(1)
    // a one-voter node campaigns after its randomized election timeout: 4 to 8 ticks of 10 virtual ms
    expect(Number(/^leader at (\d+) ms$/.exec(events[0])?.[1])).to.be.within(40, 80)
    // after the bootstrap configuration (1) and the leader's empty entry (2)
    expect(events.slice(1, 5).map(e => e.replace(/ at \d+ ms$/, ''))).to.deep.equal([3, 4, 5, 6].map((index, i) => `put ${i + 1} applied at index ${index}`))
    expect(events[5]).to.match(/^snapshot at index [3-6] at \d+ ms$/)
    expect(await run(1)).to.deep.equal(events)
  })

  it('refuses invalid commands before proposing them', async () => {
    const driver = driverWith(new GatedStore())
    driver.start()
    try {
      await untilLeader(driver)
      await expect(driver.propose({ ...put(1), key: '' })).to.eventually.be.rejectedWith(RaftError).and.have.property('code', 'invalid')
    } finally {
      await driver.stop()
    }
  })

  it(`answers 'busy' beyond ${PENDING_PROPOSALS_MAX} proposals in flight, and the rest still apply`, async () => {
    const store = new GatedStore()
    const driver = driverWith(store)
    driver.start()
    try {
      await untilLeader(driver)
      store.open = false
      const pending = Array.from({ length: PENDING_PROPOSALS_MAX }, async (_, i) => driver.propose(put(i + 1, `k${i}`)))
      await expect(driver.propose(put(PENDING_PROPOSALS_MAX + 1))).to.eventually.be.rejectedWith(RaftError, /too many proposals/)
      store.release()
      const results = await Promise.all(pending)
      expect(results.every(r => r.ok)).to.equal(true)
    } finally {
      await driver.stop()
    }
  })

  it(`answers 'busy' beyond ${PENDING_READS_MAX} reads in flight`, async () => {
    const store = new GatedStore()
    const driver = driverWith(store)
    driver.start()
    try {
      await untilLeader(driver)
      await driver.propose(put(1))
      store.open = false
      const held = driver.propose(put(2)) // its Ready stays in flight until release()
      const reads = Array.from({ length: PENDING_READS_MAX }, async () => driver.readBarrier().catch((err: Error) => err))
      await expect(driver.readBarrier()).to.eventually.be.rejectedWith(RaftError, /too many reads/)
      store.release()
      const answered = await Promise.all(reads)
      expect(answered.filter(r => r instanceof Error)).to.have.length(0)
      expect(await held).to.deep.include({ ok: true })
    } finally {
      await driver.stop()
    }
  })

  it('a one-voter leader acknowledges a write only once its own copy is durable', async () => {
    const store = new GatedStore()
    const driver = driverWith(store)
    driver.start()
    try {
      await untilLeader(driver)
      store.open = false
      const writesBefore = store.writes
      let settled = false
      const proposal = driver.propose(put(1)).finally(() => { settled = true })
      // the Ready holding the entry (committed at once: one voter) is being written
      await waitFor(() => store.writes > writesBefore, 'the Ready holding the entry to be written', 10_000, 5)
      // a negative can only be watched for a while: the write stays held all along
      await new Promise(resolve => setTimeout(resolve, 50))
      expect(settled).to.equal(false)
      expect(driver.kv.get('k')).to.equal(null)
      store.release()
      expect(await proposal).to.deep.include({ ok: true })
      expect(driver.kv.get('k')).to.deep.equal(new Uint8Array([1]))
    } finally {
      await driver.stop()
    }
  })

  it('applies entries it already holds durably while the next write is in flight', async () => {
    const leader = 'node-b'
    const store = new GatedStore()
    const driver = driverWith(store, {
      bootstrapConf: { ...conf, voters: [ID, leader] },
      electionTimeoutTicks: 100_000 // never campaigns: node-b leads
    })
    const append = (prevIndex: number, prevTerm: number, entries: number[], commit: number): Message => ({
      type: 'append',
      from: leader,
      to: ID,
      term: 1,
      prevIndex,
      prevTerm,
      commit,
      entries: entries.map(index => ({ term: 1, index, type: 'normal', data: encodeCommand({ type: 'put', session: { clientId: `c${index}`, sequence: 1 }, key: `k${index}`, value: new Uint8Array([index]) }) }))
    })
    driver.start()
    try {
      const base = driver.status().lastIndex // the founding conf entries, committed
      driver.step(append(base, 1, [base + 1], base))
      // written (the store is open, so durable); its Ready advances before the next one is taken
      await waitFor(() => store.lastEntryIndex >= base + 1, 'the first entry to be written', 10_000, 5)
      store.open = false
      const writesBefore = store.writes
      // the next entry arrives with the commit of the first: its Ready writes
      // the new entry and applies the first without waiting for that write
      driver.step(append(base + 1, 1, [base + 2], base + 1))
      await waitFor(() => store.writes > writesBefore, 'the next Ready to be written', 10_000, 5)
      expect(driver.kv.get(`k${base + 1}`)).to.deep.equal(new Uint8Array([base + 1]))
      expect(driver.kv.get(`k${base + 2}`)).to.equal(null)
      store.release()
    } finally {
      await driver.stop()
    }
  })

  it('snapshots once the entries since the last snapshot hold snapshotLogBytesMax bytes, however few they are', async () => {
    const store = new GatedStore()
    const driver = driverWith(store, { snapshotEveryEntries: 1_000_000, snapshotLogBytesMax: 2000 })
    driver.start()
    try {
      await untilLeader(driver)
      const value = new Uint8Array(300).fill(7)
      const write = sequentialWriter(driver)
      let writes = 0
      let lastIndex = 0
      while (store.snapshots.length === 0 && !driver.snapshotting && writes < 20) {
        lastIndex = await write(`k${++writes}`, value)
      }
      // commands of a little over 300 bytes reach 2000 bytes on the 6th or 7th write
      expect(writes).to.be.within(6, 7)
      await waitFor(() => !driver.snapshotting, 'the snapshot to be stored', 10_000, 5)
      expect(store.snapshots).to.have.length(1)
      expect(store.snapshots[0].meta.index).to.equal(lastIndex)
    } finally {
      await driver.stop()
    }
  })

  it('snapshots after snapshotEveryEntries entries that also hold as many bytes as the last snapshot', async () => {
    const store = new GatedStore()
    const driver = driverWith(store, { snapshotEveryEntries: 10 })
    driver.start()
    try {
      await untilLeader(driver)
      const bigValue = new Uint8Array(200).fill(1)
      const write = sequentialWriter(driver)
      const settled = async (): Promise<void> => { await waitFor(() => !driver.snapshotting, 'the snapshot to be stored', 10_000, 5) }
      for (let i = 0; i < 10; i++) { await write(`big${i}`, bigValue) }
      await settled()
      expect(store.snapshots).to.have.length(1) // the first one: no earlier snapshot to weigh against
      const firstBytes = store.snapshots[0].data.byteLength
      expect(firstBytes).to.be.greaterThan(1000)
      // 30 small writes (about 40 bytes each) make 10 entries three times
      // over, but less than the snapshot's size: no snapshot yet
      for (let i = 0; i < 30; i++) { await write('small', new Uint8Array([i])) }
      expect(driver.snapshotting).to.equal(false)
      expect(store.snapshots).to.have.length(1)
      // big writes bring the entries past the snapshot's size
      for (let i = 0; i < 10; i++) { await write(`big${i}`, bigValue) }
      await settled()
      expect(store.snapshots).to.have.length(2)
    } finally {
      await driver.stop()
    }
  })

  it('goes on applying and answering while a snapshot is encoded, and the snapshot holds the state of its start', async () => {
    const store = new GatedStore()
    // 2000 values of 2 KiB: the encoding takes dozens of steps, one per event-loop turn
    const driver = driverWith(store, { snapshotEveryEntries: 2000, snapshotSliceMs: 0 })
    driver.start()
    try {
      await untilLeader(driver)
      const value = new Uint8Array(2048).fill(1)
      const write = sequentialWriter(driver)
      let writes = 0
      let captured = 0
      while (!driver.snapshotting) { captured = await write(`k${writes++}`, value) }
      const keysAtStart = driver.kv.stats().keys
      let appliedWhenSaved = 0
      const save = store.saveSnapshot.bind(store)
      store.saveSnapshot = async (snapshot) => {
        appliedWhenSaved = driver.kv.appliedIndex
        return save(snapshot)
      }
      let during = 0
      while (driver.snapshotting && during < 200) {
        await write('written-during-the-snapshot', value)
        during++
      }
      // encoded in one go, at most the write already in flight would be applied before the save
      expect(appliedWhenSaved - captured, 'writes applied while the snapshot was encoded').to.be.at.least(3)
      await waitFor(() => !driver.snapshotting, 'the snapshot to be stored', 10_000, 5)
      expect(store.snapshots).to.have.length(1)
      const [snapshot] = store.snapshots
      expect(snapshot.meta.index).to.equal(captured)
      const copy = new KvStateMachine()
      expect(copy.restore(snapshot.data)).to.deep.equal({ ok: true })
      expect(copy.appliedIndex).to.equal(captured)
      expect(copy.get('written-during-the-snapshot')).to.equal(null)
      expect(copy.stats().keys).to.equal(keysAtStart)
      expect(driver.kv.get('written-during-the-snapshot')).to.deep.equal(value)
    } finally {
      await driver.stop()
    }
  })

  it('drops its own snapshot in progress when the leader sends a newer one, and restores that one', async () => {
    const LEADER = 'node-x'
    const twoVoters = { ...conf, voters: [ID, LEADER] }
    const store = new GatedStore()
    const entries = 200
    // a follower that never campaigns: only the test's messages move it
    const driver = driverWith(store, { bootstrapConf: twoVoters, electionTimeoutTicks: 1_000_000, snapshotEveryEntries: entries, snapshotSliceMs: 0 })
    driver.start()
    try {
      const value = new Uint8Array(4096).fill(2)
      const command = (i: number): Uint8Array => encodeCommand({ type: 'put', session: { clientId: 'c', sequence: i }, key: `k${i}`, value })
      // entries 1 and 2 are the bootstrap's two add-voter changes
      const first = 3
      const last = first + entries - 1
      const log = Array.from({ length: entries }, (_, i) => ({ index: first + i, term: 1, type: 'normal' as const, data: command(i + 1) }))
      driver.step({ type: 'append', from: LEADER, to: ID, term: 1, prevIndex: first - 1, prevTerm: 1, entries: log, commit: last })
      await waitFor(() => driver.snapshotting, 'the follower to start its own snapshot', 10_000, 1)

      // the leader's state: the same entries, then most keys deleted (its
      // snapshot is checked in slices before it is installed, as the
      // follower's own is encoded: a small one passes its check first), and
      // ten more writes
      const leaderKv = new KvStateMachine()
      leaderKv.skip(1)
      leaderKv.skip(2)
      for (const entry of log) { leaderKv.apply(entry.index, entry.data) }
      let index = last
      for (let i = 1; i <= entries - 10; i++) {
        index++
        leaderKv.apply(index, encodeCommand({ type: 'delete', session: { clientId: 'c', sequence: index }, key: `k${i}` }))
      }
      for (let i = 1; i <= 10; i++) {
        index++
        leaderKv.apply(index, encodeCommand({ type: 'put', session: { clientId: 'c', sequence: index }, key: 'from-the-leader', value: new Uint8Array([index % 256]) }))
      }
      const snapshot = { meta: { index, term: 1, conf: twoVoters }, data: leaderKv.snapshot() }
      driver.step({ type: 'snapshot', from: LEADER, to: ID, term: 1, snapshot })

      await waitFor(() => !driver.snapshotting && driver.kv.appliedIndex === index, 'the leader\'s snapshot to be restored', 10_000, 1)
      expect(store.snapshots, 'its own, older snapshot is never stored').to.have.length(0)
      expect(driver.lastSnapshotIndex).to.equal(index)
      expect(driver.kv.get('from-the-leader')).to.deep.equal(new Uint8Array([index % 256]))
      expect(driver.kv.get('k1')).to.equal(null)
      expect(driver.kv.snapshot()).to.deep.equal(snapshot.data)
    } finally {
      await driver.stop()
    }
  })

  it('stops Raft, failing waiters, when the store fails', async () => {
    const store = new GatedStore()
    const driver = driverWith(store)
    driver.start()
    try {
      await untilLeader(driver)
      store.persist = async () => { throw new Error('disk on fire') }
      await expect(driver.propose(put(1))).to.eventually.be.rejectedWith(RaftError, /storage failure|disk on fire/)
      await expect(driver.propose(put(2))).to.eventually.be.rejectedWith(RaftError, /stopped/)
    } finally {
      await driver.stop()
    }
  })
})
