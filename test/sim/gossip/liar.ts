/**
 * A lying member: it runs a real core, but its outbound deltas are
 * rewritten now and then. It holds only its own signing key, so every lie
 * about another node's entries carries a signature that does not verify:
 *
 * - 'bad-signature': another node's entry with its value changed;
 * - 'jumped-version': another node's entry moved far above its version;
 * - 'forged-entry': an entry the victim never wrote, signed with the liar's key.
 *
 * Receivers must refuse each such message whole (run.ts checks that no
 * entry in an honest store was ever anything but what its owner signed).
 */
import { entryPayload, VERSION_MAX } from '../../../protocols/gossip/index.ts'
import type { Tamper } from './cluster.ts'
import type { Rng } from '../../../protocols/common/rng.ts'
import type { EntryAuth, GossipMessage, NodeDelta, NodeId, WireEntry } from '../../../protocols/gossip/index.ts'

export const LIES = ['bad-signature', 'jumped-version', 'forged-entry'] as const
export type Lie = typeof LIES[number]

/**
 * @param liar - the liar's id
 * @param auth - the liar's own signer (all it has)
 * @param victims - the nodes it may forge entries of
 * @param rate - the share of its deltas it lies in
 */
export function liarTamper (liar: NodeId, auth: EntryAuth, victims: readonly NodeId[], rate: number): Tamper {
  return (message: GossipMessage, rng: Rng): GossipMessage => {
    if (message.type !== 'delta' || !rng.chance(rate)) { return message }
    const lie = LIES[rng.intBetween(0, LIES.length - 1)]
    const others = message.deltas.filter(d => d.node !== liar && d.node !== message.to)
    if (lie !== 'forged-entry' && others.length > 0) {
      const target = others[rng.intBetween(0, others.length - 1)]
      return replaceDelta(message, target, lie === 'bad-signature' ? changeValue(target, rng) : jumpVersion(target, rng))
    }
    const candidates = victims.filter(v => v !== liar && v !== message.to)
    if (candidates.length === 0) { return message }
    return forgeEntry(message, candidates[rng.intBetween(0, candidates.length - 1)], auth, rng)
  }
}

function replaceDelta (message: GossipMessage & { type: 'delta' }, old: NodeDelta, replacement: NodeDelta): GossipMessage {
  return { ...message, deltas: message.deltas.map(d => d === old ? replacement : d) }
}

/** Copies a delta with entry `i` replaced (entries share their bytes with the liar's store: never modified in place). */
function withEntry (d: NodeDelta, i: number, entry: WireEntry): NodeDelta {
  return { ...d, entries: d.entries.map((e, j) => j === i ? entry : e) }
}

function changeValue (d: NodeDelta, rng: Rng): NodeDelta {
  const i = rng.intBetween(0, d.entries.length - 1)
  const e = d.entries[i]
  if (e.key === '') { return jumpVersion(d, rng) }
  const value = e.value === null || e.value.byteLength === 0 ? Uint8Array.of(0x66) : Uint8Array.from(e.value, (b, k) => k === 0 ? b ^ 0xff : b)
  return withEntry(d, i, { ...e, value })
}

function jumpVersion (d: NodeDelta, rng: Rng): NodeDelta {
  const i = d.entries.length - 1
  const e = d.entries[i]
  return withEntry(d, i, { ...e, version: Math.min(VERSION_MAX, e.version + rng.intBetween(1, 2 ** 40)) })
}

/** An entry `victim` never wrote, above what the delta (or version 0) says of it, signed by the liar. */
function forgeEntry (message: GossipMessage & { type: 'delta' }, victim: NodeId, auth: EntryAuth, rng: Rng): GossipMessage {
  const existing = message.deltas.find(d => d.node === victim)
  const version = (existing?.entries.at(-1)?.version ?? 0) + rng.intBetween(1, 3)
  const key = `forged-${rng.intBetween(0, 3)}`
  const value = Uint8Array.of(0xba, 0xd0)
  const forged: WireEntry = { key, value, version, signature: auth.sign(entryPayload(victim, key, value, version)), ageTicks: 0 }
  if (existing !== undefined) {
    if (existing.entries.some(e => e.key === key)) { return message }
    return replaceDelta(message, existing, { ...existing, entries: [...existing.entries, forged] })
  }
  return { ...message, deltas: [...message.deltas, { node: victim, after: 0, entries: [forged] }] }
}
