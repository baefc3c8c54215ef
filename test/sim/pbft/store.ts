/**
 * A replica's PbftStore on the simulator's write-ahead disk: append()
 * resolves after a random fsync delay, once its records are durable; a
 * crash drops what no fsync covered, and the promises of a crashed
 * incarnation never resolve (its process is gone). Compaction on a stored
 * snapshot is the production store's (node/pbft/storage.ts compactRecords).
 */
import { compactRecords } from '../../../node/pbft/storage.ts'
import { unreachable } from '../../../protocols/common/assert.ts'
import { WriteAheadDisk } from '../disk.ts'
import type { PbftStore } from '../../../node/pbft/driver.ts'
import type { Rng } from '../../../protocols/common/rng.ts'
import type { Isolation, PersistRecord, SignedMessage, StableCheckpoint } from '../../../protocols/pbft/types.ts'
import type { Scheduler } from '../scheduler.ts'

export interface PbftDurable {
  records: PersistRecord[]
  snapshot: { checkpoint: StableCheckpoint, data: Uint8Array } | null
  isolated: Isolation[]
  /** Signatures (hex) of every message this replica ever made durable as signed or accepted: the durability check's index (never pruned). */
  signed: Set<string>
}

export type PbftWrite =
  | { kind: 'records', records: PersistRecord[] }
  | { kind: 'snapshot', checkpoint: StableCheckpoint, data: Uint8Array }
  | { kind: 'isolated', isolated: Isolation[] }

export class PbftSimDisk extends WriteAheadDisk<PbftDurable, PbftWrite> {
  constructor () {
    super({ records: [], snapshot: null, isolated: [], signed: new Set() }, applyWrite)
  }
}

function applyWrite (durable: PbftDurable, write: PbftWrite): void {
  switch (write.kind) {
    case 'records':
      for (const record of write.records) {
        durable.records.push(record)
        const message = signedIn(record)
        if (message !== null) { durable.signed.add(signatureKey(message.signature)) }
      }
      return
    case 'snapshot':
      if (durable.snapshot !== null && durable.snapshot.checkpoint.seq >= write.checkpoint.seq) { return }
      durable.snapshot = { checkpoint: write.checkpoint, data: write.data }
      durable.records = compactRecords(durable.records, write.checkpoint)
      return
    case 'isolated':
      durable.isolated = [...write.isolated]
      return
    default:
      unreachable(write)
  }
}

/** The message a record shows this replica signed (or, for a pre-prepare, accepted). */
function signedIn (record: PersistRecord): SignedMessage | null {
  if (record.kind === 'signed') { return record.message }
  if (record.kind === 'accepted') { return record.prePrepare }
  return null
}

export function signatureKey (signature: Uint8Array): string {
  return Buffer.from(signature).toString('hex')
}

export interface SimStoreEnv {
  scheduler: Scheduler
  rng: Rng
  fsyncMsMin: number
  fsyncMsMax: number
  /** BROKEN ON PURPOSE (sabotage 'early-ack'): appends resolve at once, the fsync comes later. */
  earlyAck: boolean
  /** Whether the incarnation that owns this store still runs. */
  alive(): boolean
  trace(line: string): void
}

/** One incarnation's view of its disk. */
export class SimPbftStore implements PbftStore {
  private readonly disk: PbftSimDisk
  private readonly env: SimStoreEnv

  constructor (disk: PbftSimDisk, env: SimStoreEnv) {
    this.disk = disk
    this.env = env
  }

  async load (): ReturnType<PbftStore['load']> {
    const { records, snapshot, isolated } = this.disk.durable
    return { records: [...records], snapshot, isolated: [...isolated] }
  }

  async append (records: PersistRecord[]): Promise<void> {
    await this.write({ kind: 'records', records: [...records] }, `${records.length} records`)
  }

  async saveSnapshot (checkpoint: StableCheckpoint, data: Uint8Array): Promise<void> {
    await this.write({ kind: 'snapshot', checkpoint, data }, `snapshot at ${checkpoint.seq}${checkpoint.groupSignature !== undefined ? ' (compact certificate)' : ''}`)
  }

  async saveIsolated (isolated: Isolation[]): Promise<void> {
    await this.write({ kind: 'isolated', isolated: [...isolated] }, `isolated ${isolated.map(i => i.peer).join(',')}`)
  }

  /** Buffers the write, then fsyncs it after a random delay; never resolves if the incarnation dies first. */
  private async write (write: PbftWrite, what: string): Promise<void> {
    const sequence = this.disk.write(write)
    const fsyncMs = this.env.rng.intBetween(this.env.fsyncMsMin, this.env.fsyncMsMax)
    await new Promise<void>(resolve => {
      this.env.scheduler.after(fsyncMs, () => {
        if (!this.env.alive()) { return }
        this.disk.syncThrough(sequence)
        this.env.trace(`fsync #${sequence} (${what})`)
        resolve()
      })
      if (this.env.earlyAck && write.kind === 'records') { resolve() }
    })
  }
}
