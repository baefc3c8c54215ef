/**
 * A replica's restart: its persisted records, replayed in the order they
 * became durable, give back its view (and a view change in progress), its
 * latest durable stable checkpoint, everything it signed (so that it never
 * signs a conflicting message for a slot it signed before), and its log:
 * accepted pre-prepares, its own votes, prepared and committed
 * certificates.
 */
import { unreachable } from '../common/assert.ts'
import { GENESIS_CHECKPOINT } from './certificates.ts'
import { signedKey } from './log.ts'
import type { CheckpointVotes } from './checkpoints.ts'
import type { SlotLog } from './log.ts'
import type { NewView, NodeId, PersistRecord, SignedMessage, StableCheckpoint, ViewChange } from './types.ts'

export interface ReplayedState {
  view: number
  changing: boolean
  stable: StableCheckpoint
  /** What the replica signed, by slot (signedKey). */
  signed: Map<string, SignedMessage>
  /** Its latest view change. */
  viewChange: ViewChange | null
  /** The latest NEW-VIEW it sent as primary. */
  newView: NewView | null
  /** Highest seq it pre-prepared (as primary) in `view`, at least the stable checkpoint. */
  nextSeq: number
}

/** Fills `log` and `checkpoints` (empty on entry) from the records and returns the rest. */
export function replayRecords (records: PersistRecord[], id: NodeId, log: SlotLog, checkpoints: CheckpointVotes): ReplayedState {
  const state: ReplayedState = { view: 0, changing: false, stable: GENESIS_CHECKPOINT, signed: new Map(), viewChange: null, newView: null, nextSeq: 0 }
  for (const record of records) {
    switch (record.kind) {
      case 'view':
        if (record.view >= state.view) {
          state.view = record.view
          state.changing = record.changing
        }
        break
      case 'stable':
        if (record.checkpoint.seq > state.stable.seq) { state.stable = record.checkpoint }
        break
      case 'signed': replaySigned(record.message, id, state, log, checkpoints); break
      case 'accepted': {
        const slot = log.at(record.prePrepare.seq, record.prePrepare.view)
        if (slot.view === record.prePrepare.view) { slot.prePrepare = record.prePrepare }
        break
      }
      case 'prepared': {
        const slot = log.at(record.certificate.prePrepare.seq, 0)
        if (slot.prepared === null || slot.prepared.prePrepare.view <= record.certificate.prePrepare.view) { slot.prepared = record.certificate }
        break
      }
      case 'committed': log.at(record.certificate.prePrepare.seq, 0).committed = record.certificate; break
      default: unreachable(record)
    }
  }
  log.forgetThrough(state.stable.seq)
  state.nextSeq = state.stable.seq
  for (const slot of log.values()) {
    if (slot.view === state.view && slot.prePrepare !== null) { state.nextSeq = Math.max(state.nextSeq, slot.seq) }
  }
  return state
}

function replaySigned (message: SignedMessage, id: NodeId, state: ReplayedState, log: SlotLog, checkpoints: CheckpointVotes): void {
  state.signed.set(signedKey(message), message)
  switch (message.type) {
    case 'pre-prepare': {
      const slot = log.at(message.seq, message.view)
      if (slot.view === message.view) { slot.prePrepare = message }
      break
    }
    case 'prepare': case 'commit': {
      const slot = log.at(message.seq, message.view)
      if (slot.view !== message.view) { break }
      if (message.type === 'prepare') {
        slot.prepares.set(id, message)
      } else {
        slot.commits.set(id, message)
        slot.sentCommit = true
      }
      break
    }
    case 'checkpoint': checkpoints.add(message); break
    case 'view-change': if (message.view >= (state.viewChange?.view ?? 0)) { state.viewChange = message } break
    case 'new-view': if (message.view >= (state.newView?.view ?? 0)) { state.newView = message } break
    default: unreachable(message)
  }
}
