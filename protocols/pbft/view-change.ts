/**
 * The view-change arithmetic shared by the new primary and the receivers
 * of its NEW-VIEW: from a quorum of view changes, the stable checkpoint the
 * view starts from and the batch to re-propose at each seq above it. The
 * receivers recompute it from the view changes carried in the NEW-VIEW and
 * accept only pre-prepares identical to it.
 */
import { batchDigest, checkBatch, checkViewChange, primaryOf, verifySigned } from './certificates.ts'
import { quorumSize } from './config.ts'
import type { ProversOf, StableChecks } from './certificates.ts'
import type { PbftLimits } from './config.ts'
import type { ClientRequest, Digest, NewView, NodeId, PbftCrypto, PrePrepare, StableCheckpoint, ViewChange } from './types.ts'

export interface NewViewPlan {
  /** The highest stable checkpoint among the view changes. */
  stable: StableCheckpoint
  /** One entry per seq in (stable.seq, highest prepared seq]: the batch prepared in the highest view, or the null request. */
  entries: Array<{ seq: number, digest: Digest, batch: ClientRequest[] }>
}

/** Deterministic in the order of `viewChanges`: a tie (same seq and view) keeps the first. */
export function planNewView (viewChanges: ViewChange[], crypto: PbftCrypto): NewViewPlan {
  let stable = viewChanges[0].stable
  for (const viewChange of viewChanges) {
    if (viewChange.stable.seq > stable.seq) { stable = viewChange.stable }
  }
  const best = new Map<number, PrePrepare>()
  let top = stable.seq
  for (const viewChange of viewChanges) {
    for (const { prePrepare } of viewChange.prepared) {
      if (prePrepare.seq <= stable.seq) { continue }
      const held = best.get(prePrepare.seq)
      if (held === undefined || prePrepare.view > held.view) { best.set(prePrepare.seq, prePrepare) }
      top = Math.max(top, prePrepare.seq)
    }
  }
  const entries: NewViewPlan['entries'] = []
  let nullDigest: Digest | undefined
  for (let seq = stable.seq + 1; seq <= top; seq++) {
    const prePrepare = best.get(seq)
    if (prePrepare !== undefined) {
      entries.push({ seq, digest: prePrepare.digest, batch: prePrepare.batch })
    } else {
      nullDigest ??= batchDigest([], crypto)
      entries.push({ seq, digest: nullDigest, batch: [] })
    }
  }
  return { stable, entries }
}

/**
 * A NEW-VIEW in full: from the primary of its view, validly signed, a
 * quorum of valid view changes for that view from distinct replicas, and
 * exactly the pre-prepares they determine, each signed by the primary.
 */
export function checkNewView (
  newView: NewView, replicas: readonly NodeId[], crypto: PbftCrypto, limits: PbftLimits, provers: ProversOf = () => replicas,
  checks: StableChecks = {}
): { ok: true, plan: NewViewPlan } | { ok: false, error: string, badSignature?: true } {
  const primary = primaryOf(newView.view, replicas)
  if (newView.replica !== primary) { return { ok: false, error: `new view ${newView.view} not from its primary` } }
  if (!verifySigned(newView, crypto)) { return { ok: false, error: 'new view has an invalid signature', badSignature: true } }
  const senders = new Set<NodeId>()
  for (const viewChange of newView.viewChanges) {
    if (viewChange.view !== newView.view) { return { ok: false, error: `a view change for view ${viewChange.view} in new view ${newView.view}` } }
    if (senders.has(viewChange.replica)) { return { ok: false, error: `two view changes from ${viewChange.replica}` } }
    senders.add(viewChange.replica)
    const problem = checkViewChange(viewChange, replicas, crypto, limits, provers, checks)
    if (problem !== null) { return { ok: false, error: problem } }
  }
  const needed = quorumSize(replicas.length)
  if (senders.size < needed) { return { ok: false, error: `${senders.size} view changes, ${needed} needed` } }
  const plan = planNewView(newView.viewChanges, crypto)
  if (newView.prePrepares.length !== plan.entries.length) {
    return { ok: false, error: `${newView.prePrepares.length} pre-prepares, ${plan.entries.length} expected` }
  }
  for (let i = 0; i < plan.entries.length; i++) {
    const expected = plan.entries[i]
    const prePrepare = newView.prePrepares[i]
    if (prePrepare.view !== newView.view || prePrepare.seq !== expected.seq || prePrepare.digest !== expected.digest || prePrepare.replica !== primary) {
      return { ok: false, error: `pre-prepare for seq ${expected.seq} differs from the one the view changes determine` }
    }
    if (!verifySigned(prePrepare, crypto)) { return { ok: false, error: `pre-prepare for seq ${expected.seq} has an invalid signature`, badSignature: true } }
    const batchProblem = checkBatch(prePrepare, crypto, limits, false)
    if (batchProblem !== null) { return { ok: false, error: `pre-prepare for seq ${expected.seq}: ${batchProblem}` } }
  }
  return { ok: true, plan }
}
