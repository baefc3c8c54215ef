import { mulAddUnsafe } from '@noble/curves/abstract/curve.js'
import { FpIsSquare } from '@noble/curves/abstract/modular.js'
import { bls12_381 as bls12381 } from '@noble/curves/bls12-381.js'
import { numberToBytesBE } from '@noble/curves/utils.js'
import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { Fr, G1, G2, decodeG1, decodeG2, encodeG1, encodeG2, mulBaseG1, publicKeyOf, randomScalar, sign, verify, verifyBatchSameMessage } from '../../identity/bls.ts'
import { commit, publicShare, verifyShare } from '../../identity/threshold/feldman.ts'
import { lagrangeAtZero, randomPolynomial, sharesOf } from '../../identity/threshold/shamir.ts'
import { ThresholdPublicKey, combine, partialSign, verifyGroupSignature, verifyPartial } from '../../identity/threshold/tbls.ts'
import { hex, seededRandomBytes, toHex } from './threshold-helpers.ts'
import type { Share } from '../../identity/threshold/shamir.ts'

// Known answers from ethereum/bls12-381-tests (sign and verify cases; the
// min-pk suite with the _POP_ DST that identity/bls.ts uses).
const SIGN_VECTORS = [
  { sk: '263dbd792f5b1be47ed85f8938c0f29586af0d3ac7b977f21c278fe1462040e3', pk: 'a491d1b0ecd9bb917989f0e74f0dea0422eac4a873e5e2644f368dffb9a6e20fd6e10c1b77654d067c0618f6e5a7f79a', msg: '00'.repeat(32), sig: 'b6ed936746e01f8ecf281f020953fbf1f01debd5657c4a383940b020b26507f6076334f91e2366c96e9ab279fb5158090352ea1c5b0c9274504f4f0e7053af24802e51e4568d164fe986834f41e55c8e850ce1f98458c0cfc9ab380b55285a55' },
  { sk: '263dbd792f5b1be47ed85f8938c0f29586af0d3ac7b977f21c278fe1462040e3', pk: 'a491d1b0ecd9bb917989f0e74f0dea0422eac4a873e5e2644f368dffb9a6e20fd6e10c1b77654d067c0618f6e5a7f79a', msg: 'ab'.repeat(32), sig: '91347bccf740d859038fcdcaf233eeceb2a436bcaaee9b2aa3bfb70efe29dfb2677562ccbea1c8e061fb9971b0753c240622fab78489ce96768259fc01360346da5b9f579e5da0d941e4c6ba18a0e64906082375394f337fa1af2b7127b0d121' },
  { sk: '328388aff0d4a5b7dc9205abd374e7e98f3cd9f3418edb4eafda5fb16473d216', pk: 'b53d21a4cfd562c469cc81514d4ce5a6b577d8403d32a394dc265dd190b47fa9f829fdd7963afdf972e5e77854051f6f', msg: '56'.repeat(32), sig: 'a4efa926610b8bd1c8330c918b7a5e9bf374e53435ef8b7ec186abf62e1b1f65aeaaeb365677ac1d1172a1f5b44b4e6d022c252c58486c0a759fbdc7de15a756acc4d343064035667a594b4c2a6f0b0b421975977f297dba63ee2f63ffe47bb6' }
]
const TAMPERED = { pk: 'a491d1b0ecd9bb917989f0e74f0dea0422eac4a873e5e2644f368dffb9a6e20fd6e10c1b77654d067c0618f6e5a7f79a', msg: '00'.repeat(32), sig: 'b6ed936746e01f8ecf281f020953fbf1f01debd5657c4a383940b020b26507f6076334f91e2366c96e9ab279fb5158090352ea1c5b0c9274504f4f0e7053af24802e51e4568d164fe986834f41e55c8e850ce1f98458c0cfc9ab380bffffffff' }
const INFINITY_PK = 'c0' + '00'.repeat(47)
const INFINITY_SIG = 'c0' + '00'.repeat(95)

const message = new TextEncoder().encode('round 42')

interface Group { key: ThresholdPublicKey, shares: Share[], secret: bigint }

function makeGroup (t: number, n: number, seed: string | number, secret?: bigint): Group {
  const random = seededRandomBytes(seed)
  const s = secret ?? randomScalar(random)
  const coefficients = randomPolynomial(s, t, random)
  return { key: new ThresholdPublicKey(commit(coefficients), n), shares: sharesOf(coefficients, n), secret: s }
}

describe('BLS12-381 (min-pk, _POP_ DST)', () => {
  it('signs and verifies the known answers of ethereum/bls12-381-tests', () => {
    for (const v of SIGN_VECTORS) {
      expect(toHex(publicKeyOf(BigInt('0x' + v.sk)))).to.equal(v.pk)
      expect(toHex(sign(BigInt('0x' + v.sk), hex(v.msg)))).to.equal(v.sig)
      expect(verify(hex(v.pk), hex(v.msg), hex(v.sig))).to.equal(true)
    }
    expect(verify(hex(TAMPERED.pk), hex(TAMPERED.msg), hex(TAMPERED.sig))).to.equal(false)
    expect(verify(hex(INFINITY_PK), hex('12'.repeat(32)), hex(INFINITY_SIG))).to.equal(false)
    expect(verify(hex(SIGN_VECTORS[0].pk), hex(SIGN_VECTORS[0].msg), hex(SIGN_VECTORS[2].sig))).to.equal(false)
  })

  it('noble and blst agree: noble\'s signature with the same DST is byte-identical', () => {
    const v = SIGN_VECTORS[1]
    const L = bls12381.longSignatures
    const nobleSig = L.sign(L.hash(hex(v.msg), 'BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_'), hex(v.sk))
    expect(L.Signature.toHex(nobleSig)).to.equal(v.sig)
  })

  it('a threshold sharing of a known key combines to the known signature (3 of 5)', () => {
    for (const v of SIGN_VECTORS) {
      const group = makeGroup(3, 5, v.sk, BigInt('0x' + v.sk))
      expect(toHex(group.key.groupKey)).to.equal(v.pk)
      const partials = [group.shares[4], group.shares[0], group.shares[2]].map(s => partialSign(s, hex(v.msg)))
      const result = combine(group.key, hex(v.msg), partials)
      expect(result.ok && toHex(result.signature)).to.equal(v.sig)
    }
  })
})

describe('batch verification of one message', () => {
  it('accepts only when every signature is valid', () => {
    const random = seededRandomBytes('batch')
    const secrets = Array.from({ length: 7 }, () => randomScalar(random))
    const items = secrets.map(s => ({ publicKey: publicKeyOf(s), signature: sign(s, message) }))
    expect(verifyBatchSameMessage(message, items)).to.equal(true)
    expect(verifyBatchSameMessage(message, [])).to.equal(true)
    const swapped = items.map((item, i) => i === 3 ? { ...item, signature: items[4].signature } : item)
    expect(verifyBatchSameMessage(message, swapped)).to.equal(false)
    expect(verifyBatchSameMessage(new TextEncoder().encode('another'), items)).to.equal(false)
    expect(verifyBatchSameMessage(message, [...items.slice(1), { ...items[0], signature: new Uint8Array(96) }])).to.equal(false)
    expect(verifyBatchSameMessage(message, [{ ...items[0], publicKey: items[0].publicKey.subarray(1) }])).to.equal(false)
  })
})

describe('native base multiplication (mulBaseG1, blst)', () => {
  it('agrees with noble\'s G1.BASE.multiply for any scalar, and publicKeyOf with its encoding', () => {
    fc.assert(fc.property(fc.bigInt({ min: 1n, max: Fr.ORDER - 1n }), s => {
      const noble = G1.BASE.multiply(s)
      expect(mulBaseG1(s).equals(noble)).to.equal(true)
      expect(toHex(publicKeyOf(s))).to.equal(toHex(noble.toBytes()))
    }), { numRuns: 50 })
    for (const s of [1n, 2n, Fr.ORDER - 1n]) { expect(mulBaseG1(s).equals(G1.BASE.multiply(s))).to.equal(true) }
  })

  it('gives the identity for 0 and refuses what is not a scalar below r, as noble does', () => {
    expect(mulBaseG1(0n).is0()).to.equal(true)
    for (const bad of [-1n, Fr.ORDER, Fr.ORDER + 1n, 1n << 256n]) {
      expect(() => mulBaseG1(bad)).to.throw(RangeError)
      expect(() => G1.BASE.multiply(bad)).to.throw()
    }
    expect(() => mulBaseG1(1 as any)).to.throw(RangeError)
    expect(() => publicKeyOf(0n)).to.throw(RangeError)
  })
})

describe('Feldman commitments', () => {
  it('public shares are the shares times G1, and shares check against the commitments', () => {
    const group = makeGroup(4, 6, 'feldman')
    for (const s of group.shares) {
      expect(publicShare(group.key.commitments, s.index).equals(G1.BASE.multiply(s.value))).to.equal(true)
      expect(verifyShare(group.key.commitments, s.index, s.value)).to.equal(true)
      expect(verifyShare(group.key.commitments, s.index, s.value + 1n)).to.equal(false)
      expect(verifyShare(group.key.commitments, s.index === 6 ? 1 : s.index + 1, s.value)).to.equal(false)
    }
  })

  it('commit and verifyShare (blst for value·G1) agree with noble alone, for honest and altered shares', () => {
    const group = makeGroup(5, 8, 'feldman-noble')
    const nobleCheck = (index: number, value: bigint): boolean => value === 0n
      ? publicShare(group.key.commitments, index).is0()
      : G1.BASE.multiply(value).equals(publicShare(group.key.commitments, index))
    fc.assert(fc.property(fc.integer({ min: 0, max: 7 }), fc.bigInt({ min: 0n, max: Fr.ORDER - 1n }), fc.boolean(), (k, delta, honest) => {
      const { index, value } = group.shares[k]
      const claimed = honest ? value : Fr.add(value, delta)
      expect(verifyShare(group.key.commitments, index, claimed)).to.equal(nobleCheck(index, claimed))
      expect(verifyShare(group.key.commitments, index, claimed)).to.equal(honest || delta === 0n)
    }), { numRuns: 40 })
    const coefficients = randomPolynomial(randomScalar(seededRandomBytes('c')), 4, seededRandomBytes('c2'))
    expect(commit(coefficients).every((c, k) => c.equals(G1.BASE.multiply(coefficients[k])))).to.equal(true)
    expect(() => commit([1n, 0n])).to.throw(RangeError)
  })
})

describe('threshold BLS', () => {
  const group = makeGroup(3, 5, 'group-3-5')
  const direct = sign(group.secret, message)

  it('takes public shares computed already (a share record\'s), and refuses a list of the wrong count or size', () => {
    const computed = [1, 2, 3, 4, 5].map(i => group.key.publicShare(i))
    const given = new ThresholdPublicKey(group.key.commitments, 5, computed)
    const result = combine(given, message, [0, 2, 4].map(i => partialSign(group.shares[i], message)))
    expect(result.ok && toHex(result.signature)).to.equal(toHex(direct))
    expect(() => new ThresholdPublicKey(group.key.commitments, 5, computed.slice(1))).to.throw(RangeError, 'public shares')
    expect(() => new ThresholdPublicKey(group.key.commitments, 5, [...computed.slice(1), new Uint8Array(47)])).to.throw(RangeError, 'public shares')
  })

  it('any t of n partial signatures combine to the same signature: the secret key\'s own', () => {
    fc.assert(fc.property(fc.shuffledSubarray([0, 1, 2, 3, 4], { minLength: 3, maxLength: 5 }), picks => {
      const result = combine(group.key, message, picks.map(i => partialSign(group.shares[i], message)))
      expect(result.ok).to.equal(true)
      expect(result.ok && toHex(result.signature)).to.equal(toHex(direct))
      expect(result.bad).to.deep.equal([])
    }), { numRuns: 12 })
    expect(verifyGroupSignature(group.key, message, direct)).to.equal(true)
  })

  it('t − 1 partials cannot: combine refuses, and interpolating them does not verify', () => {
    fc.assert(fc.property(fc.shuffledSubarray([0, 1, 2, 3, 4], { minLength: 2, maxLength: 2 }), picks => {
      const partials = picks.map(i => partialSign(group.shares[i], message))
      const result = combine(group.key, message, partials)
      expect(result.ok).to.equal(false)
      expect(!result.ok && result.reason).to.match(/2 valid partial signatures, 3 needed/)
      const forced = mulAddUnsafe(G2, partials.map(p => G2.fromBytes(p.signature)), lagrangeAtZero(partials.map(p => p.index)))
      expect(verifyGroupSignature(group.key, message, bls12381.longSignatures.Signature.toBytes(forced))).to.equal(false)
    }), { numRuns: 10 })
  })

  it('checks each partial against its signer\'s public share', () => {
    const partial = partialSign(group.shares[1], message)
    expect(verifyPartial(group.key, message, partial)).to.equal(true)
    expect(verifyPartial(group.key, message, { ...partial, index: 3 })).to.equal(false)
    expect(verifyPartial(group.key, new TextEncoder().encode('round 43'), partial)).to.equal(false)
    expect(verifyPartial(group.key, message, { index: 6, signature: partial.signature })).to.equal(false)
  })

  it('identifies a bad partial by index and still combines from the valid ones', () => {
    const forged = { index: 2, signature: sign(randomScalar(seededRandomBytes('forger')), message) }
    const partials = [partialSign(group.shares[0], message), forged, partialSign(group.shares[2], message), partialSign(group.shares[3], message)]
    const result = combine(group.key, message, partials)
    expect(result.bad).to.deep.equal([2])
    expect(result.ok && toHex(result.signature)).to.equal(toHex(direct))
  })

  it('names the bad partial when too few valid ones remain', () => {
    const wrongMessage = partialSign(group.shares[1], new TextEncoder().encode('other'))
    const result = combine(group.key, message, [partialSign(group.shares[0], message), wrongMessage, partialSign(group.shares[2], message)])
    expect(result).to.deep.equal({ ok: false, reason: '2 valid partial signatures, 3 needed', bad: [2] })
  })

  it('names malformed, out-of-group and repeated partials, and refuses more partials than members', () => {
    const good = [0, 1, 2].map(i => partialSign(group.shares[i], message))
    const result = combine(group.key, message, [
      ...good,
      { index: 4, signature: new Uint8Array(96) }, // not a point
      { index: 5, signature: good[0].signature.subarray(0, 48) }, // wrong length
      { index: 1, signature: good[1].signature } // index 1 again
    ].slice(0, 5))
    expect(result.ok).to.equal(true)
    expect(result.bad).to.deep.equal([4, 5])
    const dup = combine(group.key, message, [good[0], { index: 1, signature: good[1].signature }, good[2]])
    expect(dup.bad).to.deep.equal([1])
    const outside = combine(group.key, message, [...good, { index: 9, signature: good[0].signature }])
    expect(outside.bad).to.deep.equal([9])
    const many = combine(group.key, message, Array.from({ length: 6 }, () => good[0]))
    expect(many).to.deep.equal({ ok: false, reason: 'more partials (6) than group members (5)', bad: [] })
  })
})

describe('point decoding (blst checks, noble points)', () => {
  it('encodes as noble does (blst compresses), for both signs of y', () => {
    for (const k of [1n, 2n, 3n, 123456789n, G1.Fn.ORDER - 1n]) {
      expect(toHex(encodeG1(G1.BASE.multiply(k)))).to.equal(G1.BASE.multiply(k).toHex())
      expect(toHex(encodeG2(G2.BASE.multiply(k)))).to.equal(G2.BASE.multiply(k).toHex())
    }
  })

  it('round-trips G1 and G2 points and refuses bad encodings, the identity and wrong lengths', () => {
    const p1 = G1.BASE.multiply(123456789n)
    const p2 = G2.BASE.multiply(987654321n)
    expect((decodeG1(p1.toBytes()) as typeof p1).equals(p1)).to.equal(true)
    expect((decodeG2(p2.toBytes()) as typeof p2).equals(p2)).to.equal(true)
    expect(decodeG1(hex(INFINITY_PK))).to.match(/^bad G1 point/)
    expect(decodeG2(hex(INFINITY_SIG))).to.match(/^bad G2 point/)
    expect(decodeG1(new Uint8Array(48).fill(0x9f))).to.match(/^bad G1 point/)
    expect(decodeG2(hex(TAMPERED.sig))).to.match(/^bad G2 point/)
    expect(decodeG1(p1.toBytes().subarray(1))).to.equal('a G1 point is 48 bytes')
    // On the curve but outside the prime-order subgroup: x = the first x ≥ 5 with x³ + 4 a square.
    const Fp = bls12381.fields.Fp
    let x = 5n
    while (!FpIsSquare(Fp, Fp.add(Fp.pow(x, 3n), 4n))) { x++ }
    const outside = numberToBytesBE(x, 48)
    outside[0] |= 0x80 // compressed flag
    expect(decodeG1(outside)).to.match(/^bad G1 point/)
    expect(decodeG2(new Uint8Array(95))).to.equal('a G2 point is 96 bytes')
  })
})
