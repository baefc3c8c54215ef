import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { decode, encode } from 'cborg'
import fc from 'fast-check'
import { keygen } from '../../identity/frost/index.ts'
import { encodeKeyFile, KeyFileError } from '../../identity/key-file.ts'
import { createHandover, decodeHandover, HANDOVER_BYTES_MAX, rotateNodeKey, verifyHandover } from '../../identity/keystore-rotation.ts'
import {
  decodeKeystore, encodeKeystore, GROUP_ID_CHARS_MAX, isEncryptedKeystore, KEYSTORE_BYTES_MAX, KEYSTORE_ENTRIES_MAX, KEYSTORE_VERSION
} from '../../identity/keystore.ts'
import { IDENTITY_FILE, loadOrCreateIdentity } from '../../node/identity.ts'
import type { BlsShareRecord, FrostShareRecord, Keystore } from '../../identity/keystore.ts'
import type { PrivateKey } from '@libp2p/interface'

const fixedRandom = (n: number): Uint8Array => new Uint8Array(n).fill(7)
const counterRandom = (): ((n: number) => Uint8Array) => {
  let i = 0
  return (n) => Uint8Array.from({ length: n }, () => (i++ * 97 + 13) & 0xff)
}
const json = (bytes: Uint8Array): any => JSON.parse(new TextDecoder().decode(bytes))
const bytesOf = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value))

describe('keystore', () => {
  let nodeKey: PrivateKey
  let frost: FrostShareRecord
  let bls: BlsShareRecord
  let store: Keystore

  before(async () => {
    nodeKey = await generateKeyPair('Ed25519')
    const { group, shares } = keygen({ threshold: 2, total: 3, randomBytes: counterRandom() })
    frost = { groupId: 'treasury', share: shares[1], group }
    bls = {
      groupId: 'beacon',
      index: 2,
      threshold: 2,
      total: 3,
      share: new Uint8Array(32).fill(1),
      groupPublicKey: new Uint8Array(96).fill(2),
      publicShares: [new Uint8Array(96).fill(3), new Uint8Array(96).fill(4), new Uint8Array(96).fill(5)]
    }
    store = { nodeKey, rotation: 0, bls: [bls], frost: [frost] }
  })

  describe('format', () => {
    it('round-trips the node key, BLS and FROST shares, plain and sealed', () => {
      for (const passphrase of [undefined, 'correct horse']) {
        const bytes = encodeKeystore(store, { passphrase, randomBytes: fixedRandom })
        expect(json(bytes).version).to.equal(KEYSTORE_VERSION)
        expect(isEncryptedKeystore(bytes)).to.equal(passphrase !== undefined)
        const back = decodeKeystore(bytes, passphrase)
        expect(back.nodeKey.equals(nodeKey)).to.equal(true)
        expect(back.rotation).to.equal(0)
        expect(back.bls).to.deep.equal([bls])
        expect(back.frost).to.deep.equal([frost])
      }
    })

    it('keeps its secrets out of the sealed file and refuses a wrong or missing passphrase', () => {
      const bytes = encodeKeystore(store, { passphrase: 'p', randomBytes: fixedRandom })
      const text = new TextDecoder().decode(bytes)
      expect(text).to.not.include(Buffer.from(frost.share.signingShare).toString('base64'))
      expect(text).to.not.include('treasury')
      expect(() => decodeKeystore(bytes, 'q')).to.throw(KeyFileError, /wrong passphrase/)
      expect(() => decodeKeystore(bytes)).to.throw(KeyFileError, /passphrase is required/)
    })

    it('binds the ciphertext to its version: a v2 ciphertext relabelled as a v1 key file does not open', () => {
      const file = json(encodeKeystore(store, { passphrase: 'p', randomBytes: fixedRandom }))
      file.version = 1
      file.type = 'Ed25519'
      expect(() => decodeKeystore(bytesOf(file), 'p')).to.throw(KeyFileError, /wrong passphrase|corrupt/)
    })

    it('still reads version 1 identity key files, plain and encrypted, as a keystore with only the node key', () => {
      for (const passphrase of [undefined, 'p']) {
        const old = decodeKeystore(encodeKeyFile(nodeKey, { passphrase, randomBytes: fixedRandom }), passphrase)
        expect(old.nodeKey.equals(nodeKey)).to.equal(true)
        expect(old).to.deep.include({ rotation: 0, bls: [], frost: [] })
      }
    })

    it('refuses a FROST share that is not on its group\'s polynomial, or a group with a swapped verifying share', () => {
      const file = json(encodeKeystore(store, { randomBytes: fixedRandom }))
      const frostEntry = file.entries.find((e: any) => e.type === 'frost-share')
      const original = frostEntry.signingShare
      frostEntry.signingShare = Buffer.from(keygen({ threshold: 2, total: 3, randomBytes: fixedRandom }).shares[1].signingShare).toString('base64')
      expect(() => decodeKeystore(bytesOf(file))).to.throw(KeyFileError, /entry 2 \(frost-share\): share 2 is not on the group's polynomial/)
      frostEntry.signingShare = original
      frostEntry.verifyingShares.reverse()
      expect(() => decodeKeystore(bytesOf(file))).to.throw(KeyFileError, /verifying share 1 does not match/)
    })

    it('refuses malformed entries with a reason naming the entry', () => {
      const good = json(encodeKeystore(store, { randomBytes: fixedRandom }))
      const withEntries = (mutate: (entries: any[]) => void): Uint8Array => {
        const file = structuredClone(good)
        mutate(file.entries)
        return bytesOf(file)
      }
      expect(() => decodeKeystore(withEntries((e) => e.push({ type: 'rsa-key' })))).to.throw(KeyFileError, /entry 3 \(rsa-key\): unknown entry type/)
      expect(() => decodeKeystore(withEntries((e) => { e[1].extra = 1 }))).to.throw(KeyFileError, /unknown field\(s\): extra/)
      expect(() => decodeKeystore(withEntries((e) => e.push(e[0])))).to.throw(KeyFileError, /two node keys/)
      expect(() => decodeKeystore(withEntries((e) => e.shift()))).to.throw(KeyFileError, /no node key/)
      expect(() => decodeKeystore(withEntries((e) => e.push(e[1])))).to.throw(KeyFileError, /group "beacon" appears twice/)
      expect(() => decodeKeystore(withEntries((e) => { e[1].index = 4 }))).to.throw(KeyFileError, /index must be an integer in 1..3 \(got 4\)/)
      expect(() => decodeKeystore(withEntries((e) => { e[1].total = 256 }))).to.throw(KeyFileError, /total must be an integer in 2..255/)
      expect(() => decodeKeystore(withEntries((e) => { e[1].group = 'g'.repeat(GROUP_ID_CHARS_MAX + 1) }))).to.throw(KeyFileError, /group must be a string of 1 to 64 characters/)
      expect(() => decodeKeystore(withEntries((e) => { e[1].publicShares.pop() }))).to.throw(KeyFileError, /publicShares must be a list of 3/)
      expect(() => decodeKeystore(withEntries((e) => { e[1].share = Buffer.alloc(193).toString('base64') }))).to.throw(KeyFileError, /share must be base64 of at most 192 bytes/)
      expect(() => decodeKeystore(withEntries((e) => { e[2].commitments[0] = 'AAAA' }))).to.throw(KeyFileError, /commitments\[0\] must be 32 bytes/)
      expect(() => decodeKeystore(withEntries((e) => { e[0].key = 'AAAA' }))).to.throw(KeyFileError, /does not hold a valid private key/)
      expect(() => decodeKeystore(withEntries((e) => { e[0].rotation = 3 }))).to.throw(KeyFileError, /keeps its hand-over statement/)
      expect(() => decodeKeystore(bytesOf({ version: 2, entries: [], extra: true }))).to.throw(KeyFileError, /unknown field\(s\): extra/)
      expect(() => decodeKeystore(bytesOf({ version: 9 }))).to.throw(KeyFileError, /version 9 is not supported/)
      expect(() => decodeKeystore(new TextEncoder().encode('[1]'))).to.throw(KeyFileError, /not a JSON object/)
    })

    it('answers any mangled file with a KeyFileError or a keystore, never another exception', () => {
      const good = json(encodeKeystore(store, { randomBytes: fixedRandom }))
      const fields = ['type', 'key', 'rotation', 'handover', 'group', 'index', 'threshold', 'total', 'share', 'groupPublicKey', 'publicShares', 'signingShare', 'commitments', 'verifyingShares']
      fc.assert(fc.property(fc.nat(2), fc.constantFrom(...fields), fc.jsonValue({ maxDepth: 2 }), (entry, field, value) => {
        const file = structuredClone(good)
        file.entries[entry][field] = value
        try {
          decodeKeystore(bytesOf(file))
        } catch (err) {
          expect(err).to.be.instanceOf(KeyFileError)
        }
      }), { numRuns: 300 })
      fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(), (noise, at) => {
        const bytes = encodeKeystore(store, { randomBytes: fixedRandom })
        const mangled = new Uint8Array([...bytes.subarray(0, at % bytes.length), ...noise])
        try {
          decodeKeystore(mangled)
        } catch (err) {
          expect(err).to.be.instanceOf(KeyFileError)
        }
      }), { numRuns: 300 })
    })

    it('bounds the file size and the entry count (KEYSTORE_BYTES_MAX, KEYSTORE_ENTRIES_MAX)', () => {
      expect(() => decodeKeystore(new Uint8Array(KEYSTORE_BYTES_MAX + 1))).to.throw(KeyFileError, /over 1048576 bytes/)
      const file = json(encodeKeystore(store, { randomBytes: fixedRandom }))
      const many = Array.from({ length: KEYSTORE_ENTRIES_MAX }, (_, i) => ({ ...file.entries[1], group: `g${i}` }))
      expect(() => decodeKeystore(bytesOf({ version: 2, entries: [file.entries[0], ...many] }))).to.throw(KeyFileError, /65 entries, over the limit of 64/)
      expect(() => encodeKeystore({ ...store, bls: many.map((_, i) => ({ ...bls, groupId: `g${i}` })) }, { randomBytes: fixedRandom })).to.throw(KeyFileError, /over the limit/)
    })
  })

  describe('key rotation', () => {
    let newKey: PrivateKey
    let otherKey: PrivateKey
    const clusterId = 'prod'
    before(async () => {
      newKey = await generateKeyPair('Ed25519')
      otherKey = await generateKeyPair('Ed25519')
    })
    const expectFor = (key: PrivateKey, currentSequence = 0): { clusterId: string, currentPublicKey: Uint8Array, currentSequence: number } =>
      ({ clusterId, currentPublicKey: key.publicKey.raw, currentSequence })

    it('rotates the node key, keeps the shares, and peers accept the statement', async () => {
      const { store: rotated, handover } = await rotateNodeKey(store, newKey, { clusterId, timestampMs: 1_700_000_000_000 })
      expect(rotated.nodeKey.equals(newKey)).to.equal(true)
      expect(rotated.rotation).to.equal(1)
      expect(rotated.frost).to.deep.equal(store.frost)
      const accepted = await verifyHandover(handover, expectFor(nodeKey))
      expect(accepted).to.deep.include({
        clusterId,
        sequence: 1,
        timestampMs: 1_700_000_000_000,
        oldPeerId: peerIdFromPrivateKey(nodeKey).toString(),
        newPeerId: peerIdFromPrivateKey(newKey).toString()
      })
      // The rotated keystore keeps the statement, and survives a round trip.
      const back = decodeKeystore(encodeKeystore(rotated, { passphrase: 'p', randomBytes: fixedRandom }), 'p')
      expect(back.nodeKey.equals(newKey)).to.equal(true)
      expect(back.rotation).to.equal(1)
      expect(back.handover).to.deep.equal(handover)
      // A statement that did not make this key current is refused.
      const file = json(encodeKeystore(rotated, { randomBytes: fixedRandom }))
      file.entries[0].rotation = 2
      expect(() => decodeKeystore(bytesOf(file))).to.throw(KeyFileError, /not the one that made this key current \(rotation 2\)/)
      const other = await createHandover(nodeKey, otherKey, { clusterId, sequence: 1, timestampMs: 5 })
      file.entries[0].rotation = 1
      file.entries[0].handover = Buffer.from(other).toString('base64')
      expect(() => decodeKeystore(bytesOf(file))).to.throw(KeyFileError, /not the one that made this key current/)
      file.entries[0].handover = 'AAAA'
      expect(() => decodeKeystore(bytesOf(file))).to.throw(KeyFileError, /hand-over statement is not CBOR|malformed/)
    })

    it('refuses a statement signed by only one of the keys', async () => {
      const real = decode(await createHandover(nodeKey, newKey, { clusterId, sequence: 1, timestampMs: 5 }))
      const onlyOld = encode([real[0], real[1], new Uint8Array(64)])
      expect(await verifyHandover(onlyOld, expectFor(nodeKey))).to.equal('bad new-key signature on hand-over statement')
      const onlyNew = encode([real[0], new Uint8Array(64), real[2]])
      expect(await verifyHandover(onlyNew, expectFor(nodeKey))).to.equal('bad old-key signature on hand-over statement')
      // A statement naming someone else's key as the successor cannot carry that key's signature.
      const claimed = decode(await createHandover(nodeKey, otherKey, { clusterId, sequence: 1, timestampMs: 5 }))
      expect(await verifyHandover(encode([claimed[0], claimed[1], real[2]]), expectFor(nodeKey))).to.equal('bad new-key signature on hand-over statement')
    })

    it('refuses swapped keys and swapped signatures', async () => {
      const real = decode(await createHandover(nodeKey, newKey, { clusterId, sequence: 1, timestampMs: 5 }))
      expect(await verifyHandover(encode([real[0], real[2], real[1]]), expectFor(nodeKey))).to.equal('bad old-key signature on hand-over statement')
      const body = decode(real[0])
      const swappedBody = encode({ ...body, old: body.new, new: body.old })
      expect(await verifyHandover(encode([swappedBody, real[1], real[2]]), expectFor(newKey))).to.equal('bad old-key signature on hand-over statement')
    })

    it('refuses a statement for another cluster, or from a key that is not the member\'s current one', async () => {
      const handover = await createHandover(nodeKey, newKey, { clusterId, sequence: 1, timestampMs: 5 })
      expect(await verifyHandover(handover, { ...expectFor(nodeKey), clusterId: 'dev' })).to.equal('hand-over statement of another cluster')
      expect(await verifyHandover(handover, expectFor(otherKey))).to.equal('hand-over from a key that is not the member\'s current key')
    })

    it('refuses replays: an older or equal sequence, and a sequence that skips ahead', async () => {
      // A -> B (1), B -> A (2): replaying A -> B (1) to a peer at (A, 2) must not undo the second rotation.
      const first = await createHandover(nodeKey, newKey, { clusterId, sequence: 1, timestampMs: 5 })
      const back = await createHandover(newKey, nodeKey, { clusterId, sequence: 2, timestampMs: 6 })
      expect(await verifyHandover(back, expectFor(newKey, 1))).to.deep.include({ sequence: 2 })
      expect(await verifyHandover(first, expectFor(nodeKey, 2))).to.equal('stale hand-over statement (sequence 1, already at 2)')
      expect(await verifyHandover(first, expectFor(nodeKey, 1))).to.equal('stale hand-over statement (sequence 1, already at 1)')
      const ahead = await createHandover(nodeKey, newKey, { clusterId, sequence: 5, timestampMs: 7 })
      expect(await verifyHandover(ahead, expectFor(nodeKey, 0))).to.equal('hand-over statement skips ahead (sequence 5, expected 1)')
    })

    it('answers any bytes, or any mangled statement body, with a reason, never an exception', async () => {
      const real = decode(await createHandover(nodeKey, newKey, { clusterId, sequence: 1, timestampMs: 5 }))
      const body = decode(real[0])
      await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), async (bytes) => {
        expect(await verifyHandover(bytes, expectFor(nodeKey))).to.be.a('string')
      }), { numRuns: 300 })
      await fc.assert(fc.asyncProperty(fc.constantFrom('v', 'cluster', 'old', 'new', 'seq', 'ts', 'extra'), fc.oneof(fc.jsonValue({ maxDepth: 1 }), fc.uint8Array({ maxLength: 40 })), async (field, value) => {
        const mangled = encode([encode({ ...body, [field]: value }), real[1], real[2]])
        expect(await verifyHandover(mangled, expectFor(nodeKey))).to.be.a('string')
      }), { numRuns: 200 })
    })

    it('refuses malformed and oversize statements with a reason, and a rotation to the same key', async () => {
      expect(await verifyHandover(new Uint8Array(HANDOVER_BYTES_MAX + 1), expectFor(nodeKey))).to.equal('hand-over statement too large')
      expect(await verifyHandover(new Uint8Array([0xff, 0x00]), expectFor(nodeKey))).to.equal('hand-over statement is not CBOR')
      expect(decodeHandover(encode([new Uint8Array(1), new Uint8Array(64)]))).to.equal('malformed hand-over statement')
      const real = decode(await createHandover(nodeKey, newKey, { clusterId, sequence: 1, timestampMs: 5 }))
      const body = decode(real[0])
      expect(decodeHandover(encode([encode({ ...body, extra: 1 }), real[1], real[2]]))).to.equal('malformed hand-over statement')
      expect(decodeHandover(encode([encode({ ...body, seq: -1 }), real[1], real[2]]))).to.equal('malformed hand-over statement')
      expect(decodeHandover(encode([encode({ ...body, v: 2 }), real[1], real[2]]))).to.equal('unsupported hand-over statement version')
      expect(decodeHandover(encode([real[0], real[1].subarray(1), real[2]]))).to.equal('malformed hand-over signature')
      await expect(rotateNodeKey(store, nodeKey, { clusterId, timestampMs: 1 })).to.eventually.be.rejectedWith(RangeError, /current one/)
      await expect(createHandover(nodeKey, newKey, { clusterId: '', sequence: 1, timestampMs: 1 })).to.eventually.be.rejectedWith(RangeError, /cluster id/)
    })
  })

  describe('node identity file', () => {
    let dir: string
    beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'accord-keystore-')) })
    afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

    it('creates a keystore, and still starts from a version 1 key file written by an older accord', async () => {
      const created = await loadOrCreateIdentity(dir, { passphrase: 'p' })
      expect(json(await readFile(join(dir, IDENTITY_FILE))).version).to.equal(KEYSTORE_VERSION)
      expect((await loadOrCreateIdentity(dir, { passphrase: 'p' })).peerId.equals(created.peerId)).to.equal(true)

      await writeFile(join(dir, IDENTITY_FILE), encodeKeyFile(nodeKey, { passphrase: 'p', randomBytes: fixedRandom }), { mode: 0o600 })
      const old = await loadOrCreateIdentity(dir, { passphrase: 'p' })
      expect(old.peerId.equals(peerIdFromPrivateKey(nodeKey))).to.equal(true)
      expect(old.keystore.rotation).to.equal(0)
    })
  })
})
