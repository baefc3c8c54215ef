/**
 * Real editing traces through the RGA: `npm run test:traces`. The traces
 * live outside the repository (../shared/data/editing-traces, or
 * $ACCORD_TRACES_DIR), so this file is not named *.spec.ts and `npm test`
 * (which must pass on a machine without them) does not run it; without the
 * traces it fails, saying where it looked.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'
import { expect } from 'aegir/chai'
import { encodeRga, loadRga } from '../../protocols/crdt/rga/index.ts'
import { replayConcurrent, replaySequential } from '../../protocols/crdt/rga/trace.ts'
import type { Trace } from '../../protocols/crdt/rga/trace.ts'

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
const TRACES_DIR = process.env.ACCORD_TRACES_DIR ?? join(REPO_ROOT, '..', 'shared', 'data', 'editing-traces')

function readTrace (name: string): Trace {
  return JSON.parse(gunzipSync(readFileSync(join(TRACES_DIR, name))).toString('utf8'))
}

function expectRoundTrip (text: string, bytes: Uint8Array): void {
  const loaded = loadRga(bytes, 'loader')
  expect(loaded.ok).to.equal(true)
  expect(loaded.ok && loaded.value.toString() === text).to.equal(true)
}

describe('crdt/rga editing traces', function () {
  this.timeout(120_000)

  before(() => {
    expect(existsSync(join(TRACES_DIR, 'automerge-paper.json.gz')), `no editing traces in ${TRACES_DIR} (set ACCORD_TRACES_DIR)`).to.equal(true)
  })

  it('replays automerge-paper (sequential) to its endContent and round-trips the encoding', () => {
    const trace = readTrace('automerge-paper.json.gz')
    const doc = replaySequential(trace)
    // compare without chai's diff of 100 KB strings on failure
    expect(doc.toString() === trace.endContent).to.equal(true)
    expect(doc.length).to.equal(trace.endContent.length)
    expectRoundTrip(trace.endContent, encodeRga(doc))
    // every tombstone is stable with one member: all go, and the text stays
    expect(doc.collectStable(doc.version())).to.be.greaterThan(0)
    expect(doc.toString() === trace.endContent).to.equal(true)
    expectRoundTrip(trace.endContent, encodeRga(doc))
  })

  it('replays friendsforever (concurrent) with one replica per agent, all converging to endContent', () => {
    const trace = readTrace('friendsforever.json.gz')
    const docs = replayConcurrent(trace)
    expect(docs.length).to.be.greaterThan(1)
    for (const doc of docs) {
      expect(doc.toString() === trace.endContent).to.equal(true)
      expectRoundTrip(trace.endContent, encodeRga(doc))
    }
  })
})
