import { expect } from 'aegir/chai'
import { Cluster, clientRequest, sign, digestOf } from './pbft-harness.ts'
import type { NewView, PbftMessage, PrePrepare, ViewChange } from '../../protocols/pbft/index.ts'

const limits = { requestTimeoutTicks: 4, viewChangeTimeoutTicks: 4, viewChangeTimeoutTicksMax: 16, checkpointInterval: 4, watermarkWindow: 8 }

function sent (cluster: Cluster, from: string, type: PbftMessage['type']): PbftMessage[] {
  return (cluster.readies.get(from) ?? []).flatMap(r => r.messages).map(m => m.message).filter(m => m.type === type)
}

describe('pbft view change', () => {
  it('a silent primary is replaced: backups time out, the next primary sends NEW-VIEW, the request executes', () => {
    const cluster = new Cluster(4, limits)
    cluster.crash('r0')
    for (const id of ['r1', 'r2', 'r3']) { cluster.submit(id, clientRequest('c1', 1)) }
    cluster.drain()
    cluster.tick(limits.requestTimeoutTicks)
    for (const id of ['r1', 'r2', 'r3']) {
      const status = cluster.replica(id).status()
      expect(status.view, id).to.equal(1)
      expect(status.viewChanging, id).to.equal(false)
      expect(status.primary).to.equal('r1')
      expect(cluster.state(id).executed, id).to.deep.equal(['c1@1'])
    }
    expect(sent(cluster, 'r1', 'new-view')).to.have.length(3)
  })

  it('a batch prepared in the old view keeps its seq and digest in the new view', () => {
    const cluster = new Cluster(4, limits)
    // commits are lost: the batch prepares everywhere but commits nowhere
    cluster.filter = e => e.message.type !== 'commit'
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain()
    expect(cluster.state('r1').lastSeq).to.equal(0)
    const prePrepare = sent(cluster, 'r0', 'pre-prepare')[0] as PrePrepare
    cluster.filter = e => e.from !== 'r0' && e.to !== 'r0'
    cluster.tick(limits.requestTimeoutTicks)
    const newView = sent(cluster, 'r1', 'new-view')[0] as NewView
    expect(newView.prePrepares.map(p => [p.seq, p.digest])).to.deep.equal([[1, prePrepare.digest]])
    for (const id of ['r1', 'r2', 'r3']) {
      expect(cluster.state(id).executed, id).to.deep.equal(['c1@1'])
      expect(cluster.state(id).digests.get(1)).to.equal(prePrepare.digest)
    }
  })

  it('fills a gap below a prepared batch with the null request', () => {
    const cluster = new Cluster(4, { ...limits, batchRequestsMax: 1 })
    // seq 1 never reaches the backups; seq 2 prepares but does not commit
    cluster.filter = e => !(e.message.type === 'pre-prepare' && e.message.seq === 1) && e.message.type !== 'commit'
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain()
    cluster.submit('r0', clientRequest('c1', 2))
    cluster.drain()
    cluster.crash('r0')
    cluster.filter = () => true
    cluster.tick(limits.requestTimeoutTicks)
    const newView = sent(cluster, 'r1', 'new-view')[0] as NewView
    expect(newView.prePrepares.map(p => p.batch.length)).to.deep.equal([0, 1])
    expect(newView.prePrepares[0].digest).to.equal(digestOf([]))
    for (const id of ['r1', 'r2', 'r3']) {
      expect(cluster.state(id).lastSeq, id).to.be.at.least(2)
      expect(cluster.state(id).executed, id).to.include('c1@2')
    }
    cluster.expectAgreement()
  })

  it('doubles the view-change timeout with each view change that does not complete, up to the maximum', () => {
    // n = 7: r0 and r1 are down, and every NEW-VIEW is lost, so each view change after the first times out
    const cluster = new Cluster(7, limits)
    cluster.crash('r0')
    cluster.crash('r1')
    cluster.filter = e => e.message.type !== 'new-view'
    for (const id of cluster.ids) { if (!cluster.down.has(id)) { cluster.submit(id, clientRequest('c1', 1)) } }
    cluster.drain()
    const viewAfter = (ticks: number): number => {
      cluster.tick(ticks)
      return cluster.replica('r6').status().view
    }
    // request timer (4 ticks), then view-change timeouts of 4, 8, 16, 16
    expect(viewAfter(4)).to.equal(1)
    expect(viewAfter(3)).to.equal(1)
    expect(viewAfter(1)).to.equal(2)
    expect(viewAfter(7)).to.equal(2)
    expect(viewAfter(1)).to.equal(3)
    expect(viewAfter(15)).to.equal(3)
    expect(viewAfter(1)).to.equal(4)
    expect(viewAfter(15)).to.equal(4)
    expect(viewAfter(1)).to.equal(5)
  })

  it('starts the view-change timer only once a quorum asks for the view', () => {
    const cluster = new Cluster(4, limits)
    cluster.crash('r0')
    cluster.crash('r1')
    cluster.submit('r2', clientRequest('c1', 1))
    cluster.submit('r3', clientRequest('c1', 1))
    cluster.drain()
    // two of four ask for view 1: no quorum, so neither races on to view 2
    cluster.tick(limits.requestTimeoutTicks + 10 * limits.viewChangeTimeoutTicks)
    expect(cluster.replica('r2').status()).to.deep.include({ view: 1, viewChanging: true })
    expect(cluster.replica('r3').status()).to.deep.include({ view: 1, viewChanging: true })
  })

  it('joins a view change once f+1 replicas ask for a higher view', () => {
    const cluster = new Cluster(4, limits)
    cluster.crash('r0')
    // only r2 and r3 time out (r1 never saw the request)
    cluster.submit('r2', clientRequest('c1', 1))
    cluster.submit('r3', clientRequest('c1', 1))
    cluster.drain()
    expect(cluster.replica('r1').status().view).to.equal(0)
    for (let i = 0; i < limits.requestTimeoutTicks; i++) {
      cluster.replica('r2').tick()
      cluster.replica('r3').tick()
    }
    cluster.drain()
    expect(cluster.replica('r1').status()).to.deep.include({ view: 1, viewChanging: false, primary: 'r1' })
    expect(cluster.state('r1').executed).to.deep.equal(['c1@1'])
  })

  it('a replica does not join on the word of f replicas', () => {
    const cluster = new Cluster(4, limits)
    cluster.crash('r0')
    cluster.submit('r3', clientRequest('c1', 1))
    cluster.drain()
    for (let i = 0; i < limits.requestTimeoutTicks; i++) { cluster.replica('r3').tick() }
    cluster.drain()
    expect(cluster.replica('r1').status().view).to.equal(0)
    expect(cluster.replica('r2').status().view).to.equal(0)
  })

  it('rejects a NEW-VIEW whose pre-prepares differ from what its view changes determine', () => {
    const cluster = new Cluster(4, limits)
    cluster.crash('r0')
    cluster.filter = e => e.message.type !== 'new-view'
    for (const id of ['r1', 'r2', 'r3']) { cluster.submit(id, clientRequest('c1', 1)) }
    cluster.drain()
    cluster.tick(limits.requestTimeoutTicks)
    const newView = sent(cluster, 'r1', 'new-view')[0] as NewView
    expect(newView).to.not.equal(undefined)
    const extra = sign<PrePrepare>({ type: 'pre-prepare', replica: 'r1', view: 1, seq: 1, digest: digestOf([]), batch: [] })
    const forged = sign<NewView>({ type: 'new-view', replica: 'r1', view: 1, viewChanges: newView.viewChanges, prePrepares: [...newView.prePrepares, extra] })
    expect(cluster.inject('r1', 'r2', forged)).to.deep.include({ ok: false, reason: 'malformed' })
    const tooFew = sign<NewView>({ type: 'new-view', replica: 'r1', view: 1, viewChanges: newView.viewChanges.slice(0, 2), prePrepares: [] })
    expect(cluster.inject('r1', 'r2', tooFew)).to.deep.include({ ok: false, reason: 'malformed' })
    expect(cluster.inject('r1', 'r2', newView)).to.deep.equal({ ok: true })
    expect(cluster.replica('r2').status()).to.deep.include({ view: 1, viewChanging: false })
  })

  it('rejects a VIEW-CHANGE carrying a prepared certificate with too few prepares', () => {
    const cluster = new Cluster(4, limits)
    cluster.filter = e => e.message.type !== 'commit'
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain()
    const prePrepare = sent(cluster, 'r0', 'pre-prepare')[0] as PrePrepare
    const prepare = sent(cluster, 'r1', 'prepare')[0]
    const viewChange = sign<ViewChange>({
      type: 'view-change',
      replica: 'r3',
      view: 1,
      stable: { seq: 0, stateDigest: '0'.repeat(64), proof: [] },
      prepared: [{ prePrepare, prepares: [prepare as never] }]
    })
    const result = cluster.inject('r3', 'r1', viewChange)
    expect(result).to.deep.include({ ok: false, reason: 'malformed' })
    expect(result.ok === false && result.detail).to.match(/prepares, 2 needed/)
  })

  it('the new primary re-sends its NEW-VIEW to a replica still asking for that view', () => {
    const cluster = new Cluster(4, limits)
    cluster.crash('r0')
    cluster.filter = e => !(e.message.type === 'new-view' && e.to === 'r3')
    for (const id of ['r1', 'r2', 'r3']) { cluster.submit(id, clientRequest('c1', 1)) }
    cluster.drain()
    cluster.tick(limits.requestTimeoutTicks)
    expect(cluster.replica('r3').status().viewChanging).to.equal(true)
    cluster.filter = () => true
    // r3's VIEW-CHANGE for view 1 reaches r1 again (a retransmission): r1 answers with its NEW-VIEW
    const viewChange = sent(cluster, 'r3', 'view-change')[0] as ViewChange
    cluster.queue.push({ from: 'r3', to: 'r1', message: viewChange })
    cluster.drain()
    expect(cluster.replica('r3').status()).to.deep.include({ view: 1, viewChanging: false })
    expect(cluster.state('r3').executed).to.deep.equal(['c1@1'])
  })

  it('a replica left in an earlier view catches up with the NEW-VIEW once f+1 replicas work in a later one', () => {
    const cluster = new Cluster(4, limits)
    // r3 is cut off, and r0's pre-prepares are lost: r0, r1 and r2 move to view 1 without r3
    cluster.filter = e => e.to !== 'r3' && e.from !== 'r3' && !(e.message.type === 'pre-prepare' && e.message.view === 0)
    for (const id of ['r0', 'r1', 'r2']) { cluster.submit(id, clientRequest('c1', 1)) }
    cluster.drain()
    for (let i = 0; i < limits.requestTimeoutTicks; i++) {
      for (const id of ['r0', 'r1', 'r2']) { cluster.replica(id).tick() }
      cluster.drain()
    }
    expect(cluster.replica('r1').status()).to.deep.include({ view: 1, viewChanging: false })
    expect(cluster.state('r1').executed).to.deep.equal(['c1@1'])
    expect(cluster.replica('r3').status()).to.deep.include({ view: 0, viewChanging: false })
    // r3 is back: it sees view-1 traffic, asks for view 1 and is shown the NEW-VIEW
    cluster.filter = () => true
    cluster.submit('r1', clientRequest('c1', 2))
    cluster.drain()
    expect(cluster.results.some(r => r.envelope.to === 'r3' && r.envelope.message.type === 'pre-prepare' && r.result.ok)).to.equal(true)
    cluster.tick(1)
    expect(cluster.replica('r3').status()).to.deep.include({ view: 1, viewChanging: false })
    // seq 1 went by while it was cut off: fetched from the log
    cluster.tick(limits.requestTimeoutTicks)
    expect(cluster.state('r3').executed).to.deep.equal(['c1@1', 'c1@2'])
  })

  it('requests of executed seqs that a NEW-VIEW proposes again are not waited for: no second view change', () => {
    const cluster = new Cluster(4, limits)
    cluster.submit('r0', clientRequest('c1', 1))
    cluster.drain()
    cluster.crash('r0')
    // c1@1 executed and prepared everywhere: the NEW-VIEW of view 1 proposes seq 1 again
    for (const id of ['r1', 'r2', 'r3']) { cluster.submit(id, clientRequest('c1', 2)) }
    cluster.drain()
    cluster.tick(limits.requestTimeoutTicks)
    const newView = sent(cluster, 'r1', 'new-view')[0] as NewView
    expect(newView.prePrepares.map(p => p.seq)).to.deep.include(1)
    // no more traffic: nothing waits, so no timer runs
    cluster.tick(10 * limits.requestTimeoutTicks)
    for (const id of ['r1', 'r2', 'r3']) {
      expect(cluster.replica(id).status(), id).to.deep.include({ view: 1, viewChanging: false })
      expect(cluster.state(id).executed, id).to.deep.equal(['c1@1', 'c1@2'])
    }
    expect(sent(cluster, 'r2', 'view-change')).to.have.length(3)
  })

  it('sends its view change again while the view does not start, so a lost one does not stall it', () => {
    const cluster = new Cluster(4, limits)
    cluster.crash('r0')
    let lost = 0
    // the first round of view changes is lost entirely
    cluster.filter = e => {
      if (e.message.type === 'view-change' && lost < 6) { lost++; return false }
      return true
    }
    for (const id of ['r1', 'r2', 'r3']) { cluster.submit(id, clientRequest('c1', 1)) }
    cluster.drain()
    cluster.tick(limits.requestTimeoutTicks)
    expect(cluster.replica('r1').status()).to.deep.include({ view: 1, viewChanging: true })
    cluster.tick(limits.viewChangeTimeoutTicks)
    for (const id of ['r1', 'r2', 'r3']) {
      expect(cluster.replica(id).status(), id).to.deep.include({ view: 1, viewChanging: false })
      expect(cluster.state(id).executed).to.deep.equal(['c1@1'])
    }
  })
})
