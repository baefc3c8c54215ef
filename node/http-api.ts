/**
 * The node's HTTP API. Bound to 127.0.0.1 by default; when bound to any other
 * address every request needs `Authorization: Bearer <token>`, the token
 * being generated into `<dataDir>/api.token` (mode 0600).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { writeFileAtomic } from './config.ts'
import { UserError } from './errors.ts'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'

export const API_TOKEN_FILE = 'api.token'
/** Request URLs longer than this are refused (no route needs more). */
const URL_BYTES_MAX = 8192

export interface Route {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE'
  /** Matched against the path; capture groups are passed to the handler. */
  path: RegExp
  handle(request: IncomingMessage, params: string[], url: URL): Promise<ApiResponse>
}

export interface ApiResponse {
  status: number
  json?: unknown
  text?: string
  contentType?: string
  headers?: Record<string, string>
}

export class HttpError extends Error {
  readonly status: number
  /** Extra fields of the JSON error body (e.g. the leader to ask instead). */
  readonly details: Record<string, unknown>
  constructor (status: number, message: string, details: Record<string, unknown> = {}) {
    super(message)
    this.status = status
    this.details = details
  }
}

export function isLoopbackHost (host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'))
}

/** Read the API token, creating it on first use. */
export async function loadOrCreateApiToken (dataDir: string): Promise<string> {
  const path = join(dataDir, API_TOKEN_FILE)
  try {
    return (await readFile(path, 'utf8')).trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') { throw err }
  }
  const token = randomBytes(32).toString('base64url')
  await writeFileAtomic(path, token + '\n', 0o600)
  return token
}

export interface HttpApi {
  url: string
  close(): Promise<void>
}

export async function startHttpApi (options: { host: string, port: number, token: string | null, routes: Route[], log: Logger }): Promise<HttpApi> {
  const { routes, log, token } = options
  const expected = token != null ? Buffer.from(`Bearer ${token}`) : null

  const server: Server = createServer((request, response) => {
    handle(request).then(result => { send(response, result) }, (err: unknown) => {
      if (err instanceof HttpError) {
        send(response, { status: err.status, json: { error: err.message, ...err.details } })
      } else {
        log.error({ err }, 'http handler failed')
        send(response, { status: 500, json: { error: 'internal error' } })
      }
    })
  })
  server.headersTimeout = 10_000
  server.requestTimeout = 30_000

  async function handle (request: IncomingMessage): Promise<ApiResponse> {
    if (expected != null) {
      const given = Buffer.from(request.headers.authorization ?? '')
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new HttpError(401, 'missing or wrong bearer token')
      }
    }
    if ((request.url ?? '').length > URL_BYTES_MAX) { throw new HttpError(414, 'request URL too long') }
    let url: URL
    try {
      url = new URL(request.url ?? '/', 'http://localhost')
    } catch {
      throw new HttpError(400, 'malformed request URL')
    }
    let pathMatched = false
    for (const route of routes) {
      const match = route.path.exec(url.pathname)
      if (match == null) { continue }
      pathMatched = true
      if (route.method !== request.method) { continue }
      return route.handle(request, match.slice(1).map(decodePathParam), url)
    }
    if (pathMatched) { throw new HttpError(405, `method ${request.method ?? ''} not allowed on ${url.pathname}`) }
    throw new HttpError(404, `no such endpoint: ${url.pathname}`)
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE'
        ? new UserError(`API address ${options.host}:${options.port} is already in use`)
        : new UserError(`cannot listen on API address ${options.host}:${options.port}: ${err.code ?? err.message}`))
    })
    server.listen(options.port, options.host, () => { resolve() })
  })
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${host}:${address.port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }
}

/** Read a request body of at most `bytesMax` bytes (413 beyond it). */
export async function readBody (request: IncomingMessage, bytesMax: number): Promise<Uint8Array> {
  const declared = Number(request.headers['content-length'] ?? 0)
  if (declared > bytesMax) { throw new HttpError(413, `request body exceeds ${bytesMax} bytes`) }
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of request as AsyncIterable<Buffer>) {
    total += chunk.byteLength
    if (total > bytesMax) { throw new HttpError(413, `request body exceeds ${bytesMax} bytes`) }
    chunks.push(chunk)
  }
  return new Uint8Array(Buffer.concat(chunks))
}

/** Parse a JSON object body and refuse fields other than `allowed`. */
export async function readJsonBody (request: IncomingMessage, bytesMax: number, allowed: readonly string[]): Promise<Record<string, unknown>> {
  const bytes = await readBody(request, bytesMax)
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw new HttpError(400, 'request body is not valid JSON')
  }
  if (typeof json !== 'object' || json == null || Array.isArray(json)) { throw new HttpError(400, 'request body must be a JSON object') }
  const unknown = Object.keys(json).find(k => !allowed.includes(k))
  if (unknown !== undefined) { throw new HttpError(400, `unknown field "${unknown}" (allowed: ${allowed.join(', ')})`) }
  return json as Record<string, unknown>
}

function decodePathParam (value: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in the request path')
  }
}

function send (response: ServerResponse, result: ApiResponse): void {
  if (response.headersSent) { return }
  if (result.text !== undefined) {
    response.writeHead(result.status, { ...result.headers, 'content-type': result.contentType ?? 'text/plain; charset=utf-8' })
    response.end(result.text)
  } else {
    response.writeHead(result.status, { ...result.headers, 'content-type': 'application/json' })
    response.end(JSON.stringify(result.json ?? {}) + '\n')
  }
}
