/**
 * The operator of a reconfiguring run (options.reconfigure): a real
 * PbftClientDriver that submits, during the faults, epoch 1 (the genesis
 * set plus the spare r<n>), then epoch 2 (without the first Byzantine
 * replica, or without the last honest genesis replica when there is none),
 * each approved by a quorum of honest replicas of the set it follows. A
 * request refused because the previous set is still pending is submitted
 * again a little later; any other refusal fails the run.
 */
import { PbftClientDriver } from '../../../node/pbft/client-driver.ts'
import { decodeResult } from '../../../node/pbft/operations.ts'
import { approve, encodeReconfiguration, quorumSize } from '../../../protocols/pbft/index.ts'
import type { PbftSimCluster } from './cluster.ts'
import type { Rng } from '../../../protocols/common/rng.ts'
import type { NodeId } from '../../../protocols/pbft/types.ts'

const OPERATOR = 'operator'
const RETRY_MS = 100

export class PbftReconfigurer {
  private readonly cluster: PbftSimCluster
  private readonly rng: Rng
  private readonly driver: PbftClientDriver
  /** The sets of epochs 1 and 2, in order. */
  private readonly plan: NodeId[][]
  /** Epochs the replicas answered 'configured' to. */
  configured = 0
  private busy = false

  constructor (cluster: PbftSimCluster, rng: Rng) {
    this.cluster = cluster
    this.rng = rng
    const { options, replicaIds, nodeIds } = cluster
    this.driver = new PbftClientDriver({
      id: OPERATOR,
      replicas: nodeIds,
      crypto: cluster.keyring.cryptoFor(OPERATOR),
      send: (to, message) => { cluster.network.send({ from: OPERATOR, to, sender: OPERATOR, message }) },
      runtime: cluster.runtime,
      tickIntervalMs: options.tickMs,
      retransmitMs: options.clientRetransmitMs
    })
    cluster.otherClients.set(OPERATOR, this.driver)
    const byzantine = cluster.instances.find(i => !i.honest)?.id
    const removed = byzantine ?? [...replicaIds].reverse().find(id => cluster.instances.some(i => i.id === id && i.honest))
    this.plan = [nodeIds, nodeIds.filter(id => id !== removed)]
  }

  /** Epoch 1 within the first third of the faults. */
  start (): void {
    this.driver.start()
    this.cluster.scheduler.after(this.rng.intBetween(20, Math.max(21, Math.floor(this.cluster.options.durationMs / 3))), () => { this.submit(1) })
  }

  get done (): boolean {
    return this.configured === this.plan.length && !this.busy
  }

  private submit (epoch: number): void {
    const replicas = this.plan[epoch - 1]
    const previous = epoch === 1 ? this.cluster.replicaIds : this.plan[epoch - 2]
    const honest = previous.filter(id => this.cluster.instances.some(i => i.id === id && i.honest))
    const approvals = honest.slice(0, quorumSize(previous.length)).map(id => approve(epoch, replicas, id, this.cluster.keyring.cryptoFor(id)))
    this.busy = true
    this.cluster.trace.add(`OPERATOR submits epoch ${epoch}: ${replicas.join(',')}`)
    this.driver.submit(encodeReconfiguration({ epoch, replicas, approvals })).then(bytes => {
      this.busy = false
      const decoded = decodeResult(bytes)
      if (decoded.ok && decoded.result.type === 'configured' && decoded.result.epoch === epoch) {
        this.configured = epoch
        this.cluster.trace.add(`OPERATOR epoch ${epoch} configured, after s${decoded.result.afterSeq}`)
        if (epoch < this.plan.length) { this.cluster.scheduler.after(this.rng.intBetween(20, 300), () => { this.submit(epoch + 1) }) }
        return
      }
      if (decoded.ok && decoded.result.type === 'invalid' && decoded.result.message.includes('pending')) {
        this.cluster.scheduler.after(RETRY_MS, () => { this.submit(epoch) })
        return
      }
      this.cluster.fail('protocol', `reconfiguration to epoch ${epoch} answered ${decoded.ok ? JSON.stringify(decoded.result) : decoded.error}`)
    }, (err: Error) => {
      this.busy = false
      if (this.cluster.failure === null) { this.cluster.fail('error', `reconfiguration to epoch ${epoch}: ${err.message}`) }
    })
  }

  stop (): void {
    this.driver.stop()
  }
}
