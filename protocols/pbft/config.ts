/**
 * The named limits of the PBFT core, their defaults and checks, and the
 * replica-count arithmetic (f and the quorum size).
 */
import { SCORE_MAX } from './suspicion.ts'

export interface PbftLimits {
  /** A checkpoint is taken every K sequence numbers (K of the paper). */
  checkpointInterval: number
  /** Sequence numbers accepted lie in (low, low + watermarkWindow], low = last stable checkpoint. */
  watermarkWindow: number
  /** Requests per batch (pre-prepare). */
  batchRequestsMax: number
  /** Bytes of operations per batch (a single operation up to operationBytesMax always fits). */
  batchBytesMax: number
  /** Batches the primary has pre-prepared that are not yet committed here. */
  pipelineMax: number
  /** A backup waiting this long for a request it holds to execute starts a view change. */
  requestTimeoutTicks: number
  /** First view-change timeout; it doubles with each view change that fails to complete. */
  viewChangeTimeoutTicks: number
  /** Ceiling of the doubling view-change timeout. */
  viewChangeTimeoutTicksMax: number
  /** Client requests waiting to be ordered, over all clients. */
  pendingRequestsMax: number
  /** Client requests waiting to be ordered, per client. */
  pendingPerClientMax: number
  /** Operation bytes of the client requests waiting to be ordered, over all clients. */
  pendingBytesMax: number
  /** Messages buffered for a later view or above the high watermark, over all peers. */
  futureMessagesMax: number
  /** Encoded bytes of those messages, over all peers (a pre-prepare may carry batchBytesMax). */
  futureBytesMax: number
  /** Pre-prepares, prepares and commits at or below the low watermark one peer may send between two moves of it before it is isolated. */
  outsideWatermarksMax: number
  /** Bytes of one client operation. */
  operationBytesMax: number
  /** Committed certificates in one COMMITTED-BATCHES answer. */
  certificatesPerFetchMax: number
  /** A request a backup holds that waited this long without being pre-prepared makes it suspect the primary, each tick (suspicion.ts). */
  slowPrimaryTicks: number
  /** A primary whose score (100 = trusted) falls to this is replaced by a view change. */
  suspicionViewChangeScore: number
}

const KIB = 1024
const MIB = 1024 * KIB

export const PBFT_DEFAULTS: Readonly<PbftLimits> = Object.freeze({
  checkpointInterval: 64,
  watermarkWindow: 256,
  batchRequestsMax: 256,
  batchBytesMax: 4 * MIB,
  pipelineMax: 8,
  requestTimeoutTicks: 20,
  viewChangeTimeoutTicks: 20,
  viewChangeTimeoutTicksMax: 640,
  pendingRequestsMax: 8192,
  pendingPerClientMax: 64,
  pendingBytesMax: 64 * MIB,
  futureMessagesMax: 4096,
  futureBytesMax: 64 * MIB,
  outsideWatermarksMax: 2048,
  // a KV compare-and-set carries two values of up to 1 MiB each (protocols/kv)
  operationBytesMax: 2 * MIB + 64 * KIB,
  certificatesPerFetchMax: 32,
  // as long as the request timer: a request waiting that long is overdue whatever else executes
  slowPrimaryTicks: 20,
  // 25 ticks of overdue requests after slowPrimaryTicks, at 2 points a tick, from a trusted primary
  suspicionViewChangeScore: 50
})

/** Most replicas a message may name (proofs, view-change sets); bounds decoding before n is known. */
export const REPLICAS_MAX = 1024

/** Longest NodeId accepted (PeerId strings are ~52 characters). */
export const NODE_ID_LENGTH_MAX = 256

/** Largest result in a reply. */
export const RESULT_BYTES_MAX = 4 * MIB

/** Longest signature accepted (Ed25519's are 64 bytes). */
export const SIGNATURE_BYTES_MAX = 256
/** A checkpoint's partial and a compact certificate's group signature: compressed BLS12-381 G2 points (group.ts). */
export const GROUP_SIGNATURE_BYTES = 96

/**
 * Most requests one client signature may cover (ClientRequest.bundle): a
 * bundled request carries 32 bytes per request of its bundle.
 */
export const REQUEST_BUNDLE_MAX = 16

const LIMIT_KEYS = Object.keys(PBFT_DEFAULTS) as Array<keyof PbftLimits>

/** Fills defaults and rejects limits that cannot work (a programming error: throws RangeError). */
export function resolvePbftLimits (init: Partial<PbftLimits> = {}): PbftLimits {
  const limits: PbftLimits = { ...PBFT_DEFAULTS }
  for (const [key, value] of Object.entries(init)) {
    if (value === undefined) { continue }
    if (!LIMIT_KEYS.includes(key as keyof PbftLimits)) { throw new RangeError(`pbft limits: unknown limit ${key}`) }
    limits[key as keyof PbftLimits] = value
  }
  for (const key of LIMIT_KEYS) {
    const value = limits[key]
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`pbft limits: ${key} must be a positive integer, got ${String(value)}`)
    }
  }
  if (limits.watermarkWindow < 2 * limits.checkpointInterval) {
    throw new RangeError('pbft limits: watermarkWindow must be at least 2 * checkpointInterval (else the primary stalls before the next checkpoint)')
  }
  if (limits.pipelineMax > limits.watermarkWindow) {
    throw new RangeError('pbft limits: pipelineMax must not exceed watermarkWindow')
  }
  if (limits.pendingBytesMax < limits.operationBytesMax) {
    throw new RangeError('pbft limits: pendingBytesMax must be at least operationBytesMax')
  }
  if (limits.batchBytesMax < limits.operationBytesMax) {
    throw new RangeError('pbft limits: batchBytesMax must be at least operationBytesMax')
  }
  if (limits.viewChangeTimeoutTicksMax < limits.viewChangeTimeoutTicks) {
    throw new RangeError('pbft limits: viewChangeTimeoutTicksMax must be at least viewChangeTimeoutTicks')
  }
  if (limits.suspicionViewChangeScore >= SCORE_MAX) {
    throw new RangeError(`pbft limits: suspicionViewChangeScore must be below ${SCORE_MAX} (the score of a trusted replica)`)
  }
  if (limits.pendingPerClientMax > limits.pendingRequestsMax) {
    throw new RangeError('pbft limits: pendingPerClientMax must not exceed pendingRequestsMax')
  }
  return limits
}

/** f: the Byzantine replicas n replicas tolerate, ⌊(n−1)/3⌋. */
export function faultsTolerated (n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) { throw new RangeError(`pbft: replica count must be a positive integer, got ${n}`) }
  return Math.floor((n - 1) / 3)
}

/** ⌈(n+f+1)/2⌉: any two quorums share f+1 replicas, one of them honest (2f+1 when n = 3f+1). */
export function quorumSize (n: number): number {
  return Math.ceil((n + faultsTolerated(n) + 1) / 2)
}
