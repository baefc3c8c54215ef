/**
 * Suspicion without proof (protocols/pbft/suspicion.ts): scores that
 * slowness and silence lower, and the view change it brings when the
 * primary is the one suspected, where the request timer alone would not.
 */
import { expect } from 'aegir/chai'
import { SCORE_MAX, SUSPICION_POINTS, Suspicion } from '../../protocols/pbft/index.ts'
import { Cluster, clientRequest, sign } from './pbft-harness.ts'
import type { Checkpoint } from '../../protocols/pbft/index.ts'

describe('pbft suspicion', () => {
  it('keeps one score per other replica, bounded between 0 and SCORE_MAX', () => {
    const suspicion = new Suspicion(['r0', 'r1', 'r2', 'r3'], 'r0')
    expect(suspicion.list().map(s => s.peer)).to.deep.equal(['r1', 'r2', 'r3'])
    expect(suspicion.lower('r2', 'silent')).to.equal(SCORE_MAX - SUSPICION_POINTS.silent)
    for (let i = 0; i < 100; i++) { suspicion.lower('r2', 'request-timeout') }
    expect(suspicion.score('r2')).to.equal(0)
    for (let i = 0; i < 100; i++) { suspicion.raise('r2') }
    expect(suspicion.score('r2')).to.equal(SCORE_MAX)
    // a peer outside the set gets no entry: remote input cannot grow the map
    expect(suspicion.lower('stranger', 'silent')).to.equal(SCORE_MAX)
    expect(suspicion.list()).to.have.length(3)
  })

  it('a primary that keeps ordering others but never one request is suspected by the backups, replaced, and the request executes', () => {
    const limits = { requestTimeoutTicks: 10, slowPrimaryTicks: 10, suspicionViewChangeScore: 50, viewChangeTimeoutTicks: 10 }
    const cluster = new Cluster(4, limits)
    const censored = clientRequest('victim', 1)
    // r0 never hears of the victim's request (it censors it); everything else flows
    cluster.filter = e => !(e.to === 'r0' && e.message.type === 'request' && e.message.client === 'victim')
    for (const id of ['r1', 'r2', 'r3']) { cluster.submit(id, censored) }
    let timestamp = 0
    for (let tick = 0; tick < 60 && cluster.replica('r1').status().view === 0; tick++) {
      // another client's request executes every tick: the request timer is reset each time
      cluster.submit('r0', clientRequest('busy', ++timestamp))
      cluster.tick()
    }
    const r1 = cluster.replica('r1').status()
    expect(r1.view).to.equal(1)
    expect(r1.scores.find(s => s.peer === 'r0')?.score).to.be.at.most(limits.suspicionViewChangeScore)
    cluster.tick(5)
    for (const id of ['r1', 'r2', 'r3']) { expect(cluster.state(id).executed, id).to.include('victim@1') }
    cluster.expectAgreement()
  })

  it('without the suspicion, the same censorship would go on: the request timer never fires while others execute', () => {
    // a score limit of 0 needs 50 overdue ticks; 40 ticks stay below it, and the timer (10 ticks) is reset by every execution
    const cluster = new Cluster(4, { requestTimeoutTicks: 10, slowPrimaryTicks: 10, suspicionViewChangeScore: 1 })
    cluster.filter = e => !(e.to === 'r0' && e.message.type === 'request' && e.message.client === 'victim')
    for (const id of ['r1', 'r2', 'r3']) { cluster.submit(id, clientRequest('victim', 1)) }
    for (let tick = 0; tick < 40; tick++) {
      cluster.submit('r0', clientRequest('busy', tick + 1))
      cluster.tick()
    }
    expect(cluster.replica('r1').status().view).to.equal(0)
    expect(cluster.state('r1').executed).to.not.include('victim@1')
    expect(cluster.replica('r1').status().scores.find(s => s.peer === 'r0')?.score).to.equal(SCORE_MAX - SUSPICION_POINTS['slow-primary'] * 31)
  })

  it('a malformed message from a replica\'s own link lowers its score, without isolating it', () => {
    const cluster = new Cluster(4)
    const result = cluster.inject('r2', 'r1', sign<Checkpoint>({ type: 'checkpoint', replica: 'r2', seq: 3, stateDigest: '00'.repeat(32) }))
    expect(result).to.deep.include({ ok: false, reason: 'malformed' })
    const r1 = cluster.replica('r1').status()
    expect(r1.scores.find(s => s.peer === 'r2')?.score).to.equal(SCORE_MAX - SUSPICION_POINTS['invalid-message'])
    expect(r1.isolated).to.deep.equal([])
  })

  it('a replica silent through a checkpoint interval loses trust; taking part regains it', () => {
    const cluster = new Cluster(4, { checkpointInterval: 2, watermarkWindow: 8 })
    cluster.down.add('r3')
    for (let t = 1; t <= 2; t++) {
      cluster.submit('r0', clientRequest('c1', t))
      cluster.drain()
    }
    const scores = cluster.replica('r1').status().scores
    expect(scores.find(s => s.peer === 'r3')?.score).to.equal(SCORE_MAX - SUSPICION_POINTS.silent)
    expect(scores.find(s => s.peer === 'r2')?.score).to.equal(SCORE_MAX)
  })

  it('a state transfer forgets the requests waiting here, which the state may hold: they do not keep the request timer running', () => {
    const cluster = new Cluster(4, { checkpointInterval: 2, watermarkWindow: 4, pipelineMax: 2, requestTimeoutTicks: 4 })
    cluster.down.add('r3')
    for (let t = 1; t <= 6; t++) {
      cluster.submit('r0', clientRequest('c1', t))
      cluster.drain()
    }
    // r3 comes back holding a request that the others executed long ago (its relay to r0 is lost), and learns it is behind from new traffic
    cluster.down.delete('r3')
    cluster.filter = e => !(e.from === 'r3' && e.message.type === 'request')
    cluster.submit('r3', clientRequest('c1', 1))
    cluster.submit('r0', clientRequest('c1', 7))
    cluster.tick(20)
    const r3 = cluster.replica('r3').status()
    expect(r3.executed).to.equal(7)
    expect(r3.view).to.equal(0)
    expect(r3.viewChanging).to.equal(false)
  })
})
