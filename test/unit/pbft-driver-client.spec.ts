import { expect } from 'aegir/chai'
import { PbftClientDriver, PbftClientError } from '../../node/pbft/client-driver.ts'
import { encodeOperation, encodeResult } from '../../node/pbft/operations.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { SimKeyring } from '../sim/pbft/crypto.ts'
import { runUntilAsync, simRuntime } from '../sim/runtime.ts'
import { Scheduler } from '../sim/scheduler.ts'
import type { ClientRequest, NodeId, PbftMessage } from '../../protocols/pbft/index.ts'

const REPLICAS = ['r0', 'r1', 'r2', 'r3']
const operation = encodeOperation({ type: 'get', key: 'k' })

function setup (outstandingMax = 2): { client: PbftClientDriver, sent: Array<{ to: NodeId, message: PbftMessage }>, scheduler: Scheduler } {
  const scheduler = new Scheduler()
  const sent: Array<{ to: NodeId, message: PbftMessage }> = []
  const client = new PbftClientDriver({
    id: 'c1',
    replicas: REPLICAS,
    crypto: new SimKeyring(1).cryptoFor('c1'),
    send: (to, message) => { sent.push({ to, message }) },
    runtime: simRuntime(scheduler, createRng(1)),
    tickIntervalMs: 10,
    retransmitMs: 50,
    outstandingMax
  })
  client.start()
  return { client, sent, scheduler }
}

async function rejection (promise: Promise<unknown>): Promise<PbftClientError> {
  try {
    await promise
  } catch (err) {
    if (err instanceof PbftClientError) { return err }
    throw err
  }
  throw new Error('expected a rejection')
}

describe('pbft client driver', () => {
  it('resolves an ordered request on f+1 matching replies, and sends it to the primary first, then to all on retransmission', async () => {
    const { client, sent, scheduler } = setup()
    const result = client.submit(operation)
    expect(sent.map(s => s.to)).to.deep.equal(['r0'])
    await runUntilAsync(scheduler, 60)
    expect(new Set(sent.map(s => s.to))).to.deep.equal(new Set(REPLICAS))
    const { timestamp } = sent[0].message as ClientRequest
    const bytes = encodeResult({ type: 'null' })
    for (const replica of ['r1', 'r2']) {
      client.receive({ type: 'reply', view: 0, replica, client: 'c1', timestamp, readOnly: false, result: bytes }, replica)
    }
    expect(await result).to.deep.equal(bytes)
    expect(client.outstanding).to.equal(0)
  })

  it('sends an operation alone at once; under load, signs the operations of one turn together, in one bundle', async () => {
    const { client, sent, scheduler } = setup(8)
    void client.submit(operation)
    expect(sent).to.have.length(1)
    expect((sent[0].message as ClientRequest).bundle).to.equal(undefined)
    for (let i = 0; i < 3; i++) { void client.submit(operation) }
    expect(sent).to.have.length(1)
    await runUntilAsync(scheduler, 1)
    const later = sent.slice(1).map(s => s.message as ClientRequest)
    expect(later.map(r => r.timestamp)).to.deep.equal([2, 3, 4])
    expect(later.every(r => r.bundle?.byteLength === 3 * 32 && r.signature === later[0].signature)).to.equal(true)
  })

  it('refuses operations beyond outstandingMax with busy', async () => {
    const { client } = setup(2)
    void client.submit(operation)
    void client.submit(operation)
    const busy = await rejection(client.submit(operation))
    expect(busy.code).to.equal('busy')
  })

  it('an abort ends the wait with aborted; stop fails every operation still waiting', async () => {
    const { client } = setup(4)
    const controller = new AbortController()
    const aborted = rejection(client.submit(operation, { signal: controller.signal }))
    const waiting = rejection(client.submit(operation))
    controller.abort()
    expect((await aborted).code).to.equal('aborted')
    client.stop()
    expect((await waiting).code).to.equal('stopped')
    expect((await rejection(client.submit(operation))).code).to.equal('stopped')
  })
})
