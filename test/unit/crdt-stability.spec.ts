/**
 * The CRDT service's stability reports (node/crdt/stability.ts): their
 * encoding, that a frontier needs every member's report, the bound on
 * reporters, and forgetting members that left. And meetClocks, the
 * entry-wise minimum the stable vector is.
 */
import { expect } from 'aegir/chai'
import { decodeReport, encodeReport, STABILITY_REPORTERS_MAX, StabilityReports } from '../../node/crdt/stability.ts'
import { meetClocks } from '../../protocols/crdt/index.ts'

describe('crdt stability reports', () => {
  it('round-trips a report and refuses malformed bytes', () => {
    const report = { context: new Map([['a', 3], ['b', 1]]), document: new Map([['a', 40]]) }
    expect(decodeReport(encodeReport(report))).to.deep.equal(report)
    const plain = { context: new Map([['a', 3]]), document: null }
    expect(decodeReport(encodeReport(plain))).to.deep.equal(plain)
    const bytes = encodeReport(report)
    for (let cut = 0; cut < bytes.length; cut++) { expect(decodeReport(bytes.subarray(0, cut)), `cut at ${cut}`).to.equal(null) }
    expect(decodeReport(Uint8Array.from([...bytes, 0]))).to.equal(null)
    const badFlag = encodeReport(plain)
    badFlag[badFlag.length - 1] = 2
    expect(decodeReport(badFlag)).to.equal(null)
  })

  it('gives the reports only once every member has reported, keeps the latest, and forgets members that left', () => {
    const reports = new StabilityReports()
    const r = (n: number): { context: Map<string, number>, document: null } => ({ context: new Map([['a', n]]), document: null })
    reports.record('doc', 'p1', r(1))
    expect(reports.of('doc', ['p1', 'p2'])).to.equal(null)
    reports.record('doc', 'p2', r(2))
    reports.record('doc', 'p1', r(5))
    expect(reports.of('doc', ['p1', 'p2'])).to.deep.equal(new Map([['p1', r(5)], ['p2', r(2)]]))
    expect(reports.of('other', ['p1'])).to.equal(null)
    expect(reports.of('other', [])).to.deep.equal(new Map())
    reports.retain(new Set(['p2']))
    expect(reports.of('doc', ['p1'])).to.equal(null)
  })

  it('keeps the reports of at most STABILITY_REPORTERS_MAX members per CRDT', () => {
    const reports = new StabilityReports()
    const report = { context: new Map([['a', 1]]), document: null }
    for (let i = 0; i <= STABILITY_REPORTERS_MAX; i++) { reports.record('doc', `p${i}`, report) }
    expect(reports.of('doc', [`p${STABILITY_REPORTERS_MAX - 1}`])).to.not.equal(null)
    expect(reports.of('doc', [`p${STABILITY_REPORTERS_MAX}`])).to.equal(null)
  })

  it('meetClocks is the entry-wise minimum, leaving out replicas some clock lacks', () => {
    expect(meetClocks([new Map([['a', 3], ['b', 2]]), new Map([['a', 5], ['b', 1], ['c', 4]])])).to.deep.equal(new Map([['a', 3], ['b', 1]]))
    expect(meetClocks([new Map([['a', 3]])])).to.deep.equal(new Map([['a', 3]]))
    expect(meetClocks([])).to.deep.equal(new Map())
  })
})
