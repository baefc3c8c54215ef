/**
 * The simulated PBFT cluster: replica instances (real drivers), clients
 * (real client drivers), the network between them, the Byzantine
 * adversaries, the safety checks and the trace, all driven by one scheduler
 * in virtual time and one seeded generator.
 */
import { silentLogger } from '../../../node/logger.ts'
import { createRng } from '../../../protocols/common/rng.ts'
import { faultsTolerated, quorumSize } from '../../../protocols/pbft/index.ts'
import { FakeThresholdGroup } from '../../lib/fake-threshold-group.ts'
import { SimNetwork } from '../network.ts'
import { simRuntime } from '../runtime.ts'
import { Scheduler } from '../scheduler.ts'
import { Trace } from '../trace.ts'
import { AdversaryModule } from './adversary.ts'
import { SimPbftClient } from './clients.ts'
import { SimKeyring } from './crypto.ts'
import { describeSigned, PbftInvariants, PbftInvariantViolation } from './invariants.ts'
import { SimReplicaInstance } from './replica.ts'
import type { Adversary, PbftSimOptions } from './options.ts'
import type { InstanceEnv } from './replica.ts'
import type { PbftClientDriver } from '../../../node/pbft/client-driver.ts'
import type { PbftDriverMetrics, PbftTransport } from '../../../node/pbft/driver.ts'
import type { DriverRuntime } from '../../../node/runtime.ts'
import type { Rng } from '../../../protocols/common/rng.ts'
import type { NodeId, PbftMessage, PbftThresholdGroup, Reply, SignedMessage } from '../../../protocols/pbft/types.ts'
import type { KvOperation } from '../../lib/linearizability.ts'
import type { DeliveryOutcome } from '../network.ts'

const TRACE_LINES_KEPT = 300
/** A state fetch from a peer that is down or cut off fails after this long. */
const FETCH_TIMEOUT_MS = 50

/** What travels on the simulated network: `from`/`to` are ids, `sender` the instance (twins share an id). */
export interface Envelope {
  from: NodeId
  to: NodeId
  sender: string
  message: PbftMessage
}

/** The first thing that went wrong in a run. */
export interface RunFailure {
  kind: string
  message: string
}

export class PbftSimCluster {
  readonly options: PbftSimOptions
  readonly scheduler = new Scheduler()
  readonly trace: Trace
  readonly rng: Rng
  readonly runtime: DriverRuntime
  readonly network: SimNetwork<Envelope>
  readonly keyring: SimKeyring
  readonly invariants: PbftInvariants
  /** The genesis replica set. */
  readonly replicaIds: NodeId[]
  /** Every replica instance's id: the genesis set, and the spare a reconfiguration adds. */
  readonly nodeIds: NodeId[]
  readonly f: number
  readonly instances: SimReplicaInstance[] = []
  readonly clients: SimPbftClient[] = []
  /** Other client drivers on the network (the reconfiguring operator), by id. */
  readonly otherClients = new Map<NodeId, PbftClientDriver>()
  readonly history: KvOperation[] = []
  readonly stats = {
    crashes: 0,
    restarts: 0,
    lostWrites: 0,
    partitions: 0,
    evidencePublished: 0,
    fetches: 0,
    rejected: 0,
    viewChanges: 0,
    checkpoints: 0,
    statesInstalled: 0,
    /** Compact certificates: partials combined into a group signature, tries that fell back to the full proof, bad partials named. */
    groupCombined: 0,
    groupFellBack: 0,
    badPartials: 0
  }

  readonly rejections = new Map<string, number>()
  failure: RunFailure | null = null
  /** Which honest replicas each twin talks to (Twins: the partition that decides who hears which twin). */
  readonly twinGroups = new Map<string, Set<NodeId>>()
  private readonly clientRng: Rng
  private readonly env: InstanceEnv
  /** Replicas whose checkpoint partials are garbage ('bad-partial'). */
  readonly liars = new Set<NodeId>()
  /** Liars whose partials an honest replica's combine named bad, and those an honest replica published evidence against. */
  readonly liarsNamed = new Set<NodeId>()
  readonly accused = new Set<NodeId>()
  /** Replicas that took in the reshared group ('reshare'). */
  private readonly reshared = new Set<NodeId>()

  constructor (options: PbftSimOptions) {
    this.options = options
    this.rng = createRng(options.seed)
    this.trace = new Trace(() => this.scheduler.now, TRACE_LINES_KEPT, options.fullTrace)
    this.runtime = simRuntime(this.scheduler, this.rng.fork())
    this.keyring = new SimKeyring(options.seed)
    this.invariants = new PbftInvariants(this.keyring.cryptoFor('checker'))
    this.network = new SimNetwork<Envelope>(this.rng.fork(), options.network, this.scheduler, this.trace, {
      deliver: envelope => this.deliver(envelope),
      settled: () => {}
    }, describeEnvelope)
    this.clientRng = this.rng.fork()
    this.replicaIds = Array.from({ length: options.replicas }, (_, i) => `r${i}`)
    this.nodeIds = options.reconfigure ? [...this.replicaIds, `r${options.replicas}`] : this.replicaIds
    this.f = faultsTolerated(options.replicas)
    if (options.byzantine.length > this.f) { throw new RangeError(`${options.byzantine.length} Byzantine replicas, but n = ${options.replicas} tolerates ${this.f}`) }
    this.env = this.instanceEnv()
    this.createInstances()
  }

  /** Replicas whose behaviour the checks trust. */
  /** Whether the run holds replica `id` honest (a Twin is not). */
  isHonestId (id: NodeId): boolean {
    return this.instances.some(i => i.id === id) && this.instances.every(i => i.id !== id || i.honest)
  }

  honestInstances (): SimReplicaInstance[] {
    return this.instances.filter(i => i.honest)
  }

  /** Whether an honest replica's driver stopped on an error (recorded as the run's failure). */
  honestFailed (): boolean {
    for (const instance of this.instances) {
      const error = instance.honest ? instance.driver?.failure : null
      if (error !== null && error !== undefined) {
        this.fail('replica-failed', `${instance.name} stopped: ${error.message}\n${error.stack ?? ''}`)
        return true
      }
    }
    return false
  }

  start (): void {
    for (const instance of this.instances) {
      if (instance.honest) { this.invariants.startInstance(instance.name, 0) }
      instance.launch()
    }
    if (this.options.compactCheckpoints && this.options.reshare) { this.scheduleReshare() }
  }

  /**
   * Each genesis replica takes in the reshared group at its own moment of
   * the fault phase (its own generator: the run's stream is untouched); a
   * replica down then gets it when it restarts.
   */
  private scheduleReshare (): void {
    const rng = createRng(this.options.seed ^ 0x5e5a7e)
    for (const id of this.replicaIds) {
      this.scheduler.after(Math.floor(this.options.durationMs * (0.2 + 0.6 * rng.nextFloat())), () => {
        this.reshared.add(id)
        this.trace.add(`RESHARE ${id} takes in the new shares`)
        for (const instance of this.instances) { if (instance.id === id && instance.alive) { instance.driver?.setThresholdGroup(this.groupFor(id)) } }
      })
    }
  }

  addClients (count: number, settings: { thinkMsMax: number }): SimPbftClient[] {
    const keys = Array.from({ length: this.options.keys }, (_, i) => `k${i}`)
    const added: SimPbftClient[] = []
    for (let i = 0; i < count; i++) {
      const id = `c${this.clients.length + 1}`
      const client = new SimPbftClient(id, this.replicaIds, this.keyring.cryptoFor(id), this.clientRng.fork(), {
        runtime: this.runtime,
        now: () => this.scheduler.now,
        send: (from, to, message) => { this.network.send({ from, to, sender: from, message }) },
        record: op => { this.history.push(op) },
        trace: line => { this.trace.add(line) },
        fail: message => { this.fail('protocol', message) }
      }, { keys, readRatio: this.options.readRatio, thinkMsMax: settings.thinkMsMax, tickMs: this.options.tickMs, retransmitMs: this.options.clientRetransmitMs })
      this.clients.push(client)
      added.push(client)
    }
    return added
  }

  fail (kind: string, message: string): void {
    if (this.failure !== null) { return }
    this.failure = { kind, message }
    this.trace.add(`FAILURE ${kind}: ${message}`)
  }

  /** Runs `check`, turning a violation into the run's failure. */
  checked (check: () => void): void {
    try {
      check()
    } catch (err) {
      if (err instanceof PbftInvariantViolation) {
        this.fail('safety', err.message)
        return
      }
      throw err
    }
  }

  crash (instance: SimReplicaInstance): void {
    if (!instance.alive) { return }
    const lost = instance.crash()
    this.stats.crashes++
    this.stats.lostWrites += lost
    this.trace.add(`CRASH ${instance.name} (${lost} unsynced writes lost)`)
  }

  restart (instance: SimReplicaInstance): void {
    if (instance.alive) { return }
    this.stats.restarts++
    const { snapshot, records } = instance.disk.durable
    this.trace.add(`RESTART ${instance.name} from snapshot ${snapshot?.checkpoint.seq ?? 0}, ${records.length} records`)
    if (instance.honest) { this.invariants.startInstance(instance.name, snapshot?.checkpoint.seq ?? 0) }
    instance.launch()
  }

  private createInstances (): void {
    const { options } = this
    const assigned = new Map<NodeId, Adversary>()
    const free = [...this.replicaIds]
    const take = (id: NodeId | undefined): NodeId => {
      const chosen = id ?? free[free.length - 1]
      free.splice(free.indexOf(chosen), 1)
      return chosen
    }
    for (const adversary of options.byzantine) {
      // the first primary is the interesting place for an equivocator and a slow replica
      const wantsPrimary = (adversary === 'slow' || adversary === 'equivocate' || adversary === 'split') && free.includes('r0')
      const id = take(wantsPrimary ? 'r0' : undefined)
      assigned.set(id, adversary)
      if (adversary === 'bad-partial') { this.liars.add(id) }
    }
    // a replica that signs twice while the checks hold it honest
    const doubleSigner = options.sabotage === 'double-sign' ? free[free.length - 1] : null
    for (const id of this.nodeIds) {
      const adversary = assigned.get(id)
      const crypto = this.keyring.cryptoFor(id)
      if (adversary === 'twins') {
        for (const name of [`${id}a`, `${id}b`]) {
          this.instances.push(new SimReplicaInstance(name, id, false, null, undefined, crypto, this.rng.fork(), this.env))
          this.twinGroups.set(name, new Set())
        }
        continue
      }
      const module = adversary === undefined || adversary === 'equivocate' || adversary === 'bad-partial' ? null : new AdversaryModule(adversary, id, this.replicaIds, crypto, this.rng.fork())
      const faulty = adversary === 'equivocate' || id === doubleSigner ? 'equivocate' as const : undefined
      this.instances.push(new SimReplicaInstance(id, id, adversary === undefined, module, faulty, crypto, this.rng.fork(), this.env))
    }
    this.redrawTwinGroups()
  }

  /**
   * Splits the honest replicas between each pair of twins: each twin hears
   * and is heard by its group only. `settled`: one twin gets everyone and
   * the other no one (after the faults stop).
   */
  redrawTwinGroups (settled = false): void {
    const pairs = new Map<NodeId, string[]>()
    for (const name of this.twinGroups.keys()) {
      const id = name.slice(0, -1)
      pairs.set(id, [...(pairs.get(id) ?? []), name])
    }
    for (const [id, [a, b]] of pairs) {
      const others = this.replicaIds.filter(r => r !== id)
      const groupA = new Set<NodeId>()
      const groupB = new Set<NodeId>()
      for (const other of others) {
        if (settled || this.rng.chance(0.5)) { groupA.add(other) } else { groupB.add(other) }
      }
      this.twinGroups.set(a, groupA)
      this.twinGroups.set(b, groupB)
      this.trace.add(`TWINS ${a} hears ${[...groupA].join(',') || 'nobody'}; ${b} hears ${[...groupB].join(',') || 'nobody'}`)
    }
  }

  /**
   * The simulated DKG group of the genesis set (threshold = its quorum)
   * as replica `id` holds it; a spare added later has none (as a node
   * outside the DKG: it holds no share, so its node knows no group).
   * Counts what combining gives.
   */
  private groupFor (id: NodeId): PbftThresholdGroup | null {
    if (!this.replicaIds.includes(id)) { return null }
    const group = new FakeThresholdGroup(this.replicaIds, quorumSize(this.replicaIds.length), {
      seed: `sim ${this.options.seed}`, ...(this.liars.has(id) ? { liar: id } : {}), ...(this.reshared.has(id) ? { shares: 'reshared' } : {})
    }).for(id)
    return {
      ...group,
      combine: (partials, payload) => {
        const result = group.combine(partials, payload)
        if (result.ok) { this.stats.groupCombined++ } else { this.stats.groupFellBack++ }
        this.stats.badPartials += result.bad.length
        if (result.bad.length > 0) { this.trace.add(`${id} names bad checkpoint partials from ${result.bad.join(',')}`) }
        if (this.isHonestId(id)) { for (const member of result.bad) { this.liarsNamed.add(member) } }
        return result
      }
    }
  }

  private instanceEnv (): InstanceEnv {
    const { options } = this
    return {
      scheduler: this.scheduler,
      runtime: this.runtime,
      replicas: this.replicaIds,
      limits: {
        checkpointInterval: options.checkpointInterval,
        watermarkWindow: options.watermarkWindow,
        requestTimeoutTicks: options.requestTimeoutTicks,
        viewChangeTimeoutTicks: options.viewChangeTimeoutTicks,
        viewChangeTimeoutTicksMax: options.viewChangeTimeoutTicks * 8
      },
      tickMs: options.tickMs,
      fsyncMsMin: options.fsyncMsMin,
      fsyncMsMax: options.fsyncMsMax,
      earlyAck: options.sabotage === 'early-ack',
      sabotageQuorum: options.sabotage === 'weak-quorum' ? faultsTolerated(options.replicas) + 1 : undefined,
      group: options.compactCheckpoints ? id => this.groupFor(id) : null,
      log: silentLogger(),
      trace: line => { this.trace.add(line) },
      transport: (instance, alive) => this.transport(instance, alive),
      metrics: instance => this.metrics(instance),
      publishEvidence: (instance, evidence) => {
        this.stats.evidencePublished++
        this.trace.add(`${instance.name} publishes ${evidence.kind} evidence against ${evidence.offender}`)
        if (instance.honest) {
          this.accused.add(evidence.offender)
          this.checked(() => { this.invariants.accused(instance.name, 'published', evidence, this.isHonestId(evidence.offender)) })
        }
        // the evidence topic is gossip: it reaches every replica, partitions or not, a little later
        for (const other of this.instances) {
          if (other === instance) { continue }
          this.scheduler.after(this.network.latencyMs(), () => {
            if (!other.alive) { return }
            const result = other.driver?.receiveEvidence(evidence)
            if (result?.ok === true && other.honest) { this.checked(() => { this.invariants.accused(other.name, 'accepted', evidence, this.isHonestId(evidence.offender)) }) }
          })
        }
      },
      fail: (kind, message) => { this.fail(kind, message) }
    }
  }

  private metrics (instance: SimReplicaInstance): PbftDriverMetrics {
    return {
      onExecuted: (_requests, batch) => {
        this.trace.add(`${instance.name} executes s${batch.seq} v${batch.view} (${batch.requests.map(r => `${r.client}#${r.timestamp}`).join(' ') || 'null'}) kv ${instance.driver?.kv.appliedIndex ?? '-'}`)
        if (instance.honest) { this.checked(() => { this.invariants.execute(instance.name, batch) }) }
      },
      onStateInstalled: seq => {
        this.stats.statesInstalled++
        this.trace.add(`${instance.name} installed the state of s${seq}`)
        if (instance.honest) { this.checked(() => { this.invariants.stateInstalled(instance.name, seq) }) }
      },
      onViewChange: view => {
        this.stats.viewChanges++
        this.trace.add(`${instance.name} enters view ${view}`)
      },
      onCheckpoint: (stable, executed) => {
        this.stats.checkpoints++
        this.trace.add(`${instance.name} stable checkpoint s${stable} (executed s${executed})`)
      },
      onRejected: reason => {
        this.stats.rejected++
        this.rejections.set(reason, (this.rejections.get(reason) ?? 0) + 1)
      }
    }
  }

  private transport (instance: SimReplicaInstance, alive: () => boolean): PbftTransport {
    return {
      send: (to, message) => {
        if (!alive()) { return }
        if (instance.honest) { this.checked(() => { this.invariants.send(instance.id, message, instance.disk.durable) }) }
        const envelope = (m: PbftMessage, t: NodeId): Envelope => ({ from: instance.id, to: t, sender: instance.name, message: m })
        if (instance.adversary === null) {
          this.network.send(envelope(message, to))
          return
        }
        for (const { delayMs, outbound } of instance.adversary.rewrite({ to, message })) {
          if (delayMs === 0) {
            this.network.send(envelope(outbound.message, outbound.to))
          } else {
            this.scheduler.after(delayMs, () => { if (alive()) { this.network.send(envelope(outbound.message, outbound.to)) } })
          }
        }
      },
      fetchState: async (from, seq) => {
        this.stats.fetches++
        return new Promise<Uint8Array | null>(resolve => {
          const target = this.targets(instance.name, instance.id, from)[0]
          const reachable = target?.alive === true && !this.network.isCut(instance.id, from) && !this.network.isCut(from, instance.id)
          if (!reachable) {
            this.scheduler.after(FETCH_TIMEOUT_MS, () => { resolve(null) })
            return
          }
          this.scheduler.after(this.network.latencyMs(), () => {
            const data = target.alive ? target.driver?.serveState(seq) ?? null : null
            this.trace.add(`${target.name} serves state s${seq} to ${instance.name}: ${data === null ? 'none' : `${data.length} bytes`}`)
            this.scheduler.after(this.network.latencyMs(), () => { resolve(data === null ? null : data.slice()) })
          })
        })
      }
    }
  }

  /** The instances a message from `sender` (instance name) with id `from` to `to` reaches (twins: by their groups). */
  private targets (sender: string, from: NodeId, to: NodeId): SimReplicaInstance[] {
    const senderGroup = this.twinGroups.get(sender)
    if (senderGroup !== undefined && !senderGroup.has(to) && this.replicaIds.includes(to)) { return [] }
    return this.instances.filter(i => {
      if (i.id !== to) { return false }
      const group = this.twinGroups.get(i.name)
      // clients reach both twins; replicas the twin whose group they are in
      return group === undefined || !this.replicaIds.includes(from) || group.has(from)
    })
  }

  private deliver (envelope: Envelope): DeliveryOutcome {
    const { from, to, message, sender } = envelope
    const client = this.clients.find(c => c.id === to)?.driver ?? this.otherClients.get(to)
    if (client !== undefined) {
      if (message.type === 'reply') { client.receive(message as Reply, from) }
      return 'delivered'
    }
    const targets = this.targets(sender, from, to).filter(t => t.alive && t.driver !== null)
    if (targets.length === 0) {
      this.trace.add(`lost (down) ${describeEnvelope(envelope)}`)
      return 'lost'
    }
    for (const target of targets) {
      target.adversary?.observe(message)
      const result = target.driver?.receive(message, from)
      this.trace.add(`${target.name} recv ${describeEnvelope(envelope)}${result?.ok === false ? ` REJECTED ${result.reason}${result.detail === undefined ? '' : ` (${result.detail})`}` : ''}`)
      // (with a weak quorum, the certificates of honest replicas fail the others' checks, which count a true quorum)
      if (result?.ok === false && (result.reason === 'malformed' || result.reason === 'bad-signature') && target.honest && this.isHonestSender(sender) && this.options.sabotage !== 'weak-quorum') {
        this.fail('protocol', `${target.name} rejected a message from honest ${sender} as ${result.reason}: ${describeEnvelope(envelope)} ${result.detail ?? ''}`)
      }
    }
    return 'delivered'
  }

  private isHonestSender (sender: string): boolean {
    if (this.clients.some(c => c.id === sender) || this.otherClients.has(sender)) { return true }
    return this.instances.find(i => i.name === sender)?.honest === true
  }
}

export function describeEnvelope ({ from, to, sender, message }: Envelope): string {
  const head = `${sender === from ? from : sender}->${to}`
  switch (message.type) {
    case 'request':
      return `request ${head} ${message.client}#${message.timestamp}${message.readOnly ? ' ro' : ''}`
    case 'reply':
      return `reply ${head} ${message.client}#${message.timestamp} v${message.view}${message.readOnly ? ' ro' : ''}`
    case 'fetch-committed':
      return `fetch-committed ${head} from s${message.fromSeq}`
    case 'committed-batches':
      return `committed-batches ${head} [${message.certificates.map(c => c.prePrepare.seq).join(',')}]`
    case 'configuration':
      return `configuration ${head} epoch ${message.state.latest.epoch} (${message.state.latest.replicas.join(',')} after s${message.state.latest.afterSeq})`
    default:
      return `${describeSigned(message as SignedMessage)} ${head}${message.replica !== from ? ` as ${message.replica}` : ''}`
  }
}
