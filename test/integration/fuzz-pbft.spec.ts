/**
 * Fuzzing PBFT's libp2p protocols from outside, over real libp2p (TCP +
 * Noise + yamux on loopback): /accord/pbft/1.0.0 and
 * /accord/pbft-state/1.0.0 of a replica set of four (three honest accord
 * nodes and a fourth replica whose key the fuzzer holds), from a stranger,
 * from an admitted client outside the set, and from the fourth replica,
 * first with valid signatures of its own only and then with forged ones
 * and equivocations (test/lib/protocol-fuzz.ts: startPbftFuzzBed says
 * which outcomes each attacker may cause); and evidence of both kinds on
 * the evidence topic (the four hold a DKG group, so that bad checkpoint
 * partials can be judged), forged by the client and the fourth replica,
 * refused and counted by reason, never isolating an honest replica. CI's bounded run; longer runs:
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
import { bytesToDigest } from '../../protocols/pbft/encoding.ts'
import { checkEvidence, checkpointGroupPayload, decodeEvidence, decodeMessage, signingPayload } from '../../protocols/pbft/index.ts'
import { FakeThresholdGroup } from '../lib/fake-threshold-group.ts'
import {
  attackPbft, checkPbftHealthy, delta, evidenceGenerator, fuzzIdentity, HEAP_GROWTH_BYTES_MAX, pbftFrameGenerator, pbftIsolationProblems, pbftRejections,
  pbftTransportStats, PBFT_FUZZ_PROTOCOLS, publishEvidence, refusalsByReason, settledMemory, startPbftFuzzBed, stopPbftFuzzBed, sumCounts,
  syntheticPeerId, waitForPbftAttackStreamsGone, watchProcessErrors
} from '../lib/protocol-fuzz.ts'
import { waitFor } from '../lib/wait.ts'
import type { EvidenceCheck } from '../../protocols/pbft/index.ts'
import type { Checkpoint, PbftCrypto, PbftMessage, SignedMessage } from '../../protocols/pbft/types.ts'
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

/** Refusals on the evidence topic (accord_refusals_total) of all honest replicas since `before`, by reason, and the evidence they ignored as unjudgeable (accord_pbft_rejected_total, unknown-set). */
function evidenceRefusedSince (before: Counters, after: Counters): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [i, e] of after.evidence.entries()) {
    for (const [k, v] of Object.entries(delta(before.evidence[i], e))) { out[k] = (out[k] ?? 0) + v }
  }
  const unjudgeable = rejectedSince(before, after)['unknown-set'] ?? 0
  return unjudgeable > 0 ? { ...out, 'unjudgeable (ignored)': unjudgeable } : out
}

/**
 * Bad-checkpoint-partial evidence alone from `attacker`, once its frames
 * are through (so that what the evidence topic counts now is this kind's):
 * refused and counted by reason, and from the replica attacker its own
 * checkpoints under another group also ignored as unjudgeable.
 */
async function badPartialEvidence (b: PbftFuzzBed, attacker: 'client' | 'replica'): Promise<Record<string, number>> {
  const before = await counters(b)
  const { published, labels } = await publishEvidence(b, { attacker, count: EVIDENCE, seed: SEED, kind: 'bad-checkpoint-partial' })
  expect(published, `bad-partial evidence messages published (${replay(attacker)})`).to.be.greaterThan(0)
  const wanted = attacker === 'replica' ? ['invalid-evidence', 'unjudgeable (ignored)'] : ['invalid-evidence']
  await waitFor(async () => { const refused = evidenceRefusedSince(before, await counters(b)); return wanted.every(k => (refused[k] ?? 0) > 0) }, 'bad-partial evidence to be refused and counted', 30_000)
  const refused = evidenceRefusedSince(before, await counters(b))
  // eslint-disable-next-line no-console
  console.log(`      bad-checkpoint-partial evidence from the ${attacker}: ${published} of ${EVIDENCE} published (${Object.keys(labels).length} labels); by reason, on the honest replicas: ${JSON.stringify(refused)}`)
  return refused
}

/**
 * Both protocols and the evidence topic from `attacker` at once, once its
 * streams are gone: most frames were written, the targets ended every
 * stream, and the forged equivocations were refused and counted; then
 * bad-partial evidence alone (badPartialEvidence).
 */
async function attackBoth (b: PbftFuzzBed, attacker: 'client' | 'replica'): Promise<{ runs: DriveStats[][], before: Counters, after: Counters, badPartials: Record<string, number> }> {
  const before = await counters(b)
  const [runs, evidence] = await Promise.all([
    Promise.all(PBFT_FUZZ_PROTOCOLS.map(async protocol => attackPbft(b, { attacker, protocol, frames: FRAMES[attacker][protocol], seed: SEED }))),
    publishEvidence(b, { attacker, count: EVIDENCE, seed: SEED, kind: 'equivocation' })
  ])
  await waitForPbftAttackStreamsGone(b)
  expect(evidence.published, `evidence messages published (${replay(attacker)})`).to.be.greaterThan(0)
  await waitFor(async () => (await counters(b)).evidence.some((e, i) => (delta(before.evidence[i], e)['invalid-evidence'] ?? 0) > 0), 'forged evidence to be refused and counted', 30_000)
  for (const [p, protocol] of PBFT_FUZZ_PROTOCOLS.entries()) {
    expect(written(runs[p]), `${protocol}: frames written (${replay(attacker, protocol)})`).to.be.greaterThan(FRAMES[attacker][protocol] / 2)
    expect(outcomes(runs[p]).timeout ?? 0, `${protocol}: streams the target never answered nor closed (${replay(attacker, protocol)})`).to.equal(0)
  }
  const badPartials = await badPartialEvidence(b, attacker)
  return { runs, before, after: await counters(b), badPartials }
}

/** What a checker holding the group does with a piece of evidence (null: it does not decode). */
function verdictOf (checked: EvidenceCheck | null): string {
  if (checked === null) { return 'undecodable' }
  if (checked.ok) { return 'accepted' }
  return checked.unjudgeable === true ? 'unjudgeable' : 'refused'
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
  })

  it('the evidence generator replays from its seed, makes bad-partial evidence of every sort, and without `isolating` nothing a replica holding the group would act on', () => {
    const self = fuzzIdentity(Uint8Array.from({ length: 32 }, (_, i) => i))
    // evidence: the same from the same seed, every piece refused without isolating, and real evidence of each kind with it
    const evidenceVerifier = new PeerKeyVerifier()
    const crypto: PbftCrypto = { sign: self.sign, verify: (signer, payload, signature) => evidenceVerifier.verify(signer, payload, signature), digest: () => '' }
    // honest replicas with keys (their checkpoints, partials under the group, to borrow), and the group a checker holds
    const honestIds = [1, 2, 3].map(i => fuzzIdentity(new Uint8Array(32).fill(i)))
    const set = [self.id, ...honestIds.map(h => h.id)].sort()
    const group = new FakeThresholdGroup(set, 3)
    const honestCheckpoints = honestIds.map(h => {
      const stateDigest = bytesToDigest(new Uint8Array(32).fill(9))
      const unsigned: Checkpoint = { type: 'checkpoint', replica: h.id, seq: 64, stateDigest, partial: group.partial(h.id, checkpointGroupPayload(64, stateDigest)), groupId: group.id, signature: new Uint8Array(0) }
      return { ...unsigned, signature: h.sign(signingPayload(unsigned)) }
    })
    const withGroup = (isolating: boolean): PbftFuzzContext => ({ self: self.id, sign: self.sign, target: set[0], replicas: set, view: 2, executed: 10, low: 0, high: 256, isolating, groupId: group.id, honestCheckpoints })
    const checker = group.for(honestIds[0].id)
    for (const isolatingEvidence of [false, true]) {
      const [e1, e2] = [evidenceGenerator(5, withGroup(isolatingEvidence)), evidenceGenerator(5, withGroup(isolatingEvidence))]
      const accepted = new Set<string>()
      /** Verdicts on the unmutated bad-partial pieces, by label. */
      const verdicts: Record<string, Set<string>> = {}
      for (let i = 0; i < 600; i++) {
        const [x, y] = [e1(), e2()]
        expect(x.label === y.label && Buffer.compare(x.data, y.data) === 0, 'evidence: the same seed gives the same messages').to.equal(true)
        const decoded = decodeEvidence(x.data)
        const checked = decoded.ok ? checkEvidence(decoded.evidence, set, crypto, checker) : null
        if (decoded.ok && checked?.ok === true) { accepted.add(`${x.label} against ${decoded.evidence.offender === self.id ? 'self' : 'another'}`) }
        if (/^(partial-|borrowed-)/.test(x.label)) { (verdicts[x.label] ??= new Set()).add(verdictOf(checked)) }
      }
      expect([...accepted].sort(), `evidence a replica would act on (isolating ${String(isolatingEvidence)})`).to.deep.equal(isolatingEvidence ? ['bad-checkpoint-partial against self', 'equivocation against self'] : [])
      expect(Object.keys(verdicts), 'bad-partial pieces made').to.include.members([
        'partial-forged-against-honest', 'partial-offender-outside-the-set', 'partial-unknown-group', 'partial-none', 'partial-without-group', 'partial-not-a-checkpoint',
        'partial-wrong-size', 'partial-presence-byte', 'partial-presence-in-version-2', 'partial-oversize',
        'borrowed-as-signed', 'borrowed-garbage-partial', 'borrowed-other-group', 'borrowed-without-group', 'borrowed-signature-flipped', 'borrowed-other-offender'
      ])
      // the checker holds the group: only a validly signed checkpoint of the attacker naming another group is unjudgeable; an honest one as signed is refused (its partial verifies)
      expect([...verdicts['partial-unknown-group']], 'a partial under another group').to.deep.equal(['unjudgeable'])
      expect([...verdicts['borrowed-as-signed']], 'an honest checkpoint as signed').to.deep.equal(['refused'])
      for (const label of ['partial-wrong-size', 'partial-presence-byte', 'partial-presence-in-version-2', 'partial-not-a-checkpoint']) {
        expect([...verdicts[label]], `${label}: the decoder refuses it`).to.deep.equal(['undecodable'])
      }
    }
    // only the new kind when asked, from its own seed
    const [p1, p2] = [evidenceGenerator(6, withGroup(false), 'bad-checkpoint-partial'), evidenceGenerator(6, withGroup(false), 'bad-checkpoint-partial')]
    for (let i = 0; i < 200; i++) {
      const [x, y] = [p1(), p2()]
      expect(x.label === y.label && Buffer.compare(x.data, y.data) === 0, 'bad-partial evidence: the same seed gives the same messages').to.equal(true)
      const decoded = decodeEvidence(x.data)
      if (decoded.ok) { expect(decoded.evidence.kind, x.label).to.equal('bad-checkpoint-partial') }
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
      const { runs, before, after, badPartials } = await attackBoth(b, 'client')
      expect(badPartials['invalid-evidence'] ?? 0, `bad-partial evidence of the client refused as invalid (${replay('client')})`).to.be.greaterThan(0)
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
      const { before, after, badPartials } = await attackBoth(b, 'replica')
      expect(badPartials['invalid-evidence'] ?? 0, `bad-partial evidence of the fourth replica refused as invalid (${replay('replica')})`).to.be.greaterThan(0)
      expect(badPartials['unjudgeable (ignored)'] ?? 0, `bad-partial evidence of the fourth replica under another group, ignored as unjudgeable (${replay('replica')})`).to.be.greaterThan(0)
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
      // then evidence with real equivocations and bad partials among the forged: a replica that did not isolate it yet may now, for either
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
      // eslint-disable-next-line no-console
      console.log(`      heap + ArrayBuffers after every attacker: ${(growth / 2 ** 20).toFixed(1)} MiB more than at the start (bound ${HEAP_GROWTH_BYTES_MAX / 2 ** 20} MiB)`)
      expect(growth, `heap + ArrayBuffer growth after every attacker, in bytes (seed ${SEED})`).to.be.at.most(HEAP_GROWTH_BYTES_MAX)
    })
  })
})
