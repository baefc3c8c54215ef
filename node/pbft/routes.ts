/*
 * HTTP routes of the Byzantine-fault-tolerant KV store (PBFT), mirroring
 * the Raft KV (node/raft/routes.ts):
 *
 *   PUT    /v1/bft/kv/<key>            body = raw value          → {"index":N}
 *   GET    /v1/bft/kv/<key>                                      → {"value":..,"encoding":..}, 404 when absent
 *   DELETE /v1/bft/kv/<key>                                      → {"index":N,"deleted":bool}
 *   POST   /v1/bft/kv/<key>/cas        {"expected":..,"value":..} → 200 {"index":N} or 409 {"error":"cas-mismatch"}
 *   POST   /v1/bft/noop                {}                        → {"ok":true} once f+1 replicas executed a null operation
 *   GET    /v1/bft                                               → the node's PBFT summary (as in /v1/status)
 *   POST   /v1/bft/isolated            {"peerId":..}             → isolates the peer here (operator; persisted)
 *   DELETE /v1/bft/isolated/<peerId>                             → {"peerId","readmitted":bool}: off this replica's blocklist
 *   POST   /v1/bft/approvals           {"replicas":[..]}         → this replica's approval of that set as the next epoch's
 *   PUT    /v1/bft/replicas            {"replicas":[..],"approvals":[..]} → {"epoch","replicas","afterSeq"} once ordered and executed
 *
 * Reconfiguration takes two steps because a quorum of the replicas in force
 * must agree: the operator of each of them asks their own node for an
 * approval ({"epoch","replicas","replica","signature"}, the signature in
 * base64), and anyone hands the approvals to PUT /v1/bft/replicas on any
 * node, which orders the reconfiguration as a client (adding its own
 * approval when it is a replica). A refusal by the replicas (a stale
 * epoch, too few or invalid approvals, a change still pending) is a 409.
 *
 * The node serving the request is the PBFT client: it signs the request with
 * its own key, sends it to the replicas and answers once f+1 of them replied
 * alike (a read tries the read-only optimisation first, which needs a quorum
 * of matching replies, then falls back to an ordered read). Exactly-once is
 * the client's: the node's client id and its growing timestamps are the KV
 * session, so a request the client retransmits executes once.
 *
 * The no-op is ordered like any write (three phases, logged, executed) but
 * changes nothing: a health check of the whole ordering path and a barrier
 * (every write acknowledged before it was sent is ordered before it);
 * bench:pbft measures the protocol alone with it. Its answer carries no
 * index (a null operation's result has none).
 *
 * Values go over JSON as UTF-8 text when they are valid UTF-8, else as
 * base64 (`"encoding":"base64"`); CAS bodies accept the same. The JSON
 * bodies must come with `Content-Type: application/json` (see
 * node/raft/routes.ts for why PUT takes any content type).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { REPLICAS_MAX } from '../../protocols/pbft/index.ts'
import { encodeValue, HttpError, readBody, readJsonBody } from '../http-api.ts'
import { BFT_RESERVED_KEY_PREFIX, PbftError } from './service.ts'
import type { PbftKvResult } from './operations.ts'
import type { BftApproval, PbftService } from './service.ts'
import type { Route } from '../http-api.ts'

const JSON_BODY_BYTES_MAX = 4 * 1024 * 1024

export function pbftRoutes (bft: PbftService): Route[] {
  const key = (params: string[]): string => {
    const k = params[0]
    if (k === '' || Buffer.byteLength(k) > bft.kvLimits.keyBytesMax) { throw new HttpError(400, `key must be 1..${bft.kvLimits.keyBytesMax} bytes`) }
    if (k.startsWith(BFT_RESERVED_KEY_PREFIX)) { throw new HttpError(403, 'keys that start with a NUL character are reserved for accord itself') }
    return k
  }
  return [
    {
      method: 'PUT',
      path: /^\/v1\/bft\/kv\/([^/]+)$/,
      handle: async (request, params) => {
        const value = await readBody(request, bft.kvLimits.valueBytesMax)
        const result = written(await guard(async () => bft.put(key(params), value)))
        return { status: 200, json: { index: result.index } }
      }
    },
    {
      method: 'GET',
      path: /^\/v1\/bft\/kv\/([^/]+)$/,
      handle: async (_request, params) => {
        const k = key(params)
        const value = await guard(async () => bft.get(k))
        if (value == null) { throw new HttpError(404, `no such key: ${k}`) }
        return { status: 200, json: encodeValue(value) }
      }
    },
    {
      method: 'DELETE',
      path: /^\/v1\/bft\/kv\/([^/]+)$/,
      handle: async (_request, params) => {
        const result = written(await guard(async () => bft.delete(key(params))))
        return { status: 200, json: { index: result.index, deleted: result.ok && result.type === 'delete' ? result.deleted : false } }
      }
    },
    {
      method: 'POST',
      path: /^\/v1\/bft\/kv\/([^/]+)\/cas$/,
      handle: async (request, params) => {
        const body = await readJsonBody(request, JSON_BODY_BYTES_MAX, ['expected', 'value', 'encoding'])
        const encoding = body.encoding ?? 'utf8'
        if (encoding !== 'utf8' && encoding !== 'base64') { throw new HttpError(400, 'encoding must be "utf8" or "base64"') }
        if (body.expected !== null && typeof body.expected !== 'string') { throw new HttpError(400, '"expected" must be a string or null (null: the key must be absent)') }
        if (typeof body.value !== 'string') { throw new HttpError(400, '"value" must be a string') }
        const decode = (text: string): Uint8Array => encoding === 'base64' ? new Uint8Array(Buffer.from(text, 'base64')) : new TextEncoder().encode(text)
        const k = key(params)
        const expected = body.expected === null ? null : decode(body.expected)
        const value = decode(body.value)
        const result = await guard(async () => bft.cas(k, expected, value))
        if (!result.ok && result.reason === 'cas-mismatch') { return { status: 409, json: { error: 'cas-mismatch', index: result.index } } }
        return { status: 200, json: { index: written(result).index } }
      }
    },
    {
      method: 'POST',
      path: /^\/v1\/bft\/noop$/,
      handle: async (request) => {
        await readJsonBody(request, JSON_BODY_BYTES_MAX, [])
        await guard(async () => { await bft.noop() })
        return { status: 200, json: { ok: true } }
      }
    },
    {
      method: 'GET',
      path: /^\/v1\/bft$/,
      handle: async () => ({ status: 200, json: bft.summary() })
    },
    {
      method: 'POST',
      path: /^\/v1\/bft\/isolated$/,
      handle: async (request) => {
        const body = await readJsonBody(request, JSON_BODY_BYTES_MAX, ['peerId'])
        const peer = peerIdParam(body.peerId)
        await guard(async () => { bft.isolate(peer) })
        return { status: 200, json: { isolated: peer } }
      }
    },
    {
      method: 'DELETE',
      path: /^\/v1\/bft\/isolated\/([^/]+)$/,
      handle: async (_request, params) => {
        const peer = peerIdParam(params[0])
        const readmitted = await guard(async () => bft.readmit(peer))
        return { status: 200, json: { peerId: peer, readmitted } }
      }
    },
    {
      method: 'POST',
      path: /^\/v1\/bft\/approvals$/,
      handle: async (request) => {
        const body = await readJsonBody(request, JSON_BODY_BYTES_MAX, ['replicas'])
        const approval = await guard(async () => bft.approve(replicasParam(body.replicas)))
        return { status: 200, json: approvalJson(approval) }
      }
    },
    {
      method: 'PUT',
      path: /^\/v1\/bft\/replicas$/,
      handle: async (request) => {
        const body = await readJsonBody(request, JSON_BODY_BYTES_MAX, ['replicas', 'approvals'])
        const replicas = replicasParam(body.replicas)
        if (!Array.isArray(body.approvals) || body.approvals.length > REPLICAS_MAX) { throw new HttpError(400, `"approvals" must be an array of at most ${REPLICAS_MAX} approvals`) }
        const approvals = body.approvals.map(approvalParam)
        return { status: 200, json: await guard(async () => bft.reconfigure(replicas, approvals)) }
      }
    }
  ]
}

/** A replica list given by an operator: peer ids (checked by the service). */
function replicasParam (value: unknown): string[] {
  if (!Array.isArray(value) || value.length > REPLICAS_MAX || value.some(id => typeof id !== 'string')) { throw new HttpError(400, `"replicas" must be an array of at most ${REPLICAS_MAX} peer ids`) }
  return value as string[]
}

/** An approval as POST /v1/bft/approvals answers it. */
export function approvalJson (approval: BftApproval): { epoch: number, replicas: string[], replica: string, signature: string } {
  return { epoch: approval.epoch, replicas: approval.replicas, replica: approval.replica, signature: Buffer.from(approval.signature).toString('base64') }
}

function approvalParam (value: unknown, index: number): BftApproval {
  const fail = (what: string): never => { throw new HttpError(400, `approvals[${index}]: ${what}`) }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) { return fail('must be an object {epoch, replicas, replica, signature}') }
  const { epoch, replicas, replica, signature } = value as Record<string, unknown>
  if (!Number.isSafeInteger(epoch) || (epoch as number) < 1) { return fail('"epoch" must be a positive integer') }
  if (typeof replica !== 'string') { return fail('"replica" must be a peer id') }
  if (typeof signature !== 'string' || signature.length > 1024) { return fail('"signature" must be base64') }
  return { epoch: epoch as number, replicas: replicasParam(replicas), replica, signature: new Uint8Array(Buffer.from(signature, 'base64')) }
}

/** A peer id given by an operator, checked to be one. */
function peerIdParam (value: unknown): string {
  if (typeof value !== 'string') { throw new HttpError(400, '"peerId" must be a string') }
  try {
    return peerIdFromString(value).toString()
  } catch {
    throw new HttpError(400, `not a peer id: ${value.slice(0, 100)}`)
  }
}

/** A KV command's result, or the HTTP error its refusal maps to. */
function written (result: PbftKvResult): PbftKvResult & { ok: true } {
  if (result.ok) { return result }
  switch (result.reason) {
    case 'quota-exceeded': throw new HttpError(507, 'the store is full (dataBytesMax)', { index: result.index })
    case 'cas-mismatch': throw new HttpError(409, 'cas-mismatch', { index: result.index })
    default: throw new HttpError(409, `${result.reason}: ${result.message}`, { index: result.index })
  }
}

/** Map PBFT errors to HTTP. */
async function guard<T> (work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } catch (err) {
    if (!(err instanceof PbftError)) { throw err }
    switch (err.code) {
      case 'invalid': throw new HttpError(400, err.message)
      case 'refused': throw new HttpError(409, err.message)
      case 'busy': throw new HttpError(429, err.message)
      case 'timeout': throw new HttpError(504, err.message)
      default: throw new HttpError(503, err.message)
    }
  }
}
