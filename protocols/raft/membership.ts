import { NODE_ID_LENGTH_MAX } from './config.ts'
import type { ConfChange, ConfChangeSingle, ConfState, NodeId } from './types.ts'

/**
 * Members (voters of either half and learners, each counted once) one
 * configuration may hold. A conf change that would exceed it is refused
 * (see applyConfChange), so every configuration fits a snapshot, which
 * names at most this many nodes per list (validate.ts).
 */
export const CONF_MEMBERS_MAX = 1024

/**
 * Membership configuration and the rules for changing it (etcd's
 * confchange package): simple changes alter the voters by at most one, joint
 * changes go through C_old,new, and invariants are checked on every result.
 */
export class Membership {
  readonly voters: ReadonlySet<NodeId>
  readonly votersOutgoing: ReadonlySet<NodeId>
  readonly learners: ReadonlySet<NodeId>
  readonly learnersNext: ReadonlySet<NodeId>
  readonly autoLeave: boolean

  constructor (conf: ConfState) {
    this.voters = new Set(conf.voters)
    this.votersOutgoing = new Set(conf.votersOutgoing)
    this.learners = new Set(conf.learners)
    this.learnersNext = new Set(conf.learnersNext)
    this.autoLeave = conf.autoLeave
  }

  static empty (): Membership {
    return new Membership({ voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false })
  }

  get isJoint (): boolean {
    return this.votersOutgoing.size > 0
  }

  isVoter (id: NodeId): boolean {
    return this.voters.has(id) || this.votersOutgoing.has(id)
  }

  /** Anyone the leader replicates to: voters of either half and learners. */
  isMember (id: NodeId): boolean {
    return this.isVoter(id) || this.learners.has(id)
  }

  /** Every node that needs a Progress on the leader, sorted for determinism. */
  members (): NodeId[] {
    return [...new Set([...this.voters, ...this.votersOutgoing, ...this.learners])].sort()
  }

  /** Distinct members (learnersNext are outgoing voters, so counted already). */
  get memberCount (): number {
    let count = this.voters.size + this.learners.size
    for (const id of this.votersOutgoing) { if (!this.voters.has(id)) { count++ } }
    return count
  }

  voterIds (): NodeId[] {
    return [...new Set([...this.voters, ...this.votersOutgoing])].sort()
  }

  toConfState (): ConfState {
    return {
      voters: [...this.voters].sort(),
      votersOutgoing: [...this.votersOutgoing].sort(),
      learners: [...this.learners].sort(),
      learnersNext: [...this.learnersNext].sort(),
      autoLeave: this.autoLeave
    }
  }

  /** Describes the first broken invariant, or null. */
  invariantViolation (): string | null {
    for (const id of this.learners) {
      if (this.voters.has(id) || this.votersOutgoing.has(id)) { return `${id} is both learner and voter` }
    }
    for (const id of this.learnersNext) {
      if (!this.votersOutgoing.has(id)) { return `${id} is in learnersNext but not an outgoing voter` }
      if (this.learners.has(id)) { return `${id} is in learnersNext and learners` }
    }
    if (!this.isJoint) {
      if (this.learnersNext.size > 0) { return 'learnersNext must be empty when not joint' }
      if (this.autoLeave) { return 'autoLeave must be false when not joint' }
    }
    return null
  }
}

/**
 * A conf-change entry's payload: a ConfChange, or the unsafe forced
 * configuration written by unsafeForceNewCluster().
 */
export type ConfChangeRecord = ConfChange | { force: { voters: NodeId[], learners: NodeId[] } }

/**
 * Applies `record` to `current`; returns the new membership or the reason it
 * is invalid. A result with more than CONF_MEMBERS_MAX members is invalid,
 * unless it has no more than `current` (a configuration over the bound,
 * from before it existed, may still shrink).
 */
export function applyConfChange (current: Membership, record: ConfChangeRecord): Membership | string {
  const next = applyConfRecord(current, record)
  if (typeof next === 'string') { return next }
  if (next.memberCount > CONF_MEMBERS_MAX && ('force' in record || next.memberCount > current.memberCount)) {
    return tooManyMembers(next.memberCount)
  }
  return next
}

const TOO_MANY_MEMBERS = 'the configuration would have '

function tooManyMembers (members: number): string {
  return `${TOO_MANY_MEMBERS}${members} members, more than CONF_MEMBERS_MAX (${CONF_MEMBERS_MAX})`
}

/** Whether applyConfChange refused because the configuration would exceed CONF_MEMBERS_MAX. */
export function isTooManyMembers (refusal: string): boolean {
  return refusal.startsWith(TOO_MANY_MEMBERS)
}

function applyConfRecord (current: Membership, record: ConfChangeRecord): Membership | string {
  if ('force' in record) {
    const forced = new Membership({ voters: record.force.voters, votersOutgoing: [], learners: record.force.learners, learnersNext: [], autoLeave: false })
    if (forced.voters.size === 0) { return 'forced configuration has no voters' }
    return forced.invariantViolation() ?? forced
  }
  const violation = current.invariantViolation()
  if (violation !== null) { return violation }
  if (record.changes.length === 0 && record.joint !== true) { return leaveJoint(current) }

  const draft = {
    voters: new Set(current.voters),
    votersOutgoing: new Set(current.votersOutgoing),
    learners: new Set(current.learners),
    learnersNext: new Set(current.learnersNext)
  }
  const entersJoint = record.joint === true || votersDelta(current.voters, record.changes) > 1
  if (current.isJoint) { return 'configuration is already joint' }
  if (entersJoint) {
    if (current.voters.size === 0) { return 'cannot make a zero-voter configuration joint' }
    draft.votersOutgoing = new Set(current.voters)
  }
  for (const change of record.changes) {
    const error = applySingle(draft, change)
    if (error !== null) { return error }
  }
  if (draft.voters.size === 0) { return 'removed all voters' }
  if (!entersJoint && symmetricDifference(current.voters, draft.voters) > 1) {
    return 'more than one voter changed without entering joint consensus'
  }
  const next = new Membership({
    voters: [...draft.voters],
    votersOutgoing: [...draft.votersOutgoing],
    learners: [...draft.learners],
    learnersNext: [...draft.learnersNext],
    autoLeave: entersJoint
  })
  return next.invariantViolation() ?? next
}

interface DraftConf {
  voters: Set<NodeId>
  votersOutgoing: Set<NodeId>
  learners: Set<NodeId>
  learnersNext: Set<NodeId>
}

function applySingle (draft: DraftConf, change: ConfChangeSingle): string | null {
  const id = change.node
  switch (change.type) {
    case 'promote':
      if (!draft.learners.has(id) && !draft.learnersNext.has(id)) { return `${id} is not a learner` }
      makeVoter(draft, id)
      return null
    case 'add-voter':
      makeVoter(draft, id)
      return null
    case 'add-learner':
      if (draft.learners.has(id)) { return null }
      draft.voters.delete(id)
      // A voter still in the outgoing half cannot also be a learner: stage it.
      if (draft.votersOutgoing.has(id)) { draft.learnersNext.add(id) } else { draft.learners.add(id) }
      return null
    case 'remove':
      draft.voters.delete(id)
      draft.learners.delete(id)
      draft.learnersNext.delete(id)
      return null
    default:
      return `unknown change type ${String((change as { type: unknown }).type)}`
  }
}

function makeVoter (draft: DraftConf, id: NodeId): void {
  draft.learners.delete(id)
  draft.learnersNext.delete(id)
  draft.voters.add(id)
}

function leaveJoint (current: Membership): Membership | string {
  if (!current.isJoint) { return 'cannot leave a non-joint configuration' }
  const next = new Membership({
    voters: [...current.voters],
    votersOutgoing: [],
    learners: [...current.learners, ...current.learnersNext],
    learnersNext: [],
    autoLeave: false
  })
  return next.invariantViolation() ?? next
}

/** How many voters the changes would add or remove, applied to `voters` alone. */
function votersDelta (voters: ReadonlySet<NodeId>, changes: ConfChangeSingle[]): number {
  const after = new Set(voters)
  for (const change of changes) {
    if (change.type === 'add-voter' || change.type === 'promote') { after.add(change.node) } else { after.delete(change.node) }
  }
  return symmetricDifference(voters, after)
}

function symmetricDifference (a: ReadonlySet<NodeId>, b: ReadonlySet<NodeId>): number {
  let n = 0
  for (const id of a) { if (!b.has(id)) { n++ } }
  for (const id of b) { if (!a.has(id)) { n++ } }
  return n
}

const CONF_CHANGE_TYPES = new Set(['add-voter', 'add-learner', 'promote', 'remove'])
/** Upper bound on single changes in one ConfChange. */
export const CONF_CHANGES_MAX = 64

export function isValidNodeId (value: unknown): value is NodeId {
  return typeof value === 'string' && value.length > 0 && value.length <= NODE_ID_LENGTH_MAX
}

/** Validates the shape of a ConfChange from an untrusted caller or log entry. */
export function checkConfChange (value: unknown): ConfChange | string {
  if (typeof value !== 'object' || value === null) { return 'conf change must be an object' }
  const { changes, joint } = value as Record<string, unknown>
  if (!Array.isArray(changes)) { return 'conf change: changes must be an array' }
  if (changes.length > CONF_CHANGES_MAX) { return `conf change: more than ${CONF_CHANGES_MAX} changes` }
  if (joint !== undefined && typeof joint !== 'boolean') { return 'conf change: joint must be a boolean' }
  const parsed: ConfChangeSingle[] = []
  for (const change of changes) {
    if (typeof change !== 'object' || change === null) { return 'conf change: each change must be an object' }
    const { type, node } = change as Record<string, unknown>
    if (typeof type !== 'string' || !CONF_CHANGE_TYPES.has(type)) { return `conf change: unknown type ${String(type)}` }
    if (!isValidNodeId(node)) { return 'conf change: node must be a non-empty string' }
    parsed.push({ type: type as ConfChangeSingle['type'], node })
  }
  return joint === undefined ? { changes: parsed } : { changes: parsed, joint }
}

/** Deterministic encoding of a conf-change entry payload (UTF-8 JSON, fixed key order). */
export function encodeConfChange (record: ConfChangeRecord): Uint8Array {
  const plain = 'force' in record
    ? { force: { voters: [...record.force.voters].sort(), learners: [...record.force.learners].sort() } }
    : { changes: record.changes.map(c => ({ type: c.type, node: c.node })), ...(record.joint === undefined ? {} : { joint: record.joint }) }
  return new TextEncoder().encode(JSON.stringify(plain))
}

export function decodeConfChange (data: Uint8Array): ConfChangeRecord | string {
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data))
  } catch {
    return 'conf change: not UTF-8 JSON'
  }
  if (typeof value === 'object' && value !== null && 'force' in value) {
    const force = (value as { force: unknown }).force
    if (typeof force !== 'object' || force === null) { return 'conf change: bad force' }
    const { voters, learners } = force as Record<string, unknown>
    if (!isNodeIdList(voters) || !isNodeIdList(learners)) { return 'conf change: bad force lists' }
    return { force: { voters, learners } }
  }
  return checkConfChange(value)
}

export function isNodeIdList (value: unknown): value is NodeId[] {
  return Array.isArray(value) && value.every(isValidNodeId)
}
