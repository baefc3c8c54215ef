/**
 * A node's configuration: defaults, validation, and the copy saved in its
 * data dir so `accord start --data-dir D` alone restarts it as it was.
 */
import { randomBytes } from 'node:crypto'
import { open, readFile, rename, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { POW_BITS_MAX } from '../identity/proof-of-work.ts'
import { SIGN_POLICIES } from './dkg/approvals.ts'
import { UserError } from './errors.ts'
import type { SignPolicy } from './dkg/approvals.ts'

export const CONFIG_FILE = 'accord.json'
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = typeof LOG_LEVELS[number]
/**
 * The connection encrypters a node can offer. There is deliberately no
 * plaintext one: every libp2p connection is encrypted and authenticated.
 */
export const ENCRYPTERS = ['noise', 'tls'] as const
export type Encrypter = typeof ENCRYPTERS[number]

export interface AccordConfig {
  /** Where identity, settings, datastore and logs live. */
  dataDir: string
  /** Nodes only treat peers of the same cluster name as members. */
  cluster: string
  /** libp2p listen multiaddrs. */
  listen: string[]
  /** Multiaddrs (with /p2p/<id>) dialled at start. */
  bootstrap: string[]
  /** Use the public Amino DHT and a rendezvous key instead of our private DHT. */
  public: boolean
  /**
   * Keep loopback and private (LAN) addresses in DHT records. On by default in
   * private mode; off in public mode, where such addresses are useless to
   * strangers. Tests of public mode turn it on to use loopback stand-ins.
   */
  dhtKeepPrivateAddresses: boolean
  /** Also discover peers on the LAN through multicast DNS. */
  mdns: boolean
  /** HTTP API address "host:port", or null to run without it. */
  api: string | null
  logLevel: LogLevel
  /** Path of a libp2p private-network pre-shared key (swarm.key). */
  pnetKeyFile: string | null
  /**
   * The connection encrypters offered and accepted, in order of preference
   * (the first one both sides know is used): Noise, TLS 1.3, or both.
   */
  encrypters: Encrypter[]
  /** Connection limits. */
  maxConnections: number
  /** Strangers (not members) connected inbound at once from one subnet (see node/budgets.ts SubnetLimiter). */
  subnetPeersMax: number
  /** The IPv4 prefix length of a subnet for subnetPeersMax. */
  subnetIpv4PrefixBits: number
  /** The IPv6 prefix length of a subnet for subnetPeersMax. */
  subnetIpv6PrefixBits: number
  /** Connections kept to peers this node chose (members, then DHT routing-table peers), pruned last (node/outbound-quota.ts); 0 turns it off. */
  outboundPeersMin: number
  /**
   * Joins must carry a proof of work of this many leading zero bits, bound
   * to the joiner's peer id and the cluster (identity/proof-of-work.ts):
   * 0 (the default) turns it off, else 1..28; `--join-pow` sets 20.
   */
  joinPowBits: number
  /** When non-empty, only these PeerIds may connect. */
  allowPeers: string[]
  /** These PeerIds may never connect. */
  denyPeers: string[]
  /** How often discovery walks the DHT (ms). */
  discoveryIntervalMs: number
  /** Run the Raft group and the replicated KV store. */
  raft: boolean
  /**
   * Found a new Raft group with this node as its only voter when its Raft
   * storage is empty, even though bootstrap peers are given. Without
   * bootstrap peers a fresh node always founds; with them it joins.
   */
  raftInit: boolean
  /**
   * The Raft group's first voters, for a node whose Raft storage is empty
   * (etcd's --initial-cluster): a count N, which the founder (the node
   * without bootstrap peers, or with raftInit) waits for before it makes
   * them all voters at once; or the peer ids, which every listed node
   * bootstraps on its own. null: the founder starts as the only voter and
   * the others join as learners. Used on a first start only; not saved.
   */
  raftInitialCluster: number | string[] | null
  /** Raft timing: one tick (and heartbeat) every raftTickMs; elections after 6-11 ticks of silence. */
  raftTickMs: number
  /** Serve `consistency=lease` reads from the leader's lease (trusts clocks). */
  raftLeaseReads: boolean
  /** Snapshot the KV store and compact the log every this many applied entries. */
  raftSnapshotEntries: number
  /**
   * The PBFT replica set (Ed25519 peer ids), identical on every node; empty
   * runs no PBFT. A node listed is a replica; any other runs a PBFT client.
   */
  bftReplicas: string[]
  /**
   * Outside bftReplicas, follow the PBFT replicas' log as a learner (a node
   * a reconfiguration is about to add). Not saved: a node that ran as a
   * learner keeps doing so from its PBFT state.
   */
  bftLearner: boolean
  /** Run this PBFT replica deliberately Byzantine (equivocating): demos and tests only. Never saved. */
  byzantine: boolean
  /**
   * The CRDT writer allowlist (peer ids): when non-empty, CRDT deltas and
   * states from anyone else are ignored, and this node refuses local ops
   * unless it is listed.
   */
  crdtWriters: string[]
  /** How often the CRDT service runs an anti-entropy round with a random admitted peer (ms). */
  crdtSyncIntervalMs: number
  /**
   * Which messages outside the reserved domains this node signs with its
   * DKG share when a member asks (node/dkg/approvals.ts): 'open' (any), or
   * 'approve' (only those this node's operator approved).
   */
  keysSignPolicy: SignPolicy
}

/** The settings that are saved in the data dir and reused on restart. */
export const SAVED_KEYS = [
  'cluster', 'listen', 'bootstrap', 'public', 'dhtKeepPrivateAddresses', 'mdns', 'api', 'logLevel',
  'pnetKeyFile', 'encrypters', 'maxConnections', 'subnetPeersMax', 'subnetIpv4PrefixBits', 'subnetIpv6PrefixBits', 'outboundPeersMin', 'joinPowBits', 'allowPeers', 'denyPeers', 'discoveryIntervalMs',
  'raft', 'raftTickMs', 'raftLeaseReads', 'raftSnapshotEntries', 'bftReplicas',
  'crdtWriters', 'crdtSyncIntervalMs', 'keysSignPolicy'
] as const satisfies ReadonlyArray<keyof AccordConfig>

export type SavedConfig = Partial<Pick<AccordConfig, typeof SAVED_KEYS[number]>>

export function defaultConfig (dataDir: string): AccordConfig {
  return {
    dataDir,
    cluster: 'accord',
    listen: ['/ip4/127.0.0.1/tcp/4001'],
    bootstrap: [],
    public: false,
    dhtKeepPrivateAddresses: true,
    mdns: false,
    api: '127.0.0.1:7070',
    logLevel: 'info',
    pnetKeyFile: null,
    encrypters: ['noise', 'tls'],
    maxConnections: 300,
    subnetPeersMax: 16,
    subnetIpv4PrefixBits: 24,
    subnetIpv6PrefixBits: 48,
    outboundPeersMin: 4,
    joinPowBits: 0,
    allowPeers: [],
    denyPeers: [],
    discoveryIntervalMs: 10_000,
    raft: true,
    raftInit: false,
    raftInitialCluster: null,
    raftTickMs: 50,
    raftLeaseReads: false,
    raftSnapshotEntries: 100_000,
    bftReplicas: [],
    bftLearner: false,
    byzantine: false,
    crdtWriters: [],
    crdtSyncIntervalMs: 5_000,
    keysSignPolicy: 'open'
  }
}

function checkIntegerIn (value: unknown, min: number, max: number, flag: string, fail: (message: string) => never): void {
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) { fail(`${flag} must be an integer in ${min}..${max}`) }
}

const CLUSTER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/

/**
 * Merge `overrides` over the defaults (and over `saved`, when restarting),
 * validate everything, and return a complete configuration. Throws UserError
 * naming the first bad setting.
 */
export function resolveConfig (dataDir: string, saved: SavedConfig, overrides: Partial<AccordConfig>): AccordConfig {
  const base = defaultConfig(dataDir)
  const merged: AccordConfig = { ...base, ...saved, ...stripUndefined(overrides), dataDir }
  if (overrides.public === true && overrides.dhtKeepPrivateAddresses === undefined && saved.dhtKeepPrivateAddresses === undefined) {
    merged.dhtKeepPrivateAddresses = false
  }
  validateConfig(merged)
  return merged
}

export function validateConfig (config: AccordConfig): void {
  const fail = (message: string): never => { throw new UserError(message) }
  if (typeof config.dataDir !== 'string' || config.dataDir === '') { fail('--data-dir is required') }
  if (typeof config.cluster !== 'string' || !CLUSTER_NAME.test(config.cluster)) {
    fail(`--cluster "${String(config.cluster)}" is not a valid name (letters, digits, ".", "_", "-"; at most 63)`)
  }
  if (!isStringArray(config.listen) || config.listen.length === 0) { fail('at least one --listen address is required') }
  for (const addr of config.listen) { parseMultiaddr(addr, '--listen') }
  if (!isStringArray(config.bootstrap)) { fail('bootstrap must be a list of multiaddrs') }
  for (const addr of config.bootstrap) {
    const ma = parseMultiaddr(addr, '--bootstrap')
    if (ma.getComponents().find(c => c.name === 'p2p') == null) { fail(`--bootstrap ${addr} has no /p2p/<peer-id> part`) }
  }
  for (const key of ['public', 'mdns', 'dhtKeepPrivateAddresses', 'raft', 'raftInit', 'raftLeaseReads', 'bftLearner', 'byzantine'] as const) {
    if (typeof config[key] !== 'boolean') { fail(`${key} must be true or false`) }
  }
  if (config.api !== null) { parseHostPort(config.api, '--api') }
  if (!(LOG_LEVELS as readonly string[]).includes(config.logLevel)) { fail(`--log-level must be one of ${LOG_LEVELS.join(', ')}`) }
  if (config.pnetKeyFile !== null && (typeof config.pnetKeyFile !== 'string' || config.pnetKeyFile === '')) { fail('--pnet-key must be a file path') }
  checkEncrypters(config.encrypters, fail)
  if (!Number.isInteger(config.maxConnections) || config.maxConnections < 1 || config.maxConnections > 100_000) { fail('--max-connections must be an integer in 1..100000') }
  checkIntegerIn(config.subnetPeersMax, 1, 100_000, '--subnet-peers-max', fail)
  checkIntegerIn(config.subnetIpv4PrefixBits, 1, 32, '--subnet-ipv4-prefix', fail)
  checkIntegerIn(config.subnetIpv6PrefixBits, 1, 128, '--subnet-ipv6-prefix', fail)
  checkIntegerIn(config.outboundPeersMin, 0, 1000, '--outbound-peers-min', fail)
  checkIntegerIn(config.joinPowBits, 0, POW_BITS_MAX, '--join-pow-bits', fail)
  for (const key of ['allowPeers', 'denyPeers', 'bftReplicas', 'crdtWriters'] as const) {
    if (!isStringArray(config[key])) { fail(`${key} must be a list of peer ids`) }
    for (const id of config[key]) {
      try { peerIdFromString(id) } catch { fail(`${key}: "${id}" is not a peer id`) }
    }
  }
  if (!Number.isInteger(config.discoveryIntervalMs) || config.discoveryIntervalMs < 100 || config.discoveryIntervalMs > 3_600_000) {
    fail('discoveryIntervalMs must be an integer in 100..3600000')
  }
  if (!Number.isInteger(config.crdtSyncIntervalMs) || config.crdtSyncIntervalMs < 100 || config.crdtSyncIntervalMs > 3_600_000) {
    fail('--crdt-sync-interval-ms must be an integer in 100..3600000')
  }
  if (!SIGN_POLICIES.includes(config.keysSignPolicy)) { fail(`--keys-sign-policy must be one of ${SIGN_POLICIES.join(', ')}`) }
  checkInitialCluster(config.raftInitialCluster, fail)
  if (!Number.isInteger(config.raftTickMs) || config.raftTickMs < 10 || config.raftTickMs > 10_000) { fail('--raft-tick-ms must be an integer in 10..10000') }
  if (!Number.isInteger(config.raftSnapshotEntries) || config.raftSnapshotEntries < 10 || config.raftSnapshotEntries > 100_000_000) {
    fail('--raft-snapshot-entries must be an integer in 10..100000000')
  }
  if (new Set(config.bftReplicas).size !== config.bftReplicas.length) { fail('--bft-replicas lists a peer twice') }
  for (const id of config.bftReplicas) {
    if (peerIdFromString(id).type !== 'Ed25519') { fail(`--bft-replicas: ${id} is not an Ed25519 peer id (PBFT signs with Ed25519 peer keys)`) }
  }
  if (config.bftLearner && config.bftReplicas.length === 0) { fail('--bft-learner needs the PBFT replica set to follow (--bft-replicas or --bft-genesis)') }
  if (config.byzantine && config.bftReplicas.length === 0) { fail('--byzantine needs a PBFT replica set (--bft-replicas or --bft-genesis)') }
}

const ENCRYPTERS_HINT = `${ENCRYPTERS.join(', ')} or both (there is no plaintext option)`

function checkEncrypters (value: unknown, fail: (message: string) => never): void {
  if (!isStringArray(value) || value.length === 0) { fail(`--encrypters must list ${ENCRYPTERS_HINT}`) }
  for (const name of value) {
    if (!(ENCRYPTERS as readonly string[]).includes(name)) { fail(`--encrypters: "${name}" is not one of ${ENCRYPTERS_HINT}`) }
  }
  if (new Set(value).size !== value.length) { fail('--encrypters lists an encrypter twice') }
}

/** `--encrypters noise,tls` (checked by validateConfig). */
export function parseEncrypters (flag: string | undefined): Encrypter[] | undefined {
  if (flag === undefined) { return undefined }
  return flag.split(',').map(name => name.trim()).filter(name => name !== '') as Encrypter[]
}

/** The largest --initial-cluster: every voter in one configuration (protocols/raft CONF_MEMBERS_MAX). */
export const INITIAL_CLUSTER_MAX = 1024

function checkInitialCluster (value: AccordConfig['raftInitialCluster'], fail: (message: string) => never): void {
  if (value === null) { return }
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 1 || value > INITIAL_CLUSTER_MAX) { fail(`--initial-cluster must be a count in 1..${INITIAL_CLUSTER_MAX} or a list of peer ids`) }
    return
  }
  if (!isStringArray(value) || value.length === 0 || value.length > INITIAL_CLUSTER_MAX) { fail(`--initial-cluster must be a count in 1..${INITIAL_CLUSTER_MAX} or a list of peer ids`) }
  for (const id of value) {
    try { peerIdFromString(id) } catch { fail(`--initial-cluster: "${id}" is not a peer id`) }
  }
  if (new Set(value).size !== value.length) { fail('--initial-cluster lists a peer twice') }
}

/** `--initial-cluster 3` or `--initial-cluster ID,ID,ID` (checked by validateConfig). */
export function parseInitialCluster (flag: string | undefined): number | string[] | undefined {
  if (flag === undefined) { return undefined }
  const trimmed = flag.trim()
  if (/^\d+$/.test(trimmed)) { return Number(trimmed) }
  return trimmed.split(',').map(id => id.trim()).filter(id => id !== '')
}

export function parseHostPort (value: string, flag: string): { host: string, port: number } {
  const match = /^(\[[0-9a-fA-F:]+\]|[a-zA-Z0-9.-]+):(\d{1,5})$/.exec(value)
  const port = match == null ? NaN : Number(match[2])
  if (match == null || port > 65535) { throw new UserError(`${flag} "${value}" is not HOST:PORT`) }
  return { host: match[1].replace(/^\[|\]$/g, ''), port }
}

function parseMultiaddr (value: string, flag: string): ReturnType<typeof multiaddr> {
  try {
    return multiaddr(value)
  } catch {
    throw new UserError(`${flag} "${value}" is not a valid multiaddr`)
  }
}

function isStringArray (value: unknown): value is string[] {
  return Array.isArray(value) && value.every(v => typeof v === 'string')
}

function stripUndefined<T extends object> (value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

/** Read the saved settings, or {} when the data dir has none yet. */
export async function readSavedConfig (dataDir: string): Promise<SavedConfig> {
  const path = join(dataDir, CONFIG_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') { return {} }
    throw new UserError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw new UserError(`${path} is not valid JSON`)
  }
  if (typeof json !== 'object' || json == null || Array.isArray(json)) { throw new UserError(`${path} must hold a JSON object`) }
  const unknown = Object.keys(json).filter(k => !(SAVED_KEYS as readonly string[]).includes(k))
  if (unknown.length > 0) { throw new UserError(`${path} has unknown setting "${unknown[0]}"`) }
  return json as SavedConfig
}

/** Save settings atomically (write, fsync, rename). */
export async function writeSavedConfig (config: AccordConfig): Promise<void> {
  const saved = Object.fromEntries(SAVED_KEYS.map(k => [k, config[k]]))
  await writeFileAtomic(join(config.dataDir, CONFIG_FILE), JSON.stringify(saved, null, 2) + '\n')
}

/**
 * Write a small file atomically with the given mode: into a temporary file
 * of a name no one else uses (`<path>.<pid>.<random>.tmp`, created
 * exclusively with `mode`, so a leftover file can neither lend it its mode
 * nor be written through), fsynced, then renamed over `path`, and the
 * directory fsynced so the rename survives a crash. On failure the
 * temporary file is removed and `path` is left as it was.
 */
export async function writeFileAtomic (path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  try {
    const file = await open(tmp, 'wx', mode)
    try {
      await file.writeFile(data)
      await file.sync()
    } finally {
      await file.close()
    }
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  const dir = await open(dirname(path), 'r').catch(() => null)
  if (dir != null) {
    try { await dir.sync() } catch { /* some file systems cannot fsync a directory */ } finally { await dir.close() }
  }
}
