/**
 * A deterministic in-process network for DKG nodes: every message is
 * broadcast to every other online participant at once, then all nodes tick.
 * Faults are a set of offline participants and a `tamper` hook that may
 * rewrite or drop a message per recipient (a cheating dealer, a lying
 * complainer, a lost deal).
 */
import { G1, randomScalar } from '../../identity/bls.ts'
import { commit, encodeCommitments, decodeCommitments } from '../../identity/threshold/feldman.ts'
import { evaluatePolynomial, randomPolynomial } from '../../identity/threshold/shamir.ts'
import { sealShare } from '../../identity/threshold/share-box.ts'
import { DkgNode } from '../../protocols/dkg/dkg-node.ts'
import { boxContext, encryptionKeyProof } from '../../protocols/dkg/keys.ts'
import { seededRandomBytes } from './threshold-helpers.ts'
import type { RandomBytes } from '../../identity/bls.ts'
import type { DealMessage, DkgConfig, DkgMember, DkgMessage, DkgOutcome, DkgReshare } from '../../protocols/dkg/types.ts'

export interface Participant {
  id: string
  encryptionSecret: bigint
  random: RandomBytes
}

export function participants (ids: string[], seed: string): Participant[] {
  return ids.map(id => {
    const random = seededRandomBytes(`${seed}:${id}`)
    return { id, encryptionSecret: randomScalar(random), random }
  })
}

export function membersOf (list: Participant[]): DkgMember[] {
  return list.map((p, i) => ({
    id: p.id,
    index: i + 1,
    encryptionKey: G1.BASE.multiply(p.encryptionSecret).toBytes(),
    encryptionKeyProof: encryptionKeyProof(p.id, p.encryptionSecret, p.random)
  }))
}

export type Tamper = (message: DkgMessage, to: string) => DkgMessage | null

export interface RunOptions {
  offline?: ReadonlySet<string>
  tamper?: Tamper
  ticksMax?: number
}

export interface RunResult {
  outcomes: Map<string, DkgOutcome>
  /** Messages a node refused, with its reason. */
  refused: Array<{ to: string, type: string, from: string, reason: string }>
  ticks: number
}

/** Runs the given nodes (id → config) until every online one has an outcome. */
export function run (configs: Map<string, DkgConfig>, options: RunOptions = {}): RunResult {
  const offline = options.offline ?? new Set()
  const nodes = new Map<string, DkgNode>()
  for (const [id, config] of configs) {
    if (!offline.has(id)) { nodes.set(id, new DkgNode(config)) }
  }
  const outcomes = new Map<string, DkgOutcome>()
  const refused: RunResult['refused'] = []
  const ticksMax = options.ticksMax ?? 10_000
  let ticks = 0
  /** Delivers one node's ready batch to every other online node; false when it had nothing. */
  const flush = (id: string, node: DkgNode): boolean => {
    if (!node.hasReady()) { return false }
    const ready = node.ready()
    if (ready.outcome !== undefined) { outcomes.set(id, ready.outcome) }
    for (const message of ready.messages) {
      for (const [to, receiver] of nodes) {
        if (to === id) { continue }
        const delivered = options.tamper === undefined ? message : options.tamper(message, to)
        if (delivered === null) { continue }
        const result = receiver.step(delivered)
        if (!result.ok) { refused.push({ to, type: message.type, from: message.from, reason: result.reason }) }
      }
    }
    return true
  }
  while (outcomes.size < nodes.size) {
    if (ticks > ticksMax) { throw new Error(`no outcome after ${ticksMax} ticks`) }
    while ([...nodes].map(([id, node]) => flush(id, node)).some(Boolean)) { /* until quiet */ }
    if (outcomes.size === nodes.size) { break }
    for (const node of nodes.values()) { node.tick() }
    ticks++
  }
  return { outcomes, refused, ticks }
}

/** Configs of a fresh DKG among `list`, threshold t. */
export function freshConfigs (list: Participant[], t: number, session = 'session-1'): Map<string, DkgConfig> {
  const members = membersOf(list)
  return new Map(list.map(p => [p.id, {
    self: p.id,
    session: new TextEncoder().encode(session),
    members,
    threshold: t,
    encryptionSecret: p.encryptionSecret,
    randomBytes: p.random
  }]))
}

/** Configs of a reshare from an old group (its outcome) to `newList` with threshold t. */
export function reshareConfigs (old: { list: Participant[], threshold: number, outcomes: Map<string, DkgOutcome> }, newList: Participant[], t: number, session = 'reshare-1'): Map<string, DkgConfig> {
  const anyDone = [...old.outcomes.values()].find(o => o.status === 'done')
  if (anyDone?.status !== 'done') { throw new Error('the old group has no key') }
  const reshare: DkgReshare = {
    dealers: old.list.map((p, i) => ({ id: p.id, index: i + 1 })),
    threshold: old.threshold,
    commitments: anyDone.commitments
  }
  const members = membersOf(newList)
  const everyone = new Map([...old.list, ...newList].map(p => [p.id, p]))
  return new Map([...everyone.values()].map(p => {
    const oldOutcome = old.outcomes.get(p.id)
    const oldShare = oldOutcome?.status === 'done' ? oldOutcome.share?.value : undefined
    const isMember = newList.some(m => m.id === p.id)
    return [p.id, {
      self: p.id,
      session: new TextEncoder().encode(session),
      members,
      threshold: t,
      reshare,
      ...(oldShare !== undefined ? { oldShare } : {}),
      ...(isMember ? { encryptionSecret: p.encryptionSecret } : {}),
      randomBytes: p.random
    }]
  }))
}

/**
 * A cheating dealer's deal: valid commitments, but the box for `victim`
 * seals a share that is off by one (properly encrypted, so only the
 * commitments can tell).
 */
export function cheatingDeal (honest: DealMessage, members: DkgMember[], threshold: number, victim: string, random: RandomBytes): DealMessage {
  const coefficients = randomPolynomial(randomScalar(random), threshold, random)
  const r = randomScalar(random)
  const ephemeral = G1.BASE.multiply(r)
  const boxes = members.map(m => {
    const share = evaluatePolynomial(coefficients, BigInt(m.index)) + (m.id === victim ? 1n : 0n)
    const key = decodeCommitments([m.encryptionKey], 1) as ReturnType<typeof commit>
    return sealShare(r, ephemeral, key[0], share, boxContext(honest.session, honest.from, m.id))
  })
  return { ...honest, commitments: encodeCommitments(commit(coefficients)), ephemeral: ephemeral.toBytes(), boxes }
}
