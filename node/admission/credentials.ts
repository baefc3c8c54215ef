/*
 * A node's cluster credentials on disk, in `<dataDir>/admission/`:
 *
 *   cluster.key   the cluster's private key, in the identity key-file format
 *                 (encrypted with ACCORD_PASSPHRASE when one is set), mode 0600
 *   member.cert   this node's membership certificate, mode 0600
 *   group.json    once the cluster admits with its DKG group key
 *                 (`accord admission use-group-key`): {"v":1,"groupKey":hex,
 *                 "previousGroupKey"?:hex (the key before the last switch)};
 *                 member.cert then holds the group-signed certificate
 *   predecessor.cert  after a node key rotation (`accord keys rotate`): the
 *                 certificate of the previous node key, shown to members
 *                 with the hand-over statement (./handovers.ts), mode 0600
 *   handovers.json    the hand-overs of other members this node accepted
 *
 * The founder makes both on its first start; a joining node receives both
 * from the member that admits it (see ./join.ts).
 */
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { clusterPublicKey, issueCertificate, verifyCertificate } from '../../identity/cluster-credentials.ts'
import { verifyGroupCertificate } from '../../identity/group-certificate.ts'
import { decodeKeyFile, encodeKeyFile, KeyFileError } from '../../identity/key-file.ts'
import { writeFileAtomic } from '../config.ts'
import { UserError } from '../errors.ts'
import type { PeerId, PrivateKey } from '@libp2p/interface'

export const ADMISSION_DIR = 'admission'
const CLUSTER_KEY_FILE = 'cluster.key'
const CERTIFICATE_FILE = 'member.cert'
const GROUP_FILE = 'group.json'
const PREDECESSOR_FILE = 'predecessor.cert'
const GROUP_KEY_BYTES = 48

export interface ClusterCredentials {
  cluster: string
  clusterKey: PrivateKey
  /** The cluster's public key (raw), what every certificate names. */
  clusterPublicKey: Uint8Array
  /** This node's membership certificate: signed by the group key when `groupKey` is set, else by the cluster key. */
  certificate: Uint8Array
  /**
   * Set once this node admits with the cluster's DKG group key: peers must
   * show certificates signed by it (the cluster key's are refused), and
   * new members get one only when t members' partials make it.
   */
  groupKey?: Uint8Array
  /**
   * After a key rotation of a node that admits with the group key:
   * `certificate` still names the peer id this node's key took over from,
   * because no member may certify a peer id alone, this node included.
   * The members admit the new peer id by its hand-over meanwhile, and the
   * group signs a certificate for it (Admission's re-certification).
   */
  awaitingGroupCertificate?: boolean
  /**
   * The group key this node admitted with before its last switch to
   * another (a new DKG, then `use-group-key`): members of the DKG group
   * may still show certificates under it while they switch too.
   */
  previousGroupKey?: Uint8Array
}

export function admissionDir (dataDir: string): string {
  return join(dataDir, ADMISSION_DIR)
}

/**
 * Load the credentials, or null when this node was never admitted.
 * `predecessor`: the peer id this node's key took over from (its keystore's
 * hand-over statement). On the first start after `accord keys rotate`,
 * member.cert still names that peer id: it is kept as predecessor.cert
 * and a certificate for the new peer id is issued with the cluster key
 * this node holds (any member can admit any peer with it, so this gives
 * the node no power it lacked). A node admitting with the group key
 * cannot certify itself: its member.cert is kept as predecessor.cert as
 * well, and the credentials say `awaitingGroupCertificate` until the
 * group signs one for the new peer id (member.cert is then replaced).
 */
export async function loadCredentials (dataDir: string, cluster: string, self: PeerId, passphrase?: string, predecessor?: string): Promise<ClusterCredentials | null> {
  const dir = admissionDir(dataDir)
  const keyPath = join(dir, CLUSTER_KEY_FILE)
  const certPath = join(dir, CERTIFICATE_FILE)
  const keyBytes = await readPrivateFile(keyPath)
  const certificate = await readPrivateFile(certPath)
  if (keyBytes == null && certificate == null) { return null }
  if (keyBytes == null || certificate == null) {
    throw new UserError(`${dir} holds only one of ${CLUSTER_KEY_FILE} and ${CERTIFICATE_FILE}; restore the missing file from a backup, or move the directory away and join again with a new --join-token`)
  }
  let clusterKey: PrivateKey
  try {
    clusterKey = decodeKeyFile(keyBytes, passphrase)
  } catch (err) {
    if (err instanceof KeyFileError) { throw new UserError(`cluster key ${keyPath}: ${err.message.replace('identity key', 'cluster key')}`) }
    throw err
  }
  const publicKey = clusterPublicKey(clusterKey)
  const { groupKey, previousGroupKey } = await readGroupKeys(join(dir, GROUP_FILE)) ?? {}
  const previous = previousGroupKey !== undefined ? { previousGroupKey } : {}
  if (groupKey != null) {
    // expiry is not checked here: the running node renews its certificate (./certificate-keeper.ts), or `accord admission use-group-key` does
    const checkedGroup = verifyGroupCertificate(certificate, { cluster, groupKey, peer: self.toString(), nowMs: 0 })
    if (typeof checkedGroup !== 'string') { return { cluster, clusterKey, clusterPublicKey: publicKey, certificate, groupKey, ...previous } }
    if (predecessor !== undefined && typeof verifyGroupCertificate(certificate, { cluster, groupKey, peer: predecessor, nowMs: 0 }) !== 'string') {
      // rotated: member.cert names the predecessor until the group certifies this peer id (kept as predecessor.cert for the hand-over)
      await writeFileAtomic(join(dir, PREDECESSOR_FILE), certificate, 0o600)
      return { cluster, clusterKey, clusterPublicKey: publicKey, certificate, groupKey, ...previous, awaitingGroupCertificate: true }
    }
    // a switch that stopped between its two writes leaves the cluster-key certificate: not switched yet
  }
  const checked = await verifyCertificate(certificate, { cluster, clusterKey: publicKey, peer: self.toString() })
  if (typeof checked === 'string' && predecessor !== undefined && groupKey == null &&
    typeof await verifyCertificate(certificate, { cluster, clusterKey: publicKey, peer: predecessor }) !== 'string') {
    // predecessor.cert first: a crash between the two writes leaves member.cert naming the predecessor, and this runs again
    await writeFileAtomic(join(dir, PREDECESSOR_FILE), certificate, 0o600)
    const renewed = await issueCertificate(clusterKey, { cluster, peer: self.toString(), issuedAtMs: Date.now() })
    await writeFileAtomic(certPath, renewed, 0o600)
    return { cluster, clusterKey, clusterPublicKey: publicKey, certificate: renewed }
  }
  if (typeof checked === 'string') {
    throw new UserError(`${certPath} does not admit this node to cluster "${cluster}" (${checked}); was --cluster changed? Start with the cluster name the node joined, or move ${dir} away and join again with a new --join-token`)
  }
  return { cluster, clusterKey, clusterPublicKey: publicKey, certificate }
}

/** The certificate of the node key this node's key took over from (predecessor.cert), or null. */
export async function loadPredecessorCertificate (dataDir: string): Promise<Uint8Array | null> {
  return readPrivateFile(join(admissionDir(dataDir), PREDECESSOR_FILE))
}

/** Save credentials received on joining (or made when founding). */
export async function saveCredentials (dataDir: string, credentials: ClusterCredentials, passphrase?: string): Promise<void> {
  const dir = admissionDir(dataDir)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await chmod(dir, 0o700)
  const keyFile = encodeKeyFile(credentials.clusterKey, { passphrase, randomBytes: (n) => new Uint8Array(randomBytes(n)) })
  await writeFileAtomic(join(dir, CLUSTER_KEY_FILE), keyFile, 0o600)
  if (credentials.groupKey != null) {
    const hex = (key: Uint8Array): string => Buffer.from(key).toString('hex')
    const file = { v: 1, groupKey: hex(credentials.groupKey), ...(credentials.previousGroupKey != null ? { previousGroupKey: hex(credentials.previousGroupKey) } : {}) }
    await writeFileAtomic(join(dir, GROUP_FILE), new TextEncoder().encode(JSON.stringify(file) + '\n'), 0o600)
  } else {
    await rm(join(dir, GROUP_FILE), { force: true })
  }
  await writeFileAtomic(join(dir, CERTIFICATE_FILE), credentials.certificate, 0o600)
}

/** The group keys of group.json, or null when there is none. Throws UserError on a damaged file. */
async function readGroupKeys (path: string): Promise<{ groupKey: Uint8Array, previousGroupKey?: Uint8Array } | null> {
  const bytes = await readPrivateFile(path)
  if (bytes == null) { return null }
  let parsed: unknown
  try { parsed = JSON.parse(new TextDecoder().decode(bytes)) } catch { parsed = null }
  const { v, groupKey, previousGroupKey, ...rest } = (parsed ?? {}) as { v?: unknown, groupKey?: unknown, previousGroupKey?: unknown }
  const isKey = (key: unknown): key is string => typeof key === 'string' && new RegExp(`^[0-9a-f]{${2 * GROUP_KEY_BYTES}}$`).test(key)
  if (bytes.byteLength > 1024 || v !== 1 || !isKey(groupKey) || !(previousGroupKey === undefined || isKey(previousGroupKey)) || Object.keys(rest).length > 0) {
    throw new UserError(`${path} is not a group key file ({"v":1,"groupKey":"<96 hex digits>","previousGroupKey"?:"<96 hex digits>"}); restore it from a backup`)
  }
  const key = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex, 'hex'))
  return { groupKey: key(groupKey), ...(previousGroupKey !== undefined ? { previousGroupKey: key(previousGroupKey) } : {}) }
}

/** A founder's credentials: a new cluster key, and a certificate for itself. */
export async function foundCluster (cluster: string, self: PeerId, nowMs: number): Promise<ClusterCredentials> {
  const clusterKey = await generateKeyPair('Ed25519')
  const certificate = await issueCertificate(clusterKey, { cluster, peer: self.toString(), issuedAtMs: nowMs })
  return { cluster, clusterKey, clusterPublicKey: clusterPublicKey(clusterKey), certificate }
}

async function readPrivateFile (path: string): Promise<Uint8Array | null> {
  let mode: number
  try {
    mode = (await stat(path)).mode
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') { return null }
    throw new UserError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  if ((mode & 0o077) !== 0) {
    throw new UserError(`${path} is accessible by others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); run: chmod 600 ${path}`)
  }
  try {
    return new Uint8Array(await readFile(path))
  } catch (err) {
    throw new UserError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}
