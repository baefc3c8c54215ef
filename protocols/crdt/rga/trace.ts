/**
 * Replays editing traces (josephg/editing-traces format, already parsed)
 * through RGA replicas. No I/O: callers read and gunzip the files.
 *
 * Sequential: `{ startContent, endContent, txns: [{ patches }] }`, each patch
 * [pos, delCount, insertText] applied in order like a string splice.
 * Concurrent: `{ kind: 'concurrent', endContent, numAgents, txns: [{ parents,
 * agent, patches }] }`: a txn applies on the version made by its parents
 * (earlier txn indexes), by its agent; positions are relative to that version.
 * Positions are taken as UTF-16 units (the traces here are ASCII).
 */
import { Rga } from './rga.ts'
import type { Op } from './types.ts'

export type Patch = [number, number, string]

export interface Trace {
  kind?: string
  startContent?: string
  endContent: string
  numAgents?: number
  txns: Array<{ patches: Patch[], parents?: number[], agent?: number }>
}

export function isConcurrent (trace: Trace): boolean {
  return trace.kind === 'concurrent'
}

export function patchCount (trace: Trace): number {
  let n = 0
  for (const txn of trace.txns) { n += txn.patches.length }
  return n
}

/** One replica applying every patch in order. */
export function replaySequential (trace: Trace, replica = 'trace'): Rga {
  const doc = new Rga(replica)
  if (trace.startContent !== undefined && trace.startContent.length > 0) { doc.insert(0, trace.startContent) }
  for (const txn of trace.txns) {
    for (const [pos, del, text] of txn.patches) {
      if (del > 0) { doc.delete(pos, del) }
      if (text.length > 0) { doc.insert(pos, text) }
    }
  }
  return doc
}

/**
 * One replica per agent. Before a txn, its agent's replica receives the ops
 * of the txns in its parents' history that it has not seen (in txn order,
 * which is causal); at the end every replica receives everything. Returns
 * the replicas; they should all read endContent.
 */
export function replayConcurrent (trace: Trace): Rga[] {
  const agents = trace.numAgents ?? 1 + Math.max(...trace.txns.map(t => t.agent ?? 0))
  const docs = Array.from({ length: agents }, (_, i) => new Rga(`agent-${i}`))
  const ops: Op[][] = trace.txns.map(() => [])
  // seen[a][t]: replica a has txn t (the set is kept causally closed)
  const seen = docs.map(() => new Uint8Array(trace.txns.length))
  const deliver = (a: number, roots: number[]): void => {
    const missing: number[] = []
    const stack = roots.filter(t => seen[a][t] === 0)
    while (stack.length > 0) {
      const t = stack.pop() as number
      if (seen[a][t] !== 0) { continue }
      seen[a][t] = 1
      missing.push(t)
      for (const p of trace.txns[t].parents ?? []) {
        if (seen[a][p] === 0) { stack.push(p) }
      }
    }
    missing.sort((x, y) => x - y)
    for (const t of missing) {
      for (const op of ops[t]) {
        const result = docs[a].apply(op)
        if (!result.ok) { throw new Error(`txn ${t} to agent ${a}: ${result.error}`) }
      }
    }
  }
  trace.txns.forEach((txn, t) => {
    const a = txn.agent ?? 0
    deliver(a, txn.parents ?? [])
    const doc = docs[a]
    for (const [pos, del, text] of txn.patches) {
      if (del > 0) { ops[t].push(doc.delete(pos, del) as Op) }
      if (text.length > 0) { ops[t].push(doc.insert(pos, text) as Op) }
    }
    seen[a][t] = 1
  })
  const all = trace.txns.map((_, t) => t)
  for (let a = 0; a < agents; a++) { deliver(a, all) }
  return docs
}
