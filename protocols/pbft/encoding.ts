/**
 * The compact, deterministic binary encoding of PBFT messages, persisted
 * records and evidence: a version byte, a type tag, then the fields in a
 * fixed order (varints, length-prefixed strings and bytes, digests as 32 raw
 * bytes). One message has exactly one encoding, so the bytes a signature
 * covers (signingPayload) are well defined.
 *
 * The decoders check every field and every count and size against the
 * limits and return { ok: false, error } on anything malformed; they never
 * throw. They check structure only: signatures, digests and protocol rules
 * are the replica's business (replica.ts, certificates.ts).
 */
import { unreachable } from '../common/assert.ts'
import { ByteReader, ByteWriter, DecodeError } from '../kv/codec.ts'
import { GROUP_SIGNATURE_BYTES, NODE_ID_LENGTH_MAX, REPLICAS_MAX, REQUEST_BUNDLE_MAX, RESULT_BYTES_MAX, SIGNATURE_BYTES_MAX, resolvePbftLimits } from './config.ts'
import { decodeConfiguration, encodeConfiguration } from './reconfiguration.ts'
import type { PbftLimits } from './config.ts'
import type {
  Checkpoint, ClientRequest, Commit, CommittedCertificate, Digest, Evidence, NewView, NodeId, PbftMessage, PersistRecord,
  PrePrepare, Prepare, PreparedCertificate, Reply, SignedMessage, StableCheckpoint, ViewChange
} from './types.ts'

/**
 * Version 2 adds the compact-certificate fields: a checkpoint's partial and
 * a stable checkpoint's group signature (group.ts), each behind a presence
 * byte. Version 3 lets a checkpoint's partial come with the id of the group
 * it was made under (presence byte 2: the partial, then the 32-byte id), so
 * that the checkpoint's signature binds the partial to one group (what
 * makes a bad partial evidence). Each message, record or evidence is
 * written in the lowest version that holds it: without any of these fields
 * as version 1, with no group id as version 2, byte for byte as before (so
 * that nodes without a threshold group, and old records, stay as they
 * were); versions 1 and 2 still decode.
 */
export const PBFT_ENCODING_VERSION = 3
const PBFT_ENCODING_VERSION_2 = 2
const PBFT_ENCODING_VERSION_1 = 1
/**
 * Added to a signed message's tag in its signing payload when it is in the
 * version 2 or 3 layout: those never sign the same bytes as version 1. A
 * version 3 payload holds a presence byte 2, which no version 2 payload
 * does, so those two never sign the same bytes either.
 */
const SIGNING_TAG_V2 = 128
/** Presence byte (version 3) of a checkpoint partial that comes with its group's id. */
const PARTIAL_WITH_GROUP = 2

const MESSAGE_TAGS = {
  request: 1,
  'pre-prepare': 2,
  prepare: 3,
  commit: 4,
  checkpoint: 5,
  'view-change': 6,
  'new-view': 7,
  'fetch-committed': 8,
  'committed-batches': 9,
  reply: 10,
  configuration: 11
} as const satisfies Record<PbftMessage['type'], number>

const RECORD_TAGS = { view: 1, signed: 2, accepted: 3, prepared: 4, committed: 5, stable: 6 } as const satisfies Record<PersistRecord['kind'], number>

/** The signing tag of a request bundle (bundleSigningPayload): no message's. */
const REQUEST_BUNDLE_TAG = 64
/** Bits of a request's flags byte. */
const REQUEST_READ_ONLY = 1
const REQUEST_BUNDLED = 2

const EVIDENCE_TAGS = { equivocation: 1, 'bad-checkpoint-partial': 2 } as const satisfies Record<Evidence['kind'], number>
/** Two replica lists of REPLICAS_MAX ids of NODE_ID_LENGTH_MAX bytes, with their varints. */
const CONFIGURATION_BYTES_MAX = 2 * REPLICAS_MAX * (NODE_ID_LENGTH_MAX + 2) + 64

/** Prefixes every signed payload, so a signature over one thing can never pass for another protocol's. */
const SIGNING_DOMAIN = new TextEncoder().encode('accord/pbft/sign/1')

const DIGEST_BYTES = 32
const HEX = '0123456789abcdef'

type DecodeResult<T> = { ok: true, value: T } | { ok: false, error: string }

// ----------------------------------------------------------------- digests

export function digestToBytes (digest: Digest): Uint8Array {
  const bytes = typeof digest === 'string' && digest.length === 2 * DIGEST_BYTES ? parseHex(digest) : null
  if (bytes === null) { throw new RangeError(`not a hex SHA-256 digest: ${String(digest).slice(0, 80)}`) }
  return bytes
}

/** Lowercase hex to bytes; null on any other character (faster than a RegExp and parseInt per byte). */
function parseHex (hex: string): Uint8Array | null {
  const bytes = new Uint8Array(hex.length / 2)
  for (let i = 0; i < bytes.length; i++) {
    const high = nibble(hex.charCodeAt(2 * i))
    const low = nibble(hex.charCodeAt(2 * i + 1))
    if (high < 0 || low < 0) { return null }
    bytes[i] = (high << 4) | low
  }
  return bytes
}

function nibble (code: number): number {
  if (code >= 48 && code <= 57) { return code - 48 }
  if (code >= 97 && code <= 102) { return code - 87 }
  return -1
}

export function bytesToDigest (bytes: Uint8Array): Digest {
  let hex = ''
  for (const byte of bytes) { hex += HEX[byte >> 4] + HEX[byte & 15] }
  return hex
}

// ----------------------------------------------------------------- writing

/** An encoding version: which of the compact-certificate fields its layout has. */
type Layout = 1 | 2 | 3

/** A writer that knows the layout: version 2 and up write the presence bytes of the compact-certificate fields. */
class PbftWriter extends ByteWriter {
  readonly layout: Layout

  constructor (layout: Layout, initialBytes?: number) {
    super(initialBytes)
    this.layout = layout
  }
}

/** The lowest layout that holds `m`: 3 with a checkpoint's group id somewhere in it, 2 with a partial or a group signature, else 1. */
function layoutOf (m: PbftMessage): Layout {
  switch (m.type) {
    case 'checkpoint': return checkpointLayout(m)
    case 'view-change': return stableLayout(m.stable)
    case 'new-view': return highest(m.viewChanges.map(viewChange => stableLayout(viewChange.stable)))
    default: return 1
  }
}

function checkpointLayout (checkpoint: Checkpoint): Layout {
  if (checkpoint.groupId !== undefined) { return 3 }
  return checkpoint.partial !== undefined ? 2 : 1
}

function stableLayout (stable: StableCheckpoint): Layout {
  return highest([stable.groupSignature !== undefined ? 2 : 1, ...stable.proof.map(checkpointLayout)])
}

function highest (layouts: Layout[]): Layout {
  return layouts.reduce<Layout>((a, b) => a > b ? a : b, 1)
}

function recordLayout (record: PersistRecord): Layout {
  if (record.kind === 'signed') { return layoutOf(record.message) }
  return record.kind === 'stable' ? stableLayout(record.checkpoint) : 1
}

function evidenceLayout (evidence: Evidence): Layout {
  return evidence.kind === 'equivocation' ? highest([layoutOf(evidence.first), layoutOf(evidence.second)]) : layoutOf(evidence.checkpoint)
}

/** An optional group signature or partial in the version 2 layout and up: a presence byte, then the bytes. */
function writeOptional (w: PbftWriter, bytes: Uint8Array | undefined, what: string): void {
  if (w.layout < 2) {
    if (bytes !== undefined) { throw new RangeError(`${what} needs encoding version 2`) }
    return
  }
  if (bytes === undefined) {
    w.u8(0)
    return
  }
  w.u8(1).raw(groupSignatureBytes(bytes, what))
}

function groupSignatureBytes (bytes: Uint8Array, what: string): Uint8Array {
  if (bytes.length !== GROUP_SIGNATURE_BYTES) { throw new RangeError(`${what} is ${GROUP_SIGNATURE_BYTES} bytes, got ${bytes.length}`) }
  return bytes
}

/** A checkpoint's partial: as writeOptional, or (version 3) presence byte 2, the partial and the id of its group. */
function writePartial (w: PbftWriter, m: Checkpoint): void {
  if (m.groupId === undefined) {
    writeOptional(w, m.partial, 'a checkpoint partial')
    return
  }
  if (m.partial === undefined) { throw new RangeError('a checkpoint\'s group id comes with a partial only') }
  if (w.layout < 3) { throw new RangeError('a checkpoint\'s group id needs encoding version 3') }
  w.u8(PARTIAL_WITH_GROUP).raw(groupSignatureBytes(m.partial, 'a checkpoint partial')).raw(digestToBytes(m.groupId))
}

/** What a body leaves out: 'none' is the full wire form; 'signing' leaves out the signature (and a pre-prepare's batch, which its digest covers). */
type Form = 'full' | 'signing'

/**
 * A request: client, timestamp, operation, flags (bit 0 read-only, bit 1
 * bundled; the signing form has the read-only bit only, so what a client
 * signs does not depend on how it signed it), then in the full form the
 * signature and, when bundled, the bundle.
 */
function writeRequest (w: PbftWriter, request: ClientRequest, form: Form): void {
  w.utf8(request.client).varint(request.timestamp).bytes(request.operation)
  if (form === 'signing') {
    w.u8(request.readOnly ? 1 : 0)
    return
  }
  const { bundle } = request
  w.u8((request.readOnly ? REQUEST_READ_ONLY : 0) | (bundle === undefined ? 0 : REQUEST_BUNDLED)).bytes(request.signature)
  if (bundle !== undefined) { w.bytes(bundle) }
}

function writeVote (w: PbftWriter, m: PrePrepare | Prepare | Commit, form: Form): void {
  w.utf8(m.replica).varint(m.view).varint(m.seq).raw(digestToBytes(m.digest))
  if (form === 'full') { w.bytes(m.signature) }
}

function writePrePrepare (w: PbftWriter, m: PrePrepare, form: Form): void {
  writeVote(w, m, form)
  if (form === 'full') {
    w.varint(m.batch.length)
    for (const request of m.batch) { writeRequest(w, request, 'full') }
  }
}

function writeCheckpoint (w: PbftWriter, m: Checkpoint, form: Form): void {
  w.utf8(m.replica).varint(m.seq).raw(digestToBytes(m.stateDigest))
  if (form === 'full') { w.bytes(m.signature) }
  writePartial(w, m)
}

function writeStable (w: PbftWriter, stable: StableCheckpoint): void {
  w.varint(stable.seq).raw(digestToBytes(stable.stateDigest)).varint(stable.proof.length)
  for (const checkpoint of stable.proof) { writeCheckpoint(w, checkpoint, 'full') }
  writeOptional(w, stable.groupSignature, 'a group signature')
}

function writePrepared (w: PbftWriter, certificate: PreparedCertificate): void {
  writePrePrepare(w, certificate.prePrepare, 'full')
  w.varint(certificate.prepares.length)
  for (const prepare of certificate.prepares) { writeVote(w, prepare, 'full') }
}

function writeCommitted (w: PbftWriter, certificate: CommittedCertificate): void {
  writePrePrepare(w, certificate.prePrepare, 'full')
  w.varint(certificate.commits.length)
  for (const commit of certificate.commits) { writeVote(w, commit, 'full') }
}

function writeViewChange (w: PbftWriter, m: ViewChange, form: Form): void {
  w.utf8(m.replica).varint(m.view)
  writeStable(w, m.stable)
  w.varint(m.prepared.length)
  for (const certificate of m.prepared) { writePrepared(w, certificate) }
  if (form === 'full') { w.bytes(m.signature) }
}

function writeNewView (w: PbftWriter, m: NewView, form: Form): void {
  w.utf8(m.replica).varint(m.view).varint(m.viewChanges.length)
  for (const viewChange of m.viewChanges) { writeViewChange(w, viewChange, 'full') }
  w.varint(m.prePrepares.length)
  for (const prePrepare of m.prePrepares) { writePrePrepare(w, prePrepare, 'full') }
  if (form === 'full') { w.bytes(m.signature) }
}

function writeReply (w: PbftWriter, m: Reply): void {
  w.utf8(m.replica).varint(m.view).utf8(m.client).varint(m.timestamp).u8(m.readOnly ? 1 : 0).bytes(m.result)
}

function writeBody (w: PbftWriter, m: PbftMessage, form: Form): void {
  switch (m.type) {
    case 'request': writeRequest(w, m, form); break
    case 'pre-prepare': writePrePrepare(w, m, form); break
    case 'prepare': case 'commit': writeVote(w, m, form); break
    case 'checkpoint': writeCheckpoint(w, m, form); break
    case 'view-change': writeViewChange(w, m, form); break
    case 'new-view': writeNewView(w, m, form); break
    case 'fetch-committed': w.utf8(m.replica).varint(m.fromSeq).varint(m.epoch); break
    case 'configuration': w.utf8(m.replica).bytes(encodeConfiguration(m.state)).varint(m.knownThrough); break
    case 'committed-batches':
      w.utf8(m.replica).varint(m.certificates.length)
      for (const certificate of m.certificates) { writeCommitted(w, certificate) }
      break
    case 'reply': writeReply(w, m); break
    default: unreachable(m, 'unknown message type')
  }
}

function writeTagged (w: PbftWriter, m: PbftMessage): void {
  w.u8(MESSAGE_TAGS[m.type])
  writeBody(w, m, 'full')
}

export function encodeMessage (message: PbftMessage): Uint8Array {
  const w = new PbftWriter(layoutOf(message))
  w.u8(w.layout)
  writeTagged(w, message)
  return w.finish()
}

/**
 * The bytes a signature covers: a domain prefix, the message's type tag and
 * its encoding without the signature. A pre-prepare's covers its digest,
 * not its batch (the digest covers the batch).
 */
export function signingPayload (message: SignedMessage | ClientRequest): Uint8Array {
  // most payloads are small: a request's is its operation and some 100 bytes
  const w = new PbftWriter(layoutOf(message), message.type === 'request' ? message.operation.length + 128 : 128)
  w.raw(SIGNING_DOMAIN).u8(MESSAGE_TAGS[message.type] + (w.layout >= 2 ? SIGNING_TAG_V2 : 0))
  writeBody(w, message, 'signing')
  return w.finish()
}

/**
 * The bytes the signature of a bundled request covers (ClientRequest.bundle):
 * the domain prefix, a tag no message uses, the client and the bundle (the
 * digests, each of a request's signingPayload).
 */
export function bundleSigningPayload (client: NodeId, bundle: Uint8Array): Uint8Array {
  const w = new ByteWriter(SIGNING_DOMAIN.length + client.length * 3 + bundle.length + 16)
  w.raw(SIGNING_DOMAIN).u8(REQUEST_BUNDLE_TAG).utf8(client).bytes(bundle)
  return w.finish()
}

export function encodeRecord (record: PersistRecord): Uint8Array {
  const w = new PbftWriter(recordLayout(record))
  w.u8(w.layout).u8(RECORD_TAGS[record.kind])
  switch (record.kind) {
    case 'view': w.varint(record.view).u8(record.changing ? 1 : 0); break
    case 'signed': writeTagged(w, record.message); break
    case 'accepted': writePrePrepare(w, record.prePrepare, 'full'); break
    case 'prepared': writePrepared(w, record.certificate); break
    case 'committed': writeCommitted(w, record.certificate); break
    case 'stable': writeStable(w, record.checkpoint); break
    default: unreachable(record, 'unknown record kind')
  }
  return w.finish()
}

/** The kind, the offender, then the two conflicting messages (equivocation) or the checkpoint with the bad partial. */
export function encodeEvidence (evidence: Evidence): Uint8Array {
  const w = new PbftWriter(evidenceLayout(evidence))
  w.u8(w.layout).u8(EVIDENCE_TAGS[evidence.kind]).utf8(evidence.offender)
  switch (evidence.kind) {
    case 'equivocation':
      writeTagged(w, evidence.first)
      writeTagged(w, evidence.second)
      break
    case 'bad-checkpoint-partial': writeTagged(w, evidence.checkpoint); break
    default: unreachable(evidence, 'unknown evidence kind')
  }
  return w.finish()
}

// ----------------------------------------------------------------- reading

class Reader {
  readonly r: ByteReader
  readonly limits: PbftLimits
  /** The layout read: version 2 and up have the presence bytes of the compact-certificate fields. */
  layout: Layout = 1

  constructor (bytes: Uint8Array, limits: PbftLimits) {
    this.r = new ByteReader(bytes)
    this.limits = limits
  }

  nodeId (what: string): string {
    const id = this.r.utf8(what, NODE_ID_LENGTH_MAX)
    if (id.length === 0) { throw new DecodeError(`${what} is empty`) }
    return id
  }

  digest (what: string): Digest {
    return bytesToDigest(this.r.raw(DIGEST_BYTES, what))
  }

  signature (): Uint8Array {
    return this.r.bytes('signature', SIGNATURE_BYTES_MAX).slice()
  }

  flag (what: string): boolean {
    const byte = this.r.u8(what)
    if (byte > 1) { throw new DecodeError(`${what} must be 0 or 1, got ${byte}`) }
    return byte === 1
  }

  count (what: string, max: number): number {
    const count = this.r.varint(`${what} count`)
    if (count > max) { throw new DecodeError(`${count} ${what}, more than ${max}`) }
    return count
  }

  seq (what: string): number {
    const seq = this.r.varint(what)
    if (seq < 1) { throw new DecodeError(`${what} must be at least 1`) }
    return seq
  }

  request (): ClientRequest {
    const client = this.nodeId('client')
    const timestamp = this.r.varint('timestamp')
    const operation = this.r.bytes('operation', this.limits.operationBytesMax).slice()
    const flags = this.r.u8('request flags')
    if (flags > (REQUEST_READ_ONLY | REQUEST_BUNDLED)) { throw new DecodeError(`request flags ${flags} unknown`) }
    const readOnly = (flags & REQUEST_READ_ONLY) !== 0
    const signature = this.signature()
    if ((flags & REQUEST_BUNDLED) === 0) { return { type: 'request', client, timestamp, operation, readOnly, signature } }
    const bundle = this.r.bytes('bundle', REQUEST_BUNDLE_MAX * DIGEST_BYTES).slice()
    if (bundle.length < 2 * DIGEST_BYTES || bundle.length % DIGEST_BYTES !== 0) { throw new DecodeError(`a bundle of ${bundle.length} bytes is not 2 to ${REQUEST_BUNDLE_MAX} digests`) }
    return { type: 'request', client, timestamp, operation, readOnly, bundle, signature }
  }

  vote<T extends 'pre-prepare' | 'prepare' | 'commit'> (type: T): { type: T, replica: string, view: number, seq: number, digest: Digest, signature: Uint8Array } {
    const replica = this.nodeId('replica')
    const view = this.r.varint('view')
    const seq = this.seq('seq')
    const digest = this.digest('digest')
    return { type, replica, view, seq, digest, signature: this.signature() }
  }

  prePrepare (): PrePrepare {
    const vote = this.vote('pre-prepare')
    const length = this.count('batch requests', this.limits.batchRequestsMax)
    const batch: ClientRequest[] = []
    let bytes = 0
    for (let i = 0; i < length; i++) {
      const request = this.request()
      bytes += request.operation.length
      if (bytes > this.limits.batchBytesMax) { throw new DecodeError(`batch operations exceed ${this.limits.batchBytesMax} bytes`) }
      batch.push(request)
    }
    return { ...vote, batch }
  }

  /** A group signature or partial behind its presence byte (version 2 and up): exactly GROUP_SIGNATURE_BYTES. */
  optional (what: string): Uint8Array | undefined {
    if (this.layout < 2 || !this.flag(`${what} present`)) { return undefined }
    return this.r.raw(GROUP_SIGNATURE_BYTES, what).slice()
  }

  /** A checkpoint's partial: as optional, and in version 3 presence byte 2, the partial with its group's id. */
  partial (): { partial?: Uint8Array, groupId?: Digest } {
    if (this.layout < 3) {
      const partial = this.optional('checkpoint partial')
      return partial === undefined ? {} : { partial }
    }
    const presence = this.r.u8('checkpoint partial present')
    if (presence > PARTIAL_WITH_GROUP) { throw new DecodeError(`checkpoint partial present must be 0, 1 or 2, got ${presence}`) }
    if (presence === 0) { return {} }
    const partial = this.r.raw(GROUP_SIGNATURE_BYTES, 'checkpoint partial').slice()
    return presence === 1 ? { partial } : { partial, groupId: this.digest('checkpoint partial group id') }
  }

  checkpoint (): Checkpoint {
    const replica = this.nodeId('replica')
    const seq = this.seq('checkpoint seq')
    const stateDigest = this.digest('state digest')
    const signature = this.signature()
    return { type: 'checkpoint', replica, seq, stateDigest, signature, ...this.partial() }
  }

  stable (): StableCheckpoint {
    const seq = this.r.varint('stable seq')
    const stateDigest = this.digest('stable state digest')
    const length = this.count('checkpoint proofs', REPLICAS_MAX)
    const proof: Checkpoint[] = []
    for (let i = 0; i < length; i++) { proof.push(this.checkpoint()) }
    const groupSignature = this.optional('group signature')
    if (groupSignature === undefined) { return { seq, stateDigest, proof } }
    if (length !== 0 || seq === 0) { throw new DecodeError('a group signature proves a stable checkpoint above the genesis alone, without checkpoints') }
    return { seq, stateDigest, proof, groupSignature }
  }

  prepared (): PreparedCertificate {
    const prePrepare = this.prePrepare()
    const length = this.count('prepares', REPLICAS_MAX)
    const prepares: Prepare[] = []
    for (let i = 0; i < length; i++) { prepares.push(this.vote('prepare')) }
    return { prePrepare, prepares }
  }

  committed (): CommittedCertificate {
    const prePrepare = this.prePrepare()
    const length = this.count('commits', REPLICAS_MAX)
    const commits: Commit[] = []
    for (let i = 0; i < length; i++) { commits.push(this.vote('commit')) }
    return { prePrepare, commits }
  }

  viewChange (): ViewChange {
    const replica = this.nodeId('replica')
    const view = this.r.varint('view')
    const stable = this.stable()
    const length = this.count('prepared certificates', this.limits.watermarkWindow)
    const prepared: PreparedCertificate[] = []
    for (let i = 0; i < length; i++) { prepared.push(this.prepared()) }
    return { type: 'view-change', replica, view, stable, prepared, signature: this.signature() }
  }

  newView (): NewView {
    const replica = this.nodeId('replica')
    const view = this.r.varint('view')
    const changes = this.count('view changes', REPLICAS_MAX)
    const viewChanges: ViewChange[] = []
    for (let i = 0; i < changes; i++) { viewChanges.push(this.viewChange()) }
    const length = this.count('pre-prepares', this.limits.watermarkWindow)
    const prePrepares: PrePrepare[] = []
    for (let i = 0; i < length; i++) { prePrepares.push(this.prePrepare()) }
    return { type: 'new-view', replica, view, viewChanges, prePrepares, signature: this.signature() }
  }

  tagged (): PbftMessage {
    const tag = this.r.u8('message type')
    switch (tag) {
      case MESSAGE_TAGS.request: return this.request()
      case MESSAGE_TAGS['pre-prepare']: return this.prePrepare()
      case MESSAGE_TAGS.prepare: return this.vote('prepare')
      case MESSAGE_TAGS.commit: return this.vote('commit')
      case MESSAGE_TAGS.checkpoint: return this.checkpoint()
      case MESSAGE_TAGS['view-change']: return this.viewChange()
      case MESSAGE_TAGS['new-view']: return this.newView()
      case MESSAGE_TAGS['fetch-committed']: return { type: 'fetch-committed', replica: this.nodeId('replica'), fromSeq: this.seq('fromSeq'), epoch: this.r.varint('epoch') }
      case MESSAGE_TAGS.configuration: {
        const replica = this.nodeId('replica')
        const decoded = decodeConfiguration(this.r.bytes('configuration', CONFIGURATION_BYTES_MAX))
        if (!decoded.ok) { throw new DecodeError(decoded.error) }
        return { type: 'configuration', replica, state: decoded.state, knownThrough: this.r.varint('knownThrough') }
      }
      case MESSAGE_TAGS['committed-batches']: {
        const replica = this.nodeId('replica')
        const length = this.count('committed certificates', this.limits.certificatesPerFetchMax)
        const certificates: CommittedCertificate[] = []
        for (let i = 0; i < length; i++) { certificates.push(this.committed()) }
        return { type: 'committed-batches', replica, certificates }
      }
      case MESSAGE_TAGS.reply: {
        const replica = this.nodeId('replica')
        const view = this.r.varint('view')
        const client = this.nodeId('client')
        const timestamp = this.r.varint('timestamp')
        const readOnly = this.flag('readOnly')
        const result = this.r.bytes('result', RESULT_BYTES_MAX).slice()
        return { type: 'reply', replica, view, client, timestamp, readOnly, result }
      }
      default: throw new DecodeError(`unknown message type ${tag}`)
    }
  }

  signedMessage (): SignedMessage {
    const message = this.tagged()
    if (message.type === 'request' || message.type === 'reply' || message.type === 'fetch-committed' || message.type === 'committed-batches' || message.type === 'configuration') {
      throw new DecodeError(`a ${message.type} is not a signed replica message`)
    }
    return message
  }

  version (): void {
    const version = this.r.u8('version')
    if (version !== PBFT_ENCODING_VERSION && version !== PBFT_ENCODING_VERSION_2 && version !== PBFT_ENCODING_VERSION_1) { throw new DecodeError(`unsupported encoding version ${version}`) }
    this.layout = version
  }
}

function decode<T> (bytes: Uint8Array, limits: Partial<PbftLimits> | undefined, read: (reader: Reader) => T, what: string): DecodeResult<T> {
  if (!(bytes instanceof Uint8Array)) { return { ok: false, error: `${what} is not bytes` } }
  let resolved: PbftLimits
  try {
    resolved = resolvePbftLimits(limits)
  } catch (err) {
    return { ok: false, error: (err as Error).message }
  }
  try {
    const reader = new Reader(bytes, resolved)
    reader.version()
    const value = read(reader)
    reader.r.end(what)
    return { ok: true, value }
  } catch (err) {
    if (err instanceof DecodeError) { return { ok: false, error: `${what}: ${err.message}` } }
    throw err
  }
}

export function decodeMessage (bytes: Uint8Array, limits?: Partial<PbftLimits>): { ok: true, message: PbftMessage } | { ok: false, error: string } {
  const result = decode(bytes, limits, reader => reader.tagged(), 'pbft message')
  return result.ok ? { ok: true, message: result.value } : result
}

export function decodeRecord (bytes: Uint8Array, limits?: Partial<PbftLimits>): { ok: true, record: PersistRecord } | { ok: false, error: string } {
  const result = decode(bytes, limits, (reader): PersistRecord => {
    const tag = reader.r.u8('record kind')
    switch (tag) {
      case RECORD_TAGS.view: return { kind: 'view', view: reader.r.varint('view'), changing: reader.flag('changing') }
      case RECORD_TAGS.signed: return { kind: 'signed', message: reader.signedMessage() }
      case RECORD_TAGS.accepted: return { kind: 'accepted', prePrepare: reader.prePrepare() }
      case RECORD_TAGS.prepared: return { kind: 'prepared', certificate: reader.prepared() }
      case RECORD_TAGS.committed: return { kind: 'committed', certificate: reader.committed() }
      case RECORD_TAGS.stable: return { kind: 'stable', checkpoint: reader.stable() }
      default: throw new DecodeError(`unknown record kind ${tag}`)
    }
  }, 'pbft record')
  return result.ok ? { ok: true, record: result.value } : result
}

export function decodeEvidence (bytes: Uint8Array, limits?: Partial<PbftLimits>): { ok: true, evidence: Evidence } | { ok: false, error: string } {
  const result = decode(bytes, limits, (reader): Evidence => {
    const kind = reader.r.u8('evidence kind')
    switch (kind) {
      case EVIDENCE_TAGS.equivocation: {
        const offender = reader.nodeId('offender')
        return { kind: 'equivocation', offender, first: reader.signedMessage(), second: reader.signedMessage() }
      }
      case EVIDENCE_TAGS['bad-checkpoint-partial']: {
        const offender = reader.nodeId('offender')
        const checkpoint = reader.signedMessage()
        if (checkpoint.type !== 'checkpoint') { throw new DecodeError(`bad-checkpoint-partial evidence carries a ${checkpoint.type}, not a checkpoint`) }
        return { kind: 'bad-checkpoint-partial', offender, checkpoint }
      }
      default: throw new DecodeError(`unknown evidence kind ${kind}`)
    }
  }, 'pbft evidence')
  return result.ok ? { ok: true, evidence: result.value } : result
}
