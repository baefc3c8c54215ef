/* eslint-disable no-console */
/*
 * npm run bench:compact-checkpoints [-- --n 4,7,16 --runs 30]
 *
 * Compact PBFT checkpoint certificates (protocols/pbft/group.ts) against the
 * full ones, for each n (threshold = quorum):
 *
 * - Bytes, from the real encoding (encoding.ts) with real peer ids (52
 *   characters) and signature sizes: a stable checkpoint ('stable' record:
 *   what is persisted, and what a view change, a NEW-VIEW and a state
 *   transfer carry), full as today (a quorum of signed CHECKPOINTs), full
 *   with partials (a group that fell back: each CHECKPOINT carries its 96-byte
 *   partial), and compact (one 96-byte group signature); a VIEW-CHANGE with
 *   no prepared certificate; a NEW-VIEW with a quorum of those.
 * - CPU, median of --runs, one core: one replica's BLS work per checkpoint
 *   (its own partial; combining a quorum's partials: one blst batch
 *   verification, Lagrange in G2, a check of the result), and checking a
 *   certificate: compact (one pairing check) against full (a quorum of
 *   Ed25519 verifications, node:crypto).
 *
 * Pure: no network, no disk. Writes bench/results/compact-checkpoints.json.
 */
import { generateKeyPairSync, sign as edSign, verify as edVerify } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { randomScalar } from '../identity/bls.ts'
import { commit } from '../identity/threshold/feldman.ts'
import { randomPolynomial, sharesOf } from '../identity/threshold/shamir.ts'
import { combine, partialSign, ThresholdPublicKey, verifyGroupSignature } from '../identity/threshold/tbls.ts'
import { checkpointGroupPayload, encodeMessage, encodeRecord, quorumSize } from '../protocols/pbft/index.ts'
import type { Checkpoint, NewView, StableCheckpoint, ViewChange } from '../protocols/pbft/index.ts'

const { values } = parseArgs({ options: { n: { type: 'string', default: '4,7,16' }, runs: { type: 'string', default: '30' } } })
const sizes = values.n.split(',').map(Number)
const runs = Number(values.runs)
const SEQ = 64 * 1000
const DIGEST = 'ab'.repeat(32)

function median (samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

function timeMs (run: () => void): number {
  const samples: number[] = []
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint()
    run()
    samples.push(Number(process.hrtime.bigint() - start) / 1e6)
  }
  return Math.round(median(samples) * 1000) / 1000
}

async function peerIds (n: number): Promise<string[]> {
  return Promise.all(Array.from({ length: n }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()))
}

function viewChange (replica: string, stable: StableCheckpoint): ViewChange {
  return { type: 'view-change', replica, view: 5, stable, prepared: [], signature: new Uint8Array(64) }
}

const results = []
for (const n of sizes) {
  const quorum = quorumSize(n)
  const ids = await peerIds(n)
  const checkpoint = (replica: string, partial?: Uint8Array): Checkpoint => ({
    type: 'checkpoint', replica, seq: SEQ, stateDigest: DIGEST, signature: new Uint8Array(64), ...(partial !== undefined ? { partial } : {})
  })
  const full: StableCheckpoint = { seq: SEQ, stateDigest: DIGEST, proof: ids.slice(0, quorum).map(id => checkpoint(id)) }
  const withPartials: StableCheckpoint = { seq: SEQ, stateDigest: DIGEST, proof: ids.slice(0, quorum).map(id => checkpoint(id, new Uint8Array(96))) }
  const compact: StableCheckpoint = { seq: SEQ, stateDigest: DIGEST, proof: [], groupSignature: new Uint8Array(96) }
  const newView = (stable: StableCheckpoint): NewView => ({
    type: 'new-view', replica: ids[0], view: 5, viewChanges: ids.slice(0, quorum).map(id => viewChange(id, stable)), prePrepares: [], signature: new Uint8Array(64)
  })
  const bytes = {
    stableFull: encodeRecord({ kind: 'stable', checkpoint: full }).length,
    stableFullWithPartials: encodeRecord({ kind: 'stable', checkpoint: withPartials }).length,
    stableCompact: encodeRecord({ kind: 'stable', checkpoint: compact }).length,
    viewChangeFull: encodeMessage(viewChange(ids[0], full)).length,
    viewChangeCompact: encodeMessage(viewChange(ids[0], compact)).length,
    newViewFull: encodeMessage(newView(full)).length,
    newViewCompact: encodeMessage(newView(compact)).length,
    checkpointMessage: encodeMessage(checkpoint(ids[0])).length,
    checkpointMessageWithPartial: encodeMessage(checkpoint(ids[0], new Uint8Array(96))).length
  }

  // real threshold BLS with t = quorum, and real Ed25519 signatures of the checkpoints
  const random = (length: number): Uint8Array => crypto.getRandomValues(new Uint8Array(length))
  const polynomial = randomPolynomial(randomScalar(random), quorum, random)
  const shares = sharesOf(polynomial, n)
  const key = new ThresholdPublicKey(commit(polynomial), n)
  const payload = checkpointGroupPayload(SEQ, DIGEST)
  const partials = shares.slice(0, quorum).map(share => partialSign(share, payload))
  for (let i = 1; i <= n; i++) { key.publicShare(i) }
  const combined = combine(key, payload, partials)
  if (!combined.ok) { throw new Error(combined.reason) }
  const signers = Array.from({ length: quorum }, () => generateKeyPairSync('ed25519'))
  const edSignatures = signers.map(({ privateKey }) => edSign(null, payload, privateKey))
  const cpuMs = {
    signPartial: timeMs(() => { partialSign(shares[0], payload) }),
    combineQuorum: timeMs(() => { combine(key, payload, partials) }),
    verifyCompact: timeMs(() => { verifyGroupSignature(key, payload, combined.signature) }),
    verifyFullEd25519: timeMs(() => { signers.forEach(({ publicKey }, i) => edVerify(null, payload, publicKey, edSignatures[i])) })
  }
  results.push({ n, quorum, threshold: quorum, bytes, cpuMs })
  console.log(`n=${n} (quorum ${quorum}) bytes ${JSON.stringify(bytes)}`)
  console.log(`n=${n} cpu ms (median of ${runs}) ${JSON.stringify(cpuMs)}`)
}

const dir = join(import.meta.dirname, '..', 'bench', 'results')
await mkdir(dir, { recursive: true })
await writeFile(join(dir, 'compact-checkpoints.json'), JSON.stringify({ runs, results }, null, 2) + '\n')
