/*
 * `accord keys rotate`: a new node key, offline.
 *
 * The node must be stopped: a running daemon holds the lock of its
 * datastore (`<dataDir>/datastore/LOCK`, LevelDB) and names its pid in
 * node.json; rotation refuses while either says it runs, so the daemon
 * never keeps using a key its file no longer holds.
 *
 * What it writes: `<dataDir>/identity.key` (one atomic write) with the new
 * key, the rotation's sequence number and the hand-over statement (old key
 * -> new key, signed by both, identity/keystore-rotation.ts), which names
 * the old public key. The old private key is gone. The node's next start
 * finishes the job (node/admission/credentials.ts): it keeps the old key's
 * certificate as `admission/predecessor.cert` and issues a certificate
 * for the new peer id with the cluster key, then shows members the
 * statement with the old certificate (node/admission/handovers.ts).
 *
 * A node that admits with the DKG group key cannot certify itself (no
 * single member may certify a peer id there): it keeps the old
 * certificate, the members admit its new peer id by the hand-over, and the
 * group signs a certificate for it (node/admission/admission.ts). So it
 * must hold a share of that group key: a group-certified node outside the
 * DKG group has no say in the signing and is refused.
 *
 * Refused as well: a node that never joined a cluster (nothing to hand
 * over), and a second rotation before the node has started with the first
 * one (and, under the group key, before the group certified it).
 */
import { randomBytes } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { LevelDatastore } from 'datastore-level'
import { equalBytes } from '../identity/ed25519.ts'
import { rotateNodeKey } from '../identity/keystore-rotation.ts'
import { encodeKeystore, isEncryptedKeystore } from '../identity/keystore.ts'
import { loadCredentials } from './admission/credentials.ts'
import { readSavedConfig, resolveConfig, writeFileAtomic } from './config.ts'
import { loadGroup } from './dkg/store.ts'
import { UserError } from './errors.ts'
import { loadOrCreateIdentity } from './identity.ts'
import { readRuntimeInfo } from './runtime-file.ts'

export interface NodeKeyRotation {
  oldPeerId: string
  newPeerId: string
  /** The hand-over's sequence number: how many times this node's key was rotated. */
  sequence: number
  /** The keystore written. */
  path: string
}

/**
 * Rotate the node key kept in `<dataDir>/identity.key` (see the top of
 * this file). Throws UserError when the node runs or cannot be rotated.
 */
export async function rotateDataDirNodeKey (dataDir: string, options: { passphrase?: string, nowMs?: number } = {}): Promise<NodeKeyRotation> {
  const running = await readRuntimeInfo(dataDir)
  if (running != null && isAlive(running.pid)) {
    throw new UserError(`a node is running from ${dataDir} (pid ${running.pid}): stop it first, then rotate its key and start it again`)
  }
  const identity = await loadOrCreateIdentity(dataDir, { passphrase: options.passphrase, create: false })
  // the daemon's datastore lock: held while a node runs from this dir (also one node.json does not name)
  const datastorePath = join(dataDir, 'datastore')
  const datastore = await exists(datastorePath) ? new LevelDatastore(datastorePath) : null
  try {
    await datastore?.open()
  } catch (err) {
    throw new UserError(`cannot lock ${datastorePath} (is a node running from ${dataDir}? stop it first): ${(err as Error).message}`)
  }
  try {
    const cluster = resolveConfig(dataDir, await readSavedConfig(dataDir), {}).cluster
    let credentials: Awaited<ReturnType<typeof loadCredentials>>
    try {
      credentials = await loadCredentials(dataDir, cluster, identity.peerId, options.passphrase)
    } catch (err) {
      if (err instanceof UserError && identity.keystore.rotation > 0) {
        throw new UserError(`the certificate does not name the current key yet: start the node once after its last rotation (rotation ${identity.keystore.rotation}; under the group key, until the group certified it), then rotate again`)
      }
      throw err
    }
    if (credentials == null) { throw new UserError(`${dataDir} has not joined a cluster: its key has no membership to hand over (a new node needs no rotation)`) }
    if (credentials.groupKey != null) {
      const group = await loadGroup(dataDir, options.passphrase)
      if (group == null || !equalBytes(group.record.groupPublicKey, credentials.groupKey)) {
        throw new UserError('this node admits with the DKG group key but holds no share of it: the group could not re-certify a new peer id for it; rotate a member of the DKG group, or have T members approve a new node that joins in its place (see README, "Node key rotation")')
      }
    }
    const newKey = await generateKeyPair('Ed25519')
    const { store } = await rotateNodeKey(identity.keystore, newKey, { clusterId: cluster, timestampMs: options.nowMs ?? Date.now() })
    // keep the file as it was: sealed with the passphrase when it was sealed
    const sealed = isEncryptedKeystore(await readFile(identity.path))
    const bytes = encodeKeystore(store, { passphrase: sealed ? options.passphrase : undefined, randomBytes: (n) => new Uint8Array(randomBytes(n)) })
    await writeFileAtomic(identity.path, bytes, 0o600)
    return { oldPeerId: identity.peerId.toString(), newPeerId: peerIdFromPrivateKey(newKey).toString(), sequence: store.rotation, path: identity.path }
  } finally {
    await datastore?.close()
  }
}

function isAlive (pid: unknown): boolean {
  if (!Number.isSafeInteger(pid) || (pid as number) <= 0) { return false }
  try {
    process.kill(pid as number, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}
