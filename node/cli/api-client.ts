/**
 * A small client for a node's HTTP API, used by the CLI commands and the demo.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { UserError } from '../errors.ts'
import { API_TOKEN_FILE } from '../http-api.ts'
import { readRuntimeInfo } from '../runtime-file.ts'

export interface ApiTarget {
  url: string
  token: string | null
}

/** Work out which API to talk to from --api, --data-dir, or the default. */
export async function resolveApiTarget (flags: { api?: string, 'data-dir'?: string, token?: string }): Promise<ApiTarget> {
  let url = flags.api
  let token = flags.token ?? process.env.ACCORD_API_TOKEN ?? null
  const dataDir = flags['data-dir']
  if (dataDir !== undefined) {
    if (url === undefined) {
      const info = await readRuntimeInfo(dataDir)
      if (info?.api == null) { throw new UserError(`no running node with an API found in ${dataDir}`) }
      url = info.api
    }
    token ??= await readFile(join(dataDir, API_TOKEN_FILE), 'utf8').then(t => t.trim(), () => null)
  }
  url ??= 'http://127.0.0.1:7070'
  if (!/^https?:\/\//.test(url)) { url = `http://${url}` }
  try {
    return { url: new URL(url).toString().replace(/\/$/, ''), token }
  } catch {
    throw new UserError(`--api "${url}" is not a URL`)
  }
}

/**
 * One request to the API. The body of a POST is JSON on every route of the
 * API and goes with `content-type: application/json` (the API answers 415
 * without it); a PUT body is a raw KV value and goes as
 * `application/octet-stream`. `contentType` overrides either.
 */
export async function apiRequest (target: ApiTarget, method: string, path: string, options: { body?: string, contentType?: string, timeoutMs?: number } = {}): Promise<{ status: number, json: any }> {
  const headers: Record<string, string> = {}
  if (target.token != null) { headers.authorization = `Bearer ${target.token}` }
  if (options.body !== undefined) { headers['content-type'] = options.contentType ?? (method === 'PUT' ? 'application/octet-stream' : 'application/json') }
  let response: Response
  try {
    response = await fetch(`${target.url}${path}`, {
      method,
      body: options.body,
      headers,
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000)
    })
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name
    throw new UserError(`cannot reach the accord API at ${target.url} (${cause})`)
  }
  const text = await response.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = { text }
  }
  return { status: response.status, json }
}
