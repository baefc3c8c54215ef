/**
 * A replicated growable array (RGA) sequence CRDT for text. See README.md.
 */
export { Rga, PENDING_OPS_MAX, PENDING_UNITS_MAX } from './rga.ts'
export { opSize } from './history.ts'
export type { RemoteChange, RgaOptions } from './rga.ts'
export { encodeOps, decodeOps } from './codec.ts'
export { OpHistory } from './history.ts'
export { encodeRga, loadRga } from './snapshot.ts'
export { validateOp, REPLICA_ID_LENGTH_MAX, OP_TEXT_LENGTH_MAX, OP_RANGES_MAX } from './validate.ts'
export type { ApplyStatus, DeleteOp, Id, IdRange, InsertOp, Op, Result, VersionVector } from './types.ts'
