/**
 * The approve signing policy over real libp2p and HTTP on loopback: three
 * nodes started with keysSignPolicy 'approve' make a 2-of-3 key; a node's
 * request to sign fails until another member's operator approved that very
 * message (POST /v1/keys/approvals), then succeeds.
 */
import { expect } from 'aegir/chai'
import { messageDigest } from '../../node/dkg/approvals.ts'
import { addressOf, TestCluster } from '../lib/nodes.ts'
import { waitFor } from '../lib/wait.ts'
import type { AccordNode } from '../../node/index.ts'

const DEADLINE_MS = 30_000

async function call (node: AccordNode, path: string, body: unknown): Promise<{ status: number, json: any }> {
  const response = await fetch(`${node.apiUrl ?? ''}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
  return { status: response.status, json: await response.json() }
}

describe('dkg signing policy "approve" (real libp2p and HTTP on loopback)', function () {
  this.timeout(120_000)
  const cluster = new TestCluster()
  after(async () => { await cluster.stop() })

  it('a member gives its partial only to a message its operator approved', async () => {
    const config = { api: '127.0.0.1:0', raft: false, keysSignPolicy: 'approve' as const }
    const options = { dkgSettings: { keyWaitMs: 3_000, signTimeoutMs: 2_000 } }
    const a = await cluster.add(config, options)
    const b = await cluster.add({ ...config, bootstrap: [addressOf(a)] }, options)
    const c = await cluster.add({ ...config, bootstrap: [addressOf(a)] }, options)
    const nodes = [a, b, c]
    await waitFor(() => nodes.every(n => n.admission.admittedPeers().length >= 2), 'the three to admit each other', DEADLINE_MS)
    const session = await a.dkg.run({ members: nodes.map(n => n.libp2p.peerId.toString()), threshold: 2 })
    expect(session.state, session.reason).to.equal('done')
    await waitFor(() => nodes.every(n => n.dkg.summary()?.groupKey === session.groupKey), 'every node to store the key', DEADLINE_MS)
    expect((await (await fetch(`${a.apiUrl ?? ''}/v1/keys`)).json()).signPolicy).to.equal('approve')

    const refused = await call(a, '/v1/keys/sign', { message: 'pay 10 to carol' })
    expect(refused.status).to.equal(503)
    expect(refused.json.error).to.match(/1 valid partial signatures, 2 needed/)
    await waitFor(async () => await b.admission.refusals.count('/accord/dkg/1.1.0', 'not-approved') >= 1, 'b to count its refusal', DEADLINE_MS)

    const approved = await call(b, '/v1/keys/approvals', { message: 'pay 10 to carol', ttlSeconds: 600 })
    expect(approved.status).to.equal(200)
    expect(approved.json.digest).to.equal(messageDigest(new TextEncoder().encode('pay 10 to carol')))
    const signed = await call(a, '/v1/keys/sign', { message: 'pay 10 to carol' })
    expect(signed.status, JSON.stringify(signed.json)).to.equal(200)
    expect(signed.json.signers).to.have.length(2)
    // b approved that message, not another
    expect((await call(a, '/v1/keys/sign', { message: 'pay 1000 to carol' })).status).to.equal(503)
    expect((await call(b, '/v1/keys/approvals', { message: 'x', ttlSeconds: 0 })).status).to.equal(400)
  })
})
