/**
 * Messages, configuration and outcome of the DKG core. Every message is
 * broadcast to all participants (dealers and members); `from` is the
 * sender's id as the transport authenticated it.
 */
import type { EncryptionKeyChecks } from './keys.ts'
import type { RandomBytes } from '../../identity/bls.ts'

export type ParticipantId = string

/** A member of the group being made: it receives a share. */
export interface DkgMember {
  id: ParticipantId
  /** Its Shamir index in the new group, 1..n, distinct. */
  index: number
  /** Its DKG encryption key: a BLS12-381 G1 point, 48 bytes compressed. */
  encryptionKey: Uint8Array
  /** A Schnorr proof (64 bytes) that it knows the key's secret, bound to its id (see encryptionKeyProof). */
  encryptionKeyProof: Uint8Array
}

/** A dealer of a reshare: a member of the old group, by its old index. */
export interface DkgDealer {
  id: ParticipantId
  index: number
}

export interface DkgReshare {
  /** The old group's members that deal their shares. */
  dealers: DkgDealer[]
  /** The old threshold: at least this many dealers must qualify. */
  threshold: number
  /** The old group's Feldman commitments (48 bytes each; [0] is the group key). */
  commitments: Uint8Array[]
}

export interface DkgConfig {
  self: ParticipantId
  /** Unique per run (e.g. a hash of epoch and membership): binds every box, proof and message. */
  session: Uint8Array
  /** The new group. In a fresh DKG its members are also the dealers, by the same index. */
  members: DkgMember[]
  /** The new threshold t: any t members' partial signatures make a group signature. */
  threshold: number
  /** Present for a reshare: the old group deals its shares; the group key stays. */
  reshare?: DkgReshare
  /** Our share of the old group's key (reshare, when we are an old dealer). */
  oldShare?: bigint
  /** The secret of our encryption key (when we are a member). */
  encryptionSecret?: bigint
  randomBytes: RandomBytes
  /**
   * Proofs of possession the caller has verified already (the same check,
   * remembered: see EncryptionKeyChecks); the members' proofs are verified
   * through it, so none is verified twice on this node.
   */
  keyChecks?: EncryptionKeyChecks
  /** Phase timeout = phaseBaseTicks + phaseTicksPerParticipant · (number of distinct participants). */
  phaseBaseTicks?: number
  phaseTicksPerParticipant?: number
}

export interface DealMessage {
  type: 'deal'
  session: Uint8Array
  from: ParticipantId
  /** t Feldman commitments, 48 bytes each. */
  commitments: Uint8Array[]
  /** R = r·G1, 48 bytes. */
  ephemeral: Uint8Array
  /** One sealed share per member, in members order. */
  boxes: Uint8Array[]
}

export type Complaint =
  /** Our box from `dealer` held no valid share: here is its key sk·R, with a DLEQ proof (64 bytes). */
  | { kind: 'bad-share', dealer: ParticipantId, boxKey: Uint8Array, proof: Uint8Array }
  /** No deal from `dealer` reached us by the end of the deal phase. */
  | { kind: 'missing', dealer: ParticipantId }

export interface ResponseMessage {
  type: 'response'
  session: Uint8Array
  from: ParticipantId
  complaints: Complaint[]
}

/** A dealer answers 'missing' complaints: its deal again, and the complainers' shares in the clear. */
export interface JustificationMessage {
  type: 'justification'
  session: Uint8Array
  from: ParticipantId
  deal: Omit<DealMessage, 'type' | 'session' | 'from'>
  shares: Array<{ member: ParticipantId, share: Uint8Array }>
}

export type DkgMessage = DealMessage | ResponseMessage | JustificationMessage

export type DkgPhase = 'deal' | 'response' | 'justification' | 'done' | 'aborted'

export interface Exclusion {
  dealer: ParticipantId
  reason: string
}

export type DkgOutcome =
  | {
    status: 'done'
    /** 48 bytes; for a reshare, the old group key. */
    groupKey: Uint8Array
    /** The new group's Feldman commitments: t points, [0] = groupKey. */
    commitments: Uint8Array[]
    /** The dealers whose deals count (QUAL). */
    qualified: ParticipantId[]
    excluded: Exclusion[]
    /** Our new share, or null if we are not a member or lack a qualified dealer's share (shareMissing says whose). */
    share: { index: number, value: bigint } | null
    shareMissing: ParticipantId[]
  }
  | {
    status: 'aborted'
    /** The phase that could not complete. */
    phase: DkgPhase
    reason: string
    excluded: Exclusion[]
  }

export interface DkgReady {
  /** Broadcast each to every participant (dealers and members). */
  messages: DkgMessage[]
  /** Set once, when the run ends. */
  outcome?: DkgOutcome
}
