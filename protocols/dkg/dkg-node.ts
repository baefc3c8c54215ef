/*
 * A distributed key generation (and resharing) participant, I/O-free and
 * tick-driven: Pedersen's DKG with Feldman commitments as in drand/kyber's
 * share/dkg, with publicly verifiable complaints. See README.md.
 *
 *   deal          each dealer broadcasts t commitments and one sealed share
 *                 per member (a reshare: the polynomial's constant term is
 *                 the dealer's old share, checked against the old commitments)
 *   response      each participant broadcasts its complaints: 'bad-share'
 *                 (the box key, with a DLEQ proof that it is the right one,
 *                 so anyone can open the box and judge) or 'missing'
 *   justification only when someone complained 'missing': the dealer
 *                 broadcasts its deal again and the complainers' shares in
 *                 the clear, for everyone to check against the commitments
 *   done/aborted  QUAL = the dealers no complaint was upheld against; the
 *                 run aborts when QUAL is below the threshold it needs
 *
 * The node only reads its config and the messages it is given; it never
 * changes the caller's old share or key, so an aborted reshare leaves the
 * old group exactly as it was.
 */
import { mulAddUnsafe } from '@noble/curves/abstract/curve.js'
import { equalBytes } from '@noble/curves/utils.js'
import { Fr, G1, decodeG1, encodeG1, mulBaseG1, randomScalar, scalarFromBytes, scalarToBytes } from '../../identity/bls.ts'
import { commit, decodeCommitments, encodeCommitments, publicShare, verifyShare } from '../../identity/threshold/feldman.ts'
import { evaluatePolynomial, lagrangeAtZero, randomPolynomial } from '../../identity/threshold/shamir.ts'
import { openShare, sealShare } from '../../identity/threshold/share-box.ts'
import { proveEquality, verifyEquality } from '../../identity/zk/dleq.ts'
import { decodeScalarPair, encodeScalarPair } from '../../identity/zk/schnorr.ts'
import { BLS12_381_G1 } from '../../identity/zk/transcript.ts'
import { assert, unreachable } from '../common/assert.ts'
import { checkConfig, phaseTimeoutTicks, PHASE_BASE_TICKS, PHASE_TICKS_PER_PARTICIPANT } from './config.ts'
import { boxContext, complaintContext } from './keys.ts'
import { checkMessage } from './validate.ts'
import type { Complaint, DealMessage, DkgConfig, DkgDealer, DkgMember, DkgMessage, DkgOutcome, DkgPhase, DkgReady, Exclusion, JustificationMessage, ParticipantId } from './types.ts'
import type { Roles } from './validate.ts'
import type { G1Point } from '../../identity/bls.ts'

type DealFields = Omit<DealMessage, 'type' | 'session' | 'from'>

interface Deal {
  fields: DealFields
  commitments: G1Point[]
  ephemeral: G1Point
  /** Our share from this deal, when we are a member and it checked out. */
  ownShare?: bigint
  /** Our complaint when it did not. */
  ownComplaint?: Complaint
}

export type StepResult = { ok: true } | { ok: false, reason: string }

export class DkgNode {
  readonly #config: DkgConfig
  readonly #roles: Roles
  readonly #members: readonly DkgMember[]
  readonly #memberKeys: Map<ParticipantId, G1Point>
  readonly #self?: DkgMember
  readonly #dealers: readonly DkgDealer[]
  readonly #participants: ReadonlySet<ParticipantId>
  readonly #oldCommitments?: G1Point[]
  readonly #timeoutTicks: number

  /** Our dealing polynomial, kept to answer 'missing' complaints. */
  #coefficients?: bigint[]
  #phase: DkgPhase = 'deal'
  /** Ticks since the run started: phase deadlines are on this one clock (see #maybeEndPhase). */
  #ticks = 0
  #outbox: DkgMessage[] = []
  #outcome?: DkgOutcome
  #outcomeReported = false
  // Keyed by dealer or participant ids that checkMessage() has confirmed are
  // in the configuration: each holds at most PARTICIPANTS_MAX entries.
  readonly #deals = new Map<ParticipantId, Deal>()
  readonly #responses = new Map<ParticipantId, Complaint[]>()
  readonly #justifications = new Map<ParticipantId, JustificationMessage>()
  /** dealer → the members whose 'missing' complaints it must answer. */
  readonly #owed = new Map<ParticipantId, Set<ParticipantId>>()

  constructor (config: DkgConfig) {
    this.#memberKeys = checkConfig(config)
    this.#config = config
    this.#members = config.members
    this.#self = config.members.find(m => m.id === config.self)
    this.#dealers = config.reshare?.dealers ?? config.members.map(m => ({ id: m.id, index: m.index }))
    if (config.reshare !== undefined) {
      this.#oldCommitments = config.reshare.commitments.map(c => decodeG1(c) as G1Point)
    }
    this.#participants = new Set([...this.#dealers.map(d => d.id), ...this.#members.map(m => m.id)])
    this.#roles = {
      session: config.session,
      dealers: new Set(this.#dealers.map(d => d.id)),
      members: new Set(this.#members.map(m => m.id)),
      membersCount: this.#members.length,
      threshold: config.threshold
    }
    this.#timeoutTicks = phaseTimeoutTicks(this.#participants.size, config.phaseBaseTicks ?? PHASE_BASE_TICKS, config.phaseTicksPerParticipant ?? PHASE_TICKS_PER_PARTICIPANT)
    const dealer = this.#dealers.find(d => d.id === config.self)
    if (dealer !== undefined) { this.#broadcast(this.#makeDeal()) }
  }

  /** Feed one inbound message. Bad or late input is refused with a reason; it never throws. */
  step (message: DkgMessage): StepResult {
    if (this.#phase === 'done' || this.#phase === 'aborted') { return { ok: false, reason: 'the run is over' } }
    const reason = checkMessage(message, this.#roles)
    if (reason !== null) { return { ok: false, reason } }
    const result = this.#accept(message)
    if (result.ok) { this.#maybeEndPhase() }
    return result
  }

  /** One logical tick: ends the current phase when its timeout is reached. */
  tick (): void {
    if (this.#phase === 'done' || this.#phase === 'aborted') { return }
    this.#ticks++
    this.#maybeEndPhase()
  }

  hasReady (): boolean {
    return this.#outbox.length > 0 || (this.#outcome !== undefined && !this.#outcomeReported)
  }

  /** Messages to broadcast, and the outcome once the run has ended. */
  ready (): DkgReady {
    const ready: DkgReady = { messages: this.#outbox }
    this.#outbox = []
    if (this.#outcome !== undefined && !this.#outcomeReported) {
      ready.outcome = this.#outcome
      this.#outcomeReported = true
    }
    return ready
  }

  status (): { phase: DkgPhase, ticks: number, phaseTimeoutTicks: number, deals: number, responses: number, justifications: number } {
    return { phase: this.#phase, ticks: this.#ticks, phaseTimeoutTicks: this.#timeoutTicks, deals: this.#deals.size, responses: this.#responses.size, justifications: this.#justifications.size }
  }

  #broadcast (message: DkgMessage): void {
    this.#outbox.push(message)
    const result = this.#accept(message)
    assert(result.ok, `our own ${message.type} was refused`)
  }

  #makeDeal (): DealMessage {
    const { randomBytes, session, self } = this.#config
    const secret = this.#config.reshare !== undefined ? this.#config.oldShare as bigint : randomScalar(randomBytes)
    const coefficients = randomPolynomial(secret, this.#config.threshold, randomBytes)
    this.#coefficients = coefficients
    const r = randomScalar(randomBytes)
    const ephemeral = mulBaseG1(r)
    const boxes = this.#members.map(m => sealShare(r, ephemeral, this.#memberKeys.get(m.id) as G1Point, evaluatePolynomial(coefficients, BigInt(m.index)), boxContext(session, self, m.id)))
    return { type: 'deal', session, from: self, commitments: encodeCommitments(commit(coefficients)), ephemeral: encodeG1(ephemeral), boxes }
  }

  #accept (message: DkgMessage): StepResult {
    switch (message.type) {
      case 'deal': {
        if (this.#phase !== 'deal') { return { ok: false, reason: 'late deal' } }
        if (this.#deals.has(message.from)) { return { ok: false, reason: 'duplicate deal' } }
        const deal = this.#openDeal(message.from, message)
        if (typeof deal === 'string') { return { ok: false, reason: deal } }
        this.#deals.set(message.from, deal)
        return { ok: true }
      }
      case 'response':
        // A faster participant may respond while we are still collecting deals.
        if (this.#phase !== 'deal' && this.#phase !== 'response') { return { ok: false, reason: 'late response' } }
        if (this.#responses.has(message.from)) { return { ok: false, reason: 'duplicate response' } }
        this.#responses.set(message.from, message.complaints)
        return { ok: true }
      case 'justification':
        if (this.#justifications.has(message.from)) { return { ok: false, reason: 'duplicate justification' } }
        this.#justifications.set(message.from, message)
        return { ok: true }
      default:
        return unreachable(message)
    }
  }

  /** Decode and check a deal's public part; open our own box. A reason when the deal is publicly invalid. */
  #openDeal (dealerId: ParticipantId, fields: DealFields): Deal | string {
    const commitments = decodeCommitments(fields.commitments, this.#config.threshold)
    if (typeof commitments === 'string') { return commitments }
    const ephemeral = decodeG1(fields.ephemeral)
    if (typeof ephemeral === 'string') { return `ephemeral key: ${ephemeral}` }
    if (this.#oldCommitments !== undefined) {
      const dealer = this.#dealers.find(d => d.id === dealerId) as DkgDealer
      if (!commitments[0].equals(publicShare(this.#oldCommitments, dealer.index))) { return 'the deal does not reshare the dealer\'s old share' }
    }
    const deal: Deal = { fields: { commitments: fields.commitments, ephemeral: fields.ephemeral, boxes: fields.boxes }, commitments, ephemeral }
    const self = this.#self
    if (self !== undefined) {
      const secret = this.#config.encryptionSecret as bigint
      const box = fields.boxes[this.#members.indexOf(self)]
      const dh = ephemeral.multiply(secret)
      const share = openShare(dh, ephemeral, this.#memberKeys.get(self.id) as G1Point, box, boxContext(this.#config.session, dealerId, self.id))
      if (typeof share !== 'string' && verifyShare(commitments, self.index, share)) {
        deal.ownShare = share
      } else {
        const proof = proveEquality(BLS12_381_G1, secret, ephemeral, complaintContext(this.#config.session, dealerId, self.id), this.#config.randomBytes)
        deal.ownComplaint = { kind: 'bad-share', dealer: dealerId, boxKey: encodeG1(dh), proof: encodeScalarPair(proof.challenge, proof.response, 32) }
      }
    }
    return deal
  }

  /**
   * A phase ends as soon as it has all it waits for, or at its deadline:
   * phase k (deal 1, response 2, justification 3) ends by k timeouts after
   * the start, on one clock for all phases. A node that moved on early still
   * waits for a slow participant until the deadline that participant works
   * to: a member that waited out the deal phase for a lost deal sends its
   * complaint at 1·T, and the others accept responses until 2·T. (Timing
   * each phase from its own start would let early nodes finish before the
   * late complaint arrives, and the nodes would disagree on QUAL.)
   */
  #maybeEndPhase (): void {
    switch (this.#phase) {
      case 'deal':
        if (this.#ticks >= this.#timeoutTicks || this.#deals.size === this.#dealers.length) { this.#endDealPhase() }
        break
      case 'response':
        if (this.#ticks >= 2 * this.#timeoutTicks || this.#responses.size === this.#participants.size) { this.#endResponsePhase() }
        break
      case 'justification':
        if (this.#ticks >= 3 * this.#timeoutTicks || [...this.#owed.keys()].every(d => this.#justifications.has(d))) { this.#finish() }
        break
      default: // done or aborted: step() and tick() do not get here
        break
    }
  }

  #endDealPhase (): void {
    this.#phase = 'response'
    const complaints: Complaint[] = []
    for (const d of this.#dealers) {
      const deal = this.#deals.get(d.id)
      if (deal === undefined) {
        complaints.push({ kind: 'missing', dealer: d.id })
      } else if (deal.ownComplaint !== undefined) {
        complaints.push(deal.ownComplaint)
      }
    }
    this.#broadcast({ type: 'response', session: this.#config.session, from: this.#config.self, complaints })
    this.#maybeEndPhase()
  }

  #endResponsePhase (): void {
    for (const [from, complaints] of this.#responses) {
      for (const c of complaints) {
        if (c.kind !== 'missing') { continue }
        const owed = this.#owed.get(c.dealer) ?? new Set()
        owed.add(from)
        this.#owed.set(c.dealer, owed)
      }
    }
    if (this.#owed.size === 0) { this.#finish(); return }
    this.#phase = 'justification'
    const mine = this.#owed.get(this.#config.self)
    if (mine !== undefined) {
      const deal = this.#deals.get(this.#config.self) as Deal
      const shares = [...mine].filter(id => this.#roles.members.has(id)).map(id => ({ member: id, share: scalarToBytes(this.#shareFor(id)) }))
      this.#broadcast({ type: 'justification', session: this.#config.session, from: this.#config.self, deal: deal.fields, shares })
    }
    this.#maybeEndPhase()
  }

  /** The share our own deal gave `memberId` (revealed only when it says it never got our deal). */
  #shareFor (memberId: ParticipantId): bigint {
    const member = this.#members.find(m => m.id === memberId) as DkgMember
    return evaluatePolynomial(this.#coefficients as bigint[], BigInt(member.index))
  }

  #finish (): void {
    const excluded: Exclusion[] = []
    const qualified: Array<{ dealer: DkgDealer, deal: Deal }> = []
    for (const dealer of this.#dealers) {
      const judged = this.#judge(dealer)
      if (typeof judged === 'string') {
        excluded.push({ dealer: dealer.id, reason: judged })
      } else {
        qualified.push({ dealer, deal: judged })
      }
    }
    const needed = this.#config.reshare?.threshold ?? this.#config.threshold
    if (qualified.length < needed) {
      this.#end({ status: 'aborted', phase: this.#phase, reason: `${qualified.length} qualified dealers, ${needed} needed`, excluded })
      return
    }

    // Fresh: the group polynomial is the sum of the dealers'. Reshare: their
    // Lagrange combination at the old indices, whose constant term is the
    // old secret (each dealer's constant term is its old share).
    const weights = this.#oldCommitments !== undefined ? lagrangeAtZero(qualified.map(q => q.dealer.index)) : qualified.map(() => 1n)
    // (a fresh DKG's weights are all 1: a plain sum, no multi-scalar multiplication)
    const commitments = Array.from({ length: this.#config.threshold }, (_, k) => this.#oldCommitments !== undefined
      ? mulAddUnsafe(G1, qualified.map(q => q.deal.commitments[k]), weights)
      : qualified.reduce((sum, q) => sum.add(q.deal.commitments[k]), G1.ZERO))
    if (this.#oldCommitments !== undefined) {
      assert(commitments[0].equals(this.#oldCommitments[0]), 'a reshare changed the group key')
    }

    let share: { index: number, value: bigint } | null = null
    const shareMissing: ParticipantId[] = []
    const self = this.#self
    if (self !== undefined) {
      let value = 0n
      qualified.forEach((q, k) => {
        const s = q.deal.ownShare ?? this.#revealedShare(q.dealer.id, self)
        if (s === undefined) {
          shareMissing.push(q.dealer.id)
        } else {
          value = Fr.add(value, Fr.mul(weights[k], s))
        }
      })
      if (shareMissing.length === 0) {
        assert(verifyShare(commitments, self.index, value), 'our combined share does not match the group commitments')
        share = { index: self.index, value }
      }
    }
    this.#end({ status: 'done', groupKey: encodeG1(commitments[0]), commitments: encodeCommitments(commitments), qualified: qualified.map(q => q.dealer.id), excluded, share, shareMissing })
  }

  #end (outcome: DkgOutcome): void {
    this.#phase = outcome.status
    this.#outcome = outcome
  }

  /** The dealer's deal if no complaint against it is upheld, else why it is excluded. */
  #judge (dealer: DkgDealer): Deal | string {
    const justification = this.#justifications.get(dealer.id)
    let deal = this.#deals.get(dealer.id)
    if (justification !== undefined) {
      const fields = justification.deal
      if (deal !== undefined && !sameDeal(deal.fields, fields)) { return 'its justification repeats a different deal' }
      if (deal === undefined) {
        const opened = this.#openDeal(dealer.id, fields)
        if (typeof opened === 'string') { return `its justified deal is invalid: ${opened}` }
        deal = opened
      }
    }
    if (deal === undefined) { return 'no deal' }

    const owed = this.#owed.get(dealer.id)
    if (owed !== undefined) {
      if (justification === undefined) { return 'no justification' }
      for (const memberId of owed) {
        const member = this.#members.find(m => m.id === memberId)
        if (member === undefined) { continue } // a dealer that is not a member needs the deal only
        const revealed = this.#revealedShare(dealer.id, member, deal)
        if (revealed === undefined) { return `no valid share for ${memberId} in its justification` }
      }
    }

    for (const [from, complaints] of this.#responses) {
      for (const c of complaints) {
        if (c.kind !== 'bad-share' || c.dealer !== dealer.id) { continue }
        if (this.#upheld(c, dealer.id, from, deal)) { return `${from} proved its share bad` }
      }
    }
    return deal
  }

  /** A share revealed in the dealer's justification for `member`, if it checks against the deal's commitments. */
  #revealedShare (dealerId: ParticipantId, member: DkgMember, deal = this.#deals.get(dealerId)): bigint | undefined {
    const justification = this.#justifications.get(dealerId)
    if (justification === undefined || deal === undefined) { return undefined }
    const entry = justification.shares.find(s => s.member === member.id)
    if (entry === undefined) { return undefined }
    const share = scalarFromBytes(entry.share)
    return typeof share !== 'string' && verifyShare(deal.commitments, member.index, share) ? share : undefined
  }

  /**
   * A bad-share complaint stands when its box key is proven (DLEQ: the same
   * secret behind the member's registered key and behind key = sk·R) and the
   * box it opens holds no share matching the commitments. A complaint whose
   * proof fails is dismissed: the complainer is lying.
   */
  #upheld (complaint: Extract<Complaint, { kind: 'bad-share' }>, dealerId: ParticipantId, memberId: ParticipantId, deal: Deal): boolean {
    const member = this.#members.find(m => m.id === memberId)
    const dh = decodeG1(complaint.boxKey)
    const proof = decodeScalarPair(complaint.proof, 32, Fr.ORDER)
    if (member === undefined || typeof dh === 'string' || typeof proof === 'string') { return false }
    const memberKey = this.#memberKeys.get(memberId) as G1Point
    if (!verifyEquality(BLS12_381_G1, memberKey, deal.ephemeral, dh, complaintContext(this.#config.session, dealerId, memberId), { challenge: proof[0], response: proof[1] })) { return false }
    const box = deal.fields.boxes[this.#members.indexOf(member)]
    const share = openShare(dh, deal.ephemeral, memberKey, box, boxContext(this.#config.session, dealerId, memberId))
    return typeof share === 'string' || !verifyShare(deal.commitments, member.index, share)
  }
}

function sameDeal (a: DealFields, b: DealFields): boolean {
  return equalBytes(a.ephemeral, b.ephemeral) &&
    a.commitments.length === b.commitments.length && a.commitments.every((c, i) => equalBytes(c, b.commitments[i])) &&
    a.boxes.length === b.boxes.length && a.boxes.every((x, i) => equalBytes(x, b.boxes[i]))
}
