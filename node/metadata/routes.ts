/*
 * HTTP routes of the cluster-metadata store:
 *
 *   GET    /v1/metadata        → {"nodes":[{"peerId","entries":[{"key","version","value","encoding"}, ...]}, ...], "status":{...}}
 *   GET    /v1/metadata/<key>  → {"key","values":[{"peerId","version","value","encoding"}, ...]}  (every node's value)
 *   PUT    /v1/metadata/<key>  body = raw value → {"key","version"}   (this node's own value)
 *   DELETE /v1/metadata/<key>                  → {"key","version"}   (the tombstone's version)
 *
 * Values go as UTF-8 text when they are valid UTF-8, else base64
 * (`"encoding":"base64"`). A node writes only its own keys: the others'
 * are theirs, signed by them. Keys that start with `accord.` belong to
 * accord's own services (the topology report): read-only here.
 */
import { encodeValue, HttpError, readBody } from '../http-api.ts'
import { METADATA_RESERVED_KEY_PREFIX } from './service.ts'
import type { ClusterMetadataService } from './service.ts'
import type { Route } from '../http-api.ts'

export function metadataRoutes (metadata: ClusterMetadataService): Route[] {
  const key = (params: string[]): string => {
    const k = params[0]
    const { keyLengthMax } = metadata.limits
    if (k === '' || k.length > keyLengthMax) { throw new HttpError(400, `key must be 1..${keyLengthMax} characters`) }
    return k
  }
  const writableKey = (params: string[]): string => {
    const k = key(params)
    if (k.startsWith(METADATA_RESERVED_KEY_PREFIX)) { throw new HttpError(403, `keys that start with "${METADATA_RESERVED_KEY_PREFIX}" belong to accord's own services`) }
    return k
  }
  return [
    {
      method: 'GET',
      path: /^\/v1\/metadata$/,
      handle: async () => ({
        status: 200,
        json: {
          nodes: metadata.nodes().map(n => ({ peerId: n.peerId, entries: n.entries.map(e => ({ key: e.key, version: e.version, ...encodeValue(e.value) })) })),
          status: metadata.status()
        }
      })
    },
    {
      method: 'GET',
      path: /^\/v1\/metadata\/([^/]+)$/,
      handle: async (_request, params) => {
        const k = key(params)
        return { status: 200, json: { key: k, values: metadata.entries(k).map(e => ({ peerId: e.peerId, version: e.version, ...encodeValue(e.value) })) } }
      }
    },
    {
      method: 'PUT',
      path: /^\/v1\/metadata\/([^/]+)$/,
      handle: async (request, params) => {
        const k = writableKey(params)
        const value = await readBody(request, metadata.limits.valueBytesMax)
        const version = guard(() => metadata.set(k, value))
        return { status: 200, json: { key: k, version } }
      }
    },
    {
      method: 'DELETE',
      path: /^\/v1\/metadata\/([^/]+)$/,
      handle: async (_request, params) => {
        const k = writableKey(params)
        const version = guard(() => metadata.delete(k))
        return { status: 200, json: { key: k, version } }
      }
    }
  ]
}

/** A write the store refused (a limit reached) is the caller's error. */
function guard (write: () => number): number {
  try {
    return write()
  } catch (err) {
    if (err instanceof RangeError) { throw new HttpError(400, err.message) }
    throw err
  }
}
