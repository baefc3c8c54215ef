/**
 * Compact PBFT checkpoint certificates in accord nodes (createAccordNode,
 * TCP + Noise on loopback, in one process): four PBFT replicas run a DKG
 * (threshold 3, the quorum of 4) over /accord/dkg/1.1.0; from then on their
 * stable checkpoints are proven by one BLS group signature. A replica
 * stopped meanwhile comes back two checkpoints behind (the others' logs
 * below their stable checkpoint are gone) and catches up by a state
 * transfer proven by the group signature. Then it lies in its partials:
 * its own signed CHECKPOINT is the evidence the others isolate it on,
 * a replica that was down meanwhile too.
 */
import { expect } from 'aegir/chai'
import { verifyGroupSignature } from '../../identity/threshold/tbls.ts'
import { formatStatus } from '../../node/cli/status.ts'
import { PbftFileStore, pbftStorageDir } from '../../node/pbft/storage.ts'
import { checkpointGroupPayload, decodeRecord, encodeRecord, PBFT_DEFAULTS } from '../../protocols/pbft/index.ts'
import { identityFor } from '../lib/identities.ts'
import { scrapeMetrics } from '../lib/metrics.ts'
import { addressOf, TestCluster } from '../lib/nodes.ts'
import { waitFor } from '../lib/wait.ts'
import type { AccordNode } from '../../node/index.ts'
import type { StableCheckpoint } from '../../protocols/pbft/index.ts'

const DEADLINE_MS = 30_000
const INTERVAL = PBFT_DEFAULTS.checkpointInterval

/** Writes through `node`'s PBFT client, one at a time (a batch each, mostly), until it executed through `seq`; the last key written. */
async function writeThrough (node: AccordNode, seq: number): Promise<string> {
  let key = ''
  for (let i = 0; (node.bft?.summary().executed ?? 0) < seq; i++) {
    key = `k${seq}-${i}`
    expect(await node.bft?.put(key, key)).to.include({ ok: true })
  }
  return key
}

/** The stable checkpoint `node`'s PBFT store holds with its snapshot (the node must be stopped). */
async function storedStable (node: AccordNode): Promise<StableCheckpoint | undefined> {
  const store = await PbftFileStore.open(pbftStorageDir(node.config.dataDir), { codec: { encode: encodeRecord, decode: (bytes) => decodeRecord(bytes) }, snapshotBytesMax: 64 * 1024 * 1024 })
  try {
    return (await store.load()).snapshot?.checkpoint
  } finally {
    await store.close()
  }
}

describe('pbft compact checkpoint certificates (4 replicas with a DKG key, createAccordNode)', function () {
  this.timeout(120_000)
  const cluster = new TestCluster()

  after(async () => { await cluster.stop() })

  it('stable checkpoints carry one group signature; a replica two checkpoints behind catches up by a state transfer it proves with it', async () => {
    const dirs = await Promise.all([0, 1, 2, 3].map(async () => identityFor(await cluster.newDataDir())))
    const replicas = dirs.map(d => d.peerId)
    const config = { api: '127.0.0.1:0', raft: false, bftReplicas: replicas }
    const options = { dkgSettings: { keyWaitMs: 3_000 } }
    const first = await cluster.add({ ...config, dataDir: dirs[0].dataDir }, options)
    const nodes = [first]
    for (const { dataDir } of dirs.slice(1)) { nodes.push(await cluster.add({ ...config, dataDir, bootstrap: [addressOf(first)] }, options)) }
    await waitFor(() => nodes.every(n => n.admission.admittedPeers().length >= 3), 'every node to admit the others', DEADLINE_MS)
    expect(first.bft?.summary()).to.include({ compactCheckpoints: false, checkpointGroupKey: null })

    const dkg = await first.dkg.run({ members: replicas, threshold: 3 })
    expect(dkg.state, dkg.reason).to.equal('done')
    const groupKey = dkg.groupKey as string
    await waitFor(() => nodes.every(n => n.bft?.summary().compactCheckpoints === true), 'every replica to take the group for its checkpoints', DEADLINE_MS)
    for (const node of nodes) { expect(node.bft?.summary().checkpointGroupKey).to.equal(groupKey) }
    const status = await (await fetch(`${first.apiUrl ?? ''}/v1/status`)).json()
    expect(status.bft).to.include({ compactCheckpoints: true, checkpointGroupKey: groupKey })
    expect(formatStatus(await first.status())).to.include(`compact checkpoint certificates: one signature of group key ${groupKey}`)

    // the first checkpoint: proven by the group's signature everywhere
    await writeThrough(first, INTERVAL)
    await waitFor(() => nodes.every(n => (n.bft?.summary().stableCheckpoint ?? 0) >= INTERVAL), 'every replica to reach the first stable checkpoint', DEADLINE_MS)

    // d stops; the others go two checkpoints further (their logs below the stable checkpoint are collected)
    const d = nodes[3]
    await d.stop()
    const last = await writeThrough(first, 3 * INTERVAL + 1)
    await waitFor(() => nodes.slice(0, 3).every(n => (n.bft?.summary().stableCheckpoint ?? 0) >= 3 * INTERVAL), 'the others to reach the third stable checkpoint', DEADLINE_MS)
    const stableOfD = await storedStable(d)
    expect(stableOfD?.seq).to.be.at.least(INTERVAL)
    expect(stableOfD?.proof).to.deep.equal([])
    expect(stableOfD?.groupSignature?.length).to.equal(96)

    const back = await cluster.restart(d)
    expect(back.bft?.summary().compactCheckpoints).to.equal(true)
    await waitFor(() => (back.bft?.summary().stableCheckpoint ?? 0) >= 3 * INTERVAL, 'the restarted replica to install a state past the others\' logs', DEADLINE_MS)
    await waitFor(() => back.bft?.localValue(last) !== null, 'the restarted replica to hold the last write', DEADLINE_MS)
    expect((await scrapeMetrics(back.apiUrl)).get('accord_pbft_state_transfers_total')).to.be.at.least(1)
    expect((await scrapeMetrics(first.apiUrl)).get('accord_pbft_bad_checkpoint_partials_total')).to.equal(0)

    // what it installed was proven by one group signature, kept compact on disk
    await back.stop()
    const installed = await storedStable(back)
    expect(installed?.seq).to.be.at.least(3 * INTERVAL)
    expect(installed?.proof).to.deep.equal([])
    const key = Uint8Array.from(Buffer.from(groupKey, 'hex'))
    expect(verifyGroupSignature(key, checkpointGroupPayload(installed?.seq ?? 0, installed?.stateDigest ?? ''), installed?.groupSignature ?? new Uint8Array())).to.equal(true)

    // then d lies in its partials
    await convictsALiar(cluster, nodes, back)
  })
})

/**
 * `down` comes back lying: its checkpoints carry garbage for its partial
 * (named under the real group); c is stopped, so the liar's partial is in
 * every quorum. a and b isolate it on its own signed checkpoint; c,
 * restarted, convicts it too (on the liar's checkpoint sent again, or on
 * the evidence topic's republication).
 */
async function convictsALiar (cluster: TestCluster, nodes: AccordNode[], down: AccordNode): Promise<void> {
  const [first, second, c] = nodes
  const liar = await cluster.restart(down)
  const liarId = liar.libp2p.peerId.toString()
  const executed = (node: AccordNode): number => node.bft?.summary().executed ?? 0
  await waitFor(() => liar.bft?.summary().compactCheckpoints === true && executed(liar) >= executed(first), 'the liar to take the group and catch up', DEADLINE_MS)
  liar.bft?.setCheckpointSigner({
    checkpointGroup: () => liar.dkg.checkpointGroup(),
    signCheckpointPartial: () => new Uint8Array(96).fill(7),
    onGroupChange: listener => liar.dkg.onGroupChange(listener)
  })
  await c.stop()
  await writeThrough(first, (Math.floor(executed(first) / INTERVAL) + 1) * INTERVAL)
  const convicted = (node: AccordNode): boolean => node.bft?.summary().isolated.some(i => i.peerId === liarId && i.reason === 'bad-checkpoint-partial') === true
  await waitFor(() => convicted(first) && convicted(second), 'a and b to isolate the liar on the evidence', DEADLINE_MS)
  expect((await scrapeMetrics(first.apiUrl)).get('accord_pbft_bad_checkpoint_partials_total')).to.be.at.least(1)
  const cBack = await cluster.restart(c)
  await waitFor(() => convicted(cBack), 'c to isolate the liar', 2 * DEADLINE_MS)
}
