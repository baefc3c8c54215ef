import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { expect } from 'aegir/chai'
import { decodeKeyFile, encodeKeyFile, KeyFileError } from '../../identity/key-file.ts'
import { isEncryptedKeystore } from '../../identity/keystore.ts'
import { UserError } from '../../node/errors.ts'
import { IDENTITY_FILE, loadOrCreateIdentity } from '../../node/identity.ts'

const fixedRandom = (n: number): Uint8Array => new Uint8Array(n).fill(7)

describe('identity', () => {
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'accord-identity-'))
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('creates an Ed25519 key with mode 0600 and reloads the same PeerId', async () => {
    const created = await loadOrCreateIdentity(dir)
    expect(created.created).to.equal(true)
    expect(created.privateKey.type).to.equal('Ed25519')
    expect((await stat(join(dir, IDENTITY_FILE))).mode & 0o777).to.equal(0o600)

    const reloaded = await loadOrCreateIdentity(dir)
    expect(reloaded.created).to.equal(false)
    expect(reloaded.peerId.toString()).to.equal(created.peerId.toString())
  })

  it('refuses a key file that others can read, naming the fix', async () => {
    await loadOrCreateIdentity(dir)
    const path = join(dir, IDENTITY_FILE)
    await chmod(path, 0o644)
    await expect(loadOrCreateIdentity(dir)).to.eventually.be.rejectedWith(UserError, /accessible by others \(mode 0644\); run: chmod 600/)
    await chmod(path, 0o640)
    await expect(loadOrCreateIdentity(dir)).to.eventually.be.rejectedWith(UserError, /mode 0640/)
  })

  it('encrypts at rest with a passphrase and refuses a wrong or missing one', async () => {
    const created = await loadOrCreateIdentity(dir, { passphrase: 'correct horse' })
    const bytes = await readFile(join(dir, IDENTITY_FILE))
    expect(isEncryptedKeystore(bytes)).to.equal(true)
    expect(bytes.toString()).to.not.include(Buffer.from(created.privateKey.raw).toString('base64'))

    const reloaded = await loadOrCreateIdentity(dir, { passphrase: 'correct horse' })
    expect(reloaded.peerId.toString()).to.equal(created.peerId.toString())
    await expect(loadOrCreateIdentity(dir, { passphrase: 'wrong' })).to.eventually.be.rejectedWith(UserError, /wrong passphrase/)
    await expect(loadOrCreateIdentity(dir)).to.eventually.be.rejectedWith(UserError, /passphrase is required/)
  })

  it('rejects a corrupt key file with a clear message', async () => {
    await writeFile(join(dir, IDENTITY_FILE), 'not json', { mode: 0o600 })
    await expect(loadOrCreateIdentity(dir)).to.eventually.be.rejectedWith(UserError, /not valid JSON/)
    await writeFile(join(dir, IDENTITY_FILE), JSON.stringify({ version: 9, key: 'AA==' }), { mode: 0o600 })
    await expect(loadOrCreateIdentity(dir)).to.eventually.be.rejectedWith(UserError, /version 9 is not supported/)
    await writeFile(join(dir, IDENTITY_FILE), JSON.stringify({ version: 1, key: 'AAAA' }), { mode: 0o600 })
    await expect(loadOrCreateIdentity(dir)).to.eventually.be.rejectedWith(UserError, /does not hold a valid private key/)
  })

  describe('key file format', () => {
    it('round-trips plain and encrypted keys', async () => {
      const key = await generateKeyPair('Ed25519')
      const plain = decodeKeyFile(encodeKeyFile(key, { randomBytes: fixedRandom }))
      expect(plain.equals(key)).to.equal(true)
      const encrypted = encodeKeyFile(key, { passphrase: 'p', randomBytes: fixedRandom })
      expect(decodeKeyFile(encrypted, 'p').equals(key)).to.equal(true)
    })

    it('detects tampering with the ciphertext', async () => {
      const key = await generateKeyPair('Ed25519')
      const json = JSON.parse(new TextDecoder().decode(encodeKeyFile(key, { passphrase: 'p', randomBytes: fixedRandom })))
      const ct = Buffer.from(json.ciphertext, 'base64')
      ct[0] ^= 1
      json.ciphertext = ct.toString('base64')
      expect(() => decodeKeyFile(new TextEncoder().encode(JSON.stringify(json)), 'p')).to.throw(KeyFileError, /wrong passphrase|corrupt/)
    })

    it('refuses hostile scrypt parameters instead of allocating for them', async () => {
      const key = await generateKeyPair('Ed25519')
      const json = JSON.parse(new TextDecoder().decode(encodeKeyFile(key, { passphrase: 'p', randomBytes: fixedRandom })))
      json.kdf.N = 2 ** 30
      expect(() => decodeKeyFile(new TextEncoder().encode(JSON.stringify(json)), 'p')).to.throw(KeyFileError, /unsupported kdf/)
    })
  })
})
