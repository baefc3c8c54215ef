/**
 * A synchronous in-memory cluster of PBFT cores for unit tests: a FIFO
 * network with a drop filter, durable records per replica, a toy state
 * machine (the list of executed request keys) with snapshots at
 * checkpoints, and a cheap deterministic test crypto.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { expect } from 'aegir/chai'
import { bytesToDigest } from '../../protocols/pbft/encoding.ts'
import { PbftReplica, signRequest, signingPayload, batchDigest } from '../../protocols/pbft/index.ts'
import type {
  ClientRequest, ConfigurationState, Digest, Evidence, ExecutableBatch, Isolation, NodeId, PbftCrypto, PbftLimits, PbftMessage, PbftReady, PbftThresholdGroup,
  PersistRecord, ReconfigurationOutcome, ReplicaMessage, SignedMessage, StepResult
} from '../../protocols/pbft/index.ts'

const utf8 = new TextEncoder()

/** signature = sha256(secret(signer) ‖ payload): anyone who knows the secrets (the tests) can check it; a wrong signer fails. */
export function testCrypto (self: NodeId): PbftCrypto {
  const signWith = (signer: NodeId, payload: Uint8Array): Uint8Array => {
    const secret = utf8.encode(`secret:${signer}:`)
    const data = new Uint8Array(secret.length + payload.length)
    data.set(secret)
    data.set(payload, secret.length)
    return sha256(data)
  }
  return {
    sign: payload => signWith(self, payload),
    verify: (signer, payload, signature) => {
      const expected = signWith(signer, payload)
      return signature.length === expected.length && expected.every((byte, i) => byte === signature[i])
    },
    digest: data => bytesToDigest(sha256(data))
  }
}

export function sign<T extends SignedMessage> (message: Omit<T, 'signature'>): T {
  const unsigned = { ...message, signature: new Uint8Array(0) } as unknown as T
  return { ...unsigned, signature: testCrypto(message.replica).sign(signingPayload(unsigned)) }
}

export function clientRequest (client: NodeId, timestamp: number, text = `op-${client}-${timestamp}`): ClientRequest {
  return signRequest({ client, timestamp, operation: utf8.encode(text), readOnly: false }, testCrypto(client))
}

export function digestOf (batch: ClientRequest[]): Digest {
  return batchDigest(batch, testCrypto('x'))
}

interface Envelope { from: NodeId, to: NodeId, message: PbftMessage }

interface ReplicaState {
  /** Request keys executed, in order. */
  executed: string[]
  /** seq → how many request keys were executed through it. */
  lengthAt: Map<number, number>
  /** The batch digest executed at each seq. */
  digests: Map<number, Digest>
  lastSeq: number
  /** What the state holds of configurations (an accepted reconfiguration sets it; null: the genesis set). */
  configuration: ConfigurationState | null
}

export class Cluster {
  /** Every node: the genesis replicas, then the learners. */
  readonly ids: NodeId[]
  /** The genesis replica set. */
  readonly genesis: NodeId[]
  readonly limits: Partial<PbftLimits>
  readonly replicas = new Map<NodeId, PbftReplica>()
  readonly records = new Map<NodeId, PersistRecord[]>()
  /** Durable snapshots by replica: seq → executed request keys. */
  readonly snapshots = new Map<NodeId, Map<number, string[]>>()
  /** The configuration each snapshot holds. */
  readonly snapshotConfigurations = new Map<NodeId, Map<number, ConfigurationState | null>>()
  /** The core's verdicts on reconfigurations, by replica, in execution order. */
  readonly reconfigurations = new Map<NodeId, ReconfigurationOutcome[]>()
  readonly states = new Map<NodeId, ReplicaState>()
  readonly evidence = new Map<NodeId, Evidence[]>()
  readonly isolated = new Map<NodeId, Isolation[]>()
  readonly readies = new Map<NodeId, PbftReady[]>()
  /** Replies of the last step of each envelope, for tests that look at rejections. */
  readonly results: Array<{ envelope: Envelope, result: StepResult }> = []
  readonly down = new Set<NodeId>()
  queue: Envelope[] = []
  /** Return false to drop an envelope. */
  filter: (envelope: Envelope) => boolean = () => true
  /** Replicas whose checkpointTaken is withheld (a slow state machine). */
  readonly noCheckpoints = new Set<NodeId>()

  readonly cryptoFor: (id: NodeId) => PbftCrypto
  /** The threshold group each replica was given (setGroup); a restarted replica gets it again. */
  readonly groups = new Map<NodeId, PbftThresholdGroup>()

  /** `learners` more nodes (r<n>, ...) start outside the genesis set, as learners. */
  constructor (n: number, limits: Partial<PbftLimits> = {}, cryptoFor: (id: NodeId) => PbftCrypto = testCrypto, learners = 0) {
    this.ids = Array.from({ length: n + learners }, (_, i) => `r${i}`)
    this.genesis = this.ids.slice(0, n)
    this.limits = limits
    this.cryptoFor = cryptoFor
    for (const id of this.ids) {
      this.records.set(id, [])
      this.snapshots.set(id, new Map([[0, []]]))
      this.snapshotConfigurations.set(id, new Map([[0, null]]))
      this.reconfigurations.set(id, [])
      this.evidence.set(id, [])
      this.isolated.set(id, [])
      this.readies.set(id, [])
      this.states.set(id, emptyState())
      this.replicas.set(id, new PbftReplica({ id, replicas: this.genesis, crypto: cryptoFor(id), limits }))
    }
  }

  /** Gives `ids` (default: every node) the threshold group (compact checkpoint certificates); null withdraws it. */
  setGroup (groupFor: ((id: NodeId) => PbftThresholdGroup) | null, ids: readonly NodeId[] = this.ids): void {
    for (const id of ids) {
      const group = groupFor?.(id) ?? null
      if (group === null) { this.groups.delete(id) } else { this.groups.set(id, group) }
      this.replica(id).setThresholdGroup(group)
    }
  }

  replica (id: NodeId): PbftReplica {
    const replica = this.replicas.get(id)
    if (replica === undefined) { throw new Error(`no replica ${id}`) }
    return replica
  }

  state (id: NodeId): ReplicaState {
    return this.states.get(id) ?? emptyState()
  }

  /** A client request handed to `to` (as if it came from the client directly). */
  submit (to: NodeId, request: ClientRequest): StepResult {
    return this.replica(to).request(request)
  }

  /** Runs readies and deliveries until nothing moves (or the step budget runs out). */
  drain (stepsMax = 100_000): void {
    for (let steps = 0; steps < stepsMax; steps++) {
      let moved = false
      for (const id of this.ids) {
        if (this.down.has(id)) { continue }
        const replica = this.replica(id)
        if (replica.hasReady()) {
          this.processReady(id)
          moved = true
        }
      }
      const envelope = this.queue.shift()
      if (envelope !== undefined) {
        this.deliver(envelope)
        moved = true
      }
      if (!moved) { return }
    }
    throw new Error('cluster did not settle')
  }

  deliver (envelope: Envelope): void {
    if (this.down.has(envelope.to) || !this.filter(envelope)) { return }
    const replica = this.replicas.get(envelope.to)
    if (replica === undefined) { return }
    const { message } = envelope
    let result: StepResult
    if (message.type === 'request') {
      result = replica.request(message)
    } else if (message.type === 'reply') {
      return
    } else {
      result = replica.step(message, envelope.from)
    }
    this.results.push({ envelope, result })
  }

  /** Every replica ticks `ticks` times, draining in between. */
  tick (ticks = 1): void {
    for (let i = 0; i < ticks; i++) {
      for (const id of this.ids) {
        if (!this.down.has(id)) { this.replica(id).tick() }
      }
      this.drain()
    }
  }

  processReady (id: NodeId): void {
    const replica = this.replica(id)
    const ready = replica.ready()
    this.readies.get(id)?.push(ready)
    this.expectSignedPersisted(id, ready)
    this.records.get(id)?.push(...ready.persist)
    for (const { to, message } of ready.messages) { this.queue.push({ from: id, to, message }) }
    const state = this.state(id)
    for (const batch of ready.execute) { this.execute(id, state, batch) }
    this.evidence.get(id)?.push(...ready.evidence)
    this.isolated.get(id)?.push(...ready.isolated)
    replica.advance()
    if (!this.noCheckpoints.has(id)) {
      for (const seq of ready.checkpointsDue) { replica.checkpointTaken(seq, this.stateDigest(id, seq)) }
    }
    if (ready.stateWanted !== null) { this.installState(id, ready.stateWanted) }
  }

  /** Durability before signing: whatever this replica signed and sends is persisted in the same Ready (or was before). */
  expectSignedPersisted (id: NodeId, ready: PbftReady): void {
    const persistedSigned = new Set(ready.persist.filter(r => r.kind === 'signed').map(r => (r as { message: SignedMessage }).message))
    const everSigned = new Set(this.records.get(id)?.filter(r => r.kind === 'signed').map(r => (r as { message: SignedMessage }).message))
    for (const { message } of ready.messages) {
      if (message.type !== 'request' && message.type !== 'reply' && message.type !== 'fetch-committed' && message.type !== 'committed-batches' && message.type !== 'configuration' && message.replica === id) {
        expect(persistedSigned.has(message) || everSigned.has(message), `${id} sends an unpersisted ${message.type}`).to.equal(true)
      }
    }
  }

  /** State transfer: the snapshot of the first holder that has it, checked against the proven digest. */
  installState (id: NodeId, wanted: NonNullable<PbftReady['stateWanted']>): void {
    const replica = this.replica(id)
    const { checkpoint, holders } = wanted
    for (const holder of holders) {
      const snapshot = this.snapshots.get(holder)?.get(checkpoint.seq)
      if (snapshot === undefined || digestOfKeys(snapshot) !== checkpoint.stateDigest) { continue }
      const configuration = this.snapshotConfigurations.get(holder)?.get(checkpoint.seq) ?? null
      this.states.set(id, { executed: [...snapshot], lengthAt: new Map([[checkpoint.seq, snapshot.length]]), digests: new Map(), lastSeq: checkpoint.seq, configuration })
      this.snapshots.get(id)?.set(checkpoint.seq, [...snapshot])
      this.snapshotConfigurations.get(id)?.set(checkpoint.seq, configuration)
      replica.stateInstalled(checkpoint, configuration ?? undefined)
      break
    }
  }

  execute (id: NodeId, state: ReplicaState, batch: ExecutableBatch): void {
    expect(batch.seq, `${id} executes in order`).to.equal(state.lastSeq + 1)
    state.lastSeq = batch.seq
    for (const request of batch.requests) { state.executed.push(`${request.client}@${request.timestamp}`) }
    for (const outcome of batch.reconfigurations ?? []) {
      this.reconfigurations.get(id)?.push(outcome)
      // the state holds the configuration: its digest covers it
      if (outcome.ok) {
        state.configuration = outcome.state
        state.executed.push(`epoch ${outcome.state.latest.epoch}: ${outcome.state.latest.replicas.join(',')} after ${outcome.state.latest.afterSeq}`)
      }
    }
    state.lengthAt.set(batch.seq, state.executed.length)
    state.digests.set(batch.seq, digestOf(batch.requests))
    if (batch.seq % (this.limits.checkpointInterval ?? 64) === 0) {
      this.snapshots.get(id)?.set(batch.seq, [...state.executed])
      this.snapshotConfigurations.get(id)?.set(batch.seq, state.configuration)
    }
  }

  stateDigest (id: NodeId, seq: number): Digest {
    const state = this.state(id)
    const length = state.lengthAt.get(seq)
    if (length === undefined) { throw new Error(`${id} has no state at ${seq}`) }
    return digestOfKeys(state.executed.slice(0, length))
  }

  /** Stops a replica: its messages in flight are lost, its records and snapshots stay. */
  crash (id: NodeId): void {
    this.down.add(id)
    this.queue = this.queue.filter(e => e.to !== id && e.from !== id)
  }

  /** Restarts a crashed replica from its records and its latest snapshot at a stable checkpoint. */
  restart (id: NodeId): void {
    this.down.delete(id)
    const records = this.records.get(id) ?? []
    let stable = 0
    for (const record of records) {
      if (record.kind === 'stable') { stable = Math.max(stable, record.checkpoint.seq) }
    }
    const snapshot = this.snapshots.get(id)?.get(stable) ?? []
    const configuration = this.snapshotConfigurations.get(id)?.get(stable) ?? null
    this.states.set(id, { executed: [...snapshot], lengthAt: new Map([[stable, snapshot.length]]), digests: new Map(), lastSeq: stable, configuration })
    this.replicas.set(id, new PbftReplica({
      id, replicas: this.genesis, crypto: this.cryptoFor(id), limits: this.limits, isolated: this.isolated.get(id), ...(configuration !== null ? { configuration } : {})
    }, { records: [...records] }))
    this.replica(id).setThresholdGroup(this.groups.get(id) ?? null)
  }

  /** Sends a hand-made message from `from` to `to` and returns the core's answer at once. */
  inject (from: NodeId, to: NodeId, message: ReplicaMessage): StepResult {
    return this.replica(to).step(message, from)
  }

  /** Safety: no two replicas executed different batches at one seq. */
  expectAgreement (): void {
    const bySeq = new Map<number, Digest>()
    for (const id of this.ids) {
      for (const [seq, digest] of this.state(id).digests) {
        const other = bySeq.get(seq)
        if (other !== undefined) { expect(digest, `seq ${seq} at ${id}`).to.equal(other) }
        bySeq.set(seq, digest)
      }
    }
  }
}

function emptyState (): ReplicaState {
  return { executed: [], lengthAt: new Map([[0, 0]]), digests: new Map(), lastSeq: 0, configuration: null }
}

function digestOfKeys (keys: string[]): Digest {
  return bytesToDigest(sha256(utf8.encode(keys.join('\n'))))
}
