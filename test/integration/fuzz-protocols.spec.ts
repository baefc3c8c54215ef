/**
 * Fuzzing every accord protocol from outside, over real libp2p (TCP +
 * Noise + yamux on loopback): a stranger (no certificate) and an admitted
 * peer (joined with a token, Raft off) send random, mutated and hostile
 * frames (test/lib/protocol-fuzz.ts) on /accord/raft, /accord/raft-client,
 * /accord/admission, /accord/join, the cluster hello, /accord/swim, /accord/anti-entropy
 * and /accord/dkg, to a follower and to the leader of a 3-voter group. CI's bounded run; longer runs:
 * `npm run fuzz:protocols -- --frames N [--seed S] [--protocol P]`.
 *
 * Every failure names the seed and the command that replays it: the
 * generator's choices (kinds of frames, sizes, mutations, terms) replay
 * from the seed; peer ids are new on every run, and streams race.
 */
import { lpStream } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { DKG_PROTOCOL, DKG_SESSIONS_MAX } from '../../node/dkg/constants.ts'
import { SWIM_PROTOCOL } from '../../node/membership/service.ts'
import { ANTI_ENTROPY_PROTOCOL } from '../../node/metadata/service.ts'
import { decodeFrame, encodeFrame } from '../../node/raft/codec.ts'
import { RAFT_PROTOCOL, RAFT_TRANSPORT_DEFAULTS } from '../../node/raft/transport-constants.ts'
import { COUNT_MAX } from '../../protocols/raft/index.ts'
import {
  attack, checkHealthy, delta, FUZZ_PROTOCOLS, HEAP_GROWTH_BYTES_MAX, FUZZ_SNAPSHOT_BYTES_MAX, frameGenerator, fuzzIdentity, GATED_PROTOCOLS, groupState, protocolId,
  raftTransportStats, refusalsByReason, settledMemory, startFuzzBed, stopFuzzBed, sumCounts, transportBoundProblems,
  waitForAttackStreamsGone, watchProcessErrors
} from '../lib/protocol-fuzz.ts'
import { waitFor } from '../lib/wait.ts'
import type { AccordNode } from '../../node/index.ts'
import type { RaftTransportStats } from '../../node/raft/transport.ts'
import type { DriveStats, FuzzBed, FuzzContext, FuzzProtocol, MemorySample } from '../lib/protocol-fuzz.ts'

const SEED = 20_261_203
/** Frames per protocol, split between the follower and the leader. */
const STRANGER_FRAMES = 500
const ADMITTED_FRAMES = 1500

const replay = (attacker: 'stranger' | 'admitted', protocol?: FuzzProtocol): string => {
  const frames = attacker === 'stranger' ? `--frames ${STRANGER_FRAMES} --stranger-share 1` : `--frames ${ADMITTED_FRAMES} --stranger-share 0`
  return `seed ${SEED}; replay: npm run fuzz:protocols -- --seed ${SEED}${protocol != null ? ` --protocol ${protocol}` : ''} ${frames}`
}

function outcomes (runs: DriveStats[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const run of runs) {
    for (const [k, v] of Object.entries(run.outcomes)) { out[k] = (out[k] ?? 0) + v }
  }
  return out
}

function answered (runs: DriveStats[], answer: string): number {
  return outcomes(runs)[`answer:${answer}`] ?? 0
}

async function refusalTotals (targets: AccordNode[], protocol: string): Promise<Array<Record<string, number>>> {
  return Promise.all(targets.map(async t => refusalsByReason(t, protocol)))
}

function transportStats (node: AccordNode): RaftTransportStats {
  const stats = raftTransportStats(node)
  if (stats == null) { throw new Error('could not read the Raft transport stats') }
  return stats
}

describe('fuzzing every accord protocol from outside (real libp2p over TCP on loopback)', function () {
  this.timeout(300_000)
  let bed: FuzzBed | undefined
  let memoryBefore: MemorySample

  before(async function () {
    this.timeout(120_000)
    bed = await startFuzzBed()
    memoryBefore = await settledMemory()
  })

  after(async () => {
    await stopFuzzBed(bed)
  })

  it('the frame generator replays from its seed and makes every kind of frame', () => {
    const { id: peer, sign } = fuzzIdentity(new Uint8Array(32).fill(3))
    // a Node Buffer, as a node's own certificate is: the generator must not edit it in place
    const certificate = Buffer.alloc(120, 7)
    const context: FuzzContext = { cluster: 'accord', self: peer, target: `${peer.slice(0, -1)}x`, members: ['a', 'b', 'c'], term: 7, lastIndex: 20, commit: 18, certificate, joinToken: 'accord-join-1.AAAA', sign }
    for (const protocol of FUZZ_PROTOCOLS) {
      const [a, b, other] = [frameGenerator(protocol, 42, context), frameGenerator(protocol, 42, context), frameGenerator(protocol, 43, context)]
      const kinds = new Set<string>()
      let same = true
      let differs = false
      let invalidRaft = 0
      for (let i = 0; i < 800; i++) {
        const [x, y, z] = [a(), b(), other()]
        same &&= x.label === y.label && Buffer.compare(x.wire, y.wire) === 0
        differs ||= Buffer.compare(x.wire, z.wire) !== 0
        kinds.add(x.label.replace(/:.*$/, ''))
        // a 'valid:' Raft frame is one the transport's decoder accepts
        if (protocol === 'raft' && x.label.startsWith('valid:') && !decodeFrame(x.wire.subarray(varintLength(x.wire))).ok) { invalidRaft++ }
      }
      expect(same, `${protocol}: the same seed gives the same frames`).to.equal(true)
      expect(differs, `${protocol}: another seed gives other frames`).to.equal(true)
      expect([...kinds], protocol).to.include.members(['random', 'mutated', 'cbor', 'prefix', 'valid', 'hostile'])
      expect([...kinds], protocol).to.not.include('generator-error')
      expect(invalidRaft, 'valid Raft frames the decoder refuses').to.equal(0)
    }
    expect(certificate.every(byte => byte === 7), 'the certificate the generator was given is unchanged').to.equal(true)
  })

  it('a stranger is refused on every gated protocol and answered on admission and join: term, voters and store stay as they were, and the group works', async () => {
    const b = bed!
    const targets = [b.follower, b.leader]
    const watch = watchProcessErrors()
    try {
      const state = groupState(b.group)
      const refusedBefore = new Map<FuzzProtocol, Array<Record<string, number>>>()
      for (const protocol of FUZZ_PROTOCOLS) { refusedBefore.set(protocol, await refusalTotals(targets, protocolId(protocol, b.clusterName))) }
      const transportBefore = targets.map(transportStats)

      const runs = new Map(await Promise.all(FUZZ_PROTOCOLS.map(async protocol =>
        [protocol, await attack(b, { attacker: 'stranger', protocol, frames: STRANGER_FRAMES, seed: SEED })] as const)))
      await waitForAttackStreamsGone(b)

      for (const protocol of FUZZ_PROTOCOLS) {
        const run = runs.get(protocol)!
        const id = protocolId(protocol, b.clusterName)
        const sent = run.reduce((n, r) => n + r.framesWritten, 0)
        expect(sent, `${protocol}: frames the stranger wrote (${replay('stranger', protocol)})`).to.be.greaterThan(0)
        if (GATED_PROTOCOLS.has(protocol)) {
          // each refusal comes once the stream waited out admission (5 s)
          for (const [i, target] of targets.entries()) {
            await waitFor(async () => sumCounts(delta(refusedBefore.get(protocol)![i], await refusalsByReason(target, id))) > 0, `${protocol}: the stranger's streams to be refused`, 30_000)
          }
          expect(Object.keys(outcomes(run)).filter(k => k.startsWith('answer:')), `${protocol}: answers a stranger got (${replay('stranger', protocol)})`).to.deep.equal([])
        } else {
          const refused = await refusalTotals(targets, id)
          for (const [i] of targets.entries()) {
            expect(sumCounts(delta(refusedBefore.get(protocol)![i], refused[i])), `${protocol}: refusals counted`).to.be.greaterThan(0)
          }
          expect(answered(run, 'ok'), `${protocol}: requests of a stranger that succeeded (${replay('stranger', protocol)})`).to.equal(0)
        }
      }
      for (const target of targets) {
        expect(target.admission.isAdmitted(b.stranger.peerId.toString()), 'the stranger was admitted').to.equal(false)
      }

      // nothing reached the Raft transport, nothing changed
      const transportAfter = targets.map(transportStats)
      for (const [i, stats] of transportAfter.entries()) {
        expect(sumCounts(delta(transportBefore[i].framesRejected, stats.framesRejected)), 'Raft frames of a stranger rejected by the transport (it must never see them)').to.equal(0)
        expect(transportBoundProblems(stats, targets[i].libp2p.getConnections().length), `Raft transport bounds (${replay('stranger', 'raft')})`).to.deep.equal([])
      }
      expect(groupState(b.group), `term, leader, voters, commit and store (${replay('stranger')})`).to.deep.equal(state)
      expect(await checkHealthy(b, 'stranger'), `the group after the stranger (${replay('stranger')})`).to.deep.equal([])
      expect(watch.errors, `unhandled rejections (${replay('stranger')})`).to.deep.equal([])
    } finally {
      watch.stop()
    }
  })

  it('an admitted peer\'s frames reach every handler: nothing throws, buffers stay within their limits, and the group recovers a leader and serves writes', async () => {
    const b = bed!
    const targets = [b.follower, b.leader]
    const watch = watchProcessErrors()
    try {
      const { token } = await b.leader.admission.createJoinToken()
      const refusedBefore = new Map<FuzzProtocol, Array<Record<string, number>>>()
      for (const protocol of FUZZ_PROTOCOLS) { refusedBefore.set(protocol, await refusalTotals(targets, protocolId(protocol, b.clusterName))) }
      const transportBefore = targets.map(transportStats)

      const runs = new Map(await Promise.all(FUZZ_PROTOCOLS.map(async protocol =>
        [protocol, await attack(b, { attacker: 'admitted', protocol, frames: ADMITTED_FRAMES, seed: SEED, joinToken: token })] as const)))
      await waitForAttackStreamsGone(b)

      for (const protocol of FUZZ_PROTOCOLS) {
        const run = runs.get(protocol)!
        expect(run.reduce((n, r) => n + r.framesWritten, 0), `${protocol}: frames written (${replay('admitted', protocol)})`).to.be.greaterThan(ADMITTED_FRAMES / 2)
        expect(outcomes(run).timeout ?? 0, `${protocol}: streams the target never answered nor closed (${replay('admitted', protocol)})`).to.equal(0)
      }

      // the frames reached the handlers
      const transportAfter = targets.map(transportStats)
      for (const [i, stats] of transportAfter.entries()) {
        expect(sumCounts(delta(transportBefore[i].framesRejected, stats.framesRejected)), 'Raft frames rejected by the transport').to.be.greaterThan(0)
        expect(stats.messagesReceived - transportBefore[i].messagesReceived, 'Raft messages delivered').to.be.greaterThan(0)
        expect(stats.deliverErrors, `Raft messages whose delivery threw (${replay('admitted', 'raft')})`).to.equal(0)
      }
      expect(answered(runs.get('raft-client')!, 'invalid'), 'client requests answered "invalid"').to.be.greaterThan(0)
      expect(answered(runs.get('cluster')!, 'hello'), 'cluster hellos answered').to.be.greaterThan(0)
      for (const protocol of ['admission', 'join'] as const) {
        expect(answered(runs.get(protocol)!, 'ok'), `${protocol}: valid requests answered ok`).to.be.greaterThan(0)
        const refused = await refusalTotals(targets, protocolId(protocol, b.clusterName))
        for (const [i] of targets.entries()) {
          expect(sumCounts(delta(refusedBefore.get(protocol)![i], refused[i])), `${protocol}: bad requests refused and counted`).to.be.greaterThan(0)
        }
      }

      // SWIM: bad messages refused and counted, and each target still probes its members
      const swimRefused = await refusalTotals(targets, SWIM_PROTOCOL)
      for (const [i, target] of targets.entries()) {
        expect(sumCounts(delta(refusedBefore.get('swim')![i], swimRefused[i])), `swim: bad messages refused and counted (${replay('admitted', 'swim')})`).to.be.greaterThan(0)
        const probes = target.membership.status()?.counters.probes ?? 0
        await waitFor(() => (target.membership.status()?.counters.probes ?? 0) > probes, 'the target to keep probing after the SWIM frames', 30_000)
      }

      // anti-entropy: bad messages refused and counted, nothing forged taken, and each target still gossips
      const antiEntropyRefused = await refusalTotals(targets, ANTI_ENTROPY_PROTOCOL)
      for (const [i, target] of targets.entries()) {
        expect(sumCounts(delta(refusedBefore.get('anti-entropy')![i], antiEntropyRefused[i])), `anti-entropy: bad messages refused and counted (${replay('admitted', 'anti-entropy')})`).to.be.greaterThan(0)
        expect(target.metadata.get(target.libp2p.peerId.toString(), 'k0'), 'anti-entropy: no forged entry of the target\'s own').to.equal(undefined)
        const rounds = target.metadata.status()?.rounds ?? 0
        await waitFor(() => (target.metadata.status()?.rounds ?? 0) > rounds, 'the target to keep gossiping after the anti-entropy frames', 30_000)
      }

      // DKG: bad datagrams refused and counted, at most DKG_SESSIONS_MAX sessions opened (the rest refused),
      // no key taken; once the attacker's sessions time out, the group makes a key
      const dkgRefused = await refusalTotals(targets, DKG_PROTOCOL)
      for (const [i, target] of targets.entries()) {
        const refused = delta(refusedBefore.get('dkg')![i], dkgRefused[i])
        expect(sumCounts(refused), `dkg: bad datagrams refused and counted (${replay('admitted', 'dkg')})`).to.be.greaterThan(0)
        expect(refused['sessions-full'] ?? 0, `dkg: starts past DKG_SESSIONS_MAX refused (${replay('admitted', 'dkg')})`).to.be.greaterThan(0)
        expect(openDkgSessions(target), 'dkg: sessions open').to.be.at.most(DKG_SESSIONS_MAX)
        expect(target.dkg.summary(), 'dkg: a key stored from the attacker\'s frames').to.equal(null)
      }
      await waitFor(() => targets.every(t => openDkgSessions(t) === 0), 'the attacker\'s DKG sessions to time out', 60_000)
      const made = await b.leader.dkg.run({ members: b.group.map(n => n.libp2p.peerId.toString()), threshold: 2 })
      expect(made.state, `dkg: the group's own DKG after the attack: ${made.reason ?? ''} (${replay('admitted', 'dkg')})`).to.equal('done')

      // buffers within their limits; reassemblies hold what was sent, not what was declared (1 GiB)
      for (const [i, stats] of transportAfter.entries()) {
        expect(transportBoundProblems(stats, targets[i].libp2p.getConnections().length), `Raft transport bounds (${replay('admitted', 'raft')})`).to.deep.equal([])
      }
      for (const stats of transportAfter) {
        expect(stats.snapshotReassemblyBytesPeak, 'snapshot bytes held by reassemblies at most').to.be.at.most(RAFT_TRANSPORT_DEFAULTS.snapshotReassembliesMax * FUZZ_SNAPSHOT_BYTES_MAX)
      }
      await waitFor(async () => targets.map(transportStats).every(s => s.snapshotReassemblies === 0), 'the attacker\'s snapshot reassemblies to be dropped', 30_000)

      // a lying member is outside Raft's model (it may move terms): the group must still recover
      expect(await checkHealthy(b, 'admitted', { elect: true }), `the group after the admitted peer (${replay('admitted', 'raft')})`).to.deep.equal([])
      expect(watch.errors, `unhandled rejections (${replay('admitted')})`).to.deep.equal([])

      const memoryAfter = await settledMemory()
      const growth = (memoryAfter.heapUsed + memoryAfter.arrayBuffers) - (memoryBefore.heapUsed + memoryBefore.arrayBuffers)
      expect(growth, `heap + ArrayBuffer growth after both attackers, in bytes (${replay('admitted')})`).to.be.at.most(HEAP_GROWTH_BYTES_MAX)
    } finally {
      watch.stop()
    }
  })

  it('one heartbeat at term 2^52 from an admitted peer (the fuzzer\'s first finding, minimal) leaves the group able to elect a leader', async () => {
    const fresh = await startFuzzBed()
    try {
      const from = fresh.admitted.libp2p.peerId.toString()
      const to = fresh.follower.libp2p.peerId.toString()
      const before = transportStats(fresh.follower)
      const stream = await fresh.admitted.libp2p.dialProtocol(fresh.follower.libp2p.peerId, RAFT_PROTOCOL)
      await lpStream(stream).write(encodeFrame({ kind: 'message', message: { type: 'heartbeat', from, to, term: COUNT_MAX, commit: 0, readRound: 0 } }))
      await waitFor(async () => transportStats(fresh.follower).messagesReceived > before.messagesReceived + 10, 'the heartbeat and a few of the leader\'s to be delivered')
      await stream.close().catch(() => {})
      expect(await checkHealthy(fresh, 'term-2^52', { elect: true, deadlineMs: 15_000 }), 'the group after one heartbeat at term 2^52').to.deep.equal([])
    } finally {
      await stopFuzzBed(fresh)
    }
  })
})

function openDkgSessions (node: AccordNode): number {
  return node.dkg.sessions().filter(s => s.state === 'keys' || s.state === 'running').length
}

/** Bytes of the varint length prefix at the start of `wire`. */
function varintLength (wire: Uint8Array): number {
  let i = 0
  while (i < wire.byteLength && wire[i] >= 0x80) { i++ }
  return i + 1
}
