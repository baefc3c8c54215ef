import { KEYSTORE_GROUP_MEMBERS_MAX } from '../../identity/keystore.ts'
import { DKG_MESSAGE_BYTES_MAX } from '../../protocols/dkg/index.ts'

/** The DKG's datagrams, where a frame may also be a batch of them (a CBOR array: ./transport.ts). */
export const DKG_PROTOCOL = '/accord/dkg/1.1.0'
/**
 * One datagram per frame: what nodes from before batching speak. Still
 * served, and spoken to a peer that offers nothing newer, so that a
 * cluster upgraded node by node keeps signing and running DKGs.
 */
export const DKG_PROTOCOL_UNBATCHED = '/accord/dkg/1.0.0'
export const DKG_CAPABILITY = '@accord/dkg'

/** Sessions not yet done or aborted, at once; a start beyond is refused ('sessions-full'). */
export const DKG_SESSIONS_MAX = 4
/** Finished sessions remembered for status. */
export const DKG_HISTORY_MAX = 8
/** Members of a group: the keystore's bound. */
export const DKG_MEMBERS_MAX = KEYSTORE_GROUP_MEMBERS_MAX
/**
 * Messages held per sender while our core does not exist yet (the
 * initiator's `begin` is still on its way): a participant's deal, response,
 * seen and justification, with room to spare; beyond, dropped ('queue-full').
 */
export const DKG_PENDING_PER_PEER_MAX = 8
/** Signing rounds this node runs at once. */
export const DKG_SIGN_ROUNDS_MAX = 16
/** The message a signing round signs, at most. */
export const DKG_SIGN_MESSAGE_BYTES_MAX = 4096
/** A frame: the largest DKG message, its signature and CBOR framing. */
export const DKG_FRAME_BYTES_MAX = DKG_MESSAGE_BYTES_MAX + 4096
/**
 * Datagrams in one frame at most: what one task sends to one peer (a
 * response and its `seen`) leaves in one frame (node/dkg/transport.ts).
 */
export const DKG_BATCH_MAX = 32
/** A session id, in bytes (the core's bound is 64). */
export const DKG_SESSION_BYTES = 16
