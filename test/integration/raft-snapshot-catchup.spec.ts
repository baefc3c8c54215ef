/**
 * A follower that fell behind the leader's compacted log catches up by
 * InstallSnapshot through the whole real stack: the leader's background
 * snapshot and LevelDB storage, the libp2p transport's chunked snapshot
 * frames, the follower's sliced restore and its storage of the snapshot.
 */
import { expect } from 'aegir/chai'
import { scrapeMetrics } from '../lib/metrics.ts'
import { formRaftGroup, leaderOf, TestCluster, waitFor } from '../lib/nodes.ts'
import type { AccordNode } from '../../node/index.ts'
import type { RaftSummary } from '../../node/raft/service.ts'

/** Snapshot after this many applied entries (once they also hold as many bytes as the last snapshot). */
const SNAPSHOT_ENTRIES = 50
/**
 * 600 keys of 8 KiB: a state of about 4.8 MiB, so a snapshot spans five
 * 1 MiB transport chunks and five storage chunks, and the leader's
 * saveSnapshot() stages it beside the log writes (beyond 4 MiB).
 */
const KEYS = 600
const VALUE_BYTES = 8 * 1024
/** Requests in flight while writing. */
const CONCURRENCY = 32
/** Distinct leader snapshots past the stopped follower's log that the test waits for. */
const SNAPSHOTS_WHILE_DOWN = 2
/** Rounds of overwriting every key, at most, while the follower is down (one round holds a state's worth of bytes). */
const ROUNDS_MAX = 8

const key = (k: number): string => `key-${String(k).padStart(4, '0')}`

/** A value of VALUE_BYTES that names its round and key, so a read shows which write it saw. */
function valueOf (round: number, k: number): string {
  const head = `round ${round} ${key(k)} `
  return head + 'abcdefghijklmnopqrstuvwxyz'.repeat(Math.ceil(VALUE_BYTES / 26)).slice(0, VALUE_BYTES - head.length)
}

async function put (node: AccordNode, k: string, value: string): Promise<number> {
  const response = await fetch(`${node.apiUrl}/v1/kv/${k}`, { method: 'PUT', body: value })
  const body = await response.json()
  if (response.status !== 200) { throw new Error(`PUT ${k} answered ${response.status}: ${JSON.stringify(body)}`) }
  return body.index
}

/** Writes every [key, value] through `node`, CONCURRENCY at a time; returns the highest index written. */
async function putAll (node: AccordNode, writes: Array<[string, string]>): Promise<number> {
  let next = 0
  let highest = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < writes.length) {
      const [k, value] = writes[next++]
      highest = Math.max(highest, await put(node, k, value))
    }
  }))
  return highest
}

async function staleRead (node: AccordNode, k: string): Promise<string | null> {
  const response = await fetch(`${node.apiUrl}/v1/kv/${k}?consistency=stale`)
  if (response.status === 404) { return null }
  const body = await response.json()
  if (response.status !== 200) { throw new Error(`GET ${k} answered ${response.status}: ${JSON.stringify(body)}`) }
  return body.value
}

function summary (node: AccordNode): RaftSummary {
  if (node.raft == null) { throw new Error('raft is off') }
  return node.raft.summary()
}

describe('raft snapshot catch-up over libp2p (one process)', function () {
  this.timeout(120_000)
  let cluster: TestCluster

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => { await cluster.stop() })

  it('brings a restarted follower past the leader\'s compacted log by InstallSnapshot, then keeps replicating to it', async () => {
    const nodes = await formRaftGroup(cluster, 3, { raftSnapshotEntries: SNAPSHOT_ENTRIES })

    const leader = leaderOf(nodes)
    const expected = new Map<string, string>()
    const writeRound = async (round: number): Promise<number> => {
      const writes = Array.from({ length: KEYS }, (_, k): [string, string] => [key(k), valueOf(round, k)])
      const highest = await putAll(leader, writes)
      for (const [k, value] of writes) { expected.set(k, value) }
      return highest
    }

    // every node holds the first round and has taken snapshots of its own
    const firstRound = await writeRound(0)
    const [victim, survivor] = nodes.filter(n => n !== leader)
    await waitFor(() => summary(victim).applied >= firstRound, 'the follower to apply the first round')
    const victimSnapshotBefore = summary(victim).lastSnapshotIndex
    expect(victimSnapshotBefore, 'the follower\'s own snapshot').to.be.above(0)

    await victim.stop()
    // the stopped follower's log holds entries from the leader, which has them all
    const victimLogBound = Math.max(summary(leader).lastIndex, summary(survivor).lastIndex)

    // write until neither live node's log reaches back to the follower's
    // last entry, and the leader has taken several snapshots since
    const leaderSnapshots = new Set<number>()
    let round = 1
    while (round <= ROUNDS_MAX) {
      await writeRound(round++)
      const snapshot = summary(leader).lastSnapshotIndex
      if (snapshot > victimLogBound) { leaderSnapshots.add(snapshot) }
      if (leaderSnapshots.size >= SNAPSHOTS_WHILE_DOWN && summary(survivor).lastSnapshotIndex > victimLogBound) { break }
    }
    expect(leaderSnapshots.size, `leader snapshots past index ${victimLogBound} after ${round - 1} rounds`).to.be.at.least(SNAPSHOTS_WHILE_DOWN)
    expect(summary(survivor).lastSnapshotIndex, 'the other follower compacted past the stopped one as well').to.be.above(victimLogBound)
    const compactedTo = Math.min(summary(leader).lastSnapshotIndex, summary(survivor).lastSnapshotIndex)

    // the follower comes back from its data dir, with what it had
    const restarted = await cluster.restart(victim)
    expect(restarted.libp2p.peerId.equals(victim.libp2p.peerId)).to.equal(true)

    const leaderCommit = summary(leader).commit
    await waitFor(() => summary(restarted).applied >= leaderCommit, 'the restarted follower to apply up to the leader\'s commit')
    // no live node holds entry victimLogBound + 1 any more: only a snapshot
    // from the leader can have brought the follower this far
    const members = await (await fetch(`${restarted.apiUrl}/v1/raft/members`)).json()
    expect(members.lastSnapshotIndex, 'the snapshot the restarted follower installed').to.be.at.least(compactedTo)
    // and the transports say so directly
    const metric = async (node: AccordNode, name: string): Promise<number> => (await scrapeMetrics(node.apiUrl)).get(name) ?? NaN
    expect(await metric(restarted, 'accord_raft_transport_snapshots_received'), 'snapshots the restarted follower received').to.be.at.least(1)
    expect(await metric(leader, 'accord_raft_transport_snapshots_sent'), 'snapshots the leader sent').to.be.at.least(1)
    expect(await metric(restarted, 'accord_raft_snapshot_index')).to.equal(members.lastSnapshotIndex)

    for (const [k, value] of expected) {
      expect(await staleRead(restarted, k), `stale read of ${k} on the restarted follower`).to.equal(value)
    }

    // and it keeps applying new writes: the leader's, and its own (forwarded)
    const fromLeader = await put(leader, 'after-catch-up', valueOf(99, 0))
    const fromRestarted = await put(restarted, 'from-restarted', valueOf(99, 1))
    await waitFor(() => summary(restarted).applied >= Math.max(fromLeader, fromRestarted), 'the restarted follower to apply the new writes')
    expect(await staleRead(restarted, 'after-catch-up')).to.equal(valueOf(99, 0))
    expect(await staleRead(restarted, 'from-restarted')).to.equal(valueOf(99, 1))
    expect(summary(leader).voters).to.include(restarted.libp2p.peerId.toString())
  })
})
