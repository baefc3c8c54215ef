/*
 * Distributed key generation over libp2p: `services: { dkg: dkg({ dataDir }) }`,
 * beside clusterAdmission as `admission` and swimMembership as `membership`.
 * It drives protocols/dkg's core among a group of peers, stores the result
 * in the keystore, and runs threshold signing rounds with it.
 *
 * A session, on `/accord/dkg/1.1.0` (admitted peers only; datagrams of one
 * signed envelope each, see envelope.ts):
 *
 *   1. start: the initiator (a member) sends every member the session id,
 *      the members and the threshold.
 *   2. key: each member draws a DKG encryption key for this session and
 *      sends it, with its proof of possession, signed, to the initiator.
 *   3. begin: once every member answered, or after `keyWaitMs`, the
 *      initiator sends the answering members the signed keys it holds
 *      (it cannot substitute one: each is signed by its member). Fewer
 *      than the threshold: the session aborts, saying who did not answer.
 *      Indices are fixed by the requested members sorted by peer id, so
 *      they do not depend on who answered.
 *   4. the core runs among the answering members, ticked every `tickMs`;
 *      each core message goes signed to every participant. When its deal
 *      phase ends, each member sends the others `seen`: the digest and
 *      dealer's signature of every deal it holds (envelope.ts). A dealer
 *      that sent two different deals is caught by every member that holds
 *      one and hears of the other: the two signed digests are proof, the
 *      session aborts there and names the dealer.
 *   5. confirm: each new member sends every participant its partial
 *      signature of the key's confirmation, made with its new share; a
 *      node goes on once T of them check out (confirmation.ts).
 *   6. done: the share, group key and public shares go into the keystore
 *      (store.ts); aborted: the keystore is left as it was and the reason
 *      is reported.
 *
 * A reshare (`reshare()`) is the same session with the current group as
 * dealers: its start also carries the old group (members, threshold,
 * commitments), which each old member checks against the group it stores;
 * every old and new member sends a key statement (only new members'
 * carry an encryption key), the initiator begins once enough of both
 * answered (the old threshold of old members, the new threshold of new
 * ones), and the core runs with the answering old members dealing their
 * shares. On done (and confirmed), each new member checks that the new
 * group key is the old one and stores its new share; an old member that
 * is not a new member deletes its share and group file (a retired share is only a
 * liability: t of them still make the old secret). On abort nothing is
 * stored or deleted: the old group keeps signing.
 *
 * Signing rounds with the stored group are ./signing.ts's, including the
 * domains no round signs: membership certificates (a member asked gives
 * its partial only under admission's policy, Admission.mayCertify), PBFT
 * checkpoints and key confirmations. Each replica signs its own PBFT
 * checkpoint's partial locally (signCheckpointPartial, that domain only)
 * and the partials travel in the CHECKPOINT messages, so a group signature
 * of a checkpoint exists only where a quorum of replicas reached that
 * state; a generic round would let one member have the honest members sign
 * a stable checkpoint nobody reached.
 */
import { randomBytes } from 'node:crypto'
import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { encode } from 'cborg'
import { Registry } from 'prom-client'
import { decodeG1, publicKeyOf, randomScalar, scalarFromBytes, scalarToBytes } from '../../identity/bls.ts'
import { equalBytes } from '../../identity/ed25519.ts'
import { isGroupCertificateMessage } from '../../identity/group-certificate.ts'
import { decodeCommitments, encodeCommitments } from '../../identity/threshold/feldman.ts'
import { partialSign, ThresholdPublicKey } from '../../identity/threshold/tbls.ts'
import { unreachable } from '../../protocols/common/assert.ts'
import { decodeDkgMessage, DkgNode, EncryptionKeyChecks, encodeDkgMessage, encryptionKeyProof, phaseTimeoutTicks } from '../../protocols/dkg/index.ts'
import { isCheckpointGroupMessage } from '../../protocols/pbft/group.ts'
import { DatagramChannel } from '../datagram.ts'
import { hostFromComponents } from '../host.ts'
import { silentLogger } from '../logger.ts'
import { MessageApprovals, SIGN_POLICIES } from './approvals.ts'
import { confirmationMessage, KeyConfirmation } from './confirmation.ts'
import { DKG_BATCH_MAX, DKG_CAPABILITY, DKG_FRAME_BYTES_MAX, DKG_HISTORY_MAX, DKG_MEMBERS_MAX, DKG_PENDING_PER_PEER_MAX, DKG_PROTOCOL, DKG_PROTOCOL_UNBATCHED, DKG_SESSION_BYTES, DKG_SESSIONS_MAX } from './constants.ts'
import { checkEnvelope, checkSignature, digestOf, envelopeBody, envelopeSigner } from './envelope.ts'
import { DkgError } from './errors.ts'
import { dkgMetrics } from './metrics.ts'
import { reservedDomain, SigningRounds } from './signing.ts'
import { dropGroup, loadGroup, saveGroup, shareRecord, thresholdKeyOf } from './store.ts'
import { DkgSender } from './transport.ts'
import type { SignPolicy } from './approvals.ts'
import type { Envelope, EnvelopeKind } from './envelope.ts'
import type { DkgMetrics } from './metrics.ts'
import type { DkgSignResult } from './signing.ts'
import type { DkgGroup, StoredGroup } from './store.ts'
import type { G1Point } from '../../identity/bls.ts'
import type { PartialSignature } from '../../identity/threshold/tbls.ts'
import type { DkgDealer, DkgMember, DkgOutcome, Exclusion } from '../../protocols/dkg/index.ts'
import type { Admission, GroupSigner } from '../admission/admission.ts'
import type { AccordHost, HostComponents } from '../host.ts'
import type { MembershipService } from '../membership/service.ts'
import type { AbortOptions, PrivateKey, Startable } from '@libp2p/interface'
import type { Logger } from 'pino'

export { DkgError }
export type { DkgSignResult }

export interface DkgSettings {
  /**
   * The core's clock: one tick this often. Phase k ends at the latest
   * k·(20 + 2n) ticks after the start (5.2 s a phase at n = 16), and as
   * soon as it has every message it waits for, so the tick bounds only
   * the wait for a silent member.
   */
  tickMs: number
  /** How long the initiator waits for the members' keys before it begins with those that answered. */
  keyWaitMs: number
  /** How long a signing round waits for partials. */
  signTimeoutMs: number
  /** A send (dial, open, write) or receive that takes longer is abandoned. */
  sendTimeoutMs: number
  /** Sends in flight at once; beyond, a message is dropped and counted. */
  sendsInFlightMax: number
  /** Tries of one send, the first included (a DKG sends each message once). */
  sendAttempts: number
  /** The pause before a send's second try, doubled before each further one. */
  sendRetryPauseMs: number
}

export const DKG_SETTINGS_DEFAULTS: Readonly<DkgSettings> = {
  tickMs: 100,
  keyWaitMs: 5_000,
  signTimeoutMs: 5_000,
  sendTimeoutMs: 5_000,
  sendsInFlightMax: 1024,
  sendAttempts: 4,
  sendRetryPauseMs: 250
}

export interface DkgInit {
  /** The node's data dir: its keystore (identity.key) and dkg-group.json. */
  dataDir: string
  /** The keystore's passphrase, if it is sealed. */
  passphrase?: string
  /** Which messages this node gives its partial to when a member asks (./approvals.ts): 'open' (default) or 'approve'. */
  signPolicy?: SignPolicy
  settings?: Partial<DkgSettings>
  registry?: Registry
  log?: Logger
}

export interface DkgComponents extends HostComponents {
  privateKey: PrivateKey
  admission: Admission
  membership: MembershipService
}

export type DkgSessionState = 'keys' | 'running' | 'done' | 'aborted'

export interface DkgSessionView {
  session: string
  /** A fresh DKG, or a reshare of the current group (same group key). */
  kind: 'dkg' | 'reshare'
  initiator: string
  /** The requested members, sorted: member i has index i + 1. */
  members: string[]
  threshold: number
  state: DkgSessionState
  /** The members that took part (answered with a key); in a reshare, old members included. */
  participants: string[]
  /** A reshare: the old group's members and threshold. */
  old?: { members: string[], threshold: number }
  /** A reshare, at an old member that is not a new member: its old share was deleted. */
  retired?: boolean
  reason?: string
  groupKey?: string
  index?: number
  excluded: Exclusion[]
  /** Dealers caught sending two different signed deals. */
  equivocations: string[]
  durationMs?: number
  /**
   * When each step began, in ms after the start on this node: `keys` (the
   * start; waiting for the members' key statements), then the core's
   * phases as this node entered them (`deal`, `response`,
   * `justification`, `done` or `aborted`), `confirm` (waiting for T
   * members' confirmations of the new key: ./confirmation.ts), then
   * `stored` (the keystore written) or `ended` (aborted).
   */
  phaseMs: Record<string, number>
}

export interface DkgRunOptions extends AbortOptions {
  members: string[]
  threshold: number
  /** Hex, 1..64 bytes; default 16 random bytes. */
  sessionId?: string
}

export interface DkgKeysSummary {
  groupKey: string
  threshold: number
  n: number
  index: number
  session: string
  members: string[]
}

interface Datagram { type: EnvelopeKind, from: string, to: string, env: Envelope }

interface Session {
  id: Uint8Array
  hex: string
  initiator: string
  /** The new group's members, sorted. */
  members: string[]
  threshold: number
  /** A reshare: the group being reshared (its members deal). */
  old?: DkgGroup
  /** A reshare: the peer id each old member holds now, by share index (the old group names them as the DKG found them: #rosterOf). */
  oldRoster?: string[]
  /** Every peer the session involves: members, and old members of a reshare. */
  everyone: string[]
  retired?: boolean
  state: DkgSessionState
  encryptionSecret: bigint
  /**
   * The members' proofs of possession verified so far in this session: the
   * initiator checks each key statement as it arrives, every node checks
   * them again in the begin, and the core checks its members' keys; each
   * proof costs a scalar multiplication, so it is verified once.
   */
  keyChecks: EncryptionKeyChecks
  /** The initiator's: the members' key statements. */
  keys: Map<string, Envelope>
  participants: string[]
  core?: DkgNode
  pending: Map<string, Envelope[]>
  /** Each dealer's signed deal, as first received. */
  deals: Map<string, Envelope>
  /** Proof of each equivocation: the dealer's signatures of two different deal digests. */
  equivocations: Array<{ dealer: string, first: SignedDigest, second: SignedDigest }>
  deadlineMs: number
  startedAtMs: number
  /** When each step began (see DkgSessionView.phaseMs), in order. */
  phases: Array<[string, number]>
  endedAtMs?: number
  reason?: string
  excluded: Exclusion[]
  groupKey?: string
  index?: number
  /** Once the core is done: the key's confirmation, and what follows it (store `stored`, or retire the old share when null). */
  confirming?: { check: KeyConfirmation, stored: StoredGroup | null, settled: boolean }
  /** Confirmation partials that came before this node's core was done, by index (one per new member at most). */
  earlyConfirms: Map<number, PartialSignature>
  done: Array<(view: DkgSessionView) => void>
}

interface SignedDigest { digest: Uint8Array, sig: Uint8Array }

export class DkgService implements Startable, GroupSigner {
  readonly settings: DkgSettings
  readonly #components: DkgComponents
  readonly #host: AccordHost
  readonly #init: DkgInit
  readonly #log: Logger
  readonly #self: string
  readonly #sign: (kind: EnvelopeKind, body: Uint8Array) => Envelope
  readonly #sessions = new Map<string, Session>()
  readonly #signing: SigningRounds
  /** This node's operator's approvals of messages to sign (under the 'approve' policy). */
  readonly #approvals = new MessageApprovals()
  /** Which messages outside the reserved domains this node gives its partial to (./approvals.ts). */
  readonly signPolicy: SignPolicy
  readonly #metrics: DkgMetrics
  #channels: Array<DatagramChannel<Datagram>> = []
  #sender: DkgSender | undefined
  #timer: ReturnType<typeof setInterval> | undefined
  #group: StoredGroup | null = null
  /** The public key of #group, built once per group (its public shares are cached in it). */
  #groupKey: { stored: StoredGroup, key: ThresholdPublicKey } | null = null
  readonly #groupListeners = new Set<() => void>()
  #saving: Promise<void> = Promise.resolve()

  readonly [Symbol.toStringTag] = DKG_CAPABILITY
  readonly [serviceCapabilities]: string[] = [DKG_CAPABILITY]
  readonly [serviceDependencies]: string[] = ['@accord/admission', '@accord/membership']

  constructor (components: DkgComponents, init: DkgInit) {
    this.#components = components
    this.#host = hostFromComponents(components)
    this.#init = init
    this.#log = init.log ?? silentLogger()
    this.settings = { ...DKG_SETTINGS_DEFAULTS, ...init.settings }
    this.signPolicy = init.signPolicy ?? 'open'
    if (!SIGN_POLICIES.includes(this.signPolicy)) { throw new RangeError(`signPolicy is one of ${SIGN_POLICIES.join(', ')}`) }
    this.#self = components.peerId.toString()
    this.#sign = envelopeSigner(components.privateKey, this.#self)
    this.#metrics = dkgMetrics(init.registry ?? new Registry(), () => [...this.#sessions.values()].filter(s => !finished(s)).length)
    this.#signing = new SigningRounds({
      self: this.#self,
      timeoutMs: this.settings.signTimeoutMs,
      group: () => this.#group == null ? null : { stored: this.#group, key: this.#thresholdKey(this.#group), roster: this.#rosterOf(this.#group.group) },
      share: () => this.share(),
      sign: this.#sign,
      send: (to, env) => { this.#send(to, env) },
      isRevoked: (peer) => this.#components.admission.isRevoked(peer),
      mayCertify: (message, requester) => this.#components.admission.mayCertify(message, requester),
      policy: this.signPolicy,
      approvals: this.#approvals,
      onBadPartial: () => { this.#metrics.badPartials.inc() }
    })
  }

  async start (): Promise<void> {
    this.#group = await loadGroup(this.#init.dataDir, this.#init.passphrase)
    if (this.#group !== null) { this.#groupChanged() }
    // what peers send: batches on DKG_PROTOCOL, single datagrams from nodes of before batching on DKG_PROTOCOL_UNBATCHED
    this.#channels = [DKG_PROTOCOL, DKG_PROTOCOL_UNBATCHED].map(protocol => new DatagramChannel<Datagram>({
      host: this.#host,
      admission: this.#components.admission,
      protocol,
      frameBytesMax: DKG_FRAME_BYTES_MAX,
      sendsInFlightMax: this.settings.sendsInFlightMax,
      timeoutMs: this.settings.sendTimeoutMs,
      streamsMax: 256,
      ...(protocol === DKG_PROTOCOL ? { batchMax: DKG_BATCH_MAX } : {}),
      counters: this.#metrics,
      deliver: (message, peer) => this.deliver(message, peer),
      addressesOf: (id) => this.#components.membership.addressesOf(id),
      log: this.#log
    }))
    for (const channel of this.#channels) { await channel.start() }
    this.#sender = new DkgSender({
      host: this.#host,
      protocol: DKG_PROTOCOL,
      unbatchedProtocol: DKG_PROTOCOL_UNBATCHED,
      counters: this.#metrics,
      sendsInFlightMax: this.settings.sendsInFlightMax,
      timeoutMs: this.settings.sendTimeoutMs,
      attempts: this.settings.sendAttempts,
      retryPauseMs: this.settings.sendRetryPauseMs,
      batchMax: DKG_BATCH_MAX,
      frameBytesMax: DKG_FRAME_BYTES_MAX,
      addressesOf: (id) => this.#components.membership.addressesOf(id),
      log: this.#log
    })
    this.#timer = setInterval(() => { this.#tick() }, this.settings.tickMs)
    this.#components.admission.setGroupSigner(this)
  }

  async stop (): Promise<void> {
    clearInterval(this.#timer)
    this.#components.admission.setGroupSigner(null)
    for (const session of this.#sessions.values()) {
      if (!finished(session)) { this.#abort(session, 'the node stopped') }
    }
    this.#signing.finishAll()
    this.#sender?.stop()
    for (const channel of this.#channels) { await channel.stop() }
    await this.#saving
  }

  /** The stored group this node holds a share of, or null. */
  summary (): DkgKeysSummary | null {
    const stored = this.#group
    if (stored == null) { return null }
    return {
      groupKey: stored.group.commitments[0],
      threshold: stored.group.threshold,
      n: stored.group.members.length,
      index: stored.record.index,
      session: stored.group.session,
      members: this.#rosterOf(stored.group)
    }
  }

  /** Sessions running, then the last finished ones. */
  sessions (): DkgSessionView[] {
    return [...this.#sessions.values()].map(s => view(s))
  }

  /** The group as admission needs it: its key, threshold and members (GroupSigner). */
  groupInfo (): { groupKey: Uint8Array, threshold: number, members: string[] } | null {
    const stored = this.#group
    if (stored == null) { return null }
    return { groupKey: stored.record.groupPublicKey, threshold: stored.group.threshold, members: this.#rosterOf(stored.group) }
  }

  /**
   * The peer id each member of `group` holds now, in share order. The
   * group names its members by the peer ids they had when the DKG ran; a
   * member whose node key was rotated since (`accord keys rotate`) is
   * known by the peer id its hand-over names once admission accepted it,
   * and this node by its own share's index. Signing rounds and reshares go
   * by this roster, so a rotated member keeps its share and its say; the
   * next reshare writes the new peer ids into the group.
   */
  #rosterOf (group: DkgGroup): string[] {
    const stored = this.#group
    const ownIndex = stored != null && (stored.group === group || sameGroup(stored.group, group)) ? stored.record.index : 0
    const admission = this.#components.admission
    return group.members.map((member, i) => {
      if (i + 1 === ownIndex) { return this.#self }
      // each hop is an accepted hand-over, and a retired id never becomes current again: at most that many hops
      let current = member
      for (let hops = 0; hops <= admission.handoversAccepted; hops++) {
        const next = admission.successorOf(current)
        if (next === undefined) { break }
        current = next
      }
      return current
    })
  }

  /**
   * The group's signature of a membership certificate (GroupSigner): a
   * signing round in which every member, this one included, gives its
   * partial only when admission's policy allows it. Throws DkgError.
   */
  async signGroupCertificate (message: Uint8Array, options: AbortOptions = {}): Promise<Uint8Array> {
    if (!(message instanceof Uint8Array) || !isGroupCertificateMessage(message)) { throw new DkgError('bad-message', 'not a membership certificate') }
    const ownPartial = this.#components.admission.mayCertify(message, this.#self) === null
    const result = await this.#signing.run(message, ownPartial, options)
    return Uint8Array.from(Buffer.from(result.signature, 'hex'))
  }

  /**
   * The group as PBFT's compact checkpoint certificates need it
   * (CheckpointSigner, node/pbft/threshold-group.ts): its public key
   * (public shares included) and members in share order (member i holds
   * share i + 1); null when this node holds no share.
   */
  checkpointGroup (): { key: ThresholdPublicKey, members: readonly string[] } | null {
    const stored = this.#group
    if (stored == null) { return null }
    // the members as the DKG named them, not the roster: PBFT's replicas are named by those peer ids until it is reconfigured
    return { key: this.#thresholdKey(stored), members: stored.group.members }
  }

  /** The stored group's public key, built once per group (signing rounds and checkpoints share it). */
  #thresholdKey (stored: StoredGroup): ThresholdPublicKey {
    if (this.#groupKey?.stored !== stored) { this.#groupKey = { stored, key: thresholdKeyOf(stored) } }
    return this.#groupKey.key
  }

  /**
   * This node's partial signature of a PBFT checkpoint payload
   * (checkpointGroupPayload), signed locally with its share; null when it
   * holds none. Signs under the checkpoint domain only: nothing else can be
   * had from it. Throws DkgError('bad-message') on anything else.
   */
  signCheckpointPartial (payload: Uint8Array): Uint8Array | null {
    if (!(payload instanceof Uint8Array) || !isCheckpointGroupMessage(payload)) { throw new DkgError('bad-message', 'not a PBFT checkpoint payload') }
    const share = this.share()
    return share === null ? null : partialSign(share, payload).signature
  }

  /** Calls `listener` whenever the stored group changes (a DKG or reshare done, a share retired); returns the unsubscribe. */
  onGroupChange (listener: () => void): () => void {
    this.#groupListeners.add(listener)
    return () => { this.#groupListeners.delete(listener) }
  }

  #groupChanged (): void {
    for (const listener of this.#groupListeners) {
      try {
        listener()
      } catch (err) {
        this.#log.warn({ err }, 'dkg: a group change listener failed')
      }
    }
  }

  /** This node's share as a tbls share, or null (for apps that sign themselves). */
  share (): { index: number, value: bigint } | null {
    const record = this.#group?.record
    if (record == null) { return null }
    return { index: record.index, value: scalarFromBytes(record.share) as bigint }
  }

  /**
   * Run a DKG among `members` (peer ids, this node among them) with
   * threshold `threshold`; resolves when it is done or aborted (an abort is
   * a result, not an error). Throws DkgError on a request that cannot run.
   */
  async run (options: DkgRunOptions): Promise<DkgSessionView> {
    const members = checkMembers(options.members, options.threshold)
    if (!members.includes(this.#self)) { throw new DkgError('not-a-member', 'this node must be one of the members (it deals too)') }
    return this.#launch(members, options)
  }

  /**
   * Reshare the stored group to `members` with threshold `threshold`,
   * keeping the group key: this node must hold a share of it. Resolves
   * when it is done or aborted, like run().
   */
  async reshare (options: DkgRunOptions): Promise<DkgSessionView> {
    const members = checkMembers(options.members, options.threshold)
    const old = this.#group?.group
    if (old == null) { throw new DkgError('no-key', 'this node holds no DKG key to reshare: run a DKG first') }
    return this.#launch(members, options, old)
  }

  async #launch (members: string[], options: DkgRunOptions, old?: DkgGroup): Promise<DkgSessionView> {
    let id: Uint8Array
    if (options.sessionId === undefined) {
      id = random(DKG_SESSION_BYTES)
    } else {
      if (typeof options.sessionId !== 'string' || !/^([0-9a-f]{2}){1,64}$/.test(options.sessionId)) { throw new DkgError('bad-session', 'sessionId is 1..64 bytes in lower-case hex') }
      id = Uint8Array.from(Buffer.from(options.sessionId, 'hex'))
    }
    const session = this.#open(id, this.#self, members, options.threshold, old)
    const result = new Promise<DkgSessionView>(resolve => { session.done.push(resolve) })
    const start = this.#sign('start', encode({ session: id, members, threshold: options.threshold, ...(old !== undefined ? { old: encodeOld(old) } : {}) }))
    for (const peer of session.everyone) {
      if (peer !== this.#self) { this.#send(peer, start) }
    }
    this.#sendKey(session)
    const onAbort = (): void => { this.#abort(session, 'cancelled by the caller') }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      return await result
    } finally {
      options.signal?.removeEventListener('abort', onAbort)
    }
  }

  /**
   * This node's operator approves `message` for ttlMs: under the 'approve'
   * policy, it gives its partial to a member's request to sign it until
   * then. Throws RangeError on a bad lifetime or when too many are held.
   */
  approveMessage (message: Uint8Array, ttlMs: number): { digest: string, expiresAtMs: number } {
    return this.#approvals.approve(message, ttlMs)
  }

  /**
   * A threshold signature of `message` by the stored group: asks every
   * member for its partial and combines the first t valid ones.
   */
  async thresholdSign (message: Uint8Array, options: AbortOptions = {}): Promise<DkgSignResult> {
    const reserved = message instanceof Uint8Array ? reservedDomain(message) : null
    if (reserved !== null) { throw new DkgError('reserved', reserved) }
    return this.#signing.run(message, true, options)
  }

  /**
   * One datagram from `peer` (Noise-authenticated, admitted, its `from`
   * checked by the channel): refused with a reason, never thrown.
   */
  deliver (input: unknown, peer: string): { ok: true } | { ok: false, reason: string, detail: string } {
    try {
      this.#receive(input, peer)
      return { ok: true }
    } catch (err) {
      if (err instanceof DkgError) { return { ok: false, reason: err.reason, detail: err.message } }
      throw err
    }
  }

  #send (to: string, env: Envelope): void {
    this.#sender?.send({ type: env.kind, from: this.#self, to, env })
  }

  #open (id: Uint8Array, initiator: string, members: string[], threshold: number, old?: DkgGroup): Session {
    const hex = Buffer.from(id).toString('hex')
    if (this.#sessions.get(hex) !== undefined) { throw new DkgError('duplicate-session', `session ${hex} exists already`) }
    const active = [...this.#sessions.values()].filter(s => !finished(s))
    if (active.length >= DKG_SESSIONS_MAX) { throw new DkgError('sessions-full', `${DKG_SESSIONS_MAX} DKG sessions are running already`) }
    this.#forgetOldSessions()
    const oldRoster = old === undefined ? undefined : this.#rosterOf(old)
    const now = Date.now()
    const session: Session = {
      id,
      hex,
      initiator,
      members,
      threshold,
      ...(old !== undefined ? { old } : {}),
      ...(oldRoster !== undefined ? { oldRoster } : {}),
      everyone: [...new Set([...members, ...(oldRoster ?? [])])].sort(),
      state: 'keys',
      encryptionSecret: randomScalar(random),
      keyChecks: new EncryptionKeyChecks(),
      keys: new Map(),
      participants: [],
      pending: new Map(),
      deals: new Map(),
      equivocations: [],
      // a member also waits for the initiator's begin, which comes at most keyWaitMs after the start
      deadlineMs: now + this.settings.keyWaitMs + (initiator === this.#self ? 0 : 2 * this.settings.sendTimeoutMs),
      startedAtMs: now,
      phases: [['keys', now]],
      excluded: [],
      earlyConfirms: new Map(),
      done: []
    }
    this.#sessions.set(hex, session)
    this.#metrics.sessions.inc({ outcome: 'started' })
    return session
  }

  #forgetOldSessions (): void {
    const ended = [...this.#sessions.values()].filter(finished)
    for (const old of ended.slice(0, Math.max(0, ended.length - DKG_HISTORY_MAX + 1))) { this.#sessions.delete(old.hex) }
  }

  /** Our key statement: an encryption key if we are a member of the new group, else (an old member of a reshare) just our presence. */
  #sendKey (session: Session): void {
    let env: Envelope
    if (session.members.includes(this.#self)) {
      const key = publicKeyOf(session.encryptionSecret)
      const proof = encryptionKeyProof(this.#self, session.encryptionSecret, random)
      env = this.#sign('key', encode({ session: session.id, key, proof }))
    } else {
      env = this.#sign('key', encode({ session: session.id }))
    }
    if (session.initiator === this.#self) {
      this.#onKey(session, env)
    } else {
      this.#send(session.initiator, env)
    }
  }

  #receive (input: unknown, peer: string): void {
    if (typeof input !== 'object' || input === null) { throw new DkgError('malformed', 'a datagram is a map') }
    const checked = checkEnvelope((input as { env?: unknown }).env)
    if (!checked.ok) { throw new DkgError(checked.reason, 'the envelope is malformed or its signature does not verify') }
    const env = checked.envelope
    if ((input as { type?: unknown }).type !== env.kind) { throw new DkgError('malformed', 'the datagram type is not its envelope kind') }
    // statements come from their authors (those relayed inside a begin are checked there)
    if (env.signer !== peer) { throw new DkgError('relayed', `a ${env.kind} must come from its signer`) }
    switch (env.kind) {
      case 'start': this.#onStart(env); break
      case 'key': this.#onKey(this.#sessionOf(envelopeBody(env).session), env); break
      case 'begin': this.#onBegin(this.#sessionOf(envelopeBody(env).session), env); break
      case 'msg': this.#onMessage(env); break
      case 'seen': this.#onSeen(this.#sessionOf(envelopeBody(env).session), env); break
      case 'sign': this.#signing.onRequest(env); break
      case 'partial': this.#signing.onPartial(env); break
      case 'confirm': this.#onConfirm(this.#sessionOf(envelopeBody(env).session), env); break
      default: unreachable(env.kind)
    }
  }

  #sessionOf (id: unknown): Session {
    if (!(id instanceof Uint8Array)) { throw new DkgError('malformed', 'no session id') }
    const session = this.#sessions.get(Buffer.from(id).toString('hex'))
    if (session === undefined) { throw new DkgError('unknown-session', 'no such session here') }
    return session
  }

  #onStart (env: Envelope): void {
    const { session: id, members, threshold, old: oldField } = envelopeBody(env)
    if (!(id instanceof Uint8Array) || id.byteLength < 1 || id.byteLength > 64) { throw new DkgError('malformed', 'a session id is 1..64 bytes') }
    let sorted: string[]
    try { sorted = checkMembers(members, threshold) } catch (err) { throw new DkgError('malformed', (err as Error).message) }
    if (oldField === undefined) {
      if (!sorted.includes(this.#self)) { throw new DkgError('not-a-member', 'this node is not among the members') }
      if (!sorted.includes(env.signer)) { throw new DkgError('not-a-member', 'the initiator is not among the members') }
      this.#sendKey(this.#open(id, env.signer, sorted, threshold as number))
      return
    }
    const old = decodeOld(oldField)
    // an old member deals its share of the group it stores: the old group must be that one
    if (old.members.includes(this.#self) && !sameGroup(this.#group?.group, old)) { throw new DkgError('group-mismatch', 'the reshared group is not the group this node holds a share of') }
    const oldRoster = this.#rosterOf(old)
    if (!oldRoster.includes(env.signer)) { throw new DkgError('not-a-member', 'a reshare is started by a member of the old group') }
    if (!sorted.includes(this.#self) && !oldRoster.includes(this.#self)) { throw new DkgError('not-a-member', 'this node is neither an old nor a new member') }
    this.#sendKey(this.#open(id, env.signer, sorted, threshold as number, old))
  }

  #onKey (session: Session, env: Envelope): void {
    if (session.initiator !== this.#self) { throw new DkgError('not-initiator', 'keys go to the session\'s initiator') }
    if (session.state !== 'keys') { return }
    if (!session.everyone.includes(env.signer)) { throw new DkgError('not-a-member', 'the signer is not a member of the session') }
    if (session.keys.has(env.signer)) { return }
    if (!keyStatementValid(session, env)) { throw new DkgError('bad-key', 'the encryption key or its proof does not verify') }
    session.keys.set(env.signer, env)
    if (session.keys.size === session.everyone.length) { this.#begin(session) }
  }

  #begin (session: Session): void {
    const silent = session.everyone.filter(m => !session.keys.has(m))
    const answered = session.members.filter(m => session.keys.has(m)).length
    if (answered < session.threshold) {
      this.#abort(session, `${answered} of ${session.members.length} members answered, threshold ${session.threshold}; silent: ${silent.join(', ')}`)
      return
    }
    const old = session.old
    const oldAnswered = session.oldRoster?.filter(m => session.keys.has(m)).length ?? 0
    if (old !== undefined && oldAnswered < old.threshold) {
      this.#abort(session, `${oldAnswered} of ${old.members.length} old members answered, old threshold ${old.threshold} (fewer old shares cannot reshare the key); silent: ${silent.join(', ')}`)
      return
    }
    const env = this.#sign('begin', encode({ session: session.id, keys: [...session.keys.values()] }))
    for (const member of session.keys.keys()) {
      if (member !== this.#self) { this.#send(member, env) }
    }
    this.#onBegin(session, env)
  }

  #onBegin (session: Session, env: Envelope): void {
    if (env.signer !== session.initiator) { throw new DkgError('not-initiator', 'only the initiator begins a session') }
    if (session.core !== undefined || finished(session)) { return }
    const { members, answered } = beginList(session, envelopeBody(env).keys)
    const old = session.old
    const dealers: DkgDealer[] = session.oldRoster?.flatMap((id, i) => answered.includes(id) ? [{ id, index: i + 1 }] : []) ?? []
    if (members.length < session.threshold || dealers.length < (old?.threshold ?? 0) || !answered.includes(this.#self)) {
      this.#abort(session, `begin lists ${members.length} members (threshold ${session.threshold})${old !== undefined ? ` and ${dealers.length} old members (old threshold ${old.threshold})` : ''}${answered.includes(this.#self) ? '' : ', not this node'}`)
      return
    }
    session.participants = [...answered].sort()
    try {
      session.core = this.#newCore(session, members, dealers)
    } catch (err) {
      this.#abort(session, `bad configuration: ${(err as Error).message}`)
      return
    }
    session.state = 'running'
    this.#flush(session)
    const pending = [...session.pending.values()].flat()
    session.pending.clear()
    for (const queued of pending) {
      try {
        if (queued.kind === 'seen') { this.#onSeen(session, queued) } else { this.#onMessage(queued) }
      } catch (err) { this.#refused(queued.signer, err) }
    }
  }

  /** The core of a session about to run: a dealer of a reshare deals its stored share, a member gets the session's encryption secret. */
  #newCore (session: Session, members: DkgMember[], dealers: DkgDealer[]): DkgNode {
    const old = session.old
    const oldShare = old !== undefined && dealers.some(d => d.id === this.#self) ? this.share()?.value : undefined
    return new DkgNode({
      self: this.#self,
      session: session.id,
      members,
      threshold: session.threshold,
      ...(members.some(m => m.id === this.#self) ? { encryptionSecret: session.encryptionSecret } : {}),
      ...(old !== undefined ? { reshare: { dealers, threshold: old.threshold, commitments: old.commitments.map(c => Uint8Array.from(Buffer.from(c, 'hex'))) } } : {}),
      ...(oldShare !== undefined ? { oldShare } : {}),
      randomBytes: random,
      keyChecks: session.keyChecks
    })
  }

  #onMessage (env: Envelope): void {
    const decoded = decodeDkgMessage(env.body)
    if (!decoded.ok) { throw new DkgError('malformed', decoded.error) }
    const message = decoded.message
    if (message.from !== env.signer) { throw new DkgError('spoofed-sender', 'a DKG message names its signer as sender') }
    const session = this.#sessionOf(message.session)
    if (this.#held(session, env) || session.core === undefined) { return }
    if (!session.participants.includes(env.signer)) { throw new DkgError('not-a-member', 'the sender is not a participant of the session') }
    if (message.type === 'deal') {
      const first = session.deals.get(env.signer)
      if (first !== undefined) {
        if (!equalBytes(first.body, env.body)) { this.#equivocated(session, env.signer, signedDigestOf(first), signedDigestOf(env)) }
        return
      }
      session.deals.set(env.signer, env)
    }
    const result = session.core.step(message)
    if (!result.ok) { throw new DkgError('dkg-refused', result.reason) }
    this.#flush(session)
  }

  /**
   * Whether `env` waits (the session's begin has not come yet) or is
   * dropped (the session is over); false when it can be handled now.
   */
  #held (session: Session, env: Envelope): boolean {
    if (finished(session)) { return true }
    if (session.state !== 'keys') { return false }
    if (!session.everyone.includes(env.signer)) { throw new DkgError('not-a-member', 'the sender is not a member of the session') }
    const queue = session.pending.get(env.signer) ?? []
    if (queue.length >= DKG_PENDING_PER_PEER_MAX) { throw new DkgError('queue-full', `${DKG_PENDING_PER_PEER_MAX} messages from this peer wait for the session to begin`) }
    queue.push(env)
    session.pending.set(env.signer, queue)
    return true
  }

  /** Another member's digests of the deals it holds: one that differs from ours, signed by its dealer, is proof. */
  #onSeen (session: Session, env: Envelope): void {
    if (this.#held(session, env)) { return }
    if (!session.participants.includes(env.signer)) { throw new DkgError('not-a-member', 'the sender is not a participant of the session') }
    const { deals } = envelopeBody(env)
    if (!Array.isArray(deals) || deals.length > session.participants.length) { throw new DkgError('malformed', 'seen lists at most one deal per participant') }
    for (const entry of deals as Array<Record<string, unknown>>) {
      const { dealer, digest, sig } = entry ?? {}
      if (typeof dealer !== 'string' || !(digest instanceof Uint8Array) || !(sig instanceof Uint8Array)) { throw new DkgError('malformed', 'a seen deal is {dealer, digest, sig}') }
      const held = session.deals.get(dealer)
      if (held === undefined || finished(session)) { continue }
      const ours = signedDigestOf(held)
      if (equalBytes(ours.digest, digest)) { continue }
      if (checkSignature(dealer, 'msg', digest, sig) !== 'ok') { throw new DkgError('bad-signature', `a seen deal of ${dealer} is not signed by it`) }
      this.#equivocated(session, dealer, ours, { digest, sig })
    }
  }

  #equivocated (session: Session, dealer: string, first: SignedDigest, second: SignedDigest): void {
    session.equivocations.push({ dealer, first, second })
    this.#metrics.equivocations.inc()
    this.#log.warn({ session: session.hex, dealer }, 'dkg: a dealer signed two different deals')
    this.#abort(session, `dealer ${dealer} signed two different deals`)
  }

  #flush (session: Session): void {
    const core = session.core
    if (core === undefined) { return }
    this.#markPhase(session, core.status().phase)
    while (!finished(session) && core.hasReady()) {
      const { messages, outcome } = core.ready()
      for (const message of messages) {
        const env = this.#sign('msg', encodeDkgMessage(message))
        if (message.type === 'deal') { session.deals.set(this.#self, env) }
        this.#broadcast(session, env)
        // our response ends our deal phase: tell the others which deals we hold
        if (message.type === 'response') { this.#broadcast(session, this.#seen(session)) }
      }
      if (outcome !== undefined) {
        this.#markPhase(session, outcome.status)
        this.#finish(session, outcome)
      }
    }
  }

  #markPhase (session: Session, phase: string): void {
    if (session.phases[session.phases.length - 1][0] !== phase) { session.phases.push([phase, Date.now()]) }
  }

  #broadcast (session: Session, env: Envelope): void {
    for (const p of session.participants) {
      if (p !== this.#self) { this.#send(p, env) }
    }
  }

  #seen (session: Session): Envelope {
    const deals = [...session.deals].map(([dealer, env]) => ({ dealer, ...signedDigestOf(env) }))
    return this.#sign('seen', encode({ session: session.id, deals }))
  }

  #finish (session: Session, outcome: DkgOutcome): void {
    session.excluded = outcome.excluded
    if (outcome.status === 'aborted') {
      this.#abort(session, `${outcome.reason} (in the ${outcome.phase} phase)`)
      return
    }
    // the core asserts this too; the keystore is checked here, at the point of writing, whatever the core becomes
    const oldKey = session.old?.commitments[0]
    if (oldKey !== undefined && Buffer.from(outcome.groupKey).toString('hex') !== oldKey) {
      this.#abort(session, 'the reshare made a different group key; the old share is kept')
      return
    }
    const oldOnly = session.old !== undefined && !session.members.includes(this.#self)
    if (!oldOnly && outcome.share === null) {
      this.#abort(session, `done, but this node lacks the shares of ${outcome.shareMissing.join(', ')}`)
      return
    }
    const commitments = decodeCommitments(outcome.commitments, session.threshold) as G1Point[]
    const group: DkgGroup = {
      session: session.hex,
      members: session.members,
      threshold: session.threshold,
      commitments: encodeCommitments(commitments).map(c => Buffer.from(c).toString('hex'))
    }
    const stored = oldOnly || outcome.share === null ? null : { group, record: shareRecord(group, commitments, outcome.share.index, scalarToBytes(outcome.share.value)) }
    session.core = undefined
    // the share record computed every public share already: the confirmation checks partials with those
    this.#confirm(session, new ThresholdPublicKey(commitments, session.members.length, stored?.record.publicShares), stored, outcome.share)
  }

  /**
   * The key's confirmation (./confirmation.ts): a new member sends every
   * participant its partial of the confirmation message; this node goes
   * on (#store, or #retire at an old-only member) once T partials check
   * out, and aborts, keeping the old key, if they do not come within two
   * of the core's phase timeouts.
   */
  #confirm (session: Session, key: ThresholdPublicKey, stored: StoredGroup | null, share: { index: number, value: bigint } | null): void {
    const message = confirmationMessage(session.id, key.groupKey)
    const waitMs = 2 * phaseTimeoutTicks(session.participants.length) * this.settings.tickMs
    session.confirming = { check: new KeyConfirmation(key, message, Date.now() + waitMs), stored, settled: false }
    this.#markPhase(session, 'confirm')
    if (stored !== null && share !== null) {
      const own = partialSign(share, message)
      session.confirming.check.add(own)
      this.#broadcast(session, this.#sign('confirm', encode({ session: session.id, index: own.index, signature: own.signature })))
    }
    for (const partial of session.earlyConfirms.values()) { session.confirming.check.add(partial) }
    session.earlyConfirms.clear()
    this.#confirmed(session)
  }

  /** A new member's confirmation partial (see #confirm): kept until this node's core is done, then checked. */
  #onConfirm (session: Session, env: Envelope): void {
    if (finished(session)) { return }
    const { index, signature } = envelopeBody(env)
    if (!Number.isSafeInteger(index) || (index as number) < 1 || !(signature instanceof Uint8Array) || signature.byteLength !== 96) { throw new DkgError('malformed', 'a confirmation has a share index and a 96-byte partial') }
    if (session.members[(index as number) - 1] !== env.signer || !session.participants.includes(env.signer)) { throw new DkgError('not-a-member', 'a confirmation comes from the new member of its index') }
    const partial = { index: index as number, signature }
    if (session.confirming === undefined) {
      if (!session.earlyConfirms.has(partial.index)) { session.earlyConfirms.set(partial.index, partial) }
      return
    }
    if (session.confirming.settled) { return }
    session.confirming.check.add(partial)
    this.#confirmed(session)
  }

  #confirmed (session: Session): void {
    const confirming = session.confirming
    if (confirming === undefined || confirming.settled || finished(session)) { return }
    const { confirmed, bad } = confirming.check.check()
    for (const index of bad) {
      this.#metrics.badPartials.inc()
      this.#log.warn({ session: session.hex, member: session.members[index - 1] }, 'dkg: a member\'s confirmation of the new key does not verify under its public share')
    }
    if (!confirmed) { return }
    confirming.settled = true
    if (confirming.stored === null) {
      this.#retire(session)
    } else {
      this.#store(session, confirming.stored)
    }
  }

  #store (session: Session, stored: StoredGroup): void {
    const group = stored.group
    this.#saving = this.#saving.then(async () => {
      await saveGroup(this.#init.dataDir, this.#init.passphrase, stored)
      this.#group = stored
      session.groupKey = group.commitments[0]
      session.index = stored.record.index
      this.#end(session, 'done')
      this.#groupChanged()
    }).catch(err => {
      this.#log.error({ err }, 'dkg: cannot store the new share')
      this.#abort(session, `cannot store the new share: ${(err as Error).message}`)
    })
  }

  /** A reshare done without us in the new group: our old share goes (and only if it is still the reshared group's). */
  #retire (session: Session): void {
    session.core = undefined
    this.#saving = this.#saving.then(async () => {
      if (sameGroup(this.#group?.group, session.old as DkgGroup)) {
        await dropGroup(this.#init.dataDir, this.#init.passphrase)
        this.#group = null
        this.#groupChanged()
      }
      session.retired = true
      session.groupKey = session.old?.commitments[0]
      this.#end(session, 'done')
    }).catch(err => {
      this.#log.error({ err }, 'dkg: cannot delete the retired share')
      this.#abort(session, `cannot delete the retired share: ${(err as Error).message}`)
    })
  }

  #abort (session: Session, reason: string): void {
    if (finished(session)) { return }
    session.reason = reason
    session.core = undefined
    session.pending.clear()
    this.#log.warn({ session: session.hex, reason }, 'dkg: session aborted')
    this.#end(session, 'aborted')
  }

  #end (session: Session, state: 'done' | 'aborted'): void {
    session.state = state
    session.endedAtMs = Date.now()
    session.phases.push([state === 'done' ? 'stored' : 'ended', session.endedAtMs])
    this.#metrics.sessions.inc({ outcome: state })
    const v = view(session)
    for (const resolve of session.done.splice(0)) { resolve(v) }
  }

  #tick (): void {
    const now = Date.now()
    for (const session of this.#sessions.values()) {
      if (finished(session)) { continue }
      const confirming = session.confirming
      if (session.core !== undefined) {
        session.core.tick()
        this.#flush(session)
      } else if (confirming !== undefined && !confirming.settled && now >= confirming.check.deadlineMs) {
        const { check } = confirming
        this.#abort(session, `${check.received} of the ${check.threshold} confirmations of the new key came in time${check.bad.length > 0 ? ` (bad ones from indices ${check.bad.join(', ')})` : ''}: the old key is kept`)
      } else if (session.state === 'keys' && now >= session.deadlineMs) {
        if (session.initiator === this.#self) {
          this.#begin(session)
        } else {
          this.#abort(session, `no begin from the initiator ${session.initiator}`)
        }
      }
    }
  }

  #refused (peer: string, err: unknown): void {
    if (!(err instanceof DkgError)) { throw err }
    this.#components.admission.refusals.refuse(peer, DKG_PROTOCOL, err.reason, { detail: err.message })
  }
}

/** The service's randomness (the cores get it injected). */
function random (n: number): Uint8Array {
  return new Uint8Array(randomBytes(n))
}

/** Members sorted by peer id (member i has index i + 1); throws DkgError on a bad list or threshold. */
export function checkMembers (members: unknown, threshold: unknown): string[] {
  if (!Array.isArray(members) || members.length < 1 || members.length > DKG_MEMBERS_MAX || !members.every(m => typeof m === 'string' && m.length > 0 && m.length <= 128)) {
    throw new DkgError('bad-members', `members is a list of 1..${DKG_MEMBERS_MAX} peer ids`)
  }
  const sorted = [...new Set(members as string[])].sort()
  if (sorted.length !== members.length) { throw new DkgError('bad-members', 'members lists a peer twice') }
  if (!Number.isInteger(threshold) || (threshold as number) < 1 || (threshold as number) > sorted.length) {
    throw new DkgError('bad-threshold', `threshold must be an integer in 1..${sorted.length}`)
  }
  return sorted
}

/** The DKG member a key statement makes, or null when it is not for this session or does not verify. */
function memberOf (session: Session, env: Envelope): DkgMember | null {
  let fields: Record<string, unknown>
  try { fields = envelopeBody(env) } catch { return null }
  const { session: id, key, proof } = fields
  const index = session.members.indexOf(env.signer) + 1
  if (index === 0 || !(id instanceof Uint8Array) || !equalBytes(id, session.id) || !(key instanceof Uint8Array) || !(proof instanceof Uint8Array)) { return null }
  const member: DkgMember = { id: env.signer, index, encryptionKey: key, encryptionKeyProof: proof }
  // blst decodes and checks the point (~0.07 ms; noble's G1.fromBytes takes ~3 ms)
  const decoded = decodeG1(key)
  if (typeof decoded === 'string') { return null }
  return session.keyChecks.verify(member, decoded) ? member : null
}

/** The key statements a begin relays: the new members they make (by index) and everyone who answered; throws DkgError on a bad one. */
function beginList (session: Session, keys: unknown): { members: DkgMember[], answered: string[] } {
  if (!Array.isArray(keys) || keys.length > session.everyone.length) { throw new DkgError('malformed', 'begin lists the members\' keys') }
  const members: DkgMember[] = []
  const answered: string[] = []
  for (const key of keys) {
    const checked = checkEnvelope(key)
    const statement = checked.ok && checked.envelope.kind === 'key' && session.everyone.includes(checked.envelope.signer) ? keyStatement(session, checked.envelope) : null
    if (statement === null || !checked.ok || answered.includes(checked.envelope.signer)) { throw new DkgError('bad-key', 'begin holds a key that does not verify') }
    answered.push(checked.envelope.signer)
    if (statement !== 'old-only') { members.push(statement) }
  }
  return { members: members.sort((a, b) => a.index - b.index), answered }
}

/** A key statement for the session: a member's must carry a valid encryption key; an old-only member's carries none. */
function keyStatementValid (session: Session, env: Envelope): boolean {
  return keyStatement(session, env) !== null
}

/** What a valid key statement makes: a new member, or an old member's presence ('old-only'); null when it is not valid. */
function keyStatement (session: Session, env: Envelope): DkgMember | 'old-only' | null {
  if (session.members.includes(env.signer)) { return memberOf(session, env) }
  let fields: Record<string, unknown>
  try { fields = envelopeBody(env) } catch { return null }
  return fields.session instanceof Uint8Array && equalBytes(fields.session, session.id) && fields.key === undefined ? 'old-only' : null
}

/** The old group as a start carries it (commitments as bytes). */
function encodeOld (group: DkgGroup): Record<string, unknown> {
  return { session: group.session, members: group.members, threshold: group.threshold, commitments: group.commitments.map(c => Uint8Array.from(Buffer.from(c, 'hex'))) }
}

/** The old group of a reshare's start; throws DkgError('malformed') on anything else. */
function decodeOld (value: unknown): DkgGroup {
  if (typeof value !== 'object' || value === null) { throw new DkgError('malformed', 'a reshare\'s old group is a map') }
  const { session, members, threshold, commitments } = value as Record<string, unknown>
  if (typeof session !== 'string' || !/^([0-9a-f]{2}){1,64}$/.test(session)) { throw new DkgError('malformed', 'the old group\'s session is 1..64 bytes of hex') }
  let listed: string[]
  try { listed = checkMembers(members, threshold) } catch (err) { throw new DkgError('malformed', `old group: ${(err as Error).message}`) }
  // the old members keep their indices: their order is the old group's, which checkMembers' sorting must not change
  if (!(members as string[]).every((m, i) => m === listed[i])) { throw new DkgError('malformed', 'the old group\'s members are sorted by peer id') }
  if (!Array.isArray(commitments) || commitments.length !== threshold || !commitments.every(c => c instanceof Uint8Array && c.byteLength === 48)) { throw new DkgError('malformed', 'the old group has threshold commitments of 48 bytes') }
  return { session, members: listed, threshold: threshold as number, commitments: commitments.map(c => Buffer.from(c).toString('hex')) }
}

function sameGroup (a: DkgGroup | undefined, b: DkgGroup): boolean {
  return a !== undefined && a.threshold === b.threshold && a.members.join(',') === b.members.join(',') && a.commitments.join(',') === b.commitments.join(',')
}

function signedDigestOf (env: Envelope): SignedDigest {
  return { digest: digestOf(env.body), sig: env.sig }
}

function finished (session: Session): boolean {
  return session.state === 'done' || session.state === 'aborted'
}

function view (s: Session): DkgSessionView {
  return {
    session: s.hex,
    kind: s.old !== undefined ? 'reshare' : 'dkg',
    initiator: s.initiator,
    members: s.members,
    threshold: s.threshold,
    state: s.state,
    participants: s.participants,
    ...(s.old !== undefined ? { old: { members: s.oldRoster ?? s.old.members, threshold: s.old.threshold } } : {}),
    ...(s.retired === true ? { retired: true } : {}),
    ...(s.reason !== undefined ? { reason: s.reason } : {}),
    ...(s.groupKey !== undefined ? { groupKey: s.groupKey, index: s.index } : {}),
    excluded: s.excluded,
    equivocations: s.equivocations.map(e => e.dealer),
    ...(s.endedAtMs !== undefined ? { durationMs: s.endedAtMs - s.startedAtMs } : {}),
    phaseMs: Object.fromEntries(s.phases.map(([phase, at]) => [phase, at - s.startedAtMs]))
  }
}

/** The DKG service: `services: { dkg: dkg({ dataDir }) }`, beside admission and membership. */
export function dkg (init: DkgInit): (components: DkgComponents) => DkgService {
  return (components) => new DkgService(components, init)
}
