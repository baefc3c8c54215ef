/*
 * Node key rotation in a node: the acceptance rules of hand-over
 * statements (node/admission/handovers.ts), their file, the certificate
 * move on the first start after a rotation (node/admission/credentials.ts)
 * and `accord keys rotate`'s library call (node/key-rotation.ts).
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { decode, encode } from 'cborg'
import { LevelDatastore } from 'datastore-level'
import { verifyCertificate } from '../../identity/cluster-credentials.ts'
import { createHandover, HANDOVER_BYTES_MAX } from '../../identity/keystore-rotation.ts'
import { foundCluster, loadCredentials, loadPredecessorCertificate, saveCredentials } from '../../node/admission/credentials.ts'
import { HandoverBook, HANDOVERS_FILE, loadHandovers, saveHandovers } from '../../node/admission/handovers.ts'
import { UserError } from '../../node/errors.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { rotateDataDirNodeKey } from '../../node/key-rotation.ts'
import type { HandoverContext } from '../../node/admission/handovers.ts'
import type { PrivateKey } from '@libp2p/interface'

const CLUSTER = 'prod'
const idOf = (key: PrivateKey): string => peerIdFromPrivateKey(key).toString()
const handover = async (from: PrivateKey, to: PrivateKey, sequence = 1, clusterId = CLUSTER): Promise<Uint8Array> =>
  createHandover(from, to, { clusterId, sequence, timestampMs: 1_700_000_000_000 })

/** Every old key is a member's, nobody is revoked, unless the test says otherwise. */
const context = (over: Partial<HandoverContext> = {}): HandoverContext => ({
  clusterId: CLUSTER,
  isRevoked: () => false,
  isMember: () => true,
  ...over
})

/** The statement with one of its signatures (1: old, 2: new) or its body changed. */
function tampered (statement: Uint8Array, part: 0 | 1 | 2): Uint8Array {
  const outer = decode(statement) as Uint8Array[]
  const copy = outer.map(p => Uint8Array.from(p))
  copy[part][part === 0 ? copy[0].length - 1 : 5] ^= 1
  return encode(copy)
}

describe('key hand-over acceptance (HandoverBook)', () => {
  let a: PrivateKey, b: PrivateKey, c: PrivateKey, d: PrivateKey

  before(async () => {
    [a, b, c, d] = await Promise.all([1, 2, 3, 4].map(async () => generateKeyPair('Ed25519')))
  })

  it('accepts the first hand-over of a member key: the old peer id is retired, the new one current at sequence 1', async () => {
    const book = new HandoverBook()
    const verdict = await book.judge(await handover(a, b), context())
    expect(verdict).to.deep.include({ ok: true, fresh: true })
    if (!verdict.ok) { throw new Error('refused') }
    expect(verdict.handover.oldPeerId).to.equal(idOf(a))
    expect(verdict.handover.newPeerId).to.equal(idOf(b))
    expect(book.isRetired(idOf(a))).to.equal(true)
    expect(book.isRetired(idOf(b))).to.equal(false)
    expect(book.successorOf(idOf(a))).to.equal(idOf(b))
    expect(book.sequenceOf(idOf(b))).to.equal(1)
  })

  it('accepts the same statement again without change (a rotated node shows it on every connection)', async () => {
    const book = new HandoverBook()
    const statement = await handover(a, b)
    await book.judge(statement, context())
    expect(await book.judge(statement, context())).to.deep.include({ ok: true, fresh: false })
    expect(book.size).to.equal(1)
  })

  it('refuses a second, different statement from the same old key as a conflict (evidence the key leaked); the first stays', async () => {
    const book = new HandoverBook()
    await book.judge(await handover(a, b), context())
    const second = await book.judge(await handover(a, c), context())
    expect(second).to.deep.include({ ok: false, reason: 'conflict' })
    expect(book.successorOf(idOf(a))).to.equal(idOf(b))
    expect(book.isRetired(idOf(c))).to.equal(false)
  })

  it('follows a chain at the next sequence, and refuses replays and skips', async () => {
    const book = new HandoverBook()
    const ab = await handover(a, b, 1)
    expect(await book.judge(ab, context())).to.include({ ok: true })
    // B was made current at 1: a statement from B at 1 again is stale, at 3 skips one
    expect(await book.judge(await handover(b, c, 1), context())).to.deep.include({ ok: false, reason: 'stale' })
    expect(await book.judge(await handover(b, c, 3), context())).to.deep.include({ ok: false, reason: 'skipped' })
    expect(await book.judge(await handover(b, c, 2), context({ isMember: () => false }))).to.deep.include({ ok: true, fresh: true })
    expect(book.sequenceOf(idOf(c))).to.equal(2)
    // the first statement replayed after the second: B is retired as well
    expect(await book.judge(ab, context())).to.deep.include({ ok: false, reason: 'stale' })
    // a key this node never saw rotate starts at sequence 1
    expect(await book.judge(await handover(d, await generateKeyPair('Ed25519'), 2), context())).to.deep.include({ ok: false, reason: 'skipped' })
  })

  it('refuses a hand-over back to a retired key (A -> B -> A)', async () => {
    const book = new HandoverBook()
    await book.judge(await handover(a, b, 1), context())
    expect(await book.judge(await handover(b, a, 2), context())).to.deep.include({ ok: false, reason: 'revoked' })
  })

  it('refuses an old key that is not a member\'s, and a revoked old or new peer id', async () => {
    const book = new HandoverBook()
    expect(await book.judge(await handover(a, b), context({ isMember: () => false }))).to.deep.include({ ok: false, reason: 'unknown-key' })
    expect(await book.judge(await handover(a, b), context({ isRevoked: (p) => p === idOf(a) }))).to.deep.include({ ok: false, reason: 'revoked' })
    expect(await book.judge(await handover(a, b), context({ isRevoked: (p) => p === idOf(b) }))).to.deep.include({ ok: false, reason: 'revoked' })
    expect(book.size).to.equal(0)
  })

  it('refuses tampered signatures or body, another cluster, oversize and malformed input', async () => {
    const book = new HandoverBook()
    const statement = await handover(a, b)
    expect(await book.judge(tampered(statement, 1), context())).to.deep.include({ ok: false, reason: 'bad-signature' })
    expect(await book.judge(tampered(statement, 2), context())).to.deep.include({ ok: false, reason: 'bad-signature' })
    expect((await book.judge(tampered(statement, 0), context())).ok).to.equal(false)
    expect(await book.judge(await handover(a, b, 1, 'other'), context())).to.deep.include({ ok: false, reason: 'wrong-cluster' })
    expect(await book.judge(new Uint8Array(HANDOVER_BYTES_MAX + 1), context())).to.deep.include({ ok: false, reason: 'oversize' })
    expect(await book.judge(Uint8Array.from([1, 2, 3]), context())).to.deep.include({ ok: false, reason: 'malformed' })
    expect(book.size).to.equal(0)
    // none of them spoiled the real one
    expect(await book.judge(statement, context())).to.deep.include({ ok: true, fresh: true })
  })

  it('holds at most entriesMax hand-overs: the next one is refused as full, and none is evicted', async () => {
    const book = new HandoverBook(2)
    const keys = await Promise.all(Array.from({ length: 6 }, async () => generateKeyPair('Ed25519')))
    expect(await book.judge(await handover(keys[0], keys[1]), context())).to.include({ ok: true })
    expect(await book.judge(await handover(keys[2], keys[3]), context())).to.include({ ok: true })
    expect(await book.judge(await handover(keys[4], keys[5]), context())).to.deep.include({ ok: false, reason: 'full' })
    expect(book.size).to.equal(2)
    expect(book.isRetired(idOf(keys[0]))).to.equal(true)
    expect(book.isRetired(idOf(keys[4]))).to.equal(false)
  })

  it('concurrent statements from one key: one is accepted, the other refused', async () => {
    const book = new HandoverBook()
    const verdicts = await Promise.all([book.judge(await handover(a, b), context()), book.judge(await handover(a, c), context())])
    expect(verdicts.filter(v => v.ok)).to.have.length(1)
    expect(verdicts.filter(v => !v.ok)[0]).to.include({ reason: 'conflict' })
  })

  it('saves and restores the accepted hand-overs; refuses a damaged or out-of-order file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'accord-handovers-'))
    try {
      const book = new HandoverBook()
      await book.judge(await handover(a, b, 1), context())
      await book.judge(await handover(b, c, 2), context())
      await saveHandovers(dir, book)
      const path = join(dir, 'admission', HANDOVERS_FILE)
      expect((await stat(path)).mode & 0o777).to.equal(0o600)
      const restored = new HandoverBook()
      await loadHandovers(dir, restored)
      expect(restored.isRetired(idOf(a))).to.equal(true)
      expect(restored.isRetired(idOf(b))).to.equal(true)
      expect(restored.sequenceOf(idOf(c))).to.equal(2)
      expect(await restored.judge(await handover(a, d, 1), context())).to.deep.include({ ok: false, reason: 'conflict' })

      const saved = JSON.parse(await readFile(path, 'utf8'))
      await writeFile(path, JSON.stringify({ v: 1, accepted: [...saved.accepted].reverse() }))
      await expect(loadHandovers(dir, new HandoverBook())).to.be.rejectedWith(UserError, /does not follow/)
      await writeFile(path, '{"v":2}')
      await expect(loadHandovers(dir, new HandoverBook())).to.be.rejectedWith(UserError, /not a hand-over list/)
      await writeFile(path, JSON.stringify(saved))
      await expect(loadHandovers(dir, new HandoverBook(1))).to.be.rejectedWith(UserError, /over the limit of 1/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('accord keys rotate (rotateDataDirNodeKey) and the next start', () => {
  let dir: string

  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'accord-rotate-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  async function memberDataDir (): Promise<string> {
    const identity = await loadOrCreateIdentity(dir)
    await saveCredentials(dir, await foundCluster('accord', identity.peerId, Date.now()))
    return identity.peerId.toString()
  }

  it('makes a new key with the hand-over; the next start keeps the old certificate and certifies the new peer id', async () => {
    const oldId = await memberDataDir()
    const rotated = await rotateDataDirNodeKey(dir, { nowMs: 1_700_000_000_000 })
    expect(rotated).to.include({ oldPeerId: oldId, sequence: 1 })
    expect(rotated.newPeerId).to.not.equal(oldId)
    const identity = await loadOrCreateIdentity(dir, { create: false })
    expect(identity.peerId.toString()).to.equal(rotated.newPeerId)
    expect(identity.keystore.rotation).to.equal(1)
    expect((await stat(identity.path)).mode & 0o777).to.equal(0o600)
    const book = new HandoverBook()
    expect(await book.judge(identity.keystore.handover!, context({ clusterId: 'accord' }))).to.deep.include({ ok: true })
    expect(book.successorOf(oldId)).to.equal(rotated.newPeerId)

    // a second rotation before a start is refused: the certificate still names the old key
    await expect(rotateDataDirNodeKey(dir)).to.be.rejectedWith(UserError, /start the node once after its last rotation/)

    // the start: without the predecessor the certificate does not admit the new key; with it, it is moved and renewed
    await expect(loadCredentials(dir, 'accord', identity.peerId)).to.be.rejectedWith(UserError, /certificate of another peer/)
    const credentials = await loadCredentials(dir, 'accord', identity.peerId, undefined, oldId)
    expect(await verifyCertificate(credentials!.certificate, { cluster: 'accord', clusterKey: credentials!.clusterPublicKey, peer: rotated.newPeerId })).to.not.be.a('string')
    const predecessor = await loadPredecessorCertificate(dir)
    expect(await verifyCertificate(predecessor!, { cluster: 'accord', clusterKey: credentials!.clusterPublicKey, peer: oldId })).to.not.be.a('string')
    // and now the node can rotate again, at sequence 2
    expect(await rotateDataDirNodeKey(dir)).to.include({ oldPeerId: rotated.newPeerId, sequence: 2 })
  })

  it('refuses while a node holds the data dir\'s datastore lock, and for a node that never joined', async () => {
    await memberDataDir()
    const datastore = new LevelDatastore(join(dir, 'datastore'))
    await datastore.open()
    try {
      await expect(rotateDataDirNodeKey(dir)).to.be.rejectedWith(UserError, /is a node running from .* stop it first/)
    } finally {
      await datastore.close()
    }
    const other = await mkdtemp(join(tmpdir(), 'accord-rotate-'))
    try {
      await loadOrCreateIdentity(other)
      await expect(rotateDataDirNodeKey(other)).to.be.rejectedWith(UserError, /has not joined a cluster/)
      await expect(rotateDataDirNodeKey(join(other, 'missing'))).to.be.rejectedWith(UserError, /holds no accord node/)
    } finally {
      await rm(other, { recursive: true, force: true })
    }
  })

  it('refuses while node.json names a live process', async () => {
    await memberDataDir()
    await writeFile(join(dir, 'node.json'), JSON.stringify({ pid: process.pid }))
    await expect(rotateDataDirNodeKey(dir)).to.be.rejectedWith(UserError, /a node is running from .* \(pid \d+\): stop it first/)
  })
})
