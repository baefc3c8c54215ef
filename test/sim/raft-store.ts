/**
 * The driver's log store (RaftLogStore) on a node's simulated disk. A write
 * lands in the page cache at once; one that must be durable resolves only
 * when an fsync, done after a random delay, covers it; a crash of the
 * process loses the fsync and every unsynced write. Writes become durable in
 * call order, as in RaftStorage, and the calls are held to RaftStorage's
 * contract where the driver's order matters: a local snapshot must be
 * committed and newer than the stored (or queued) one.
 */
import type { DiskWrite, SimDisk } from './disk.ts'
import type { Sabotage } from './options.ts'
import type { SimProcess } from './process.ts'
import type { Trace } from './trace.ts'
import type { RaftLogStore } from '../../node/raft/driver.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { Snapshot } from '../../protocols/raft/index.ts'

export interface SimStoreSettings {
  fsyncMsMin: number
  fsyncMsMax: number
  sabotage: Sabotage | null
}

export class SimRaftStore implements RaftLogStore {
  private readonly id: string
  private readonly disk: SimDisk
  private readonly process: SimProcess
  private readonly rng: Rng
  private readonly trace: Trace
  private readonly settings: SimStoreSettings
  private readonly onSnapshot: (snapshot: Snapshot) => void
  /** The snapshot index and commit once every write so far is durable (RaftStorage's "projected" state). */
  private snapshotIndex: number
  private commit: number

  /** `onSnapshot`: told of every local snapshot the driver stores. */
  constructor (id: string, disk: SimDisk, process: SimProcess, rng: Rng, trace: Trace, settings: SimStoreSettings, onSnapshot: (snapshot: Snapshot) => void) {
    this.id = id
    this.onSnapshot = onSnapshot
    this.disk = disk
    this.process = process
    this.rng = rng
    this.trace = trace
    this.settings = settings
    this.snapshotIndex = disk.durable.snapshot?.meta.index ?? 0
    this.commit = disk.durable.hardState.commit
  }

  async persist (update: Parameters<RaftLogStore['persist']>[0]): Promise<void> {
    const write: DiskWrite = { kind: 'ready', entries: update.entries }
    if (update.snapshot !== undefined) {
      write.snapshot = update.snapshot
      this.snapshotIndex = update.snapshot.meta.index
    }
    if (update.hardState !== undefined) {
      write.hardState = update.hardState
      this.commit = update.hardState.commit
    }
    const sequence = this.written(write)
    // nothing that needs an fsync (at most a commit index): the page cache is enough
    if (!update.mustSync) { return }
    if (this.settings.sabotage === 'ack-before-durable') {
      // BROKEN ON PURPOSE: report the write durable at once, make it durable later
      void this.fsync(sequence)
      return
    }
    await this.fsync(sequence)
  }

  async saveSnapshot (snapshot: Snapshot): Promise<boolean> {
    const { index } = snapshot.meta
    if (index <= this.snapshotIndex) { throw new RangeError(`${this.id}: saveSnapshot: index ${index} is not after the stored snapshot (${this.snapshotIndex})`) }
    if (index > this.commit) { throw new RangeError(`${this.id}: saveSnapshot: index ${index} is not committed (commit ${this.commit})`) }
    this.snapshotIndex = index
    this.onSnapshot(snapshot)
    await this.fsync(this.written({ kind: 'compact', snapshot }))
    return true
  }

  private written (write: DiskWrite): number {
    const sequence = this.disk.write(write)
    this.trace.add(`${this.id} write #${sequence}: ${describeWrite(write)}`)
    return sequence
  }

  /** Resolves once an fsync issued now has made write `sequence` durable; never if the process crashes first. */
  private async fsync (sequence: number): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>()
    this.process.after(this.rng.intBetween(this.settings.fsyncMsMin, this.settings.fsyncMsMax), () => {
      this.disk.syncThrough(sequence)
      this.trace.add(`${this.id} fsync #${sequence}`)
      resolve()
    })
    return promise
  }
}

function describeWrite (write: DiskWrite): string {
  if (write.kind === 'compact') { return `compact to ${write.snapshot.meta.index}/${write.snapshot.meta.term}` }
  const parts: string[] = []
  if (write.snapshot !== undefined) { parts.push(`snapshot ${write.snapshot.meta.index}/${write.snapshot.meta.term}`) }
  if (write.entries.length > 0) { parts.push(`entries ${write.entries[0].index}..${write.entries[write.entries.length - 1].index} t${write.entries[write.entries.length - 1].term}`) }
  if (write.hardState !== undefined) { parts.push(`hard t${write.hardState.term} v${write.hardState.vote ?? '-'} c${write.hardState.commit}`) }
  return parts.join(', ')
}
