/**
 * The node's HTTP API. Bound to 127.0.0.1 by default; when bound to any other
 * address every request needs `Authorization: Bearer <token>`, the token
 * being generated into `<dataDir>/api.token` (mode 0600; a token file that
 * group or others can read is refused, as the identity key is).
 *
 * What a web page in the user's browser can do to it (it can make the
 * browser send requests to 127.0.0.1, and can rebind a DNS name of its own
 * to 127.0.0.1):
 *
 * Host: on a loopback bind only `localhost`, `127.x.x.x` and `[::1]` (any
 * port, any case) are served; anything else is 421. A page that rebinds its
 * own name to 127.0.0.1 still sends its own name as Host.
 *
 * Origin: a request that carries an Origin other than the API's own
 * (`http://<bound host>:<port>` or a loopback name on that port) is 403, as
 * is `Sec-Fetch-Site: cross-site` or `same-site` (another port of localhost
 * is another origin). No CORS header is ever sent, so a browser never lets
 * a page read an answer or send a preflighted request (PUT, DELETE, or a
 * POST with `Content-Type: application/json`).
 *
 * Content-Type: every JSON body must be labelled `application/json` (415
 * otherwise), which a page can only send after a preflight. So the
 * "simple" cross-origin POST (text/plain, form data) that needs no
 * preflight is refused twice over, by Origin and by Content-Type.
 *
 * Connections are capped (HTTP_CONNECTIONS_MAX; beyond it new connections
 * are closed on accept) and slow clients dropped (headers within 10 s, the
 * whole request within 30 s, idle keep-alive sockets after 5 s).
 *
 * Client sessions (`x-accord-client-id`) are namespaced by the caller's
 * credential (see `Caller.principal`): two different bearer tokens never
 * address the same session. On a loopback API without a token every local
 * process is one and the same principal ("local"): anything that can open a
 * loopback socket on this machine can use the API as fully as the CLI can.
 *
 * Every refusal (host, origin, content-type, token, connections) is counted
 * in `accord_refusals_total{protocol="http"}` and logged (rate-limited)
 * through node/refusals.ts, the peer being the remote address.
 *
 * Plain HTTP carries the token in cleartext: off loopback, put a
 * TLS-terminating reverse proxy in front (README, "HTTP API security"); the
 * node warns at start when it binds beyond loopback.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { open } from 'node:fs/promises'
import { createServer } from 'node:http'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { writeFileAtomic } from './config.ts'
import { UserError } from './errors.ts'
import { Refusals } from './refusals.ts'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'

export const API_TOKEN_FILE = 'api.token'
/** A token file holding fewer characters than this is refused (a generated one has 43). */
export const API_TOKEN_CHARS_MIN = 16
/** Request URLs longer than this are refused (no route needs more). */
const URL_BYTES_MAX = 8192
/** Connections open at once; further ones are closed as soon as they are accepted. */
export const HTTP_CONNECTIONS_MAX = 256
/** The request headers must arrive within this (slowloris). */
const HEADERS_TIMEOUT_MS = 10_000
/** The whole request (headers and body) must arrive within this. */
const REQUEST_TIMEOUT_MS = 30_000
/** An idle keep-alive connection is closed after this. */
const KEEP_ALIVE_TIMEOUT_MS = 5_000
/** How often the server looks for requests past their headers/request timeout (Node's default is 30 s). */
const CONNECTIONS_CHECK_INTERVAL_MS = 1_000
/** The refusal protocol label of the HTTP API. */
export const HTTP_REFUSAL_PROTOCOL = 'http'

export type HttpRefusalReason = 'host' | 'origin' | 'content-type' | 'token' | 'connections'

/** Who sent a request, as far as the API can tell. */
export interface Caller {
  /**
   * The credential the request was authorised by: "local" on a loopback API
   * without a token (every local process alike), else "bearer:" and a hash
   * of the Authorization header (the token itself never leaves this module).
   * One token per node today; with several, each would be its own principal.
   */
  principal: string
  /** The remote address of the connection. */
  remoteAddress: string
}

export interface Route {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE'
  /** Matched against the path; capture groups are passed to the handler. */
  path: RegExp
  handle(request: IncomingMessage, params: string[], url: URL, caller: Caller): Promise<ApiResponse>
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
  /** Set when the request is refused for a security reason: counted and logged as a refusal. */
  readonly refusal: HttpRefusalReason | undefined
  constructor (status: number, message: string, details: Record<string, unknown> = {}, refusal?: HttpRefusalReason) {
    super(message)
    this.status = status
    this.details = details
    this.refusal = refusal
  }
}

/** Whether an address to bind (or a host name) is loopback: localhost, ::1 or 127.x.x.x. */
export function isLoopbackHost (host: string): boolean {
  const h = host.toLowerCase()
  return h === 'localhost' || h === '::1' || h === '[::1]' || (isIP(h) === 4 && h.startsWith('127.'))
}

/**
 * Whether a Host header names this machine's loopback: `localhost`,
 * `127.x.x.x` or `[::1]`, with or without a port, in any case. Anything
 * else (a DNS name rebound to 127.0.0.1 above all) is not.
 */
export function isLoopbackHostHeader (value: string | undefined): boolean {
  if (value === undefined) { return false }
  const match = /^(\[[0-9a-fA-F:.]+\]|[^[\]:]+)(?::\d{1,5})?$/.exec(value)
  return match != null && isLoopbackHost(match[1])
}

/**
 * The principal of a request authorised by `authorization` (see
 * `Caller.principal`): "local" when the API takes no token.
 */
export function callerPrincipal (tokenRequired: boolean, authorization: string | undefined): string {
  if (!tokenRequired) { return 'local' }
  return `bearer:${createHash('sha256').update(authorization ?? '').digest('hex').slice(0, 32)}`
}

/**
 * Read the API token, creating it on first use. Like the identity key, a
 * token file that group or others can read or write is refused: anyone who
 * reads it can use the API.
 */
export async function loadOrCreateApiToken (dataDir: string): Promise<string> {
  const path = join(dataDir, API_TOKEN_FILE)
  let text: string
  try {
    const file = await open(path, 'r')
    try {
      const mode = (await file.stat()).mode
      if ((mode & 0o077) !== 0) {
        throw new UserError(`API token ${path} is accessible by others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); run: chmod 600 ${path}`)
      }
      text = await file.readFile('utf8')
    } finally {
      await file.close()
    }
  } catch (err) {
    if (err instanceof UserError) { throw err }
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'ENOENT') { throw new UserError(`cannot read API token ${path}: ${code ?? (err as Error).message}`) }
    const token = randomBytes(32).toString('base64url')
    await writeFileAtomic(path, token + '\n', 0o600)
    return token
  }
  const token = text.trim()
  if (token.length < API_TOKEN_CHARS_MIN || /\s/.test(token)) {
    throw new UserError(`API token ${path} must be one line of at least ${API_TOKEN_CHARS_MIN} characters; delete it to have a new one generated`)
  }
  return token
}

export interface HttpApi {
  url: string
  close(): Promise<void>
}

export interface HttpApiOptions {
  host: string
  port: number
  /** The bearer token every request must carry, or null (allowed on a loopback bind only). */
  token: string | null
  routes: Route[]
  log: Logger
  /** Where refusals are counted and logged (one is made from `log` when absent). */
  refusals?: Refusals
  /** Connections open at once (default HTTP_CONNECTIONS_MAX). */
  connectionsMax?: number
}

export interface ApiHandlerOptions {
  routes: Route[]
  /** The bearer token every request must carry, or null. */
  token: string | null
  /**
   * Serve only requests addressed (Host header) to a loopback name: what
   * keeps a web page that rebinds its own DNS name to 127.0.0.1 out. Turn
   * it on when the server listens on loopback.
   */
  loopbackHostsOnly: boolean
  /** Whether a request's Origin is the API's own; a browser request from any other origin is refused. */
  isOwnOrigin(origin: string): boolean
  log: Logger
  /** Where refusals are counted and logged (one is made from `log` when absent). */
  refusals?: Refusals
}

/**
 * The API's request handler, to mount on a server of one's own
 * (`createServer(createApiHandler({ routes: raftRoutes(raft), ... }))`): it
 * refuses what a web page makes a browser send (another Host, another
 * Origin), checks the token, and routes. The server's own limits
 * (connections, header and request timeouts) are the caller's to set, as
 * startHttpApi sets them.
 */
export function createApiHandler (options: ApiHandlerOptions): (request: IncomingMessage, response: ServerResponse) => void {
  const { routes, log, token } = options
  const refusals = options.refusals ?? new Refusals({ log })
  const expected = token != null ? Buffer.from(`Bearer ${token}`) : null

  /** Refuse what a web page makes a browser send: another Host (DNS rebinding), another Origin. */
  function refuseBrowserAttacks (request: IncomingMessage): void {
    const host = request.headers.host
    if (options.loopbackHostsOnly && !isLoopbackHostHeader(host)) {
      throw new HttpError(421, `Host "${clip(host ?? '')}" is not a loopback name: this API only answers requests addressed to localhost, 127.x.x.x or [::1]`, {}, 'host')
    }
    const origin = request.headers.origin
    const fetchSite = request.headers['sec-fetch-site']
    if ((origin !== undefined && !options.isOwnOrigin(origin)) || fetchSite === 'cross-site' || fetchSite === 'same-site') {
      throw new HttpError(403, 'cross-origin request refused', {}, 'origin')
    }
  }

  async function handle (request: IncomingMessage): Promise<ApiResponse> {
    refuseBrowserAttacks(request)
    if (expected != null) {
      const given = Buffer.from(request.headers.authorization ?? '')
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new HttpError(401, 'missing or wrong bearer token', {}, 'token')
      }
    }
    const caller: Caller = { principal: callerPrincipal(expected != null, request.headers.authorization), remoteAddress: remoteAddress(request) }
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
      return route.handle(request, match.slice(1).map(decodePathParam), url, caller)
    }
    if (pathMatched) { throw new HttpError(405, `method ${request.method ?? ''} not allowed on ${url.pathname}`) }
    throw new HttpError(404, `no such endpoint: ${url.pathname}`)
  }

  return (request, response) => {
    handle(request).then(result => { send(response, result) }, (err: unknown) => {
      if (err instanceof HttpError) {
        if (err.refusal !== undefined) {
          refusals.refuse(remoteAddress(request), HTTP_REFUSAL_PROTOCOL, err.refusal, { status: err.status, method: request.method, detail: err.message })
        }
        send(response, { status: err.status, json: { error: err.message, ...err.details } })
      } else {
        log.error({ err }, 'http handler failed')
        send(response, { status: 500, json: { error: 'internal error' } })
      }
    })
  }
}

export async function startHttpApi (options: HttpApiOptions): Promise<HttpApi> {
  const { routes, log, token } = options
  const loopback = isLoopbackHost(options.host)
  if (!loopback && token == null) { throw new Error(`an HTTP API bound to ${options.host} needs a token`) }
  const refusals = options.refusals ?? new Refusals({ log })
  /** Origins the API accepts as its own, filled in once the port is known. */
  let ownOrigin: (origin: string) => boolean = () => false
  const handler = createApiHandler({ routes, token, loopbackHostsOnly: loopback, isOwnOrigin: (origin) => ownOrigin(origin), log, refusals })

  const server: Server = createServer({ connectionsCheckingInterval: CONNECTIONS_CHECK_INTERVAL_MS, requireHostHeader: true }, handler)
  server.maxConnections = options.connectionsMax ?? HTTP_CONNECTIONS_MAX
  server.headersTimeout = HEADERS_TIMEOUT_MS
  server.requestTimeout = REQUEST_TIMEOUT_MS
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
  server.on('drop', (data) => {
    refusals.refuse(data?.remoteAddress ?? 'unknown', HTTP_REFUSAL_PROTOCOL, 'connections', { connectionsMax: server.maxConnections })
  })

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
  ownOrigin = ownOriginCheck(host, address.port)
  if (!loopback) {
    log.warn({ host: options.host, port: address.port }, 'the HTTP API is bound beyond loopback without TLS: the bearer token and all data cross the network in cleartext; put a TLS-terminating reverse proxy in front (README, "HTTP API security")')
  }
  return {
    url: `http://${host}:${address.port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }
}

/**
 * The API's own origins: `http://<bound host>:<port>` and the loopback
 * names on that port. A browser sends exactly this serialisation (lower
 * case, no path); "null" and anything else are other origins.
 */
export function ownOriginCheck (boundHost: string, port: number): (origin: string) => boolean {
  const bound = boundHost.toLowerCase()
  return (origin) => {
    let url: URL
    try {
      url = new URL(origin)
    } catch {
      return false
    }
    if (url.protocol !== 'http:' || url.origin !== origin.toLowerCase()) { return false }
    if ((url.port === '' ? 80 : Number(url.port)) !== port) { return false }
    return url.hostname === bound || isLoopbackHost(url.hostname)
  }
}

function remoteAddress (request: IncomingMessage): string {
  return request.socket.remoteAddress ?? 'unknown'
}

/** Remote input quoted in an error or a log line: at most 100 characters. */
function clip (text: string): string {
  return text.length > 100 ? `${text.slice(0, 100)}...` : text
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

/**
 * Whether a Content-Type header is `application/json`, parameters such as
 * `; charset=utf-8` allowed.
 */
export function isJsonContentType (value: string | undefined): boolean {
  return value !== undefined && value.split(';')[0].trim().toLowerCase() === 'application/json'
}

/**
 * Parse a JSON object body and refuse fields other than `allowed`. The body
 * must be labelled `Content-Type: application/json` (415 otherwise): a
 * browser sends that type cross-origin only after a CORS preflight, which
 * this API never grants, so a web page cannot submit JSON here as a
 * "simple" text/plain or form request.
 */
export async function readJsonBody (request: IncomingMessage, bytesMax: number, allowed: readonly string[]): Promise<Record<string, unknown>> {
  if (!isJsonContentType(request.headers['content-type'])) {
    throw new HttpError(415, `Content-Type must be application/json, got ${request.headers['content-type'] === undefined ? 'none' : `"${clip(request.headers['content-type'])}"`}`, {}, 'content-type')
  }
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

/** A value in a JSON body: UTF-8 text when it is valid UTF-8, else base64. */
export function encodeValue (value: Uint8Array): { value: string, encoding: 'utf8' | 'base64' } {
  try {
    return { value: new TextDecoder('utf-8', { fatal: true }).decode(value), encoding: 'utf8' }
  } catch {
    return { value: Buffer.from(value).toString('base64'), encoding: 'base64' }
  }
}
