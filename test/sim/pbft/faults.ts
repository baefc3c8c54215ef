/**
 * The fault schedule of a run, drawn from the seed: honest replicas crash
 * (losing unsynced writes) and restart from their disks; the replicas split
 * into partitions that heal; Twins are re-partitioned. stopAndHeal() ends
 * it all: links heal, messages are no longer lost or delayed, every replica
 * runs, one twin hears everyone.
 */
import type { PbftSimCluster } from './cluster.ts'
import type { Rng } from '../../../protocols/common/rng.ts'

export class PbftFaults {
  private readonly cluster: PbftSimCluster
  private readonly rng: Rng
  private running = false

  constructor (cluster: PbftSimCluster, rng: Rng) {
    this.cluster = cluster
    this.rng = rng
  }

  start (): void {
    this.running = true
    const { options } = this.cluster
    if (options.crashes) { this.every(120, 350, () => { this.crashOrRestart() }) }
    if (options.partitions) { this.every(200, 500, () => { this.partition() }) }
    if (this.cluster.twinGroups.size > 0) { this.every(150, 400, () => { this.cluster.redrawTwinGroups() }) }
  }

  /** From here on the network is synchronous: no loss, no slow paths (duplicates and reordering within the latency stay). */
  stopAndHeal (): void {
    this.running = false
    const { cluster } = this
    cluster.network.heal()
    cluster.network.faults = { ...cluster.network.faults, dropRate: 0, delayRate: 0 }
    for (const instance of cluster.instances) { cluster.restart(instance) }
    if (cluster.twinGroups.size > 0) { cluster.redrawTwinGroups(true) }
    cluster.trace.add('FAULTS STOP: links healed, every replica up')
  }

  private every (minMs: number, maxMs: number, action: () => void): void {
    this.cluster.scheduler.after(this.rng.intBetween(minMs, maxMs), () => {
      if (!this.running) { return }
      action()
      this.every(minMs, maxMs, action)
    })
  }

  /** One honest replica down at a time: restart the one that is down, or crash another. */
  private crashOrRestart (): void {
    const honest = this.cluster.honestInstances()
    const down = honest.find(i => !i.alive)
    if (down !== undefined) {
      this.cluster.restart(down)
      return
    }
    this.cluster.crash(honest[this.rng.intBetween(0, honest.length - 1)])
  }

  private partition (): void {
    const { network, nodeIds, trace } = this.cluster
    if (this.rng.chance(0.4)) {
      network.heal()
      trace.add('HEAL')
      return
    }
    const groups: string[][] = [[], []]
    for (const id of nodeIds) { groups[this.rng.intBetween(0, 1)].push(id) }
    network.heal()
    network.partition(groups)
    this.cluster.stats.partitions++
    trace.add(`PARTITION ${groups.map(g => `{${g.join(',')}}`).join(' ')}`)
  }
}
