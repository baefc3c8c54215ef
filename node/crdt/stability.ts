/**
 * Causal stability for the CRDT service: what each member reported holding
 * of each CRDT, and the version every live member holds (the stable
 * frontier), below which rga tombstones and op history are collected.
 *
 * A report rides on each sync exchange: per CRDT, the version vector of
 * its causal context (ops per replica, as `versionVector()` shows) and, for
 * an rga, the document's version (units per replica, the space its
 * tombstones live in). Reports only ever understate what a member holds
 * (it may have moved on since), so a frontier computed from them is safe;
 * it is null until every member has reported, so a member that is down,
 * partitioned or new holds collection back instead of being left behind.
 */
import { readGCounter, writeGCounter } from '../../protocols/crdt/g-counter.ts'
import { ByteReader, ByteWriter, DecodeError } from '../../protocols/kv/codec.ts'
import type { VersionVector } from '../../protocols/crdt/index.ts'

/** What one member holds of one CRDT. */
export interface StabilityReport {
  /** Ops held per replica (the causal context's version vector). */
  context: VersionVector
  /** For an rga: units held per replica (its document's version); else null. */
  document: VersionVector | null
}

/** Most members whose reports a CRDT keeps: reports from more are dropped (collection then waits). */
export const STABILITY_REPORTERS_MAX = 1024

export function encodeReport (report: StabilityReport): Uint8Array {
  const writer = new ByteWriter(64)
  writeGCounter(writer, report.context)
  writer.u8(report.document === null ? 0 : 1)
  if (report.document !== null) { writeGCounter(writer, report.document) }
  return writer.finish()
}

/** A report from its bytes; null when malformed. */
export function decodeReport (bytes: Uint8Array): StabilityReport | null {
  try {
    const reader = new ByteReader(bytes)
    const context = readGCounter(reader)
    const flag = reader.u8('document flag')
    if (flag > 1) { return null }
    const document = flag === 1 ? readGCounter(reader) : null
    reader.end('stability report')
    return { context, document }
  } catch (err) {
    if (err instanceof DecodeError) { return null }
    throw err
  }
}

/** The latest report of each member, per CRDT name. */
export class StabilityReports {
  readonly #byName = new Map<string, Map<string, StabilityReport>>()

  /** Keeps `peer`'s report on `name` (the names are the service's own, so bounded by crdtsMax). */
  record (name: string, peer: string, report: StabilityReport): void {
    let reports = this.#byName.get(name)
    if (reports === undefined) {
      reports = new Map()
      this.#byName.set(name, reports)
    }
    if (!reports.has(peer) && reports.size >= STABILITY_REPORTERS_MAX) { return }
    reports.set(peer, report)
  }

  /**
   * The reports on `name` of every member in `members` (ids other than
   * this node's), or null when one of them has not reported yet.
   */
  of (name: string, members: Iterable<string>): Map<string, StabilityReport> | null {
    const reports = this.#byName.get(name)
    const out = new Map<string, StabilityReport>()
    for (const member of members) {
      const report = reports?.get(member)
      if (report === undefined) { return null }
      out.set(member, report)
    }
    return out
  }

  /** Drops the reports of members no longer in `members` (left, removed). */
  retain (members: ReadonlySet<string>): void {
    for (const reports of this.#byName.values()) {
      for (const peer of reports.keys()) {
        if (!members.has(peer)) { reports.delete(peer) }
      }
    }
  }
}
