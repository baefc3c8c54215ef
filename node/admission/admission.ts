/**
 * Admission: which peers this node serves.
 *
 * A peer is admitted once it has shown a membership certificate of our
 * cluster (signed by the cluster key, naming the peer id that Noise
 * authenticated on this connection) and is not revoked. Every accord
 * protocol handler is wrapped by `gate()`, which serves admitted peers only;
 * the two exceptions are this exchange itself and the join protocol, where
 * a newcomer trades a join token for a certificate (./join.ts).
 *
 * The exchange, `/accord/admission/1.0.0`: the dialling side opens a stream
 * on each new connection and sends its certificate; the other side checks
 * it and answers with its own, which the dialler checks in turn, so one
 * round trip admits both ways. A node that has no credentials yet (it is
 * still joining) answers without a certificate and presents its own on
 * every connection once it has joined.
 *
 * In private mode a connection whose peer is not admitted within
 * `graceMs` is closed: a stranger gets a handshake and the join protocol,
 * nothing else, and no long-lived connection slot.
 *
 * Group-signed certificates: once an operator switches a node with
 * `useGroupKey()` (`accord admission use-group-key`), the node presents a
 * certificate signed by the cluster's DKG group key (threshold BLS,
 * identity/group-certificate.ts) and accepts only such certificates; the
 * cluster key's are refused. A new member's certificate then needs t
 * members' partial signatures: each member gives its partial (mayCertify)
 * only for a peer its own operator approved (`approve()`, `accord
 * admission approve`) or for a member of the DKG group, never for a
 * revoked peer, so fewer than t members cannot admit anyone. A node that
 * has not switched but holds the group key accepts group certificates too,
 * so members can switch one after the other.
 *
 * Node key rotation (`accord keys rotate`, identity/keystore-rotation.ts):
 * a node whose key took over from another presents, on every connection
 * it opens or accepts, its hand-over statement and the certificate of the
 * key it replaced, on `/accord/admission/handover/1.0.0` (a request
 * `{v: 1, handover, cert}`, an answer `{ok: true, cert}` or `{ok: false,
 * reason}`; an older node does not speak the protocol and stays as it
 * was). A member that accepts it (./handovers.ts has the rules) admits the
 * new peer id as that member, retires the old peer id (refused from then
 * on, as a revoked one is, and its connections closed), saves the
 * hand-over, and passes it on to its other admitted peers, which judge it
 * by the same rules (a relayed statement retires the old key but admits
 * no one: the new peer id still shows its own certificate or statement).
 */
import { randomBytes } from 'node:crypto'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { serviceCapabilities } from '@libp2p/interface'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { encode } from 'cborg'
import { CERTIFICATE_BYTES_MAX, createJoinToken, verifyCertificate } from '../../identity/cluster-credentials.ts'
import { equalBytes } from '../../identity/ed25519.ts'
import { decodeGroupCertificate, encodeGroupCertificate, GROUP_CERT_TTL_MS_DEFAULT, GROUP_CERT_TTL_MS_MAX, groupCertificateMessage, parseGroupCertificateMessage, verifyGroupCertificate } from '../../identity/group-certificate.ts'
import { decodeHandover, HANDOVER_BYTES_MAX } from '../../identity/keystore-rotation.ts'
import { isPowBits } from '../../identity/proof-of-work.ts'
import { UserError } from '../errors.ts'
import { hostFromComponents } from '../host.ts'
import { silentLogger } from '../logger.ts'
import { decodeBoundedCbor } from '../raft/codec.ts'
import { boundedLengthDecoder } from '../raft/transport.ts'
import { Refusals } from '../refusals.ts'
import { CertificateKeeper } from './certificate-keeper.ts'
import { foundCluster, loadCredentials, saveCredentials } from './credentials.ts'
import { HandoverBook, HANDOVERS_MAX_DEFAULT, loadHandovers, saveHandovers } from './handovers.ts'
import { joinCluster, serveJoins } from './join.ts'
import type { CertificateAttempt, CertificateNeed } from './certificate-keeper.ts'
import type { ClusterCredentials } from './credentials.ts'
import type { HandoverVerdict } from './handovers.ts'
import type { AccordHost, HostComponents } from '../host.ts'
import type { AbortOptions, Connection, PeerId, Startable, Stream, StreamHandler } from '@libp2p/interface'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'

export const ADMISSION_PROTOCOL = '/accord/admission/1.0.0'
/** A rotated node shows its hand-over statement here (see the top of this file). */
export const HANDOVER_PROTOCOL = '/accord/admission/handover/1.0.0'
/** The largest hand-over request: the statement, the old key's certificate, CBOR framing. */
export const HANDOVER_REQUEST_BYTES_MAX = HANDOVER_BYTES_MAX + CERTIFICATE_BYTES_MAX + 64

export interface AdmissionLimits {
  /** One certificate exchange (open, send, answer). */
  exchangeTimeoutMs: number
  /** A gated stream from a peer whose exchange is still under way waits at most this long. */
  admissionWaitMs: number
  /** Gated streams waiting for their peer's exchange, across all peers; beyond it they are refused. */
  waitersMax: number
  /** Private mode: a connection whose peer is not admitted after this long is closed. */
  graceMs: number
  /** How often admitted peers are checked against the revocation list. */
  revocationSweepMs: number
  /** Longest and default lifetime of a join token. */
  tokenTtlMsMax: number
  tokenTtlMsDefault: number
  /** Operator approvals held at once (each for one peer id, until it expires). */
  approvalsMax: number
  /** The lifetime of a group certificate this node asks the group to sign. */
  groupCertTtlMs: number
  /** A member gives its partial only for a certificate issued within this much of its own clock. */
  groupCertClockSkewMs: number
  /** Other members' hand-overs (retired keys) held; beyond it new ones are refused ('full'). */
  handoversMax: number
  /**
   * Under the group key, this node asks the group for a new certificate of
   * its own after a key rotation, and before its certificate expires
   * (./certificate-keeper.ts): the first wait before a signing round for
   * it, doubled after each failed one, up to 30 s.
   */
  recertifyFirstDelayMs: number
  /** Signing rounds in a row before it gives up until the next check. */
  recertifyAttemptsMax: number
  /** A certificate this close to its expiry is renewed (at most a third of groupCertTtlMs is used). */
  groupCertRenewBeforeMs: number
  /** How often the node checks whether its own certificate needs renewing. */
  groupCertCheckMs: number
}

export const ADMISSION_DEFAULTS: Readonly<AdmissionLimits> = {
  exchangeTimeoutMs: 5_000,
  admissionWaitMs: 5_000,
  waitersMax: 1024,
  graceMs: 10_000,
  revocationSweepMs: 1_000,
  tokenTtlMsMax: 7 * 24 * 3600_000,
  tokenTtlMsDefault: 3600_000,
  approvalsMax: 1024,
  groupCertTtlMs: GROUP_CERT_TTL_MS_DEFAULT,
  groupCertClockSkewMs: 5 * 60_000,
  handoversMax: HANDOVERS_MAX_DEFAULT,
  recertifyFirstDelayMs: 1_000,
  recertifyAttemptsMax: 100,
  groupCertRenewBeforeMs: 30 * 24 * 3600_000,
  groupCertCheckMs: 3600_000
}

/**
 * The cluster's DKG group as admission needs it (node/dkg's service is
 * one): the group key this node holds a share of, and a signing round.
 */
export interface GroupSigner {
  /** The group this node holds a share of, or null. */
  groupInfo(): { groupKey: Uint8Array, threshold: number, members: string[] } | null
  /**
   * The group's signature of a group-certificate message: a signing round
   * in which each member checks the certificate against its own policy
   * (mayCertify). Throws when fewer than t members give valid partials.
   */
  signGroupCertificate(message: Uint8Array, options?: AbortOptions): Promise<Uint8Array>
}

const ANSWER_BYTES_MAX = CERTIFICATE_BYTES_MAX + 256

/** What a member answers to a certificate exchange or a hand-over (decoded, not yet checked). */
interface ExchangeAnswer { ok?: unknown, reason?: unknown, cert?: unknown }

function reasonOf (answer: ExchangeAnswer | null): string {
  return typeof answer?.reason === 'string' ? answer.reason.slice(0, 200) : 'malformed answer'
}

export interface AdmissionInit {
  /** The cluster's name: certificates and tokens of any other cluster are refused. */
  cluster: string
  /**
   * Where the cluster credentials are kept (`<dataDir>/admission/`). With
   * none saved there and `join` unset, start() founds a new cluster: it
   * makes the cluster key and this node's certificate, and saves both.
   */
  dataDir?: string
  /** Credentials to use (instead of those saved in dataDir). */
  credentials?: ClusterCredentials
  /** Passphrase that encrypts the saved cluster key. */
  passphrase?: string
  /**
   * This node's own key hand-over (its keystore's statement) and the
   * certificate of the key it replaced (predecessor.cert): shown to every
   * peer it connects with, so that members admit its new peer id and
   * retire the old one.
   */
  handover?: { statement: Uint8Array, certificate: Uint8Array }
  /** With no credentials: do not found a cluster, wait for join() with a token. */
  join?: boolean
  /** Close connections of peers not admitted within graceMs (default true; public mode turns it off). */
  closeUnadmitted?: boolean
  /**
   * Joins must carry a proof of work of this many bits, bound to the
   * joiner's peer id and the cluster (identity/proof-of-work.ts): 1..28,
   * or 0 / unset for none (the default). POW_BITS_DEFAULT (20) is about a
   * million hashes, a second or two of one core.
   */
  joinPowBits?: number
  limits?: Partial<AdmissionLimits>
  /** Where refusals are counted and logged (default: a counter in `registry`). */
  refusals?: Refusals
  /** The Prometheus registry of the refusal counter (when `refusals` is not given). */
  registry?: Registry
  log?: Logger
}

export type AdmissionComponents = HostComponents

interface Waiter { peer: string, wake(): void }

export class Admission implements Startable {
  readonly limits: AdmissionLimits
  /** Where every accord service counts and logs what it refuses. */
  readonly refusals: Refusals
  readonly #host: AccordHost
  readonly #init: AdmissionInit
  readonly #log: Logger
  #credentials: ClusterCredentials | null
  #isRevoked: (peer: string) => boolean = () => false
  /** Admitted peers; an entry goes when the peer's last connection closes (bounded by the connection limit). */
  readonly #admitted = new Set<string>()
  readonly #waiters = new Set<Waiter>()
  /** Grace timers of unadmitted connections, by connection id (bounded by the connection limit). */
  readonly #graceTimers = new Map<string, ReturnType<typeof setTimeout>>()
  readonly #onAdmittedListeners = new Set<(peer: string) => void>()
  /** How each admitted peer's certificate was signed: a switch to the group key drops the 'cluster' ones. */
  readonly #admittedBy = new Map<string, 'cluster' | 'group'>()
  /** Operator approvals: peer id → expiry (ms); at most limits.approvalsMax. */
  readonly #approvals = new Map<string, number>()
  /** Hand-overs of other members this node accepted (bounded by limits.handoversMax). */
  readonly #handovers: HandoverBook
  #groupSigner: GroupSigner | null = null
  #sweepTimer: ReturnType<typeof setInterval> | undefined
  readonly #certificateKeeper: CertificateKeeper
  #stopServingJoins: (() => Promise<void>) | undefined
  #starting: Promise<void> | undefined
  #running = false

  readonly [Symbol.toStringTag] = '@accord/admission'
  readonly [serviceCapabilities]: string[] = ['@accord/admission']

  constructor (components: AdmissionComponents, init: AdmissionInit) {
    this.#host = hostFromComponents(components)
    this.#init = init
    this.#log = init.log ?? silentLogger()
    this.refusals = init.refusals ?? new Refusals({ log: this.#log.child({ component: 'refusals' }), registry: init.registry })
    this.#credentials = init.credentials ?? null
    this.limits = { ...ADMISSION_DEFAULTS, ...init.limits }
    this.#handovers = new HandoverBook(this.limits.handoversMax)
    this.#certificateKeeper = new CertificateKeeper({
      firstDelayMs: this.limits.recertifyFirstDelayMs,
      attemptsMax: this.limits.recertifyAttemptsMax,
      checkEveryMs: this.limits.groupCertCheckMs,
      need: () => this.#certificateNeed(),
      attempt: async (need) => this.#recertify(need),
      log: this.#log
    })
    if (init.joinPowBits !== undefined && init.joinPowBits !== 0 && !isPowBits(init.joinPowBits)) {
      throw new RangeError('joinPowBits is 0 (off) or an integer in 1..28')
    }
    if (!Number.isSafeInteger(this.limits.groupCertTtlMs) || this.limits.groupCertTtlMs < 1000 || this.limits.groupCertTtlMs > GROUP_CERT_TTL_MS_MAX) {
      throw new RangeError('groupCertTtlMs is 1 s to 366 days')
    }
  }

  /** The proof of work a join must carry (bits), 0 for none. */
  get joinPowBits (): number { return this.#init.joinPowBits ?? 0 }

  /** The group key this node admits with, or null while it admits with the cluster key. */
  get groupKey (): Uint8Array | null { return this.#credentials?.groupKey ?? null }

  /** Where the DKG group's key and signing rounds come from (node/dkg's service sets itself here as it starts). */
  setGroupSigner (signer: GroupSigner | null): void {
    this.#groupSigner = signer
  }

  /**
   * The operator's approval of `peer`: until it expires, this node gives
   * its partial signature to a group certificate for that peer. Returns
   * the expiry. Throws RangeError on a bad peer id or lifetime, or when
   * approvalsMax approvals are held.
   */
  approve (peer: string, ttlMs: number = this.limits.tokenTtlMsDefault, nowMs = Date.now()): number {
    if (typeof peer !== 'string' || peer.length > 128) { throw new RangeError('not a peer id') }
    try { peerIdFromString(peer) } catch { throw new RangeError(`not a peer id: ${peer.slice(0, 64)}`) }
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 1000 || ttlMs > this.limits.tokenTtlMsMax) {
      throw new RangeError(`an approval's lifetime must be 1 s to ${this.limits.tokenTtlMsMax / 3600_000} h`)
    }
    for (const [p, expiresAtMs] of this.#approvals) {
      if (expiresAtMs <= nowMs) { this.#approvals.delete(p) }
    }
    if (!this.#approvals.has(peer) && this.#approvals.size >= this.limits.approvalsMax) { throw new RangeError(`${this.limits.approvalsMax} approvals are held already`) }
    const expiresAtMs = nowMs + ttlMs
    this.#approvals.set(peer, expiresAtMs)
    this.#log.info({ peer, expiresAt: new Date(expiresAtMs).toISOString() }, 'operator approved a peer for a group certificate')
    return expiresAtMs
  }

  /** The approvals in force: peer id and expiry. */
  approvals (nowMs = Date.now()): Array<{ peer: string, expiresAtMs: number }> {
    return [...this.#approvals].filter(([, e]) => e > nowMs).map(([peer, expiresAtMs]) => ({ peer, expiresAtMs })).sort((a, b) => a.peer.localeCompare(b.peer))
  }

  /**
   * This node's policy for a group-certificate signing request from
   * `requester` (a member of the DKG group): null when it gives its
   * partial, else why not. The certificate must be for this cluster and
   * the group key this node holds, issued within groupCertClockSkewMs of
   * now, for a peer that is not revoked and that this node's operator
   * approved, or that is a member of the DKG group.
   */
  mayCertify (message: Uint8Array, requester: string, nowMs = Date.now()): string | null {
    const cert = parseGroupCertificateMessage(message)
    if (typeof cert === 'string') { return `not a certificate: ${cert}` }
    const group = this.#groupSigner?.groupInfo() ?? null
    if (group == null) { return 'this node holds no group key' }
    if (cert.cluster !== this.#init.cluster) { return 'a certificate of another cluster' }
    if (!equalBytes(cert.groupKey, group.groupKey)) { return 'a certificate of another group key' }
    if (Math.abs(cert.issuedAtMs - nowMs) > this.limits.groupCertClockSkewMs) { return 'a certificate not issued now' }
    if (cert.expiresAtMs - cert.issuedAtMs > this.limits.groupCertTtlMs) { return 'a certificate that lives longer than this node allows' }
    if (this.isRevoked(cert.peer) || this.isRevoked(requester)) { return 'revoked' }
    const approvedUntil = this.#approvals.get(cert.peer)
    if (approvedUntil !== undefined && approvedUntil > nowMs) { return null }
    if (group.members.includes(cert.peer)) { return null }
    return `this node's operator has not approved ${cert.peer}`
  }

  /**
   * A group certificate for `peer`, made by a signing round of the DKG
   * group (each member applies mayCertify). Throws when this node holds
   * no group key or the group does not sign.
   */
  async groupCertificateFor (peer: string, options: AbortOptions = {}, nowMs = Date.now()): Promise<Uint8Array> {
    const signer = this.#groupSigner
    const group = signer?.groupInfo() ?? null
    if (signer == null || group == null) { throw new UserError('this node holds no DKG group key: run "accord keys dkg" first') }
    const cert = { cluster: this.#init.cluster, groupKey: group.groupKey, peer, issuedAtMs: nowMs, expiresAtMs: nowMs + this.limits.groupCertTtlMs }
    const signature = await signer.signGroupCertificate(groupCertificateMessage(cert), options)
    return encodeGroupCertificate(cert, signature)
  }

  /**
   * Switch this node to admitting with the cluster's DKG group key: the
   * group signs this node's own certificate (a signing round; the members
   * give partials for a member of the group, or for a peer their operators
   * approved), the credentials are saved with the group key, and from then
   * on this node presents that certificate and refuses certificates signed
   * by the cluster key (peers admitted with one are dropped and must show
   * a group certificate). Run it on every member. Throws UserError.
   */
  async useGroupKey (options: AbortOptions = {}): Promise<{ groupKey: Uint8Array, threshold: number, expiresAtMs: number }> {
    const credentials = this.#credentials
    if (credentials == null) { throw new UserError('this node has not joined its cluster yet') }
    const group = this.#groupSigner?.groupInfo() ?? null
    if (group == null) { throw new UserError('this node holds no DKG group key: run "accord keys dkg" first') }
    if (group.threshold < 2) { throw new UserError(`the group key has threshold ${group.threshold}: one member could admit alone; make a key with threshold 2 or more`) }
    let signed: { certificate: Uint8Array, expiresAtMs: number }
    try {
      signed = await this.#signOwnCertificate(group.groupKey, options)
    } catch (err) {
      throw new UserError(`the group did not sign this node's certificate: ${(err as Error).message}`)
    }
    const switched = await this.#saveCertificate(credentials, signed.certificate, group.groupKey)
    for (const [peer, by] of this.#admittedBy) {
      if (by === 'cluster' && !group.members.includes(peer)) { this.#admitted.delete(peer); this.#admittedBy.delete(peer) }
    }
    this.setCredentials(switched)
    this.#log.info({ groupKey: Buffer.from(group.groupKey).toString('hex'), threshold: group.threshold }, 'admission switched to the DKG group key: only group-signed certificates are accepted now')
    return { groupKey: group.groupKey, threshold: group.threshold, expiresAtMs: signed.expiresAtMs }
  }

  /** A certificate of this node's own peer id under `groupKey`, signed by the group and checked. Throws when the group does not sign it. */
  async #signOwnCertificate (groupKey: Uint8Array, options: AbortOptions = {}): Promise<{ certificate: Uint8Array, expiresAtMs: number }> {
    const self = this.#host.peerId.toString()
    const certificate = await this.groupCertificateFor(self, options)
    const checked = verifyGroupCertificate(certificate, { cluster: this.#init.cluster, groupKey, peer: self, nowMs: Date.now() })
    if (typeof checked === 'string') { throw new Error(`the group's certificate does not verify: ${checked}`) }
    return { certificate, expiresAtMs: checked.expiresAtMs }
  }

  /**
   * The credentials with this node's new group certificate, saved: made
   * afresh (a rotated node that was awaiting one has it now), and a switch
   * to another key remembers the one it leaves.
   */
  async #saveCertificate (credentials: ClusterCredentials, certificate: Uint8Array, groupKey: Uint8Array): Promise<ClusterCredentials> {
    const previous = credentials.groupKey != null && !equalBytes(credentials.groupKey, groupKey) ? credentials.groupKey : credentials.previousGroupKey
    const next: ClusterCredentials = { cluster: credentials.cluster, clusterKey: credentials.clusterKey, clusterPublicKey: credentials.clusterPublicKey, certificate, groupKey, ...(previous != null ? { previousGroupKey: previous } : {}) }
    if (this.#init.dataDir != null) { await saveCredentials(this.#init.dataDir, next, this.#init.passphrase) }
    return next
  }

  get credentials (): ClusterCredentials | null { return this.#credentials }

  /** Whether this node's key was rotated under the group key and the group has not certified its new peer id yet. */
  get awaitingGroupCertificate (): boolean { return this.#credentials?.awaitingGroupCertificate === true }

  /** This node's certificate as shown to peers: none while it awaits the group's (its hand-over admits it meanwhile). */
  #ownCertificate (): Uint8Array | undefined {
    return this.awaitingGroupCertificate ? undefined : this.#credentials?.certificate
  }

  /** An accepting answer: with this node's certificate, so that the asker admits it too (when it has one). */
  #accepted (): { ok: true, cert?: Uint8Array } {
    const cert = this.#ownCertificate()
    return cert === undefined ? { ok: true } : { ok: true, cert }
  }

  /** Why this node needs a new group certificate of its own now (./certificate-keeper.ts), or null. */
  #certificateNeed (nowMs = Date.now()): CertificateNeed | null {
    const credentials = this.#credentials
    if (credentials?.groupKey == null) { return null }
    if (credentials.awaitingGroupCertificate === true) { return 'rotated' }
    const cert = decodeGroupCertificate(credentials.certificate)
    if (typeof cert === 'string') { return null }
    const renewBeforeMs = Math.min(this.limits.groupCertRenewBeforeMs, Math.floor((cert.expiresAtMs - cert.issuedAtMs) / 3))
    return cert.expiresAtMs - nowMs <= renewBeforeMs ? 'expiring' : null
  }

  /** One signing round for this node's own certificate under the group key it admits with. */
  async #recertify (need: CertificateNeed): Promise<CertificateAttempt> {
    const credentials = this.#credentials
    const group = this.#groupSigner?.groupInfo() ?? null
    if (credentials?.groupKey == null) { return 'done' }
    if (group == null || !equalBytes(group.groupKey, credentials.groupKey)) {
      this.#log.error({ need }, `this node holds no share of the group key it admits with, so it cannot ask the group for ${need === 'rotated' ? 'a certificate of its new peer id' : 'a new certificate before this one expires'}: after a new DKG run "accord admission use-group-key"; outside the DKG group, have T members approve it (accord admission approve) and join again`)
      return 'impossible'
    }
    let signed: { certificate: Uint8Array, expiresAtMs: number }
    try {
      signed = await this.#signOwnCertificate(credentials.groupKey)
    } catch (err) {
      this.#log.info({ need, err: (err as Error).message }, 'the group has not signed this node\'s new certificate yet; asking again later')
      return 'retry'
    }
    if (!this.#running) { return 'retry' }
    this.setCredentials(await this.#saveCertificate(credentials, signed.certificate, credentials.groupKey))
    this.#log.info({ need, expiresAt: new Date(signed.expiresAtMs).toISOString() }, need === 'rotated' ? 'the group certified this node\'s new peer id' : 'the group renewed this node\'s certificate')
    return 'done'
  }

  get cluster (): string { return this.#init.cluster }

  /** Load or found the credentials, and serve the exchange and joins (libp2p calls this before it listens). */
  async start (): Promise<void> {
    this.#starting = this.#start()
    await this.#starting
  }

  async #start (): Promise<void> {
    const { dataDir, cluster, passphrase } = this.#init
    if (this.#credentials == null && dataDir != null) {
      this.#credentials = await loadCredentials(dataDir, cluster, this.#host.peerId, passphrase)
      if (this.#credentials == null && this.#init.join !== true) {
        this.#credentials = await foundCluster(cluster, this.#host.peerId, Date.now())
        await saveCredentials(dataDir, this.#credentials, passphrase)
        this.#log.info({ cluster }, 'founded a new cluster: made its cluster key and this node\'s certificate')
      }
    }
    if (this.#credentials == null && this.#init.join !== true) {
      throw new Error('clusterAdmission() needs a dataDir or credentials (or join: true, then join() with a token)')
    }
    if (dataDir != null) { await loadHandovers(dataDir, this.#handovers) }
    this.#running = true
    await this.#host.handle(ADMISSION_PROTOCOL, this.#serveExchange, { maxInboundStreams: 2, maxOutboundStreams: 2 })
    await this.#host.handle(HANDOVER_PROTOCOL, this.#serveHandover, { maxInboundStreams: 2, maxOutboundStreams: 2 })
    this.#stopServingJoins = await serveJoins({ host: this.#host, cluster, admission: this, refusals: this.refusals, log: this.#log })
    this.#host.addEventListener('connection:open', this.#onConnectionOpen)
    this.#host.addEventListener('connection:close', this.#onConnectionClose)
    this.#host.addEventListener('peer:disconnect', this.#onPeerDisconnect)
    // other services start alongside this one and may have dialled already: those connections get their exchange (and grace) too.
    // Inbound ones as well: their dialler presented while this node did not serve the exchange yet, failed, and will not try again
    for (const connection of this.#host.getConnections()) {
      this.#onConnectionOpen(new CustomEvent('connection:open', { detail: connection }))
      if (connection.direction === 'inbound') { this.#present(connection) }
      if (connection.direction === 'inbound') { this.#presentHandover(connection) }
    }
    this.#sweepTimer = setInterval(() => { this.#sweepRevoked() }, this.limits.revocationSweepMs)
    this.#certificateKeeper.start()
  }

  async stop (): Promise<void> {
    // libp2p stops every service when one fails to start, maybe while this one still starts
    await this.#starting?.catch(() => {})
    this.#running = false
    clearInterval(this.#sweepTimer)
    this.#certificateKeeper.stop()
    for (const timer of this.#graceTimers.values()) { clearTimeout(timer) }
    this.#graceTimers.clear()
    for (const waiter of this.#waiters) { waiter.wake() }
    this.#waiters.clear()
    this.#host.removeEventListener('connection:open', this.#onConnectionOpen)
    this.#host.removeEventListener('connection:close', this.#onConnectionClose)
    this.#host.removeEventListener('peer:disconnect', this.#onPeerDisconnect)
    await this.#stopServingJoins?.()
    await this.#host.unhandle(ADMISSION_PROTOCOL).catch(() => {})
    await this.#host.unhandle(HANDOVER_PROTOCOL).catch(() => {})
  }

  /**
   * Trade a join token (made by `createJoinToken()` on a member) for this
   * node's certificate and the cluster key, asking the peers `candidates`
   * names (multiaddrs with /p2p/, or peer ids of connected peers) until one
   * accepts it or `deadlineMs` passes. Saves them in dataDir, then presents
   * the certificate on every connection. Throws UserError when the token is
   * refused or no member answers.
   */
  async join (token: string, candidates: string[] | (() => Promise<string[]> | string[]), deadlineMs?: number): Promise<void> {
    const credentials = await joinCluster(this.#host, this.#init.cluster, async () => typeof candidates === 'function' ? candidates() : candidates, token, deadlineMs)
    if (this.#init.dataDir != null) { await saveCredentials(this.#init.dataDir, credentials, this.#init.passphrase) }
    this.setCredentials(credentials)
    this.#log.info({ cluster: this.#init.cluster }, 'joined the cluster with a join token')
  }

  /** Set once a joining node has its credentials: present them on every open connection. */
  setCredentials (credentials: ClusterCredentials): void {
    this.#credentials = credentials
    for (const connection of this.#host.getConnections()) { this.#present(connection) }
  }

  /** Where revocations come from (the Raft group's replicated list); checked on every admission and every sweep. */
  setRevocationCheck (isRevoked: (peer: string) => boolean): void {
    this.#isRevoked = isRevoked
  }

  /** Revoked (the replicated list) or retired (a hand-over this node accepted moved the member to a new key). */
  isRevoked (peer: string): boolean {
    return this.#isRevoked(peer) || this.#handovers.isRetired(peer)
  }

  /** The peer id that took over from `peer` by a hand-over this node accepted, if any. */
  successorOf (peer: string): string | undefined {
    return this.#handovers.successorOf(peer)
  }

  /** Hand-overs of other members this node accepted. */
  get handoversAccepted (): number { return this.#handovers.size }

  /** The accepted hand-overs, oldest first: each retired peer id, its successor and the sequence. */
  handovers (): Array<{ oldPeer: string, newPeer: string, sequence: number }> {
    return this.#handovers.entries()
  }

  /** This node's own hand-over, when its key took over from another: the peer id it replaced and the sequence. */
  get ownHandover (): { predecessor: string, sequence: number } | null {
    const decoded = this.#init.handover == null ? 'none' : decodeHandover(this.#init.handover.statement)
    if (typeof decoded === 'string') { return null }
    return { predecessor: peerIdFromPublicKey(publicKeyFromRaw(decoded.statement.oldPublicKey)).toString(), sequence: decoded.statement.sequence }
  }

  isAdmitted (peer: string): boolean {
    return this.#admitted.has(peer) && !this.isRevoked(peer)
  }

  admittedPeers (): string[] {
    return [...this.#admitted].filter(p => !this.isRevoked(p))
  }

  /** Called with each newly admitted peer. */
  onAdmitted (listener: (peer: string) => void): () => void {
    this.#onAdmittedListeners.add(listener)
    return () => { this.#onAdmittedListeners.delete(listener) }
  }

  /** A join token for this cluster, valid for ttlMs. */
  async createJoinToken (ttlMs = this.limits.tokenTtlMsDefault, nowMs = Date.now()): Promise<{ token: string, expiresAtMs: number }> {
    if (this.#credentials == null) { throw new Error('this node has not joined its cluster yet, so it cannot admit others') }
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 1000 || ttlMs > this.limits.tokenTtlMsMax) {
      throw new RangeError(`a token's lifetime must be 1 s to ${this.limits.tokenTtlMsMax / 3600_000} h`)
    }
    const expiresAtMs = nowMs + ttlMs
    const token = await createJoinToken(this.#credentials.clusterKey, { cluster: this.#init.cluster, expiresAtMs, nonce: new Uint8Array(randomBytes(16)) })
    return { token, expiresAtMs }
  }

  /**
   * Wrap a protocol handler so it serves admitted peers only. A stream from
   * a peer whose certificate exchange is under way waits for it (at most
   * admissionWaitMs, and at most waitersMax streams at once); every other
   * stream is aborted, counted and logged.
   */
  gate (protocol: string, handler: StreamHandler): StreamHandler {
    return async (stream: Stream, connection: Connection) => {
      const peer = connection.remotePeer.toString()
      if (!this.isAdmitted(peer)) {
        // Paused while admission decides: yamux then grants the sender no
        // more than the stream's first window (256 KiB), where an unread
        // stream would buffer up to 4 MiB (1024 waiting streams: 4 GiB).
        if (!setPaused(stream, true)) { return }
        const reason = this.isRevoked(peer) ? 'revoked' : await this.#waitAdmitted(peer)
        if (reason !== null) {
          this.refusals.refuse(peer, protocol, reason)
          stream.abort(new Error(`not admitted: ${reason}`))
          if (reason === 'revoked') { this.#disconnect(peer) }
          return
        }
        if (!setPaused(stream, false)) { return }
      }
      await handler(stream, connection)
    }
  }

  /** null once `peer` is admitted, else why it is not. */
  async #waitAdmitted (peer: string): Promise<string | null> {
    if (!this.#running || this.#credentials == null) { return 'not-ready' }
    if (this.#waiters.size >= this.limits.waitersMax) { return 'waiters-full' }
    let waiter: Waiter | undefined
    let timer: ReturnType<typeof setTimeout> | undefined
    await new Promise<void>(resolve => {
      waiter = { peer, wake: resolve }
      this.#waiters.add(waiter)
      timer = setTimeout(resolve, this.limits.admissionWaitMs)
    })
    clearTimeout(timer)
    if (waiter !== undefined) { this.#waiters.delete(waiter) }
    if (this.isAdmitted(peer)) { return null }
    return this.isRevoked(peer) ? 'revoked' : 'not-admitted'
  }

  #admit (peer: string, by: 'cluster' | 'group'): void {
    this.#admittedBy.set(peer, by)
    if (this.#admitted.has(peer)) { return }
    this.#admitted.add(peer)
    for (const connection of this.#host.getConnections()) {
      if (connection.remotePeer.toString() === peer) { this.#clearGrace(connection.id) }
    }
    for (const waiter of this.#waiters) {
      if (waiter.peer === peer) { waiter.wake() }
    }
    this.#log.debug({ peer }, 'peer admitted')
    for (const listener of this.#onAdmittedListeners) { listener(peer) }
  }

  /**
   * Check a certificate presented by `peer`: how it admits the peer, or
   * the reason it does not. Switched to the group key, group certificates
   * count, and the cluster key's only for a member of the DKG group (that
   * admits no new peer id: the group's members are fixed by the DKG, so a
   * member that has not switched yet can still ask the group to sign its
   * certificate). Before the switch: cluster-key certificates, and group
   * certificates of the DKG group this node holds a share of.
   */
  async #check (peer: string, certificate: Uint8Array): Promise<{ by: 'cluster' | 'group' } | string> {
    const credentials = this.#credentials
    if (credentials == null) { return 'not-ready' }
    const group = this.#groupSigner?.groupInfo() ?? null
    const groupKey = credentials.groupKey ?? group?.groupKey
    // a group certificate: why it is not one (null: no group key to check it with)
    let groupReason: string | null = null
    if (groupKey != null) {
      const checked = verifyGroupCertificate(certificate, { cluster: this.#init.cluster, groupKey, peer, nowMs: Date.now() })
      if (typeof checked !== 'string' || this.#memberCertificate(peer, certificate, groupKey)) { return this.isRevoked(peer) ? 'revoked' : { by: 'group' } }
      groupReason = checked
    }
    const notGroupSigned = groupReason === null || groupReason === 'not a group signature'
    if (credentials.groupKey != null && group?.members.includes(peer) !== true) {
      return notGroupSigned ? 'a certificate signed by the cluster key: this node admits with the group key only' : groupReason as string
    }
    const checked = await verifyCertificate(certificate, { cluster: this.#init.cluster, clusterKey: credentials.clusterPublicKey, peer })
    if (typeof checked === 'string') { return notGroupSigned ? checked : groupReason as string }
    return this.isRevoked(peer) ? 'revoked' : { by: 'cluster' }
  }

  /**
   * Whether `peer`, a member of the DKG group, shows a certificate under
   * the DKG's current key or the key this node admitted with before its
   * last switch (`checked`: the one #check tried already). Members switch
   * to a new key one by one, and the DKG fixed who its members are, so
   * this admits no new peer id.
   */
  #memberCertificate (peer: string, certificate: Uint8Array, checked: Uint8Array): boolean {
    const group = this.#groupSigner?.groupInfo() ?? null
    if (group?.members.includes(peer) !== true) { return false }
    return [group.groupKey, this.#credentials?.previousGroupKey].some(key => key != null && !equalBytes(key, checked) &&
      typeof verifyGroupCertificate(certificate, { cluster: this.#init.cluster, groupKey: key, peer, nowMs: Date.now() }) !== 'string')
  }

  readonly #onConnectionOpen = (event: CustomEvent<Connection>): void => {
    const connection = event.detail
    const peer = connection.remotePeer.toString()
    if (this.#init.closeUnadmitted !== false && !this.isAdmitted(peer)) {
      this.#graceTimers.set(connection.id, setTimeout(() => {
        this.#graceTimers.delete(connection.id)
        // a node that has not joined yet cannot judge anyone
        if (this.#credentials == null || this.isAdmitted(peer) || connection.status !== 'open') { return }
        this.refusals.refuse(peer, ADMISSION_PROTOCOL, 'grace-expired')
        connection.close().catch(() => { connection.abort(new Error('not admitted')) })
      }, this.limits.graceMs))
    }
    if (connection.direction === 'outbound') { this.#present(connection) }
    // both ways: a member that dials this node after its rotation learns the new key as well
    this.#presentHandover(connection)
  }

  readonly #onConnectionClose = (event: CustomEvent<Connection>): void => {
    this.#clearGrace(event.detail.id)
  }

  readonly #onPeerDisconnect = (event: CustomEvent<PeerId>): void => {
    this.#admitted.delete(event.detail.toString())
    this.#admittedBy.delete(event.detail.toString())
  }

  #clearGrace (connectionId: string): void {
    clearTimeout(this.#graceTimers.get(connectionId))
    this.#graceTimers.delete(connectionId)
  }

  /** Close every connection of a peer that was revoked since it was admitted. */
  #sweepRevoked (): void {
    for (const peer of this.#admitted) {
      if (!this.isRevoked(peer)) { continue }
      this.#admitted.delete(peer)
      this.#admittedBy.delete(peer)
      this.refusals.refuse(peer, ADMISSION_PROTOCOL, 'revoked')
      this.#disconnect(peer)
    }
  }

  #disconnect (peer: string): void {
    for (const connection of this.#host.getConnections()) {
      if (connection.remotePeer.toString() === peer) { connection.close().catch(() => { connection.abort(new Error('revoked')) }) }
    }
  }

  /** Send our certificate on `connection` and check the one that comes back. Never throws. */
  #present (connection: Connection): void {
    const certificate = this.#ownCertificate()
    // awaiting the group's certificate, this node shows its hand-over only (#presentHandover)
    if (certificate === undefined || !this.#running || connection.status !== 'open') { return }
    const peer = connection.remotePeer.toString()
    this.#ask(connection, ADMISSION_PROTOCOL, { v: 1, cert: certificate })
      .then(async answer => {
        if (answer?.ok !== true) {
          this.#log.warn({ peer, reason: reasonOf(answer) }, 'peer did not accept our membership certificate')
        }
        await this.#admitByAnswer(peer, ADMISSION_PROTOCOL, answer)
      })
      .catch(err => { this.#log.debug({ peer, err: (err as Error).message }, 'certificate exchange failed') })
  }

  /** Show this node's hand-over statement on `connection`, if it has one, and admit the member that accepts it. Never throws. */
  #presentHandover (connection: Connection, handover = this.#init.handover, relay = false): void {
    if (handover == null || this.#credentials == null || !this.#running || connection.status !== 'open') { return }
    const peer = connection.remotePeer.toString()
    this.#ask(connection, HANDOVER_PROTOCOL, { v: 1, handover: handover.statement, cert: handover.certificate })
      .then(async answer => {
        if (answer?.ok !== true) {
          this.#log.warn({ peer, relay, reason: reasonOf(answer) }, 'peer did not accept the key hand-over')
          return
        }
        if (!relay) { this.#log.debug({ peer }, 'peer accepted this node\'s key hand-over') }
        if (!this.isAdmitted(peer)) { await this.#admitByAnswer(peer, HANDOVER_PROTOCOL, answer) }
      })
      .catch(err => { this.#log.debug({ peer, err: (err as Error).message }, 'hand-over presentation failed') })
  }

  /** One request and its answer on a new `protocol` stream of `connection` (bounded, within exchangeTimeoutMs). */
  async #ask (connection: Connection, protocol: string, request: Record<string, unknown>): Promise<ExchangeAnswer | null> {
    const signal = AbortSignal.timeout(this.limits.exchangeTimeoutMs)
    const stream = await connection.newStream(protocol, { signal })
    try {
      const lp = lpStream(stream, { maxDataLength: ANSWER_BYTES_MAX, lengthDecoder: boundedLengthDecoder(ANSWER_BYTES_MAX) })
      await lp.write(encode(request), { signal })
      const answer = decodeBoundedCbor((await lp.read({ signal })).subarray()) as ExchangeAnswer | null
      await stream.close({ signal })
      return answer
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  /** Admits `peer` by the certificate its answer carries, if any; a bad one is refused and counted under `protocol`. */
  async #admitByAnswer (peer: string, protocol: string, answer: ExchangeAnswer | null): Promise<void> {
    if (!(answer?.cert instanceof Uint8Array)) { return }
    const checked = await this.#check(peer, answer.cert)
    if (typeof checked !== 'string') { this.#admit(peer, checked.by) } else { this.refusals.refuse(peer, protocol, 'bad-certificate', { detail: checked }) }
  }

  /**
   * Judge a hand-over statement `from` a peer: the rotated node itself
   * (then its new peer id must be the sender), or an admitted member
   * passing it on. Accepted: the new peer id is admitted (when it is the
   * sender), the old one retired and disconnected, the table saved, and
   * the statement passed on. Exposed for tests; the protocol calls it.
   */
  async acceptHandover (from: string, statement: Uint8Array, oldCertificate: Uint8Array | undefined): Promise<HandoverVerdict> {
    let oldBy: 'cluster' | 'group' | undefined
    const verdict = await this.#handovers.judge(statement, {
      clusterId: this.#init.cluster,
      isRevoked: (p) => this.#isRevoked(p),
      isMember: async (oldPeer) => {
        if (oldCertificate === undefined) { return false }
        const checked = await this.#check(oldPeer, oldCertificate)
        if (typeof checked === 'string') { return false }
        oldBy = checked.by
        return true
      }
    })
    if (!verdict.ok) {
      if (verdict.reason === 'conflict') {
        this.#log.error({ from, detail: verdict.detail }, 'evidence: a member key signed two different hand-overs; its old key has leaked')
      }
      this.refusals.refuse(from, HANDOVER_PROTOCOL, verdict.reason, { detail: verdict.detail })
      return verdict
    }
    const { oldPeerId, newPeerId, sequence } = verdict.handover
    if (newPeerId === from && !this.isRevoked(from) && this.#host.getConnections().some(c => c.remotePeer.toString() === from)) { this.#admit(from, oldBy ?? this.#admittedBy.get(from) ?? 'cluster') }
    if (!verdict.fresh) { return verdict }
    this.#log.info({ oldPeer: oldPeerId, newPeer: newPeerId, sequence, from }, 'accepted a key hand-over: the member\'s new peer id is admitted, its old one retired')
    this.#admitted.delete(oldPeerId)
    this.#admittedBy.delete(oldPeerId)
    this.#disconnect(oldPeerId)
    if (this.#init.dataDir != null) {
      await saveHandovers(this.#init.dataDir, this.#handovers).catch(err => {
        this.#log.error({ err: (err as Error).message }, 'could not save the accepted hand-overs; a restart forgets this one until the member shows it again')
      })
    }
    // pass it on, so members the rotated node is not connected to retire the old key too
    if (oldCertificate !== undefined) {
      const sentTo = new Set([from, oldPeerId, newPeerId])
      for (const connection of this.#host.getConnections()) {
        const peer = connection.remotePeer.toString()
        if (sentTo.has(peer) || !this.isAdmitted(peer)) { continue }
        sentTo.add(peer)
        this.#presentHandover(connection, { statement, certificate: oldCertificate }, true)
      }
    }
    return verdict
  }

  readonly #serveHandover = async (stream: Stream, connection: Connection): Promise<void> => {
    const from = connection.remotePeer.toString()
    const signal = AbortSignal.timeout(this.limits.exchangeTimeoutMs)
    const maxDataLength = HANDOVER_REQUEST_BYTES_MAX
    const lp = lpStream(stream, { maxDataLength, lengthDecoder: boundedLengthDecoder(maxDataLength) })
    try {
      let request: { v?: unknown, handover?: unknown, cert?: unknown }
      try {
        request = decodeBoundedCbor((await lp.read({ signal })).subarray()) as typeof request
      } catch (err) {
        const oversize = /length|too long/i.test(`${(err as Error).name} ${(err as Error).message}`)
        this.refusals.refuse(from, HANDOVER_PROTOCOL, oversize ? 'oversize' : 'malformed', { detail: (err as Error).message })
        stream.abort(err as Error)
        return
      }
      if (this.#credentials == null) {
        this.refusals.refuse(from, HANDOVER_PROTOCOL, 'not-ready')
        await lp.write(encode({ ok: false, reason: 'not-ready' }), { signal })
        await stream.close({ signal })
        return
      }
      if (request?.v !== 1 || !(request.handover instanceof Uint8Array) || !(request.cert === undefined || request.cert instanceof Uint8Array)) {
        this.refusals.refuse(from, HANDOVER_PROTOCOL, 'malformed')
        await lp.write(encode({ ok: false, reason: 'malformed' }), { signal })
        await stream.close({ signal })
        return
      }
      const decoded = decodeHandover(request.handover)
      // a statement comes from its new key's holder, or is passed on by an admitted member
      if (typeof decoded !== 'string' && !this.isAdmitted(from) && !equalBytes(connection.remotePeer.publicKey?.raw ?? new Uint8Array(), decoded.statement.newPublicKey)) {
        this.refusals.refuse(from, HANDOVER_PROTOCOL, 'not-admitted')
        await lp.write(encode({ ok: false, reason: 'not-admitted' }), { signal })
        await stream.close({ signal })
        return
      }
      const verdict = await this.acceptHandover(from, request.handover, request.cert as Uint8Array | undefined)
      await lp.write(encode(verdict.ok ? this.#accepted() : { ok: false, reason: `${verdict.reason}: ${verdict.detail}`.slice(0, 200) }), { signal })
      await stream.close({ signal })
    } catch (err) {
      this.refusals.refuse(from, HANDOVER_PROTOCOL, 'malformed', { detail: (err as Error).message })
      stream.abort(err as Error)
    }
  }

  readonly #serveExchange = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString()
    const signal = AbortSignal.timeout(this.limits.exchangeTimeoutMs)
    const maxDataLength = CERTIFICATE_BYTES_MAX + 64
    const lp = lpStream(stream, { maxDataLength, lengthDecoder: boundedLengthDecoder(maxDataLength) })
    try {
      const request = decodeBoundedCbor((await lp.read({ signal })).subarray()) as { v?: unknown, cert?: unknown }
      const checked = request?.v !== 1 || !(request.cert instanceof Uint8Array) ? 'malformed' : await this.#check(peer, request.cert)
      const reason = typeof checked === 'string' ? checked : null
      if (typeof checked !== 'string') {
        this.#admit(peer, checked.by)
      } else if (reason === 'revoked') {
        this.refusals.refuse(peer, ADMISSION_PROTOCOL, reason)
        await lp.write(encode({ ok: false, reason }), { signal })
        // the answer goes out before the connection closes
        await stream.close({ signal }).catch(() => {})
        this.#disconnect(peer)
        return
      } else {
        this.refusals.refuse(peer, ADMISSION_PROTOCOL, reason === 'not-ready' ? reason : 'bad-certificate', { detail: reason })
      }
      await lp.write(encode(reason === null ? this.#accepted() : { ok: false, reason }), { signal })
      await stream.close({ signal })
    } catch (err) {
      this.refusals.refuse(peer, ADMISSION_PROTOCOL, 'malformed', { detail: (err as Error).message })
      stream.abort(err as Error)
    }
  }
}

/** Pause or resume a stream; false when it has closed meanwhile (then there is nothing to serve). */
function setPaused (stream: Stream, paused: boolean): boolean {
  try {
    if (paused) { stream.pause() } else { stream.resume() }
    return true
  } catch {
    return false
  }
}

/**
 * The admission service: `services: { admission: clusterAdmission({ cluster, dataDir }) }`.
 * accord's other services find it under the name `admission`.
 */
export function clusterAdmission (init: AdmissionInit): (components: AdmissionComponents) => Admission {
  return (components) => new Admission(components, init)
}
