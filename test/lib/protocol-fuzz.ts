/**
 * Fuzzing accord's libp2p protocols from outside: a seeded frame generator
 * for every accord protocol, a driver that sends its frames to a node over
 * real libp2p (TCP + Noise + yamux on loopback), and the checks a target
 * must pass afterwards. Used by test/integration/fuzz-protocols.spec.ts and
 * fuzz-pbft.spec.ts (CI's bounded runs) and scripts/fuzz-protocols.ts (long
 * runs). Raft, SWIM, anti-entropy, DKG, admission, join and the cluster
 * hello run on a 3-voter Raft group (startFuzzBed); /accord/pbft/1.0.0,
 * /accord/pbft-state/1.0.0 and the PBFT evidence topic on a set of four
 * replicas (startPbftFuzzBed, which says what each attacker may cause).
 *
 * Frames come from createRng(seed) only (never Math.random), so given the
 * same context (peer ids, term, indexes: see FuzzContext) a run's frames
 * replay from its seed; what the network then does with them does not
 * (streams race). For each protocol the generator mixes
 * - random bytes of random length, from 0 to just past the protocol's
 * largest frame;
 * - valid frames made by the real encoders (encodeFrame, encodeCommand,
 * cborg) and then mutated: bit flips, byte insertions and deletions,
 * truncation, CBOR with wrong types, unknown or duplicate map keys, deep
 * nesting, huge declared sizes, indefinite lengths, tags, floats and
 * non-minimal integers; and length prefixes that lie (too long, too
 * short, non-minimal, never ending, far over the limit);
 * - valid but hostile frames: Raft messages with terms near 2^52 and
 * spoofed senders and recipients, snapshots declaring 1 GiB, chunks
 * without a begin, appends of 10,000 entries, conf changes of 2000
 * members, and client requests for every op with bad fields; SWIM
 * messages with incarnations near 2^52, spoofed senders, ping-reqs for
 * members and strangers, join pages past the size limits, accusations of
 * the target; DKG datagrams whose envelopes the attacker signs with its own
 * key (so they pass the signature check and reach the handlers), with
 * starts that open sessions up to the service's limit, reshares of groups
 * the target does not hold, and broken, borrowed and relayed signatures;
 * PBFT messages (encodeMessage) with views and seqs near 2^52
 * or far outside the watermarks, future-view and view-change floods,
 * batches past batchRequestsMax and batchBytesMax, spoofed replicas,
 * primaries and clients, requests of unknown clients (validly signed by
 * keys made from the seed, so they are ordered), read-only writes,
 * replays, forged certificates inside committed batches and view changes,
 * and state requests that are not a seq;
 * - for PBFT, in place of the CBOR mutations, forged signatures: signed
 * with a key that is not the sender's, flipped bits, wrong lengths; and,
 * only when the context allows it (PbftFuzzContext.isolating), the replica
 * attacker's own signature broken and two digests signed for one slot;
 * - for the PBFT evidence topic (evidenceGenerator), evidence of both
 * kinds forged against honest replicas (equivocations not conflicting,
 * of the wrong offender or of a stranger to the set; bad checkpoint
 * partials with forged signatures, honest replicas' own checkpoints
 * borrowed with their valid partial or a garbage one, another group id or
 * none, partials of the wrong size, presence bytes out of range, fields
 * over their limits), mutated, and (isolating) real evidence of both
 * kinds against the attacker; the PBFT bed's replicas hold a DKG group
 * for it (PbftFuzzBed.groupId).
 *
 * What the generator will not send, so that the checks stay meaningful: a
 * conf change or snapshot that a node could apply (an admitted member may
 * legitimately add 64 voters that do not exist, and the group then has no
 * quorum by design), or a commit index above the target's (committing
 * entries a member made up is a Byzantine fault, outside Raft's model).
 * For PBFT, Byzantine faults are the model: without `isolating`, nothing
 * that would make an honest replica isolate the replica attacker (so that
 * its frames keep reaching the core), and never anything signed by an
 * honest replica's key (the fuzzer does not hold one: it only borrows
 * checkpoints honest replicas sent, PbftFuzzContext.honestCheckpoints).
 */
import { createPrivateKey, createPublicKey, sign as signEd25519 } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { decode, encode } from 'cborg'
import { createLibp2p } from 'libp2p'
import { base58btc } from 'multiformats/bases/base58'
import { G1_BYTES } from '../../identity/bls.ts'
import { createJoinToken, CERTIFICATE_BYTES_MAX, JOIN_TOKEN_CHARS_MAX, JOIN_TOKEN_PREFIX } from '../../identity/cluster-credentials.ts'
import { SEALED_SHARE_BYTES } from '../../identity/threshold/share-box.ts'
import { ADMISSION_PROTOCOL } from '../../node/admission/admission.ts'
import { JOIN_PROTOCOL } from '../../node/admission/join.ts'
import { CLUSTER_HELLO_STREAMS_MAX, clusterProtocol } from '../../node/constants.ts'
import { DKG_FRAME_BYTES_MAX, DKG_MEMBERS_MAX, DKG_PROTOCOL, DKG_SIGN_MESSAGE_BYTES_MAX } from '../../node/dkg/constants.ts'
import { ENVELOPE_KINDS, envelopePayload } from '../../node/dkg/envelope.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { SWIM_PROTOCOL, swimFrameBytesMax } from '../../node/membership/service.ts'
import { ANTI_ENTROPY_PROTOCOL, antiEntropyFrameBytesMax } from '../../node/metadata/service.ts'
import { PeerKeyVerifier, peerKeyPbftCrypto, sha256Hex } from '../../node/pbft/crypto.ts'
import { evidenceTopic } from '../../node/pbft/evidence-topic.ts'
import { encodeOperation } from '../../node/pbft/operations.ts'
import { checkpointGroupId } from '../../node/pbft/threshold-group.ts'
import { PBFT_PROTOCOL, PBFT_STATE_PROTOCOL, PBFT_TRANSPORT_DEFAULTS } from '../../node/pbft/transport.ts'
import { RAFT_CLIENT_PROTOCOL, requestBytesMax } from '../../node/raft/client-protocol.ts'
import { encodeFrame, FRAME_BYTES_MAX } from '../../node/raft/codec.ts'
import { RAFT_PROTOCOL, RAFT_TRANSPORT_DEFAULTS } from '../../node/raft/transport-constants.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { DKG_MESSAGE_BYTES_MAX, encodeDkgMessage } from '../../protocols/dkg/index.ts'
import { ANTI_ENTROPY_DEFAULTS, VERSION_MAX } from '../../protocols/gossip/index.ts'
import { encodeCommand, KV_DEFAULTS, kvSnapshotBytesMax } from '../../protocols/kv/index.ts'
import { INCARNATION_JUMP_MAX, INCARNATION_MAX, LIST_LENGTH_MAX, MEMBERSHIP_DEFAULTS } from '../../protocols/membership/index.ts'
import { bytesToDigest } from '../../protocols/pbft/encoding.ts'
import { batchDigest, decodeMessage, encodeEvidence, encodeMessage, GENESIS_CHECKPOINT, GROUP_SIGNATURE_BYTES, NODE_ID_LENGTH_MAX, PBFT_DEFAULTS, primaryOf, SIGNATURE_BYTES_MAX, signingPayload } from '../../protocols/pbft/index.ts'
import { COUNT_MAX, encodeConfChange, MESSAGE_ENTRIES_MAX, READ_CONTEXT_BYTES_MAX } from '../../protocols/raft/index.ts'
import { addressOf, formRaftGroup, TestCluster, waitFor } from './nodes.ts'
import type { Envelope, EnvelopeKind } from '../../node/dkg/envelope.ts'
import type { AccordNode } from '../../node/index.ts'
import type { PbftTransportStats } from '../../node/pbft/transport.ts'
import type { RaftTransportStats } from '../../node/raft/transport.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { DkgMessage } from '../../protocols/dkg/index.ts'
import type { DigestPage, GossipMessage, NodeDelta, WireEntry } from '../../protocols/gossip/index.ts'
import type { AliveUpdate, Message as SwimMessage, Update } from '../../protocols/membership/index.ts'
import type {
  Checkpoint, ClientRequest, Commit, CommittedBatches, Evidence, NewView, PbftCrypto, PbftMessage, PrePrepare, Prepare, PreparedCertificate, Reply,
  SignedMessage, StableCheckpoint, ViewChange
} from '../../protocols/pbft/types.ts'
import type { ConfState, Entry, Message, SnapshotMessage } from '../../protocols/raft/index.ts'
import type { Libp2p, PeerId, PrivateKey, Stream, StreamCloseEvent } from '@libp2p/interface'

// ---------------------------------------------------------------- protocols

export type FuzzProtocol = 'raft' | 'raft-client' | 'admission' | 'join' | 'cluster' | 'swim' | 'anti-entropy' | 'dkg' | PbftFuzzProtocol

export type PbftFuzzProtocol = 'pbft' | 'pbft-state'

/** The protocols fuzzed on the Raft bed (startFuzzBed). */
export const FUZZ_PROTOCOLS: readonly FuzzProtocol[] = ['raft', 'raft-client', 'admission', 'join', 'cluster', 'swim', 'anti-entropy', 'dkg']

/** The protocols fuzzed on the PBFT bed (startPbftFuzzBed). */
export const PBFT_FUZZ_PROTOCOLS: readonly PbftFuzzProtocol[] = ['pbft', 'pbft-state']

/** Protocols a stranger's stream waits (up to 5 s) in admission's gate for and is then refused on. */
export const GATED_PROTOCOLS: ReadonlySet<FuzzProtocol> = new Set(['raft', 'raft-client', 'cluster', 'swim', 'anti-entropy', 'dkg', 'pbft', 'pbft-state'])

export function protocolId (protocol: FuzzProtocol, cluster: string): string {
  switch (protocol) {
    case 'raft': return RAFT_PROTOCOL
    case 'raft-client': return RAFT_CLIENT_PROTOCOL
    case 'admission': return ADMISSION_PROTOCOL
    case 'join': return JOIN_PROTOCOL
    case 'swim': return SWIM_PROTOCOL
    case 'anti-entropy': return ANTI_ENTROPY_PROTOCOL
    case 'dkg': return DKG_PROTOCOL
    case 'pbft': return PBFT_PROTOCOL
    case 'pbft-state': return PBFT_STATE_PROTOCOL
    default: return clusterProtocol(cluster)
  }
}

/** Largest frame body each handler reads (the cluster hello reads nothing; 4 KiB is its answer bound). */
export function frameBytesMax (protocol: FuzzProtocol): number {
  switch (protocol) {
    case 'raft': return FRAME_BYTES_MAX
    case 'raft-client': return requestBytesMax(KV_DEFAULTS)
    case 'admission': return CERTIFICATE_BYTES_MAX + 64
    case 'join': return JOIN_TOKEN_CHARS_MAX + 64
    case 'swim': return swimFrameBytesMax()
    case 'anti-entropy': return antiEntropyFrameBytesMax()
    case 'dkg': return DKG_FRAME_BYTES_MAX
    case 'pbft': return PBFT_TRANSPORT_DEFAULTS.messageBytesMax
    case 'pbft-state': return PBFT_STATE_REQUEST_BYTES_MAX
    default: return 4096
  }
}

/** Snapshot data a fuzzed snapshot declares at most when it means to send it all (the reassembly bound then follows it). */
export const FUZZ_SNAPSHOT_BYTES_MAX = 256 * 1024
const KIB = 1024
const MIB = 1024 * KIB
const GIB = 1024 * 1024 * 1024

// ---------------------------------------------------------------- generator

/** What the generator knows of the target and the attacker. Update term/lastIndex/commit between runs. */
export interface FuzzContext {
  cluster: string
  /** The attacker's peer id: the honest `from`. */
  self: string
  /** The target's peer id: the honest `to`. */
  target: string
  /** Peer ids of the Raft group (for spoofing). */
  members: string[]
  /** The target's term, last index and commit index when the run starts. */
  term: number
  lastIndex: number
  commit: number
  /** A certificate to present on the admission protocol (the attacker's own, or one stolen from another peer). */
  certificate?: Uint8Array
  /** A join token to send on the join protocol (valid for an admitted attacker; expired or foreign for a stranger). */
  joinToken?: string
  /** Signs with the attacker's own key (the key `self` embeds): DKG envelopes need it. */
  sign?(payload: Uint8Array): Uint8Array
}

export interface FuzzFrame {
  /** What kind of frame: `random`, `mutated:<how>`, `cbor:<how>`, `prefix:<how>`, `hostile:<what>`, `valid:<what>`. */
  label: string
  /** The bytes to write, length prefixes included. */
  wire: Uint8Array
  /** Frames in `wire` (a snapshot sequence carries several). */
  frames: number
}

/** A source of frames for one protocol; `next()` never throws. */
export type FrameSource = () => FuzzFrame

/** A 32-bit seed for one (attacker, protocol, target) stream of frames, from the run's seed: the same whichever protocols a run picks. */
export function deriveSeed (seed: number, ...labels: string[]): number {
  let h = (seed >>> 0) ^ 0x811c9dc5
  for (const label of labels) {
    for (let i = 0; i < label.length; i++) { h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0 }
    h = Math.imul(h ^ 0xff, 0x01000193) >>> 0
  }
  return h >>> 0
}

/** An unsigned LEB128 varint of any safe integer. */
function varint (value: number): Uint8Array {
  const out: number[] = []
  for (; value >= 0x80; value = Math.floor(value / 0x80)) { out.push((value % 0x80) | 0x80) }
  out.push(value)
  return Uint8Array.from(out)
}

function concat (...parts: Uint8Array[]): Uint8Array {
  let length = 0
  for (const p of parts) { length += p.byteLength }
  const out = new Uint8Array(length)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.byteLength
  }
  return out
}

/** Random bytes, 4 at a time (fast enough for 4 MiB frames). */
export function randomBytes (rng: Rng, length: number): Uint8Array {
  const out = new Uint8Array(length)
  const words = new Uint32Array(out.buffer, 0, length >>> 2)
  for (let i = 0; i < words.length; i++) { words[i] = rng.nextUint32() }
  for (let i = words.length * 4; i < length; i++) { out[i] = rng.nextUint32() & 0xff }
  return out
}

function pick<T> (rng: Rng, items: readonly T[]): T {
  return items[rng.intBetween(0, items.length - 1)]
}

/** An index into `weights`, drawn with those weights. */
function weightedIndex (rng: Rng, weights: readonly number[]): number {
  let r = rng.nextFloat() * weights.reduce((a, b) => a + b, 0)
  for (let i = 0; i < weights.length; i++) {
    r -= weights[i]
    if (r < 0) { return i }
  }
  return weights.length - 1
}

/** A random length: mostly small, sometimes large, rarely at or just past `max`. */
function randomLength (rng: Rng, max: number): number {
  const r = rng.nextFloat()
  // frames near a multi-MiB limit are costly to send; keep them rare there
  const nearMax = max > 64 * KIB ? 0.002 : 0.04
  if (r < nearMax) { return Math.max(0, max - rng.intBetween(0, 16)) }
  if (r < 2 * nearMax) { return max + rng.intBetween(1, 16) }
  if (r < 0.1) { return 0 }
  if (r < 0.5) { return rng.intBetween(1, Math.min(max, 32)) }
  if (r < 0.8) { return rng.intBetween(1, Math.min(max, 512)) }
  if (r < 0.97) { return rng.intBetween(1, Math.min(max, 8 * KIB)) }
  return rng.intBetween(1, Math.max(1, Math.floor(max / 8)))
}

/** A valid-looking Ed25519 peer id made of random bytes (no key pair: cheap). */
export function syntheticPeerId (rng: Rng): string {
  return ed25519PeerId(randomBytes(rng, 32))
}

/** One byte-level edit. Never edits `input` (a Node Buffer's slice() is a view, so copies are made with Uint8Array.from). */
function mutateOnce (rng: Rng, input: Uint8Array): { bytes: Uint8Array, how: string } {
  const n = input.byteLength
  const at = rng.intBetween(0, Math.max(0, n - 1))
  switch (rng.intBetween(0, 7)) {
    case 0: {
      if (n === 0) { break }
      const out = Uint8Array.from(input)
      out[at] ^= 1 << rng.intBetween(0, 7)
      return { bytes: out, how: 'bit-flip' }
    }
    case 1: {
      if (n === 0) { break }
      const out = Uint8Array.from(input)
      out[at] = pick(rng, [0x00, 0xff, 0x7f, 0x80, 0x18, 0x1b, 0x5b, 0x9b, 0xbb, 0x9f, 0xf7, 0xf9, rng.intBetween(0, 255)])
      return { bytes: out, how: 'byte-set' }
    }
    case 2: {
      const inserted = randomBytes(rng, rng.intBetween(1, 8))
      return { bytes: concat(input.subarray(0, at), inserted, input.subarray(at)), how: 'insert' }
    }
    case 3: {
      if (n === 0) { break }
      return { bytes: concat(input.subarray(0, at), input.subarray(Math.min(n, at + rng.intBetween(1, 8)))), how: 'delete' }
    }
    case 4:
      return { bytes: Uint8Array.from(input.subarray(0, rng.intBetween(0, Math.max(0, n - 1)))), how: 'truncate' }
    case 5: {
      // duplicate a region in place (repeats a map entry or an array item, more or less)
      if (n === 0) { break }
      const end = Math.min(n, at + rng.intBetween(1, 32))
      return { bytes: concat(input.subarray(0, end), input.subarray(at, end), input.subarray(end)), how: 'duplicate' }
    }
    case 6: {
      if (n < 2) { break }
      const b = rng.intBetween(0, n - 1)
      const out = Uint8Array.from(input)
      out[at] = input[b]
      out[b] = input[at]
      return { bytes: out, how: 'swap' }
    }
    default:
      break
  }
  return { bytes: concat(input, randomBytes(rng, rng.intBetween(1, 16))), how: 'append' }
}

// ---- CBOR by hand (what cborg's encoder will not write) ----

function cborHead (major: number, value: number | bigint): Uint8Array {
  const m = major << 5
  const v = BigInt(value)
  if (v < 24n) { return Uint8Array.from([m | Number(v)]) }
  if (v < 0x100n) { return Uint8Array.from([m | 24, Number(v)]) }
  if (v < 0x10000n) { return Uint8Array.from([m | 25, Number(v >> 8n), Number(v & 0xffn)]) }
  if (v < 0x100000000n) { return Uint8Array.from([m | 26, ...[24n, 16n, 8n, 0n].map(s => Number((v >> s) & 0xffn))]) }
  return Uint8Array.from([m | 27, ...[56n, 48n, 40n, 32n, 24n, 16n, 8n, 0n].map(s => Number((v >> s) & 0xffn))])
}

/** One CBOR item that a strict, bounded decoder must refuse or that a schema must not accept. */
function rawCborItem (rng: Rng): { bytes: Uint8Array, how: string } {
  switch (rng.intBetween(0, 15)) {
    case 0: return { bytes: concat(new Uint8Array(rng.intBetween(9, 20_000)).fill(0x81), Uint8Array.of(0x00)), how: 'deep-array' }
    case 1: {
      const depth = rng.intBetween(9, 5000)
      const level = Uint8Array.of(0xa1, 0x61, 0x61)
      const out = new Uint8Array(depth * 3 + 1)
      for (let i = 0; i < depth; i++) { out.set(level, i * 3) }
      return { bytes: out, how: 'deep-map' }
    }
    case 2: return { bytes: concat(cborHead(2, pick(rng, [2n ** 32n - 1n, 2n ** 63n, BigInt(GIB), 2n ** 64n - 1n])), randomBytes(rng, rng.intBetween(0, 8))), how: 'huge-bytes' }
    case 3: return { bytes: concat(cborHead(3, pick(rng, [2n ** 32n - 1n, 2n ** 63n])), randomBytes(rng, 4)), how: 'huge-text' }
    case 4: return { bytes: concat(cborHead(4, pick(rng, [2n ** 32n - 1n, 2n ** 63n, 1_000_000n])), Uint8Array.of(0x00)), how: 'huge-array' }
    case 5: return { bytes: concat(cborHead(5, pick(rng, [2n ** 32n - 1n, 2n ** 63n, 1_000_000n])), Uint8Array.of(0x61, 0x61, 0x00)), how: 'huge-map' }
    case 6: return { bytes: Uint8Array.of(0x9f, 0x01, 0x02, 0xff), how: 'indefinite-array' }
    case 7: return { bytes: Uint8Array.of(0x5f, 0x41, 0x00, 0x41, 0x01, 0xff), how: 'indefinite-bytes' }
    case 8: return { bytes: concat(Uint8Array.of(pick(rng, [0xc0, 0xc1, 0xc2, 0xd8]), 0x2a), encode(1)), how: 'tag' }
    case 9: return { bytes: pick(rng, [Uint8Array.of(0xf9, 0x3c, 0x00), Uint8Array.of(0xfa, 0x3f, 0x80, 0x00, 0x00), Uint8Array.of(0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0)]), how: 'float' }
    case 10: return { bytes: pick(rng, [Uint8Array.of(0x18, 0x05), Uint8Array.of(0x19, 0x00, 0x01), Uint8Array.of(0x1b, 0, 0, 0, 0, 0, 0, 0, 7)]), how: 'non-minimal-int' }
    case 11: return { bytes: pick(rng, [Uint8Array.of(0xf7), Uint8Array.of(0xf9, 0x7e, 0x00), Uint8Array.of(0xf9, 0x7c, 0x00), Uint8Array.of(0xf9, 0xfc, 0x00)]), how: 'undefined-nan-infinity' }
    case 12: return { bytes: pick(rng, [Uint8Array.of(0x1b, 0x00, 0x20, 0, 0, 0, 0, 0, 1), Uint8Array.of(0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), Uint8Array.of(0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)]), how: 'int-beyond-safe' }
    case 13: return { bytes: Uint8Array.of(0x62, 0xc3, 0x28), how: 'bad-utf8' }
    case 14: return { bytes: Uint8Array.of(pick(rng, [0x1c, 0x1d, 0x1e, 0x1f, 0x3f, 0xff, 0xf8])), how: 'reserved' }
    default: return { bytes: Uint8Array.of(0xa2, 0x61, 0x76, 0x01, 0x61, 0x76, 0x01), how: 'dup-key-map' }
  }
}

/** A value of a type the schema does not expect. */
function wrongValue (rng: Rng): unknown {
  return pick<() => unknown>(rng, [
    () => -1,
    () => 1.5,
    () => COUNT_MAX + 1,
    () => Number.MAX_SAFE_INTEGER,
    () => 2 ** 64,
    () => -(2 ** 40),
    () => '',
    () => 'x',
    () => 'x'.repeat(rng.intBetween(257, 4000)),
    () => '\ud800',
    () => new Uint8Array(0),
    () => randomBytes(rng, rng.intBetween(1, 64)),
    () => [],
    () => [1, 'a', null],
    () => ({}),
    () => ({ a: 1 }),
    () => null,
    () => true,
    () => false,
    () => 0,
    () => 2n ** 64n - 1n
  ])()
}

type Path = Array<string | number>

/** Paths to the values inside `value` (at most `limit`, not deeper than 6). */
function paths (value: unknown, limit = 64): Path[] {
  const out: Path[] = []
  const walk = (v: unknown, path: Path): void => {
    if (out.length >= limit || path.length > 6) { return }
    if (path.length > 0) { out.push(path) }
    if (v instanceof Uint8Array || v === null || typeof v !== 'object') { return }
    if (Array.isArray(v)) {
      for (let i = 0; i < Math.min(v.length, 3); i++) { walk(v[i], [...path, i]) }
      return
    }
    for (const key of Object.keys(v)) { walk((v as Record<string, unknown>)[key], [...path, key]) }
  }
  walk(value, [])
  return out
}

/** A deep copy of plain CBOR-able data (byte strings shared). */
function clone (value: unknown): unknown {
  if (value instanceof Uint8Array || value === null || typeof value !== 'object') { return value }
  if (Array.isArray(value)) { return value.map(clone) }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clone(v)]))
}

function setPath (root: unknown, path: Path, update: (parent: Record<string | number, unknown>, key: string | number) => void): void {
  let node = root as Record<string | number, unknown>
  for (const key of path.slice(0, -1)) { node = node[key] as Record<string | number, unknown> }
  update(node, path[path.length - 1])
}

const SENTINEL = '\u0001fuzz-sentinel\u0001'
const SENTINEL_BYTES = encode(SENTINEL)

function indexOfBytes (haystack: Uint8Array, needle: Uint8Array): number {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength).indexOf(Buffer.from(needle.buffer, needle.byteOffset, needle.byteLength))
}

/** Encodes `object` (whose tree holds SENTINEL once) with the sentinel's bytes replaced by `raw`. */
function encodeWithRaw (object: unknown, raw: Uint8Array): Uint8Array {
  const encoded = encode(object)
  const at = indexOfBytes(encoded, SENTINEL_BYTES)
  if (at < 0) { return encoded }
  return concat(encoded.subarray(0, at), raw, encoded.subarray(at + SENTINEL_BYTES.byteLength))
}

/** Structural mutations of a decoded frame, re-encoded with cborg (or by hand where cborg refuses). */
function mutateObject (rng: Rng, template: unknown): { bytes: Uint8Array, how: string } {
  const object = clone(template)
  const all = paths(object)
  if (all.length === 0) { return { bytes: encode(wrongValue(rng)), how: 'root-wrong-type' } }
  const path = pick(rng, all)
  let sentinelKey = ''
  try {
    switch (rng.intBetween(0, 5)) {
      case 0:
        setPath(object, path, (parent, key) => { parent[key] = wrongValue(rng) })
        return { bytes: encode(object), how: 'wrong-type' }
      case 1:
        setPath(object, path, (parent, key) => { if (Array.isArray(parent)) { parent.splice(key as number, 1) } else { Reflect.deleteProperty(parent, key) } })
        return { bytes: encode(object), how: 'missing-field' }
      case 2:
        setPath(object, path, (parent) => { if (!Array.isArray(parent)) { parent[pick(rng, ['extra', 'v', 'kind', 'x'.repeat(rng.intBetween(1, 40))]) + '_'] = wrongValue(rng) } })
        return { bytes: encode(object), how: 'unknown-field' }
      case 3: {
        // a duplicate key: a sentinel key is added beside `key` and replaced by the encoding of `key`
        let duplicated = false
        setPath(object, path, (parent, key) => {
          if (Array.isArray(parent)) { return }
          parent[SENTINEL] = wrongValue(rng)
          duplicated = true
          sentinelKey = String(key)
        })
        if (!duplicated) { return { bytes: encode(wrongValue(rng)), how: 'root-wrong-type' } }
        return { bytes: encodeWithRaw(object, encode(sentinelKey)), how: 'duplicate-key' }
      }
      default: {
        const raw = rawCborItem(rng)
        setPath(object, path, (parent, key) => { parent[key] = SENTINEL })
        return { bytes: encodeWithRaw(object, raw.bytes), how: raw.how }
      }
    }
  } catch {
    return { bytes: encode(wrongValue(rng)), how: 'root-wrong-type' }
  }
}

/** Wraps `body` in a length prefix, honest or not. */
function framed (rng: Rng, body: Uint8Array, max: number, honest = 0.85): { wire: Uint8Array, how: string | null } {
  const r = rng.nextFloat()
  if (r < honest) { return { wire: concat(varint(body.byteLength), body), how: null } }
  switch (rng.intBetween(0, 6)) {
    case 0: return { wire: concat(varint(body.byteLength + rng.intBetween(1, 64)), body), how: 'prefix-too-long' }
    case 1: return { wire: concat(varint(Math.max(0, body.byteLength - rng.intBetween(1, 64))), body), how: 'prefix-too-short' }
    case 2: {
      // the same length in more varint bytes than needed
      const honestPrefix = varint(body.byteLength)
      const padded = concat(honestPrefix.subarray(0, -1), Uint8Array.of(honestPrefix[honestPrefix.length - 1] | 0x80), new Uint8Array(rng.intBetween(0, 2)).fill(0x80), Uint8Array.of(0x00))
      return { wire: concat(padded, body), how: 'prefix-non-minimal' }
    }
    case 3: return { wire: new Uint8Array(rng.intBetween(5, 64)).fill(0xff), how: 'prefix-never-ends' }
    case 4: return { wire: concat(varint(pick(rng, [max + 1, max + rng.intBetween(2, 4096), 2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER])), body.subarray(0, 64)), how: 'prefix-huge' }
    case 5: return { wire: concat(Uint8Array.of(0x00), body), how: 'prefix-zero' }
    default: return { wire: concat(varint(body.byteLength), body, varint(rng.intBetween(1, 1000))), how: 'prefix-dangling' }
  }
}

/** What a protocol's generator provides; the common mix is built on top. */
interface ProtocolFrames {
  /** A valid request or frame body and the plain object it encodes (for structural mutations). */
  valid(rng: Rng): { label: string, object: unknown, body: Uint8Array }
  /** A valid but hostile item, already framed (may hold several frames). */
  hostile(rng: Rng): FuzzFrame
  /**
   * Frames that decode but are wrong where the encoding cannot tell (PBFT:
   * forged signatures), in place of the CBOR mutations; `label` in full.
   */
  structural?(rng: Rng): { label: string, body: Uint8Array }
  /** Applied to each byte-mutated body before it is framed. */
  guard?(body: Uint8Array): Uint8Array
}

/**
 * The frame source for one protocol: 20% random bytes, 35% byte-mutated
 * valid frames, 15% structurally mutated CBOR, 10% valid frames behind a
 * lying length prefix, 20% valid or hostile frames.
 */
export function frameGenerator (protocol: FuzzProtocol, seed: number, context: FuzzContext): FrameSource {
  return mixFrames(createRng(seed), frameBytesMax(protocol), protocolFrames(protocol, context))
}

function mixFrames (rng: Rng, max: number, frames: ProtocolFrames): FrameSource {
  return () => {
    try {
      const r = rng.nextFloat()
      if (r < 0.2) {
        const body = randomBytes(rng, randomLength(rng, max))
        const { wire, how } = framed(rng, body, max, 0.95)
        return { label: how ?? 'random', wire, frames: 1 }
      }
      if (r < 0.55) {
        let { body } = frames.valid(rng)
        let how = ''
        for (let i = rng.intBetween(1, 3); i > 0; i--) {
          const m = mutateOnce(rng, body)
          body = m.bytes
          how = m.how
        }
        return { label: `mutated:${how}`, wire: framed(rng, frames.guard?.(body) ?? body, max, 0.97).wire, frames: 1 }
      }
      if (r < 0.7) {
        if (frames.structural != null) {
          const { label, body } = frames.structural(rng)
          return { label, wire: lp(body), frames: 1 }
        }
        const { object } = frames.valid(rng)
        const m = mutateObject(rng, object)
        return { label: `cbor:${m.how}`, wire: framed(rng, m.bytes, max, 1).wire, frames: 1 }
      }
      if (r < 0.8) {
        const { body } = frames.valid(rng)
        const { wire, how } = framed(rng, body, max, 0)
        return { label: `prefix:${how ?? 'honest'}`, wire, frames: 1 }
      }
      if (r < 0.88) {
        const { label, body } = frames.valid(rng)
        return { label: `valid:${label}`, wire: concat(varint(body.byteLength), body), frames: 1 }
      }
      return frames.hostile(rng)
    } catch (err) {
      // a generator bug must not stop a run: send something and say so in the label
      return { label: `generator-error:${(err as Error).message.slice(0, 60)}`, wire: Uint8Array.of(0x01, 0x00), frames: 1 }
    }
  }
}

function protocolFrames (protocol: FuzzProtocol, context: FuzzContext): ProtocolFrames {
  switch (protocol) {
    case 'raft': return raftFrames(context)
    case 'raft-client': return raftClientFrames(context)
    case 'admission': return admissionFrames(context)
    case 'join': return joinFrames(context)
    case 'swim': return swimFrames(context)
    case 'anti-entropy': return antiEntropyFrames(context)
    case 'dkg': return dkgFrames(context)
    case 'pbft': case 'pbft-state': throw new Error('PBFT frames come from pbftFrameGenerator')
    default: return clusterHelloFrames()
  }
}

// ---- /accord/raft/1.0.0 ----

function pickTerm (rng: Rng, ctx: FuzzContext): number {
  const r = rng.nextFloat()
  if (r < 0.3) { return ctx.term }
  if (r < 0.5) { return ctx.term + rng.intBetween(1, 3) }
  if (r < 0.62) { return ctx.term + rng.intBetween(4, 1_000_000) }
  if (r < 0.7) { return COUNT_MAX - rng.intBetween(0, 2) }
  if (r < 0.72) { return COUNT_MAX }
  if (r < 0.85) { return rng.intBetween(0, ctx.term) }
  return rng.nextUint32()
}

function pickFrom (rng: Rng, ctx: FuzzContext): string {
  const r = rng.nextFloat()
  if (r < 0.82) { return ctx.self }
  if (r < 0.9) { return pick(rng, ctx.members) }
  if (r < 0.95) { return syntheticPeerId(rng) }
  return 'x'.repeat(rng.intBetween(1, 256))
}

function pickTo (rng: Rng, ctx: FuzzContext): string {
  const r = rng.nextFloat()
  if (r < 0.88) { return ctx.target }
  if (r < 0.94) { return pick(rng, ctx.members) }
  if (r < 0.97) { return ctx.self }
  return syntheticPeerId(rng)
}

/** A commit index that commits nothing the target does not already hold committed. */
function safeCommit (rng: Rng, ctx: FuzzContext): number {
  return rng.chance(0.5) ? 0 : rng.intBetween(0, ctx.commit)
}

/** A configuration: the group's, or 1024 made-up members (the most a ConfState may list; 2000 is a hostile frame of its own). */
function fuzzConf (rng: Rng, ctx: FuzzContext, lists: ConfLists): ConfState {
  if (rng.chance(0.7)) { return { voters: [...ctx.members], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }
  return { voters: lists.ids(1024), votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }
}

/** Made-up node ids and conf-change payloads, built once per generator (they are large). */
class ConfLists {
  readonly #rng: Rng
  #pool: string[] = []
  #addVoters?: Uint8Array
  #force?: Uint8Array

  constructor (rng: Rng) { this.#rng = rng }

  ids (n: number): string[] {
    while (this.#pool.length < n) { this.#pool.push(`fuzz-${this.#pool.length}-${this.#rng.nextUint32().toString(36)}`) }
    return this.#pool.slice(0, n)
  }

  /** A conf change adding 2000 voters (refused: more than CONF_CHANGES_MAX changes). */
  addVoters (): Uint8Array {
    this.#addVoters ??= encodeConfChange({ changes: this.ids(2000).map(node => ({ type: 'add-voter' as const, node })) })
    return this.#addVoters
  }

  /** A forced configuration of 2000 voters (refused: more than CONF_MEMBERS_MAX members). */
  force (): Uint8Array {
    this.#force ??= encodeConfChange({ force: { voters: this.ids(2000), learners: [] } })
    return this.#force
  }
}

function entryData (rng: Rng, lists: ConfLists): { type: Entry['type'], data: Uint8Array } {
  const r = rng.nextFloat()
  if (r < 0.55) { return { type: 'normal', data: randomBytes(rng, rng.intBetween(0, 64)) } }
  if (r < 0.75) {
    return { type: 'normal', data: encodeCommand({ type: 'put', session: { clientId: `fuzz-${rng.nextUint32().toString(36)}`, sequence: rng.intBetween(1, 1000) }, key: `fuzz/${rng.intBetween(0, 63)}`, value: randomBytes(rng, rng.intBetween(0, 32)) }) }
  }
  if (r < 0.85) { return { type: 'conf-change', data: randomBytes(rng, rng.intBetween(0, 64)) } }
  if (r < 0.93) { return { type: 'conf-change', data: lists.addVoters() } }
  return { type: 'conf-change', data: lists.force() }
}

function appendMessage (rng: Rng, ctx: FuzzContext, lists: ConfLists, entryCount: number, data = (): { type: Entry['type'], data: Uint8Array } => entryData(rng, lists)): Message {
  const from = pickFrom(rng, ctx)
  const to = pickTo(rng, ctx)
  const term = pickTerm(rng, ctx)
  let prevIndex = pick<() => number>(rng, [
    () => ctx.lastIndex,
    () => ctx.lastIndex,
    () => ctx.lastIndex + rng.intBetween(1, 5),
    () => rng.intBetween(0, ctx.lastIndex),
    () => rng.nextUint32()
  ])()
  let prevTerm = 0
  if (prevIndex > 0) { prevTerm = rng.chance(0.5) ? term : rng.intBetween(0, term) }
  if (term === 0) { prevIndex = 0; prevTerm = 0 }
  const count = term === 0 ? 0 : entryCount
  const entries: Entry[] = []
  for (let i = 0; i < count; i++) { entries.push({ term, index: prevIndex + 1 + i, ...data() }) }
  return { type: 'append', from, to, term, prevIndex, prevTerm, entries, commit: safeCommit(rng, ctx) }
}

function snapshotMessage (rng: Rng, ctx: FuzzContext, lists: ConfLists, data: Uint8Array): SnapshotMessage {
  const term = Math.max(1, pickTerm(rng, ctx))
  const index = rng.chance(0.5) ? ctx.commit + rng.intBetween(1, 1000) : rng.intBetween(1, Math.max(1, ctx.commit))
  return { type: 'snapshot', from: pickFrom(rng, ctx), to: pickTo(rng, ctx), term, snapshot: { meta: { index, term: rng.intBetween(1, term), conf: fuzzConf(rng, ctx, lists) }, data } }
}

/** A well-formed Raft message of a random type. */
function raftMessage (rng: Rng, ctx: FuzzContext, lists: ConfLists): Message {
  const base = (): { from: string, to: string, term: number } => ({ from: pickFrom(rng, ctx), to: pickTo(rng, ctx), term: pickTerm(rng, ctx) })
  switch (rng.intBetween(0, 11)) {
    case 0: return appendMessage(rng, ctx, lists, rng.intBetween(0, 3))
    case 1: return { type: 'append-response', ...base(), index: rng.intBetween(0, ctx.lastIndex + 10), reject: rng.chance(0.5), rejectHint: rng.intBetween(0, ctx.lastIndex), hintTerm: rng.intBetween(0, ctx.term) }
    case 2:
    case 3: {
      const b = base()
      const term = Math.max(1, b.term)
      const lastIndex = rng.chance(0.5) ? ctx.lastIndex + rng.intBetween(1, 1_000_000) : rng.intBetween(0, ctx.lastIndex)
      return { type: rng.chance(0.5) ? 'vote' : 'pre-vote', ...b, term, lastIndex, lastTerm: rng.intBetween(0, term), transfer: rng.chance(0.3) }
    }
    case 4: return { type: rng.chance(0.5) ? 'vote-response' : 'pre-vote-response', ...base(), reject: rng.chance(0.5) }
    case 5: return { type: 'heartbeat', ...base(), commit: safeCommit(rng, ctx), readRound: rng.intBetween(0, 1_000_000) }
    case 6: return { type: 'heartbeat-response', ...base(), readRound: rng.intBetween(0, 1_000_000) }
    case 7: return snapshotMessage(rng, ctx, lists, randomBytes(rng, rng.intBetween(0, 256)))
    case 8: return { type: 'timeout-now', ...base() }
    case 9: return { type: 'read-index', ...base(), context: randomBytes(rng, rng.chance(0.1) ? READ_CONTEXT_BYTES_MAX : rng.intBetween(0, 32)) }
    case 10: return { type: 'read-index-response', ...base(), index: rng.intBetween(0, ctx.commit + 10), context: randomBytes(rng, rng.intBetween(0, 32)) }
    default: return appendMessage(rng, ctx, lists, rng.intBetween(1, 3))
  }
}

function lp (body: Uint8Array): Uint8Array {
  return concat(varint(body.byteLength), body)
}

function raftFrames (ctx: FuzzContext): ProtocolFrames {
  let lists: ConfLists | undefined
  const listsFor = (rng: Rng): ConfLists => { lists ??= new ConfLists(rng.fork()); return lists }
  const snapshotLimit = kvSnapshotBytesMax(KV_DEFAULTS)
  const emptySnapshot = (rng: Rng): SnapshotMessage => snapshotMessage(rng, ctx, listsFor(rng), new Uint8Array(0))
  const begin = (rng: Rng, dataBytes: number): Uint8Array => lp(encodeFrame({ kind: 'snapshot-begin', message: emptySnapshot(rng), dataBytes }))
  const chunk = (data: Uint8Array): Uint8Array => lp(encodeFrame({ kind: 'snapshot-chunk', data }))
  /** Chunks of random data adding up to `total` bytes. */
  const chunks = (rng: Rng, total: number): Uint8Array[] => {
    const out: Uint8Array[] = []
    for (let sent = 0; sent < total;) {
      const n = Math.min(total - sent, rng.intBetween(1, 64 * KIB))
      out.push(chunk(randomBytes(rng, n)))
      sent += n
    }
    return out
  }
  const one = (label: string, message: Message): FuzzFrame => ({ label: `hostile:${label}`, wire: lp(encodeFrame({ kind: 'message', message })), frames: 1 })
  const many = (label: string, parts: Uint8Array[]): FuzzFrame => ({ label: `hostile:${label}`, wire: concat(...parts), frames: parts.length })
  /** A snapshot of random data declaring `total` bytes and sending `sent(total)`. */
  const garbageSnapshot = (label: string, sent: (total: number, rng: Rng) => number) => (rng: Rng): FuzzFrame => {
    const total = rng.intBetween(2, FUZZ_SNAPSHOT_BYTES_MAX)
    return many(label, [begin(rng, total), ...chunks(rng, sent(total, rng))])
  }
  /** The hostile frames with their weights: the costly ones (10,000 entries, a 4 MiB entry) are rarer than the rest. */
  const HOSTILE: Array<[number, (rng: Rng) => FuzzFrame]> = [
    [10, (rng) => one('heartbeat-term-2^52', { type: 'heartbeat', from: ctx.self, to: ctx.target, term: COUNT_MAX - rng.intBetween(0, 1), commit: safeCommit(rng, ctx), readRound: 0 })],
    [10, (rng) => {
      const term = COUNT_MAX - rng.intBetween(0, 1)
      return one('vote-term-2^52', { type: rng.chance(0.5) ? 'vote' : 'pre-vote', from: ctx.self, to: ctx.target, term, lastIndex: ctx.lastIndex + 1_000_000, lastTerm: term, transfer: rng.chance(0.5) })
    }],
    [10, (rng) => one('spoofed-from', { type: 'heartbeat', from: pick(rng, ctx.members), to: ctx.target, term: ctx.term + 1, commit: 0, readRound: 0 })],
    [10, (rng) => one('spoofed-to', { type: 'heartbeat', from: ctx.self, to: pick(rng, [...ctx.members.filter(m => m !== ctx.target), ctx.self]), term: ctx.term + 1, commit: 0, readRound: 0 })],
    [10, (rng) => many('snapshot-begin-1GiB', [begin(rng, GIB)])],
    [10, (rng) => many('snapshot-begin-over-limit', [begin(rng, snapshotLimit + 1), ...chunks(rng, rng.intBetween(1, 4 * KIB))])],
    [10, (rng) => many('chunk-without-begin', chunks(rng, rng.intBetween(1, 8 * KIB)).slice(0, 1))],
    [10, garbageSnapshot('snapshot-complete-garbage', total => total)],
    [10, garbageSnapshot('snapshot-overrun', (total, rng) => total + rng.intBetween(1, 1024))],
    [10, garbageSnapshot('snapshot-short', (total, rng) => rng.intBetween(1, total - 1))],
    [10, (rng) => {
      const total = rng.intBetween(2, FUZZ_SNAPSHOT_BYTES_MAX)
      const message = lp(encodeFrame({ kind: 'message', message: raftMessage(rng, ctx, listsFor(rng)) }))
      return many('snapshot-interrupted', [begin(rng, total), ...chunks(rng, rng.intBetween(1, total - 1)), rng.chance(0.5) ? message : begin(rng, total)])
    }],
    [1, (rng) => {
      // 10,000 entries (a few times in 100, 65,537: one past MESSAGE_ENTRIES_MAX)
      const count = rng.chance(0.03) ? MESSAGE_ENTRIES_MAX + 1 : 10_000
      const message = appendMessage(rng, ctx, listsFor(rng), count, () => ({ type: 'normal', data: randomBytes(rng, rng.intBetween(0, 8)) }))
      if (message.type !== 'append' || message.entries.length === 0) { return one('append-empty', message) }
      const body = count > MESSAGE_ENTRIES_MAX ? encode({ kind: 'message', message, v: 1 }) : encodeFrame({ kind: 'message', message })
      return { label: `hostile:append-${count}-entries`, wire: lp(body), frames: 1 }
    }],
    [10, (rng) => {
      // conf changes of 2000 members as log entries
      const lists = listsFor(rng)
      const term = Math.max(1, ctx.term + rng.intBetween(0, 2))
      const prevIndex = ctx.lastIndex
      const entries: Entry[] = [{ term, index: prevIndex + 1, type: 'conf-change', data: rng.chance(0.5) ? lists.addVoters() : lists.force() }]
      return one('append-conf-change-2000', { type: 'append', from: ctx.self, to: ctx.target, term, prevIndex, prevTerm: prevIndex === 0 ? 0 : Math.min(term, ctx.term), entries, commit: safeCommit(rng, ctx) })
    }],
    [10, (rng) => {
      // a snapshot (begin with no data) whose configuration lists 1024 or 2000 members
      const message = emptySnapshot(rng)
      const voters = listsFor(rng).ids(rng.chance(0.5) ? 1024 : 2000)
      message.snapshot.meta.conf = { voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }
      const body = voters.length > 1024 ? encode({ dataBytes: 0, kind: 'snapshot-begin', message, v: 1 }) : encodeFrame({ kind: 'snapshot-begin', message, dataBytes: 0 })
      return many(`snapshot-conf-${voters.length}`, [lp(body)])
    }],
    [0.5, (rng) => {
      // an entry of (almost) a whole frame
      const message = appendMessage(rng, ctx, listsFor(rng), 0)
      if (message.type !== 'append' || message.term === 0) { return one('append-empty', message) }
      const big = { term: message.term, index: message.prevIndex + 1, type: 'normal' as const, data: randomBytes(rng, FRAME_BYTES_MAX - rng.intBetween(256, 4096)) }
      return one('append-4MiB-entry', { ...message, entries: [big] })
    }],
    [10, (rng) => one('read-index-context-max', { type: 'read-index', from: ctx.self, to: ctx.target, term: ctx.term, context: randomBytes(rng, READ_CONTEXT_BYTES_MAX) })]
  ]
  const weights = HOSTILE.map(([weight]) => weight)
  const hostile = (rng: Rng): FuzzFrame => HOSTILE[weightedIndex(rng, weights)][1](rng)
  return {
    valid: (rng) => {
      const lists = listsFor(rng)
      if (rng.chance(0.05)) {
        const total = rng.intBetween(0, 4 * KIB)
        const message = emptySnapshot(rng)
        const frame = { kind: 'snapshot-begin' as const, message, dataBytes: total }
        return { label: 'snapshot-begin', object: { v: 1, kind: frame.kind, message, dataBytes: total }, body: encodeFrame(frame) }
      }
      if (rng.chance(0.03)) {
        const data = randomBytes(rng, rng.intBetween(1, 4 * KIB))
        return { label: 'snapshot-chunk', object: { v: 1, kind: 'snapshot-chunk', data }, body: encodeFrame({ kind: 'snapshot-chunk', data }) }
      }
      const message = raftMessage(rng, ctx, lists)
      return { label: message.type, object: { v: 1, kind: 'message', message }, body: encodeFrame({ kind: 'message', message }) }
    },
    hostile
  }
}

// ---- /accord/raft-client/1.0.0 ----

function utf8 (text: string): Uint8Array {
  return new TextEncoder().encode(text)
}

/** A KV command encoded by hand, each field possibly wrong. */
function commandBytes (rng: Rng): { bytes: Uint8Array, how: string } {
  const text = (bytes: Uint8Array): Uint8Array => concat(varint(bytes.byteLength), bytes)
  let version = 1
  let type = pick(rng, [1, 2, 3])
  let clientId = utf8(`fuzz-${rng.nextUint32().toString(36)}`)
  let sequence = rng.intBetween(1, 1000)
  let key = utf8(`fuzz/${rng.intBetween(0, 63)}`)
  let value = randomBytes(rng, rng.intBetween(0, 64))
  let tail: Uint8Array = new Uint8Array(0)
  let how = 'valid'
  switch (rng.intBetween(0, 12)) {
    case 0: version = pick(rng, [0, 2, 255]); how = 'version'; break
    case 1: type = pick(rng, [0, 4, 255]); how = 'type'; break
    case 2: clientId = new Uint8Array(0); how = 'empty-client-id'; break
    case 3: clientId = utf8('c'.repeat(129)); how = 'long-client-id'; break
    case 4: clientId = Uint8Array.of(0xed, 0xa0, 0x80); how = 'surrogate-client-id'; break
    case 5: sequence = 0; how = 'sequence-0'; break
    case 6: key = new Uint8Array(0); how = 'empty-key'; break
    case 7: key = utf8('k'.repeat(1025)); how = 'long-key'; break
    case 8: key = Uint8Array.of(0xff, 0xfe); how = 'bad-utf8-key'; break
    case 9: {
      const over = rng.chance(0.2)
      value = new Uint8Array(over ? KV_DEFAULTS.valueBytesMax + 1 : 0)
      how = over ? 'value-over-limit' : 'value-empty'
      break
    }
    case 10: tail = randomBytes(rng, rng.intBetween(1, 8)); how = 'trailing-bytes'; break
    case 11: key = utf8(`\u0000accord/revoked/${syntheticPeerId(rng)}`); how = 'reserved-key'; break
    default: break
  }
  // a cas carries a flag (0: expected absent, 1: expected follows; 2 is wrong) before its value
  let casPart: Uint8Array = new Uint8Array(0)
  if (type === 3) { casPart = rng.chance(0.5) ? Uint8Array.of(0) : concat(Uint8Array.of(rng.chance(0.9) ? 1 : 2), text(randomBytes(rng, 4))) }
  const valuePart = type === 2 ? new Uint8Array(0) : text(value)
  const bytes = concat(Uint8Array.of(version, type), text(clientId), varint(sequence), text(key), casPart, valuePart, tail)
  return { bytes, how }
}

function raftClientFrames (ctx: FuzzContext): ProtocolFrames {
  const badNode = (rng: Rng): unknown => pick(rng, ['not-a-peer-id', '', 'x'.repeat(300), 42, null, syntheticPeerId(rng).slice(0, -1), `${syntheticPeerId(rng)}x`])
  const valid = (rng: Rng): { label: string, object: unknown, body: Uint8Array } => {
    let object: Record<string, unknown>
    let label: string
    switch (rng.intBetween(0, 4)) {
      case 0: {
        // a real write, rarely (it is a legitimate request from a member)
        const command = rng.chance(0.1)
          ? encodeCommand({ type: 'put', session: { clientId: `fuzz-${rng.nextUint32().toString(36)}`, sequence: 1 }, key: `fuzz/${rng.intBetween(0, 63)}`, value: randomBytes(rng, rng.intBetween(0, 32)) })
          : commandBytes(rng).bytes
        object = { v: 1, op: 'propose', command }
        label = 'propose'
        break
      }
      case 1:
        // promote a made-up node (refused: not a learner) or remove one (a no-op change)
        object = { v: 1, op: 'conf-change', change: { changes: [{ type: rng.chance(0.7) ? 'promote' : 'remove', node: syntheticPeerId(rng) }] } }
        label = 'conf-change'
        break
      case 2:
        object = { v: 1, op: 'transfer-leader', to: rng.chance(0.5) ? ctx.self : syntheticPeerId(rng) }
        label = 'transfer-leader'
        break
      default:
        object = { v: 1, op: 'peer-addresses', peers: Array.from({ length: rng.intBetween(0, 64) }, () => rng.chance(0.8) ? syntheticPeerId(rng) : pick(rng, ctx.members)) }
        label = 'peer-addresses'
        break
    }
    return { label, object, body: encode(object) }
  }
  let addVoters: Uint8Array | undefined
  const hostile = (rng: Rng): FuzzFrame => {
    let object: unknown
    let label: string
    // the near-max request (2 MiB) is rarer than the rest
    switch (weightedIndex(rng, [10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 0.5])) {
      case 0: {
        const c = commandBytes(rng)
        object = { v: 1, op: 'propose', command: c.bytes }
        label = `propose-${c.how}`
        break
      }
      case 1: object = { v: 1, op: 'propose', command: pick(rng, ['text', 1, null, [1, 2], { type: 'put' }]) }; label = 'propose-command-not-bytes'; break
      case 2: object = { v: 1, op: 'propose' }; label = 'propose-no-command'; break
      case 3:
        addVoters ??= lp(encode({ v: 1, op: 'conf-change', change: { changes: Array.from({ length: 2000 }, () => ({ type: 'add-voter', node: syntheticPeerId(rng) })) } }))
        return { label: 'hostile:conf-change-2000-members', wire: addVoters, frames: 1 }
      case 4: object = { v: 1, op: 'conf-change', change: { changes: Array.from({ length: 65 }, () => ({ type: 'add-learner', node: 'nope' })) } }; label = 'conf-change-65-changes'; break
      case 5: object = { v: 1, op: 'conf-change', change: { changes: [{ type: pick(rng, ['add-voter', 'add-learner']), node: badNode(rng) }] } }; label = 'conf-change-bad-node'; break
      case 6: object = { v: 1, op: 'conf-change', change: pick(rng, [{ changes: 'all' }, { changes: [{ type: 'explode', node: 'a' }] }, { changes: [], joint: 'yes' }, { changes: [] }, null, 7]) }; label = 'conf-change-bad-shape'; break
      case 7: object = { v: 1, op: 'transfer-leader', to: badNode(rng) }; label = 'transfer-leader-bad-to'; break
      case 8: object = { v: 1, op: 'peer-addresses', peers: Array.from({ length: 65 }, () => syntheticPeerId(rng)) }; label = 'peer-addresses-65'; break
      case 9: object = { v: 1, op: 'peer-addresses', peers: pick(rng, [[1, 2], 'a', null, [null], [['x']]]) }; label = 'peer-addresses-bad'; break
      case 10: object = { v: pick(rng, [0, 2, '1', null, 1.5]), op: 'propose', command: new Uint8Array(4) }; label = 'bad-version'; break
      case 11: object = { v: 1, op: pick(rng, ['', 'PROPOSE', 'delete-everything', 7, null]) }; label = 'unknown-op'; break
      case 12: object = pick(rng, [[], 'request', 0, null, new Uint8Array(8)]); label = 'not-a-map'; break
      default: {
        // a request of the largest size the handler reads, and one byte more
        const command = new Uint8Array(frameBytesMax('raft-client') - 40 + rng.intBetween(0, 64))
        object = { v: 1, op: 'propose', command }
        label = 'propose-near-max'
        break
      }
    }
    return { label: `hostile:${label}`, wire: lp(encode(object)), frames: 1 }
  }
  return { valid, hostile }
}

// ---- /accord/admission/1.0.0 and /accord/join/1.0.0 ----

function admissionFrames (ctx: FuzzContext): ProtocolFrames {
  const cert = (rng: Rng): Uint8Array => ctx.certificate ?? randomBytes(rng, rng.intBetween(100, 200))
  return {
    valid: (rng) => {
      const object = { v: 1, cert: cert(rng) }
      return { label: 'certificate', object, body: encode(object) }
    },
    hostile: (rng) => {
      let object: unknown
      let label: string
      switch (rng.intBetween(0, 7)) {
        case 0: {
          const bytes = Uint8Array.from(cert(rng))
          bytes[rng.intBetween(0, bytes.byteLength - 1)] ^= 1 << rng.intBetween(0, 7)
          object = { v: 1, cert: bytes }
          label = 'certificate-bit-flip'
          break
        }
        case 1: object = { v: 1, cert: randomBytes(rng, CERTIFICATE_BYTES_MAX + rng.intBetween(0, 1)) }; label = 'certificate-size-limit'; break
        case 2: object = { v: 1, cert: encode([encode({ v: 1, cluster: ctx.cluster, ck: randomBytes(rng, 32), peer: ctx.self, iat: rng.nextUint32() }), randomBytes(rng, 64)]) }; label = 'certificate-forged'; break
        case 3: object = { v: 1, cert: encode([encode({ v: 1, cluster: ctx.cluster, peer: 'p'.repeat(129) }), randomBytes(rng, 64)]) }; label = 'certificate-long-peer'; break
        case 4: object = { v: 1, cert: pick(rng, ['cert', 1, null, [cert(rng)]]) }; label = 'certificate-not-bytes'; break
        case 5: object = { v: pick(rng, [0, 2, null]), cert: cert(rng) }; label = 'bad-version'; break
        case 6: object = { v: 1, cert: concat(Uint8Array.of(0x82), new Uint8Array(rng.intBetween(100, 1000)).fill(0x81)) }; label = 'certificate-deep'; break
        default: object = { v: 1, cert: cert(rng), extra: randomBytes(rng, 32) }; label = 'extra-field'; break
      }
      return { label: `hostile:${label}`, wire: lp(encode(object)), frames: 1 }
    }
  }
}

function joinFrames (ctx: FuzzContext): ProtocolFrames {
  const token = (rng: Rng): string => ctx.joinToken ?? `${JOIN_TOKEN_PREFIX}${Buffer.from(randomBytes(rng, 150)).toString('base64url')}`
  return {
    valid: (rng) => {
      const object = { v: 1, token: token(rng) }
      return { label: 'token', object, body: encode(object) }
    },
    hostile: (rng) => {
      let object: unknown
      let label: string
      const real = token(rng)
      switch (rng.intBetween(0, 7)) {
        case 0: {
          const at = rng.intBetween(JOIN_TOKEN_PREFIX.length, real.length - 1)
          const swapped = real[at] === 'A' ? 'B' : 'A'
          object = { v: 1, token: real.slice(0, at) + swapped + real.slice(at + 1) }
          label = 'token-char-changed'
          break
        }
        case 1: object = { v: 1, token: real.slice(0, rng.intBetween(0, real.length - 1)) }; label = 'token-truncated'; break
        case 2: object = { v: 1, token: JOIN_TOKEN_PREFIX + 'A'.repeat(JOIN_TOKEN_CHARS_MAX - JOIN_TOKEN_PREFIX.length + rng.intBetween(0, 1)) }; label = 'token-size-limit'; break
        case 3: object = { v: 1, token: JOIN_TOKEN_PREFIX + '!!!not-base64!!!' }; label = 'token-not-base64'; break
        case 4: object = { v: 1, token: JOIN_TOKEN_PREFIX + Buffer.from(encode([encode({ v: 1, cluster: 'c'.repeat(64), ck: randomBytes(rng, 32), exp: 2 ** 53, n: randomBytes(rng, 16) }), randomBytes(rng, 64)])).toString('base64url') }; label = 'token-forged'; break
        case 5: object = { v: 1, token: pick(rng, [1, null, utf8(real), [real]]) }; label = 'token-not-text'; break
        case 6: object = { v: pick(rng, [0, 2, '1']), token: real }; label = 'bad-version'; break
        default: object = { v: 1, token: real + real }; label = 'token-doubled'; break
      }
      return { label: `hostile:${label}`, wire: lp(encode(object)), frames: 1 }
    }
  }
}

// ---- /accord/cluster/<name>/1.0.0 ----

function clusterHelloFrames (): ProtocolFrames {
  // the handler answers with its hello and reads nothing: anything goes
  return {
    valid: (rng) => {
      const object = { cluster: 'accord', version: '0.0.0', pad: randomBytes(rng, rng.intBetween(0, 16)) }
      return { label: 'hello', object, body: encode(object) }
    },
    hostile: (rng) => ({ label: 'hostile:flood', wire: randomBytes(rng, rng.intBetween(1, 64 * KIB)), frames: 1 })
  }
}

// ---- /accord/swim/1.0.0 ----

/**
 * SWIM messages (protocols/membership/types.ts), one per stream as the
 * service reads them. Updates name the attacker mostly, sometimes the
 * target, a group member or a made-up peer, at small incarnations (news
 * the target may take) or at ones near 2^52 (which it must drop).
 */
function swimFrames (ctx: FuzzContext): ProtocolFrames {
  const someone = (rng: Rng): string => pick<() => string>(rng, [() => ctx.self, () => ctx.self, () => ctx.target, () => pick(rng, ctx.members), () => syntheticPeerId(rng)])()
  const incarnation = (rng: Rng): number => {
    const r = rng.nextFloat()
    if (r < 0.8) { return rng.intBetween(0, 5) }
    if (r < 0.9) { return rng.intBetween(6, INCARNATION_JUMP_MAX + 10) }
    return INCARNATION_MAX - rng.intBetween(0, 2)
  }
  const alive = (rng: Rng, id: string, metaBytes = rng.intBetween(0, 64)): AliveUpdate => ({ kind: 'alive', id, incarnation: incarnation(rng), meta: randomBytes(rng, metaBytes) })
  const update = (rng: Rng): Update => {
    const id = someone(rng)
    switch (rng.intBetween(0, 3)) {
      case 0: return alive(rng, id)
      case 1: return { kind: 'suspect', id, incarnation: incarnation(rng), from: ctx.self }
      case 2: return { kind: 'dead', id, incarnation: incarnation(rng), from: ctx.self }
      default: return { kind: 'left', id, incarnation: incarnation(rng) }
    }
  }
  const updates = (rng: Rng): Update[] => rng.chance(0.5) ? [] : Array.from({ length: rng.intBetween(1, 3) }, () => update(rng))
  const message = (rng: Rng): SwimMessage => {
    const base = { from: pickFrom(rng, ctx), to: pickTo(rng, ctx), updates: updates(rng) }
    const seq = rng.intBetween(0, 1000)
    switch (rng.intBetween(0, 5)) {
      case 0: return { type: 'ping', ...base, seq }
      case 1: return { type: 'ack', ...base, seq, announce: rng.chance(0.3) }
      case 2: return { type: 'nack', ...base, seq }
      case 3: return { type: 'ping-req', ...base, seq, target: someone(rng), nack: rng.chance(0.5) }
      case 4: return { type: 'join', ...base, after: rng.chance(0.7) ? null : someone(rng) }
      default: return { type: 'join-ack', ...base, members: Array.from({ length: rng.intBetween(0, 3) }, () => alive(rng, someone(rng))), next: rng.chance(0.5) ? null : someone(rng) }
    }
  }
  const honest = { from: ctx.self, to: ctx.target }
  const one = (label: string, m: unknown): FuzzFrame => ({ label: `hostile:${label}`, wire: lp(encode(m)), frames: 1 })
  let overList: FuzzFrame | undefined
  const HOSTILE: Array<(rng: Rng) => FuzzFrame> = [
    (rng) => one('incarnation-2^52', { type: 'ping', ...honest, seq: 1, updates: [{ kind: pick(rng, ['suspect', 'dead']), id: pick(rng, [ctx.target, ...ctx.members]), incarnation: INCARNATION_MAX - rng.intBetween(0, 1), from: ctx.self }] }),
    (rng) => one('incarnation-over-2^52', { type: 'ping', ...honest, seq: 1, updates: [alive(rng, ctx.self, 0), { kind: 'alive', id: ctx.self, incarnation: pick(rng, [INCARNATION_MAX + 1, 2 ** 53, Number.MAX_SAFE_INTEGER]), meta: new Uint8Array(0) }] }),
    (rng) => one('own-incarnation-2^52', { type: 'ping', ...honest, seq: 1, updates: [{ kind: 'alive', id: ctx.self, incarnation: INCARNATION_MAX - rng.intBetween(0, 1), meta: new Uint8Array(0) }] }),
    (rng) => one('spoofed-from', { ...message(rng), from: pick(rng, ctx.members.filter(m => m !== ctx.target)) }),
    (rng) => one('accuse-target', { type: 'ping', ...honest, seq: rng.intBetween(1, 1000), updates: [{ kind: pick(rng, ['suspect', 'dead']), id: ctx.target, incarnation: rng.intBetween(0, 3), from: ctx.self }] }),
    (rng) => one('ping-req', { type: 'ping-req', ...honest, seq: rng.intBetween(1, 1000), target: someone(rng), nack: true, updates: [alive(rng, ctx.self, 0)] }),
    (rng) => one('join', { type: 'join', ...honest, after: null, updates: [] }),
    (rng) => {
      // an unasked join page of 6 KiB members: just over messageBytesMax by the byte model (6,211 bytes
      // each, within the frame limit), or well past the frame limit
      const count = rng.chance(0.5) ? Math.ceil(MEMBERSHIP_DEFAULTS.messageBytesMax / 6211) : rng.intBetween(20, 40)
      const members = Array.from({ length: count }, () => ({ kind: 'alive', id: syntheticPeerId(rng), incarnation: 0, meta: new Uint8Array(6144) }))
      return one(`join-ack-${count}-members`, { type: 'join-ack', ...honest, members, next: null, updates: [] })
    },
    () => {
      // the same every time: built once
      overList ??= one('updates-over-list-limit', { type: 'ping', ...honest, seq: 1, updates: Array.from({ length: LIST_LENGTH_MAX + 1 }, () => ({ kind: 'left', id: 'x', incarnation: 0 })) })
      return overList
    },
    (rng) => one('meta-over-limit', { type: 'ping', ...honest, seq: 1, updates: [{ kind: 'alive', id: ctx.self, incarnation: 1, meta: new Uint8Array(6145 + rng.intBetween(0, 4096)) }] })
  ]
  return {
    valid: (rng) => {
      const m = message(rng)
      return { label: m.type, object: m, body: encode(m) }
    },
    hostile: (rng) => pick(rng, HOSTILE)(rng)
  }
}

// ---- /accord/anti-entropy/1.0.0 ----

/**
 * Anti-entropy messages (protocols/gossip/types.ts), one per stream as the
 * service reads them: digests with random pages and wants, and deltas
 * whose entries claim to be any node's, signed by nobody (64 random
 * bytes), at small versions or near 2^52. None can verify: each must be
 * refused whole, changing nothing.
 */
function antiEntropyFrames (ctx: FuzzContext): ProtocolFrames {
  const node = (rng: Rng): string => pick<() => string>(rng, [() => ctx.self, () => ctx.target, () => pick(rng, ctx.members), () => syntheticPeerId(rng)])()
  const version = (rng: Rng): number => rng.chance(0.9) ? rng.intBetween(0, 20) : VERSION_MAX - rng.intBetween(0, 2)
  const page = (rng: Rng): DigestPage => {
    const versions = [...new Set(Array.from({ length: rng.intBetween(0, 4) }, () => node(rng)))].sort().map(n => ({ node: n, version: version(rng) }))
    return { after: null, until: null, versions }
  }
  const entry = (rng: Rng, v: number): WireEntry => ({
    key: rng.chance(0.1) ? '' : `k${rng.intBetween(0, 9)}`,
    value: rng.chance(0.2) ? null : randomBytes(rng, rng.intBetween(0, 64)),
    version: v,
    signature: randomBytes(rng, rng.chance(0.9) ? 64 : rng.intBetween(0, 130)),
    ageTicks: rng.intBetween(0, 100)
  })
  const delta = (rng: Rng): NodeDelta => {
    const after = version(rng)
    return { node: node(rng), after, entries: Array.from({ length: rng.intBetween(1, 3) }, (_, i) => entry(rng, Math.min(after + i + 1, VERSION_MAX))) }
  }
  const message = (rng: Rng): GossipMessage => {
    const base = { from: pickFrom(rng, ctx), to: pickTo(rng, ctx) }
    return rng.chance(0.5)
      ? { type: 'digest', ...base, page: page(rng), want: pick(rng, ['entries', 'digest', 'both'] as const) }
      : { type: 'delta', ...base, deltas: Array.from({ length: rng.intBetween(0, 3) }, () => delta(rng)), page: rng.chance(0.5) ? null : page(rng) }
  }
  const honest = { from: ctx.self, to: ctx.target }
  const one = (label: string, m: unknown): FuzzFrame => ({ label: `hostile:${label}`, wire: lp(encode(m)), frames: 1 })
  const HOSTILE: Array<(rng: Rng) => FuzzFrame> = [
    (rng) => one('forged-target-entry', { type: 'delta', ...honest, page: null, deltas: [{ node: ctx.target, after: 0, entries: [entry(rng, VERSION_MAX - 1)] }] }),
    (rng) => one('spoofed-from', { ...message(rng), from: pick(rng, ctx.members.filter(m => m !== ctx.target)) }),
    (rng) => one('digest-of-many', { type: 'digest', ...honest, want: 'both', page: { after: null, until: null, versions: Array.from({ length: ANTI_ENTROPY_DEFAULTS.digestEntriesMax + rng.intBetween(1, 100) }, (_, i) => ({ node: `n${String(i).padStart(6, '0')}`, version: 1 })) } }),
    (rng) => one('value-over-limit', { type: 'delta', ...honest, page: null, deltas: [{ node: ctx.self, after: 0, entries: [{ ...entry(rng, 1), value: new Uint8Array(ANTI_ENTROPY_DEFAULTS.valueBytesMax + rng.intBetween(1, 1024)) }] }] }),
    (rng) => one('unsorted-versions', { type: 'delta', ...honest, page: null, deltas: [{ node: ctx.self, after: 0, entries: [entry(rng, 3), entry(rng, 2)] }] }),
    () => one('digest-flood', { type: 'digest', ...honest, want: 'entries', page: { after: null, until: null, versions: [] } })
  ]
  return {
    valid: (rng) => {
      const m = message(rng)
      return { label: m.type, object: m, body: encode(m) }
    },
    hostile: (rng) => pick(rng, HOSTILE)(rng)
  }
}

// ---- /accord/dkg/1.0.0 ----

/**
 * DKG datagrams (node/dkg): `{type, from, to, env}`, each `env` a statement
 * signed with the attacker's own key (ctx.sign), so that the frames pass
 * the envelope check and reach the service's handlers: starts with the
 * target among the members (sessions up to DKG_SESSIONS_MAX open, then
 * 'sessions-full'), starts of reshares of groups the target does not hold,
 * key statements, begins and core messages (encodeDkgMessage, with points
 * that are not points) of sessions the target may or may not run, seen
 * digests, signing requests (the target holds no key) and partials of
 * rounds it does not run. Hostile: signatures broken or made for another
 * kind, envelopes signed by someone other than the sender, a datagram type
 * that is not its envelope's kind, member lists past DKG_MEMBERS_MAX,
 * signing messages past DKG_SIGN_MESSAGE_BYTES_MAX, core messages past
 * DKG_MESSAGE_BYTES_MAX.
 */
function dkgFrames (ctx: FuzzContext): ProtocolFrames {
  const sign = ctx.sign
  if (sign == null) { throw new Error('the DKG generator signs with the attacker\'s key: FuzzContext.sign') }
  const envelope = (kind: EnvelopeKind, body: Uint8Array): Envelope => ({ kind, signer: ctx.self, body, sig: sign(envelopePayload(kind, body)) })
  // a few session ids, so that later frames meet the sessions earlier starts opened
  const session = (rng: Rng): Uint8Array => rng.chance(0.8) ? new Uint8Array(16).fill(rng.intBetween(0, 7)) : randomBytes(rng, rng.intBetween(0, 80))
  const members = (rng: Rng): string[] => {
    const list = [ctx.self, ctx.target, ...ctx.members.filter(() => rng.chance(0.5)), ...Array.from({ length: rng.intBetween(0, 2) }, () => syntheticPeerId(rng))]
    return [...new Set(list)].sort()
  }
  const point = (rng: Rng): Uint8Array => rng.chance(0.9) ? randomBytes(rng, G1_BYTES) : randomBytes(rng, rng.intBetween(0, 100))
  const coreMessage = (rng: Rng, id: Uint8Array): DkgMessage => {
    const from = rng.chance(0.9) ? ctx.self : pick(rng, ctx.members)
    const deal = { commitments: Array.from({ length: rng.intBetween(1, 3) }, () => point(rng)), ephemeral: point(rng), boxes: Array.from({ length: rng.intBetween(1, 4) }, () => randomBytes(rng, SEALED_SHARE_BYTES)) }
    switch (rng.intBetween(0, 2)) {
      case 0: return { type: 'deal', session: id, from, ...deal }
      case 1: return { type: 'response', session: id, from, complaints: rng.chance(0.5) ? [] : [{ kind: 'missing', dealer: pick(rng, ctx.members) }, { kind: 'bad-share', dealer: ctx.target, boxKey: point(rng), proof: randomBytes(rng, 64) }] }
      default: return { type: 'justification', session: id, from, deal, shares: [{ member: ctx.target, share: randomBytes(rng, 32) }] }
    }
  }
  const statement = (rng: Rng, kind: EnvelopeKind): Uint8Array => {
    const id = session(rng)
    switch (kind) {
      case 'start': {
        const list = members(rng)
        const old = { session: '00', members: list, threshold: 1, commitments: [point(rng)] }
        return encode({ session: id, members: list, threshold: rng.intBetween(0, list.length + 1), ...(rng.chance(0.3) ? { old } : {}) })
      }
      case 'key': return encode({ session: id, key: point(rng), proof: randomBytes(rng, rng.chance(0.9) ? 64 : rng.intBetween(0, 100)) })
      case 'begin': return encode({ session: id, keys: [envelope('key', encode({ session: id, key: point(rng), proof: randomBytes(rng, 64) }))] })
      case 'msg': return encodeDkgMessage(coreMessage(rng, id))
      case 'seen': return encode({ session: id, deals: [{ dealer: pick(rng, ctx.members), digest: randomBytes(rng, 32), sig: randomBytes(rng, 64) }] })
      case 'sign': return encode({ round: randomBytes(rng, 16), groupKey: point(rng), message: randomBytes(rng, rng.intBetween(0, 64)) })
      default: return encode({ round: randomBytes(rng, 16), index: rng.intBetween(0, 8), signature: randomBytes(rng, 96) })
    }
  }
  const datagram = (rng: Rng): { kind: EnvelopeKind, object: Record<string, unknown> } => {
    const kind = pick(rng, ENVELOPE_KINDS)
    return { kind, object: { type: kind, from: ctx.self, to: pickTo(rng, ctx), env: envelope(kind, statement(rng, kind)) } }
  }
  const honest = { from: ctx.self, to: ctx.target }
  const one = (label: string, m: unknown): FuzzFrame => ({ label: `hostile:${label}`, wire: lp(encode(m)), frames: 1 })
  const HOSTILE: Array<(rng: Rng) => FuzzFrame> = [
    (rng) => {
      const { object } = datagram(rng)
      const env = object.env as Envelope
      return one('broken-signature', { ...object, env: { ...env, sig: Uint8Array.from(env.sig, (b: number, i) => i === 0 ? b ^ 1 : b) } })
    },
    (rng) => one('signed-as-another-kind', { type: 'start', ...honest, env: { ...envelope('key', statement(rng, 'start')), kind: 'start' } }),
    (rng) => one('signer-not-sender', { type: 'key', ...honest, env: { ...envelope('key', statement(rng, 'key')), signer: pick(rng, ctx.members.filter(m => m !== ctx.self)) } }),
    (rng) => one('type-not-kind', { type: 'start', ...honest, env: envelope('sign', statement(rng, 'sign')) }),
    (rng) => one('start-flood', { type: 'start', ...honest, env: envelope('start', encode({ session: randomBytes(rng, 16), members: [ctx.self, ctx.target].sort(), threshold: 2 })) }),
    (rng) => {
      const list = [...new Set([ctx.self, ctx.target, ...Array.from({ length: DKG_MEMBERS_MAX + 1 }, () => syntheticPeerId(rng))])].sort()
      return one('members-over-limit', { type: 'start', ...honest, env: envelope('start', encode({ session: session(rng), members: list, threshold: 2 })) })
    },
    (rng) => one('sign-message-over-limit', { type: 'sign', ...honest, env: envelope('sign', encode({ round: randomBytes(rng, 16), groupKey: point(rng), message: new Uint8Array(DKG_SIGN_MESSAGE_BYTES_MAX + 1) })) }),
    (rng) => {
      const big = encodeDkgMessage({ type: 'response', session: session(rng), from: ctx.self, complaints: [] })
      return one('core-message-over-limit', { type: 'msg', ...honest, env: envelope('msg', concat(big, new Uint8Array(DKG_MESSAGE_BYTES_MAX))) })
    }
  ]
  return {
    valid: (rng) => {
      const { kind, object } = datagram(rng)
      return { label: kind, object, body: encode(object) }
    },
    hostile: (rng) => pick(rng, HOSTILE)(rng)
  }
}

// ---- /accord/pbft/1.0.0 and /accord/pbft-state/1.0.0 ----

/** What the PBFT generator knows of the target and the attacker. Update view/executed/watermarks between runs. */
export interface PbftFuzzContext {
  /** The attacker's peer id: a replica of the set (a Byzantine one), an admitted client outside it, or a stranger. */
  self: string
  /** Signs with the attacker's own key (the key `self` embeds). */
  sign(payload: Uint8Array): Uint8Array
  /** The target's peer id. */
  target: string
  /** The replica set, sorted (primary(v) = replicas[v mod n]). */
  replicas: string[]
  /** The target's view, highest executed seq and watermarks (low, high] when the run starts. */
  view: number
  executed: number
  low: number
  high: number
  /**
   * Whether to send what makes an honest replica isolate a replica
   * attacker: a message `self` claims to have signed whose signature does
   * not verify (signed with another key, flipped, mutated), and two
   * different digests signed for one slot (equivocation). Without it, each
   * digest `self` signs is a function of its slot, and mutated frames that
   * would decode with a broken signature of `self` get a trailing byte (so
   * they do not decode). Irrelevant for a non-replica: a replica message
   * from it is refused as not-a-replica whatever it holds, and a client
   * request with a bad signature is refused, never isolated.
   */
  isolating: boolean
  /**
   * The id (PbftThresholdGroup.id) of the threshold group the targets hold,
   * if any: checkpoints and bad-partial evidence name it (or another one).
   */
  groupId?: string
  /**
   * CHECKPOINTs honest replicas signed (with their partials, under
   * `groupId`), to borrow: the fuzzer holds no honest replica's key.
   */
  honestCheckpoints?: readonly Checkpoint[]
}

/** Longest state request a holder reads (the transport's STATE_REQUEST_BYTES_MAX: up to 20 decimal digits). */
export const PBFT_STATE_REQUEST_BYTES_MAX = 20

/** Views and seqs near 2^52, where a `+ 1` still fits a safe integer and a few more do not fit 2^52. */
const FAR = 2 ** 52

const ED25519_PKCS8_PREFIX = Uint8Array.from(Buffer.from('302e020100300506032b657004220420', 'hex'))

/** The peer id of an Ed25519 public key (the identity multihash of its protobuf). */
function ed25519PeerId (publicKey: Uint8Array): string {
  return base58btc.encode(concat(Uint8Array.from([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]), publicKey)).slice(1)
}

interface FuzzIdentity { id: string, sign(payload: Uint8Array): Uint8Array }

/** An Ed25519 identity from a 32-byte seed (synchronous, so that a generator can make one from its rng). */
export function fuzzIdentity (seed: Uint8Array): FuzzIdentity {
  const key = createPrivateKey({ key: Buffer.from(concat(ED25519_PKCS8_PREFIX, seed)), format: 'der', type: 'pkcs8' })
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' })
  return { id: ed25519PeerId(spki.subarray(spki.byteLength - 32)), sign: (payload) => new Uint8Array(signEd25519(null, payload, key)) }
}

/** Batch digests only (batchDigest needs no keys). */
const HASH_ONLY: PbftCrypto = { sign: () => new Uint8Array(0), verify: () => false, digest: sha256Hex }

function signWith<T extends SignedMessage | ClientRequest> (sign: (payload: Uint8Array) => Uint8Array, unsigned: Omit<T, 'signature'>): T {
  const message = { ...unsigned, signature: new Uint8Array(0) } as unknown as T
  return { ...message, signature: sign(signingPayload(message)) }
}

function isSignedByReplica (message: PbftMessage): message is SignedMessage {
  return message.type !== 'request' && message.type !== 'reply' && message.type !== 'fetch-committed' && message.type !== 'committed-batches' && message.type !== 'configuration'
}

/** Flips one bit of a copy of `signature` (an empty one gets a byte). */
function flipped (rng: Rng, signature: Uint8Array): Uint8Array {
  if (signature.byteLength === 0) { return Uint8Array.of(1) }
  const out = Uint8Array.from(signature)
  out[rng.intBetween(0, out.byteLength - 1)] ^= 1 << rng.intBetween(0, 7)
  return out
}

/**
 * PBFT messages (protocols/pbft/types.ts) encoded by the real encoder, on
 * the transport's long-lived stream. Valid ones are signed with the
 * attacker's key; hostile ones carry views and seqs near 2^52 or far
 * outside the watermarks, floods of future views, batches and operations
 * past the limits, spoofed senders and clients, requests of unknown
 * clients (validly signed by keys made here, so they are ordered),
 * replays, and (with `isolating`) equivocations. Structural frames forge
 * signatures: another key's, flipped bits, wrong lengths, forged
 * certificates inside a message.
 */
function pbftFrames (ctx: PbftFuzzContext): ProtocolFrames {
  const limits = PBFT_DEFAULTS
  const isReplica = ctx.replicas.includes(ctx.self)
  const others = ctx.replicas.filter(r => r !== ctx.self)
  const verifier = new PeerKeyVerifier()
  // made on first use from a forked rng: unknown clients and keys that are nobody's in the set
  let pool: { clients: FuzzIdentity[], rogues: FuzzIdentity[] } | undefined
  const identities = (rng: Rng): { clients: FuzzIdentity[], rogues: FuzzIdentity[] } => {
    if (pool == null) {
      const fork = rng.fork()
      const make = (): FuzzIdentity => fuzzIdentity(randomBytes(fork, 32))
      pool = { clients: [make(), make(), make(), make()], rogues: [make(), make()] }
    }
    return pool
  }
  /** Recently made valid frames, to replay. */
  const recent: Uint8Array[] = []

  const view = (rng: Rng): number => {
    const r = rng.nextFloat()
    if (r < 0.55) { return ctx.view }
    if (r < 0.7) { return ctx.view + rng.intBetween(1, 3) }
    if (r < 0.78) { return ctx.view + rng.intBetween(4, 1_000_000) }
    if (r < 0.86) { return FAR - rng.intBetween(0, 2) }
    if (r < 0.9) { return Number.MAX_SAFE_INTEGER - rng.intBetween(0, 1) }
    return rng.intBetween(0, ctx.view)
  }
  const seq = (rng: Rng): number => {
    const r = rng.nextFloat()
    if (r < 0.45) { return ctx.executed + rng.intBetween(1, 8) }
    if (r < 0.6) { return rng.intBetween(ctx.low + 1, ctx.high) }
    if (r < 0.72) { return ctx.high + rng.intBetween(1, 1_000_000) }
    if (r < 0.8) { return FAR - rng.intBetween(0, 2) }
    if (r < 0.84) { return Number.MAX_SAFE_INTEGER - rng.intBetween(0, 1) }
    // at or below the low watermark (seq 1 while it is 0)
    return rng.intBetween(1, Math.max(1, ctx.low))
  }
  /** What `self` signs for a slot: a function of the slot unless equivocations are allowed. */
  const digest = (rng: Rng, slot: string): string => ctx.isolating && rng.chance(0.5) ? bytesToDigest(randomBytes(rng, 32)) : sha256Hex(utf8(`fuzz/${ctx.self}/${slot}`))
  const key = (rng: Rng): string => `fuzz/${rng.intBetween(0, 63)}`
  const operation = (rng: Rng): Uint8Array => pick<() => Uint8Array>(rng, [
    () => encodeOperation({ type: 'kv', command: { type: 'put', key: key(rng), value: randomBytes(rng, rng.intBetween(0, 32)) } }),
    () => encodeOperation({ type: 'kv', command: { type: 'delete', key: key(rng) } }),
    () => encodeOperation({ type: 'get', key: key(rng) }),
    () => encodeOperation({ type: 'null' }),
    () => randomBytes(rng, rng.intBetween(0, 64))
  ])()
  /** A request signed by `client` (the attacker's own key by default). */
  const request = (rng: Rng, client: FuzzIdentity = { id: ctx.self, sign: ctx.sign }, fields: Partial<ClientRequest> = {}): ClientRequest =>
    signWith<ClientRequest>(client.sign, { type: 'request', client: client.id, timestamp: timestamp(rng), operation: operation(rng), readOnly: rng.chance(0.2), ...fields })
  /** A client's timestamp (its KV session's sequence): mostly ordinary, sometimes 0 or near 2^53. */
  const timestamp = (rng: Rng): number => pick<() => number>(rng, [
    ...Array.from({ length: 16 }, () => () => rng.intBetween(1, 1_000_000)),
    () => rng.intBetween(1, 3), () => 0, () => FAR + rng.intBetween(0, 2), () => Number.MAX_SAFE_INTEGER - rng.intBetween(0, 1)
  ])()
  const batch = (rng: Rng, length = rng.intBetween(0, 3)): ClientRequest[] => Array.from({ length }, () => request(rng, rng.chance(0.5) ? undefined : pick(rng, identities(rng).clients), { readOnly: false }))
  const vote = <T extends 'prepare' | 'commit'>(rng: Rng, type: T, v = view(rng), s = seq(rng), sign = ctx.sign, replica = ctx.self): Prepare | Commit =>
    signWith<Prepare | Commit>(sign, { type, replica, view: v, seq: s, digest: digest(rng, `${type}/${v}/${s}`) } as Omit<Prepare | Commit, 'signature'>)
  const prePrepare = (rng: Rng, v = view(rng), s = seq(rng), requests = batch(rng), sign = ctx.sign, replica = ctx.self): PrePrepare => {
    // a digest that matches the batch may only be signed once per slot (or it is an equivocation)
    const d = ctx.isolating && rng.chance(0.5) ? batchDigest(requests, HASH_ONLY) : digest(rng, `pre-prepare/${v}/${s}`)
    return signWith<PrePrepare>(sign, { type: 'pre-prepare', replica, view: v, seq: s, digest: d, batch: requests })
  }
  /**
   * A checkpoint, sometimes with a partial of garbage: bare (encoding
   * version 2), or under the targets' group or another one (version 3). Its
   * state digest is no state's, so no honest replica tries the partial.
   */
  const checkpoint = (rng: Rng, s = pickCheckpointSeq(rng), sign = ctx.sign, replica = ctx.self): Checkpoint => {
    const stateDigest = digest(rng, `checkpoint/${s}`)
    const r = rng.nextFloat()
    if (r < 0.6) { return signWith<Checkpoint>(sign, { type: 'checkpoint', replica, seq: s, stateDigest }) }
    const partial = randomBytes(rng, GROUP_SIGNATURE_BYTES)
    if (r < 0.7) { return signWith<Checkpoint>(sign, { type: 'checkpoint', replica, seq: s, stateDigest, partial }) }
    const groupId = ctx.groupId !== undefined && rng.chance(0.7) ? ctx.groupId : bytesToDigest(randomBytes(rng, 32))
    return signWith<Checkpoint>(sign, { type: 'checkpoint', replica, seq: s, stateDigest, partial, groupId })
  }
  const pickCheckpointSeq = (rng: Rng): number => rng.chance(0.7) ? limits.checkpointInterval * rng.intBetween(1, 8) : seq(rng)
  /** A stable checkpoint: the genesis, or one whose proof is signed by keys of nobody in the set, claiming replicas. */
  const stable = (rng: Rng): StableCheckpoint => {
    if (rng.chance(0.6)) { return { ...GENESIS_CHECKPOINT, proof: [] } }
    const s = limits.checkpointInterval * rng.intBetween(1, 4)
    const stateDigest = bytesToDigest(randomBytes(rng, 32))
    const proof = ctx.replicas.slice(0, 3).map(replica => signWith<Checkpoint>(pick(rng, identities(rng).rogues).sign, { type: 'checkpoint', replica, seq: s, stateDigest }))
    return { seq: s, stateDigest, proof }
  }
  /** A prepared certificate: a pre-prepare said to be the primary's, and prepares said to be the others', signed by rogue keys. */
  const forgedPrepared = (rng: Rng, v: number): PreparedCertificate => {
    const s = ctx.low + rng.intBetween(1, 16)
    const rogue = pick(rng, identities(rng).rogues)
    const pp = prePrepare(rng, Math.max(0, v - 1), s, batch(rng, 1), rogue.sign, primaryOf(Math.max(0, v - 1), ctx.replicas))
    const prepares = ctx.replicas.filter(r => r !== pp.replica).slice(0, 2).map(replica => signWith<Prepare>(rogue.sign, { type: 'prepare', replica, view: pp.view, seq: s, digest: pp.digest }))
    return { prePrepare: pp, prepares }
  }
  const viewChange = (rng: Rng, v = view(rng)): ViewChange =>
    signWith<ViewChange>(ctx.sign, { type: 'view-change', replica: ctx.self, view: v, stable: stable(rng), prepared: rng.chance(0.7) ? [] : [forgedPrepared(rng, v)] })
  const newView = (rng: Rng, v = view(rng)): NewView =>
    signWith<NewView>(ctx.sign, { type: 'new-view', replica: ctx.self, view: v, viewChanges: rng.chance(0.3) ? [] : [viewChange(rng, v)], prePrepares: rng.chance(0.5) ? [] : [prePrepare(rng, v)] })
  const committedBatches = (rng: Rng): CommittedBatches => ({
    type: 'committed-batches',
    replica: ctx.self,
    certificates: Array.from({ length: rng.intBetween(0, 2) }, () => {
      const { prePrepare: pp } = forgedPrepared(rng, ctx.view + 1)
      const rogue = pick(rng, identities(rng).rogues)
      return { prePrepare: pp, commits: ctx.replicas.slice(0, 3).map(replica => signWith<Commit>(rogue.sign, { type: 'commit', replica, view: pp.view, seq: pp.seq, digest: pp.digest })) }
    })
  })
  const reply = (rng: Rng): Reply => ({ type: 'reply', view: view(rng), replica: ctx.self, client: ctx.target, timestamp: rng.intBetween(0, 1_000_000), readOnly: rng.chance(0.5), result: randomBytes(rng, rng.intBetween(0, 64)) })

  /** A configuration state out of nowhere (a lone liar: f+1 matching ones are needed to move a replica). */
  const configuration = (rng: Rng): PbftMessage => {
    const set = (): string[] => ctx.replicas.slice(0, rng.intBetween(1, ctx.replicas.length))
    const epoch = pick(rng, [1, 2, FAR])
    return {
      type: 'configuration',
      replica: ctx.self,
      state: { latest: { epoch, replicas: set(), afterSeq: pick(rng, [0, 64, FAR]) }, previous: rng.chance(0.5) ? null : { epoch: epoch - 1, replicas: set(), afterSeq: 0 } },
      knownThrough: pick(rng, [0, 256, FAR, Number.MAX_SAFE_INTEGER])
    }
  }

  /** A well-formed message of a random type, signed by the attacker where it is signed. */
  const message = (rng: Rng): PbftMessage => {
    switch (weightedIndex(rng, [16, 4, 8, 14, 14, 6, 3, 3, 4, 3, 3, 4])) {
      case 0: return request(rng)
      case 1: return request(rng, pick(rng, identities(rng).clients))
      case 2: return prePrepare(rng)
      case 3: return vote(rng, 'prepare')
      case 4: return vote(rng, 'commit')
      case 5: return checkpoint(rng)
      case 6: return viewChange(rng)
      case 7: return newView(rng)
      case 8: return { type: 'fetch-committed', replica: ctx.self, fromSeq: seq(rng), epoch: rng.intBetween(0, 3) }
      case 9: return committedBatches(rng)
      case 10: return configuration(rng)
      default: return reply(rng)
    }
  }

  const one = (label: string, m: PbftMessage): FuzzFrame => ({ label: `hostile:${label}`, wire: lp(encodeMessage(m)), frames: 1 })
  const many = (label: string, messages: PbftMessage[]): FuzzFrame => ({ label: `hostile:${label}`, wire: concat(...messages.map(m => lp(encodeMessage(m)))), frames: messages.length })
  let bigBatch: Uint8Array | undefined
  /** The hostile frames with their weights: the costly ones (4 MiB batches) are rarer than the rest. */
  const HOSTILE: Array<[number, (rng: Rng) => FuzzFrame]> = [
    [10, (rng) => one('view-2^52', vote(rng, rng.chance(0.5) ? 'prepare' : 'commit', FAR - rng.intBetween(0, 2), ctx.executed + 1))],
    [5, (rng) => one('view-max-safe', vote(rng, 'commit', Number.MAX_SAFE_INTEGER - rng.intBetween(0, 1), ctx.executed + 1))],
    [5, (rng) => one('view-change-2^52', viewChange(rng, rng.chance(0.5) ? FAR : Number.MAX_SAFE_INTEGER))],
    [5, (rng) => one('new-view-2^52', newView(rng, rng.chance(0.5) ? FAR : Number.MAX_SAFE_INTEGER))],
    [10, (rng) => one('seq-above-watermarks', vote(rng, 'prepare', ctx.view, ctx.high + rng.intBetween(1, FAR)))],
    [5, (rng) => one('seq-max-safe', vote(rng, 'commit', ctx.view, Number.MAX_SAFE_INTEGER - rng.intBetween(0, 1)))],
    [5, (rng) => one('checkpoint-2^52', checkpoint(rng, FAR - (FAR % limits.checkpointInterval) - limits.checkpointInterval * rng.intBetween(0, 2)))],
    [5, (rng) => one('fetch-committed-far', { type: 'fetch-committed', replica: ctx.self, fromSeq: pick(rng, [1, FAR, Number.MAX_SAFE_INTEGER]), epoch: pick(rng, [0, FAR]) })],
    [10, (rng) => {
      // a flood of votes for later views: buffered up to the peer's share, then buffer-full
      const from = ctx.view + 1
      return many('future-view-flood', Array.from({ length: 64 }, (_, i) => vote(rng, i % 2 === 0 ? 'prepare' : 'commit', from + (i >> 1), ctx.executed + 1)))
    }],
    [5, (rng) => many('view-change-flood', Array.from({ length: 64 }, (_, i) => viewChange(rng, ctx.view + 1 + i)))],
    [5, (rng) => many('seq-flood-above-watermarks', Array.from({ length: 64 }, (_, i) => vote(rng, 'prepare', ctx.view, ctx.high + 1 + i)))],
    [5, (rng) => {
      // one past batchRequestsMax: refused by the decoder
      const requests = batch(rng, 1)
      return one(`batch-${limits.batchRequestsMax + 1}-requests`, prePrepare(rng, ctx.view, ctx.executed + 1, Array.from({ length: limits.batchRequestsMax + 1 }, () => requests[0])))
    }],
    [0.3, (rng) => {
      // operations over batchBytesMax in all (each within operationBytesMax): refused by the decoder; built once
      if (bigBatch == null) {
        const op = randomBytes(rng, limits.operationBytesMax)
        const requests = Array.from({ length: Math.floor(limits.batchBytesMax / limits.operationBytesMax) + 1 }, () => request(rng, undefined, { operation: op, readOnly: false }))
        bigBatch = lp(encodeMessage(prePrepare(rng, ctx.view, ctx.executed + 1, requests)))
      }
      return { label: 'hostile:batch-over-batchBytesMax', wire: bigBatch, frames: 1 }
    }],
    [0.5, (rng) => one('operation-at-limit', request(rng, undefined, { operation: randomBytes(rng, limits.operationBytesMax), readOnly: false }))],
    [0.5, (rng) => {
      // a pre-prepare with a large batch for a later view this attacker is the primary of: buffered until that view
      // (held by count, futureMessagesMax / n per peer, not by bytes: long runs show it in the heap check)
      const n = ctx.replicas.length
      const later = ctx.view + 1 + ((ctx.replicas.indexOf(ctx.self) - (ctx.view + 1) % n + n) % n)
      return one('future-view-large-batch', prePrepare(rng, later, ctx.executed + rng.intBetween(1, 8), [request(rng, undefined, { operation: randomBytes(rng, MIB), readOnly: false })]))
    }],
    [10, (rng) => one('spoofed-replica', vote(rng, 'prepare', ctx.view, ctx.executed + 1, pick(rng, identities(rng).rogues).sign, pick(rng, others)))],
    [5, (rng) => one('spoofed-primary', prePrepare(rng, ctx.view, ctx.executed + 1, batch(rng), pick(rng, identities(rng).rogues).sign, primaryOf(ctx.view, ctx.replicas)))],
    [10, (rng) => one('spoofed-client', request(rng, { id: pick(rng, [...ctx.replicas, ctx.target]), sign: ctx.sign }))],
    [10, (rng) => one('unknown-client', request(rng, pick(rng, identities(rng).clients), { readOnly: false }))],
    [5, (rng) => many('unknown-client-burst', Array.from({ length: 16 }, (_, i) => request(rng, pick(rng, identities(rng).clients), { timestamp: i + 1, readOnly: false })))],
    [5, (rng) => one('read-only-write', request(rng, undefined, { readOnly: true, operation: encodeOperation({ type: 'kv', command: { type: 'put', key: key(rng), value: new Uint8Array(1) } }) }))],
    [5, (rng) => one('not-primary', prePrepare(rng, ctx.view, ctx.executed + 1))],
    [5, (rng) => many('reply-flood', Array.from({ length: 32 }, () => reply(rng)))],
    [5, (rng) => one('committed-batches-forged', committedBatches(rng))],
    [10, (rng) => {
      // a frame made earlier, again (duplicates, stale votes)
      if (recent.length === 0) { return one('replay-none', vote(rng, 'prepare')) }
      const wire = pick(rng, recent)
      return { label: 'hostile:replay', wire: concat(wire, wire), frames: 2 }
    }],
    ...(ctx.isolating
      ? [[10, (rng: Rng) => {
          // two digests signed for one slot
          const [v, s, type] = [ctx.view, ctx.executed + rng.intBetween(1, 4), pick(rng, ['prepare', 'commit'] as const)]
          const sign = (d: string): Prepare | Commit => signWith<Prepare | Commit>(ctx.sign, { type, replica: ctx.self, view: v, seq: s, digest: d } as Omit<Prepare | Commit, 'signature'>)
          return many('equivocation', [sign(bytesToDigest(randomBytes(rng, 32))), sign(bytesToDigest(randomBytes(rng, 32)))])
        }] as [number, (rng: Rng) => FuzzFrame]]
      : [])
  ]
  const weights = HOSTILE.map(([weight]) => weight)

  /** Signatures that do not verify. Those on the attacker's own replica messages isolate it, so they come only with `isolating`. */
  const FORGED: Array<[boolean, (rng: Rng) => { how: string, message: PbftMessage }]> = [
    [true, (rng) => ({ how: 'other-key', message: { ...vote(rng, 'prepare', ctx.view, ctx.executed + 1), signature: pick(rng, identities(rng).rogues).sign(new Uint8Array(1)) } })],
    [true, (rng) => {
      const m = pick<() => SignedMessage>(rng, [() => vote(rng, 'commit'), () => checkpoint(rng), () => viewChange(rng), () => prePrepare(rng)])()
      return { how: 'flipped', message: { ...m, signature: flipped(rng, m.signature) } }
    }],
    [true, (rng) => ({ how: 'signature-length', message: { ...vote(rng, 'prepare', ctx.view, ctx.executed + 1), signature: randomBytes(rng, pick(rng, [0, 1, 63, 65, SIGNATURE_BYTES_MAX])) } })],
    [true, (rng) => {
      // signed by another key over the right payload
      const rogue = pick(rng, identities(rng).rogues)
      return { how: 'signed-by-other', message: checkpoint(rng, limits.checkpointInterval * rng.intBetween(1, 8), rogue.sign) }
    }],
    [false, (rng) => ({ how: 'claims-other-replica', message: vote(rng, 'commit', ctx.view, ctx.executed + 1, pick(rng, identities(rng).rogues).sign, pick(rng, others)) })],
    [false, (rng) => {
      const m = request(rng, pick(rng, identities(rng).clients))
      return { how: 'request-flipped', message: { ...m, signature: flipped(rng, m.signature) } }
    }],
    [false, (rng) => ({ how: 'request-other-key', message: request(rng, { id: pick(rng, identities(rng).clients).id, sign: ctx.sign }) })],
    [false, (rng) => ({ how: 'nested-certificates', message: rng.chance(0.5) ? committedBatches(rng) : viewChange(rng) })],
    [false, (rng) => {
      // a batch whose request signatures are broken under a digest that matches it
      const requests = batch(rng, rng.intBetween(1, 3)).map(r => ({ ...r, signature: flipped(rng, r.signature) }))
      return { how: 'batch-request-flipped', message: prePrepare(rng, ctx.view + 4 * rng.intBetween(0, 1), ctx.executed + 1, requests) }
    }]
  ]
  const forged = FORGED.filter(([isolates]) => ctx.isolating || !isReplica || !isolates).map(([, make]) => make)

  return {
    valid: (rng) => {
      const m = message(rng)
      const body = encodeMessage(m)
      if (recent.length >= 16) { recent.shift() }
      recent.push(lp(body))
      return { label: m.type, object: null, body }
    },
    hostile: (rng) => HOSTILE[weightedIndex(rng, weights)][1](rng),
    structural: (rng) => {
      const { how, message: m } = pick(rng, forged)(rng)
      return { label: `forged:${how}`, body: encodeMessage(m) }
    },
    guard: (body) => {
      if (ctx.isolating || !isReplica) { return body }
      const decoded = decodeMessage(body)
      if (!decoded.ok || !isSignedByReplica(decoded.message) || decoded.message.replica !== ctx.self) { return body }
      // a mutation that broke the attacker's own signature: a trailing byte keeps it from decoding
      return verifier.verify(ctx.self, signingPayload(decoded.message), decoded.message.signature) ? body : concat(body, Uint8Array.of(0))
    }
  }
}

/** State requests (`/accord/pbft-state/1.0.0`): a seq in decimal, one per stream. */
function pbftStateFrames (ctx: PbftFuzzContext): ProtocolFrames {
  const BAD = ['', '-1', '1.5', '0x40', ' 64', '64\n', '+64', '1e3', 'NaN', 'Infinity', '\u0666\u0664', '0'.repeat(17), '9'.repeat(17), '9'.repeat(PBFT_STATE_REQUEST_BYTES_MAX), String(Number.MAX_SAFE_INTEGER + 1), '\u0000']
  return {
    valid: (rng) => {
      const seq = pick(rng, [0, ctx.low, ctx.executed, PBFT_DEFAULTS.checkpointInterval * rng.intBetween(1, 4), rng.intBetween(1, 1_000_000), FAR, Number.MAX_SAFE_INTEGER])
      const text = String(seq)
      return { label: 'seq', object: text, body: utf8(text) }
    },
    hostile: (rng) => {
      if (rng.chance(0.2)) { return { label: 'hostile:over-20-bytes', wire: lp(utf8('1'.repeat(rng.intBetween(PBFT_STATE_REQUEST_BYTES_MAX + 1, 4096)))), frames: 1 } }
      const text = pick(rng, BAD)
      return { label: `hostile:${JSON.stringify(text).slice(1, 12)}`, wire: lp(utf8(text)), frames: 1 }
    },
    structural: (rng) => ({ label: 'edit:digits', body: utf8(Array.from({ length: rng.intBetween(1, PBFT_STATE_REQUEST_BYTES_MAX) }, () => pick(rng, ['0', '1', '6', '4', '9', ' ', '-', '.', 'e', 'x'])).join('')) })
  }
}

/** The frame source for a PBFT protocol: the common mix of frameGenerator, with forged signatures in place of CBOR mutations. */
export function pbftFrameGenerator (protocol: PbftFuzzProtocol, seed: number, context: PbftFuzzContext): FrameSource {
  return mixFrames(createRng(seed), frameBytesMax(protocol), protocol === 'pbft' ? pbftFrames(context) : pbftStateFrames(context))
}

// ---------------------------------------------------------------- driver

export interface DriveOptions {
  /** The attacker. */
  node: Libp2p
  /** The target (its addresses must be in the attacker's peer store, or a connection open). */
  target: PeerId
  protocol: FuzzProtocol
  cluster: string
  next: FrameSource
  /** Frames to send (a frame whose stream closed before it could be written counts as not sent). */
  frames: number
  /** Streams open at once. */
  inFlight: number
  /** Frames written on one stream, at most (1 for request/response protocols). */
  framesPerStreamMax: number
  /** Seed of the choice of frames per stream. */
  seed: number
  /** A stream not closed by the target this long after it opened is aborted by the attacker. */
  streamTimeoutMs?: number
  signal?: AbortSignal
  /** Called after every stream with the totals so far. */
  onProgress?(stats: DriveStats): void
}

export interface DriveStats {
  protocol: FuzzProtocol
  /** Frames taken from the generator. */
  frames: number
  /** Frames handed to an open stream. */
  framesWritten: number
  /** Frames left unsent: the stream did not open, or closed first. */
  framesUnsent: number
  bytesWritten: number
  streamsOpened: number
  /** Streams that could not be opened (by error name). */
  openFailures: Record<string, number>
  /** How each stream ended: `answer:<what>`, `reset`, `closed`, `timeout`. */
  outcomes: Record<string, number>
  /** Frames generated, by label (`mutated:bit-flip`, `hostile:snapshot-begin-1GiB`, ...). */
  labels: Record<string, number>
  elapsedMs: number
}

/** Above the longest a handler takes to answer (the client protocol's 15 s), so a timeout means a target that did not answer. */
const STREAM_TIMEOUT_MS = 20_000
const OPEN_TIMEOUT_MS = 5_000
/** How long a new connection waits for identify before streams are opened on it anyway. */
const IDENTIFY_WAIT_MS = 2_000
const ANSWER_BYTES_MAX = 64 * KIB

function bump (counts: Record<string, number>, key: string, n = 1): void {
  counts[key] = (counts[key] ?? 0) + n
}

/** The bytes of the first length-prefixed frame of `data`, or null. */
function firstFrame (data: Uint8Array): Uint8Array | null {
  let length = 0
  let scale = 1
  for (let i = 0; i < Math.min(data.byteLength, 8); i++, scale *= 0x80) {
    length += (data[i] & 0x7f) * scale
    if (data[i] < 0x80) {
      const start = i + 1
      return data.byteLength >= start + length ? data.subarray(start, start + length) : null
    }
  }
  return null
}

/** A short name for what the target answered on a stream. */
function classifyAnswer (protocol: FuzzProtocol, data: Uint8Array): string {
  if (data.byteLength === 0) { return 'none' }
  if (protocol === 'cluster') {
    try {
      const hello = JSON.parse(new TextDecoder().decode(data)) as { cluster?: unknown }
      return typeof hello.cluster === 'string' ? 'hello' : 'unexpected'
    } catch {
      return 'unexpected'
    }
  }
  const frame = firstFrame(data)
  if (frame == null) { return 'unexpected' }
  // a state holder's header: found u8, state bytes u64be
  if (protocol === 'pbft-state') {
    if (frame.byteLength !== 9 || frame[0] > 1) { return 'unexpected' }
    return frame[0] === 1 ? 'state' : 'no-state'
  }
  let answer: unknown
  try {
    answer = decode(frame)
  } catch {
    return 'unexpected'
  }
  if (typeof answer !== 'object' || answer == null) { return 'unexpected' }
  const { ok, code, reason } = answer as { ok?: unknown, code?: unknown, reason?: unknown }
  if (ok === true) { return 'ok' }
  const why = [code, reason].find(v => typeof v === 'string') as string | undefined
  return (why ?? 'refused').replace(/:.*$/, '').slice(0, 48)
}

/** Writes `items` while the stream takes them; returns how many it took. */
async function writeItems (stream: Stream, items: FuzzFrame[], deadline: AbortSignal, stats: DriveStats): Promise<number> {
  let written = 0
  for (const item of items) {
    if (stream.status !== 'open' || stream.writeStatus !== 'writable') {
      stats.framesUnsent += item.frames
      continue
    }
    try {
      if (!stream.send(item.wire)) { await stream.onDrain({ signal: deadline }) }
      stats.framesWritten += item.frames
      stats.bytesWritten += item.wire.byteLength
      written++
    } catch {
      stats.framesUnsent += item.frames
    }
  }
  return written
}

/** How a stream ended: `timeout` (then it is aborted here), `reset` or `closed`. */
function streamEnd (stream: Stream, event: StreamCloseEvent | null): string {
  if (event == null && stream.status === 'open') {
    stream.abort(new Error('fuzz: stream timeout'))
    return 'timeout'
  }
  if (event?.error != null || stream.status === 'reset' || stream.status === 'aborted') { return 'reset' }
  return 'closed'
}

/**
 * Sends `frames` frames of one protocol to the target, `inFlight` streams
 * at a time, without waiting for one frame before the next. Each stream
 * gets 1..framesPerStreamMax frames, is closed for writing, and ends when
 * the target closes or resets it (or after streamTimeoutMs). Never throws
 * for what the target does.
 */
export async function drive (options: DriveOptions): Promise<DriveStats> {
  const rng = createRng(options.seed)
  const id = protocolId(options.protocol, options.cluster)
  const streamTimeoutMs = options.streamTimeoutMs ?? STREAM_TIMEOUT_MS
  const stats: DriveStats = { protocol: options.protocol, frames: 0, framesWritten: 0, framesUnsent: 0, bytesWritten: 0, streamsOpened: 0, openFailures: {}, outcomes: {}, labels: {}, elapsedMs: 0 }
  const started = Date.now()

  // Streams go on a connection whose other end finished its upgrade: a
  // listener that receives more than 10 streams before that kills the
  // connection (libp2p's MaxEarlyStreamsError), which a busy target often
  // is when a burst of streams follows the dial. Identify answering on the
  // connection shows that the target is done.
  const ready = new Set<string>()
  let connecting: Promise<void> | null = null
  const connect = async (signal: AbortSignal): Promise<void> => {
    if (options.node.getConnections(options.target).some(c => c.status === 'open' && ready.has(c.id))) { return }
    connecting ??= (async () => {
      const identified = new Promise<void>(resolve => {
        const onIdentify = (event: CustomEvent<{ peerId: PeerId }>): void => {
          if (!event.detail.peerId.equals(options.target)) { return }
          options.node.removeEventListener('peer:identify', onIdentify)
          resolve()
        }
        options.node.addEventListener('peer:identify', onIdentify)
        setTimeout(() => { options.node.removeEventListener('peer:identify', onIdentify); resolve() }, IDENTIFY_WAIT_MS).unref()
      })
      const connection = await options.node.dial(options.target, { signal })
      if (!ready.has(connection.id)) { await identified }
      ready.add(connection.id)
    })().finally(() => { connecting = null })
    await connecting
  }

  // Each stream's deadline is a controller whose timer is cleared when the
  // stream is done, not AbortSignal.timeout: Node keeps a timeout signal
  // that has an abort listener, and all the listener holds (this stream, its
  // buffers, what it received), until the timer fires, so every stream
  // outlived its end by streamTimeoutMs (heap snapshots after the fuzz
  // spec's attack: 6,000 to 8,300 streams, 51 to 76 MiB)
  const oneStream = async (items: FuzzFrame[]): Promise<void> => {
    const deadline = new AbortController()
    const timer = setTimeout(() => { deadline.abort(new Error('fuzz: stream deadline')) }, streamTimeoutMs)
    try {
      await streamUntil(items, deadline.signal)
    } finally {
      clearTimeout(timer)
    }
  }

  const streamUntil = async (items: FuzzFrame[], deadline: AbortSignal): Promise<void> => {
    let stream: Stream
    try {
      const signal = AbortSignal.any([AbortSignal.timeout(OPEN_TIMEOUT_MS), ...(options.signal != null ? [options.signal] : [])])
      await connect(signal)
      // (for a protocol the attacker does not serve itself, libp2p allows 64 outbound streams unless told otherwise)
      stream = await options.node.dialProtocol(options.target, id, { signal, maxOutboundStreams: 2 * options.inFlight + 8 })
    } catch (err) {
      bump(stats.openFailures, (err as Error).name ?? 'Error')
      for (const item of items) { stats.framesUnsent += item.frames }
      // the target may have closed the connection (a stranger's grace period): pause before the next dial
      await sleep(50)
      return
    }
    stats.streamsOpened++
    const received: Uint8Array[] = []
    let receivedBytes = 0
    stream.addEventListener('message', (event) => {
      if (receivedBytes >= ANSWER_BYTES_MAX) { return }
      const data = event.data.subarray()
      received.push(data)
      receivedBytes += data.byteLength
    })
    const closed = stream.status === 'open'
      ? new Promise<StreamCloseEvent | null>(resolve => {
        stream.addEventListener('close', resolve, { once: true })
        deadline.addEventListener('abort', () => { resolve(null) }, { once: true })
      })
      : Promise.resolve(null)
    const written = await writeItems(stream, items, deadline, stats)
    if (stream.status === 'open' && stream.writeStatus === 'writable') {
      await stream.close({ signal: deadline }).catch(() => {})
    }
    let outcome = streamEnd(stream, await closed)
    if (options.protocol !== 'raft' && options.protocol !== 'pbft') {
      const answer = classifyAnswer(options.protocol, concat(...received))
      outcome = answer === 'none' ? outcome : `answer:${answer}`
    }
    bump(stats.outcomes, written === 0 ? `${outcome}:before-writing` : outcome)
  }

  const running = new Set<Promise<void>>()
  while (stats.frames < options.frames && options.signal?.aborted !== true) {
    let items: FuzzFrame[] = []
    const count = rng.intBetween(1, options.framesPerStreamMax)
    while (items.length < count && stats.frames < options.frames) {
      const item = options.next()
      items.push(item)
      stats.frames += item.frames
      bump(stats.labels, item.label, item.frames)
    }
    // The Raft transport closes a stream at its first bad frame: well-formed
    // frames go first, so that each is read, then the hostile ones, then the rest.
    // (PBFT's transport too; its forged frames decode)
    if (options.protocol === 'raft' || options.protocol === 'pbft') {
      const decodable = /^(valid|hostile|forged):/
      items = [...items.filter(i => i.label.startsWith('valid:')), ...items.filter(i => /^(hostile|forged):/.test(i.label)), ...items.filter(i => !decodable.test(i.label))]
    }
    const task: Promise<void> = oneStream(items).catch(() => {}).finally(() => {
      running.delete(task)
      stats.elapsedMs = Date.now() - started
      options.onProgress?.(stats)
    })
    running.add(task)
    if (running.size >= options.inFlight) { await Promise.race(running) }
  }
  await Promise.all(running)
  stats.elapsedMs = Date.now() - started
  return stats
}

/** Per protocol, how an attacker sends: streams at once and frames per stream (the registrar's per-connection stream limits apply). */
export function driveShape (protocol: FuzzProtocol, attacker: 'stranger' | 'admitted' | 'client' | 'replica'): { inFlight: number, framesPerStreamMax: number } {
  switch (protocol) {
    // 4 inbound streams per connection; a stranger's frames all wait in the gate, so it packs many on each
    case 'raft': return attacker === 'stranger' ? { inFlight: 4, framesPerStreamMax: 256 } : { inFlight: 3, framesPerStreamMax: 8 }
    // 128 inbound streams per connection, and as many per peer in the client budget
    case 'raft-client': return attacker === 'stranger' ? { inFlight: 64, framesPerStreamMax: 64 } : { inFlight: 48, framesPerStreamMax: 1 }
    case 'admission': return { inFlight: 1, framesPerStreamMax: 1 }
    case 'join': return { inFlight: 1, framesPerStreamMax: 1 }
    // CLUSTER_HELLO_STREAMS_MAX (2) inbound streams per connection: an admitted peer's further streams are reset before a frame is written
    case 'cluster': return attacker === 'stranger' ? { inFlight: 24, framesPerStreamMax: 64 } : { inFlight: CLUSTER_HELLO_STREAMS_MAX, framesPerStreamMax: 1 }
    // 4 inbound streams per connection (the replicas' own use one each way); frames are read one after another on each
    case 'pbft': return attacker === 'stranger' ? { inFlight: 3, framesPerStreamMax: 64 } : { inFlight: 3, framesPerStreamMax: 8 }
    // stateServesMax (4) streams at once, one request each
    case 'pbft-state': return attacker === 'stranger' ? { inFlight: 3, framesPerStreamMax: 16 } : { inFlight: 2, framesPerStreamMax: 1 }
    default: return attacker === 'stranger' ? { inFlight: 24, framesPerStreamMax: 64 } : { inFlight: 16, framesPerStreamMax: 1 }
  }
}

// ---------------------------------------------------------------- the test bed

export interface FuzzBed {
  cluster: TestCluster
  /** The Raft group: three voters. */
  group: AccordNode[]
  /** Targets, chosen when the bed starts: a follower and the leader. */
  follower: AccordNode
  leader: AccordNode
  /** A full accord node that joined with a join token (Raft off): it presents its certificate on every connection. */
  admitted: AccordNode
  /** A plain libp2p node that holds no certificate. */
  stranger: Libp2p
  /** The attackers' keys (DKG envelopes are signed with them). */
  admittedKey: PrivateKey
  strangerKey: PrivateKey
  clusterName: string
  /** A token signed by another cluster key, and an expired one of this cluster (what a stranger might hold). */
  strangerTokens: string[]
}

/**
 * A libp2p node with accord's transports and no certificate. It does not
 * listen: a target that dialled it back (discovery does) would make a
 * second connection, and libp2p then closes one of the two, with the
 * attacker's streams on it.
 */
export async function strangerNode (privateKey?: PrivateKey): Promise<Libp2p> {
  return createLibp2p({
    ...(privateKey != null ? { privateKey } : {}),
    addresses: { listen: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { maxConnections: 64 },
    services: { identify: identify() }
  })
}

/** A 3-voter group (ticks of 100 ms, so a busy machine does not start elections), an admitted attacker and a stranger. */
export async function startFuzzBed (): Promise<FuzzBed> {
  const cluster = new TestCluster()
  try {
    const group = await formRaftGroup(cluster, 3, { raftTickMs: 100 })
    const leader = await waitForLeader(group, 30_000)
    const follower = group.find(n => n !== leader)!
    const admitted = await cluster.add({ raft: false, bootstrap: [addressOf(leader)] })
    await waitFor(() => leader.admission.isAdmitted(admitted.libp2p.peerId.toString()), 'the attacker to be admitted')
    const strangerKey = await generateKeyPair('Ed25519')
    const stranger = await strangerNode(strangerKey)
    const { privateKey: admittedKey } = await loadOrCreateIdentity(admitted.config.dataDir, { create: false })
    for (const target of [leader, follower]) {
      await stranger.peerStore.merge(target.libp2p.peerId, { multiaddrs: target.libp2p.getMultiaddrs() })
      await admitted.libp2p.peerStore.merge(target.libp2p.peerId, { multiaddrs: target.libp2p.getMultiaddrs() })
    }
    const foreign = await createJoinToken(await generateKeyPair('Ed25519'), { cluster: leader.config.cluster, expiresAtMs: Date.now() + 3600_000, nonce: new Uint8Array(16) })
    const expired = (await leader.admission.createJoinToken(1000, Date.now() - 5000)).token
    return { cluster, group, leader, follower, admitted, stranger, admittedKey, strangerKey, clusterName: leader.config.cluster, strangerTokens: [foreign, expired] }
  } catch (err) {
    await cluster.stop()
    throw err
  }
}

export async function stopFuzzBed (bed: FuzzBed | undefined): Promise<void> {
  if (bed == null) { return }
  try {
    await bed.stranger.stop()
  } catch {
    // already stopped, or stopping failed: nothing to undo in a test
  }
  await bed.cluster.stop()
}

/** The generator's view of `target` for `attacker` now. */
export function fuzzContext (bed: FuzzBed, attacker: 'stranger' | 'admitted', target: AccordNode): FuzzContext {
  const summary = target.raft!.summary()
  const self = attacker === 'stranger' ? bed.stranger.peerId.toString() : bed.admitted.libp2p.peerId.toString()
  return {
    cluster: bed.clusterName,
    self,
    target: target.libp2p.peerId.toString(),
    members: bed.group.map(n => n.libp2p.peerId.toString()),
    term: summary.term,
    lastIndex: summary.lastIndex,
    commit: summary.commit,
    // a stranger presents the admitted member's certificate (stolen: it names another peer)
    certificate: bed.admitted.admission.credentials?.certificate,
    sign: fuzzIdentity((attacker === 'stranger' ? bed.strangerKey : bed.admittedKey).raw.subarray(0, 32)).sign
  }
}

export interface AttackOptions {
  attacker: 'stranger' | 'admitted'
  protocol: FuzzProtocol
  /** Frames in all, split evenly between the follower and the leader. */
  frames: number
  seed: number
  /** A valid join token for the admitted attacker (made by the caller: createJoinToken is async). */
  joinToken?: string
  signal?: AbortSignal
  onProgress?(stats: DriveStats[]): void
}

/** Sends `frames` frames of one protocol from one attacker, half to the follower and half to the leader, at once. */
export async function attack (bed: FuzzBed, options: AttackOptions): Promise<DriveStats[]> {
  const node = options.attacker === 'stranger' ? bed.stranger : bed.admitted.libp2p
  const shape = driveShape(options.protocol, options.attacker)
  const targets: Array<['follower' | 'leader', AccordNode]> = [['follower', bed.follower], ['leader', bed.leader]]
  const live: DriveStats[] = []
  const results = await Promise.all(targets.map(async ([role, target], i) => {
    const context = fuzzContext(bed, options.attacker, target)
    if (options.attacker === 'stranger') {
      context.joinToken = bed.strangerTokens[i % bed.strangerTokens.length]
    } else {
      context.joinToken = options.joinToken
    }
    const frames = i === 0 ? Math.ceil(options.frames / 2) : Math.floor(options.frames / 2)
    return drive({
      node,
      target: target.libp2p.peerId,
      protocol: options.protocol,
      cluster: bed.clusterName,
      next: frameGenerator(options.protocol, deriveSeed(options.seed, options.attacker, options.protocol, role), context),
      seed: deriveSeed(options.seed, options.attacker, options.protocol, role, 'streams'),
      frames,
      ...shape,
      signal: options.signal,
      onProgress: (stats) => {
        live[i] = stats
        options.onProgress?.(live)
      }
    })
  }))
  return results
}

// ---------------------------------------------------------------- the PBFT bed

/**
 * Four replicas, n = 4 and f = 1: three honest accord nodes running the
 * PBFT service, and a fourth whose key the fuzzer signs with (a Byzantine
 * replica it controls). The four run a DKG (threshold 3) at the start, so
 * that checkpoints carry partials under the group and bad-partial evidence
 * can be judged; the fourth reads what the others send it, to borrow
 * their signed checkpoints. Which outcomes are expected of each attacker:
 * - `stranger` (no certificate): refused by admission's gate on both
 * protocols (`not-admitted`), nothing reaches the PBFT transport, nobody
 * isolates anybody;
 * - `client`, an admitted node outside the replica set: its frames reach
 * the transport and the replicas; replica messages are refused
 * (`not-a-replica`) whatever they hold, requests with bad signatures as
 * `bad-signature`; it is never isolated (only replicas are);
 * - `replica`, the fourth replica: with `isolating` off (only valid
 * signatures of its own, one digest per slot) its messages reach the core
 * and are refused for what they are (stale, wrong-sender, not-primary,
 * buffer-full, ...) and it is not isolated (watermark-flood excepted: a
 * long run may send more than outsideWatermarksMax below the low
 * watermark); with `isolating` on (forged and flipped signatures,
 * equivocations, bad partials) honest replicas may isolate it, for
 * `invalid-signature`, `equivocation`, `bad-checkpoint-partial` or
 * `watermark-flood` only, and then refuse it (`isolated`,
 * connections denied), which is correct behaviour.
 * In every case the honest replicas never isolate each other or the client,
 * and still agree on writes.
 */
export interface PbftFuzzBed {
  cluster: TestCluster
  /** The honest replicas (the targets), in replica-set order. */
  honest: AccordNode[]
  /** The fourth replica of the set: an admitted accord node without the PBFT service; the fuzzer signs with its key. Last in the sorted set, so never the primary of views 0 to 2. */
  byzantine: AccordNode
  byzantineKey: PrivateKey
  /** An admitted accord node outside the replica set, without the PBFT service. */
  client: AccordNode
  clientKey: PrivateKey
  /** A plain libp2p node that holds no certificate. */
  stranger: Libp2p
  strangerKey: PrivateKey
  /** The replica set, sorted. */
  replicas: string[]
  clusterName: string
  /** The id of the threshold group of the four (a DKG run at the start), which every replica holds. */
  groupId: string
  /** The latest CHECKPOINT each honest replica sent the fourth replica (with its partial under the group), by replica. */
  honestCheckpoints: Map<string, Checkpoint>
}

export type PbftAttacker = 'stranger' | 'client' | 'replica'

/** The PBFT bed: starts the nodes, checks that a write commits on every honest replica. */
export async function startPbftFuzzBed (): Promise<PbftFuzzBed> {
  const cluster = new TestCluster()
  let stranger: Libp2p | undefined
  try {
    const identities = await Promise.all([0, 1, 2, 3, 4].map(async () => {
      const dataDir = await cluster.newDataDir()
      const { privateKey, peerId } = await loadOrCreateIdentity(dataDir)
      return { dataDir, privateKey, id: peerId.toString() }
    }))
    const members = identities.slice(0, 4).sort((a, b) => a.id < b.id ? -1 : 1)
    const replicas = members.map(m => m.id)
    const config = { raft: false, bftReplicas: replicas }
    const first = await cluster.add({ ...config, dataDir: members[0].dataDir })
    const bootstrap = [addressOf(first)]
    const honest = [first]
    for (const m of members.slice(1, 3)) { honest.push(await cluster.add({ ...config, dataDir: m.dataDir, bootstrap })) }
    const byzantine = await cluster.add({ raft: false, dataDir: members[3].dataDir, bootstrap })
    const client = await cluster.add({ raft: false, dataDir: identities[4].dataDir, bootstrap })
    const strangerKey = await generateKeyPair('Ed25519')
    stranger = await strangerNode(strangerKey)
    for (const target of honest) {
      for (const attacker of [byzantine.libp2p, client.libp2p, stranger]) { await attacker.peerStore.merge(target.libp2p.peerId, { multiaddrs: target.libp2p.getMultiaddrs() }) }
      for (const attacker of [byzantine, client]) { await attacker.libp2p.dial(target.libp2p.peerId) }
    }
    const all = [...honest, byzantine, client]
    await waitFor(() => honest.every(h => all.every(p => p === h || h.admission.isAdmitted(p.libp2p.peerId.toString()))), 'every honest replica to admit every other node', 30_000)
    // the four's threshold group: checkpoints carry partials under it, and bad-partial evidence is judged with it
    const dkg = await first.dkg.run({ members: replicas, threshold: 3 })
    if (dkg.state !== 'done') { throw new Error(`the PBFT bed's DKG did not finish: ${dkg.state} ${dkg.reason ?? ''}`) }
    await waitFor(() => honest.every(h => h.bft!.summary().compactCheckpoints === true), 'every honest replica to take the group for its checkpoints', 30_000)
    const group = first.dkg.checkpointGroup()
    if (group === null) { throw new Error('the PBFT bed\'s first replica holds no group after the DKG') }
    const honestCheckpoints = await captureCheckpoints(byzantine.libp2p, honest.map(h => h.libp2p.peerId.toString()))
    const bed: PbftFuzzBed = {
      cluster, honest, byzantine, byzantineKey: members[3].privateKey, client, clientKey: identities[4].privateKey, stranger, strangerKey, replicas, clusterName: first.config.cluster, groupId: checkpointGroupId(group), honestCheckpoints
    }
    const problems = await checkPbftServing(bed, 'start', 30_000)
    if (problems.length > 0) { throw new Error(`the PBFT bed does not work: ${problems.join('; ')}`) }
    // writes through the first checkpoint, so that every honest replica signs one (with its partial) and sends it to the fourth
    for (let i = 0; (first.bft!.summary().executed ?? 0) < PBFT_DEFAULTS.checkpointInterval && i < 2 * PBFT_DEFAULTS.checkpointInterval; i++) {
      await first.bft!.put(`fuzz-bed/checkpoint/${i}`, 'x')
    }
    await waitFor(() => honestCheckpoints.size === honest.length, 'every honest replica\'s checkpoint to reach the fourth replica', 30_000)
    return bed
  } catch (err) {
    await Promise.resolve(stranger?.stop()).catch(() => {})
    await cluster.stop()
    throw err
  }
}

/**
 * Reads what the replicas send the fourth replica (an accord node without
 * the PBFT service) on /accord/pbft/1.0.0, and keeps the latest CHECKPOINT
 * of each of `honest` that names a group: honestly signed checkpoints for
 * the evidence generator to borrow (PbftFuzzContext.honestCheckpoints).
 */
async function captureCheckpoints (node: Libp2p, honest: readonly string[]): Promise<Map<string, Checkpoint>> {
  const kept = new Map<string, Checkpoint>()
  await node.handle(PBFT_PROTOCOL, async (stream) => {
    const lp = lpStream(stream, { maxDataLength: PBFT_TRANSPORT_DEFAULTS.messageBytesMax })
    try {
      for (;;) {
        const decoded = decodeMessage((await lp.read()).subarray())
        if (!decoded.ok || decoded.message.type !== 'checkpoint' || decoded.message.groupId === undefined || !honest.includes(decoded.message.replica)) { continue }
        kept.set(decoded.message.replica, decoded.message)
      }
    } catch {
      // the stream ended
    }
  }, { maxInboundStreams: 8 })
  return kept
}

export async function stopPbftFuzzBed (bed: PbftFuzzBed | undefined): Promise<void> {
  if (bed == null) { return }
  await Promise.resolve(bed.stranger.stop()).catch(() => {})
  await bed.cluster.stop()
}

function attackerOf (bed: PbftFuzzBed, attacker: PbftAttacker): { node: Libp2p, key: PrivateKey } {
  switch (attacker) {
    case 'stranger': return { node: bed.stranger, key: bed.strangerKey }
    case 'client': return { node: bed.client.libp2p, key: bed.clientKey }
    default: return { node: bed.byzantine.libp2p, key: bed.byzantineKey }
  }
}

/** The generator's view of `target` for `attacker` now. */
export function pbftFuzzContext (bed: PbftFuzzBed, attacker: PbftAttacker, target: AccordNode, isolating: boolean): PbftFuzzContext {
  const { node, key } = attackerOf(bed, attacker)
  const crypto = peerKeyPbftCrypto(key)
  const s = target.bft!.summary()
  return {
    self: node.peerId.toString(),
    sign: (payload) => crypto.sign(payload),
    target: target.libp2p.peerId.toString(),
    replicas: bed.replicas,
    view: s.view ?? 0,
    executed: s.executed ?? 0,
    low: s.lowWatermark ?? 0,
    high: s.highWatermark ?? PBFT_DEFAULTS.watermarkWindow,
    isolating,
    groupId: bed.groupId,
    honestCheckpoints: [...bed.honestCheckpoints.values()]
  }
}

export interface PbftAttackOptions {
  attacker: PbftAttacker
  protocol: PbftFuzzProtocol
  /** Frames in all, split evenly between the honest replicas. */
  frames: number
  seed: number
  /** See PbftFuzzContext.isolating (the replica attacker only). */
  isolating?: boolean
  signal?: AbortSignal
  onProgress?(stats: DriveStats[]): void
}

/** Sends `frames` frames of one PBFT protocol from one attacker, split between the honest replicas, at once. */
export async function attackPbft (bed: PbftFuzzBed, options: PbftAttackOptions): Promise<DriveStats[]> {
  const { node } = attackerOf(bed, options.attacker)
  const isolating = options.isolating === true
  const phase = `${options.attacker}${isolating ? '-isolating' : ''}`
  const shape = driveShape(options.protocol, options.attacker)
  const live: DriveStats[] = []
  const n = bed.honest.length
  return Promise.all(bed.honest.map(async (target, i) => drive({
    node,
    target: target.libp2p.peerId,
    protocol: options.protocol,
    cluster: bed.clusterName,
    next: pbftFrameGenerator(options.protocol, deriveSeed(options.seed, phase, options.protocol, `replica-${i}`), pbftFuzzContext(bed, options.attacker, target, isolating)),
    seed: deriveSeed(options.seed, phase, options.protocol, `replica-${i}`, 'streams'),
    frames: Math.floor(options.frames / n) + (i < options.frames % n ? 1 : 0),
    ...shape,
    signal: options.signal,
    onProgress: (stats) => {
      live[i] = stats
      options.onProgress?.(live)
    }
  })))
}

/**
 * Isolations the honest replicas made that no attacker explains: of an
 * honest replica or the client at all, for any reason (forged evidence of
 * either kind among them), of the Byzantine replica unless allowed and for
 * a reason it earned.
 */
export function pbftIsolationProblems (bed: PbftFuzzBed, byzantineMayBeIsolated: boolean): string[] {
  const byzantine = bed.byzantine.libp2p.peerId.toString()
  const problems: string[] = []
  for (const node of bed.honest) {
    for (const { peerId, reason } of node.bft!.summary().isolated) {
      const allowed = peerId === byzantine && (reason === 'watermark-flood' || (byzantineMayBeIsolated && (reason === 'invalid-signature' || reason === 'equivocation' || reason === 'bad-checkpoint-partial')))
      if (!allowed) { problems.push(`${short(node)} isolated ${peerId === byzantine ? 'the Byzantine replica' : `…${peerId.slice(-6)}`} (${reason})`) }
    }
  }
  return problems
}

/** Whether the PBFT replicas work: every replica answers status(), nothing was isolated that should not be, and a PUT through each honest replica commits on all of them. Returns the problems found (none: healthy). */
export async function checkPbftHealthy (bed: PbftFuzzBed, tag: string, options: { byzantineMayBeIsolated?: boolean, deadlineMs?: number } = {}): Promise<string[]> {
  const problems: string[] = []
  for (const node of [...bed.honest, bed.byzantine]) {
    try {
      const status = await Promise.race([node.status(), sleep(5000).then(() => null)])
      if (status == null) { problems.push(`${short(node)}: status() did not answer within 5 s`) } else if (node !== bed.byzantine && status.bft?.role !== 'replica') { problems.push(`${short(node)}: status() has no replica`) }
    } catch (err) {
      problems.push(`${short(node)}: status() threw ${(err as Error).message}`)
    }
  }
  problems.push(...pbftIsolationProblems(bed, options.byzantineMayBeIsolated === true))
  problems.push(...await checkPbftServing(bed, tag, options.deadlineMs ?? 30_000))
  return problems
}

/** A PUT through each honest replica's service, and every honest replica executed it. */
async function checkPbftServing (bed: PbftFuzzBed, tag: string, deadlineMs: number): Promise<string[]> {
  const problems: string[] = []
  for (const [i, via] of bed.honest.entries()) {
    const key = `fuzz-health/${tag}/${i}`
    const value = `${tag} ${i}`
    const giveUpAt = Date.now() + deadlineMs
    let lastError = ''
    let done = false
    while (!done && Date.now() < giveUpAt) {
      try {
        const result = await via.bft!.put(key, value)
        if (!result.ok) { throw new Error(`the put was refused: ${JSON.stringify(result)}`) }
        done = true
      } catch (err) {
        lastError = (err as Error).message
        await sleep(200)
      }
    }
    if (!done) {
      problems.push(`a PUT through ${short(via)} did not commit within ${deadlineMs} ms: ${lastError}`)
      continue
    }
    try {
      await waitFor(() => bed.honest.every(n => Buffer.from(n.bft!.localValue(key) ?? []).toString() === value), `every honest replica to execute ${key}`, deadlineMs)
    } catch {
      problems.push(`${key} committed but not executed by every honest replica: ${bed.honest.map(n => `${short(n)} executed ${n.bft!.summary().executed ?? '?'}`).join(', ')}`)
    }
  }
  return problems
}

/** accord_pbft_rejected_total on `node`, by reason (core and transport reasons). */
export async function pbftRejections (node: AccordNode): Promise<Record<string, number>> {
  const metric = node.metrics.getSingleMetric('accord_pbft_rejected_total')
  const out: Record<string, number> = {}
  if (metric == null) { return out }
  for (const v of (await metric.get()).values) { out[String(v.labels.reason)] = v.value }
  return out
}

/** `node`'s PBFT transport stats. */
export function pbftTransportStats (node: AccordNode): PbftTransportStats {
  return node.bft!.transportStats()
}

/** Waits until no attacker stream is left open at the honest replicas. */
export async function waitForPbftAttackStreamsGone (bed: PbftFuzzBed, deadlineMs = 15_000): Promise<void> {
  const attackers = new Set([bed.stranger.peerId.toString(), bed.byzantine.libp2p.peerId.toString(), bed.client.libp2p.peerId.toString()])
  const ids = new Set(PBFT_FUZZ_PROTOCOLS.map(p => protocolId(p, bed.clusterName)))
  await waitFor(() => bed.honest.every(target => target.libp2p.getConnections()
    .filter(c => attackers.has(c.remotePeer.toString()))
    .every(c => c.streams.every(s => !ids.has(s.protocol) || s.status !== 'open'))), 'the attackers\' PBFT streams to close', deadlineMs).catch(() => {})
}

// ---- accord/<cluster>/evidence/1 (gossipsub) ----

export interface EvidenceFrame { label: string, data: Uint8Array }

/**
 * Messages for PBFT's evidence topic, which an admitted member publishes
 * (gossipsub signs them as its own): random bytes, byte-mutated evidence,
 * and of each kind (all of them, or only `kind`)
 * - equivocation: evidence accusing an honest replica with messages signed
 * by keys that are not its own (a forgery: it must never isolate anybody),
 * evidence whose messages do not conflict, are not both the offender's,
 * or whose offender is outside the set;
 * - bad-checkpoint-partial: checkpoints said to be an honest replica's
 * signed by other keys; honest replicas' own checkpoints
 * (ctx.honestCheckpoints) as they are (their partial verifies), with a
 * partial of garbage, another group id or none (their signature no longer
 * covers it), or against another offender; the attacker's own checkpoint
 * with a partial of garbage under a group the targets do not hold (ignored
 * as unjudgeable by a holder of another group, refused as from no replica
 * when the attacker is a client) or with no partial; partials and group
 * ids of the wrong size, presence bytes out of range or in the version 2
 * layout, fields over their limits, trailing bytes, and a message that is
 * not a checkpoint;
 * and, with `ctx.isolating`, real evidence against the attacker
 * (`ctx.self`): equivocations, and its own checkpoint with a partial of
 * garbage under `ctx.groupId`, which make every honest replica (holding
 * that group) isolate it. From createRng(seed) only.
 */
export function evidenceGenerator (seed: number, ctx: PbftFuzzContext, kind?: Evidence['kind']): () => EvidenceFrame {
  const rng = createRng(seed)
  const fork = rng.fork()
  const rogues = [fuzzIdentity(randomBytes(fork, 32)), fuzzIdentity(randomBytes(fork, 32))]
  const honest = ctx.replicas.filter(r => r !== ctx.self)
  const self: FuzzIdentity = { id: ctx.self, sign: ctx.sign }
  const digest = (): string => bytesToDigest(randomBytes(rng, 32))
  const vote = (signer: FuzzIdentity, replica: string, d: string, v = ctx.view, s = ctx.executed + 1): Prepare =>
    signWith<Prepare>(signer.sign, { type: 'prepare', replica, view: v, seq: s, digest: d })
  const evidence = (offender: string, first: SignedMessage, second: SignedMessage): Uint8Array => encodeEvidence({ kind: 'equivocation', offender, first, second })
  /** What the attacker signs for its slot here: the same digest as pbftFrames signs there, unless equivocations are allowed. */
  const mine = (): string => ctx.isolating ? digest() : sha256Hex(utf8(`fuzz/${ctx.self}/prepare/${ctx.view}/${ctx.executed + 1}`))

  // bad-checkpoint-partial
  const groupId = (): string => ctx.groupId ?? digest()
  const garbage = (): Uint8Array => randomBytes(rng, GROUP_SIGNATURE_BYTES)
  const checkpointSeq = (): number => PBFT_DEFAULTS.checkpointInterval * rng.intBetween(1, 8)
  /** A checkpoint `signer` signs as `replica`'s; the attacker's own state digest is a function of the seq (as pbftFrames signs it), unless equivocations are allowed. */
  const checkpoint = (signer: FuzzIdentity, replica: string, fields: Partial<Checkpoint> = {}): Checkpoint => {
    const s = checkpointSeq()
    const stateDigest = signer === self && !ctx.isolating ? sha256Hex(utf8(`fuzz/${ctx.self}/checkpoint/${s}`)) : digest()
    return signWith<Checkpoint>(signer.sign, { type: 'checkpoint', replica, seq: s, stateDigest, partial: garbage(), groupId: groupId(), ...fields })
  }
  const badPartial = (offender: string, c: Checkpoint): Uint8Array => encodeEvidence({ kind: 'bad-checkpoint-partial', offender, checkpoint: c })
  const borrowed = (): Checkpoint => pick(rng, ctx.honestCheckpoints ?? [])
  /** Where the partial's presence byte is in `data`: before the partial and the group id, at the end of a checkpoint in the version 3 layout. */
  const presenceAt = (data: Uint8Array): number => data.byteLength - 1 - GROUP_SIGNATURE_BYTES - 32
  const unknownGroup = (): Uint8Array => badPartial(ctx.self, checkpoint(self, ctx.self, { groupId: digest() }))

  const KINDS: Array<[Evidence['kind'], string, () => Uint8Array]> = [
    ['equivocation', 'forged-against-honest', () => {
      const h = pick(rng, honest)
      return evidence(h, vote(pick(rng, rogues), h, digest()), vote(pick(rng, rogues), h, digest()))
    }],
    ['equivocation', 'half-forged-against-honest', () => {
      const h = pick(rng, honest)
      const first = vote(pick(rng, rogues), h, digest())
      return evidence(h, first, { ...first, digest: digest(), signature: flipped(rng, first.signature) })
    }],
    ['equivocation', 'not-conflicting', () => {
      const m = vote(self, ctx.self, mine())
      return evidence(ctx.self, m, m)
    }],
    ['equivocation', 'not-the-offender', () => evidence(pick(rng, honest), vote(self, ctx.self, mine()), vote(self, ctx.self, mine()))],
    ['equivocation', 'offender-outside-the-set', () => {
      const rogue = pick(rng, rogues)
      return evidence(rogue.id, vote(rogue, rogue.id, digest()), vote(rogue, rogue.id, digest()))
    }],
    ['equivocation', 'checkpoint-forged', () => {
      const h = pick(rng, honest)
      const c = (): Checkpoint => signWith<Checkpoint>(pick(rng, rogues).sign, { type: 'checkpoint', replica: h, seq: PBFT_DEFAULTS.checkpointInterval, stateDigest: digest() })
      return evidence(h, c(), c())
    }],
    ['bad-checkpoint-partial', 'partial-forged-against-honest', () => {
      const h = pick(rng, honest)
      return badPartial(h, checkpoint(pick(rng, rogues), h))
    }],
    ['bad-checkpoint-partial', 'partial-offender-outside-the-set', () => {
      const rogue = pick(rng, rogues)
      return badPartial(rogue.id, checkpoint(rogue, rogue.id))
    }],
    ['bad-checkpoint-partial', 'partial-unknown-group', unknownGroup],
    ['bad-checkpoint-partial', 'partial-none', () => badPartial(ctx.self, checkpoint(self, ctx.self, { partial: undefined, groupId: undefined }))],
    ['bad-checkpoint-partial', 'partial-without-group', () => badPartial(ctx.self, checkpoint(self, ctx.self, { groupId: undefined }))],
    ['bad-checkpoint-partial', 'partial-not-a-checkpoint', () => badPartial(ctx.self, vote(self, ctx.self, mine()) as unknown as Checkpoint)],
    ['bad-checkpoint-partial', 'partial-wrong-size', () => {
      // bytes taken out of the partial or the group id, or put in
      const data = unknownGroup()
      const at = rng.intBetween(presenceAt(data) + 1, data.byteLength - 1)
      return rng.chance(0.5)
        ? concat(data.subarray(0, at), data.subarray(Math.min(data.byteLength, at + rng.intBetween(1, 48))))
        : concat(data.subarray(0, at), randomBytes(rng, rng.intBetween(1, 48)), data.subarray(at))
    }],
    ['bad-checkpoint-partial', 'partial-presence-byte', () => {
      const data = Uint8Array.from(unknownGroup())
      data[presenceAt(data)] = pick(rng, [0, 1, 3, 0x80, 0xff, rng.intBetween(3, 255)])
      return data
    }],
    ['bad-checkpoint-partial', 'partial-presence-in-version-2', () => {
      const data = Uint8Array.from(unknownGroup())
      data[0] = 2
      return data
    }],
    ['bad-checkpoint-partial', 'partial-oversize', () => pick<() => Uint8Array>(rng, [
      () => badPartial(ctx.self, { ...checkpoint(self, ctx.self), signature: randomBytes(rng, SIGNATURE_BYTES_MAX + rng.intBetween(1, 64)) }),
      () => badPartial('x'.repeat(NODE_ID_LENGTH_MAX + rng.intBetween(1, 64)), checkpoint(self, ctx.self)),
      () => concat(unknownGroup(), randomBytes(rng, rng.intBetween(1, 64 * KIB)))
    ])()],
    ...(ctx.honestCheckpoints?.length ?? 0) > 0
      ? [
          ['bad-checkpoint-partial', 'borrowed-as-signed', () => {
            const c = borrowed()
            return badPartial(c.replica, c)
          }],
          ['bad-checkpoint-partial', 'borrowed-garbage-partial', () => {
            const c = borrowed()
            return badPartial(c.replica, { ...c, partial: garbage() })
          }],
          ['bad-checkpoint-partial', 'borrowed-other-group', () => {
            const c = borrowed()
            return badPartial(c.replica, { ...c, groupId: digest() })
          }],
          ['bad-checkpoint-partial', 'borrowed-without-group', () => {
            const c = borrowed()
            return badPartial(c.replica, { ...c, groupId: undefined })
          }],
          ['bad-checkpoint-partial', 'borrowed-signature-flipped', () => {
            const c = borrowed()
            return badPartial(c.replica, { ...c, signature: flipped(rng, c.signature) })
          }],
          ['bad-checkpoint-partial', 'borrowed-other-offender', () => {
            const c = borrowed()
            return badPartial(pick(rng, honest.filter(h => h !== c.replica)), c)
          }]
        ] as Array<[Evidence['kind'], string, () => Uint8Array]>
      : [],
    ...(ctx.isolating
      ? [
          ['equivocation', 'equivocation', () => evidence(ctx.self, vote(self, ctx.self, digest()), vote(self, ctx.self, digest()))],
          ['bad-checkpoint-partial', 'bad-checkpoint-partial', () => badPartial(ctx.self, checkpoint(self, ctx.self, { groupId: groupId() }))]
        ] as Array<[Evidence['kind'], string, () => Uint8Array]>
      : [])
  ]
  const kinds = KINDS.filter(([k]) => kind === undefined || k === kind)
  /** Real evidence: never mutated (a mutated one would be refused too, but say so). */
  const real = new Set(['equivocation', 'bad-checkpoint-partial'])
  return () => {
    const r = rng.nextFloat()
    if (r < 0.2) {
      // random bytes (behind the new kind's version and tag when only it is asked for)
      const data = randomBytes(rng, randomLength(rng, 4096))
      if (kind === 'bad-checkpoint-partial' && data.byteLength >= 2) { data.set([3, 2]) }
      return { label: 'random', data }
    }
    const [, label, make] = pick(rng, kinds)
    if (r < 0.5 && !real.has(label)) {
      // mutations of evidence that must be refused anyway
      let data = make()
      for (let i = rng.intBetween(1, 3); i > 0; i--) { data = mutateOnce(rng, data).bytes }
      return { label: `mutated:${label}`, data }
    }
    return { label, data: make() }
  }
}

/** Publishes `count` evidence messages from the client or the fourth replica; returns how many gossipsub took, by label. */
export async function publishEvidence (bed: PbftFuzzBed, options: { attacker: 'client' | 'replica', count: number, seed: number, isolating?: boolean, kind?: Evidence['kind'] }): Promise<{ published: number, failed: number, labels: Record<string, number> }> {
  const node = options.attacker === 'client' ? bed.client : bed.byzantine
  const next = evidenceGenerator(deriveSeed(options.seed, options.attacker, 'evidence', ...(options.kind !== undefined ? [options.kind] : [])), pbftFuzzContext(bed, options.attacker, bed.honest[0], options.isolating === true), options.kind)
  const topic = evidenceTopic(bed.clusterName)
  const out = { published: 0, failed: 0, labels: {} as Record<string, number> }
  for (let i = 0; i < options.count; i++) {
    const { label, data } = next()
    bump(out.labels, label)
    try {
      await node.libp2p.services.pubsub.publish(topic, data)
      out.published++
    } catch {
      // no peer took it (graylisted for earlier rejections, or not yet subscribed)
      out.failed++
    }
  }
  return out
}

// ---------------------------------------------------------------- checks

/** The first node that is leader and that every other node follows, within `deadlineMs`. */
export async function waitForLeader (group: AccordNode[], deadlineMs: number): Promise<AccordNode> {
  let leader: AccordNode | undefined
  await waitFor(() => {
    leader = group.find(n => n.raft?.summary().role === 'leader')
    const id = leader?.libp2p.peerId.toString()
    return leader != null && group.every(n => n.raft?.summary().leader === id)
  }, 'one leader that every node follows', deadlineMs)
  return leader!
}

export interface GroupState {
  term: number
  leader: string | null
  voters: string[]
  commit: number
  kv: { keys: number, dataBytes: number, sessions: number }
}

/** What a stranger must not change, on each node. */
export function groupState (group: AccordNode[]): GroupState[] {
  return group.map(n => {
    const s = n.raft!.summary()
    return { term: s.term, leader: s.leader, voters: [...s.voters].sort(), commit: s.commit, kv: s.kv }
  })
}

export interface HealthOptions {
  /** How long a leader and each write may take (a bound that keeps a broken group from hanging the check, never asserted on). */
  deadlineMs?: number
  /**
   * Also elect: hand leadership over (to the third node and back, or back
   * to the bed's leader), so at least one election happens, and write
   * again. A group whose term was pushed to where no candidate can go
   * further still has its leader, and fails only here.
   */
  elect?: boolean
}

/**
 * Whether the group works: every node answers status(), a leader is
 * followed by all, and through each target a write is accepted and a
 * linearizable read returns it. Returns the problems found (none: healthy).
 */
export async function checkHealthy (bed: FuzzBed, tag: string, options: HealthOptions = {}): Promise<string[]> {
  const deadlineMs = options.deadlineMs ?? 30_000
  const problems = await checkServing(bed, tag, deadlineMs)
  if (problems.length > 0 || options.elect !== true) { return problems }
  const third = bed.group.find(n => n !== bed.follower && n !== bed.leader)!
  const current = await waitForLeader(bed.group, deadlineMs)
  for (const next of current === bed.leader ? [third, bed.leader] : [bed.leader]) {
    const moved = await handOver(bed, next, deadlineMs)
    if (moved != null) { return [moved] }
    const after = await checkServing(bed, `${tag}-after-election`, deadlineMs)
    if (after.length > 0) { return after }
  }
  return []
}

/** Transfers leadership to `next`; null once every node follows it, else what went wrong. */
async function handOver (bed: FuzzBed, next: AccordNode, deadlineMs: number): Promise<string | null> {
  const to = next.libp2p.peerId.toString()
  const giveUpAt = Date.now() + deadlineMs
  while (Date.now() < giveUpAt) {
    if (bed.group.every(n => n.raft?.summary().leader === to)) { return null }
    // refused or dropped while `next` catches up: ask again
    await bed.leader.raft!.transferLeadership(to).catch(() => {})
    await sleep(300)
  }
  return `leadership could not be handed to ${short(next)} within ${deadlineMs} ms: ${bed.group.map(n => { const s = n.raft!.summary(); return `${short(n)} ${s.role} term ${s.term}` }).join(', ')}`
}

async function checkServing (bed: FuzzBed, tag: string, deadlineMs: number): Promise<string[]> {
  const problems: string[] = []
  for (const node of bed.group) {
    try {
      const status = await Promise.race([node.status(), sleep(5000).then(() => null)])
      if (status == null) { problems.push(`${short(node)}: status() did not answer within 5 s`) } else if (status.raft == null) { problems.push(`${short(node)}: status() has no raft`) }
    } catch (err) {
      problems.push(`${short(node)}: status() threw ${(err as Error).message}`)
    }
  }
  try {
    await waitForLeader(bed.group, deadlineMs)
  } catch {
    problems.push(`no leader followed by all within ${deadlineMs} ms: ${bed.group.map(n => { const s = n.raft!.summary(); return `${short(n)} ${s.role} term ${s.term}` }).join(', ')}`)
    return problems
  }
  for (const [role, target] of [['follower', bed.follower], ['leader', bed.leader]] as const) {
    const key = `fuzz-health/${tag}/${role}`
    const value = new TextEncoder().encode(`${tag} ${Date.now()}`)
    const giveUpAt = Date.now() + deadlineMs
    let lastError = ''
    let done = false
    while (!done && Date.now() < giveUpAt) {
      try {
        await target.raft!.writeWithPooledSession(session => ({ type: 'put', session, key, value }))
        const read = await target.raft!.read(key, 'linearizable')
        if (read.value == null || Buffer.compare(Buffer.from(read.value), Buffer.from(value)) !== 0) { throw new Error('the linearizable read did not return the write') }
        done = true
      } catch (err) {
        lastError = (err as Error).message
        await sleep(200)
      }
    }
    if (!done) { problems.push(`write and linearizable read through the ${role} failed: ${lastError}`) }
  }
  return problems
}

function short (node: AccordNode): string {
  return `…${node.libp2p.peerId.toString().slice(-6)}`
}

/** accord_refusals_total of one protocol on `node`, by reason. */
export async function refusalsByReason (node: AccordNode, protocol: string): Promise<Record<string, number>> {
  const metric = node.metrics.getSingleMetric('accord_refusals_total')
  const out: Record<string, number> = {}
  if (metric == null) { return out }
  const { values } = await metric.get()
  for (const v of values) {
    if (v.labels.protocol === protocol) { out[String(v.labels.reason)] = v.value }
  }
  return out
}

/** `after - before` per key (keys that did not move are left out). */
export function delta (before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [key, value] of Object.entries(after)) {
    const d = value - (before[key] ?? 0)
    if (d !== 0) { out[key] = d }
  }
  return out
}

/** `node`'s Raft transport stats. */
export function raftTransportStats (node: AccordNode): RaftTransportStats | undefined {
  return node.raft?.transportStats()
}

export function sumCounts (counts: Record<string, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0)
}

/** Why `stats` break the transport's bounds (none: within them). */
export function transportBoundProblems (stats: RaftTransportStats, connectedPeers: number): string[] {
  const limits = RAFT_TRANSPORT_DEFAULTS
  const problems: string[] = []
  for (const [peer, p] of Object.entries(stats.peers)) {
    if (p.queuedBytesPeak > limits.outboundQueueBytesMax) { problems.push(`queue to …${peer.slice(-6)} peaked at ${p.queuedBytesPeak} bytes > ${limits.outboundQueueBytesMax}`) }
    if (p.queuedMessages > limits.outboundQueueMessagesMax) { problems.push(`queue to …${peer.slice(-6)} holds ${p.queuedMessages} messages > ${limits.outboundQueueMessagesMax}`) }
  }
  if (Object.keys(stats.peers).length > limits.peersMax) { problems.push(`${Object.keys(stats.peers).length} peers with outbound state > ${limits.peersMax}`) }
  if (stats.snapshotReassemblies > limits.snapshotReassembliesMax) { problems.push(`${stats.snapshotReassemblies} snapshot reassemblies > ${limits.snapshotReassembliesMax}`) }
  if (stats.inboundStreams > limits.maxInboundStreams * Math.max(1, connectedPeers)) { problems.push(`${stats.inboundStreams} inbound streams > ${limits.maxInboundStreams} x ${connectedPeers} connected peers`) }
  if (stats.deliverErrors > 0) { problems.push(`onMessage threw ${stats.deliverErrors} times`) }
  return problems
}

// ---- memory ----

/**
 * What the heap plus ArrayBuffers may grow by, after full garbage
 * collections (settledMemory), between a bed's start and the end of its
 * attacks. Measured on Node 24 (6 runs each, with and without the
 * peer-store patch): the protocol fuzz spec 0 to 6 MiB, the PBFT fuzz
 * spec 3 to 5 MiB, and 4 MiB after three times the protocol spec's
 * frames: nothing grows with the frames. Heap snapshots before and after
 * show V8's compiled code and feedback for the paths the attacks warmed
 * up (~3 MiB) and source-map-support's parsed maps (~1 MiB), no accord
 * structure. It used to be 70 to 113 MiB: the fuzz driver's own streams,
 * each kept for 20 s after it ended (see drive()). That retention, about
 * 9 KiB a stream, measured 32 MiB at the least (a slow run), above this
 * bound; a leak of frames (up to 4 MiB) passes it within 6. Counters and
 * limits are checked first; this is the backstop.
 */
export const HEAP_GROWTH_BYTES_MAX = 24 * 1024 * 1024

let gcFunction: (() => void) | undefined

/** A full garbage collection: global.gc when node runs with --expose-gc, else one obtained through V8 flags. */
export function collectGarbage (): boolean {
  if (gcFunction == null) {
    const exposed = (globalThis as { gc?(): void }).gc
    if (typeof exposed === 'function') {
      gcFunction = exposed
    } else {
      try {
        setFlagsFromString('--expose-gc')
        gcFunction = runInNewContext('gc') as () => void
      } catch {
        return false
      }
    }
  }
  gcFunction()
  return true
}

export interface MemorySample { heapUsed: number, arrayBuffers: number, rss: number }

/**
 * Heap and ArrayBuffer bytes after full collections: the least of five
 * samples, 200 ms apart. The heap is read as soon as a collection ends:
 * read later, it holds what the nodes allocated since, several MiB in
 * 200 ms when a group is busy. ArrayBuffers are read 200 ms later: those
 * a collection freed are released a little after it (and sockets drain
 * meanwhile), so a sample straight after one collection varies by tens of
 * MiB.
 */
export async function settledMemory (): Promise<MemorySample & { collected: boolean }> {
  let best: MemorySample | undefined
  let collected = true
  for (let i = 0; i < 5; i++) {
    collected = collectGarbage() && collected
    const { heapUsed } = process.memoryUsage()
    await sleep(200)
    const { arrayBuffers, rss } = process.memoryUsage()
    if (best == null || heapUsed + arrayBuffers < best.heapUsed + best.arrayBuffers) { best = { heapUsed, arrayBuffers, rss } }
  }
  return { ...best!, collected }
}

/** Samples heap and RSS every `intervalMs` until stopped; returns the peaks. */
export function memoryPeaks (intervalMs = 250): { stop(): MemorySample } {
  const peak: MemorySample = { heapUsed: 0, arrayBuffers: 0, rss: 0 }
  const sample = (): void => {
    const m = process.memoryUsage()
    peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed)
    peak.arrayBuffers = Math.max(peak.arrayBuffers, m.arrayBuffers)
    peak.rss = Math.max(peak.rss, m.rss)
  }
  sample()
  const timer = setInterval(sample, intervalMs)
  timer.unref()
  return { stop: () => { clearInterval(timer); sample(); return peak } }
}

/** Waits until no attacker stream is left open at the targets (the driver closed or aborted them all). */
export async function waitForAttackStreamsGone (bed: FuzzBed, deadlineMs = 15_000): Promise<void> {
  const attackers = new Set([bed.stranger.peerId.toString(), bed.admitted.libp2p.peerId.toString()])
  const accordIds = new Set(FUZZ_PROTOCOLS.map(p => protocolId(p, bed.clusterName)))
  await waitFor(() => [bed.follower, bed.leader].every(target => target.libp2p.getConnections()
    .filter(c => attackers.has(c.remotePeer.toString()))
    .every(c => c.streams.every(s => !accordIds.has(s.protocol) || s.status !== 'open'))), 'the attackers\' streams to close', deadlineMs).catch(() => {})
}

// ---- process-level errors ----

/**
 * Records unhandled promise rejections (and, with `exceptions`, uncaught
 * exceptions) while it runs: a handler that lets an error escape shows up
 * here. Listening turns them from fatal into recorded, so call stop().
 */
export function watchProcessErrors (exceptions = false): { errors: string[], stop(): void } {
  const errors: string[] = []
  const onError = (err: unknown): void => { errors.push(err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ''}` : String(err)) }
  process.on('unhandledRejection', onError)
  if (exceptions) { process.on('uncaughtException', onError) }
  return {
    errors,
    stop: () => {
      process.off('unhandledRejection', onError)
      process.off('uncaughtException', onError)
    }
  }
}
