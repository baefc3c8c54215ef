/*
 * The keystore: every secret a node holds, in one file (node/ reads and
 * writes `<data-dir>/identity.key`; this module only turns a Keystore into
 * bytes and back).
 *
 * Version 2 grows out of the version 1 identity key file (key-file.ts),
 * which still decodes: as a keystore holding just the node key.
 *
 * Plain:     {"version":2,"entries":[{"type":"node-key",...},{"type":"frost-share",...}]}
 * Encrypted: {"version":2,"kdf":{"name":"scrypt",...},"cipher":{"name":"xchacha20-poly1305","nonce":"..."},
 *             "ciphertext":"<the {"entries":[...]} JSON, sealed>"}
 *
 * Encryption is the key file's (scrypt N = 2^15, XChaCha20-Poly1305) with
 * the version string as associated data, so a ciphertext cannot be replayed
 * under another format version. Entries are typed records:
 *
 * - node-key (exactly one): the libp2p private key (protobuf, base64), the
 *   sequence number of the hand-over that made it current (0 for a node's
 *   first key), and that hand-over statement, kept to show peers that missed it;
 * - bls-share: a BLS threshold share, opaque here (its bytes belong to
 *   identity/bls): group id, index, threshold, total, share, group public
 *   key, the members' public shares;
 * - frost-share: a FROST share (identity/frost): group id, index, threshold,
 *   total, signing share, VSS commitments, verifying shares; the share and
 *   the verifying shares are checked on decode against the commitments.
 *
 * Decoding is bounded (file size, entry count, members per group, bytes per
 * field), refuses unknown entry types and fields, and throws KeyFileError
 * with a one-line reason.
 */
import { privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { equalBytes } from './ed25519.ts'
import { checkGroup, checkShare, FROST_PARTICIPANTS_MAX, FrostError } from './frost/index.ts'
import { b64, decodeKeyFile, KEY_FILE_VERSION, KeyFileError, openWithPassphrase, sealWithPassphrase, unb64 } from './key-file.ts'
import { decodeHandover, HANDOVER_BYTES_MAX } from './keystore-rotation.ts'
import type { FrostGroup, FrostShare } from './frost/index.ts'
import type { PrivateKey } from '@libp2p/interface'

export const KEYSTORE_VERSION = 2
/** Largest keystore file read: far above real use (a 255-member FROST group is ~20 KiB). */
export const KEYSTORE_BYTES_MAX = 1024 * 1024
export const KEYSTORE_ENTRIES_MAX = 64
/** Members of a threshold group, BLS or FROST: the same bound as FROST sessions. */
export const KEYSTORE_GROUP_MEMBERS_MAX = FROST_PARTICIPANTS_MAX
export const GROUP_ID_CHARS_MAX = 64
/** Bound on each opaque BLS field (a G2 point is 96 bytes compressed, 192 uncompressed). */
export const BLS_FIELD_BYTES_MAX = 192
const AAD = new TextEncoder().encode(`accord-keystore-v${KEYSTORE_VERSION}`)

export interface BlsShareRecord {
  groupId: string
  index: number
  threshold: number
  total: number
  share: Uint8Array
  groupPublicKey: Uint8Array
  /** publicShares[i - 1] belongs to member i. */
  publicShares: Uint8Array[]
}

export interface FrostShareRecord {
  groupId: string
  share: FrostShare
  group: FrostGroup
}

export interface Keystore {
  nodeKey: PrivateKey
  /** Sequence number of the hand-over that made nodeKey current; 0 for a node's first key. */
  rotation: number
  /** That hand-over statement (keystore-rotation.ts), absent for rotation 0. */
  handover?: Uint8Array
  bls: BlsShareRecord[]
  frost: FrostShareRecord[]
}

/** Encode a keystore as file bytes, sealed when a passphrase is given. */
export function encodeKeystore (store: Keystore, options: { passphrase?: string, randomBytes(n: number): Uint8Array }): Uint8Array {
  const entries = toEntries(store)
  // Decoding is the check: whatever we write must read back.
  fromEntries(entries)
  let json: Record<string, unknown>
  if (options.passphrase == null || options.passphrase === '') {
    json = { version: KEYSTORE_VERSION, entries }
  } else {
    const payload = new TextEncoder().encode(JSON.stringify({ entries }))
    json = { version: KEYSTORE_VERSION, ...sealWithPassphrase(payload, options.passphrase, options.randomBytes, AAD) }
  }
  const bytes = new TextEncoder().encode(JSON.stringify(json, null, 2) + '\n')
  if (bytes.byteLength > KEYSTORE_BYTES_MAX) { throw new KeyFileError(`keystore would be over ${KEYSTORE_BYTES_MAX} bytes`) }
  return bytes
}

/** Decode keystore bytes, or a version 1 identity key file, into a Keystore. */
export function decodeKeystore (bytes: Uint8Array, passphrase?: string): Keystore {
  const json = parseJson(bytes, 'keystore')
  if (json.version === KEY_FILE_VERSION) {
    return { nodeKey: decodeKeyFile(bytes, passphrase), rotation: 0, bls: [], frost: [] }
  }
  if (json.version !== KEYSTORE_VERSION) {
    throw new KeyFileError(`key file version ${String(json.version)} is not supported (expected ${KEY_FILE_VERSION} or ${KEYSTORE_VERSION})`)
  }
  if (json.ciphertext == null) {
    onlyFields(json, ['version', 'entries'], 'keystore')
    return fromEntries(json.entries)
  }
  onlyFields(json, ['version', 'kdf', 'cipher', 'ciphertext'], 'keystore')
  const payload = parseJson(openWithPassphrase(json, passphrase, AAD), 'sealed keystore')
  onlyFields(payload, ['entries'], 'sealed keystore')
  return fromEntries(payload.entries)
}

/** Whether keystore (or version 1 key file) bytes are sealed with a passphrase. */
export function isEncryptedKeystore (bytes: Uint8Array): boolean {
  return parseJson(bytes, 'keystore').ciphertext != null
}

type Entry = Record<string, unknown>

function toEntries (store: Keystore): Entry[] {
  const nodeKey: Entry = { type: 'node-key', key: b64(privateKeyToProtobuf(store.nodeKey)), rotation: store.rotation }
  if (store.handover !== undefined) { nodeKey.handover = b64(store.handover) }
  return [
    nodeKey,
    ...store.bls.map((r) => ({
      type: 'bls-share',
      group: r.groupId,
      index: r.index,
      threshold: r.threshold,
      total: r.total,
      share: b64(r.share),
      groupPublicKey: b64(r.groupPublicKey),
      publicShares: r.publicShares.map(b64)
    })),
    ...store.frost.map((r) => ({
      type: 'frost-share',
      group: r.groupId,
      index: r.share.index,
      threshold: r.group.threshold,
      total: r.group.total,
      signingShare: b64(r.share.signingShare),
      commitments: r.group.commitments.map(b64),
      verifyingShares: r.group.verifyingShares.map(b64)
    }))
  ]
}

function fromEntries (entries: unknown): Keystore {
  if (!Array.isArray(entries)) { throw new KeyFileError('keystore "entries" is not a list') }
  if (entries.length > KEYSTORE_ENTRIES_MAX) { throw new KeyFileError(`keystore holds ${entries.length} entries, over the limit of ${KEYSTORE_ENTRIES_MAX}`) }
  let node: Pick<Keystore, 'nodeKey' | 'rotation' | 'handover'> | undefined
  const bls: BlsShareRecord[] = []
  const frost: FrostShareRecord[] = []
  const groups = new Set<string>()
  entries.forEach((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry == null || Array.isArray(entry)) { throw new KeyFileError(`keystore entry ${i} is not an object`) }
    const e = entry as Entry
    const where = `keystore entry ${i} (${String(e.type)})`
    if (e.type === 'node-key') {
      if (node !== undefined) { throw new KeyFileError('keystore holds two node keys') }
      onlyFields(e, ['type', 'key', 'rotation', 'handover'], where)
      node = { nodeKey: privateKey(e.key, where), rotation: count(e.rotation, 0, Number.MAX_SAFE_INTEGER, `${where} rotation`) }
      if (e.handover !== undefined) { node.handover = bytes(e.handover, 1, HANDOVER_BYTES_MAX, `${where} handover`) }
      if ((node.handover === undefined) !== (node.rotation === 0)) { throw new KeyFileError(`${where}: a rotated key keeps its hand-over statement, a first key has none`) }
      if (node.handover !== undefined) { checkOwnHandover(node.handover, node.nodeKey, node.rotation, where) }
      return
    }
    if (e.type !== 'bls-share' && e.type !== 'frost-share') { throw new KeyFileError(`${where}: unknown entry type (written by a newer accord?)`) }
    const groupId = text(e.group, GROUP_ID_CHARS_MAX, `${where} group`)
    if (groups.has(`${e.type}/${groupId}`)) { throw new KeyFileError(`${where}: group "${groupId}" appears twice`) }
    groups.add(`${e.type}/${groupId}`)
    const total = count(e.total, 2, KEYSTORE_GROUP_MEMBERS_MAX, `${where} total`)
    const threshold = count(e.threshold, 2, total, `${where} threshold`)
    const index = count(e.index, 1, total, `${where} index`)
    if (e.type === 'bls-share') {
      onlyFields(e, ['type', 'group', 'index', 'threshold', 'total', 'share', 'groupPublicKey', 'publicShares'], where)
      bls.push({
        groupId,
        index,
        threshold,
        total,
        share: bytes(e.share, 1, BLS_FIELD_BYTES_MAX, `${where} share`),
        groupPublicKey: bytes(e.groupPublicKey, 1, BLS_FIELD_BYTES_MAX, `${where} groupPublicKey`),
        publicShares: list(e.publicShares, total, `${where} publicShares`).map((s, j) => bytes(s, 1, BLS_FIELD_BYTES_MAX, `${where} publicShares[${j}]`))
      })
      return
    }
    onlyFields(e, ['type', 'group', 'index', 'threshold', 'total', 'signingShare', 'commitments', 'verifyingShares'], where)
    const commitments = list(e.commitments, threshold, `${where} commitments`).map((c, j) => bytes(c, 32, 32, `${where} commitments[${j}]`))
    const group: FrostGroup = {
      threshold,
      total,
      groupPublicKey: commitments[0],
      commitments,
      verifyingShares: list(e.verifyingShares, total, `${where} verifyingShares`).map((s, j) => bytes(s, 32, 32, `${where} verifyingShares[${j}]`))
    }
    const share = { index, signingShare: bytes(e.signingShare, 32, 32, `${where} signingShare`) }
    try {
      checkGroup(group)
      checkShare(share, group)
    } catch (err) {
      if (err instanceof FrostError) { throw new KeyFileError(`${where}: ${err.message}`) }
      throw err
    }
    frost.push({ groupId, share, group })
  })
  if (node === undefined) { throw new KeyFileError('keystore holds no node key') }
  return { ...node, bls, frost }
}

/** The statement kept beside a rotated key must be the one that made this key current. */
function checkOwnHandover (handover: Uint8Array, nodeKey: PrivateKey, rotation: number, where: string): void {
  const decoded = decodeHandover(handover)
  if (typeof decoded === 'string') { throw new KeyFileError(`${where}: ${decoded}`) }
  const { newPublicKey, sequence } = decoded.statement
  if (sequence !== rotation || !equalBytes(newPublicKey, nodeKey.publicKey.raw)) {
    throw new KeyFileError(`${where}: its hand-over statement is not the one that made this key current (rotation ${rotation})`)
  }
}

function parseJson (bytes: Uint8Array, what: string): Entry {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength > KEYSTORE_BYTES_MAX) { throw new KeyFileError(`${what} is over ${KEYSTORE_BYTES_MAX} bytes`) }
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw new KeyFileError('key file is not valid JSON')
  }
  if (typeof json !== 'object' || json == null || Array.isArray(json)) { throw new KeyFileError('key file is not a JSON object') }
  return json as Entry
}

function onlyFields (object: Entry, allowed: string[], where: string): void {
  const unknown = Object.keys(object).filter((k) => !allowed.includes(k))
  if (unknown.length > 0) { throw new KeyFileError(`${where} has unknown field(s): ${unknown.join(', ')}`) }
}

function privateKey (value: unknown, where: string): PrivateKey {
  try {
    return privateKeyFromProtobuf(unb64(value, `${where} key`))
  } catch (err) {
    throw new KeyFileError(`${where} does not hold a valid private key: ${(err as Error).message}`)
  }
}

function count (value: unknown, min: number, max: number, what: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
    throw new KeyFileError(`${what} must be an integer in ${min}..${max} (got ${JSON.stringify(value)})`)
  }
  return value as number
}

function text (value: unknown, charsMax: number, what: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > charsMax) { throw new KeyFileError(`${what} must be a string of 1 to ${charsMax} characters`) }
  return value
}

function bytes (value: unknown, min: number, max: number, what: string): Uint8Array {
  // base64 of `max` bytes is at most 4 * ceil(max / 3) characters: check before decoding.
  if (typeof value !== 'string' || value.length > 4 * Math.ceil(max / 3)) { throw new KeyFileError(`${what} must be base64 of at most ${max} bytes`) }
  const decoded = unb64(value, what)
  if (decoded.byteLength < min || decoded.byteLength > max) {
    throw new KeyFileError(min === max ? `${what} must be ${min} bytes` : `${what} must be ${min} to ${max} bytes`)
  }
  return decoded
}

function list (value: unknown, length: number, what: string): unknown[] {
  if (!Array.isArray(value) || value.length !== length) { throw new KeyFileError(`${what} must be a list of ${length}`) }
  return value
}
