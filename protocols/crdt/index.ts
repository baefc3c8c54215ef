/**
 * The CRDT core: state-based and delta-state CRDTs with binary encodings,
 * causal contexts, a hybrid logical clock and a bounded causal delivery
 * buffer for op-based replication. I/O-free and deterministic: physical
 * time is a parameter, nothing reads a clock or a random source.
 */
export type { CrdtType, JsonValue, MutationEnv, Result } from './types.ts'
export { CRDT_TYPE_NAMES, CrdtReplica, createReplica, crdtType, decodeState, encodeState, isCrdtTypeName } from './registry.ts'
export type { CrdtTypeName } from './registry.ts'
export { CRDT_ENCODING_BYTES_MAX, CRDT_ENTRIES_MAX, CRDT_FORMAT_VERSION, MAP_KEY_BYTES_MAX, NESTING_DEPTH_MAX, REPLICA_ID_BYTES_MAX, TYPE_TAGS } from './codec.ts'
export { canonicalJson, JSON_BYTES_MAX, JSON_DEPTH_MAX, toCanonical } from './json.ts'
export type { Canonical } from './json.ts'
export {
  compareClocks,
  contextContains,
  contextFromDots,
  deliveryStatus,
  dotKey,
  EMPTY_CONTEXT,
  joinContexts,
  meetClocks,
  mergeClocks,
  nextDot,
  versionVector
} from './causal.ts'
export type { CausalContext, ClockOrder, Dot, ReplicaId, VersionVector } from './causal.ts'
export { compareTimestamps, Hlc, HLC_MAX_DRIFT_MS_DEFAULT, nextTimestamp } from './hlc.ts'
export type { Timestamp } from './hlc.ts'
export { CausalDeliveryBuffer, DELIVERY_LIMITS_DEFAULT } from './delivery.ts'
export type { CausalOp, DeliveryLimits, ReceiveOutcome, RefusalReason } from './delivery.ts'
export type { DotKernel, Dotted } from './dot-kernel.ts'

export * as gCounter from './g-counter.ts'
export * as pnCounter from './pn-counter.ts'
export * as gSet from './g-set.ts'
export * as orSet from './or-set.ts'
export * as lwwRegister from './lww-register.ts'
export * as mvRegister from './mv-register.ts'
export * as orMap from './or-map.ts'
export * as lwwMap from './lww-map.ts'
export * as rga from './rga-type.ts'
