/* eslint-disable no-console */
/**
 * npm run bench:crdt [-- --trace FILE --runs 5 --yjs on --automerge on]
 *
 * B4 (dmonad/crdt-benchmarks): the automerge-paper editing trace (259,778
 * single-character edits by one author) replayed through accord's RGA
 * (protocols/crdt/rga), Yjs (Y.Text insert/delete, one transaction per edit
 * as in Y.Text's own calls) and Automerge 3 (splice on a text field, all in
 * one change, its fastest path). For each: edits/s (the median of --runs
 * replays), the encoded document's size (RGA: encodeRga; Yjs:
 * encodeStateAsUpdate; Automerge: save), load time (median of decoding it
 * into a fresh document and reading the text) and the heap the replayed
 * document holds (heapUsed after a GC, minus before; run with --expose-gc,
 * as the npm script does). The RGA also reports its size after
 * collectStable (every tombstone is stable with one author) and, in the same
 * run, the friendsforever concurrent trace (one replica per agent).
 *
 * --trace FILE replays that trace (sequential or concurrent, .json or
 * .json.gz) through the RGA alone and prints the same figures. Traces are
 * read from $ACCORD_TRACES_DIR or ../shared/data/editing-traces next to the
 * repository. Writes bench/results/crdt.json (--trace: crdt-trace.json); exits non-zero when a replay
 * does not reach the trace's endContent (not when a target is missed).
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { gunzipSync } from 'node:zlib'
import * as Automerge from '@automerge/automerge'
import * as Y from 'yjs'
import { encodeRga, loadRga } from '../protocols/crdt/rga/index.ts'
import { isConcurrent, patchCount, replayConcurrent, replaySequential } from '../protocols/crdt/rga/trace.ts'
import { saveResults } from './bench-lib.ts'
import type { Trace } from '../protocols/crdt/rga/trace.ts'

const { values } = parseArgs({
  options: {
    trace: { type: 'string' },
    runs: { type: 'string', default: '5' },
    yjs: { type: 'string', default: 'on' },
    automerge: { type: 'string', default: 'on' }
  }
})
const RUNS = Math.max(1, Number(values.runs))
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url))
const TRACES_DIR = process.env.ACCORD_TRACES_DIR ?? join(REPO_ROOT, '..', 'shared', 'data', 'editing-traces')
const LOAD_RUNS = 15

/** The issue's targets for B4. */
const TARGET = { yjsSpeedRatioMin: 1.0, bytesMax: 129 * 1024, loadMsMax: 30 }

interface Figures {
  name: string
  edits: number
  editsPerSecond: number
  replayMs: number
  bytes: number
  loadMs: number
  heapBytes: number
  bytesCollected?: number
}

function readTrace (file: string): Trace {
  const raw = readFileSync(file)
  const text = raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw).toString('utf8') : raw.toString('utf8')
  return JSON.parse(text)
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

const gc = (): void => { (globalThis as { gc?(): void }).gc?.() }

function heapNow (): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

/**
 * Runs `replay` RUNS times (the median time counts) and keeps the last
 * document to measure its heap, `encode` it and time `load` of the bytes.
 */
function measure<D> (name: string, edits: number, runs: number, replay: () => D, check: (doc: D) => boolean, encode: (doc: D) => Uint8Array, load: (bytes: Uint8Array) => string): Figures {
  const times: number[] = []
  let doc: D | null = null
  let heapBytes = 0
  for (let r = 0; r < runs; r++) {
    doc = null
    const before = heapNow()
    const t = performance.now()
    doc = replay()
    times.push(performance.now() - t)
    heapBytes = heapNow() - before
  }
  if (doc === null || !check(doc)) { throw new Error(`${name}: the replay does not reach endContent`) }
  const bytes = encode(doc)
  const loads: number[] = []
  let expected = ''
  for (let r = 0; r < LOAD_RUNS; r++) {
    const t = performance.now()
    const text = load(bytes)
    loads.push(performance.now() - t)
    expected = text
  }
  if (expected.length === 0 && edits > 0) { throw new Error(`${name}: load gave an empty text`) }
  const replayMs = median(times)
  return { name, edits, editsPerSecond: edits / (replayMs / 1000), replayMs, bytes: bytes.length, loadMs: median(loads), heapBytes }
}

function rgaFigures (trace: Trace, name: string): Figures {
  const edits = patchCount(trace)
  if (isConcurrent(trace)) {
    return measure(name, edits, RUNS, () => replayConcurrent(trace), docs => docs.every(d => d.toString() === trace.endContent), docs => encodeRga(docs[0]), bytes => {
      const loaded = loadRga(bytes, 'load')
      if (!loaded.ok) { throw new Error(loaded.error) }
      return loaded.value.toString()
    })
  }
  const figures = measure(name, edits, RUNS, () => replaySequential(trace), doc => doc.toString() === trace.endContent, encodeRga, bytes => {
    const loaded = loadRga(bytes, 'load')
    if (!loaded.ok) { throw new Error(loaded.error) }
    return loaded.value.toString()
  })
  const doc = replaySequential(trace)
  doc.collectStable(doc.version())
  figures.bytesCollected = encodeRga(doc).length
  return figures
}

function yjsFigures (trace: Trace): Figures {
  return measure('Yjs 13', patchCount(trace), Math.min(RUNS, 3), () => {
    const doc = new Y.Doc()
    const text = doc.getText('text')
    for (const txn of trace.txns) {
      for (const [pos, del, ins] of txn.patches) {
        if (del > 0) { text.delete(pos, del) }
        if (ins.length > 0) { text.insert(pos, ins) }
      }
    }
    return doc
  }, doc => doc.getText('text').toString() === trace.endContent, doc => Y.encodeStateAsUpdate(doc), bytes => {
    const doc = new Y.Doc()
    Y.applyUpdate(doc, bytes)
    return doc.getText('text').toString()
  })
}

function automergeFigures (trace: Trace): Figures {
  return measure('Automerge 3', patchCount(trace), 1, () => {
    let doc = Automerge.from<{ text: string }>({ text: '' })
    doc = Automerge.change(doc, d => {
      for (const txn of trace.txns) {
        for (const [pos, del, ins] of txn.patches) { Automerge.splice(d, ['text'], pos, del, ins) }
      }
    })
    return doc
  }, doc => doc.text === trace.endContent, doc => Automerge.save(doc), bytes => Automerge.load<{ text: string }>(bytes).text)
}

const kb = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KB`

function printTable (rows: Figures[], base: Figures): void {
  console.log('| implementation | edits/s | replay time vs RGA | encoded | size vs RGA | load ms | heap |')
  console.log('|---|---:|---:|---:|---:|---:|---:|')
  for (const f of rows) {
    console.log(`| ${f.name} | ${Math.round(f.editsPerSecond).toLocaleString('en')} | ${(base.editsPerSecond / f.editsPerSecond).toFixed(2)}x | ${kb(f.bytes)} (${f.bytes.toLocaleString('en')} B) | ${(f.bytes / base.bytes).toFixed(2)}x | ${f.loadMs.toFixed(1)} | ${(f.heapBytes / 1048576).toFixed(1)} MB |`)
  }
}

async function main (): Promise<void> {
  const results: Record<string, unknown> = { runs: RUNS }
  if (values.trace !== undefined) {
    const trace = readTrace(values.trace)
    const f = rgaFigures(trace, `RGA ${values.trace}`)
    console.log(`${values.trace}: ${isConcurrent(trace) ? 'concurrent' : 'sequential'}, ${f.edits.toLocaleString('en')} edits, endContent reached`)
    printTable([f], f)
    if (f.bytesCollected !== undefined) { console.log(`after collectStable: ${kb(f.bytesCollected)} (${f.bytesCollected} B)`) }
    // beside, not over, the B4 figures
    await saveResults('crdt-trace', { ...results, trace: values.trace, rga: f })
    return
  }
  const b4File = join(TRACES_DIR, 'automerge-paper.json.gz')
  if (!existsSync(b4File)) { throw new Error(`no ${b4File}: set ACCORD_TRACES_DIR`) }
  const b4 = readTrace(b4File)
  console.log(`B4 automerge-paper: ${patchCount(b4).toLocaleString('en')} edits, ${b4.endContent.length.toLocaleString('en')} characters at the end; node ${process.version}${typeof (globalThis as { gc?: unknown }).gc === 'function' ? '' : ' (no --expose-gc: heap figures are rough)'}`)
  const rows: Figures[] = []
  const rga = rgaFigures(b4, 'accord RGA')
  rows.push(rga)
  if (values.yjs === 'on') { rows.push(yjsFigures(b4)) }
  if (values.automerge === 'on') { rows.push(automergeFigures(b4)) }
  printTable(rows, rga)
  console.log(`RGA after collectStable (no tombstones): ${kb(rga.bytesCollected ?? 0)} (${rga.bytesCollected} B)`)
  const yjs = rows.find(r => r.name.startsWith('Yjs'))
  const checks = {
    speedVsYjs: yjs === undefined ? null : rga.editsPerSecond / yjs.editsPerSecond,
    bytes: rga.bytes,
    loadMs: rga.loadMs
  }
  console.log(`targets: >= ${TARGET.yjsSpeedRatioMin}x Yjs edits/s: ${checks.speedVsYjs === null ? 'not measured' : `${checks.speedVsYjs.toFixed(1)}x ${checks.speedVsYjs >= TARGET.yjsSpeedRatioMin ? 'met' : 'MISSED'}`}; ` +
    `encoded <= ${kb(TARGET.bytesMax)}: ${kb(rga.bytes)} ${rga.bytes <= TARGET.bytesMax ? 'met' : 'MISSED'}; load <= ${TARGET.loadMsMax} ms: ${rga.loadMs.toFixed(1)} ms ${rga.loadMs <= TARGET.loadMsMax ? 'met' : 'MISSED'}`)
  const ffFile = join(TRACES_DIR, 'friendsforever.json.gz')
  let concurrent: Figures | null = null
  if (existsSync(ffFile)) {
    const ff = readTrace(ffFile)
    concurrent = rgaFigures(ff, 'accord RGA, friendsforever')
    console.log(`friendsforever (concurrent, ${ff.numAgents} agents, ${concurrent.edits.toLocaleString('en')} edits): ${Math.round(concurrent.editsPerSecond).toLocaleString('en')} edits/s (all replicas, syncing included), encoded ${kb(concurrent.bytes)}, load ${concurrent.loadMs.toFixed(1)} ms; every replica reached endContent`)
  }
  await saveResults('crdt', { ...results, b4: rows, targets: TARGET, checks, friendsforever: concurrent })
}

main().catch(err => {
  console.error(err)
  process.exitCode = 1
})
