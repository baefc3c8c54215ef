/*
 * HTTP routes of the replicated KV store and of Raft membership:
 *
 *   PUT    /v1/kv/<key>            body = raw value          → {"index":N}
 *   GET    /v1/kv/<key>?consistency=linearizable|lease|stale → {"value":..,"encoding":..,"index":N}, 404 when absent
 *   DELETE /v1/kv/<key>                                      → {"index":N,"deleted":bool}
 *   POST   /v1/kv/<key>/cas        {"expected":..,"value":..} → 200 {"index":N} or 409 {"error":"cas-mismatch","current":..}
 *   GET    /v1/raft/members                                  → voters, learners, leader, progress
 *   POST   /v1/raft/members        {"action":"add-learner|promote|remove","node":ID}
 *   POST   /v1/raft/transfer-leader {"to":ID}
 *
 * Writes are forwarded to the leader. A client may send its own session in
 * `x-accord-client-id` and `x-accord-sequence` to make its retries apply
 * exactly once across node failures; otherwise the request borrows one of
 * the node's pooled sessions (see session-pool.ts). Values go over JSON as UTF-8 text when they are valid UTF-8,
 * else as base64 (`"encoding":"base64"`); CAS bodies accept the same
 * (`"encoding":"base64"` applies to expected and value).
 *
 * A client's own session belongs to its credential: the KV sees not the
 * `x-accord-client-id` it sent but `callerSessionId(principal, id)`, a hash
 * of both (see `Caller.principal` in http-api.ts). So a caller holding one
 * bearer token cannot advance, or replay into, the session of a caller
 * holding another, nor one of the pooled sessions. The same token and id
 * give the same session on every node; nodes with different tokens give
 * different sessions, so a client that retries against another node keeps
 * its session only where the same token is accepted. On a loopback API
 * without a token all local callers are one principal.
 *
 * The JSON bodies (POST) must come with `Content-Type: application/json`
 * (readJsonBody). PUT takes the raw value with any content type: PUT and
 * DELETE are not CORS-simple methods, so a browser sends them cross-origin
 * only after a preflight, and this API grants no CORS headers; a web page
 * cannot send them here at all (and http-api.ts refuses foreign Origins).
 */
import { createHash } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { encodeValue, HttpError, readBody, readJsonBody } from '../http-api.ts'
import { RaftError } from './driver.ts'
import { RESERVED_KEY_PREFIX } from './service.ts'
import type { ReadConsistency, RaftService } from './service.ts'
import type { ClientSession, KvApplyResult, KvCommand } from '../../protocols/kv/index.ts'
import type { Caller, Route } from '../http-api.ts'
import type { IncomingMessage } from 'node:http'

const JSON_BODY_BYTES_MAX = 4 * 1024 * 1024
const CONSISTENCIES: readonly ReadConsistency[] = ['linearizable', 'lease', 'stale']
/**
 * Prefix of the session ids derived from callers' own client ids. Pooled
 * sessions are `<hex>-<n>` (session-pool.ts) and never contain ":".
 */
const CALLER_SESSION_PREFIX = 'c1:'
/** UTF-8 bytes of a `callerSessionId` (prefix + 43 base64url characters of SHA-256): within the KV's clientIdBytesMax (128). */
export const CALLER_SESSION_ID_BYTES = CALLER_SESSION_PREFIX.length + 43

/**
 * The KV client id of the session `clientId` of `principal`: the same for
 * the same pair on every node, different (barring a SHA-256 collision) for
 * another principal or id, and never one of the pooled sessions' ids.
 */
export function callerSessionId (principal: string, clientId: string): string {
  // the principal never contains NUL ("local" or "bearer:<hex>"), so the pair is encoded unambiguously
  return CALLER_SESSION_PREFIX + createHash('sha256').update(`accord-http-session\0${principal}\0`).update(clientId).digest('base64url')
}

export function raftRoutes (raft: RaftService): Route[] {
  if (raft.limits.clientIdBytesMax < CALLER_SESSION_ID_BYTES) {
    throw new RangeError(`the KV's clientIdBytesMax (${raft.limits.clientIdBytesMax}) must be at least ${CALLER_SESSION_ID_BYTES} for HTTP client sessions`)
  }
  const key = (params: string[]): string => {
    const k = params[0]
    if (k === '' || Buffer.byteLength(k) > raft.limits.keyBytesMax) { throw new HttpError(400, `key must be 1..${raft.limits.keyBytesMax} bytes`) }
    // accord's own records (the revoked members) live under a NUL prefix
    if (k.startsWith(RESERVED_KEY_PREFIX)) { throw new HttpError(403, 'keys that start with a NUL character are reserved for accord itself') }
    return k
  }
  return [
    {
      method: 'PUT',
      path: /^\/v1\/kv\/([^/]+)$/,
      handle: async (request, params, _url, caller) => {
        const value = await readBody(request, raft.limits.valueBytesMax)
        const k = key(params)
        const result = await run(raft, request, caller, session => ({ type: 'put', session, key: k, value }))
        return { status: 200, json: { index: result.index } }
      }
    },
    {
      method: 'GET',
      path: /^\/v1\/kv\/([^/]+)$/,
      handle: async (_request, params, url) => {
        const consistency = (url.searchParams.get('consistency') ?? 'linearizable') as ReadConsistency
        if (!CONSISTENCIES.includes(consistency)) { throw new HttpError(400, `consistency must be one of ${CONSISTENCIES.join(', ')}`) }
        const k = key(params)
        const { value, index } = await guard(async () => raft.read(k, consistency))
        if (value == null) { throw new HttpError(404, `no such key: ${k}`, { index }) }
        return { status: 200, json: { ...encodeValue(value), index } }
      }
    },
    {
      method: 'DELETE',
      path: /^\/v1\/kv\/([^/]+)$/,
      handle: async (request, params, _url, caller) => {
        const k = key(params)
        const result = await run(raft, request, caller, session => ({ type: 'delete', session, key: k }))
        return { status: 200, json: { index: result.index, deleted: result.ok && result.type === 'delete' ? result.deleted : false } }
      }
    },
    {
      method: 'POST',
      path: /^\/v1\/kv\/([^/]+)\/cas$/,
      handle: async (request, params, _url, caller) => {
        const body = await readJsonBody(request, JSON_BODY_BYTES_MAX, ['expected', 'value', 'encoding'])
        const encoding = body.encoding ?? 'utf8'
        if (encoding !== 'utf8' && encoding !== 'base64') { throw new HttpError(400, 'encoding must be "utf8" or "base64"') }
        if (body.expected !== null && typeof body.expected !== 'string') { throw new HttpError(400, '"expected" must be a string or null (null: the key must be absent)') }
        if (typeof body.value !== 'string') { throw new HttpError(400, '"value" must be a string') }
        const decode = (text: string): Uint8Array => encoding === 'base64' ? new Uint8Array(Buffer.from(text, 'base64')) : new TextEncoder().encode(text)
        const k = key(params)
        const expected = body.expected === null ? null : decode(body.expected)
        const value = decode(body.value)
        const result = await run(raft, request, caller, session => ({ type: 'cas', session, key: k, expected, value }), true)
        if (!result.ok && result.reason === 'cas-mismatch') {
          const current = result.current === undefined ? {} : { current: result.current === null ? null : encodeValue(result.current).value }
          return { status: 409, json: { error: 'cas-mismatch', index: result.index, ...current } }
        }
        return { status: 200, json: { index: result.index } }
      }
    },
    {
      method: 'GET',
      path: /^\/v1\/raft\/members$/,
      handle: async () => ({ status: 200, json: raft.summary() })
    },
    {
      method: 'POST',
      path: /^\/v1\/raft\/members$/,
      handle: async (request) => {
        const body = await readJsonBody(request, JSON_BODY_BYTES_MAX, ['action', 'node'])
        const actions = ['add-learner', 'promote', 'remove'] as const
        if (!actions.includes(body.action as typeof actions[number])) { throw new HttpError(400, `action must be one of ${actions.join(', ')}`) }
        const node = peerId(body.node, 'node')
        await guard(async () => { await raft.changeMembership({ changes: [{ type: body.action as typeof actions[number], node }] }) })
        return { status: 200, json: raft.summary() }
      }
    },
    {
      method: 'POST',
      path: /^\/v1\/raft\/transfer-leader$/,
      handle: async (request) => {
        const body = await readJsonBody(request, JSON_BODY_BYTES_MAX, ['to'])
        const to = peerId(body.to, 'to')
        await guard(async () => { await raft.transferLeadership(to) })
        return { status: 202, json: { transferringTo: to } }
      }
    }
  ]
}

function peerId (value: unknown, field: string): string {
  if (typeof value !== 'string') { throw new HttpError(400, `"${field}" must be a peer id`) }
  try {
    return peerIdFromString(value).toString()
  } catch {
    throw new HttpError(400, `"${field}" is not a valid peer id: ${value}`)
  }
}

/** The session the request brings in its headers (in its caller's namespace), or null for none. */
function ownSession (raft: RaftService, request: IncomingMessage, caller: Caller): ClientSession | null {
  const clientId = request.headers['x-accord-client-id']
  const sequence = request.headers['x-accord-sequence']
  if (clientId === undefined && sequence === undefined) { return null }
  if (typeof clientId !== 'string' || clientId === '' || Buffer.byteLength(clientId) > raft.limits.clientIdBytesMax) {
    throw new HttpError(400, `x-accord-client-id must be 1..${raft.limits.clientIdBytesMax} bytes`)
  }
  const n = Number(sequence)
  if (typeof sequence !== 'string' || !/^\d{1,15}$/.test(sequence) || n < 1) { throw new HttpError(400, 'x-accord-sequence must be a positive integer') }
  return { clientId: callerSessionId(caller.principal, clientId), sequence: n }
}

/**
 * Apply the command `build` makes for the request's own session, or for a
 * pooled one when it brings none; KV-level refusals become 4xx (a cas
 * mismatch is returned to the caller when `casMismatchIsResult`).
 */
async function run (raft: RaftService, request: IncomingMessage, caller: Caller, build: (session: ClientSession) => KvCommand, casMismatchIsResult = false): Promise<KvApplyResult> {
  const own = ownSession(raft, request, caller)
  const result = await guard(async () => own === null ? raft.writeWithPooledSession(build) : raft.write(build(own)))
  if (result.ok || (casMismatchIsResult && result.reason === 'cas-mismatch')) { return result }
  switch (result.reason) {
    case 'quota-exceeded': throw new HttpError(507, 'the store is full (dataBytesMax)', { index: result.index })
    case 'stale-sequence':
    case 'session-expired':
    case 'invalid-command': {
      // the KV names the namespaced session id; name the one the caller sent instead
      const sent = request.headers['x-accord-client-id']
      const message = own !== null && typeof sent === 'string' ? result.message.split(own.clientId).join(sent) : result.message
      throw new HttpError(409, `${result.reason}: ${message}`, { index: result.index })
    }
    default: throw new HttpError(409, result.reason, { index: result.index })
  }
}

/** Map Raft errors to HTTP: 503 naming the leader when there is none or it cannot be reached. */
async function guard<T> (work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } catch (err) {
    if (!(err instanceof RaftError)) { throw err }
    switch (err.code) {
      case 'invalid': throw new HttpError(400, err.message)
      case 'busy': throw new HttpError(429, err.message, { leader: err.leader })
      case 'timeout': throw new HttpError(504, err.message, { leader: err.leader })
      default: throw new HttpError(503, err.message, { leader: err.leader })
    }
  }
}
