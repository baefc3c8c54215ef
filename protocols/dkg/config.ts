/*
 * Limits and timing of the DKG core, and the checks that refuse a
 * configuration that cannot work.
 *
 * Phase timeouts grow with the number of participants n: each node opens
 * and checks one box per dealer and judges every complaint, and every
 * message a phase waits for has to cross the network, so the work and the
 * waiting of a phase are linear in n. A phase ends early as soon as
 * everything it waits for has arrived; the timeout only bounds a phase
 * that waits for someone who is silent.
 *
 *   T = phaseTimeoutTicks(n) = phaseBaseTicks + phaseTicksPerParticipant · n
 *
 * and phase k (deal 1, response 2, justification 3) ends at the latest k·T
 * ticks after the start (see DkgNode). With the defaults and a 100 ms tick,
 * T is 2.8 s for n = 4, 5.2 s for n = 16 and 14.8 s for n = 64.
 */
import { decodeG1 } from '../../identity/bls.ts'
import { SHARE_INDEX_MAX } from '../../identity/threshold/shamir.ts'
import { EncryptionKeyChecks } from './keys.ts'
import type { DkgConfig, DkgMember, DkgReshare } from './types.ts'
import type { G1Point } from '../../identity/bls.ts'

/** Members of a group, and dealers of a reshare. */
export const PARTICIPANTS_MAX = 256
export const SESSION_BYTES_MAX = 64
export const ID_CHARS_MAX = 128
export const PHASE_BASE_TICKS = 20
export const PHASE_TICKS_PER_PARTICIPANT = 2

export function phaseTimeoutTicks (participants: number, baseTicks = PHASE_BASE_TICKS, perParticipantTicks = PHASE_TICKS_PER_PARTICIPANT): number {
  return baseTicks + perParticipantTicks * participants
}

/**
 * Throws a RangeError or TypeError naming what is wrong with the
 * configuration; returns the members' decoded encryption keys.
 */
export function checkConfig (config: DkgConfig): Map<string, G1Point> {
  const { members, threshold, reshare } = config
  checkSession(config.session)
  if (!Array.isArray(members) || members.length < 1 || members.length > PARTICIPANTS_MAX) { throw new RangeError(`a DKG has 1..${PARTICIPANTS_MAX} members`) }
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > members.length) { throw new RangeError(`threshold must be in 1..${members.length}, got ${threshold}`) }
  if (config.keyChecks !== undefined && !(config.keyChecks instanceof EncryptionKeyChecks)) { throw new TypeError('keyChecks must be an EncryptionKeyChecks') }
  const keys = checkMembers(members, config.keyChecks ?? new EncryptionKeyChecks())
  if (reshare !== undefined) { checkReshare(reshare) }
  checkSelf(config)
  if (typeof config.randomBytes !== 'function') { throw new TypeError('randomBytes must be a function') }
  for (const ticks of [config.phaseBaseTicks, config.phaseTicksPerParticipant]) {
    if (ticks !== undefined && (!Number.isInteger(ticks) || ticks < 1)) { throw new RangeError('phase ticks must be positive integers') }
  }
  return keys
}

function checkSelf (config: DkgConfig): void {
  const isMember = config.members.some(m => m.id === config.self)
  const isDealer = (config.reshare?.dealers ?? config.members).some(d => d.id === config.self)
  if (!isMember && !isDealer) { throw new RangeError(`${config.self} is neither a dealer nor a member`) }
  if (isMember && typeof config.encryptionSecret !== 'bigint') { throw new TypeError('a member needs its encryptionSecret') }
  if (config.reshare !== undefined && isDealer && typeof config.oldShare !== 'bigint') { throw new TypeError('a reshare dealer needs its oldShare') }
}

function checkMembers (members: DkgMember[], checks: EncryptionKeyChecks): Map<string, G1Point> {
  checkIds('member', members)
  const keys = new Map<string, G1Point>()
  for (const m of members) {
    const key = decodeG1(m.encryptionKey)
    if (typeof key === 'string') { throw new TypeError(`member ${m.id}: bad encryption key`) }
    if (!checks.verify(m, key)) { throw new TypeError(`member ${m.id}: the encryption key's proof of possession does not verify`) }
    keys.set(m.id, key)
  }
  return keys
}

function checkReshare (reshare: DkgReshare): void {
  if (!Array.isArray(reshare.dealers) || reshare.dealers.length < 1 || reshare.dealers.length > PARTICIPANTS_MAX) { throw new RangeError(`a reshare has 1..${PARTICIPANTS_MAX} dealers`) }
  checkIds('dealer', reshare.dealers)
  if (!Number.isInteger(reshare.threshold) || reshare.threshold < 1 || reshare.threshold > reshare.dealers.length) { throw new RangeError('the old threshold must be in 1..(number of dealers)') }
  if (!Array.isArray(reshare.commitments) || reshare.commitments.length !== reshare.threshold) { throw new RangeError('the old commitments must number the old threshold') }
  for (const c of reshare.commitments) {
    if (typeof decodeG1(c) === 'string') { throw new TypeError('bad old commitment') }
  }
}

function checkSession (session: Uint8Array): void {
  if (!(session instanceof Uint8Array) || session.length < 1 || session.length > SESSION_BYTES_MAX) { throw new RangeError(`a session id is 1..${SESSION_BYTES_MAX} bytes`) }
}

function checkIds (role: string, list: Array<{ id: string, index: number }>): void {
  const ids = new Set<string>()
  const indices = new Set<number>()
  for (const p of list) {
    if (typeof p.id !== 'string' || p.id.length < 1 || p.id.length > ID_CHARS_MAX) { throw new TypeError(`a ${role} id is a string of 1..${ID_CHARS_MAX} characters`) }
    if (!Number.isInteger(p.index) || p.index < 1 || p.index > SHARE_INDEX_MAX) { throw new RangeError(`${role} ${p.id}: index must be in 1..${SHARE_INDEX_MAX}`) }
    if (ids.has(p.id) || indices.has(p.index)) { throw new RangeError(`${role} ${p.id}: duplicate id or index`) }
    ids.add(p.id)
    indices.add(p.index)
  }
}
