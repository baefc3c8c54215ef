/* eslint-disable no-console */
/*
 * npm run bench:crypto [-- --runs 30 --millis 1000 --dkg 4,7,16 --dkg-libp2p 4,7,16
 *                         --dkg-processes 4,7,16 --dkg-runs 5 --dkg-cpu-prof DIR]
 *
 * An empty list (`--dkg-libp2p ''`) skips that measurement.
 *
 * Threshold BLS and signature verification, in one process:
 *
 * - 7-of-10 threshold BLS end to end (identity/threshold): 7 partial
 *   signatures, each verified against its signer's public share (one blst
 *   batch), Lagrange combination (noble, G2), and verification of the group
 *   signature. Median and p90 of --runs runs, with the median of each step;
 *   the same pipeline with noble alone beside it, to show why blst is used.
 *   Target: ≤ 20 ms end to end. The fastest run is reported too: on a
 *   machine shared with other work it is the closest to the unloaded cost.
 * - Verification rates (verifications/s, one core, for --millis each):
 *   Ed25519 with @noble/curves and with node:crypto (OpenSSL; blst has no
 *   Ed25519), BLS12-381 min-pk with @noble/curves and with @chainsafe/blst.
 * - The DKG (protocols/dkg) in process for each n of --dkg, t = ⌊2n/3⌋ + 1:
 *   all n nodes in this one process over the test harness's instant
 *   network, so the wall time is the sum of every node's CPU; per node is
 *   that divided by n.
 * - The DKG over libp2p (node/dkg) for each n of --dkg-libp2p: n accord
 *   nodes (createAccordNode: TCP + Noise on loopback, admission, the dkg
 *   service with its default 100 ms tick) in this one process, so again
 *   every node's CPU adds up on this process's one core. The tick only
 *   sets the phase deadlines (a phase ends as soon as it has every
 *   message), so it does not lengthen a run where all are online. Timed: from
 *   run() on one node until its session is done (start, keys, begin,
 *   deal/response phases, the keystore write), which the service reports
 *   as durationMs; then until every node has stored the key. Beside it:
 *   the process's CPU time over the run (user + system, all threads), and
 *   the share of a core the n idle nodes took in the 2 s before it (their
 *   membership, DHT, metadata and gossip work, which the DKG competes with
 *   on the one JavaScript thread).
 *
 * - The DKG as deployed, for each n of --dkg-processes (none by default):
 *   n `accord start` processes on loopback (one per node, --raft off),
 *   --dkg-runs DKGs through `POST /v1/keys/dkg` on node 0 with all n as
 *   members, timed until it answers and until every node's `GET /v1/keys`
 *   shows the new key, with the CPU time of all n processes over the run
 *   (scripts/bench-dkg-processes.ts). --dkg-cpu-prof DIR profiles nodes 0
 *   and 1 (`node --cpu-prof`).
 *
 * Writes bench/results/crypto.json.
 */
import { generateKeyPairSync, sign as edSign, verify as edVerify } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import * as blst from '@chainsafe/blst'
import { mulAddUnsafe } from '@noble/curves/abstract/curve.js'
import { bls12_381 as bls12381 } from '@noble/curves/bls12-381.js'
import { ed25519 } from '@noble/curves/ed25519.js'
import { BLS_DST, G2, decodeG2, encodeG2, randomScalar, sign, verify, verifyBatchSameMessage } from '../identity/bls.ts'
import { commit } from '../identity/threshold/feldman.ts'
import { lagrangeAtZero, randomPolynomial, sharesOf } from '../identity/threshold/shamir.ts'
import { ThresholdPublicKey, combine, partialSign } from '../identity/threshold/tbls.ts'
import { addressOf, TestCluster } from '../test/lib/nodes.ts'
import { waitFor } from '../test/lib/wait.ts'
import { freshConfigs, participants, run } from '../test/unit/dkg-harness.ts'
import { seededRandomBytes } from '../test/unit/threshold-helpers.ts'
import { dkgProcesses } from './bench-dkg-processes.ts'
import { killChildrenOnExit, saveResults, ServerExitedError } from './bench-lib.ts'
import { percentile } from './percentile.ts'
import type { DkgProcessRun } from './bench-dkg-processes.ts'
import type { G2Point } from '../identity/bls.ts'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '30' },
    millis: { type: 'string', default: '1000' },
    dkg: { type: 'string', default: '4,7,16' },
    'dkg-libp2p': { type: 'string', default: '4,7,16' },
    'dkg-processes': { type: 'string', default: '' },
    'dkg-runs': { type: 'string', default: '5' },
    'dkg-cpu-prof': { type: 'string' }
  }
})
const sizes = (list: string): number[] => list === '' ? [] : list.split(',').map(Number)
const RUNS = Number(values.runs)
const MILLIS = Number(values.millis)
const DKG_SIZES = sizes(values.dkg)
const DKG_LIBP2P_SIZES = sizes(values['dkg-libp2p'])
const DKG_PROCESS_SIZES = sizes(values['dkg-processes'])
const DKG_RUNS = Number(values['dkg-runs'])
killChildrenOnExit()
const T = 7
const N = 10
const TARGET_MS = 20
/** How long the idle cluster's CPU use is sampled before each DKG over libp2p. */
const IDLE_SAMPLE_MS = 2000
const message = new TextEncoder().encode('accord bench round 1')

const median = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 0.5)
const round = (x: number, digits = 2): number => Number(x.toFixed(digits))

async function timedAsync<R> (fn: () => Promise<R>): Promise<[R, number]> {
  const start = performance.now()
  const result = await fn()
  return [result, performance.now() - start]
}

function timed<R> (fn: () => R): [R, number] {
  const start = performance.now()
  const result = fn()
  return [result, performance.now() - start]
}

/** Operations per second of `fn` over about MILLIS, after a warm-up. */
function rate (fn: () => unknown): number {
  for (let i = 0; i < 3; i++) { fn() }
  let calls = 0
  const start = performance.now()
  while (performance.now() - start < MILLIS) { fn(); calls++ }
  return calls * 1000 / (performance.now() - start)
}

// A 7-of-10 group with a dealer (the DKG makes the same shape).
const random = seededRandomBytes('bench-crypto')
const coefficients = randomPolynomial(randomScalar(random), T, random)
const shares = sharesOf(coefficients, N)
const key = new ThresholdPublicKey(commit(coefficients), N)
for (let i = 1; i <= N; i++) { key.publicShare(i) } // computed once per group, as a node does

function thresholdRun (): Record<string, number> {
  const signers = shares.slice(0, T)
  const [partials, signMs] = timed(() => signers.map(s => partialSign(s, message)))
  const [result, combineMs] = timed(() => combine(key, message, partials))
  if (!result.ok) { throw new Error(result.reason) }
  const [ok, verifyMs] = timed(() => verify(key.groupKey, message, result.signature))
  if (!ok) { throw new Error('the group signature does not verify') }
  // Where combine's time goes: the batch check of the partials, then Lagrange in G2.
  const [, batchVerifyMs] = timed(() => verifyBatchSameMessage(message, partials.map(p => ({ publicKey: key.publicShare(p.index), signature: p.signature }))))
  const [, lagrangeMs] = timed(() => encodeG2(mulAddUnsafe(G2, partials.map(p => decodeG2(p.signature) as G2Point), lagrangeAtZero(partials.map(p => p.index)))))
  return { endToEndMs: signMs + combineMs + verifyMs, partialSignMs: signMs, combineMs, verifyMs, batchVerifyMs, lagrangeMs }
}

// The same with noble alone: sign, check each partial with a pairing, combine, verify.
const L = bls12381.longSignatures
function nobleRun (): Record<string, number> {
  const start = performance.now()
  const H = L.hash(message, BLS_DST)
  const partials = shares.slice(0, T).map(s => ({ index: s.index, point: L.sign(H, bls12381.fields.Fr.toBytes(s.value)) }))
  for (const p of partials) {
    if (!L.verify(p.point, H, key.publicShare(p.index))) { throw new Error('bad partial') }
  }
  const sig = mulAddUnsafe(G2, partials.map(p => p.point), lagrangeAtZero(partials.map(p => p.index)))
  if (!L.verify(sig, H, key.groupKey)) { throw new Error('bad signature') }
  return { endToEndMs: performance.now() - start }
}

function summarize (rows: Array<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const k of Object.keys(rows[0])) { out[`${k}P50`] = round(median(rows.map(r => r[k]))) }
  out.endToEndMsP90 = round(percentile(rows.map(r => r.endToEndMs).sort((a, b) => a - b), 0.9))
  // The fastest run: the cost with the least interference from other work on a shared machine.
  out.endToEndMsMin = round(Math.min(...rows.map(r => r.endToEndMs)))
  return out
}

console.log(`threshold BLS ${T}-of-${N}: ${RUNS} runs each (load average ${loadavg().map(x => round(x)).join(', ')})`)
thresholdRun()
const blstRows = Array.from({ length: RUNS }, thresholdRun)
const nobleRows = Array.from({ length: Math.max(3, Math.ceil(RUNS / 5)) }, nobleRun)
const threshold = { t: T, n: N, blstAndNoble: summarize(blstRows), nobleOnly: summarize(nobleRows), targetMs: TARGET_MS }
console.table({ 'blst sign/verify + noble Lagrange': threshold.blstAndNoble, 'noble only': threshold.nobleOnly })

console.log(`verification rates (${MILLIS} ms each)`)
const edNoblePriv = ed25519.utils.randomSecretKey()
const edNoblePub = ed25519.getPublicKey(edNoblePriv)
const edNobleSig = ed25519.sign(message, edNoblePriv)
const edPair = generateKeyPairSync('ed25519')
const edNodePub = edPair.publicKey
const edNodeSig = edSign(null, message, edPair.privateKey)
const blsSecret = randomScalar(random)
const blsPub = bls12381.G1.Point.BASE.multiply(blsSecret).toBytes()
const blsSig = sign(blsSecret, message)
const blstPub = blst.PublicKey.fromBytes(blsPub, true)
const blstSig = blst.Signature.fromBytes(blsSig, true)
const nobleSig = decodeG2(blsSig) as G2Point
const noblePub = bls12381.G1.Point.fromBytes(blsPub)
const batch = shares.slice(0, T).map(s => ({ publicKey: key.publicShare(s.index), signature: partialSign(s, message).signature }))
const rates = {
  ed25519Noble: round(rate(() => ed25519.verify(edNobleSig, message, edNoblePub)), 0),
  ed25519NodeCrypto: round(rate(() => edVerify(null, message, edNodePub, edNodeSig)), 0),
  blsNoble: round(rate(() => L.verify(nobleSig, L.hash(message, BLS_DST), noblePub)), 0),
  blsBlst: round(rate(() => blst.verify(message, blstPub, blstSig)), 0),
  blsBlstFromBytes: round(rate(() => verify(blsPub, message, blsSig)), 0),
  blsBlstSameMessageBatchOf7PerSignature: round(rate(() => verifyBatchSameMessage(message, batch)) * T, 0)
}
console.table(Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, { verificationsPerSecond: v }])))

console.log('DKG in process (all nodes in this one process, no network)')
const dkg: Array<Record<string, number>> = []
for (const n of DKG_SIZES) {
  const t = Math.floor(2 * n / 3) + 1
  const ids = Array.from({ length: n }, (_, i) => `p${i + 1}`)
  const [configs, setupMs] = timed(() => freshConfigs(participants(ids, `bench-${n}`), t))
  const [result, runMs] = timed(() => run(configs))
  if ([...result.outcomes.values()].some(o => o.status !== 'done')) { throw new Error(`DKG n = ${n} did not finish`) }
  dkg.push({ n, t, totalMs: round(runMs, 0), perNodeMs: round(runMs / n, 0), keySetupMs: round(setupMs, 0) })
}
console.table(dkg)

console.log('DKG over libp2p (n accord nodes in this one process, TCP + Noise on loopback)')
const dkgLibp2p: Array<Record<string, number>> = []
for (const n of DKG_LIBP2P_SIZES) {
  const t = Math.floor(2 * n / 3) + 1
  const cluster = new TestCluster()
  try {
    const first = await cluster.add({ raft: false })
    const nodes = [first]
    for (let i = 1; i < n; i++) { nodes.push(await cluster.add({ raft: false, bootstrap: [addressOf(first)] })) }
    await waitFor(() => nodes.every(node => node.admission.admittedPeers().length >= n - 1), 'every node to admit the others', 120_000)
    const members = nodes.map(node => node.libp2p.peerId.toString())
    // What the n nodes' other services (membership, DHT, metadata, gossip)
    // take of this process's CPU while idle, just before the run: a DKG
    // shares the one JavaScript thread with that work.
    const idleStart = process.cpuUsage()
    await new Promise(resolve => setTimeout(resolve, IDLE_SAMPLE_MS))
    const idle = process.cpuUsage(idleStart)
    const loadAtStart = round(loadavg()[0])
    const cpuStart = process.cpuUsage()
    const [view, initiatorMs] = await timedAsync(async () => first.dkg.run({ members, threshold: t }))
    if (view.state !== 'done') { throw new Error(`DKG n = ${n} aborted: ${view.reason ?? ''}`) }
    const [, allStoredMs] = await timedAsync(async () => { await waitFor(() => nodes.every(node => node.dkg.summary()?.groupKey === view.groupKey), 'every node to store the key', 60_000) })
    const cpu = process.cpuUsage(cpuStart)
    dkgLibp2p.push({
      n,
      t,
      doneMs: view.durationMs ?? round(initiatorMs, 0),
      everyNodeStoredMs: round(initiatorMs + allStoredMs, 0),
      processCpuMs: round((cpu.user + cpu.system) / 1000, 0),
      idleClusterCpuPercent: round((idle.user + idle.system) / 10 / IDLE_SAMPLE_MS, 0),
      loadAverage1m: loadAtStart
    })
  } finally {
    await cluster.stop()
  }
}
console.table(dkgLibp2p)

/** A node that could not start (a port taken by another process) voids the cluster: a fresh one, up to 3 in all. */
async function dkgProcessesRetried (n: number): Promise<DkgProcessRun[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await dkgProcesses(n, { runs: DKG_RUNS, ...(values['dkg-cpu-prof'] !== undefined ? { cpuProfDir: values['dkg-cpu-prof'] } : {}) })
    } catch (err) {
      if (!(err instanceof ServerExitedError) || attempt === 3) { throw err }
      console.error(`${err.message}; on a fresh cluster again`)
    }
  }
}

const dkgProcessRuns: DkgProcessRun[] = []
const dkgProcessSummary: Array<Record<string, number | string>> = []
if (DKG_PROCESS_SIZES.length > 0) {
  console.log(`DKG as deployed (n accord processes, TCP + Noise on loopback), ${DKG_RUNS} runs each`)
  if (values['dkg-cpu-prof'] !== undefined) { await mkdir(values['dkg-cpu-prof'], { recursive: true }) }
  for (const n of DKG_PROCESS_SIZES) {
    const rows = await dkgProcessesRetried(n)
    dkgProcessRuns.push(...rows)
    const range = (k: keyof DkgProcessRun): string => `${Math.min(...rows.map(r => r[k] as number))}..${Math.max(...rows.map(r => r[k] as number))}`
    dkgProcessSummary.push({
      n,
      t: rows[0].t,
      runs: rows.length,
      everyNodeStoredMsP50: round(median(rows.map(r => r.everyNodeStoredMs)), 0),
      everyNodeStoredMs: range('everyNodeStoredMs'),
      requestMsP50: round(median(rows.map(r => r.requestMs)), 0),
      cpuMsAllProcessesP50: round(median(rows.map(r => r.cpuMsAllProcesses)), 0),
      cpuMsAllProcesses: range('cpuMsAllProcesses'),
      idleCpuPercent: range('idleCpuPercent'),
      loadAverage1m: range('loadAverage1m')
    })
  }
  console.table(dkgProcessSummary)
}

const loadAverage = loadavg().map(x => round(x))
console.log(`load average at the end: ${loadAverage.join(', ')}`)
await saveResults(DKG_PROCESS_SIZES.length > 0 && DKG_SIZES.length === 0 && DKG_LIBP2P_SIZES.length === 0 ? 'crypto-dkg-processes' : 'crypto', { threshold, rates, dkg, dkgLibp2p, dkgProcesses: { runs: dkgProcessRuns, summary: dkgProcessSummary }, loadAverage })
process.exit(0)
