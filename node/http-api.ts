/**
 * The node's HTTP API. Bound to 127.0.0.1 by default; when bound to any other
 * address every request needs `Authorization: Bearer <token>`, the token
 * being generated into `<dataDir>/api.token` (mode 0600).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isIP } from 'node:net'
import { UserError } from './errors.ts'
import { writeFileAtomic } from './config.ts'
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
  handle: (request: IncomingMessage, params: string[], url: URL) => Promise<ApiResponse>
}

export interface ApiResponse {
  status: number
  json?: unknown
  text?: string
  contentType?: string
}

export class HttpError extends Error {
  readonly status: number
  constructor (status: number, message: string) {
    super(message)
    this.status = status
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
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const token = randomBytes(32).toString('base64url')
  await writeFileAtomic(path, token + '\n', 0o600)
  return token
}

export interface HttpApi {
  url: string
  close: () => Promise<void>
}

export async function startHttpApi (options: { host: string, port: number, token: string | null, routes: Route[], log: Logger }): Promise<HttpApi> {
  const { routes, log, token } = options
  const expected = token != null ? Buffer.from(`Bearer ${token}`) : null

  const server: Server = createServer((request, response) => {
    handle(request).then(result => { send(response, result) }, (err: unknown) => {
      if (err instanceof HttpError) {
        send(response, { status: err.status, json: { error: err.message } })
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
    if ((request.url ?? '').length > URL_BYTES_MAX) throw new HttpError(414, 'request URL too long')
    let url: URL
    try {
      url = new URL(request.url ?? '/', 'http://localhost')
    } catch {
      throw new HttpError(400, 'malformed request URL')
    }
    let pathMatched = false
    for (const route of routes) {
      const match = route.path.exec(url.pathname)
      if (match == null) continue
      pathMatched = true
      if (route.method !== request.method) continue
      return await route.handle(request, match.slice(1).map(decodePathParam), url)
    }
    if (pathMatched) throw new HttpError(405, `method ${request.method ?? ''} not allowed on ${url.pathname}`)
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

function decodePathParam (value: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in the request path')
  }
}

function send (response: ServerResponse, result: ApiResponse): void {
  if (response.headersSent) return
  if (result.text !== undefined) {
    response.writeHead(result.status, { 'content-type': result.contentType ?? 'text/plain; charset=utf-8' })
    response.end(result.text)
  } else {
    response.writeHead(result.status, { 'content-type': 'application/json' })
    response.end(JSON.stringify(result.json ?? {}) + '\n')
  }
}
