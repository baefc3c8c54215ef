/**
 * `/accord/raft-client/1.0.0`: how a node hands a client request to the
 * leader (writes, membership changes, leadership transfer, and a joining
 * node's request to be added as a learner). One request per stream:
 * a length-prefixed CBOR request, a length-prefixed CBOR answer.
 *
 * Only admitted peers are served (the handler is wrapped by admission's
 * gate; see node/admission), and within a budget (node/budgets.ts,
 * RAFT_CLIENT_BUDGET): streams and request bytes in flight, per peer and
 * across all peers. A stream beyond the stream budget is answered `retry`
 * (the sender asks again after a pause); one whose bytes go beyond the byte
 * budget is aborted. Each refusal is counted and logged (node/refusals.ts).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { encode } from 'cborg'
import { unreachable } from '../../protocols/common/assert.ts'
import { commandBytesMax, decodeCommand, encodeCommand } from '../../protocols/kv/index.ts'
import { checkConfChange } from '../../protocols/raft/index.ts'
import { RAFT_CLIENT_BUDGET, StreamBudget } from '../budgets.ts'
import { decodeBoundedCbor } from './codec.ts'
import { RaftError } from './driver.ts'
import { boundedLengthDecoder } from './transport.ts'
import type { RaftDriver } from './driver.ts'
import type { KvApplyResult, KvCommand, KvLimits } from '../../protocols/kv/index.ts'
import type { ConfChange } from '../../protocols/raft/index.ts'
import type { AccordHost } from '../host.ts'
import type { Refusals } from '../refusals.ts'
import type { Connection, PeerId, Stream, StreamHandler, StreamMessageEvent } from '@libp2p/interface'
import type { Logger } from 'pino'

export const RAFT_CLIENT_PROTOCOL = '/accord/raft-client/1.0.0'
const REQUEST_TIMEOUT_MS = 15_000
/**
 * Inbound streams per connection (libp2p's registrar limit): as many as
 * one peer may have served at once (RAFT_CLIENT_BUDGET.streamsPerPeerMax;
 * a follower with 64 clients forwards 64 writes at once). It was 256, and
 * each stream could hold a 2.1 MiB request for 15 s: 540 MiB. It is the
 * outbound limit too: libp2p's default of 64 per connection stopped a
 * follower with 64 clients one peer-address lookup short.
 */
export const INBOUND_STREAMS_MAX = RAFT_CLIENT_BUDGET.streamsPerPeerMax
/** A refused stream gets this long to take its `retry` answer before it is aborted. */
const REFUSAL_TIMEOUT_MS = 1_000
const ANSWER_BYTES_MAX = 64 * 1024

/** Peers asked about in one 'peer-addresses' request, and addresses answered per peer. */
export const ADDRESS_LOOKUP_PEERS_MAX = 64
const ADDRESSES_PER_PEER_MAX = 16

export type ClientRequest =
  | { op: 'propose', command: KvCommand }
  | { op: 'conf-change', change: ConfChange }
  | { op: 'transfer-leader', to: string }
  /** Where can these Raft members be reached? (A node that never met them asks one that did.) */
  | { op: 'peer-addresses', peers: string[] }

export interface PeerAddresses { id: string, addrs: string[] }

export type ClientAnswer =
  | { ok: true, result?: KvApplyResult, peers?: PeerAddresses[] }
  | { ok: false, code: RaftError['code'], message: string, leader: string | null }

interface WireRequest { v: 1, op: string, command?: Uint8Array, change?: unknown, to?: unknown, peers?: unknown }

export function requestBytesMax (limits: KvLimits): number {
  return commandBytesMax(limits) + 1024
}

function encodeRequest (request: ClientRequest): Uint8Array {
  switch (request.op) {
    case 'propose': return encode({ v: 1, op: 'propose', command: encodeCommand(request.command) })
    case 'conf-change': return encode({ v: 1, op: 'conf-change', change: request.change })
    case 'transfer-leader': return encode({ v: 1, op: 'transfer-leader', to: request.to })
    case 'peer-addresses': return encode({ v: 1, op: 'peer-addresses', peers: request.peers })
    default: return unreachable(request)
  }
}

/** Decode a request; returns an error string for anything malformed (never throws). */
export function decodeRequest (bytes: Uint8Array): ClientRequest | string {
  let wire: WireRequest
  try {
    wire = decodeBoundedCbor(bytes) as WireRequest
  } catch (err) {
    return `malformed request: ${(err as Error).message}`
  }
  if (typeof wire !== 'object' || wire == null || wire.v !== 1) { return 'unsupported request version' }
  switch (wire.op) {
    case 'propose': {
      if (!(wire.command instanceof Uint8Array)) { return 'propose: command must be bytes' }
      const decoded = decodeCommand(wire.command)
      return decoded.ok ? { op: 'propose', command: decoded.command } : `propose: ${decoded.error}`
    }
    case 'conf-change': {
      // node ids must be peer ids: every node dials the members it is told of
      const change = checkConfChange(wire.change)
      if (typeof change === 'string') { return change }
      return change.changes.every(c => isPeerId(c.node)) ? { op: 'conf-change', change } : 'conf-change: every node must be a peer id'
    }
    case 'transfer-leader':
      return isPeerId(wire.to) ? { op: 'transfer-leader', to: wire.to } : 'transfer-leader: "to" must be a peer id'
    case 'peer-addresses':
      return Array.isArray(wire.peers) && wire.peers.length <= ADDRESS_LOOKUP_PEERS_MAX && wire.peers.every(p => typeof p === 'string')
        ? { op: 'peer-addresses', peers: wire.peers }
        : `peer-addresses: "peers" must be at most ${ADDRESS_LOOKUP_PEERS_MAX} peer ids`
    default:
      return `unknown request op ${JSON.stringify(wire.op)}`
  }
}

export interface ClientProtocolOptions {
  /** Where refused streams are counted and logged. */
  refusals?: Refusals
  /** Streams and bytes in flight (default: a StreamBudget with RAFT_CLIENT_BUDGET). */
  budget?: StreamBudget
}

/** Serve requests from other nodes against the local driver. Returns the budget it serves them within. */
export async function handleClientRequests (libp2p: AccordHost, driver: RaftDriver, limits: KvLimits, log: Logger, gate: (protocol: string, handler: StreamHandler) => StreamHandler, options: ClientProtocolOptions = {}): Promise<StreamBudget> {
  const budget = options.budget ?? new StreamBudget(RAFT_CLIENT_BUDGET)
  const maxDataLength = requestBytesMax(limits)
  const refuse = (peer: string, reason: string, details?: Record<string, unknown>): void => {
    options.refusals?.refuse(peer, RAFT_CLIENT_PROTOCOL, reason, details)
  }
  const serve = gate(RAFT_CLIENT_PROTOCOL, async (stream: Stream, connection: Connection) => {
    const peer = connection.remotePeer.toString()
    const lease = budget.tryAcquire(peer)
    if (typeof lease === 'string') {
      refuse(peer, lease, { usage: budget.usage(peer) })
      // the request is not read: what arrives of it is dropped, not buffered
      const signal = AbortSignal.timeout(REFUSAL_TIMEOUT_MS)
      await stream.closeRead({ signal }).catch(() => {})
      await answerAndClose(stream, lpStream(stream), { ok: false, code: 'retry', message: `this node is busy: too many requests in flight (${lease})`, leader: driver.leader }, signal)
      return
    }
    // Every byte received on the stream counts until the request is
    // answered: the request being read, and anything a peer sends beyond
    // it (which lpStream buffers up to maxBufferSize).
    const onMessage = (event: StreamMessageEvent): void => {
      const refused = lease.grow(event.data.byteLength)
      if (refused == null) { return }
      stream.removeEventListener('message', onMessage)
      refuse(peer, refused, { usage: budget.usage(peer) })
      stream.abort(new Error(`raft-client budget: ${refused}`))
    }
    try {
      const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS)
      // (both listeners are added in this turn: the stream hands data it
      // already buffered to both, in a microtask)
      stream.addEventListener('message', onMessage)
      // lpStream's default decoder reads an unbounded varint prefix
      const lp = lpStream(stream, { maxDataLength, maxBufferSize: maxDataLength + 16, lengthDecoder: boundedLengthDecoder(maxDataLength) })
      let bytes: Uint8Array
      try {
        bytes = (await lp.read({ signal })).subarray()
        // one request per stream: whatever follows it is dropped, not buffered
        await stream.closeRead({ signal })
      } catch (err) {
        // broken framing (a prefix too long, an oversize or truncated
        // request) or a timeout: nothing to retry, nothing more to read
        refuse(peer, 'malformed', { detail: (err as Error).message })
        stream.abort(err as Error)
        return
      }
      let answer: ClientAnswer
      try {
        const request = decodeRequest(bytes)
        if (typeof request === 'string') {
          answer = { ok: false, code: 'invalid', message: request, leader: driver.leader }
        } else {
          answer = isJoinOfMember(request, peer, driver) ? { ok: true } : await serveClientRequest(libp2p, driver, request, signal)
        }
      } catch (err) {
        log.debug({ err: (err as Error).message }, 'raft client request failed')
        answer = toAnswer(err, driver.leader)
      }
      if (stream.status === 'open') { await answerAndClose(stream, lp, answer, signal) }
    } finally {
      stream.removeEventListener('message', onMessage)
      lease.release()
    }
  })
  await libp2p.handle(RAFT_CLIENT_PROTOCOL, serve, { maxInboundStreams: INBOUND_STREAMS_MAX, maxOutboundStreams: INBOUND_STREAMS_MAX })
  return budget
}

async function answerAndClose (stream: Stream, lp: { write(bytes: Uint8Array, options: { signal: AbortSignal }): Promise<void> }, answer: ClientAnswer, signal: AbortSignal): Promise<void> {
  try {
    await lp.write(encode(answer), { signal })
    await stream.close({ signal })
  } catch (err) {
    stream.abort(err as Error)
  }
}

/**
 * A join request (a peer asking to be added as a learner) from a peer that
 * is a member already: done, nothing to change. A voter of the initial
 * cluster may ask before it has heard of its own configuration, and an
 * add-learner would demote it.
 */
function isJoinOfMember (request: ClientRequest, peer: string, driver: RaftDriver): boolean {
  if (request.op !== 'conf-change' || request.change.joint === true || request.change.changes.length !== 1) { return false }
  const [change] = request.change.changes
  if (change.type !== 'add-learner' || change.node !== peer) { return false }
  const { conf } = driver.status()
  return conf.voters.includes(peer) || conf.learners.includes(peer)
}

/** Carry out a request on this node (used for remote requests and for our own when we lead). */
export async function serveClientRequest (libp2p: AccordHost, driver: RaftDriver, request: ClientRequest, signal: AbortSignal): Promise<ClientAnswer> {
  switch (request.op) {
    case 'propose':
      return { ok: true, result: await driver.propose(request.command, signal) }
    case 'conf-change':
      await driver.changeMembership(request.change, signal)
      return { ok: true }
    case 'transfer-leader':
      driver.transferLeadership(request.to)
      return { ok: true }
    case 'peer-addresses': {
      // only members of the group are looked up: the question is where to
      // reach a member, and a peer-store lookup of an unknown id costs CPU
      const { conf } = driver.status()
      const members = new Set([...conf.voters, ...conf.votersOutgoing, ...conf.learners, ...conf.learnersNext])
      return { ok: true, peers: await knownAddresses(libp2p, request.peers.filter(id => members.has(id))) }
    }
    default:
      return unreachable(request)
  }
}

async function knownAddresses (libp2p: AccordHost, peers: string[]): Promise<PeerAddresses[]> {
  const found: PeerAddresses[] = []
  for (const id of peers) {
    try {
      const peer = await libp2p.peerStore.get(peerIdFromString(id))
      const addrs = peer.addresses.slice(0, ADDRESSES_PER_PEER_MAX).map(a => a.multiaddr.toString())
      if (addrs.length > 0) { found.push({ id, addrs }) }
    } catch { /* unknown or malformed peer id: nothing to tell */ }
  }
  return found
}

export function toAnswer (err: unknown, leader: string | null): ClientAnswer {
  if (err instanceof RaftError) { return { ok: false, code: err.code, message: err.message, leader: err.leader ?? leader } }
  return { ok: false, code: 'retry', message: (err as Error).message, leader }
}

/** Send a request to `peer` and wait for its answer. */
export async function sendClientRequest (libp2p: AccordHost, peer: string, request: ClientRequest, signal: AbortSignal): Promise<ClientAnswer> {
  const stream = await libp2p.dialProtocol(peerIdFromString(peer), RAFT_CLIENT_PROTOCOL, { signal })
  try {
    const lp = lpStream(stream, { maxDataLength: ANSWER_BYTES_MAX, lengthDecoder: boundedLengthDecoder(ANSWER_BYTES_MAX) })
    await lp.write(encodeRequest(request), { signal })
    const answer = decodeBoundedCbor((await lp.read({ signal })).subarray()) as ClientAnswer
    await stream.close({ signal })
    if (typeof answer !== 'object' || answer == null || typeof answer.ok !== 'boolean') {
      throw new RaftError('retry', `malformed answer from ${peer}`)
    }
    return answer
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

/** The peer id `id` names, or null when it names none. */
export function parsePeerId (id: string): PeerId | null {
  try {
    return peerIdFromString(id)
  } catch {
    return null
  }
}

function isPeerId (value: unknown): value is string {
  return typeof value === 'string' && parsePeerId(value) != null
}
