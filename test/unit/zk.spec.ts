import { bls12_381 as bls12381 } from '@noble/curves/bls12-381.js'
import { ed25519 } from '@noble/curves/ed25519.js'
import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { Fr, G1, randomScalar } from '../../identity/bls.ts'
import { proveEquality, verifyEquality } from '../../identity/zk/dleq.ts'
import { decodeScalarPair, encodeScalarPair, proveKnowledge, verifyKnowledge } from '../../identity/zk/schnorr.ts'
import { BLS12_381_G1, CONTEXT_BYTES_MAX } from '../../identity/zk/transcript.ts'
import { seededRandomBytes } from './threshold-helpers.ts'
import type { Group } from '../../identity/zk/transcript.ts'

const ctx = (s: string): Uint8Array => new TextEncoder().encode(s)
const ED25519: Group<ReturnType<typeof ed25519.Point.fromBytes>> = { name: 'edwards25519', Point: ed25519.Point }
const BLS_G2: Group<ReturnType<typeof bls12381.G2.Point.fromBytes>> = { name: 'BLS12381G2', Point: bls12381.G2.Point }

describe('Schnorr proof of knowledge', () => {
  const random = seededRandomBytes('schnorr')
  const x = randomScalar(random)
  const X = G1.BASE.multiply(x)
  const context = ctx('accord-test session=1 member=a')
  const proof = proveKnowledge(BLS12_381_G1, x, context, random)

  it('is complete: an honest proof verifies', () => {
    expect(verifyKnowledge(BLS12_381_G1, X, context, proof)).to.equal(true)
  })

  it('is sound against a wrong witness and a tampered proof', () => {
    const wrong = proveKnowledge(BLS12_381_G1, x + 1n, context, random)
    expect(verifyKnowledge(BLS12_381_G1, X, context, wrong)).to.equal(false)
    expect(verifyKnowledge(BLS12_381_G1, X, context, { ...proof, response: proof.response + 1n })).to.equal(false)
    expect(verifyKnowledge(BLS12_381_G1, X, context, { ...proof, challenge: proof.challenge ^ 1n })).to.equal(false)
    expect(verifyKnowledge(BLS12_381_G1, X.double(), context, proof)).to.equal(false)
  })

  it('is domain-separated: a proof for one context fails in another, and for one group in another', () => {
    expect(verifyKnowledge(BLS12_381_G1, X, ctx('accord-test session=2 member=a'), proof)).to.equal(false)
    expect(verifyKnowledge({ name: 'BLS12381G1-other', Point: G1 }, X, context, proof)).to.equal(false)
  })

  it('works over other groups with noble\'s point API (ed25519, BLS12-381 G2)', () => {
    for (const group of [ED25519, BLS_G2] as Array<Group<any>>) {
      const s = group.Point.Fn.create(randomScalar(random))
      const p = proveKnowledge(group, s, context, random)
      expect(verifyKnowledge(group, group.Point.BASE.multiply(s), context, p)).to.equal(true)
      expect(verifyKnowledge(group, group.Point.BASE.multiply(s), ctx('elsewhere'), p)).to.equal(false)
    }
  })

  it('refuses malformed proofs and oversize contexts with a clear answer', () => {
    expect(verifyKnowledge(BLS12_381_G1, X, context, { challenge: -1n, response: proof.response })).to.equal(false)
    expect(verifyKnowledge(BLS12_381_G1, X, context, { challenge: proof.challenge, response: G1.Fn.ORDER })).to.equal(false)
    expect(verifyKnowledge(BLS12_381_G1, X, context, null as any)).to.equal(false)
    expect(verifyKnowledge(BLS12_381_G1, G1.ZERO, context, proof)).to.equal(false)
    expect(() => proveKnowledge(BLS12_381_G1, 0n, context, random)).to.throw(RangeError, /non-zero/)
    expect(() => verifyKnowledge(BLS12_381_G1, X, new Uint8Array(CONTEXT_BYTES_MAX + 1), proof)).to.throw(RangeError, /at most/)
    const encoded = encodeScalarPair(proof.challenge, proof.response, 32)
    expect(decodeScalarPair(encoded, 32, G1.Fn.ORDER)).to.deep.equal([proof.challenge, proof.response])
    expect(decodeScalarPair(encoded.subarray(1), 32, G1.Fn.ORDER)).to.match(/64 bytes/)
    expect(decodeScalarPair(new Uint8Array(64).fill(0xff), 32, G1.Fn.ORDER)).to.match(/out of range/)
  })
})

describe('Chaum–Pedersen DLEQ proof', () => {
  const random = seededRandomBytes('dleq')
  const x = randomScalar(random)
  const H = G1.BASE.multiply(randomScalar(random))
  const X = G1.BASE.multiply(x)
  const Y = H.multiply(x)
  const context = ctx('accord-test complaint dealer=b member=a')
  const proof = proveEquality(BLS12_381_G1, x, H, context, random)

  it('is complete: log_G X = log_H Y verifies', () => {
    expect(verifyEquality(BLS12_381_G1, X, H, Y, context, proof)).to.equal(true)
  })

  it('is sound: a different Y (unequal logs), a wrong witness or a tampered proof fail', () => {
    expect(verifyEquality(BLS12_381_G1, X, H, Y.add(G1.BASE), context, proof)).to.equal(false)
    expect(verifyEquality(BLS12_381_G1, X, H, H.multiply(x + 1n), context, proveEquality(BLS12_381_G1, x + 1n, H, context, random))).to.equal(false)
    expect(verifyEquality(BLS12_381_G1, X, H, Y, context, { ...proof, response: proof.response + 1n })).to.equal(false)
    expect(verifyEquality(BLS12_381_G1, X, H.double(), Y.double(), context, proof)).to.equal(false)
  })

  it('is domain-separated: another context fails, and a Schnorr proof is not a DLEQ proof', () => {
    expect(verifyEquality(BLS12_381_G1, X, H, Y, ctx('accord-test complaint dealer=c member=a'), proof)).to.equal(false)
    const schnorr = proveKnowledge(BLS12_381_G1, x, context, random)
    expect(verifyEquality(BLS12_381_G1, X, H, Y, context, schnorr)).to.equal(false)
    expect(verifyKnowledge(BLS12_381_G1, X, context, proof)).to.equal(false)
  })

  it('refuses identity points and malformed proofs', () => {
    expect(verifyEquality(BLS12_381_G1, X, G1.ZERO, G1.ZERO, context, proof)).to.equal(false)
    expect(verifyEquality(BLS12_381_G1, X, H, Y, context, { challenge: 1n } as any)).to.equal(false)
  })
})

describe('proofs with the native base multiplication (BLS12_381_G1.mulBase)', () => {
  // The same group without the native route: noble's BASE.multiply / multiplyUnsafe.
  const NOBLE_G1: Group<typeof G1.BASE> = { name: BLS12_381_G1.name, Point: G1, encode: BLS12_381_G1.encode }
  const context = ctx('accord-test native base')

  it('Schnorr and DLEQ proofs made either way verify either way; tampered ones fail either way', () => {
    fc.assert(fc.property(fc.bigInt({ min: 1n, max: Fr.ORDER - 1n }), fc.bigInt({ min: 1n, max: Fr.ORDER - 1n }), fc.integer({ min: 0, max: 1 }), (x, h, tamper) => {
      const random = seededRandomBytes(`native-${x}`)
      const X = G1.BASE.multiply(x)
      const H = G1.BASE.multiply(h)
      const Y = H.multiply(x)
      for (const [prover, verifier] of [[BLS12_381_G1, NOBLE_G1], [NOBLE_G1, BLS12_381_G1], [BLS12_381_G1, BLS12_381_G1]]) {
        const pk = proveKnowledge(prover, x, context, random)
        const eq = proveEquality(prover, x, H, context, random)
        const bump = BigInt(tamper)
        expect(verifyKnowledge(verifier, X, context, { ...pk, response: Fr.add(pk.response, bump) })).to.equal(tamper === 0)
        expect(verifyEquality(verifier, X, H, Y, context, { ...eq, response: Fr.add(eq.response, bump) })).to.equal(tamper === 0)
      }
      // deterministic: the same randomness makes the same proof by either route
      expect(proveKnowledge(BLS12_381_G1, x, context, seededRandomBytes('same'))).to.deep.equal(proveKnowledge(NOBLE_G1, x, context, seededRandomBytes('same')))
    }), { numRuns: 10 })
  })

  it('a response of 0 still verifies or fails as it should (the native route maps 0 to the identity)', () => {
    // z = 0 means A = −c·X: no honest proof has it, and verification must simply fail, not throw
    const X = G1.BASE.multiply(5n)
    expect(verifyKnowledge(BLS12_381_G1, X, context, { challenge: 7n, response: 0n })).to.equal(false)
    expect(verifyKnowledge(NOBLE_G1, X, context, { challenge: 7n, response: 0n })).to.equal(false)
  })
})
