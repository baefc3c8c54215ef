import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { API_TOKEN_FILE } from '../../node/http-api.ts'
import { addressOf, TestCluster, waitFor } from '../lib/nodes.ts'

describe('HTTP API', function () {
  this.timeout(60_000)
  let cluster: TestCluster

  beforeEach(() => { cluster = new TestCluster() })
  afterEach(async () => { await cluster.stop() })

  it('GET /v1/status reports identity, addresses, peers with protocols and encryption, DHT size, pid, uptime and version', async () => {
    const a = await cluster.add({ api: '127.0.0.1:0' })
    const b = await cluster.add({ bootstrap: [addressOf(a)] })
    await waitFor(async () => (await a.status()).members.length === 1, 'a to see b')

    const response = await fetch(`${a.apiUrl}/v1/status`)
    expect(response.status).to.equal(200)
    expect(response.headers.get('content-type')).to.equal('application/json')
    const status = await response.json()
    expect(status.peerId).to.equal(a.libp2p.peerId.toString())
    expect(status.version).to.match(/^\d+\.\d+\.\d+/)
    expect(status.addresses[0]).to.match(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//)
    expect(status.uptimeMs).to.be.a('number')
    expect(status.pid).to.equal(process.pid)
    expect(status.dhtRoutingTableSize).to.equal(1)
    const peer = status.peers.find((p: { peerId: string }) => p.peerId === b.libp2p.peerId.toString())
    expect(peer.encryption).to.deep.equal(['/noise'])
    expect(peer.protocols).to.include('/accord/kad/1.0.0')
    expect(peer.member).to.equal(true)
  })

  it('GET /metrics serves Prometheus text with libp2p and process metrics', async () => {
    const a = await cluster.add({ api: '127.0.0.1:0' })
    const response = await fetch(`${a.apiUrl}/metrics`)
    expect(response.status).to.equal(200)
    expect(response.headers.get('content-type')).to.match(/^text\/plain/)
    const text = await response.text()
    expect(text).to.match(/^# HELP libp2p_/m)
    expect(text).to.match(/^process_cpu_user_seconds_total /m)
    expect(text).to.match(/^nodejs_heap_size_used_bytes /m)
  })

  it('answers malformed requests with a 4xx JSON error', async () => {
    const a = await cluster.add({ api: '127.0.0.1:0' })
    const notFound = await fetch(`${a.apiUrl}/v1/nope`)
    expect(notFound.status).to.equal(404)
    expect(await notFound.json()).to.deep.equal({ error: 'no such endpoint: /v1/nope' })
    const wrongMethod = await fetch(`${a.apiUrl}/v1/status`, { method: 'DELETE' })
    expect(wrongMethod.status).to.equal(405)
    expect((await wrongMethod.json()).error).to.match(/method DELETE not allowed/)
    const tooLong = await fetch(`${a.apiUrl}/v1/${'x'.repeat(9000)}`)
    expect(tooLong.status).to.equal(414)
    const badEscape = await fetch(`${a.apiUrl}/v1/%E0%A4%A`)
    expect(badEscape.status).to.equal(404)
  })

  it('requires the generated bearer token when bound beyond loopback', async () => {
    const a = await cluster.add({ api: '0.0.0.0:0' })
    const port = new URL(a.apiUrl ?? '').port
    const url = `http://127.0.0.1:${port}/v1/status`
    const token = (await readFile(join(a.config.dataDir, API_TOKEN_FILE), 'utf8')).trim()
    expect(token).to.have.length.greaterThan(30)

    const anonymous = await fetch(url)
    expect(anonymous.status).to.equal(401)
    expect((await anonymous.json()).error).to.match(/bearer token/)
    const wrong = await fetch(url, { headers: { authorization: 'Bearer nope' } })
    expect(wrong.status).to.equal(401)
    const right = await fetch(url, { headers: { authorization: `Bearer ${token}` } })
    expect(right.status).to.equal(200)
  })

  it('needs no token on loopback', async () => {
    const a = await cluster.add({ api: '127.0.0.1:0' })
    expect((await fetch(`${a.apiUrl}/v1/status`)).status).to.equal(200)
  })
})
