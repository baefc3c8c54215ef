import { randomBytes } from 'node:crypto'
import { chmod, mkdir, open, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { KeyFileError } from '../identity/key-file.ts'
import { decodeKeystore, encodeKeystore } from '../identity/keystore.ts'
import { UserError } from './errors.ts'
import type { Keystore } from '../identity/keystore.ts'
import type { PeerId, PrivateKey } from '@libp2p/interface'

export const IDENTITY_FILE = 'identity.key'

export interface Identity {
  privateKey: PrivateKey
  peerId: PeerId
  path: string
  created: boolean
  /** Everything the identity file holds: the node key, its rotation, threshold shares. */
  keystore: Keystore
}

/** Create the data dir (mode 0700) if needed. */
export async function ensureDataDir (dataDir: string): Promise<void> {
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw new UserError(`cannot create data dir ${dataDir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

/**
 * Load the node's Ed25519 identity from `<dataDir>/identity.key` (a
 * keystore, or a version 1 key file from an older accord), creating a
 * keystore on first start (unless `create` is false: offline tools must not turn a
 * mistyped path into a new node). Like ssh, refuse a key file that group or
 * others can read or write: a leaked key lets anyone impersonate the node.
 */
export async function loadOrCreateIdentity (dataDir: string, options: { passphrase?: string, create?: boolean } = {}): Promise<Identity> {
  const create = options.create ?? true
  if (create) { await ensureDataDir(dataDir) }
  const path = join(dataDir, IDENTITY_FILE)

  let mode: number | undefined
  try {
    mode = (await stat(path)).mode
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') { throw new UserError(`cannot read identity key ${path}: ${(err as NodeJS.ErrnoException).code}`) }
  }

  if (mode === undefined && !create) { throw new UserError(`${dataDir} holds no accord node (no ${IDENTITY_FILE}); check --data-dir`) }
  if (mode === undefined) {
    const privateKey = await generateKeyPair('Ed25519')
    const keystore: Keystore = { nodeKey: privateKey, rotation: 0, bls: [], frost: [] }
    const bytes = encodeKeystore(keystore, { passphrase: options.passphrase, randomBytes: (n) => new Uint8Array(randomBytes(n)) })
    // O_EXCL: never overwrite a key another process created meanwhile.
    const file = await open(path, 'wx', 0o600)
    try {
      await file.writeFile(bytes)
      await file.sync()
    } finally {
      await file.close()
    }
    await chmod(path, 0o600) // umask may have narrowed it further; make it exact
    return { privateKey, peerId: peerIdFromPrivateKey(privateKey), path, created: true, keystore }
  }

  if ((mode & 0o077) !== 0) {
    throw new UserError(`identity key ${path} is accessible by others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); run: chmod 600 ${path}`)
  }
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (err) {
    throw new UserError(`cannot read identity key ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  try {
    const keystore = decodeKeystore(bytes, options.passphrase)
    return { privateKey: keystore.nodeKey, peerId: peerIdFromPrivateKey(keystore.nodeKey), path, created: false, keystore }
  } catch (err) {
    if (err instanceof KeyFileError) { throw new UserError(`identity key ${path}: ${err.message}`) }
    throw err
  }
}
