/**
 * The DKG service's reshare without a network (datagrams fed to deliver,
 * fake libp2p components): the old group a start carries is checked (its
 * shape, that its initiator is an old member, and, at an old member, that
 * it is the group this node stores), key statements of old-only members
 * carry no key, the initiator begins only with the old threshold of old
 * members, a node without a key cannot reshare, and dropGroup deletes the
 * share and the group file.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { encode } from 'cborg'
import { G1, randomScalar, scalarToBytes } from '../../identity/bls.ts'
import { decodeKeystore } from '../../identity/keystore.ts'
import { commit } from '../../identity/threshold/feldman.ts'
import { evaluatePolynomial, randomPolynomial } from '../../identity/threshold/shamir.ts'
import { DkgError, DkgService } from '../../node/dkg/service.ts'
import { DKG_GROUP_FILE, DKG_GROUP_ID, dropGroup, loadGroup, saveGroup, shareRecord } from '../../node/dkg/store.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { encryptionKeyProof } from '../../protocols/dkg/index.ts'
import { datagram, fakeComponents, peer } from './dkg-service-helpers.ts'
import { seededRandomBytes } from './threshold-helpers.ts'
import type { Peer } from './dkg-service-helpers.ts'
import type { Envelope } from '../../node/dkg/envelope.ts'
import type { DkgGroup } from '../../node/dkg/store.ts'
import type { PrivateKey } from '@libp2p/interface'

describe('dkg service: reshare (datagrams fed directly)', function () {
  this.timeout(60_000)
  let dir: string
  let service: DkgService | undefined
  let self: string
  let nodeKey: PrivateKey
  let b: Peer
  let c: Peer

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'accord-dkg-'))
    const identity = await loadOrCreateIdentity(dir)
    nodeKey = identity.privateKey
    self = identity.peerId.toString()
    b = await peer()
    c = await peer()
  })

  afterEach(async () => {
    await service?.stop()
    service = undefined
    await rm(dir, { recursive: true, force: true })
  })

  /** A 2-of-2 group of this node and b, with this node's share, stored in the data dir. */
  const storeGroup = async (): Promise<DkgGroup> => {
    const random = seededRandomBytes('group')
    const polynomial = randomPolynomial(randomScalar(random), 2, random)
    const commitments = commit(polynomial)
    const group = { session: '00', members: [self, b.id].sort(), threshold: 2, commitments: commitments.map(p => Buffer.from(p.toBytes()).toString('hex')) }
    const index = group.members.indexOf(self) + 1
    await saveGroup(dir, undefined, { group, record: shareRecord(group, commitments, index, scalarToBytes(evaluatePolynomial(polynomial, BigInt(index)))) })
    return group
  }
  const startService = async (keyWaitMs = 60_000): Promise<DkgService> => {
    service = new DkgService(fakeComponents(nodeKey), { dataDir: dir, settings: { keyWaitMs, tickMs: 10 } })
    await service.start()
    return service
  }
  const oldField = (group: DkgGroup): Record<string, unknown> =>
    ({ ...group, commitments: group.commitments.map(h => Uint8Array.from(Buffer.from(h, 'hex'))) })
  const reshareStart = (initiator: Peer, members: string[], old: unknown, session = new Uint8Array(16).fill(5)): unknown =>
    datagram(initiator.sign('start', encode({ session, members, threshold: 1, old })), initiator.id, self)
  const keyOf = (p: Peer, session: Uint8Array): Envelope => {
    const secret = randomScalar(seededRandomBytes(p.id))
    return p.sign('key', encode({ session, key: G1.BASE.multiply(secret).toBytes(), proof: encryptionKeyProof(p.id, secret, seededRandomBytes(`${p.id}:proof`)) }))
  }

  it('an old member accepts a reshare of the group it stores, and refuses one of another group (group-mismatch)', async () => {
    const group = await storeGroup()
    const svc = await startService()
    const other = { ...group, commitments: otherCommitments() }
    expect(svc.deliver(reshareStart(b, [b.id, c.id], oldField(other)), b.id)).to.include({ ok: false, reason: 'group-mismatch' })
    expect(svc.sessions()).to.deep.equal([])
    expect(svc.deliver(reshareStart(b, [b.id, c.id], oldField(group)), b.id)).to.deep.equal({ ok: true })
    expect(svc.sessions()[0]).to.include({ kind: 'reshare', state: 'keys', threshold: 1 })
    expect(svc.sessions()[0].old).to.deep.equal({ members: group.members, threshold: 2 })
  })

  it('a malformed old group, an initiator outside the old group, and a node in neither group are refused', async () => {
    const group = await storeGroup()
    const svc = await startService()
    const d = await peer()
    const malformed = [
      'text',
      { ...oldField(group), members: [...group.members].reverse() },
      { ...oldField(group), commitments: [new Uint8Array(48)] },
      { ...oldField(group), session: 'not hex' },
      { ...oldField(group), threshold: 3 }
    ]
    for (const old of malformed) {
      expect(svc.deliver(reshareStart(b, [b.id, c.id], old), b.id)).to.include({ ok: false, reason: 'malformed' })
    }
    expect(svc.deliver(reshareStart(c, [b.id, c.id], oldField(group)), c.id)).to.include({ ok: false, reason: 'not-a-member' })
    const elsewhere = { ...oldField(group), members: [b.id, d.id].sort() }
    expect(svc.deliver(reshareStart(b, [b.id, c.id], elsewhere), b.id)).to.include({ ok: false, reason: 'not-a-member' })
    expect(svc.sessions()).to.deep.equal([])
  })

  it('a node that holds no key cannot reshare (no-key)', async () => {
    const svc = await startService()
    const error = await svc.reshare({ members: [self, b.id], threshold: 1 }).then(() => null, (err: unknown) => err)
    expect(error).to.be.instanceOf(DkgError)
    expect((error as DkgError).reason).to.equal('no-key')
  })

  it('the initiator takes a key from each new member and a keyless statement from an old-only member, then begins with every one of them', async () => {
    await storeGroup()
    const svc = await startService()
    // old group: this node and b; new group: b and c (this node leaves)
    const outcome = svc.reshare({ members: [b.id, c.id], threshold: 2, sessionId: '0b'.repeat(16) })
    const session = Uint8Array.from(Buffer.from('0b'.repeat(16), 'hex'))
    expect(svc.deliver(datagram(c.sign('key', encode({ session })), c.id, self), c.id)).to.include({ ok: false, reason: 'bad-key' })
    expect(svc.deliver(datagram(keyOf(c, session), c.id, self), c.id)).to.deep.equal({ ok: true })
    expect(svc.sessions()[0].state).to.equal('keys')
    expect(svc.deliver(datagram(keyOf(b, session), b.id, self), b.id)).to.deep.equal({ ok: true })
    expect(svc.sessions()[0].state).to.equal('running')
    expect(svc.sessions()[0].participants).to.deep.equal([self, b.id, c.id].sort())
    await svc.stop()
    expect((await outcome).state).to.equal('aborted')
  })

  it('with fewer old members answering than the old threshold the initiator aborts, naming who was silent, and the stored group stays', async () => {
    const group = await storeGroup()
    const svc = await startService(50)
    const outcome = svc.reshare({ members: [b.id, c.id], threshold: 1, sessionId: '0c'.repeat(16) })
    const session = Uint8Array.from(Buffer.from('0c'.repeat(16), 'hex'))
    expect(svc.deliver(datagram(keyOf(c, session), c.id, self), c.id)).to.deep.equal({ ok: true })
    const view = await outcome
    expect(view.state).to.equal('aborted')
    expect(view.reason).to.equal(`1 of 2 old members answered, old threshold 2 (fewer old shares cannot reshare the key); silent: ${b.id}`)
    expect(svc.summary()?.groupKey).to.equal(group.commitments[0])
    expect((await loadGroup(dir, undefined))?.group).to.deep.equal(group)
  })

  it('dropGroup deletes the DKG share from the keystore and the group file, and keeps the identity', async () => {
    await storeGroup()
    const before = decodeKeystore(await readFile(join(dir, 'identity.key')))
    expect(before.bls.map(r => r.groupId)).to.include(DKG_GROUP_ID)
    await dropGroup(dir, undefined)
    expect(await loadGroup(dir, undefined)).to.equal(null)
    const after = decodeKeystore(await readFile(join(dir, 'identity.key')))
    expect(after.bls.map(r => r.groupId)).to.not.include(DKG_GROUP_ID)
    expect((await loadOrCreateIdentity(dir)).peerId.toString()).to.equal(self)
    await expect(stat(join(dir, DKG_GROUP_FILE))).to.eventually.be.rejected()
  })
})

/** Commitments of an unrelated polynomial: a group this node does not hold. */
function otherCommitments (): string[] {
  const random = seededRandomBytes('other')
  return commit(randomPolynomial(randomScalar(random), 2, random)).map(p => Buffer.from(p.toBytes()).toString('hex'))
}
