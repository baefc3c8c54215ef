/**
 * The I/O-free distributed key generation core of accord: Pedersen DKG with
 * Feldman commitments, shares sealed to each member, publicly verifiable
 * complaints (DLEQ), justifications, resharing that keeps the group key,
 * and explicit aborts. See README.md.
 */
export { DkgNode } from './dkg-node.ts'
export type { StepResult } from './dkg-node.ts'
export { checkConfig, phaseTimeoutTicks, PARTICIPANTS_MAX, SESSION_BYTES_MAX, ID_CHARS_MAX, PHASE_BASE_TICKS, PHASE_TICKS_PER_PARTICIPANT } from './config.ts'
export { encryptionKeyProof, verifyEncryptionKey, boxContext, complaintContext, EncryptionKeyChecks, KEY_CHECKS_MAX } from './keys.ts'
export { checkMessage } from './validate.ts'
export type * from './types.ts'
export { encodeDkgMessage, decodeDkgMessage, DKG_ENCODING_VERSION, DKG_MESSAGE_BYTES_MAX } from './codec.ts'
export type { DecodeResult } from './codec.ts'
