/* eslint-disable no-console */
/**
 * node scripts/fuzz-protocols.ts [--frames 1000000] [--seed S] [--protocol P] [--stranger-share 0.02]
 *
 * Fuzzes accord's libp2p protocols from outside, as
 * test/integration/fuzz-protocols.spec.ts and fuzz-pbft.spec.ts do but for
 * as long as asked: for each protocol (/accord/raft, /accord/raft-client,
 * /accord/admission, /accord/join, the cluster hello, /accord/swim,
 * /accord/anti-entropy, /accord/dkg; --protocol picks one), a fresh 3-voter
 * group in this process, a stranger and an admitted peer (joined with a
 * token) that send --frames frames in all (the stranger its share, the
 * admitted peer the rest; half to a follower, half to the leader), random,
 * mutated and hostile (test/lib/protocol-fuzz.ts).
 *
 * PBFT (/accord/pbft, /accord/pbft-state): a fresh set of four replicas
 * per protocol (three honest, and a fourth whose key the fuzzer holds), a
 * stranger (its share), then an admitted client outside the set (40% of
 * the rest), the fourth replica with valid signatures of its own only
 * (45%), and last the fourth replica forging signatures and equivocating
 * (15%), which the honest replicas may isolate it for (startPbftFuzzBed
 * says which outcomes are expected); the client and the fourth replica also
 * publish evidence on the evidence topic (one message per 20 frames),
 * forged and, when forging, real. Frames are split between the three
 * honest replicas. After each attacker: every replica answers, only the
 * fourth replica is isolated (and only for what it did), and a write
 * through each honest replica commits on all three.
 *
 * After each protocol: every node answers, the group has a leader, elects
 * another, and takes a write and a linearizable read through both targets;
 * the Raft transport's queues, reassemblies and streams are within their
 * limits; on /accord/dkg, at most DKG_SESSIONS_MAX sessions are open on a
 * target and none stored a key; nothing threw out of a handler; the heap, after garbage
 * collection, grew by less than HEAP_GROWTH_BYTES_MAX. Prints progress and
 * a table per protocol, and exits non-zero on any failure. A run's frames
 * replay from its seed (printed first).
 *
 * A stranger's streams on the gated protocols (raft, raft-client, cluster)
 * wait 5 s in admission before they are refused, so its frames there go
 * slowly by design (about 100 frames/s): keep --stranger-share small for
 * long runs.
 */
import { randomInt } from 'node:crypto'
import { parseArgs } from 'node:util'
import { DKG_SESSIONS_MAX } from '../node/dkg/constants.ts'
import { evidenceTopic } from '../node/pbft/evidence-topic.ts'
import { RAFT_TRANSPORT_DEFAULTS } from '../node/raft/transport-constants.ts'
import {
  attack, attackPbft, checkHealthy, checkPbftHealthy, delta, FUZZ_PROTOCOLS, FUZZ_SNAPSHOT_BYTES_MAX, GATED_PROTOCOLS, HEAP_GROWTH_BYTES_MAX, memoryPeaks,
  PBFT_FUZZ_PROTOCOLS, pbftRejections, pbftTransportStats, protocolId, publishEvidence, raftTransportStats, refusalsByReason, settledMemory, startFuzzBed,
  startPbftFuzzBed, stopFuzzBed, stopPbftFuzzBed, transportBoundProblems, waitForAttackStreamsGone, waitForPbftAttackStreamsGone, watchProcessErrors
} from '../test/lib/protocol-fuzz.ts'
import type { AccordNode } from '../node/index.ts'
import type { RaftTransportStats } from '../node/raft/transport.ts'
import type { DriveStats, FuzzBed, FuzzProtocol, PbftAttacker, PbftFuzzBed, PbftFuzzProtocol } from '../test/lib/protocol-fuzz.ts'

const ALL_PROTOCOLS: readonly FuzzProtocol[] = [...FUZZ_PROTOCOLS, ...PBFT_FUZZ_PROTOCOLS]
const isPbft = (protocol: FuzzProtocol): protocol is PbftFuzzProtocol => (PBFT_FUZZ_PROTOCOLS as readonly FuzzProtocol[]).includes(protocol)

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: '1000000' },
    seed: { type: 'string' },
    protocol: { type: 'string' },
    'stranger-share': { type: 'string', default: '0.02' },
    help: { type: 'boolean', default: false }
  }
})

if (values.help) {
  console.log(`usage: node scripts/fuzz-protocols.ts [--frames 1000000] [--seed S] [--protocol ${ALL_PROTOCOLS.join('|')}] [--stranger-share 0.02]`)
  process.exit(0)
}

function fail (message: string): never {
  console.error(`fuzz-protocols: ${message}`)
  process.exit(2)
}

const frames = Number(values.frames)
if (!Number.isSafeInteger(frames) || frames < 2) { fail('--frames must be an integer of at least 2') }
// without --seed, a new one (printed first, so the run replays)
const seed = values.seed != null ? Number(values.seed) : randomInt(2 ** 31)
if (!Number.isSafeInteger(seed) || seed < 0 || seed >= 2 ** 32) { fail('--seed must be an integer in 0..2^32-1') }
const share = Number(values['stranger-share'])
if (!(share >= 0 && share <= 1)) { fail('--stranger-share must be a number in 0..1') }
const protocols = values.protocol != null ? [values.protocol as FuzzProtocol] : [...ALL_PROTOCOLS]
if (!protocols.every(p => ALL_PROTOCOLS.includes(p))) { fail(`--protocol must be one of ${ALL_PROTOCOLS.join(', ')}`) }

type Attacker = 'stranger' | 'admitted' | PbftAttacker | 'replica-isolating'

interface Row {
  protocol: FuzzProtocol
  attacker: Attacker
  frames: number
  written: number
  streams: number
  seconds: number
  /** Refusals counted by the targets (accord_refusals_total) and what the Raft or PBFT transport and the PBFT core rejected, by reason. */
  refused: Record<string, number>
  /** How the attacker's streams ended. */
  outcomes: Record<string, number>
  healthy: boolean
  problems: string[]
  heapPeakMiB: number
  rssPeakMiB: number
}

const MIB = 1024 * 1024
const mib = (bytes: number): number => Math.round(bytes / MIB)

function merge (into: Record<string, number>, from: Record<string, number>, prefix = ''): void {
  for (const [k, v] of Object.entries(from)) { into[prefix + k] = (into[prefix + k] ?? 0) + v }
}

function transportStats (node: AccordNode): RaftTransportStats | undefined {
  return raftTransportStats(node)
}

/** Refusals of every protocol and the Raft transport's rejections, on both targets, summed. */
async function counters (bed: FuzzBed): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const target of [bed.follower, bed.leader]) {
    for (const protocol of FUZZ_PROTOCOLS) { merge(out, await refusalsByReason(target, protocolId(protocol, bed.clusterName)), `${protocol}:`) }
    const stats = transportStats(target)
    if (stats != null) { merge(out, stats.framesRejected, 'raft-transport:') }
  }
  return out
}

function top (counts: Record<string, number>, n = 6): string {
  const entries = Object.entries(counts).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1])
  const shown = entries.slice(0, n).map(([k, v]) => `${k} ${v}`)
  return entries.length > n ? `${shown.join(', ')}, +${entries.length - n} more` : shown.join(', ')
}

/** One attacker's run on a bed: its counters, the attack, and the checks after it. */
interface Phase {
  /** Refusals and rejections on the targets, summed, by `protocol:reason`. */
  counters(): Promise<Record<string, number>>
  attack(onProgress: (live: DriveStats[]) => void): Promise<DriveStats[]>
  /** What is wrong once the attacker's streams are gone (none: healthy). */
  check(runs: DriveStats[]): Promise<string[]>
}

async function measure (protocol: FuzzProtocol, attacker: Attacker, count: number, phase: Phase): Promise<Row> {
  const before = await phase.counters()
  const peaks = memoryPeaks()
  const watch = watchProcessErrors(true)
  const started = Date.now()
  let lastPrint = started
  try {
    const runs = await phase.attack((live) => {
      const now = Date.now()
      if (now - lastPrint < 5000) { return }
      lastPrint = now
      const done = live.reduce((n, s) => n + (s?.frames ?? 0), 0)
      const rate = done / ((now - started) / 1000)
      console.log(`  ${protocol} ${attacker}: ${done}/${count} frames, ${Math.round(rate)} frames/s, heap ${mib(process.memoryUsage().heapUsed)} MiB`)
    })
    if (attacker === 'stranger' && GATED_PROTOCOLS.has(protocol)) {
      // the last refusals come once the streams waited out admission (5 s)
      await new Promise(resolve => setTimeout(resolve, 5500))
    }
    const seconds = (Date.now() - started) / 1000
    const problems = await phase.check(runs)
    const timeouts = runs.reduce((n, r) => n + (r.outcomes.timeout ?? 0), 0)
    if (timeouts > 0) { problems.push(`${timeouts} streams neither answered nor closed by the target`) }
    problems.push(...watch.errors.map(e => `uncaught: ${e.split('\n')[0]}`))
    const peak = peaks.stop()
    const outcomes: Record<string, number> = {}
    for (const r of runs) { merge(outcomes, r.outcomes) }
    return {
      protocol,
      attacker,
      frames: runs.reduce((n, r) => n + r.frames, 0),
      written: runs.reduce((n, r) => n + r.framesWritten, 0),
      streams: runs.reduce((n, r) => n + r.streamsOpened, 0),
      seconds,
      refused: delta(before, await phase.counters()),
      outcomes,
      healthy: problems.length === 0,
      problems,
      heapPeakMiB: mib(peak.heapUsed),
      rssPeakMiB: mib(peak.rss)
    }
  } finally {
    watch.stop()
    peaks.stop()
  }
}

async function runOne (bed: FuzzBed, protocol: FuzzProtocol, attacker: 'stranger' | 'admitted', count: number, token: string): Promise<Row> {
  return measure(protocol, attacker, count, {
    counters: async () => counters(bed),
    attack: async (onProgress) => {
      const runs = await attack(bed, { attacker, protocol, frames: count, seed, joinToken: token, onProgress })
      await waitForAttackStreamsGone(bed)
      return runs
    },
    check: async (runs) => {
      const problems = await checkHealthy(bed, `${protocol}-${attacker}`, { elect: true })
      for (const target of [bed.follower, bed.leader]) {
        const stats = transportStats(target)
        if (stats == null) {
          problems.push('could not read the Raft transport stats')
          continue
        }
        problems.push(...transportBoundProblems(stats, target.libp2p.getConnections().length))
        if (stats.snapshotReassemblyBytesPeak > RAFT_TRANSPORT_DEFAULTS.snapshotReassembliesMax * FUZZ_SNAPSHOT_BYTES_MAX) { problems.push(`reassemblies held ${stats.snapshotReassemblyBytesPeak} snapshot bytes`) }
      }
      if (attacker === 'stranger' && (protocol === 'admission' || protocol === 'join') && runs.some(r => (r.outcomes['answer:ok'] ?? 0) > 0)) { problems.push(`a stranger's ${protocol} request succeeded`) }
      for (const target of [bed.follower, bed.leader]) {
        if (target.admission.isAdmitted(bed.stranger.peerId.toString())) { problems.push('the stranger was admitted') }
        const open = target.dkg.sessions().filter(s => s.state === 'keys' || s.state === 'running').length
        if (open > DKG_SESSIONS_MAX) { problems.push(`${open} DKG sessions open, over DKG_SESSIONS_MAX`) }
        if (target.dkg.summary() != null) { problems.push('a target stored a DKG key from the attacker\'s frames') }
      }
      return problems
    }
  })
}

/** Refusals of both PBFT protocols, accord_pbft_rejected_total and the PBFT transport's rejections, on every honest replica, summed. */
async function pbftCounters (bed: PbftFuzzBed): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const target of bed.honest) {
    for (const protocol of PBFT_FUZZ_PROTOCOLS) { merge(out, await refusalsByReason(target, protocolId(protocol, bed.clusterName)), `${protocol}:`) }
    merge(out, await pbftRejections(target), 'pbft-rejected:')
    merge(out, pbftTransportStats(target).rejected, 'pbft-transport:')
    merge(out, await refusalsByReason(target, evidenceTopic(bed.clusterName)), 'evidence:')
  }
  return out
}

async function runOnePbft (bed: PbftFuzzBed, protocol: PbftFuzzProtocol, attacker: Attacker & PbftAttacker | 'replica-isolating', count: number): Promise<Row> {
  const isolating = attacker === 'replica-isolating'
  const as: PbftAttacker = isolating ? 'replica' : attacker
  return measure(protocol, attacker, count, {
    counters: async () => pbftCounters(bed),
    attack: async (onProgress) => {
      // and on /accord/pbft's runs, evidence on the topic: one message for every 20 frames, at once; real
      // equivocations only after the frames (every honest replica isolates the fourth on the first)
      const evidence = async (): Promise<unknown> => as !== 'stranger' && protocol === 'pbft' ? publishEvidence(bed, { attacker: as, count: Math.ceil(count / 20), seed, isolating }) : null
      const [runs] = await Promise.all([attackPbft(bed, { attacker: as, protocol, frames: count, seed, isolating, onProgress }), isolating ? null : evidence()])
      await waitForPbftAttackStreamsGone(bed)
      if (isolating) { await evidence() }
      return runs
    },
    check: async () => {
      // once the fourth replica forged a signature it may stay isolated: the later checks allow it too
      byzantineMayBeIsolated ||= isolating
      const problems = await checkPbftHealthy(bed, `${protocol}-${attacker}`, { byzantineMayBeIsolated })
      for (const target of bed.honest) {
        if (target.admission.isAdmitted(bed.stranger.peerId.toString())) { problems.push('the stranger was admitted') }
      }
      return problems
    }
  })
}

let byzantineMayBeIsolated = false

/** How a PBFT protocol's frames are shared: the stranger its share, then the client, the fourth replica, and the fourth replica forging. */
function pbftShares (protocol: PbftFuzzProtocol, strangerFrames: number): Array<[Attacker & PbftAttacker | 'replica-isolating', number]> {
  const rest = frames - strangerFrames
  const client = Math.round(rest * 0.4)
  // forged signatures matter on /accord/pbft only (a state request carries none)
  const isolating = protocol === 'pbft' ? Math.round(rest * 0.15) : 0
  return [['stranger', strangerFrames], ['client', client], ['replica', rest - client - isolating], ['replica-isolating', isolating]]
}

async function main (): Promise<number> {
  console.log(`fuzz-protocols: seed ${seed}, ${frames} frames per protocol (stranger ${Math.round(share * 100)}%), protocols ${protocols.join(', ')}`)
  console.log(`replay: node scripts/fuzz-protocols.ts --seed ${seed} --frames ${frames}${values.protocol != null ? ` --protocol ${values.protocol}` : ''} --stranger-share ${share}`)
  const rows: Row[] = []
  let failed = false
  for (const protocol of protocols) {
    // a fresh group (or replica set) per protocol: what one protocol's frames did does not carry over
    const strangerFrames = Math.round(frames * share)
    let phases: Array<[Attacker, number, () => Promise<Row>]>
    let stop: () => Promise<void>
    if (isPbft(protocol)) {
      const bed = await startPbftFuzzBed()
      stop = async () => { await stopPbftFuzzBed(bed) }
      byzantineMayBeIsolated = false
      phases = pbftShares(protocol, strangerFrames).map(([attacker, count]) => [attacker, count, async () => runOnePbft(bed, protocol, attacker, count)])
    } else {
      const bed = await startFuzzBed()
      stop = async () => { await stopFuzzBed(bed) }
      const { token } = await bed.leader.admission.createJoinToken()
      phases = ([['stranger', strangerFrames], ['admitted', frames - strangerFrames]] as const).map(([attacker, count]) => [attacker, count, async () => runOne(bed, protocol, attacker, count, token)])
    }
    try {
      const baseline = await settledMemory()
      for (const [attacker, count, run] of phases) {
        if (count === 0) { continue }
        console.log(`${protocol}: ${attacker}, ${count} frames`)
        const row = await run()
        rows.push(row)
        console.log(`  ${row.written} frames written on ${row.streams} streams in ${row.seconds.toFixed(1)} s (${Math.round(row.frames / row.seconds)} frames/s); ${row.healthy ? 'healthy' : `PROBLEMS: ${row.problems.join('; ')}`}`)
        failed ||= !row.healthy
      }
      const settled = await settledMemory()
      const growth = settled.heapUsed + settled.arrayBuffers - baseline.heapUsed - baseline.arrayBuffers
      console.log(`  heap + ArrayBuffers after GC: ${mib(growth)} MiB more than at the start (bound ${mib(HEAP_GROWTH_BYTES_MAX)} MiB)`)
      if (growth > HEAP_GROWTH_BYTES_MAX && rows.length > 0) {
        failed = true
        rows[rows.length - 1].healthy = false
        rows[rows.length - 1].problems.push(`heap grew by ${mib(growth)} MiB`)
      }
    } finally {
      await stop()
    }
  }

  console.log('')
  console.log('protocol     attacker            frames    written   streams  frames/s  healthy  heap MiB  RSS MiB  refusals and rejections (by reason)')
  for (const r of rows) {
    console.log([
      r.protocol.padEnd(12), r.attacker.padEnd(19), String(r.frames).padStart(8), String(r.written).padStart(9), String(r.streams).padStart(9),
      String(Math.round(r.frames / r.seconds)).padStart(9), (r.healthy ? 'yes' : 'NO').padStart(8), String(r.heapPeakMiB).padStart(9), String(r.rssPeakMiB).padStart(8),
      ` ${top(r.refused)}`
    ].join(' '))
    console.log(`${''.padEnd(13)}streams ended: ${top(r.outcomes, 8)}`)
  }
  for (const r of rows.filter(r => !r.healthy)) { console.log(`\n${r.protocol} / ${r.attacker}: ${r.problems.join('\n  ')}`) }
  console.log(`\nseed ${seed}: ${failed ? 'FAILED' : 'ok'}`)
  return failed ? 1 : 0
}

main().then(code => { process.exit(code) }, err => {
  console.error(err)
  console.error(`seed ${seed}`)
  process.exit(1)
})
