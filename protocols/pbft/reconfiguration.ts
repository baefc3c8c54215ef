/**
 * Reconfiguration: changing the replica set by an ordered request, as in
 * BFT-SMaRt. The request is a client request whose operation starts with
 * RECONFIGURATION_PREFIX and carries the next epoch, the new replica list
 * and the approvals (signatures) of a quorum of the current replicas over
 * both. The core recognises it when it hands out the batch that holds it
 * (the same seq on every honest replica), and the new set orders from the
 * first checkpoint at or above that seq + watermarkWindow (effectiveAfter):
 * no honest replica can have voted that far before it knew.
 *
 * Encoding (varint = unsigned LEB128, text = varint length + UTF-8):
 * RECONFIGURATION_PREFIX, varint epoch, varint count, text replica × count,
 * varint approvals, (text replica, bytes signature) × approvals; nothing may
 * follow. An approval signs APPROVAL_DOMAIN, varint epoch, varint count,
 * text replica × count.
 */
import { ByteReader, ByteWriter, DecodeError } from '../kv/codec.ts'
import { NODE_ID_LENGTH_MAX, REPLICAS_MAX, SIGNATURE_BYTES_MAX, quorumSize } from './config.ts'
import type { NodeId, PbftCrypto } from './types.ts'

const utf8 = new TextEncoder()

/** Operation bytes that start with this are a reconfiguration, not the state machine's (it starts with NUL: no KV operation does). */
export const RECONFIGURATION_PREFIX = utf8.encode('\u0000accord/pbft/reconfigure/1\u0000')
const APPROVAL_DOMAIN = utf8.encode('accord/pbft/approve/1')

/** A replica set and where it starts: it orders the seqs above `afterSeq` (0 for the genesis set). */
export interface PbftConfiguration {
  epoch: number
  replicas: NodeId[]
  afterSeq: number
}

/** A current replica's signature over the next epoch and its replica list. */
export interface Approval {
  replica: NodeId
  signature: Uint8Array
}

export interface Reconfiguration {
  epoch: number
  replicas: NodeId[]
  approvals: Approval[]
}

/**
 * What the state machine keeps of configurations: the latest decided one
 * (in force, or pending until its afterSeq is a stable checkpoint) and the
 * one before it (whose replicas proved the checkpoints up to the switch).
 */
export interface ConfigurationState {
  latest: PbftConfiguration
  previous: PbftConfiguration | null
}

export function genesisConfiguration (replicas: NodeId[]): PbftConfiguration {
  return { epoch: 0, replicas: [...replicas], afterSeq: 0 }
}

/**
 * The seq after which a configuration decided at `decidedSeq` orders: the
 * first checkpoint at or above decidedSeq + watermarkWindow.
 */
export function effectiveAfter (decidedSeq: number, limits: { watermarkWindow: number, checkpointInterval: number }): number {
  const earliest = decidedSeq + limits.watermarkWindow
  return Math.ceil(earliest / limits.checkpointInterval) * limits.checkpointInterval
}

function writeReplicas (writer: ByteWriter, epoch: number, replicas: readonly NodeId[]): ByteWriter {
  writer.varint(epoch).varint(replicas.length)
  for (const replica of replicas) { writer.utf8(replica) }
  return writer
}

/** What an approval signs. */
export function approvalPayload (epoch: number, replicas: readonly NodeId[]): Uint8Array {
  return writeReplicas(new ByteWriter(64).raw(APPROVAL_DOMAIN), epoch, replicas).finish()
}

export function approve (epoch: number, replicas: readonly NodeId[], self: NodeId, crypto: PbftCrypto): Approval {
  return { replica: self, signature: crypto.sign(approvalPayload(epoch, replicas)) }
}

export function verifyApproval (approval: Approval, epoch: number, replicas: readonly NodeId[], crypto: PbftCrypto): boolean {
  return crypto.verify(approval.replica, approvalPayload(epoch, replicas), approval.signature)
}

export function isReconfiguration (operation: Uint8Array): boolean {
  if (operation.length < RECONFIGURATION_PREFIX.length) { return false }
  for (let i = 0; i < RECONFIGURATION_PREFIX.length; i++) {
    if (operation[i] !== RECONFIGURATION_PREFIX[i]) { return false }
  }
  return true
}

export function encodeReconfiguration (reconfiguration: Reconfiguration): Uint8Array {
  const writer = writeReplicas(new ByteWriter(128).raw(RECONFIGURATION_PREFIX), reconfiguration.epoch, reconfiguration.replicas)
  writer.varint(reconfiguration.approvals.length)
  for (const { replica, signature } of reconfiguration.approvals) { writer.utf8(replica).bytes(signature) }
  return writer.finish()
}

function readIds (reader: ByteReader, what: string): NodeId[] {
  const count = reader.varint(what)
  if (count > REPLICAS_MAX) { throw new DecodeError(`more than ${REPLICAS_MAX} ${what}`) }
  const ids: NodeId[] = []
  for (let i = 0; i < count; i++) { ids.push(readId(reader)) }
  return ids
}

function readId (reader: ByteReader): NodeId {
  const id = reader.utf8('replica id', NODE_ID_LENGTH_MAX)
  if (id.length === 0) { throw new DecodeError('a replica id is empty') }
  return id
}

/** The reconfiguration an operation carries; never throws. Check isReconfiguration first. */
export function decodeReconfiguration (operation: Uint8Array): { ok: true, value: Reconfiguration } | { ok: false, error: string } {
  try {
    if (!isReconfiguration(operation)) { throw new DecodeError('not a reconfiguration') }
    const reader = new ByteReader(operation.subarray(RECONFIGURATION_PREFIX.length))
    const epoch = reader.varint('epoch')
    const replicas = readIds(reader, 'replicas')
    const count = reader.varint('approvals')
    if (count > REPLICAS_MAX) { throw new DecodeError(`more than ${REPLICAS_MAX} approvals`) }
    const approvals: Approval[] = []
    for (let i = 0; i < count; i++) {
      const replica = readId(reader)
      approvals.push({ replica, signature: reader.bytes('approval signature', SIGNATURE_BYTES_MAX).slice() })
    }
    reader.end('reconfiguration')
    return { ok: true, value: { epoch, replicas, approvals } }
  } catch (err) {
    return { ok: false, error: err instanceof DecodeError ? err.message : String(err) }
  }
}

/** Why a replica list cannot be a replica set, or null. */
export function replicaSetProblem (replicas: readonly NodeId[]): string | null {
  if (replicas.length === 0) { return 'the replica set is empty' }
  if (replicas.length > REPLICAS_MAX) { return `more than ${REPLICAS_MAX} replicas` }
  if (new Set(replicas).size !== replicas.length) { return 'a replica is listed twice' }
  return null
}

/**
 * Whether `reconfiguration` may follow `current`: the next epoch, a valid
 * set, and valid approvals from a quorum of distinct current replicas.
 * Deterministic: every honest replica reaches the same verdict at the same
 * seq (it depends on the configuration in force there, not on the clock).
 */
export function checkReconfiguration (reconfiguration: Reconfiguration, current: PbftConfiguration, crypto: PbftCrypto): string | null {
  const { epoch, replicas, approvals } = reconfiguration
  if (epoch !== current.epoch + 1) { return `epoch ${epoch}, expected ${current.epoch + 1}` }
  const setProblem = replicaSetProblem(replicas)
  if (setProblem !== null) { return setProblem }
  const payload = approvalPayload(epoch, replicas)
  const approvers = new Set<NodeId>()
  for (const approval of approvals) {
    if (!current.replicas.includes(approval.replica)) { return `approval from ${approval.replica}, not a replica of epoch ${current.epoch}` }
    if (approvers.has(approval.replica)) { return `two approvals from ${approval.replica}` }
    if (!crypto.verify(approval.replica, payload, approval.signature)) { return `approval from ${approval.replica} has an invalid signature` }
    approvers.add(approval.replica)
  }
  const needed = quorumSize(current.replicas.length)
  return approvers.size >= needed ? null : `${approvers.size} approvals, ${needed} needed`
}

/** A configuration as persisted and snapshotted (the state machine keeps it under a reserved key). */
export function encodeConfiguration ({ latest, previous }: ConfigurationState): Uint8Array {
  const writer = new ByteWriter(64)
  const write = (c: PbftConfiguration): void => { writeReplicas(writer, c.epoch, c.replicas).varint(c.afterSeq) }
  write(latest)
  writer.u8(previous === null ? 0 : 1)
  if (previous !== null) { write(previous) }
  return writer.finish()
}

export function decodeConfiguration (bytes: Uint8Array): { ok: true, state: ConfigurationState } | { ok: false, error: string } {
  try {
    const reader = new ByteReader(bytes)
    const read = (): PbftConfiguration => {
      const epoch = reader.varint('epoch')
      const replicas = readIds(reader, 'replicas')
      return { epoch, replicas, afterSeq: reader.varint('afterSeq') }
    }
    const latest = read()
    const previous = reader.u8('previous') === 1 ? read() : null
    reader.end('configuration')
    const problem = replicaSetProblem(latest.replicas) ?? (previous === null ? null : replicaSetProblem(previous.replicas))
    if (problem !== null) { throw new DecodeError(problem) }
    return { ok: true, state: { latest, previous } }
  } catch (err) {
    return { ok: false, error: err instanceof DecodeError ? err.message : String(err) }
  }
}
