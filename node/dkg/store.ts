/**
 * Where a DKG's result lives: the share in the node's keystore
 * (`<data-dir>/identity.key`, a `bls-share` entry of group DKG_GROUP_ID,
 * sealed with the node's passphrase when it has one), and the public side
 * in `<data-dir>/dkg-group.json`: the session, the members by index and the
 * Feldman commitments, which a signing round needs to check partials and
 * combine them. The keystore entry is written first; a group file whose
 * key does not match it is ignored, so a crash between the two writes
 * leaves a share without its group file (not loaded), never a wrong one.
 */
import { randomBytes } from 'node:crypto'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { encodeG1 } from '../../identity/bls.ts'
import { decodeKeystore, encodeKeystore } from '../../identity/keystore.ts'
import { decodeCommitments, publicShare } from '../../identity/threshold/feldman.ts'
import { ThresholdPublicKey } from '../../identity/threshold/tbls.ts'
import { writeFileAtomic } from '../config.ts'
import { IDENTITY_FILE } from '../identity.ts'
import { DkgError } from './errors.ts'
import type { G1Point } from '../../identity/bls.ts'
import type { BlsShareRecord } from '../../identity/keystore.ts'

/** The keystore's group id of the key this service makes (a new DKG replaces it on success only). */
export const DKG_GROUP_ID = 'accord-dkg'
export const DKG_GROUP_FILE = 'dkg-group.json'

export interface DkgGroup {
  /** Hex. */
  session: string
  /** Member peer ids; the member at position i has index i + 1. */
  members: string[]
  threshold: number
  /** Hex, 48 bytes each; [0] is the group key. */
  commitments: string[]
}

export interface StoredGroup {
  group: DkgGroup
  record: BlsShareRecord
}

/** The record of our share: public shares are computed for every index 1..members. */
export function shareRecord (group: DkgGroup, commitments: G1Point[], index: number, share: Uint8Array): BlsShareRecord {
  return {
    groupId: DKG_GROUP_ID,
    index,
    threshold: group.threshold,
    total: group.members.length,
    share,
    groupPublicKey: encodeG1(commitments[0]),
    publicShares: group.members.map((_, i) => encodeG1(publicShare(commitments, i + 1)))
  }
}

/** Replace the DKG entry of the keystore (read again now: it may have changed since start), then the group file. */
export async function saveGroup (dataDir: string, passphrase: string | undefined, stored: StoredGroup): Promise<void> {
  const path = join(dataDir, IDENTITY_FILE)
  const keystore = decodeKeystore(await readFile(path), passphrase)
  keystore.bls = [...keystore.bls.filter(r => r.groupId !== DKG_GROUP_ID), stored.record]
  const bytes = encodeKeystore(keystore, { passphrase, randomBytes: (n) => new Uint8Array(randomBytes(n)) })
  await writeFileAtomic(path, bytes)
  await writeFileAtomic(join(dataDir, DKG_GROUP_FILE), JSON.stringify(stored.group, null, 2) + '\n')
}

/**
 * Delete the DKG entry of the keystore, then the group file: a member that
 * a reshare left out keeps no share (t retired shares would still make
 * the old secret). A crash between the two leaves a group file without its
 * share, which loadGroup ignores.
 */
export async function dropGroup (dataDir: string, passphrase: string | undefined): Promise<void> {
  const path = join(dataDir, IDENTITY_FILE)
  const keystore = decodeKeystore(await readFile(path), passphrase)
  keystore.bls = keystore.bls.filter(r => r.groupId !== DKG_GROUP_ID)
  await writeFileAtomic(path, encodeKeystore(keystore, { passphrase, randomBytes: (n) => new Uint8Array(randomBytes(n)) }))
  await rm(join(dataDir, DKG_GROUP_FILE), { force: true })
}

/** The stored group, or null when there is none (or its group file is missing or does not match the share). */
export async function loadGroup (dataDir: string, passphrase: string | undefined): Promise<StoredGroup | null> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(join(dataDir, IDENTITY_FILE))
  } catch (err) {
    // an app's own node may keep its key elsewhere: it has no DKG key until a run stores one
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') { return null }
    throw err
  }
  const keystore = decodeKeystore(bytes, passphrase)
  const record = keystore.bls.find(r => r.groupId === DKG_GROUP_ID)
  if (record === undefined) { return null }
  let group: DkgGroup
  try {
    group = JSON.parse(await readFile(join(dataDir, DKG_GROUP_FILE), 'utf8'))
  } catch {
    return null
  }
  const valid = Array.isArray(group.members) && Array.isArray(group.commitments) && group.members.length === record.total &&
    group.threshold === record.threshold && group.commitments[0] === Buffer.from(record.groupPublicKey).toString('hex')
  return valid ? { group, record } : null
}

/**
 * The stored group's public key, with the public shares its share record
 * holds (computed once, when the DKG stored it). Throws DkgError('no-key')
 * when the group file or the record is damaged.
 */
export function thresholdKeyOf (stored: StoredGroup): ThresholdPublicKey {
  const { group, record } = stored
  const commitments = decodeCommitments(group.commitments.map(c => Uint8Array.from(Buffer.from(c, 'hex'))), group.threshold)
  if (typeof commitments === 'string') { throw new DkgError('no-key', `the stored group is damaged: ${commitments}`) }
  try {
    return new ThresholdPublicKey(commitments, group.members.length, record.publicShares)
  } catch (err) {
    throw new DkgError('no-key', `the stored share record is damaged: ${(err as Error).message}`)
  }
}
