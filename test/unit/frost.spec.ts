import { readFileSync } from 'node:fs'
import { ed25519, ed25519_FROST as nobleFrost } from '@noble/curves/ed25519.js'
import { bytesToHex, bytesToNumberLE, hexToBytes, numberToBytesLE } from '@noble/curves/utils.js'
import { expect } from 'aegir/chai'
import fc from 'fast-check'
import {
  aggregate, checkGroup, checkShare, commit, FROST_MESSAGE_BYTES_MAX, FROST_PARTICIPANTS_MAX, FrostError, keygen, recoverSecret, sign,
  verify, verifySignatureShare
} from '../../identity/frost/index.ts'
import { sessionValues } from '../../identity/frost/session.ts'
import { seededRandomBytes } from './threshold-helpers.ts'
import type { FrostCommitment, FrostGroup, FrostShare, FrostSignatureShare } from '../../identity/frost/index.ts'

interface Vectors {
  config: Record<'MAX_PARTICIPANTS' | 'MIN_PARTICIPANTS' | 'NUM_PARTICIPANTS', string>
  inputs: {
    group_secret_key: string
    group_public_key: string
    message: string
    share_polynomial_coefficients: string[]
    participant_shares: Array<{ identifier: number, participant_share: string }>
  }
  round_one_outputs: {
    outputs: Array<{
      identifier: number
      hiding_nonce_randomness: string
      binding_nonce_randomness: string
      hiding_nonce: string
      binding_nonce: string
      hiding_nonce_commitment: string
      binding_nonce_commitment: string
      binding_factor_input: string
      binding_factor: string
    }>
  }
  round_two_outputs: { outputs: Array<{ identifier: number, sig_share: string }> }
  final_output: { sig: string }
}

// RFC 9591 appendix E.1, FROST(Ed25519, SHA-512); source in test/fixtures/frost/README.md.
const vectors: Vectors = JSON.parse(readFileSync(new URL('../fixtures/frost/frost-ed25519-sha512.json', import.meta.url), 'utf8'))
const L = ed25519.Point.Fn.ORDER
const scalar = (hex: string): bigint => bytesToNumberLE(hexToBytes(hex))
const hex = (bytes: Uint8Array): string => bytesToHex(bytes)

interface Session { group: FrostGroup, shares: FrostShare[], commitments: FrostCommitment[], sigShares: FrostSignatureShare[], message: Uint8Array }

function runSession (group: FrostGroup, shares: FrostShare[], signers: number[], message: Uint8Array, randomBytes: (n: number) => Uint8Array): Session {
  const rounds = signers.map((i) => commit(shares[i - 1], randomBytes))
  const commitments = rounds.map((r) => r.commitment)
  const sigShares = signers.map((i, k) => ({ index: i, share: sign(shares[i - 1], group, rounds[k].nonces, commitments, message) }))
  return { group, shares, commitments, sigShares, message }
}

describe('FROST(Ed25519, SHA-512)', () => {
  describe('RFC 9591 test vectors (appendix E.1)', () => {
    const { inputs, round_one_outputs: round1, round_two_outputs: round2, final_output: final } = vectors
    const threshold = Number(vectors.config.MIN_PARTICIPANTS)
    const total = Number(vectors.config.MAX_PARTICIPANTS)
    const message = hexToBytes(inputs.message)

    // The dealer draws each polynomial coefficient through noble's wide reduction,
    // x = (LE(48 random bytes) mod (L - 1)) + 1, so feeding LE48(c - 1) yields exactly c.
    const coefficient = scalar(inputs.share_polynomial_coefficients[0])
    const dealerRandom = (n: number): Uint8Array => numberToBytesLE(coefficient - 1n, n)
    const dealt = keygen({ threshold, total, secretKey: hexToBytes(inputs.group_secret_key), randomBytes: dealerRandom })

    it('deals the RFC group public key and participant shares from its secret and coefficient', () => {
      expect(hex(dealt.group.groupPublicKey)).to.equal(inputs.group_public_key)
      expect(dealt.shares.map((s) => ({ identifier: s.index, participant_share: hex(s.signingShare) }))).to.deep.equal(inputs.participant_shares)
      checkGroup(dealt.group)
      for (const share of dealt.shares) { checkShare(share, dealt.group) }
    })

    it('reproduces the nonces, commitments, signature shares and signature byte for byte', () => {
      const rounds = round1.outputs.map((o) => {
        const randomness = [hexToBytes(o.hiding_nonce_randomness), hexToBytes(o.binding_nonce_randomness)]
        const { nonces, commitment } = commit(dealt.shares[o.identifier - 1], (n) => {
          const bytes = randomness.shift()
          expect(bytes?.length).to.equal(n)
          return bytes ?? new Uint8Array(n)
        })
        expect({ hiding: hex(nonces.hiding), binding: hex(nonces.binding) }).to.deep.equal({ hiding: o.hiding_nonce, binding: o.binding_nonce })
        expect({ hiding: hex(commitment.hiding), binding: hex(commitment.binding) }).to.deep.equal({ hiding: o.hiding_nonce_commitment, binding: o.binding_nonce_commitment })
        return { nonces, commitment }
      })
      const commitments = rounds.map((r) => r.commitment)
      const sigShares = round1.outputs.map((o, k) => ({ index: o.identifier, share: sign(dealt.shares[o.identifier - 1], dealt.group, rounds[k].nonces, commitments, message) }))
      expect(sigShares.map((s) => ({ identifier: s.index, sig_share: hex(s.share) }))).to.deep.equal(round2.outputs)

      const signature = aggregate(dealt.group, commitments, message, sigShares)
      expect(hex(signature)).to.equal(final.sig)
      expect(ed25519.verify(signature, message, dealt.group.groupPublicKey, { zip215: false })).to.equal(true)
      expect(verify(signature, message, dealt.group.groupPublicKey)).to.equal(true)
    })

    it('computes the RFC binding factors, Lagrange coefficients and group commitment for the session', () => {
      const parsed = round1.outputs.map((o) => ({
        index: o.identifier,
        hiding: ed25519.Point.fromBytes(hexToBytes(o.hiding_nonce_commitment)),
        binding: ed25519.Point.fromBytes(hexToBytes(o.binding_nonce_commitment))
      }))
      const values = sessionValues(hexToBytes(inputs.group_public_key), parsed, message)
      expect(round1.outputs.map((o) => hex(numberToBytesLE(values.bindingFactors.get(o.identifier) ?? 0n, 32)))).to.deep.equal(round1.outputs.map((o) => o.binding_factor))
      // participants {1, 3}: lambda_1 = 3 / (3 - 1), lambda_3 = 1 / (1 - 3)
      const Fn = ed25519.Point.Fn
      expect(values.lambdas.get(1)).to.equal(Fn.div(3n, 2n))
      expect(values.lambdas.get(3)).to.equal(Fn.neg(Fn.inv(2n)))
      expect(hex(values.groupCommitment.toBytes())).to.equal(final.sig.slice(0, 64))
    })

    it('recovers the group secret from any two of the three shares', () => {
      for (const pair of [[1, 2], [1, 3], [2, 3]]) {
        expect(hex(recoverSecret(pair.map((i) => dealt.shares[i - 1]), dealt.group))).to.equal(inputs.group_secret_key)
      }
    })
  })

  describe('properties', () => {
    const groupArb = fc.integer({ min: 2, max: 6 }).chain((total) => fc.record({
      total: fc.constant(total),
      threshold: fc.integer({ min: 2, max: total }),
      seed: fc.integer(),
      order: fc.shuffledSubarray(Array.from({ length: total }, (_, i) => i + 1), { minLength: total, maxLength: total }),
      message: fc.uint8Array({ maxLength: 64 })
    }))

    /** A t-signer session over `groupArb`'s draw with one signature share (picked by `pick`) shifted by `delta`. */
    function tamperedSession ({ total, threshold, seed, order, message }: { total: number, threshold: number, seed: number, order: number[], message: Uint8Array }, pick: number, delta: bigint): { group: FrostGroup, s: Session, share: FrostSignatureShare } {
      const randomBytes = seededRandomBytes(seed)
      const { group, shares } = keygen({ threshold, total, randomBytes })
      const s = runSession(group, shares, order.slice(0, threshold), message, randomBytes)
      const share = s.sigShares[pick % s.sigShares.length]
      share.share = numberToBytesLE((bytesToNumberLE(share.share) + delta) % L, 32)
      return { group, s, share }
    }

    it('any t of n signers produce a valid Ed25519 signature under the group key', () => {
      fc.assert(fc.property(groupArb, fc.integer({ min: 0, max: 6 }), ({ total, threshold, seed, order, message }, extra) => {
        const randomBytes = seededRandomBytes(seed)
        const { group, shares } = keygen({ threshold, total, randomBytes })
        const signers = order.slice(0, Math.min(total, threshold + extra))
        const s = runSession(group, shares, signers, message, randomBytes)
        const signature = aggregate(group, s.commitments, message, s.sigShares)
        expect(ed25519.verify(signature, message, group.groupPublicKey, { zip215: false })).to.equal(true)
        expect(verify(signature, message, group.groupPublicKey)).to.equal(true)
        expect(verify(signature, new Uint8Array([...message, 0]), group.groupPublicKey)).to.equal(false)
      }), { numRuns: 15 })
    })

    it('t - 1 shares neither recover the secret nor sign: each share checks out, the sum never does', () => {
      fc.assert(fc.property(groupArb.filter((g) => g.threshold >= 3), ({ total, threshold, seed, order, message }) => {
        const randomBytes = seededRandomBytes(seed)
        const { group, shares } = keygen({ threshold, total, randomBytes })
        const few = order.slice(0, threshold - 1)
        const fewShares = few.map((i) => shares[i - 1])
        expect(() => recoverSecret(fewShares, group)).to.throw(FrostError, /needs/)
        // Claim a lower threshold so the session runs at all: interpolation over
        // t - 1 points is not the group secret, and aggregation refuses it.
        const lowered = { ...group, threshold: threshold - 1 }
        const wrongSecret = recoverSecret(fewShares, lowered)
        expect(hex(ed25519.Point.BASE.multiply(bytesToNumberLE(wrongSecret)).toBytes())).to.not.equal(hex(group.groupPublicKey))
        const s = runSession(lowered, shares, few, message, randomBytes)
        for (const share of s.sigShares) { expect(verifySignatureShare(lowered, s.commitments, message, share)).to.equal(true) }
        expect(() => aggregate(lowered, s.commitments, message, s.sigShares)).to.throw(FrostError, /aggregation failed/)
      }), { numRuns: 15 })
    })

    it('verifySignatureShare agrees with noble\'s verifyShare on honest and altered shares', () => {
      fc.assert(fc.property(groupArb, fc.nat(), fc.bigInt({ min: 0n, max: L - 1n }), (arb, pick, delta) => {
        const { group, s, share } = tamperedSession(arb, pick, delta)
        const { threshold, total, message } = arb
        const pub = {
          signers: { min: threshold, max: total },
          commitments: group.commitments,
          verifyingShares: Object.fromEntries(group.verifyingShares.map((v, i) => [nobleFrost.Identifier.fromNumber(i + 1), v]))
        }
        const list = s.commitments.map((c) => ({ identifier: nobleFrost.Identifier.fromNumber(c.index), hiding: c.hiding, binding: c.binding }))
        const theirs = nobleFrost.verifyShare(pub, list, message, nobleFrost.Identifier.fromNumber(share.index), share.share)
        expect(verifySignatureShare(group, s.commitments, message, share)).to.equal(theirs)
        expect(theirs).to.equal(delta === 0n)
      }), { numRuns: 12 })
    })

    it('a tampered signature share is refused and its signer named', () => {
      fc.assert(fc.property(groupArb, fc.nat(), fc.bigInt({ min: 1n, max: L - 1n }), (arb, pick, delta) => {
        const { group, s, share: bad } = tamperedSession(arb, pick, delta)
        const { message } = arb
        expect(verifySignatureShare(group, s.commitments, message, bad)).to.equal(false)
        let error: FrostError | undefined
        try { aggregate(group, s.commitments, message, s.sigShares) } catch (err) { error = err as FrostError }
        expect(error).to.be.instanceOf(FrostError)
        expect(error?.cheaters).to.deep.equal([bad.index])
        expect(error?.message).to.include(`signer(s) ${bad.index}`)
      }), { numRuns: 12 })
    })
  })

  describe('bad input', () => {
    const randomBytes = seededRandomBytes(42)
    const { group, shares } = keygen({ threshold: 2, total: 3, randomBytes })
    const message = new TextEncoder().encode('hello')
    const fresh = (): Session => runSession(group, shares, [1, 2], message, randomBytes)
    const IDENTITY = hexToBytes('01'.padEnd(64, '0'))
    const ORDER_TWO = hexToBytes('ec' + 'ff'.repeat(30) + '7f') // (0, -1): a point of order 2
    const mixed = ed25519.Point.BASE.add(ed25519.Point.fromBytes(ORDER_TWO)).toBytes() // on the curve, not torsion-free

    it('refuses counts outside 2 <= t <= n <= FROST_PARTICIPANTS_MAX', () => {
      expect(() => keygen({ threshold: 1, total: 3, randomBytes })).to.throw(FrostError, /2 <= threshold <= total/)
      expect(() => keygen({ threshold: 4, total: 3, randomBytes })).to.throw(FrostError, /got 4 of 3/)
      expect(() => keygen({ threshold: 2, total: FROST_PARTICIPANTS_MAX + 1, randomBytes })).to.throw(FrostError, /<= 255/)
      expect(() => keygen({ threshold: 2.5, total: 3, randomBytes })).to.throw(FrostError)
    })

    it('refuses scalars of the wrong length or not below the group order', () => {
      const s = fresh()
      expect(() => sign({ index: 1, signingShare: new Uint8Array(31) }, group, { hiding: new Uint8Array(32), binding: new Uint8Array(32) }, s.commitments, message))
        .to.throw(FrostError, /signing share must be 32 bytes/)
      expect(() => checkShare({ index: 1, signingShare: numberToBytesLE(L, 32) }, group)).to.throw(FrostError, /not a canonical scalar/)
      const nonCanonical = { index: 1, share: numberToBytesLE(bytesToNumberLE(s.sigShares[0].share) + L, 32) }
      expect(() => aggregate(group, s.commitments, message, [nonCanonical, s.sigShares[1]])).to.throw(FrostError, /signature share 1 is not a canonical scalar/)
      expect(() => keygen({ threshold: 2, total: 3, randomBytes, secretKey: new Uint8Array(32).fill(0xff) })).to.throw(FrostError, /secret key is not a canonical/)
    })

    it('refuses identity, small-order, mixed-torsion and malformed commitments', () => {
      const s = fresh()
      const withHiding = (hiding: Uint8Array): FrostCommitment[] => [{ ...s.commitments[0], hiding }, s.commitments[1]]
      expect(() => aggregate(group, withHiding(IDENTITY), message, s.sigShares)).to.throw(FrostError, /hiding commitment of signer 1 is the identity/)
      expect(() => aggregate(group, withHiding(ORDER_TWO), message, s.sigShares)).to.throw(FrostError, /not in the prime-order subgroup/)
      expect(() => aggregate(group, withHiding(mixed), message, s.sigShares)).to.throw(FrostError, /not in the prime-order subgroup/)
      expect(() => aggregate(group, withHiding(new Uint8Array(33)), message, s.sigShares)).to.throw(FrostError, /must be 32 bytes/)
      expect(() => aggregate(group, withHiding(new Uint8Array(32).fill(0xff)), message, s.sigShares)).to.throw(FrostError, /not a canonical Ed25519 point/)
    })

    it('refuses duplicate, unknown, missing and too many signers', () => {
      const s = fresh()
      expect(() => aggregate(group, [s.commitments[0], s.commitments[0]], message, s.sigShares)).to.throw(FrostError, /commitment 1 appears twice/)
      expect(() => aggregate(group, [s.commitments[0], { ...s.commitments[1], index: 4 }], message, s.sigShares)).to.throw(FrostError, /index must be an integer in 1..3/)
      expect(() => aggregate(group, s.commitments, message, [s.sigShares[0]])).to.throw(FrostError, /no signature share from signer\(s\) 2/)
      expect(() => aggregate(group, [s.commitments[0]], message, s.sigShares)).to.throw(FrostError, /needs 2 to 3 commitments, got 1/)
      const many = Array.from({ length: 4 }, (_, i) => ({ ...s.commitments[0], index: i + 1 }))
      expect(() => aggregate(group, many, message, s.sigShares)).to.throw(FrostError, /got 4/)
      const third = commit(shares[2], randomBytes)
      expect(() => sign(shares[2], group, third.nonces, s.commitments, message)).to.throw(FrostError, /signer 3 is not in the commitment list/)
    })

    it('refuses a message over FROST_MESSAGE_BYTES_MAX', () => {
      const s = fresh()
      expect(() => aggregate(group, s.commitments, new Uint8Array(FROST_MESSAGE_BYTES_MAX + 1), s.sigShares)).to.throw(FrostError, /sign its digest/)
    })

    it('consumes nonces: a second sign with the same nonces is refused', () => {
      const a = commit(shares[0], randomBytes)
      const b = commit(shares[1], randomBytes)
      const list = [a.commitment, b.commitment]
      sign(shares[0], group, a.nonces, list, message)
      expect(() => sign(shares[0], group, a.nonces, list, message)).to.throw(FrostError, /already used/)
    })

    it('refuses a share that is not on the group polynomial, and a group whose verifying share was swapped', () => {
      expect(() => checkShare({ index: 1, signingShare: shares[1].signingShare }, group)).to.throw(FrostError, /share 1 is not on the group's polynomial/)
      expect(() => checkGroup({ ...group, verifyingShares: [group.verifyingShares[1], group.verifyingShares[0], group.verifyingShares[2]] })).to.throw(FrostError, /verifying share 1 does not match/)
      expect(() => checkGroup({ ...group, groupPublicKey: group.verifyingShares[0] })).to.throw(FrostError, /not the first VSS commitment/)
      expect(() => checkGroup({ ...group, commitments: [group.commitments[0]] })).to.throw(FrostError, /must have 2 VSS commitments/)
    })

    it('answers arbitrary commitments and shares from peers with a FrostError, never another exception', () => {
      const s = fresh()
      const anyBytes = fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 40 }), fc.constant(IDENTITY), fc.constant(ORDER_TWO))
      const anyIndex = fc.oneof(fc.integer({ min: -1, max: 5 }), fc.constant(1.5), fc.constant(Number.NaN))
      fc.assert(fc.property(fc.nat(1), fc.constantFrom('hiding', 'binding', 'index', 'share'), anyBytes, anyIndex, (who, field, bytes, index) => {
        const commitments = s.commitments.map((c) => ({ ...c }))
        const sigShares = s.sigShares.map((x) => ({ ...x }))
        if (field === 'hiding' || field === 'binding') { commitments[who][field] = bytes }
        if (field === 'index') { commitments[who].index = index }
        if (field === 'share') { sigShares[who].share = bytes }
        for (const run of [() => aggregate(group, commitments, message, sigShares), () => verifySignatureShare(group, commitments, message, sigShares[who])]) {
          try { run() } catch (err) { expect(err).to.be.instanceOf(FrostError) }
        }
      }), { numRuns: 200 })
    })

    it('verify() returns false, never throws, on malformed signatures and keys', () => {
      expect(verify(new Uint8Array(63), message, group.groupPublicKey)).to.equal(false)
      expect(verify(new Uint8Array(64), message, new Uint8Array(31))).to.equal(false)
      expect(verify(new Uint8Array(64).fill(0xff), message, group.groupPublicKey)).to.equal(false)
    })
  })
})
