/*
 * HTTP routes of the CRDT service:
 *
 *   GET  /v1/crdt          → {"crdts":[{"name","type"}, ...], "summary":{...}}
 *   PUT  /v1/crdt/<name>   body {"type":"<type>"} → {"name","type","created"}  (200 when it exists with that type)
 *   GET  /v1/crdt/<name>   → {"name","type","value","versionVector","stableVector"}
 *   POST /v1/crdt/<name>   body = one op, e.g. {"op":"increment","by":2} → {"name","type","value"}
 *                          (rga: {"op":"insert","index":I,"text":T}, {"op":"delete","index":I,"length":L};
 *                          value: the text)
 *
 * Errors: 400 a bad name, an unknown type, a malformed op or one the type
 * does not have (nothing changes); 403 this node is not on the writer
 * allowlist; 404 no such CRDT; 409 the name exists with another type;
 * 507 the node holds as many CRDTs as it may (crdtsMax). Bodies are JSON
 * (Content-Type: application/json).
 */
import { HttpError, readJsonBody } from '../http-api.ts'
import { CrdtError } from './service.ts'
import type { CrdtErrorCode, CrdtService } from './service.ts'
import type { CrdtTypeName } from '../../protocols/crdt/index.ts'
import type { Route } from '../http-api.ts'

/** An op's body: a JSON value (up to 64 KiB, see protocols/crdt) and its framing. */
const OP_BODY_BYTES_MAX = 128 * 1024
const OP_FIELDS = ['op', 'by', 'value', 'key', 'type', 'update', 'index', 'text', 'length'] as const

const STATUS_OF: Record<CrdtErrorCode, number> = {
  'bad-name': 400,
  'unknown-type': 400,
  'bad-op': 400,
  'not-writer': 403,
  'not-found': 404,
  'type-conflict': 409,
  limit: 507,
  'not-started': 503,
  storage: 503
}

export function crdtRoutes (crdt: CrdtService): Route[] {
  const found = (name: string): NonNullable<ReturnType<CrdtService['crdt']>> => {
    const handle = crdt.crdt(name)
    if (handle === undefined) { throw new HttpError(404, `no CRDT ${JSON.stringify(name.slice(0, 80))}`) }
    return handle
  }
  return [
    {
      method: 'GET',
      path: /^\/v1\/crdt$/,
      handle: async () => ({ status: 200, json: { crdts: crdt.list(), summary: crdt.summary() } })
    },
    {
      method: 'PUT',
      path: /^\/v1\/crdt\/([^/]+)$/,
      handle: async (request, params) => {
        const name = params[0]
        const body = await readJsonBody(request, 4096, ['type'])
        if (typeof body.type !== 'string') { throw new HttpError(400, 'the body must be {"type": "<CRDT type>"}') }
        const created = crdt.crdt(name) === undefined
        const handle = await guard(() => crdt.registerCRDT(name, body.type as CrdtTypeName))
        return { status: created ? 201 : 200, json: { name: handle.name, type: handle.type, created } }
      }
    },
    {
      method: 'GET',
      path: /^\/v1\/crdt\/([^/]+)$/,
      handle: async (_request, params) => {
        const handle = found(params[0])
        return { status: 200, json: { name: handle.name, type: handle.type, value: handle.value(), versionVector: handle.versionVector(), stableVector: handle.stableVector() } }
      }
    },
    {
      method: 'POST',
      path: /^\/v1\/crdt\/([^/]+)$/,
      handle: async (request, params) => {
        const handle = found(params[0])
        const op = await readJsonBody(request, OP_BODY_BYTES_MAX, OP_FIELDS)
        await guard(() => { handle.apply(op as never) })
        // answered once the op is on disk (and its delta sent)
        await guard(async () => { await handle.flushed() })
        return { status: 200, json: { name: handle.name, type: handle.type, value: handle.value() } }
      }
    }
  ]
}

/** Runs `call`, a CrdtError becoming its HTTP status (sync or async alike). */
async function guard<T> (call: () => T | Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (err) {
    if (err instanceof CrdtError) { throw new HttpError(STATUS_OF[err.code], err.message, { code: err.code }) }
    throw err
  }
}
