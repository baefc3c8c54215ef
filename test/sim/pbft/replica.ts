/**
 * One simulated replica instance: a real PbftReplicaDriver (node/pbft) on
 * the simulator's runtime, its sim store on its own disk, and a transport
 * onto the simulated network. An incarnation lives until a crash: its
 * timers stop firing, its pending fsyncs never complete, what it sends is
 * dropped; a restart builds a new driver from the disk.
 *
 * Twins are two instances of one replica id (and key), each with its own
 * disk; `name` tells them apart.
 */
import { PbftReplicaDriver } from '../../../node/pbft/driver.ts'
import { PbftSimDisk, SimPbftStore } from './store.ts'
import type { AdversaryModule } from './adversary.ts'
import type { PbftDriverMetrics, PbftTransport } from '../../../node/pbft/driver.ts'
import type { DriverRuntime } from '../../../node/runtime.ts'
import type { Rng } from '../../../protocols/common/rng.ts'
import type { PbftLimits } from '../../../protocols/pbft/index.ts'
import type { Evidence, NodeId, PbftCrypto, PbftThresholdGroup } from '../../../protocols/pbft/types.ts'
import type { Scheduler } from '../scheduler.ts'
import type { Logger } from 'pino'

export interface InstanceEnv {
  scheduler: Scheduler
  /** The simulator's runtime (virtual time, seeded randomness). */
  runtime: DriverRuntime
  replicas: NodeId[]
  limits: Partial<PbftLimits>
  tickMs: number
  fsyncMsMin: number
  fsyncMsMax: number
  earlyAck: boolean
  /** BROKEN ON PURPOSE when set (sabotage 'weak-quorum'): every replica's quorum size. */
  sabotageQuorum: number | undefined
  /** Compact checkpoint certificates: the threshold group replica `id` holds, if any (null: off). */
  group: ((id: NodeId) => PbftThresholdGroup | null) | null
  log: Logger
  trace(line: string): void
  /** The transport of one incarnation of `instance`. */
  transport(instance: SimReplicaInstance, alive: () => boolean): PbftTransport
  metrics(instance: SimReplicaInstance): PbftDriverMetrics
  publishEvidence(instance: SimReplicaInstance, evidence: Evidence): void
  /** Something went wrong that must fail the run. */
  fail(kind: string, message: string): void
}

export class SimReplicaInstance {
  readonly name: string
  readonly id: NodeId
  /** Held to the safety checks; false for Byzantine replicas (and both twins). */
  readonly honest: boolean
  readonly adversary: AdversaryModule | null
  readonly faulty: 'equivocate' | undefined
  readonly disk = new PbftSimDisk()
  driver: PbftReplicaDriver | null = null
  private incarnation = 0
  private aliveIncarnation = 0
  private readonly crypto: PbftCrypto
  private readonly rng: Rng
  private readonly env: InstanceEnv

  constructor (name: string, id: NodeId, honest: boolean, adversary: AdversaryModule | null, faulty: 'equivocate' | undefined, crypto: PbftCrypto, rng: Rng, env: InstanceEnv) {
    this.name = name
    this.id = id
    this.honest = honest
    this.adversary = adversary
    this.faulty = faulty
    this.crypto = crypto
    this.rng = rng
    this.env = env
  }

  get alive (): boolean {
    return this.aliveIncarnation !== 0 && this.aliveIncarnation === this.incarnation
  }

  /** Starts a new incarnation from the disk (create() is asynchronous: messages until then are lost). */
  launch (): void {
    const incarnation = ++this.incarnation
    this.aliveIncarnation = incarnation
    const alive = (): boolean => this.aliveIncarnation === incarnation
    const runtime = incarnationRuntime(this.env.runtime, alive)
    const store = new SimPbftStore(this.disk, {
      scheduler: this.env.scheduler,
      rng: this.rng,
      fsyncMsMin: this.env.fsyncMsMin,
      fsyncMsMax: this.env.fsyncMsMax,
      earlyAck: this.env.earlyAck,
      alive,
      trace: line => { this.env.trace(`${this.name} ${line}`) }
    })
    PbftReplicaDriver.create({
      id: this.id,
      replicas: this.env.replicas,
      crypto: this.crypto,
      store,
      transport: this.env.transport(this, alive),
      runtime,
      tickIntervalMs: this.env.tickMs,
      limits: this.env.limits,
      log: this.env.log,
      metrics: this.env.metrics(this),
      publishEvidence: evidence => { if (alive()) { this.env.publishEvidence(this, evidence) } },
      ...(this.faulty === undefined ? {} : { faulty: this.faulty }),
      ...(this.env.sabotageQuorum === undefined ? {} : { sabotageQuorum: this.env.sabotageQuorum })
    }).then(driver => {
      if (!alive()) { return }
      this.driver = driver
      driver.setThresholdGroup(this.env.group?.(this.id) ?? null)
      driver.start()
    }, (err: Error) => {
      this.env.fail('replica-failed', `${this.name} could not start from its disk: ${err.message}`)
    })
  }

  /** Power loss: the incarnation stops, its unsynced writes are gone. Returns how many. */
  crash (): number {
    this.aliveIncarnation = 0
    const driver = this.driver
    this.driver = null
    if (driver !== null) { void driver.stop() }
    return this.disk.crash()
  }
}

/** `base`, except that nothing runs once the incarnation is dead. */
function incarnationRuntime (base: DriverRuntime, alive: () => boolean): DriverRuntime {
  const guard = (run: () => void) => () => { if (alive()) { run() } }
  return {
    now: () => base.now(),
    setTimeout: (run, ms) => base.setTimeout(guard(run), ms),
    setInterval: (run, ms) => base.setInterval(guard(run), ms),
    defer: run => { base.defer(guard(run)) },
    seed: () => base.seed()
  }
}
