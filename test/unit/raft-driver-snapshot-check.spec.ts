import { Writable } from 'node:stream'
import { expect } from 'aegir/chai'
import { pino } from 'pino'
import { UserError } from '../../node/errors.ts'
import { RaftDriver, RaftError } from '../../node/raft/driver.ts'
import { kvApplication } from '../../node/raft/kv-application.ts'
import { RaftStorage, StoredStateError } from '../../node/raft/storage/index.ts'
import { encodeCommand, KvStateMachine } from '../../protocols/kv/index.ts'
import { CONF_MEMBERS_MAX } from '../../protocols/raft/index.ts'
import { waitFor } from '../lib/wait.ts'
import { CaptureLogger, TempDirs } from './raft-storage-helpers.ts'
import type { RaftDriverOptions, RaftLogStore } from '../../node/raft/driver.ts'
import type { ConfState, Entry, RestoredState, Snapshot, SnapshotMessage } from '../../protocols/raft/index.ts'
import type { Logger } from 'pino'

const ID = 'node-b'
const LEADER = 'node-a'
const STRANGER = 'node-x'
const twoVoters: ConfState = { voters: [LEADER, ID], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }
const EMPTY: RestoredState = { hardState: { term: 0, vote: null, commit: 0 }, entries: [] }
/** Entries 1 and 2 are the bootstrap's add-voter changes, at term 1. */
const FIRST = 3

/** A store that keeps what it is asked to persist, so a test sees whether a snapshot reached the disk. */
class RecordingStore implements RaftLogStore {
  readonly snapshots: Snapshot[] = []
  readonly terms: number[] = []
  async persist (update: Parameters<RaftLogStore['persist']>[0]): Promise<void> {
    if (update.snapshot != null) { this.snapshots.push(update.snapshot) }
    if (update.hardState != null) { this.terms.push(update.hardState.term) }
  }

  async saveSnapshot (): Promise<boolean> { return true }
}

/** A pino logger whose lines a test can read. */
function capturingLog (): { log: Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk, _encoding, done) { lines.push(JSON.parse(String(chunk))); done() } })
  return { log: pino({ level: 'warn' }, stream), lines }
}

const put = (sequence: number, key: string, value: string): Uint8Array =>
  encodeCommand({ type: 'put', session: { clientId: 'c', sequence }, key, value: new TextEncoder().encode(value) })

/** The KV state a leader has after the bootstrap and `writes` puts of k1..kN, and its snapshot. */
function leaderState (writes: number, valueBytes = 8): { kv: KvStateMachine, entries: Entry[] } {
  const kv = new KvStateMachine()
  kv.skip(1)
  kv.skip(2)
  const entries: Entry[] = []
  for (let i = 1; i <= writes; i++) {
    const entry: Entry = { index: FIRST + i - 1, term: 1, type: 'normal', data: put(i, `k${i}`, 'v'.repeat(valueBytes)) }
    kv.apply(entry.index, entry.data)
    entries.push(entry)
  }
  return { kv, entries }
}

const snapshotFrom = (from: string, term: number, index: number, data: Uint8Array, conf = twoVoters): SnapshotMessage =>
  ({ type: 'snapshot', from, to: ID, term, snapshot: { meta: { index, term: 1, conf }, data } })

describe('raft driver: a snapshot from the network is checked in full before it is stored', function () {
  this.timeout(60_000)
  const temp = new TempDirs()
  const drivers: RaftDriver[] = []
  afterEach(async () => {
    await Promise.all(drivers.splice(0).map(async d => { await d.stop() }))
    await temp.removeAll()
  })

  function follower (store: RaftLogStore, overrides: Partial<RaftDriverOptions> = {}): RaftDriver {
    const driver = RaftDriver.create({
      ...kvApplication(),
      id: ID,
      store,
      outbox: { send: () => {} },
      restored: EMPTY,
      bootstrapConf: twoVoters,
      tickIntervalMs: 5,
      // a follower that never campaigns: only the test's messages move it
      electionTimeoutTicks: 1_000_000,
      heartbeatIntervalTicks: 1,
      readOnlyMode: 'safe',
      snapshotEveryEntries: 1_000_000,
      snapshotSliceMs: 0,
      autoPromoteLearners: false,
      log: pino({ level: 'silent' }),
      ...overrides
    })
    drivers.push(driver)
    driver.start()
    return driver
  }

  it('rejects 64 bytes of garbage a term ahead: nothing stored, the term stays, counted and logged, and the node goes on', async () => {
    const store = new RecordingStore()
    const { log, lines } = capturingLog()
    let rejected = 0
    const driver = follower(store, { log, metrics: { onSnapshotRejected: () => { rejected++ } } })
    await waitFor(() => driver.status().commit === 2 && store.terms.includes(1), 'the bootstrap to be stored', 10_000, 5)

    driver.step(snapshotFrom(LEADER, 2, 16, new Uint8Array(64).fill(0xab)))
    await waitFor(() => driver.snapshotChecks.rejected === 1, 'the snapshot to be rejected', 10_000, 5)
    expect(store.snapshots, 'never stored').to.have.length(0)
    expect(driver.status().term, 'the term did not move').to.equal(1)
    expect(store.terms.every(term => term === 1)).to.equal(true)
    expect(driver.status().counters.snapshotsRejected).to.equal(0) // never reached the core
    expect(rejected).to.equal(1)
    expect(lines).to.have.length(1)
    expect(lines[0]).to.deep.include({ msg: 'raft snapshot rejected: it fails its check, so it was neither stored nor installed', from: LEADER, index: 16, problem: 'malformed snapshot: not a KV snapshot (bad magic)' })

    // the leader of term 1 carries on with it
    const { kv, entries } = leaderState(3)
    driver.step({ type: 'append', from: LEADER, to: ID, term: 1, prevIndex: 2, prevTerm: 1, entries, commit: entries.at(-1)?.index ?? 0 })
    await waitFor(() => driver.kv.appliedIndex === kv.appliedIndex, 'the entries to apply', 10_000, 5)
    expect(driver.kv.get('k3')).to.deep.equal(kv.get('k3'))
  })

  it('rejects a well-formed KV snapshot that claims another index than the state in it, or was taken under other KV limits', async () => {
    const store = new RecordingStore()
    const driver = follower(store)
    const { kv } = leaderState(5)
    driver.step(snapshotFrom(LEADER, 1, kv.appliedIndex + 1, kv.snapshot()))
    await waitFor(() => driver.snapshotChecks.rejected === 1, 'the mismatched snapshot to be rejected', 10_000, 5)

    const other = new KvStateMachine({ valueBytesMax: 64 })
    other.skip(1)
    other.apply(2, put(1, 'k', 'v'))
    driver.step(snapshotFrom(LEADER, 1, 20, other.snapshot()))
    await waitFor(() => driver.snapshotChecks.rejected === 2, 'the other-limits snapshot to be rejected', 10_000, 5)
    expect(store.snapshots).to.have.length(0)
    expect(driver.kv.appliedIndex).to.be.below(FIRST)

    // and takes a good one
    driver.step(snapshotFrom(LEADER, 1, kv.appliedIndex, kv.snapshot()))
    await waitFor(() => driver.kv.appliedIndex === kv.appliedIndex, 'the good snapshot to be installed', 10_000, 5)
    expect(store.snapshots.map(s => s.meta.index)).to.deep.equal([kv.appliedIndex])
    expect(driver.kv.snapshot()).to.deep.equal(kv.snapshot())
    expect(driver.snapshotChecks).to.deep.equal({ passed: 1, rejected: 2, dropped: 0 })
  })

  it('checks one snapshot at a time: a copy arriving meanwhile is dropped, but the leader\'s pushes a stranger\'s out', async () => {
    const store = new RecordingStore()
    const driver = follower(store)
    driver.step({ type: 'heartbeat', from: LEADER, to: ID, term: 1, commit: 2, readRound: 0 })
    await waitFor(() => driver.leader === LEADER, 'the follower to know its leader', 10_000, 5)

    // the stranger's snapshot is valid, and large enough to take many slices
    const stranger = leaderState(400, 4096).kv
    driver.step(snapshotFrom(STRANGER, 1, stranger.appliedIndex, stranger.snapshot()))
    driver.step(snapshotFrom(STRANGER, 1, stranger.appliedIndex, stranger.snapshot()))
    expect(driver.snapshotChecks.dropped).to.equal(1)
    const { kv } = leaderState(10)
    driver.step(snapshotFrom(LEADER, 1, kv.appliedIndex, kv.snapshot()))
    await waitFor(() => driver.kv.appliedIndex === kv.appliedIndex, 'the leader\'s snapshot to be installed', 10_000, 5)
    // give an abandoned check every chance to come back
    await new Promise(resolve => setTimeout(resolve, 100))
    expect(store.snapshots.map(s => s.meta.index)).to.deep.equal([kv.appliedIndex])
    expect(driver.snapshotChecks).to.deep.equal({ passed: 1, rejected: 0, dropped: 1 })
    expect(driver.kv.snapshot()).to.deep.equal(kv.snapshot())
  })

  it('a node sent a garbage snapshot restarts from its storage as if it never came', async () => {
    const dir = await temp.make()
    const storage = await RaftStorage.open(dir, { logger: new CaptureLogger() })
    const driver = follower(storage)
    const { kv, entries } = leaderState(3)
    driver.step({ type: 'append', from: LEADER, to: ID, term: 1, prevIndex: 2, prevTerm: 1, entries, commit: kv.appliedIndex })
    await waitFor(() => driver.kv.appliedIndex === kv.appliedIndex, 'the entries to apply', 10_000, 5)
    driver.step(snapshotFrom(LEADER, 2, 16, new Uint8Array(64).fill(0xab)))
    await waitFor(() => driver.snapshotChecks.rejected === 1, 'the snapshot to be rejected', 10_000, 5)
    await driver.stop()
    await storage.close()

    const reopened = await RaftStorage.open(dir, { logger: new CaptureLogger() })
    try {
      const restored = await reopened.load()
      expect(restored.snapshot).to.equal(undefined)
      expect(restored.hardState.term).to.equal(1)
      const again = RaftDriver.create({ ...optionsFor(reopened), restored })
      expect(again.status()).to.deep.include({ term: 1, commit: kv.appliedIndex })
    } finally {
      await reopened.close()
    }
  })

  it('refuses to start from a stored snapshot that does not restore, or a log the core refuses, naming the directory and the remedy', () => {
    const dir = '/var/lib/accord/raft'
    const garbage: RestoredState = { hardState: { term: 2, vote: null, commit: 16 }, snapshot: { meta: { index: 16, term: 2, conf: twoVoters }, data: new Uint8Array(64).fill(0xab) }, entries: [] }
    const create = (restored: RestoredState): RaftDriver => RaftDriver.create({ ...optionsFor(new RecordingStore()), restored, storageDir: dir })
    expect(() => create(garbage)).to.throw(StoredStateError)
    try {
      create(garbage)
    } catch (err) {
      expect(err).to.be.instanceOf(UserError)
      const message = (err as Error).message
      expect(message).to.not.include('\n')
      expect(message).to.match(/^raft storage \/var\/lib\/accord\/raft: the stored snapshot at index 16 does not restore \(malformed snapshot: not a KV snapshot \(bad magic\)\)\. /)
      expect(message).to.include('To recover: put back a copy of /var/lib/accord/raft saved while the node was stopped, or remove this node from the cluster')
    }
    const { kv } = leaderState(2)
    const misplaced: RestoredState = { ...garbage, snapshot: { meta: { index: 16, term: 2, conf: twoVoters }, data: kv.snapshot() } }
    expect(() => create(misplaced)).to.throw(StoredStateError, /the KV state in it is at index 4, the snapshot claims index 16/)
    const beyond: RestoredState = { hardState: { term: 1, vote: null, commit: 9 }, entries: [] }
    expect(() => create(beyond)).to.throw(StoredStateError, /restored commit 9 is beyond the last restored entry 0/)
  })

  it('a group at CONF_MEMBERS_MAX refuses one more member (\'invalid\', HTTP 400), and snapshots and restarts at the cap', async () => {
    const learners = Array.from({ length: CONF_MEMBERS_MAX - 1 }, (_, i) => `learner-${i}`)
    const conf: ConfState = { voters: [ID], votersOutgoing: [], learners, learnersNext: [], autoLeave: false }
    const dir = await temp.make()
    const storage = await RaftStorage.open(dir, { logger: new CaptureLogger() })
    const driver = follower(storage, { bootstrapConf: conf, electionTimeoutTicks: 4, snapshotEveryEntries: 10 })
    // a leader takes membership changes once the entry of its term is applied
    await waitFor(() => { const st = driver.status(); return st.role === 'leader' && st.applied === st.lastIndex }, 'the voter to lead, its first entry applied', 10_000, 5)
    const refusal = await driver.changeMembership({ changes: [{ type: 'add-learner', node: 'one-more' }] }).catch((err: Error) => err)
    expect(refusal).to.be.instanceOf(RaftError)
    expect(refusal).to.deep.include({ code: 'invalid', message: `too-many-members: the configuration would have ${CONF_MEMBERS_MAX + 1} members, more than CONF_MEMBERS_MAX (${CONF_MEMBERS_MAX})` })
    for (let i = 1; i <= 12; i++) { await driver.propose({ type: 'put', session: { clientId: 'c', sequence: i }, key: `k${i}`, value: new Uint8Array([i]) }) }
    await waitFor(() => driver.lastSnapshotIndex > 0 && !driver.snapshotting, 'a snapshot at the cap', 10_000, 5)
    await driver.stop()
    await storage.close()

    const reopened = await RaftStorage.open(dir, { logger: new CaptureLogger() })
    try {
      const restored = await reopened.load()
      expect(restored.snapshot?.meta.conf.learners).to.have.length(CONF_MEMBERS_MAX - 1)
      const again = RaftDriver.create({ ...optionsFor(reopened), restored })
      expect(again.status().conf.learners).to.have.length(CONF_MEMBERS_MAX - 1)
      expect(again.kv.appliedIndex).to.equal(restored.snapshot?.meta.index)
      expect(again.kv.get('k1')).to.deep.equal(new Uint8Array([1]))
    } finally {
      await reopened.close()
    }
  })
})

function optionsFor (store: RaftLogStore): RaftDriverOptions {
  return {
    ...kvApplication(),
    id: ID,
    store,
    outbox: { send: () => {} },
    restored: EMPTY,
    tickIntervalMs: 5,
    electionTimeoutTicks: 1_000_000,
    heartbeatIntervalTicks: 1,
    readOnlyMode: 'safe',
    snapshotEveryEntries: 1_000_000,
    autoPromoteLearners: false,
    log: pino({ level: 'silent' })
  }
}
