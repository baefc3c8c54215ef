/**
 * What a web page (and a second API user) can no longer do to a node's HTTP
 * API: cross-origin and DNS-rebinding requests, JSON without its content
 * type, too many connections, someone else's client session; and the
 * token file and atomic writes on disk. Requests go through raw node:http,
 * since fetch forbids setting Host and Origin.
 */
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { connect } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { expect } from 'aegir/chai'
import { pino } from 'pino'
import { writeFileAtomic } from '../../node/config.ts'
import { UserError } from '../../node/errors.ts'
import {
  API_TOKEN_FILE, callerPrincipal, HTTP_CONNECTIONS_MAX, isJsonContentType, isLoopbackHostHeader, loadOrCreateApiToken, startHttpApi
} from '../../node/http-api.ts'
import { createAccordNode } from '../../node/index.ts'
import { CALLER_SESSION_ID_BYTES, callerSessionId, raftRoutes } from '../../node/raft/routes.ts'
import { silentLogger, TestCluster, waitFor } from '../lib/nodes.ts'
import type { AccordNode } from '../../node/index.ts'
import type { IncomingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'

interface RawResponse { status: number, headers: IncomingHttpHeaders, json: any }

/** One request over a fresh connection, with exactly the headers given (Host and Origin included). */
async function raw (apiUrl: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<RawResponse> {
  const { hostname, port } = new URL(apiUrl)
  const all = body === undefined ? headers : { 'content-length': String(Buffer.byteLength(body)), ...headers }
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, method, path, headers: all, agent: false }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => {
        let json: unknown
        try { json = JSON.parse(text) } catch { json = { text } }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function refusalCount (node: AccordNode, reason: string): Promise<number> {
  const metric = await node.metrics.getSingleMetric('accord_refusals_total')?.get()
  return metric?.values.find(v => v.labels.protocol === 'http' && v.labels.reason === reason)?.value ?? 0
}

async function raftLeader (cluster: TestCluster, config: Parameters<TestCluster['add']>[0]): Promise<AccordNode> {
  const node = await cluster.add({ raftTickMs: 50, ...config })
  await waitFor(() => node.raft?.summary().role === 'leader', 'the node to lead its own Raft group')
  return node
}

describe('HTTP API hardening', function () {
  this.timeout(60_000)
  let cluster: TestCluster

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => { await cluster.stop() })

  describe('on loopback', () => {
    let node: AccordNode
    let api: string
    let host: string

    beforeEach(async () => {
      node = await raftLeader(cluster, { api: '127.0.0.1:0' })
      api = node.apiUrl ?? ''
      host = new URL(api).host
    })

    it('refuses a cross-origin text/plain CAS (no preflight in a browser) and writes nothing', async () => {
      const body = JSON.stringify({ expected: null, value: 'pwned' })
      const csrf = await raw(api, 'POST', '/v1/kv/csrf/cas', { host, origin: 'http://evil.example', 'content-type': 'text/plain' }, body)
      expect(csrf.status).to.equal(403)
      expect(csrf.json).to.deep.equal({ error: 'cross-origin request refused' })
      expect(csrf.headers['access-control-allow-origin']).to.equal(undefined)
      // a browser that sent no Origin: refused for its content type
      const noOrigin = await raw(api, 'POST', '/v1/kv/csrf/cas', { host, 'content-type': 'text/plain' }, body)
      expect(noOrigin.status).to.equal(415)
      expect(noOrigin.json.error).to.match(/^Content-Type must be application\/json, got "text\/plain"/)
      // a preflight gets no CORS grant either
      const preflight = await raw(api, 'OPTIONS', '/v1/kv/csrf', { host, origin: 'http://evil.example', 'access-control-request-method': 'PUT' })
      expect(preflight.status).to.equal(403)
      expect(preflight.headers['access-control-allow-origin']).to.equal(undefined)
      // nothing was written
      expect((await raw(api, 'GET', '/v1/kv/csrf', { host })).status).to.equal(404)
      expect(await refusalCount(node, 'origin')).to.equal(2)
      expect(await refusalCount(node, 'content-type')).to.equal(1)
    })

    it('refuses other origins on every method, and Sec-Fetch-Site cross-site or same-site', async () => {
      for (const origin of ['http://evil.example', 'null', `http://localhost:${Number(new URL(api).port) + 1}`, `https://127.0.0.1:${new URL(api).port}`, `${api}/path`]) {
        const put = await raw(api, 'PUT', '/v1/kv/x', { host, origin }, 'v')
        expect(put.status, origin).to.equal(403)
      }
      expect((await raw(api, 'GET', '/v1/status', { host, origin: 'http://evil.example' })).status).to.equal(403)
      expect((await raw(api, 'GET', '/v1/status', { host, 'sec-fetch-site': 'cross-site' })).status).to.equal(403)
      expect((await raw(api, 'GET', '/v1/status', { host, 'sec-fetch-site': 'same-site' })).status).to.equal(403)
      expect((await raw(api, 'GET', '/v1/status', { host, 'sec-fetch-site': 'same-origin' })).status).to.equal(200)
      expect((await raw(api, 'GET', '/v1/status', { host, 'sec-fetch-site': 'none' })).status).to.equal(200)
      expect((await raw(api, 'GET', '/v1/kv/x', { host })).status).to.equal(404)
    })

    it('refuses a DNS-rebinding Host, and serves loopback names with or without the port', async () => {
      const port = new URL(api).port
      for (const bad of [`rebind.evil.example:${port}`, 'rebind.evil.example', `localhost.evil.example:${port}`, `127.0.0.1.evil.example:${port}`, `[::2]:${port}`]) {
        const response = await raw(api, 'GET', '/v1/status', { host: bad })
        expect(response.status, bad).to.equal(421)
        expect(response.json.error).to.match(/is not a loopback name: this API only answers requests addressed to localhost, 127\.x\.x\.x or \[::1\]/)
      }
      // no Host at all (HTTP/1.0): refused too
      const noHost = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1', () => { socket.end('GET /v1/status HTTP/1.0\r\n\r\n') })
        let text = ''
        socket.on('data', (chunk: Buffer) => { text += chunk.toString() })
        socket.on('end', () => { resolve(text) })
        socket.on('error', reject)
      })
      expect(noHost).to.match(/^HTTP\/1\.1 421 /)
      const rebound = await raw(api, 'POST', '/v1/kv/rebind/cas', { host: `rebind.evil.example:${port}`, 'content-type': 'application/json' }, JSON.stringify({ expected: null, value: 'v' }))
      expect(rebound.status).to.equal(421)
      expect((await raw(api, 'GET', '/v1/kv/rebind', { host })).status).to.equal(404)
      for (const good of [`127.0.0.1:${port}`, '127.0.0.1', `LocalHost:${port}`, 'localhost', `127.9.8.7:${port}`, `[::1]:${port}`, '[::1]']) {
        expect((await raw(api, 'GET', '/v1/status', { host: good })).status, good).to.equal(200)
      }
      expect(await refusalCount(node, 'host')).to.equal(7)
    })

    it('serves a same-origin JSON CAS, and needs application/json on every JSON body', async () => {
      const origin = `http://127.0.0.1:${new URL(api).port}`
      const cas = await raw(api, 'POST', '/v1/kv/k/cas', { host, origin, 'content-type': 'application/json; charset=utf-8' }, JSON.stringify({ expected: null, value: 'v1' }))
      expect(cas.status).to.equal(200)
      const viaLocalhost = await raw(api, 'POST', '/v1/kv/k/cas', { host: `localhost:${new URL(api).port}`, origin: `http://localhost:${new URL(api).port}`, 'content-type': 'Application/JSON' }, JSON.stringify({ expected: 'v1', value: 'v2' }))
      expect(viaLocalhost.status).to.equal(200)
      expect((await raw(api, 'GET', '/v1/kv/k', { host })).json.value).to.equal('v2')

      for (const [path, body] of [['/v1/kv/k/cas', { expected: 'v2', value: 'v3' }], ['/v1/raft/members', { action: 'remove', node: node.libp2p.peerId.toString() }], ['/v1/raft/transfer-leader', { to: node.libp2p.peerId.toString() }]] as const) {
        for (const contentType of [undefined, 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx']) {
          const response = await raw(api, 'POST', path, { host, ...(contentType === undefined ? {} : { 'content-type': contentType }) }, JSON.stringify(body))
          expect(response.status, `${path} ${String(contentType)}`).to.equal(415)
          expect(response.json.error).to.match(/^Content-Type must be application\/json, got /)
        }
      }
      expect((await raw(api, 'GET', '/v1/kv/k', { host })).json.value).to.equal('v2')
      expect(node.raft?.summary().voters).to.have.length(1)
      // PUT takes the raw value whatever its type (browsers preflight PUT)
      expect((await raw(api, 'PUT', '/v1/kv/raw', { host, 'content-type': 'text/plain' }, 'raw value')).status).to.equal(200)
      expect((await raw(api, 'GET', '/v1/kv/raw', { host })).json.value).to.equal('raw value')
    })

    it(`closes connections beyond ${HTTP_CONNECTIONS_MAX}, and serves again once they close`, async () => {
      const { port } = new URL(api)
      const open = async (): Promise<Socket> => new Promise((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1', () => { resolve(socket) })
        socket.on('error', reject)
      })
      const sockets: Socket[] = []
      try {
        for (let i = 0; i < HTTP_CONNECTIONS_MAX; i++) { sockets.push(await open()) }
        const extra = await open()
        sockets.push(extra)
        let received = ''
        extra.on('data', (chunk: Buffer) => { received += chunk.toString() })
        extra.on('error', () => {})
        const closed = new Promise<void>(resolve => { extra.once('close', () => { resolve() }) })
        extra.write(`GET /v1/status HTTP/1.1\r\nHost: ${new URL(api).host}\r\n\r\n`, () => {})
        await closed
        expect(received).to.equal('')
        expect(await refusalCount(node, 'connections')).to.be.at.least(1)
      } finally {
        for (const socket of sockets) { socket.destroy() }
      }
      await waitFor(async () => (await fetch(`${api}/v1/status`).then(r => r.status, () => 0)) === 200, 'the API to serve again')
    })
  })

  describe('beyond loopback', () => {
    it('warns at start that the API speaks plain HTTP, and keeps the token check (Host is not checked)', async () => {
      const lines: string[] = []
      const logger = pino({ level: 'warn' }, new Writable({ write (chunk, _encoding, done) { lines.push(String(chunk)); done() } }))
      const dataDir = await cluster.newDataDir()
      const node = await createAccordNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], api: '0.0.0.0:0', raft: false }, { logger })
      cluster.nodes.push(node)
      const warning = lines.map(l => JSON.parse(l)).find(l => /without TLS/.test(l.msg))
      expect(warning?.msg).to.match(/bound beyond loopback without TLS.*reverse proxy/)

      const url = `http://127.0.0.1:${new URL(node.apiUrl ?? '').port}`
      const token = (await readFile(join(dataDir, API_TOKEN_FILE), 'utf8')).trim()
      expect((await raw(url, 'GET', '/v1/status', { host: 'accord.example:7070' })).status).to.equal(401)
      expect((await raw(url, 'GET', '/v1/status', { host: 'accord.example:7070', authorization: `Bearer ${token}` })).status).to.equal(200)
      expect((await raw(url, 'GET', '/v1/status', { authorization: `Bearer ${token}`, origin: 'http://evil.example' })).status).to.equal(403)
      expect(await refusalCount(node, 'token')).to.equal(1)
      expect(await refusalCount(node, 'origin')).to.equal(1)
    })

    it('keeps the client sessions of two tokens apart, even with the same x-accord-client-id', async () => {
      const node = await raftLeader(cluster, { api: '0.0.0.0:0' })
      const tokenA = (await readFile(join(node.config.dataDir, API_TOKEN_FILE), 'utf8')).trim()
      // a second API over the same KV, with a token of its own: two tokens, one store
      const tokenB = 'b'.repeat(43)
      const second = await startHttpApi({ host: '0.0.0.0', port: 0, token: tokenB, routes: raftRoutes(node.raft as NonNullable<AccordNode['raft']>), log: silentLogger })
      try {
        const apiA = `http://127.0.0.1:${new URL(node.apiUrl ?? '').port}`
        const apiB = `http://127.0.0.1:${new URL(second.url).port}`
        const put = async (url: string, token: string, sequence: number, value: string): Promise<RawResponse> =>
          raw(url, 'PUT', '/v1/kv/shared', { authorization: `Bearer ${token}`, 'x-accord-client-id': 'same-id', 'x-accord-sequence': String(sequence) }, value)

        expect((await put(apiA, tokenA, 1, 'a1')).status).to.equal(200)
        expect((await put(apiA, tokenA, 2, 'a2')).status).to.equal(200)
        // B cannot jump A's session ahead: its "same-id" is a session of its own, unknown so far
        const jump = await put(apiB, tokenB, 100, 'b100')
        expect(jump.status).to.equal(409)
        expect(jump.json.error).to.match(/^session-expired: no session for client "same-id"/)
        // so A's next sequence still applies ...
        const a3 = await put(apiA, tokenA, 3, 'a3')
        expect(a3.status).to.equal(200)
        // ... and B's sequence 1 is not refused as one of A's stale ones
        const b1 = await put(apiB, tokenB, 1, 'b1')
        expect(b1.status).to.equal(200)
        // retries apply at most once, each in its own session
        expect((await put(apiA, tokenA, 3, 'a3 again')).json.index).to.equal(a3.json.index)
        expect((await put(apiB, tokenB, 1, 'b1 again')).json.index).to.equal(b1.json.index)
        const value = await raw(apiA, 'GET', '/v1/kv/shared', { authorization: `Bearer ${tokenA}` })
        expect(value.json.value).to.equal('b1')
      } finally {
        await second.close()
      }
    })
  })

  describe('session namespaces', () => {
    it('derive a different KV client id per credential, the same on every node, within the KV limit', () => {
      const a = callerPrincipal(true, 'Bearer token-a-0123456789abcdef')
      const b = callerPrincipal(true, 'Bearer token-b-0123456789abcdef')
      expect(a).to.not.equal(b)
      expect(callerPrincipal(false, 'Bearer anything')).to.equal('local')
      expect(callerPrincipal(false, undefined)).to.equal('local')
      expect(a).to.not.include('token-a')
      expect(callerSessionId(a, 'client')).to.not.equal(callerSessionId(b, 'client'))
      expect(callerSessionId(a, 'client')).to.equal(callerSessionId(a, 'client'))
      expect(callerSessionId(a, 'client')).to.not.equal(callerSessionId(a, 'client2'))
      expect(callerSessionId('local', 'x')).to.not.equal(callerSessionId(a, 'x'))
      const longest = callerSessionId(a, 'x'.repeat(128))
      expect(Buffer.byteLength(longest)).to.equal(CALLER_SESSION_ID_BYTES).and.to.be.at.most(128)
      // never the shape of a pooled session (<hex>-<n>)
      expect(longest).to.match(/^c1:[A-Za-z0-9_-]{43}$/)
    })

    it('recognise loopback Host headers and JSON content types', () => {
      for (const good of ['localhost', 'LOCALHOST:7070', '127.0.0.1', '127.255.0.1:1', '[::1]', '[::1]:7070']) { expect(isLoopbackHostHeader(good), good).to.equal(true) }
      for (const bad of [undefined, '', 'evil.example', 'localhost.evil.example', '127.0.0.1.nip.io', '128.0.0.1', '[::2]', '::1', 'localhost:', 'localhost:7070:1', '[::1]x', '0.0.0.0']) {
        expect(isLoopbackHostHeader(bad), String(bad)).to.equal(false)
      }
      for (const good of ['application/json', 'application/json; charset=utf-8', 'Application/JSON;charset=UTF-8']) { expect(isJsonContentType(good), good).to.equal(true) }
      for (const bad of [undefined, '', 'text/plain', 'application/json-patch+json', 'text/json']) { expect(isJsonContentType(bad), String(bad)).to.equal(false) }
    })
  })

  describe('files', () => {
    it('refuses an api.token that group or others can read, with a one-line error naming the fix', async () => {
      const dataDir = await cluster.newDataDir()
      const path = join(dataDir, API_TOKEN_FILE)
      await writeFile(path, 'x'.repeat(43) + '\n')
      await chmod(path, 0o644)
      const err = await loadOrCreateApiToken(dataDir).then(() => null, (e: Error) => e)
      expect(err).to.be.an.instanceOf(UserError)
      expect(err?.message).to.equal(`API token ${path} is accessible by others (mode 0644); run: chmod 600 ${path}`)
      // the node refuses to start with it
      const start = await createAccordNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], api: '0.0.0.0:0', raft: false }, { logger: silentLogger }).then(
        async n => { await n.stop(); return null }, (e: Error) => e)
      expect(start).to.be.an.instanceOf(UserError)
      expect(start?.message).to.match(/accessible by others \(mode 0644\); run: chmod 600 /)
      expect(start?.message).to.not.include('\n')
      await chmod(path, 0o600)
      expect(await loadOrCreateApiToken(dataDir)).to.equal('x'.repeat(43))
      // a too short (e.g. emptied) token is refused too
      await writeFile(path, '\n')
      expect((await loadOrCreateApiToken(dataDir).then(() => null, (e: Error) => e))?.message).to.match(/must be one line of at least 16 characters; delete it/)
    })

    it('creates api.token with mode 0600', async () => {
      const dataDir = await cluster.newDataDir()
      const token = await loadOrCreateApiToken(dataDir)
      expect(token).to.match(/^[A-Za-z0-9_-]{43}$/)
      expect((await stat(join(dataDir, API_TOKEN_FILE))).mode & 0o777).to.equal(0o600)
      expect(await loadOrCreateApiToken(dataDir)).to.equal(token)
    })

    it('writeFileAtomic writes mode 0600 through a temporary file of its own, and leaves no temporary file', async () => {
      const dir = await cluster.newDataDir()
      const path = join(dir, 'secret')
      // a stale fixed-name temporary file, readable by all, must not lend its mode (or inode)
      await writeFile(`${path}.tmp`, 'stale')
      await chmod(`${path}.tmp`, 0o644)
      await writeFile(path, 'old')
      await chmod(path, 0o644)
      await writeFileAtomic(path, 'new', 0o600)
      expect(await readFile(path, 'utf8')).to.equal('new')
      expect((await stat(path)).mode & 0o777).to.equal(0o600)
      expect(await readFile(`${path}.tmp`, 'utf8')).to.equal('stale')
      expect((await readdir(dir)).sort()).to.deep.equal(['secret', 'secret.tmp'])

      // a failed write (the target is a directory: rename fails) removes its temporary file
      const occupied = join(dir, 'occupied')
      await mkdir(occupied)
      await writeFile(join(occupied, 'inside'), 'x')
      const err = await writeFileAtomic(occupied, 'data').then(() => null, (e: NodeJS.ErrnoException) => e)
      expect(err?.code).to.be.oneOf(['EISDIR', 'ENOTEMPTY', 'ENOTDIR', 'EEXIST'])
      expect((await readdir(dir)).sort()).to.deep.equal(['occupied', 'secret', 'secret.tmp'])
    })
  })
})
