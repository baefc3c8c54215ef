/**
 * Digests, signatures and the checks of everything a replica accepts on
 * someone else's word: pre-prepares with their batches, prepared and
 * committed certificates, stable checkpoints and view changes. Each check
 * returns null when the thing holds, else a one-line reason.
 */
import { assert } from '../common/assert.ts'
import { ByteWriter } from '../kv/codec.ts'
import { REQUEST_BUNDLE_MAX, quorumSize } from './config.ts'
import { bundleSigningPayload, digestToBytes, signingPayload } from './encoding.ts'
import { checkCompactCheckpoint, groupProblem } from './group.ts'
import type { PbftLimits } from './config.ts'
import type {
  ClientRequest, CommittedCertificate, Digest, NodeId, PbftCrypto, PbftThresholdGroup, PrePrepare, PreparedCertificate, SignedMessage,
  StableCheckpoint, ViewChange
} from './types.ts'

/** The state digest of the genesis checkpoint (seq 0), which needs no proof. */
export const GENESIS_STATE_DIGEST: Digest = '0'.repeat(64)

export const GENESIS_CHECKPOINT: StableCheckpoint = Object.freeze({ seq: 0, stateDigest: GENESIS_STATE_DIGEST, proof: [] })

const BATCH_DOMAIN = new TextEncoder().encode('accord/pbft/batch/1')
const DIGEST_BYTES = 32

/** primary(v) = replicas[v mod n]. */
export function primaryOf (view: number, replicas: readonly NodeId[]): NodeId {
  return replicas[view % replicas.length]
}

/** The digest of a request: of what its client signed, so it does not depend on the signature's bytes. */
export function requestDigest (request: ClientRequest, crypto: PbftCrypto): Digest {
  return crypto.digest(signingPayload(request))
}

/** The digest of a batch: of its requests' digests in order. The empty batch is the null request. */
export function batchDigest (batch: ClientRequest[], crypto: PbftCrypto): Digest {
  return digestOfRequestDigests(batch.map(request => requestDigest(request, crypto)), crypto)
}

function digestOfRequestDigests (digests: Digest[], crypto: PbftCrypto): Digest {
  const w = new ByteWriter(BATCH_DOMAIN.length + 8 + 32 * digests.length)
  w.raw(BATCH_DOMAIN).varint(digests.length)
  for (const digest of digests) { w.raw(digestToBytes(digest)) }
  return crypto.digest(w.view())
}

/** A client's request, signed with the client's key (crypto.sign). */
export function signRequest (fields: Omit<ClientRequest, 'type' | 'signature'>, crypto: PbftCrypto): ClientRequest {
  const unsigned: ClientRequest = { type: 'request', ...fields, signature: new Uint8Array(0) }
  return { ...unsigned, signature: crypto.sign(signingPayload(unsigned)) }
}

/**
 * Signs `requests` of one client, unsigned so far, in place: a single one
 * alone (signRequest's signature), several in bundles of up to
 * REQUEST_BUNDLE_MAX, each bundle with one signature over the digests of
 * its requests (ClientRequest.bundle). One signature here, and one
 * verification on each replica (the node's crypto remembers valid
 * signatures), for a whole bundle.
 */
export function signRequests (requests: ClientRequest[], crypto: PbftCrypto): void {
  for (let start = 0; start < requests.length; start += REQUEST_BUNDLE_MAX) {
    const chunk = requests.slice(start, start + REQUEST_BUNDLE_MAX)
    if (chunk.length === 1) {
      const [request] = chunk
      delete request.bundle
      request.signature = crypto.sign(signingPayload(request))
      continue
    }
    const client = chunk[0].client
    assert(chunk.every(request => request.client === client), 'a bundle holds the requests of one client')
    const bundle = new Uint8Array(chunk.length * DIGEST_BYTES)
    chunk.forEach((request, i) => { bundle.set(digestToBytes(requestDigest(request, crypto)), i * DIGEST_BYTES) })
    const signature = crypto.sign(bundleSigningPayload(client, bundle))
    for (const request of chunk) {
      request.bundle = bundle
      request.signature = signature
    }
  }
}

export function verifyRequest (request: ClientRequest, crypto: PbftCrypto): boolean {
  const payload = signingPayload(request)
  return requestSignatureValid(request, payload, request.bundle === undefined ? null : crypto.digest(payload), crypto)
}

/**
 * Whether the client signed `request`, given its signingPayload (and, for a
 * bundled one, the digest of that payload): its signature over the payload,
 * or a bundle that holds the digest and its signature over the bundle.
 */
function requestSignatureValid (request: ClientRequest, payload: Uint8Array, digest: Digest | null, crypto: PbftCrypto): boolean {
  const { bundle } = request
  if (bundle === undefined) { return crypto.verify(request.client, payload, request.signature) }
  if (!(bundle instanceof Uint8Array) || digest === null || !bundleHolds(bundle, digestToBytes(digest))) { return false }
  return crypto.verify(request.client, bundleSigningPayload(request.client, bundle), request.signature)
}

function bundleHolds (bundle: Uint8Array, digest: Uint8Array): boolean {
  if (bundle.length % DIGEST_BYTES !== 0) { return false }
  for (let offset = 0; offset < bundle.length; offset += DIGEST_BYTES) {
    let i = 0
    while (i < DIGEST_BYTES && bundle[offset + i] === digest[i]) { i++ }
    if (i === DIGEST_BYTES) { return true }
  }
  return false
}

export function verifySigned (message: SignedMessage, crypto: PbftCrypto): boolean {
  return crypto.verify(message.replica, signingPayload(message), message.signature)
}

/** Operation bytes of a batch (what batchBytesMax bounds). */
export function batchBytes (batch: ClientRequest[]): number {
  let bytes = 0
  for (const request of batch) { bytes += request.operation.length }
  return bytes
}

/**
 * A pre-prepare's batch: within the limits, ordered requests only, matching
 * the digest, and (when `clients`) every request signed by its client.
 */
export function checkBatch (prePrepare: PrePrepare, crypto: PbftCrypto, limits: PbftLimits, clients: boolean): string | null {
  const { batch } = prePrepare
  if (batch.length > limits.batchRequestsMax) { return `batch of ${batch.length} requests, more than ${limits.batchRequestsMax}` }
  if (batchBytes(batch) > limits.batchBytesMax) { return `batch of more than ${limits.batchBytesMax} bytes` }
  const digests: Digest[] = []
  for (const request of batch) {
    if (request.readOnly) { return 'a read-only request in a batch' }
    if (request.operation.length > limits.operationBytesMax) { return 'an operation larger than operationBytesMax' }
    // one encoding per request serves the signature check and the digest
    const payload = signingPayload(request)
    const digest = crypto.digest(payload)
    if (clients && !requestSignatureValid(request, payload, digest, crypto)) { return `request ${request.client}@${request.timestamp} has an invalid client signature` }
    digests.push(digest)
  }
  if (digestOfRequestDigests(digests, crypto) !== prePrepare.digest) { return 'batch does not match its digest' }
  return null
}

/** Signed by the primary of its view. */
export function checkPrePrepareSigner (prePrepare: PrePrepare, replicas: readonly NodeId[], crypto: PbftCrypto): string | null {
  if (prePrepare.replica !== primaryOf(prePrepare.view, replicas)) { return `pre-prepare of view ${prePrepare.view} not from its primary` }
  if (!verifySigned(prePrepare, crypto)) { return 'pre-prepare has an invalid signature' }
  return null
}

/** Votes (prepares or commits) from `needed` distinct replicas, all matching the pre-prepare and validly signed. */
function checkVotes (
  prePrepare: PrePrepare, votes: Array<{ type: string, replica: NodeId, view: number, seq: number, digest: Digest }>,
  needed: number, excluded: NodeId | null, replicas: readonly NodeId[], crypto: PbftCrypto
): string | null {
  const seen = new Set<NodeId>()
  for (const vote of votes) {
    if (!replicas.includes(vote.replica)) { return `${vote.type} from ${vote.replica}, not a replica` }
    if (vote.replica === excluded) { return `${vote.type} from the primary` }
    if (seen.has(vote.replica)) { return `two ${vote.type}s from ${vote.replica}` }
    seen.add(vote.replica)
    if (vote.view !== prePrepare.view || vote.seq !== prePrepare.seq || vote.digest !== prePrepare.digest) {
      return `${vote.type} from ${vote.replica} does not match the pre-prepare`
    }
    if (!verifySigned(vote as SignedMessage, crypto)) { return `${vote.type} from ${vote.replica} has an invalid signature` }
  }
  if (seen.size < needed) { return `${seen.size} ${votes[0]?.type ?? 'vote'}s, ${needed} needed` }
  return null
}

/** A pre-prepare and quorum − 1 matching prepares from distinct backups. */
export function checkPreparedCertificate (certificate: PreparedCertificate, replicas: readonly NodeId[], crypto: PbftCrypto, limits: PbftLimits): string | null {
  const { prePrepare, prepares } = certificate
  const primary = primaryOf(prePrepare.view, replicas)
  return checkPrePrepareSigner(prePrepare, replicas, crypto) ??
    checkBatch(prePrepare, crypto, limits, false) ??
    checkVotes(prePrepare, prepares, quorumSize(replicas.length) - 1, primary, replicas, crypto)
}

/** A pre-prepare with a valid batch and a quorum of matching commits from distinct replicas. */
export function checkCommittedCertificate (certificate: CommittedCertificate, replicas: readonly NodeId[], crypto: PbftCrypto, limits: PbftLimits): string | null {
  const { prePrepare, commits } = certificate
  return checkPrePrepareSigner(prePrepare, replicas, crypto) ??
    checkBatch(prePrepare, crypto, limits, true) ??
    checkVotes(prePrepare, commits, quorumSize(replicas.length), null, replicas, crypto)
}

/**
 * A quorum of matching CHECKPOINT messages from distinct replicas (the
 * genesis needs none), or, compact, the group's threshold signature of the
 * checkpoint, when `group` is known here and applies to `replicas`
 * (group.ts). A compact one is refused otherwise: this replica cannot tell
 * what it proves.
 */
export function checkStableCheckpoint (stable: StableCheckpoint, replicas: readonly NodeId[], crypto: PbftCrypto, group?: PbftThresholdGroup | null): string | null {
  if (stable.seq === 0) {
    return stable.proof.length === 0 && stable.stateDigest === GENESIS_STATE_DIGEST && stable.groupSignature === undefined ? null : 'malformed genesis checkpoint'
  }
  if (stable.groupSignature !== undefined) { return checkCompactCheckpoint(stable, replicas, group) }
  const seen = new Set<NodeId>()
  for (const checkpoint of stable.proof) {
    if (!replicas.includes(checkpoint.replica)) { return `checkpoint from ${checkpoint.replica}, not a replica` }
    if (seen.has(checkpoint.replica)) { return `two checkpoints from ${checkpoint.replica}` }
    seen.add(checkpoint.replica)
    if (checkpoint.seq !== stable.seq || checkpoint.stateDigest !== stable.stateDigest) { return 'a checkpoint in the proof does not match' }
    if (!verifySigned(checkpoint, crypto)) { return `checkpoint from ${checkpoint.replica} has an invalid signature` }
  }
  const needed = quorumSize(replicas.length)
  return seen.size >= needed ? null : `stable checkpoint proven by ${seen.size} checkpoints, ${needed} needed`
}

/**
 * The replicas whose checkpoints prove a stable checkpoint at `seq`: the
 * set that ordered it (across a reconfiguration, the previous set up to the
 * switch).
 */
export type ProversOf = (seq: number) => readonly NodeId[]

/**
 * What the checker knows besides the replica sets: the threshold group
 * (compact certificates), and the stable checkpoint it holds as proven
 * (checkCarriedStable).
 */
export interface StableChecks {
  group?: PbftThresholdGroup | null
  proven?: StableCheckpoint
}

/**
 * The stable checkpoint a view change carries: checkStableCheckpoint,
 * except for two that this replica takes as they are. Its own proven
 * stable checkpoint (same seq and digest). And a compact one it cannot
 * check (it knows no group that applies: the group was reshared to other
 * members, or this replica joined without a share) below its own: a
 * stable checkpoint carried in a view change moves nothing here unless it
 * is above the low watermark (those are checked, replica.ts #adoptStable),
 * and below it, it only bounds the sender's prepared certificates, which
 * are checked in full; a lagging honest replica's view change says as
 * much. So a compact certificate stays acceptable at a reconfiguration's
 * switch, where every replica holds the one the view changes carry.
 */
export function checkCarriedStable (stable: StableCheckpoint, provers: readonly NodeId[], crypto: PbftCrypto, checks: StableChecks = {}): string | null {
  const { proven } = checks
  if (proven !== undefined && proven.seq > 0) {
    if (proven.seq === stable.seq && proven.stateDigest === stable.stateDigest) { return null }
    if (stable.seq < proven.seq && stable.seq > 0 && stable.groupSignature !== undefined && groupProblem(checks.group, provers) !== null) { return null }
  }
  return checkStableCheckpoint(stable, provers, crypto, checks.group)
}

/**
 * A view change in full: signed by a replica, its stable checkpoint proven,
 * and at most one valid prepared certificate per seq, each within the
 * watermarks of that checkpoint and from a view before the one it asks for.
 */
export function checkViewChange (
  viewChange: ViewChange, replicas: readonly NodeId[], crypto: PbftCrypto, limits: PbftLimits, provers: ProversOf = () => replicas,
  checks: StableChecks = {}
): string | null {
  if (!replicas.includes(viewChange.replica)) { return `view change from ${viewChange.replica}, not a replica` }
  if (!verifySigned(viewChange, crypto)) { return `view change from ${viewChange.replica} has an invalid signature` }
  const stableProblem = checkCarriedStable(viewChange.stable, provers(viewChange.stable.seq), crypto, checks)
  if (stableProblem !== null) { return stableProblem }
  const low = viewChange.stable.seq
  const seqs = new Set<number>()
  for (const certificate of viewChange.prepared) {
    const { seq, view } = certificate.prePrepare
    if (seq <= low || seq > low + limits.watermarkWindow) { return `prepared certificate for seq ${seq} outside the watermarks of ${low}` }
    if (view >= viewChange.view) { return `prepared certificate of view ${view}, not before ${viewChange.view}` }
    if (seqs.has(seq)) { return `two prepared certificates for seq ${seq}` }
    seqs.add(seq)
    const problem = checkPreparedCertificate(certificate, replicas, crypto, limits)
    if (problem !== null) { return `prepared certificate for seq ${seq}: ${problem}` }
  }
  return null
}
