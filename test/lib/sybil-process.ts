/**
 * One process of a Sybil flood (started by test/lib/sybil-flood.ts, run
 * with Node's type stripping): it takes `--ids` fresh peer ids one after
 * another, each a kad-dht server listening on, and dialling from, the
 * loopback address `--source` (so the flood of each process comes from a
 * subnet of its own), that connects to `--target`, asks it for its closest
 * peers (FIND_NODE) and goes away. At the end it writes one JSON line on
 * stdout: a SybilReport.
 *
 * It exits when its stdin closes (the test process that holds the pipe
 * died) or after `--deadline-ms`, so a failed or killed test leaves no
 * flood running.
 */
import { parseArgs } from 'node:util'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { PRIVATE_DHT_PROTOCOL } from '../../node/constants.ts'
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { TCPSocketOptions } from '@libp2p/tcp'

/** What one process of the flood did. */
export interface SybilReport {
  /** The loopback address its ids dialled from. */
  source: string
  /** Fresh peer ids it took. */
  ids: number
  /** Ids whose connection to the target opened (Noise and yamux done). */
  connected: number
  /** Ids the target answered FIND_NODE for (not counted: a query that ended before the id's routing table held the target). */
  answered: number
  /** Ids whose dial failed (refused, closed during the handshake). */
  refused: number
  /** Why dials or FIND_NODEs failed, by error name: count. */
  errors: Record<string, number>
}

/** How long one FIND_NODE may take (ms). */
const FIND_NODE_TIMEOUT_MS = 5_000
/** How long a Sybil waits for identify to finish on its connection (ms). */
const IDENTIFY_WAIT_MS = 2_000

const { values } = parseArgs({
  options: {
    target: { type: 'string' },
    ids: { type: 'string' },
    source: { type: 'string', default: '127.0.0.1' },
    'deadline-ms': { type: 'string', default: '600000' }
  }
})
const target = values.target
const ids = Number(values.ids)
const source = values.source
const deadlineMs = Number(values['deadline-ms'])
if (target == null || !Number.isSafeInteger(ids) || ids < 0 || !/^127\.\d+\.\d+\.\d+$/.test(source) || !Number.isSafeInteger(deadlineMs) || deadlineMs < 1) {
  process.stderr.write('usage: sybil-process.ts --target MULTIADDR --ids N [--source 127.A.B.C] [--deadline-ms MS]\n')
  process.exit(64)
}

process.stdin.on('close', () => process.exit(3))
process.stdin.resume()
setTimeout(() => {
  process.stderr.write(`sybil-process: deadline of ${deadlineMs} ms passed\n`)
  process.exit(2)
}, deadlineMs).unref()

const report: SybilReport = { source, ids, connected: 0, answered: 0, refused: 0, errors: {} }
const countError = (err: unknown): void => {
  const name = err instanceof Error ? err.name : 'unknown'
  report.errors[name] = (report.errors[name] ?? 0) + 1
}

/** Wait (IDENTIFY_WAIT_MS at most) until identify told `node` that `peer` speaks the DHT protocol: kad-dht then adds it to its routing table. */
async function identified (node: Libp2p, peer: PeerId): Promise<void> {
  const until = Date.now() + IDENTIFY_WAIT_MS
  while (Date.now() < until) {
    const protocols = await node.peerStore.get(peer).then(p => p.protocols, (): string[] => [])
    if (protocols.includes(PRIVATE_DHT_PROTOCOL)) { return }
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** One Sybil: a fresh id, a connection to the target from `source`, a FIND_NODE on it; then gone. */
async function sybil (): Promise<void> {
  const node = await createLibp2p({
    addresses: { listen: [`/ip4/${source}/tcp/0`] },
    // net.connect takes localAddress: the connections come from `source`
    transports: [tcp({ dialOpts: { localAddress: source } as TCPSocketOptions })],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      // kad-dht holds every query back until its first self-query, 1 s after
      // start by default: run that at once (it finds nothing), and wait
      // for identify to put the target in the routing table instead
      dht: kadDHT({ protocol: PRIVATE_DHT_PROTOCOL, clientMode: false, peerInfoMapper: passthroughMapper, initialQuerySelfInterval: 0 })
    }
  })
  try {
    let targetId
    try {
      targetId = (await node.dial(multiaddr(target))).remotePeer
      report.connected++
    } catch (err) {
      report.refused++
      countError(err)
      return
    }
    await identified(node, targetId)
    let answered = false
    for await (const event of node.services.dht.getClosestPeers(node.peerId.toMultihash().bytes, { signal: AbortSignal.timeout(FIND_NODE_TIMEOUT_MS) })) {
      if (event.name === 'PEER_RESPONSE' && event.from.equals(targetId)) { answered = true }
    }
    if (answered) { report.answered++ }
  } catch (err) {
    countError(err)
  } finally {
    await node.stop()
  }
}

for (let i = 0; i < ids; i++) { await sybil() }

process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0))
