/**
 * The DKG service's pieces without a network: signed envelopes (a changed
 * body, kind or signer fails), the member list, and the service fed
 * datagrams directly (deliver) with fake libp2p components: its limits
 * (sessions at once, messages queued per sender, signing rounds, message
 * size), statements that must come from their author, and a dealer caught
 * signing two different deals (one received, one in another member's seen),
 * while a seen whose differing digest its dealer did not sign is refused.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { encode } from 'cborg'
import { G1, G1_BYTES, randomScalar, scalarToBytes } from '../../identity/bls.ts'
import { groupCertificateMessage } from '../../identity/group-certificate.ts'
import { commit } from '../../identity/threshold/feldman.ts'
import { evaluatePolynomial, randomPolynomial } from '../../identity/threshold/shamir.ts'
import { SEALED_SHARE_BYTES } from '../../identity/threshold/share-box.ts'
import { verifyPartial } from '../../identity/threshold/tbls.ts'
import { MESSAGE_APPROVALS_MAX, MessageApprovals, messageDigest } from '../../node/dkg/approvals.ts'
import { confirmationMessage } from '../../node/dkg/confirmation.ts'
import { DKG_PENDING_PER_PEER_MAX, DKG_SESSIONS_MAX, DKG_SIGN_MESSAGE_BYTES_MAX, DKG_SIGN_ROUNDS_MAX } from '../../node/dkg/constants.ts'
import { checkEnvelope, digestOf } from '../../node/dkg/envelope.ts'
import { checkMembers, DkgError, DkgService } from '../../node/dkg/service.ts'
import { saveGroup, shareRecord } from '../../node/dkg/store.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { encodeDkgMessage, encryptionKeyProof } from '../../protocols/dkg/index.ts'
import { checkpointGroupPayload } from '../../protocols/pbft/index.ts'
import { datagram, fakeComponents, peer } from './dkg-service-helpers.ts'
import { seededRandomBytes } from './threshold-helpers.ts'
import type { FakeAdmission, Peer } from './dkg-service-helpers.ts'
import type { SignPolicy } from '../../node/dkg/approvals.ts'
import type { Envelope } from '../../node/dkg/envelope.ts'
import type { DkgSessionView } from '../../node/dkg/service.ts'
import type { PrivateKey } from '@libp2p/interface'

describe('dkg service: envelopes', () => {
  it('a signed envelope verifies; a changed body, kind or signer, or a bad signature, does not', async () => {
    const a = await peer()
    const b = await peer()
    const env = a.sign('start', new Uint8Array([1, 2, 3]))
    expect(checkEnvelope(env)).to.deep.equal({ ok: true, envelope: env })
    expect(checkEnvelope({ ...env, body: new Uint8Array([1, 2, 4]) })).to.deep.equal({ ok: false, reason: 'bad-signature' })
    expect(checkEnvelope({ ...env, kind: 'key' })).to.deep.equal({ ok: false, reason: 'bad-signature' })
    expect(checkEnvelope({ ...env, signer: b.id })).to.deep.equal({ ok: false, reason: 'bad-signature' })
    expect(checkEnvelope({ ...env, sig: new Uint8Array(64) })).to.deep.equal({ ok: false, reason: 'bad-signature' })
  })

  it('malformed envelopes are refused, never thrown', async () => {
    const a = await peer()
    const env = a.sign('start', new Uint8Array([1]))
    for (const bad of [null, 7, 'x', {}, { ...env, kind: 'other' }, { ...env, sig: new Uint8Array(63) }, { ...env, body: 'text' }, { ...env, signer: 'not a peer id' }]) {
      expect(checkEnvelope(bad)).to.deep.equal({ ok: false, reason: 'malformed' })
    }
  })

  it('members are sorted by peer id (index = position + 1); duplicates and bad thresholds are refused', () => {
    expect(checkMembers(['c', 'a', 'b'], 2)).to.deep.equal(['a', 'b', 'c'])
    expect(() => checkMembers(['a', 'a'], 1)).to.throw(DkgError, 'twice')
    expect(() => checkMembers(['a', 'b'], 3)).to.throw(DkgError, 'threshold')
    expect(() => checkMembers(['a', 'b'], 0)).to.throw(DkgError, 'threshold')
    expect(() => checkMembers([], 1)).to.throw(DkgError, 'members')
    expect(() => checkMembers('a', 1)).to.throw(DkgError, 'members')
  })
})

describe('dkg service: limits and refusals (datagrams fed directly)', function () {
  this.timeout(60_000)
  let dir: string
  let service: DkgService
  let self: string
  let nodeKey: PrivateKey

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'accord-dkg-'))
    const identity = await loadOrCreateIdentity(dir)
    nodeKey = identity.privateKey
    self = identity.peerId.toString()
  })

  /** Store a 2-of-2 group of this node and a new peer (this node's share is a dummy), from `seed`; the peer. */
  const storeTwoOfTwo = async (seed: string): Promise<Peer> => {
    const other = await peer()
    const random = seededRandomBytes(seed)
    const commitments = commit(randomPolynomial(randomScalar(random), 2, random))
    const group = { session: '00', members: [self, other.id].sort(), threshold: 2, commitments: commitments.map(c => Buffer.from(c.toBytes()).toString('hex')) }
    await saveGroup(dir, undefined, { group, record: shareRecord(group, commitments, group.members.indexOf(self) + 1, new Uint8Array(32).fill(1)) })
    return other
  }

  const startService = async (admission: FakeAdmission = {}, signPolicy?: SignPolicy): Promise<void> => {
    service = new DkgService(fakeComponents(nodeKey, admission), { dataDir: dir, signPolicy, settings: { keyWaitMs: 60_000, signTimeoutMs: 60_000 } })
    await service.start()
  }

  afterEach(async () => {
    await service?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const startFrom = (initiator: Peer, members: string[], session: Uint8Array, threshold = 2): unknown =>
    datagram(initiator.sign('start', encode({ session, members, threshold })), initiator.id, self)

  it(`at most DKG_SESSIONS_MAX (${DKG_SESSIONS_MAX}) sessions run at once; one more is refused`, async () => {
    await startService()
    const a = await peer()
    for (let i = 0; i < DKG_SESSIONS_MAX; i++) {
      expect(service.deliver(startFrom(a, [a.id, self], new Uint8Array(16).fill(i)), a.id)).to.deep.equal({ ok: true })
    }
    expect(service.deliver(startFrom(a, [a.id, self], new Uint8Array(16).fill(99)), a.id)).to.include({ ok: false, reason: 'sessions-full' })
    expect(service.sessions().map(s => s.state)).to.deep.equal(new Array(DKG_SESSIONS_MAX).fill('keys'))
  })

  it('a start that does not list this node, or comes from someone other than its signer, is refused', async () => {
    await startService()
    const a = await peer()
    const b = await peer()
    expect(service.deliver(startFrom(a, [a.id, b.id], new Uint8Array(16)), a.id)).to.include({ ok: false, reason: 'not-a-member' })
    expect(service.deliver(startFrom(a, [a.id, self], new Uint8Array(16)), b.id)).to.include({ ok: false, reason: 'relayed' })
    expect(service.sessions()).to.deep.equal([])
  })

  it(`messages that arrive before the session begins are queued, at most DKG_PENDING_PER_PEER_MAX (${DKG_PENDING_PER_PEER_MAX}) per sender`, async () => {
    await startService()
    const a = await peer()
    const b = await peer()
    const session = new Uint8Array(16).fill(7)
    expect(service.deliver(startFrom(a, [a.id, b.id, self], session), a.id)).to.deep.equal({ ok: true })
    const response = b.sign('msg', encodeDkgMessage({ type: 'response', session, from: b.id, complaints: [] }))
    for (let i = 0; i < DKG_PENDING_PER_PEER_MAX; i++) {
      expect(service.deliver(datagram(response, b.id, self), b.id)).to.deep.equal({ ok: true })
    }
    expect(service.deliver(datagram(response, b.id, self), b.id)).to.include({ ok: false, reason: 'queue-full' })
  })

  it('a DKG message must name its signer as sender and come from it', async () => {
    await startService()
    const a = await peer()
    const b = await peer()
    const session = new Uint8Array(16).fill(8)
    service.deliver(startFrom(a, [a.id, b.id, self], session), a.id)
    const spoofed = b.sign('msg', encodeDkgMessage({ type: 'response', session, from: a.id, complaints: [] }))
    expect(service.deliver(datagram(spoofed, b.id, self), b.id)).to.include({ ok: false, reason: 'spoofed-sender' })
    const relayed = b.sign('msg', encodeDkgMessage({ type: 'response', session, from: b.id, complaints: [] }))
    expect(service.deliver(datagram(relayed, a.id, self), a.id)).to.include({ ok: false, reason: 'relayed' })
    expect(service.deliver(datagram(b.sign('msg', new Uint8Array([1, 2])), b.id, self), b.id)).to.include({ ok: false, reason: 'malformed' })
  })

  it('a dealer that signs two different deals is caught: the session aborts naming it', async () => {
    await startService()
    const b = await peer()
    const c = await peer()
    const members = [self, b.id, c.id]
    const outcome = service.run({ members, threshold: 2, sessionId: '0a'.repeat(16) })
    const session = Uint8Array.from(Buffer.from('0a'.repeat(16), 'hex'))
    for (const p of [b, c]) {
      const secret = randomScalar(seededRandomBytes(p.id))
      const key = p.sign('key', encode({ session, key: G1.BASE.multiply(secret).toBytes(), proof: encryptionKeyProof(p.id, secret, seededRandomBytes(`${p.id}:proof`)) }))
      expect(service.deliver(datagram(key, p.id, self), p.id)).to.deep.equal({ ok: true })
    }
    expect(service.sessions()[0].state).to.equal('running')
    const deal = (fill: number): Envelope => b.sign('msg', encodeDkgMessage({
      type: 'deal',
      session,
      from: b.id,
      commitments: [new Uint8Array(G1_BYTES), new Uint8Array(G1_BYTES)],
      ephemeral: new Uint8Array(G1_BYTES),
      boxes: members.map(() => new Uint8Array(SEALED_SHARE_BYTES).fill(fill))
    }))
    // b deals to us (a bad deal: the core refuses its points, but it is b's signed deal) ...
    service.deliver(datagram(deal(1), b.id, self), b.id)
    expect(service.sessions()[0].state).to.equal('running')
    // ... and c has a different one from b: c's seen carries its digest and b's signature of it
    const other = deal(2)
    const forged = c.sign('seen', encode({ session, deals: [{ dealer: b.id, digest: digestOf(other.body), sig: c.sign('msg', other.body).sig }] }))
    expect(service.deliver(datagram(forged, c.id, self), c.id)).to.include({ ok: false, reason: 'bad-signature' })
    expect(service.sessions()[0].state).to.equal('running')
    const seen = c.sign('seen', encode({ session, deals: [{ dealer: b.id, digest: digestOf(other.body), sig: other.sig }] }))
    expect(service.deliver(datagram(seen, c.id, self), c.id)).to.deep.equal({ ok: true })
    const view: DkgSessionView = await outcome
    expect(view.state).to.equal('aborted')
    expect(view.equivocations).to.deep.equal([b.id])
    expect(view.reason).to.include(`dealer ${b.id} signed two different deals`)
  })

  it('key statements: a stolen proof, an identity, uncompressed or malformed key is refused (bad-key), at the initiator and in a begin', async () => {
    await startService()
    const b = await peer()
    const c = await peer()
    const members = [self, b.id, c.id]
    const outcome = service.run({ members, threshold: 2, sessionId: '0d'.repeat(16) })
    const session = Uint8Array.from(Buffer.from('0d'.repeat(16), 'hex'))
    const secretOf = (p: Peer): bigint => randomScalar(seededRandomBytes(`key-${p.id}`))
    const statement = (p: Peer, fields: Record<string, unknown>): Envelope => p.sign('key', encode({ session, ...fields }))
    const honest = (p: Peer): Envelope => statement(p, { key: G1.BASE.multiply(secretOf(p)).toBytes(), proof: encryptionKeyProof(p.id, secretOf(p), seededRandomBytes(`proof-${p.id}`)) })
    const cKey = G1.BASE.multiply(secretOf(c))
    const bad = [
      // c's key and proof, sent by b: the proof is bound to c's id
      statement(b, { key: cKey.toBytes(), proof: encryptionKeyProof(c.id, secretOf(c), seededRandomBytes('stolen')) }),
      statement(b, { key: G1.ZERO.toBytes(), proof: new Uint8Array(64) }),
      statement(b, { key: G1.BASE.multiply(secretOf(b)).toBytes(false), proof: encryptionKeyProof(b.id, secretOf(b), seededRandomBytes('raw')) }),
      statement(b, { key: new Uint8Array(48).fill(7), proof: new Uint8Array(64) }),
      statement(b, { key: G1.BASE.multiply(secretOf(b)).toBytes(), proof: new Uint8Array(63) })
    ]
    for (const env of bad) {
      expect(service.deliver(datagram(env, b.id, self), b.id)).to.include({ ok: false, reason: 'bad-key' })
    }
    expect(service.sessions()[0].state).to.equal('keys')
    for (const p of [b, c]) { expect(service.deliver(datagram(honest(p), p.id, self), p.id)).to.deep.equal({ ok: true }) }
    expect(service.sessions()[0].state).to.equal('running')
    await service.stop()
    expect((await outcome).state).to.equal('aborted')

    // as a member: a begin that relays a statement with a stolen proof is refused, the session waits for a good one
    await startService()
    const a = await peer()
    const session2 = new Uint8Array(16).fill(13)
    expect(service.deliver(startFrom(a, [a.id, b.id, self], session2), a.id)).to.deep.equal({ ok: true })
    const own = (p: Peer): Envelope => p.sign('key', encode({ session: session2, key: G1.BASE.multiply(secretOf(p)).toBytes(), proof: encryptionKeyProof(p.id, secretOf(p), seededRandomBytes(`p2-${p.id}`)) }))
    const stolen = b.sign('key', encode({ session: session2, key: G1.BASE.multiply(secretOf(a)).toBytes(), proof: encryptionKeyProof(a.id, secretOf(a), seededRandomBytes('s2')) }))
    expect(service.sessions()[0].state).to.equal('keys')
    const begin = (keys: Envelope[]): unknown => datagram(a.sign('begin', encode({ session: session2, keys })), a.id, self)
    expect(service.deliver(begin([own(a), stolen]), a.id)).to.include({ ok: false, reason: 'bad-key' })
    expect(service.sessions()[0].state).to.equal('keys')
  })

  it(`signing: a message over DKG_SIGN_MESSAGE_BYTES_MAX (${DKG_SIGN_MESSAGE_BYTES_MAX}) bytes, no key, and more than DKG_SIGN_ROUNDS_MAX (${DKG_SIGN_ROUNDS_MAX}) rounds at once are refused`, async () => {
    await startService()
    await expectReason(service.thresholdSign(new Uint8Array(DKG_SIGN_MESSAGE_BYTES_MAX + 1)), 'bad-message')
    await expectReason(service.thresholdSign(new Uint8Array(1)), 'no-key')
    await service.stop()
    // a 2-of-2 group whose other member never answers: rounds stay open
    await storeTwoOfTwo('group')
    await startService()
    const rounds = Array.from({ length: DKG_SIGN_ROUNDS_MAX }, async (_, i) => service.thresholdSign(new Uint8Array([i])).catch((err: DkgError) => err.reason))
    await expectReason(service.thresholdSign(new Uint8Array([99])), 'rounds-full')
    await service.stop()
    // stopped: each round ends with the one partial it has, too few
    expect(await Promise.all(rounds)).to.deep.equal(new Array(DKG_SIGN_ROUNDS_MAX).fill('sign-failed'))
  })

  it('membership certificates: a generic round refuses their domain; a request for one gets a partial only when admission\'s policy allows; a revoked member gets none', async () => {
    const other = await storeTwoOfTwo('certificates')
    const revoked = new Set<string>()
    let policy: string | null = 'not approved here'
    await startService({ revoked, mayCertify: () => policy })
    const groupKey = service.groupInfo()!.groupKey
    const cert = groupCertificateMessage({ cluster: 'accord', groupKey, peer: other.id, issuedAtMs: Date.now(), expiresAtMs: Date.now() + 60_000 })
    await expectReason(service.thresholdSign(cert), 'reserved')
    const ask = (message: Uint8Array): unknown => datagram(other.sign('sign', encode({ round: new Uint8Array(16), groupKey, message })), other.id, self)
    expect(service.deliver(ask(cert), other.id)).to.include({ ok: false, reason: 'not-approved' })
    policy = null
    expect(service.deliver(ask(cert), other.id)).to.deep.equal({ ok: true })
    revoked.add(other.id)
    expect(service.deliver(ask(cert), other.id)).to.include({ ok: false, reason: 'revoked' })
    expect(service.deliver(ask(new TextEncoder().encode('hello')), other.id)).to.include({ ok: false, reason: 'revoked' })
  })

  it('the approve policy: a member asked signs only a message its operator approved, until the approval expires; open signs any', async () => {
    const other = await storeTwoOfTwo('policy')
    await startService({}, 'approve')
    const groupKey = service.groupInfo()!.groupKey
    const ask = (message: Uint8Array): unknown => datagram(other.sign('sign', encode({ round: new Uint8Array(16), groupKey, message })), other.id, self)
    const hello = new TextEncoder().encode('hello')
    expect(service.deliver(ask(hello), other.id)).to.include({ ok: false, reason: 'not-approved' })
    service.approveMessage(hello, 60_000)
    expect(service.deliver(ask(hello), other.id)).to.deep.equal({ ok: true })
    expect(service.deliver(ask(new TextEncoder().encode('hello!')), other.id)).to.include({ ok: false, reason: 'not-approved' })
    expect(() => service.approveMessage(hello, 999)).to.throw(RangeError, 'an approval lasts')
    await service.stop()
    await startService({}, 'open')
    expect(service.deliver(ask(new TextEncoder().encode('anything')), other.id)).to.deep.equal({ ok: true })
    expect(() => new DkgService(fakeComponents(nodeKey), { dataDir: dir, signPolicy: 'sometimes' as SignPolicy })).to.throw(RangeError, 'signPolicy')
  })
})

describe('dkg: message approvals (the approve signing policy)', () => {
  it(`expire, and at most approvalsMax (${MESSAGE_APPROVALS_MAX} by default) are held: one more is refused until some expire`, () => {
    const approvals = new MessageApprovals(2)
    const [a, b, c] = ['a', 'b', 'c'].map(t => new TextEncoder().encode(t))
    approvals.approve(a, 1000, 0)
    approvals.approve(b, 5000, 0)
    expect(approvals.isApproved(a, 999)).to.equal(true)
    expect(approvals.isApproved(a, 1000)).to.equal(false)
    expect(() => approvals.approve(c, 1000, 500)).to.throw(RangeError, '2 message approvals are held already')
    // again for one held: a new expiry, not a new entry
    expect(approvals.approve(b, 1000, 500).expiresAtMs).to.equal(1500)
    // a's approval expired: room for c
    expect(approvals.approve(c, 1000, 1000).digest).to.equal(messageDigest(c))
    expect(approvals.isApproved(c, 1500)).to.equal(true)
  })
})

describe('dkg service: PBFT checkpoints', function () {
  this.timeout(60_000)
  let dir: string

  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('no signing round signs under the checkpoint domain, here or on a member asked; each replica signs its own partial locally, that domain only', async () => {
    dir = await mkdtemp(join(tmpdir(), 'accord-dkg-'))
    const identity = await loadOrCreateIdentity(dir)
    const self = identity.peerId.toString()
    const other = await peer()
    const random = seededRandomBytes('checkpoints')
    const secret = randomPolynomial(randomScalar(random), 2, random)
    const commitments = commit(secret)
    const group = { session: '00', members: [self, other.id].sort(), threshold: 2, commitments: commitments.map(c => Buffer.from(c.toBytes()).toString('hex')) }
    const index = group.members.indexOf(self) + 1
    const share = evaluatePolynomial(secret, BigInt(index))
    await saveGroup(dir, undefined, { group, record: shareRecord(group, commitments, index, scalarToBytes(share)) })
    // a round that went ahead would end after signTimeoutMs with one partial, too few
    const service = new DkgService(fakeComponents(identity.privateKey, {}), { dataDir: dir, settings: { keyWaitMs: 60_000, signTimeoutMs: 200 } })
    await service.start()
    try {
      const groupKey = service.groupInfo()!.groupKey
      const payload = checkpointGroupPayload(64, 'ab'.repeat(32))
      // a lying member cannot have the honest ones sign a stable checkpoint: the generic round refuses, and so does a member asked
      await expectReason(service.thresholdSign(payload), 'reserved')
      const ask = (message: Uint8Array): unknown => datagram(other.sign('sign', encode({ round: new Uint8Array(16), groupKey, message })), other.id, self)
      expect(service.deliver(ask(payload), other.id)).to.include({ ok: false, reason: 'reserved' })
      expect(service.deliver(ask(new TextEncoder().encode('hello')), other.id)).to.deep.equal({ ok: true })
      // nor under the key confirmation domain: a confirmation comes from a session's own end (node/dkg/confirmation.ts)
      const confirmation = confirmationMessage(new Uint8Array(16), groupKey)
      await expectReason(service.thresholdSign(confirmation), 'reserved')
      expect(service.deliver(ask(confirmation), other.id)).to.include({ ok: false, reason: 'reserved' })
      // the local partial: under the checkpoint domain only, valid under this node's public share
      const partial = service.signCheckpointPartial(payload)
      const checkpointGroup = service.checkpointGroup()
      expect(checkpointGroup?.members).to.deep.equal(group.members)
      expect(verifyPartial(checkpointGroup!.key, payload, { index, signature: partial! })).to.equal(true)
      expect(() => service.signCheckpointPartial(new TextEncoder().encode('hello'))).to.throw(DkgError, 'checkpoint')
    } finally {
      await service.stop()
    }
  })
})

async function expectReason (promise: Promise<unknown>, reason: string): Promise<void> {
  const error = await promise.then(() => null, (err: unknown) => err)
  expect(error).to.be.instanceOf(DkgError)
  expect((error as DkgError).reason).to.equal(reason)
}
