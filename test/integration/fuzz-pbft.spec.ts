/**
 * Fuzzing PBFT's libp2p protocols from outside, over real libp2p (TCP +
 * Noise + yamux on loopback): /accord/pbft/1.0.0 and
 * /accord/pbft-state/1.0.0 of a replica set of four (three honest accord
 * nodes and a fourth replica whose key the fuzzer holds), from a stranger,
 * from an admitted client outside the set, and from the fourth replica,
 * first with valid signatures of its own only and then with forged ones
 * and equivocations (test/lib/protocol-fuzz.ts: startPbftFuzzBed says
 * which outcomes each attacker may cause). CI's bounded run; longer runs:
 * `npm run fuzz:protocols -- --protocol pbft --frames N [--seed S]`.
 *
 * Every failure names the seed and the command that replays it: the
 * generator's choices replay from the seed; peer ids are new on every run,
 * and streams race.
 */
import { expect } from 'aegir/chai'
import { PeerKeyVerifier } from '../../node/pbft/crypto.ts'
import { evidenceTopic } from '../../node/pbft/evidence-topic.ts'
import { PBFT_PROTOCOL, PBFT_STATE_PROTOCOL } from '../../node/pbft/transport.ts'
import { createRng } from '../../protocols/common/rng.ts'
import { checkEvidence, decodeEvidence, decodeMessage, signingPayload } from '../../protocols/pbft/index.ts'
import {
  attackPbft, checkPbftHealthy, delta, evidenceGenerator, fuzzIdentity, HEAP_GROWTH_BYTES_MAX, pbftFrameGenerator, pbftIsolationProblems, pbftRejections,
  pbftTransportStats, PBFT_FUZZ_PROTOCOLS, publishEvidence, refusalsByReason, settledMemory, startPbftFuzzBed, stopPbftFuzzBed, sumCounts,
  syntheticPeerId, waitForPbftAttackStreamsGone, watchProcessErrors
} from '../lib/protocol-fuzz.ts'
import { waitFor } from '../lib/wait.ts'
import type { PbftCrypto, PbftMessage, SignedMessage } from '../../protocols/pbft/types.ts'
import type { DriveStats, MemorySample, PbftAttacker, PbftFuzzBed, PbftFuzzContext, PbftFuzzProtocol } from '../lib/protocol-fuzz.ts'

const SEED = 20_261_204
/** Messages published on the evidence topic by each attacker. */
const EVIDENCE = 60
/** Frames per protocol and attacker, split between the three honest replicas. */
const FRAMES: Record<PbftAttacker | 'replica-isolating', Record<PbftFuzzProtocol, number>> = {
  stranger: { pbft: 120, 'pbft-state': 12 },
  client: { pbft: 900, 'pbft-state': 120 },
  replica: { pbft: 900, 'pbft-state': 120 },
  'replica-isolating': { pbft: 300, 'pbft-state': 0 }
}

const replay = (phase: keyof typeof FRAMES, protocol: PbftFuzzProtocol = 'pbft'): string =>
  `seed ${SEED}; replay: npm run fuzz:protocols -- --seed ${SEED} --protocol ${protocol} (phase ${phase}, ${FRAMES[phase][protocol]} frames)`

function outcomes (runs: DriveStats[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const run of runs) {
    for (const [k, v] of Object.entries(run.outcomes)) { out[k] = (out[k] ?? 0) + v }
  }
  return out
}

const written = (runs: DriveStats[]): number => runs.reduce((n, r) => n + r.framesWritten, 0)

/** The length-prefixed frames of `wire`, as far as its prefixes are honest. */
function framesOf (wire: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = []
  let at = 0
  while (at < wire.byteLength) {
    let length = 0
    let scale = 1
    let i = at
    for (; i < wire.byteLength && i - at < 8; i++, scale *= 0x80) {
      length += (wire[i] & 0x7f) * scale
      if (wire[i] < 0x80) { break }
    }
    if (i >= wire.byteLength || wire[i] >= 0x80 || i + 1 + length > wire.byteLength) { return out }
    out.push(wire.subarray(i + 1, i + 1 + length))
    at = i + 1 + length
  }
  return out
}

const isSigned = (m: PbftMessage): m is SignedMessage => !['request', 'reply', 'fetch-committed', 'committed-batches', 'configuration'].includes(m.type)

/** What frames claim `self` signed: how many signatures do not verify, and how many slots got a second digest. */
class OwnSignatures {
  readonly #self: string
  readonly #verifier = new PeerKeyVerifier()
  readonly #slots = new Map<string, string>()
  broken = 0
  equivocations = 0

  constructor (self: string) { this.#self = self }

  add (wire: Uint8Array): void {
    for (const frame of framesOf(wire)) {
      const decoded = decodeMessage(frame)
      if (!decoded.ok || !isSigned(decoded.message) || decoded.message.replica !== this.#self) { continue }
      const m = decoded.message
      if (!this.#verifier.verify(this.#self, signingPayload(m), m.signature)) { this.broken++ }
      if (m.type === 'view-change' || m.type === 'new-view') { continue }
      const [slot, digest] = m.type === 'checkpoint' ? [`checkpoint/${m.seq}`, m.stateDigest] : [`${m.type}/${m.view}/${m.seq}`, m.digest]
      if (this.#slots.has(slot) && this.#slots.get(slot) !== digest) { this.equivocations++ }
      this.#slots.set(slot, digest)
    }
  }
}

/** Totals of every honest replica, before and after a phase. */
interface Counters {
  rejected: Array<Record<string, number>>
  transport: Array<ReturnType<typeof pbftTransportStats>>
  refused: Array<Record<string, Record<string, number>>>
  /** Refusals on the evidence topic. */
  evidence: Array<Record<string, number>>
}

async function counters (bed: PbftFuzzBed): Promise<Counters> {
  return {
    rejected: await Promise.all(bed.honest.map(pbftRejections)),
    transport: bed.honest.map(pbftTransportStats),
    refused: await Promise.all(bed.honest.map(async n => ({
      [PBFT_PROTOCOL]: await refusalsByReason(n, PBFT_PROTOCOL),
      [PBFT_STATE_PROTOCOL]: await refusalsByReason(n, PBFT_STATE_PROTOCOL)
    }))),
    evidence: await Promise.all(bed.honest.map(async n => refusalsByReason(n, evidenceTopic(bed.clusterName))))
  }
}

/** Core and transport rejections (accord_pbft_rejected_total) of all honest replicas since `before`, by reason. */
function rejectedSince (before: Counters, after: Counters): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [i, r] of after.rejected.entries()) {
    for (const [k, v] of Object.entries(delta(before.rejected[i], r))) { out[k] = (out[k] ?? 0) + v }
  }
  return out
}

/**
 * Both protocols and the evidence topic from `attacker` at once, once its
 * streams are gone: most frames were written, the targets ended every
 * stream, and the forged evidence was refused and counted.
 */
async function attackBoth (b: PbftFuzzBed, attacker: 'client' | 'replica'): Promise<{ runs: DriveStats[][], before: Counters, after: Counters }> {
  const before = await counters(b)
  const [runs, evidence] = await Promise.all([
    Promise.all(PBFT_FUZZ_PROTOCOLS.map(async protocol => attackPbft(b, { attacker, protocol, frames: FRAMES[attacker][protocol], seed: SEED }))),
    publishEvidence(b, { attacker, count: EVIDENCE, seed: SEED })
  ])
  await waitForPbftAttackStreamsGone(b)
  expect(evidence.published, `evidence messages published (${replay(attacker)})`).to.be.greaterThan(0)
  await waitFor(async () => (await counters(b)).evidence.some((e, i) => (delta(before.evidence[i], e)['invalid-evidence'] ?? 0) > 0), 'forged evidence to be refused and counted', 30_000)
  for (const [p, protocol] of PBFT_FUZZ_PROTOCOLS.entries()) {
    expect(written(runs[p]), `${protocol}: frames written (${replay(attacker, protocol)})`).to.be.greaterThan(FRAMES[attacker][protocol] / 2)
    expect(outcomes(runs[p]).timeout ?? 0, `${protocol}: streams the target never answered nor closed (${replay(attacker, protocol)})`).to.equal(0)
  }
  return { runs, before, after: await counters(b) }
}

/** Runs `body` while recording unhandled rejections, and fails on any: a handler let an error escape. */
async function watched (body: () => Promise<void>): Promise<void> {
  const watch = watchProcessErrors()
  try {
    await body()
    expect(watch.errors, `unhandled rejections (seed ${SEED})`).to.deep.equal([])
  } finally {
    watch.stop()
  }
}

describe('fuzzing PBFT\'s protocols from outside (4 replicas, real libp2p over TCP on loopback)', function () {
  this.timeout(300_000)
  let bed: PbftFuzzBed | undefined
  let memoryBefore: MemorySample

  before(async function () {
    this.timeout(120_000)
    bed = await startPbftFuzzBed()
    memoryBefore = await settledMemory()
  })

  after(async () => {
    await stopPbftFuzzBed(bed)
  })

  it('the frame generator replays from its seed, makes every kind of frame, and without `isolating` never breaks the replica attacker\'s own signature nor signs two digests for a slot', () => {
    const rng = createRng(7)
    const self = fuzzIdentity(Uint8Array.from({ length: 32 }, (_, i) => i))
    const replicas = [self.id, syntheticPeerId(rng), syntheticPeerId(rng), syntheticPeerId(rng)].sort()
    const context = (isolating: boolean, target: string): PbftFuzzContext => ({ self: self.id, sign: self.sign, target, replicas, view: 2, executed: 10, low: 0, high: 256, isolating })
    for (const protocol of PBFT_FUZZ_PROTOCOLS) {
      const [a, b, other] = [pbftFrameGenerator(protocol, 42, context(false, replicas[0])), pbftFrameGenerator(protocol, 42, context(false, replicas[0])), pbftFrameGenerator(protocol, 43, context(false, replicas[0]))]
      // a second target's generator: slots signed for both must agree
      const second = pbftFrameGenerator(protocol, 44, context(false, replicas[1]))
      const kinds = new Set<string>()
      let same = true
      let differs = false
      let invalidValid = 0
      const own = new OwnSignatures(self.id)
      for (let i = 0; i < 600; i++) {
        const [x, y, z, w] = [a(), b(), other(), second()]
        same &&= x.label === y.label && Buffer.compare(x.wire, y.wire) === 0
        differs ||= Buffer.compare(x.wire, z.wire) !== 0
        kinds.add(x.label.replace(/:.*$/, ''))
        if (protocol !== 'pbft') { continue }
        if (x.label.startsWith('valid:') && !decodeMessage(framesOf(x.wire)[0] ?? new Uint8Array(0)).ok) { invalidValid++ }
        own.add(x.wire)
        own.add(w.wire)
      }
      expect(same, `${protocol}: the same seed gives the same frames`).to.equal(true)
      expect(differs, `${protocol}: another seed gives other frames`).to.equal(true)
      expect([...kinds], protocol).to.include.members(['random', 'mutated', protocol === 'pbft' ? 'forged' : 'edit', 'prefix', 'valid', 'hostile'])
      expect([...kinds], protocol).to.not.include('generator-error')
      expect(invalidValid, 'valid PBFT frames the decoder refuses').to.equal(0)
      expect(own.broken, 'frames of the replica attacker, without isolating, whose own signature does not verify').to.equal(0)
      expect(own.equivocations, 'slots the replica attacker, without isolating, signed with two digests').to.equal(0)
    }
    // with isolating: forged signatures of its own, and equivocations
    const isolating = pbftFrameGenerator('pbft', 42, context(true, replicas[0]))
    const labels = new Set<string>()
    const own = new OwnSignatures(self.id)
    for (let i = 0; i < 1500; i++) {
      const frame = isolating()
      labels.add(frame.label)
      own.add(frame.wire)
    }
    expect([...labels], 'labels with isolating').to.include.members(['hostile:equivocation', 'forged:other-key', 'forged:flipped'])
    expect(own.broken, 'frames with a forged signature of the attacker\'s own').to.be.greaterThan(0)
    expect(own.equivocations, 'slots signed with two digests').to.be.greaterThan(0)

    // evidence: the same from the same seed, every piece refused without isolating, and real equivocations with it
    const evidenceVerifier = new PeerKeyVerifier()
    const crypto: PbftCrypto = { sign: self.sign, verify: (signer, payload, signature) => evidenceVerifier.verify(signer, payload, signature), digest: () => '' }
    for (const isolatingEvidence of [false, true]) {
      const [e1, e2] = [evidenceGenerator(5, context(isolatingEvidence, replicas[0])), evidenceGenerator(5, context(isolatingEvidence, replicas[0]))]
      const accepted = new Set<string>()
      for (let i = 0; i < 300; i++) {
        const [x, y] = [e1(), e2()]
        expect(x.label === y.label && Buffer.compare(x.data, y.data) === 0, 'evidence: the same seed gives the same messages').to.equal(true)
        const decoded = decodeEvidence(x.data)
        if (decoded.ok && checkEvidence(decoded.evidence, replicas, crypto).ok) { accepted.add(`${x.label} against ${decoded.evidence.offender === self.id ? 'self' : 'another'}`) }
      }
      expect([...accepted], `evidence a replica would act on (isolating ${String(isolatingEvidence)})`).to.deep.equal(isolatingEvidence ? ['equivocation against self'] : [])
    }
  })

  it('a stranger is refused on both PBFT protocols by admission\'s gate: nothing reaches the transport, nobody is isolated, and writes commit', async () => {
    const b = bed!
    await watched(async () => {
      const before = await counters(b)
      const runs = await Promise.all(PBFT_FUZZ_PROTOCOLS.map(async protocol => attackPbft(b, { attacker: 'stranger', protocol, frames: FRAMES.stranger[protocol], seed: SEED })))
      await waitForPbftAttackStreamsGone(b)
      for (const [p, protocol] of PBFT_FUZZ_PROTOCOLS.entries()) {
        const id = protocol === 'pbft' ? PBFT_PROTOCOL : PBFT_STATE_PROTOCOL
        expect(written(runs[p]), `${protocol}: frames the stranger wrote (${replay('stranger', protocol)})`).to.be.greaterThan(0)
        expect(Object.keys(outcomes(runs[p])).filter(k => k.startsWith('answer:')), `${protocol}: answers the stranger got (${replay('stranger', protocol)})`).to.deep.equal([])
        // each refusal comes once the stream waited out admission (5 s)
        for (const [i, target] of b.honest.entries()) {
          await waitFor(async () => (delta(before.refused[i][id], await refusalsByReason(target, id))['not-admitted'] ?? 0) > 0, `${protocol}: the stranger's streams to be refused`, 30_000)
        }
      }
      const after = await counters(b)
      for (const [i, stats] of after.transport.entries()) {
        expect(sumCounts(delta(before.transport[i].rejected, stats.rejected)), `frames of the stranger rejected by the PBFT transport (it must never see them) (${replay('stranger')})`).to.equal(0)
      }
      for (const target of b.honest) { expect(target.admission.isAdmitted(b.stranger.peerId.toString()), 'the stranger was admitted').to.equal(false) }
      expect(await checkPbftHealthy(b, 'stranger'), `the replicas after the stranger (${replay('stranger')})`).to.deep.equal([])
    })
  })

  it('an admitted client outside the replica set: malformed frames and bad signatures are rejected and counted, it is never isolated, and writes commit', async () => {
    const b = bed!
    await watched(async () => {
      const { runs, before, after } = await attackBoth(b, 'client')
      for (const [i, stats] of after.transport.entries()) {
        expect(delta(before.transport[i].rejected, stats.rejected).malformed ?? 0, `frames the PBFT transport of replica ${i} rejected as malformed (${replay('client')})`).to.be.greaterThan(0)
        expect(stats.messagesReceived - before.transport[i].messagesReceived, 'PBFT messages delivered').to.be.greaterThan(0)
      }
      const rejected = rejectedSince(before, after)
      expect(rejected, `rejections counted by reason (${replay('client')})`).to.include.keys('malformed', 'not-a-replica', 'bad-signature')
      const stateAnswers = outcomes(runs[1])
      expect((stateAnswers['answer:state'] ?? 0) + (stateAnswers['answer:no-state'] ?? 0), 'state requests answered').to.be.greaterThan(0)
      // a bad state request is counted with the transport's (malformed, above) and its stream reset
      expect(stateAnswers.reset ?? 0, 'bad state requests refused').to.be.greaterThan(0)
      expect(await checkPbftHealthy(b, 'client'), `the replicas after the client (${replay('client')})`).to.deep.equal([])
    })
  })

  it('the fourth replica, with valid signatures of its own only: its hostile messages reach the core and are refused and counted, it is not isolated, and writes commit', async () => {
    const b = bed!
    await watched(async () => {
      const { before, after } = await attackBoth(b, 'replica')
      const rejected = rejectedSince(before, after)
      expect(rejected, `rejections counted by reason (${replay('replica')})`).to.include.keys('malformed', 'wrong-sender', 'not-primary', 'bad-signature')
      expect(pbftIsolationProblems(b, false), `isolations (${replay('replica')})`).to.deep.equal([])
      expect(await checkPbftHealthy(b, 'replica'), `the replicas after the fourth replica (${replay('replica')})`).to.deep.equal([])
    })
  })

  it('the fourth replica, forging signatures and equivocating: the honest replicas refuse and count it, may isolate it (and only it), still agree on writes, and the heap stays bounded', async () => {
    const b = bed!
    await watched(async () => {
      const before = await counters(b)
      const runs = await attackPbft(b, { attacker: 'replica', protocol: 'pbft', frames: FRAMES['replica-isolating'].pbft, seed: SEED, isolating: true })
      await waitForPbftAttackStreamsGone(b)
      // then evidence with real equivocations among the forged: a replica that did not isolate it yet may now, for equivocation
      await publishEvidence(b, { attacker: 'replica', count: EVIDENCE, seed: SEED, isolating: true })
      expect(written(runs), `frames written (${replay('replica-isolating')})`).to.be.greaterThan(0)
      const rejected = rejectedSince(before, await counters(b))
      expect(rejected['bad-signature'] ?? 0, `bad signatures counted (${replay('replica-isolating')})`).to.be.greaterThan(0)
      const byzantine = b.byzantine.libp2p.peerId.toString()
      // the forged signatures are many: at least one honest replica saw one and isolated the replica that sent it
      const isolatedBy = b.honest.filter(n => n.bft!.summary().isolated.some(e => e.peerId === byzantine))
      expect(isolatedBy.length, `honest replicas that isolated the forging replica (${replay('replica-isolating')})`).to.be.greaterThan(0)
      expect(await checkPbftHealthy(b, 'replica-isolating', { byzantineMayBeIsolated: true }), `the replicas after the forging replica (${replay('replica-isolating')})`).to.deep.equal([])

      const memoryAfter = await settledMemory()
      const growth = (memoryAfter.heapUsed + memoryAfter.arrayBuffers) - (memoryBefore.heapUsed + memoryBefore.arrayBuffers)
      expect(growth, `heap + ArrayBuffer growth after every attacker, in bytes (seed ${SEED})`).to.be.at.most(HEAP_GROWTH_BYTES_MAX)
    })
  })
})
