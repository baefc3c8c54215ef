/*
 * HTTP routes of the DKG service:
 *
 *   GET  /v1/keys        → {"key": {"groupKey","threshold","n","index","session","members"} | null, "sessions": [...]}
 *   POST /v1/keys/dkg    body {"members"?: [peer id, ...], "threshold": T, "session"?: hex}
 *                        → the session when it ended: 200 done, 409 aborted (with "reason")
 *                        (members default to the PBFT replicas in force)
 *   POST /v1/keys/reshare body {"members": [peer id, ...], "threshold": T, "session"?: hex}
 *                        → the same as /v1/keys/dkg: the stored group reshared to
 *                        the members with threshold T, same group key (409 "no-key"
 *                        when this node holds no share to reshare)
 *   POST /v1/keys/sign   body {"message": "<text>"} or {"messageHex": "<hex>"}
 *                        → {"signature","groupKey","signers","bad"}
 *   POST /v1/keys/approvals body {"message" | "messageHex", "ttlSeconds"?: N (default 3600)}
 *                        → {"digest","expiresAt","signPolicy"}: this node signs that
 *                        message when a member asks, until then (--keys-sign-policy approve)
 *
 * Errors: 400 bad input (no members and no PBFT replica set, a bad
 * threshold, this node not among the members); 409 no key to sign with;
 * 503 too many sessions or rounds at once, or too few partials.
 */
import { HttpError, readJsonBody } from '../http-api.ts'
import { DKG_SIGN_MESSAGE_BYTES_MAX } from './constants.ts'
import { DkgError } from './service.ts'
import type { DkgRunOptions, DkgService, DkgSessionView } from './service.ts'
import type { Route } from '../http-api.ts'

const STATUS_OF: Record<string, number> = {
  'sessions-full': 503,
  'rounds-full': 503,
  'sign-failed': 503,
  'no-key': 409,
  'duplicate-session': 409
}

/** `replicas()`: the PBFT replicas in force, the default members (null when the node has no replica set). */
export function dkgRoutes (dkg: DkgService, replicas: () => string[] | null): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/v1\/keys$/,
      handle: async () => ({ status: 200, json: { key: dkg.summary(), signPolicy: dkg.signPolicy, sessions: dkg.sessions() } })
    },
    sessionRoute('dkg', async (options) => dkg.run(options), replicas),
    sessionRoute('reshare', async (options) => dkg.reshare(options)),
    {
      method: 'POST',
      path: /^\/v1\/keys\/sign$/,
      handle: async (request) => {
        const message = messageOf(await readJsonBody(request, 3 * DKG_SIGN_MESSAGE_BYTES_MAX, ['message', 'messageHex']))
        const result = await guard(async () => dkg.thresholdSign(message))
        return { status: 200, json: { ...result, groupKey: dkg.summary()?.groupKey } }
      }
    },
    {
      method: 'POST',
      path: /^\/v1\/keys\/approvals$/,
      handle: async (request) => {
        const body = await readJsonBody(request, 3 * DKG_SIGN_MESSAGE_BYTES_MAX, ['message', 'messageHex', 'ttlSeconds'])
        const message = messageOf(body)
        const ttlSeconds = body.ttlSeconds ?? 3600
        if (!Number.isSafeInteger(ttlSeconds)) { throw new HttpError(400, '"ttlSeconds" is an integer') }
        try {
          const { digest, expiresAtMs } = dkg.approveMessage(message, (ttlSeconds as number) * 1000)
          return { status: 200, json: { digest, expiresAt: new Date(expiresAtMs).toISOString(), signPolicy: dkg.signPolicy } }
        } catch (err) {
          if (err instanceof RangeError) { throw new HttpError(err.message.includes('held already') ? 503 : 400, err.message) }
          throw err
        }
      }
    }
  ]
}

/** The message of a body {"message": "<text>"} or {"messageHex": "<hex>"}, at most DKG_SIGN_MESSAGE_BYTES_MAX bytes. */
function messageOf (body: Record<string, unknown>): Uint8Array {
  let message: Uint8Array
  if (typeof body.message === 'string' && body.messageHex === undefined) {
    message = new TextEncoder().encode(body.message)
  } else if (typeof body.messageHex === 'string' && body.message === undefined && /^([0-9a-f]{2})*$/.test(body.messageHex)) {
    message = Uint8Array.from(Buffer.from(body.messageHex, 'hex'))
  } else {
    throw new HttpError(400, 'the body must be {"message": "<text>"} or {"messageHex": "<lower-case hex>"}')
  }
  if (message.byteLength > DKG_SIGN_MESSAGE_BYTES_MAX) { throw new HttpError(400, `the message is at most ${DKG_SIGN_MESSAGE_BYTES_MAX} bytes`) }
  return message
}

/** POST /v1/keys/<action>: runs a session and answers with it when it ended; `members`, if absent, from `defaultMembers`. */
function sessionRoute (action: 'dkg' | 'reshare', launch: (options: DkgRunOptions) => Promise<DkgSessionView>, defaultMembers?: () => string[] | null): Route {
  return {
    method: 'POST',
    path: new RegExp(`^/v1/keys/${action}$`),
    handle: async (request) => {
      const body = await readJsonBody(request, 64 * 1024, ['members', 'threshold', 'session'])
      const members = body.members ?? defaultMembers?.()
      if (members === null) { throw new HttpError(400, 'this node has no PBFT replica set: give "members", a list of peer ids') }
      if (body.session !== undefined && typeof body.session !== 'string') { throw new HttpError(400, '"session" is a hex string') }
      const session = await guard(async () => launch({ members: members as string[], threshold: body.threshold as number, ...(body.session !== undefined ? { sessionId: body.session as string } : {}) }))
      return { status: session.state === 'done' ? 200 : 409, json: session }
    }
  }
}

async function guard<T> (action: () => Promise<T>): Promise<T> {
  try {
    return await action()
  } catch (err) {
    if (err instanceof DkgError) { throw new HttpError(STATUS_OF[err.reason] ?? 400, err.message) }
    throw err
  }
}
