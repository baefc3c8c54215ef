import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { G1 } from '../../identity/bls.ts'
import { decodeCommitments } from '../../identity/threshold/feldman.ts'
import { ThresholdPublicKey, combine, partialSign, verifyGroupSignature } from '../../identity/threshold/tbls.ts'
import { proveEquality } from '../../identity/zk/dleq.ts'
import { encodeScalarPair } from '../../identity/zk/schnorr.ts'
import { BLS12_381_G1 } from '../../identity/zk/transcript.ts'
import { PARTICIPANTS_MAX, phaseTimeoutTicks } from '../../protocols/dkg/config.ts'
import { DkgNode } from '../../protocols/dkg/dkg-node.ts'
import { complaintContext, EncryptionKeyChecks, KEY_CHECKS_MAX, verifyEncryptionKey } from '../../protocols/dkg/keys.ts'
import { cheatingDeal, freshConfigs, membersOf, participants, reshareConfigs, run } from './dkg-harness.ts'
import { seededRandomBytes, toHex } from './threshold-helpers.ts'
import type { RunResult } from './dkg-harness.ts'
import type { DealMessage, DkgOutcome } from '../../protocols/dkg/types.ts'

const ids = (n: number, prefix = 'p'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`)
const message = new TextEncoder().encode('beacon round 7')

type Done = Extract<DkgOutcome, { status: 'done' }>

function done (result: RunResult, id: string): Done {
  const outcome = result.outcomes.get(id)
  if (outcome?.status !== 'done') { throw new Error(`${id}: ${JSON.stringify(outcome)}`) }
  return outcome
}

/** Every listed node finished with the same key and commitments; the key signs with any t of their shares. */
function expectWorkingGroup (result: RunResult, members: string[], t: number, signers = members): Done {
  const size = Math.max(...members.map(id => done(result, id).share?.index ?? 0))
  const first = done(result, members[0])
  for (const id of members) {
    const o = done(result, id)
    expect(toHex(o.groupKey)).to.equal(toHex(first.groupKey))
    expect(o.commitments.map(toHex)).to.deep.equal(first.commitments.map(toHex))
    expect(o.qualified).to.deep.equal(first.qualified)
  }
  const key = new ThresholdPublicKey(decodeCommitments(first.commitments, t) as ReturnType<typeof G1.fromBytes>[], size)
  const partials = signers.slice(0, t).map(id => {
    const share = done(result, id).share
    if (share === null) { throw new Error(`${id} has no share`) }
    return partialSign(share, message)
  })
  const signed = combine(key, message, partials)
  expect(signed.ok).to.equal(true)
  expect(signed.ok && verifyGroupSignature(first.groupKey, message, signed.signature)).to.equal(true)
  return first
}

describe('DKG (Pedersen, Feldman-VSS, publicly verifiable complaints)', () => {
  for (const [n, t] of [[4, 3], [7, 5]]) {
    it(`n = ${n}, t = ${t}: every member ends with the same group key and a working share`, () => {
      const list = participants(ids(n), `fresh-${n}`)
      const result = run(freshConfigs(list, t))
      const outcome = expectWorkingGroup(result, ids(n), t, ids(n).reverse())
      expect(outcome.qualified).to.deep.equal(ids(n))
      expect(outcome.excluded).to.deep.equal([])
      expect(result.refused).to.deep.equal([])
    })

    it(`n = ${n}, t = ${t}: a dealer that sends a bad share is complained about, proven bad and excluded; the rest succeed`, () => {
      const list = participants(ids(n), `cheat-${n}`)
      const configs = freshConfigs(list, t)
      const members = membersOf(list)
      const cheater = 'p2'
      const victim = 'p3'
      const forged = new Map<string, DealMessage>()
      const result = run(configs, {
        tamper: (m) => {
          if (m.type !== 'deal' || m.from !== cheater) { return m }
          const deal = forged.get('deal') ?? cheatingDeal(m, members, t, victim, seededRandomBytes('cheater'))
          forged.set('deal', deal)
          return deal
        }
      })
      const honest = ids(n).filter(id => id !== cheater)
      const outcome = expectWorkingGroup(result, honest, t)
      expect(outcome.qualified).to.deep.equal(honest)
      expect(outcome.excluded).to.deep.equal([{ dealer: cheater, reason: `${victim} proved its share bad` }])
    })
  }

  it('any t of the n = 7 members\' DKG shares sign alike; t − 1 cannot', () => {
    const list = participants(ids(7), 'property')
    const result = run(freshConfigs(list, 5))
    const first = done(result, 'p1')
    const key = new ThresholdPublicKey(decodeCommitments(first.commitments, 5) as ReturnType<typeof G1.fromBytes>[], 7)
    const partials = ids(7).map(id => partialSign(done(result, id).share as { index: number, value: bigint }, message))
    let signature: string | undefined
    fc.assert(fc.property(fc.shuffledSubarray(partials, { minLength: 4, maxLength: 7 }), some => {
      const signed = combine(key, message, some)
      expect(signed.ok).to.equal(some.length >= 5)
      if (signed.ok) {
        signature ??= toHex(signed.signature)
        expect(toHex(signed.signature)).to.equal(signature)
      }
    }), { numRuns: 15 })
  })

  for (const [n, t] of [[4, 3], [7, 5]]) {
    it(`n = ${n}: one participant offline: its deal is missing, it cannot justify, the others (≥ t) succeed after waiting out 3 phase timeouts of ${phaseTimeoutTicks(n)} ticks`, () => {
      const list = participants(ids(n), `offline-${n}`)
      const absent = `p${n}`
      const result = run(freshConfigs(list, t), { offline: new Set([absent]) })
      const present = ids(n).filter(id => id !== absent)
      const outcome = expectWorkingGroup(result, present, t)
      expect(outcome.qualified).to.deep.equal(present)
      expect(outcome.excluded).to.deep.equal([{ dealer: absent, reason: 'no deal' }])
      // The deal phase, the response phase (the absent one never answers) and
      // the justification phase each ran to their deadline: k·T ticks from the start.
      expect(result.ticks).to.equal(3 * phaseTimeoutTicks(n))
    })
  }

  it('a deal lost on the way to one member: it complains "missing", the dealer justifies, everyone keeps the dealer', () => {
    const list = participants(ids(4), 'lost')
    const result = run(freshConfigs(list, 3), { tamper: (m, to) => m.type === 'deal' && m.from === 'p1' && to === 'p4' ? null : m })
    const outcome = expectWorkingGroup(result, ids(4), 3, ['p4', 'p1', 'p2'])
    expect(outcome.qualified).to.deep.equal(ids(4))
    expect(done(result, 'p4').shareMissing).to.deep.equal([])
  })

  it('a justification that repeats a different deal excludes the dealer at every node that holds the first', () => {
    const list = participants(ids(4), 'equivocate')
    const configs = freshConfigs(list, 3)
    const members = membersOf(list)
    let other: DealMessage | undefined
    const result = run(configs, {
      tamper: (m, to) => {
        if (m.from !== 'p1') { return m }
        if (m.type === 'deal') { return to === 'p4' ? null : m }
        if (m.type === 'justification') {
          other ??= cheatingDeal({ ...m, type: 'deal', ...m.deal }, members, 3, '', seededRandomBytes('p1-other'))
          return { ...m, deal: { commitments: other.commitments, ephemeral: other.ephemeral, boxes: other.boxes } }
        }
        return m
      }
    })
    for (const id of ['p2', 'p3']) {
      expect(done(result, id).excluded).to.deep.equal([{ dealer: 'p1', reason: 'its justification repeats a different deal' }])
    }
    expect(done(result, 'p2').qualified).to.deep.equal(['p2', 'p3', 'p4'])
    expect(toHex(done(result, 'p2').groupKey)).to.equal(toHex(done(result, 'p3').groupKey))
    // p4 never saw the first deal and cannot tell: see "Assumptions" in protocols/dkg/README.md.
  })

  it('a false complaint is dismissed: a valid box key whose share checks out does not exclude the dealer', () => {
    const list = participants(ids(4), 'liar')
    const configs = freshConfigs(list, 3)
    const liar = list[3]
    let p1Ephemeral: Uint8Array | undefined
    let lies = 0
    const result = run(configs, {
      tamper: (m) => {
        if (m.type === 'deal' && m.from === 'p1') { p1Ephemeral = m.ephemeral }
        if (m.type !== 'response' || m.from !== liar.id || p1Ephemeral === undefined) { return m }
        const R = G1.fromBytes(p1Ephemeral)
        const proof = proveEquality(BLS12_381_G1, liar.encryptionSecret, R, complaintContext(m.session, 'p1', liar.id), liar.random)
        const lie = { kind: 'bad-share' as const, dealer: 'p1', boxKey: R.multiply(liar.encryptionSecret).toBytes(), proof: encodeScalarPair(proof.challenge, proof.response, 32) }
        const garbage = { kind: 'bad-share' as const, dealer: 'p2', boxKey: G1.BASE.toBytes(), proof: new Uint8Array(64).fill(1) }
        lies++
        return { ...m, complaints: [lie, garbage] }
      }
    })
    expect(lies, 'the liar\'s complaints reached the others').to.be.greaterThan(0)
    const outcome = expectWorkingGroup(result, ids(4), 3)
    expect(outcome.qualified).to.deep.equal(ids(4))
    expect(outcome.excluded).to.deep.equal([])
  })

  it('aborts, naming the phase and reason, when fewer than t dealers qualify', () => {
    const list = participants(ids(4), 'abort')
    const result = run(freshConfigs(list, 3), { offline: new Set(['p3', 'p4']) })
    for (const id of ['p1', 'p2']) {
      const o = result.outcomes.get(id)
      expect(o?.status).to.equal('aborted')
      expect(o?.status === 'aborted' && o.reason).to.equal('2 qualified dealers, 3 needed')
      expect(o?.status === 'aborted' && o.phase).to.equal('justification')
    }
  })
})

describe('DKG resharing', () => {
  const oldList = participants(ids(4, 'o'), 'old-group')
  const oldRun = run(freshConfigs(oldList, 3, 'epoch-1'))
  const old = { list: oldList, threshold: 3, outcomes: oldRun.outcomes }
  const groupKey = toHex(done(oldRun, 'o1').groupKey)

  it('reshares (t = 3, n = 4) to (t = 5, n = 7), keeping the group key; the new group signs, old-only dealers hold no share', () => {
    // Two old members stay, five join.
    const newList = [oldList[0], oldList[1], ...participants(ids(5, 'n'), 'new-group')]
    const result = run(reshareConfigs(old, newList, 5))
    const outcome = expectWorkingGroup(result, newList.map(p => p.id), 5, newList.map(p => p.id).reverse())
    expect(toHex(outcome.groupKey)).to.equal(groupKey)
    expect(outcome.commitments).to.have.length(5)
    expect(outcome.qualified).to.deep.equal(ids(4, 'o'))
    for (const id of ['o3', 'o4']) {
      expect(done(result, id).share).to.equal(null)
      expect(toHex(done(result, id).groupKey)).to.equal(groupKey)
    }
  })

  it('an aborted reshare (only 2 of the 3 needed old dealers deal) leaves the old group signing with its old key', () => {
    const newList = participants(ids(7, 'm'), 'new-group-2')
    const result = run(reshareConfigs(old, newList, 5, 'reshare-2'), { offline: new Set(['o3', 'o4']) })
    for (const [id, o] of result.outcomes) {
      expect(o.status, id).to.equal('aborted')
      expect(o.status === 'aborted' && o.reason).to.equal('2 qualified dealers, 3 needed')
    }
    // The old members' shares and commitments are as they were: 3 of them still make a group signature.
    const key = new ThresholdPublicKey(decodeCommitments(done(oldRun, 'o1').commitments, 3) as ReturnType<typeof G1.fromBytes>[], 4)
    const partials = ['o2', 'o3', 'o4'].map(id => partialSign(done(oldRun, id).share as { index: number, value: bigint }, message))
    const signed = combine(key, message, partials)
    expect(signed.ok && verifyGroupSignature(key, message, signed.signature)).to.equal(true)
    expect(toHex(key.groupKey)).to.equal(groupKey)
  })

  it('a dealer that reshares something other than its old share is excluded; the reshare succeeds with the rest', () => {
    const newList = participants(ids(5, 'k'), 'new-group-3')
    const configs = reshareConfigs(old, newList, 3, 'reshare-3')
    const members = membersOf(newList)
    let forged: DealMessage | undefined
    const result = run(configs, {
      tamper: (m) => {
        if (m.from !== 'o2') { return m }
        if (m.type === 'deal') {
          forged ??= cheatingDeal(m, members, 3, '', seededRandomBytes('o2-cheat'))
          return forged
        }
        // Asked to justify (everyone refused its deal), it repeats the forged deal.
        if (m.type === 'justification' && forged !== undefined) {
          return { ...m, deal: { commitments: forged.commitments, ephemeral: forged.ephemeral, boxes: forged.boxes } }
        }
        return m
      }
    })
    const outcome = expectWorkingGroup(result, newList.map(p => p.id), 3)
    expect(toHex(outcome.groupKey)).to.equal(groupKey)
    expect(outcome.qualified).to.deep.equal(['o1', 'o3', 'o4'])
    expect(outcome.excluded).to.deep.equal([{ dealer: 'o2', reason: 'its justified deal is invalid: the deal does not reshare the dealer\'s old share' }])
    expect(result.refused.filter(r => r.from === 'o2' && r.type === 'deal').map(r => r.reason)).to.include('the deal does not reshare the dealer\'s old share')
  })
})

describe('DKG input checks and limits', () => {
  const list = participants(ids(4), 'checks')
  const configs = freshConfigs(list, 3)
  const config = configs.get('p1')!
  const other = new DkgNode(configs.get('p2')!)
  const deal = other.ready().messages[0] as DealMessage

  it('refuses messages from outside the configuration, of another session, malformed or repeated', () => {
    const node = new DkgNode(config)
    expect(node.step({ ...deal, from: 'mallory' })).to.deep.equal({ ok: false, reason: 'mallory is not a dealer' })
    expect(node.step({ ...deal, from: 'm'.repeat(129) })).to.deep.equal({ ok: false, reason: 'from must be a string of at most 128 characters' })
    expect(node.step({ ...deal, session: new Uint8Array([9]) })).to.deep.equal({ ok: false, reason: 'wrong session' })
    expect(node.step({ ...deal, commitments: deal.commitments.slice(1) })).to.deep.equal({ ok: false, reason: 'a deal has 3 commitments of 48 bytes' })
    expect(node.step({ ...deal, boxes: [...deal.boxes, deal.boxes[0]] })).to.deep.equal({ ok: false, reason: 'a deal has 4 boxes of 48 bytes' })
    expect(node.step({ ...deal, commitments: [new Uint8Array(48), ...deal.commitments.slice(1)] }).ok).to.equal(false)
    expect(node.step({ ...deal, type: 'nonsense' } as any)).to.deep.equal({ ok: false, reason: 'unknown message type' })
    expect(node.step(null as any)).to.deep.equal({ ok: false, reason: 'a message is an object' })
    expect(node.step(deal)).to.deep.equal({ ok: true })
    expect(node.step(deal)).to.deep.equal({ ok: false, reason: 'duplicate deal' })
  })

  it('bounds complaints by the number of dealers and revealed shares by the number of members', () => {
    const node = new DkgNode(config)
    const base = { type: 'response' as const, session: config.session, from: 'p2' }
    const missing = (dealer: string): { kind: 'missing', dealer: string } => ({ kind: 'missing', dealer })
    expect(node.step({ ...base, complaints: [...ids(4), 'p1'].map(missing) })).to.deep.equal({ ok: false, reason: 'at most 4 complaints' })
    expect(node.step({ ...base, complaints: ['p1', 'p1'].map(missing) })).to.deep.equal({ ok: false, reason: 'two complaints against p1' })
    expect(node.step({ ...base, complaints: [missing('zed')] })).to.deep.equal({ ok: false, reason: 'a complaint names a dealer' })
    expect(node.step({ ...base, complaints: [{ kind: 'bad-share', dealer: 'p1', boxKey: new Uint8Array(3), proof: new Uint8Array(64) }] }).ok).to.equal(false)
    const { type: _t, session: _s, from: _f, ...fields } = deal
    const shares = [...ids(4), 'p1'].map(member => ({ member, share: new Uint8Array(32) }))
    expect(node.step({ type: 'justification', session: config.session, from: 'p2', deal: fields, shares })).to.deep.equal({ ok: false, reason: 'at most 4 shares' })
  })

  it(`refuses a configuration above PARTICIPANTS_MAX (${PARTICIPANTS_MAX}) members, or with a key its owner cannot prove`, () => {
    const member = config.members[0]
    const many = Array.from({ length: PARTICIPANTS_MAX + 1 }, (_, i) => ({ ...member, id: `m${i}`, index: i + 1 }))
    expect(() => new DkgNode({ ...config, members: many })).to.throw(RangeError, /1\.\.256 members/)
    const stolen = config.members.map(m => m.id === 'p2' ? { ...m, encryptionKey: config.members[0].encryptionKey } : m)
    expect(() => new DkgNode({ ...config, members: stolen })).to.throw(TypeError, /p2: the encryption key's proof of possession does not verify/)
    expect(() => new DkgNode({ ...config, threshold: 5 })).to.throw(RangeError, /threshold/)
    expect(() => new DkgNode({ ...config, session: new Uint8Array(65) })).to.throw(RangeError, /session/)
    expect(() => new DkgNode({ ...config, self: 'nobody' })).to.throw(RangeError, /neither/)
  })

  it('phase timeouts grow linearly with the number of participants', () => {
    expect(phaseTimeoutTicks(4)).to.equal(28)
    expect(phaseTimeoutTicks(16)).to.equal(52)
    expect(phaseTimeoutTicks(64, 10, 1)).to.equal(74)
    expect(new DkgNode(config).status().phaseTimeoutTicks).to.equal(phaseTimeoutTicks(4))
  })
})

describe('DKG key proof checks remembered (EncryptionKeyChecks)', () => {
  const list = participants(ids(4), 'key-checks')
  const configs = freshConfigs(list, 3)
  const config = configs.get('p1')!

  it('verifies each (id, key, proof) once, remembers a refusal as a refusal, and is what the core checks through', () => {
    const checks = new EncryptionKeyChecks()
    new DkgNode({ ...config, keyChecks: checks }) // eslint-disable-line no-new
    expect(checks.size).to.equal(4)
    new DkgNode({ ...configs.get('p2')!, keyChecks: checks }) // eslint-disable-line no-new
    expect(checks.size).to.equal(4)
    // p2 presenting p1's key with p1's proof: the proof is bound to p1's id, so it is a new entry, and false
    const stolen = config.members.map(m => m.id === 'p2' ? { ...m, encryptionKey: config.members[0].encryptionKey, encryptionKeyProof: config.members[0].encryptionKeyProof } : m)
    for (let i = 0; i < 2; i++) {
      expect(() => new DkgNode({ ...config, members: stolen, keyChecks: checks })).to.throw(TypeError, /p2: the encryption key's proof of possession does not verify/)
    }
    expect(checks.size).to.equal(5)
    expect(checks.verify(stolen[1])).to.equal(false)
    expect(checks.verify(config.members[1])).to.equal(true)
    expect(checks.verify(null as any)).to.equal(false)
    expect(() => new DkgNode({ ...config, keyChecks: { verify: () => true } as any })).to.throw(TypeError, /keyChecks/)
  })

  it('answers exactly as verifyEncryptionKey does, for honest and tampered proofs (property)', () => {
    const checks = new EncryptionKeyChecks()
    const members = config.members
    fc.assert(fc.property(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: -1, max: 63 }), (who, keyOf, flip) => {
      const proof = Uint8Array.from(members[who].encryptionKeyProof)
      if (flip >= 0) { proof[flip] ^= 1 }
      const member = { id: members[who].id, encryptionKey: members[keyOf].encryptionKey, encryptionKeyProof: proof }
      expect(checks.verify(member)).to.equal(verifyEncryptionKey(member))
      expect(checks.verify(member)).to.equal(verifyEncryptionKey(member))
    }), { numRuns: 30 })
  })

  it(`remembers at most KEY_CHECKS_MAX (${KEY_CHECKS_MAX}) answers, and still answers beyond`, () => {
    const checks = new EncryptionKeyChecks()
    const member = config.members[0]
    for (let i = 0; i < KEY_CHECKS_MAX + 10; i++) {
      // malformed proofs: refused before any multiplication, so this is quick
      expect(checks.verify({ ...member, id: `m${i}`, encryptionKeyProof: new Uint8Array(3) })).to.equal(false)
    }
    expect(checks.size).to.equal(KEY_CHECKS_MAX)
    expect(checks.verify(member)).to.equal(true)
    expect(checks.size).to.equal(KEY_CHECKS_MAX)
  })
})
