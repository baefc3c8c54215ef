import { expect } from 'aegir/chai'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { Refusals } from '../../node/refusals.ts'

describe('Refusals', () => {
  let lines: Array<{ peer: string, protocol: string, reason: string }>
  let nowMs: number
  const make = (keysMax = 4096): { refusals: Refusals, registry: Registry } => {
    const registry = new Registry()
    const log = pino({ level: 'warn' }, { write (line: string) { lines.push(JSON.parse(line)) } })
    return { refusals: new Refusals({ log, registry, logIntervalMs: 1000, logKeysMax: keysMax, now: () => nowMs }), registry }
  }
  beforeEach(() => { lines = []; nowMs = 0 })

  it('counts every refusal but logs a (peer, protocol, reason) at most once per interval', async () => {
    const { refusals, registry } = make()
    for (let i = 0; i < 100; i++) { refusals.refuse('p1', '/accord/raft/1.0.0', 'not-admitted') }
    refusals.refuse('p1', '/accord/raft/1.0.0', 'revoked')
    refusals.refuse('p2', '/accord/raft/1.0.0', 'not-admitted')
    expect(lines.map(l => `${l.peer} ${l.reason}`)).to.deep.equal(['p1 not-admitted', 'p1 revoked', 'p2 not-admitted'])
    nowMs = 1000
    refusals.refuse('p1', '/accord/raft/1.0.0', 'not-admitted')
    expect(lines).to.have.length(4)
    expect(await refusals.count('/accord/raft/1.0.0', 'not-admitted')).to.equal(102)
    const metric = await registry.getSingleMetric('accord_refusals_total')!.get()
    expect(metric.values.find(v => v.labels.reason === 'not-admitted')?.value).to.equal(102)
  })

  it('remembers at most logKeysMax peers, forgetting the oldest', () => {
    const { refusals } = make(8)
    for (let i = 0; i < 100; i++) { refusals.refuse(`peer-${i}`, 'http', 'origin') }
    expect(refusals.trackedKeys).to.equal(8)
    // the oldest was forgotten, so it is logged again at once
    refusals.refuse('peer-0', 'http', 'origin')
    expect(lines.filter(l => l.peer === 'peer-0')).to.have.length(2)
  })
})
