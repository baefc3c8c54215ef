import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { decodeMessage, encodeMessage } from './codec.ts'
import { RaftTransport, raftTransportComponents } from './transport.ts'
import type { Message } from '../../protocols/raft/index.ts'

const node = async () => await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { identify: identify() } })
const a = await node(); const b = await node()
await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
let received = 0; let receivedBytes = 0
let done: () => void = () => {}
let target = 0
const limits = { outboundQueueMessagesMax: 2_000_000, outboundQueueBytesMax: 1024 * 1024 * 1024, snapshotBytesMax: 512 * 1024 * 1024 }
const ta = new RaftTransport(raftTransportComponents(a), { onMessage: () => {}, ...limits })
const tb = new RaftTransport(raftTransportComponents(b), { ...limits, onMessage: m => { received++; if (m.type === 'snapshot') receivedBytes += m.snapshot.data.byteLength; if (received === target) done() } })
await ta.start(); await tb.start()
const A = a.peerId.toString(); const B = b.peerId.toString()
async function run (name: string, count: number, make: (i: number) => Message, bytesPer: number) {
  received = 0; target = count
  const p = new Promise<void>(resolve => { done = resolve })
  const t0 = performance.now()
  for (let i = 0; i < count; i++) ta.send(B, make(i))
  await p
  const s = (performance.now() - t0) / 1000
  console.log(`${name}: ${count} msgs in ${s.toFixed(2)} s = ${(count / s).toFixed(0)} msg/s, ${(count * bytesPer / s / 1024 / 1024).toFixed(1)} MiB/s payload`)
}
const hb = (i: number): Message => ({ type: 'heartbeat', from: A, to: B, term: 5, commit: i, readRound: i })
await run('warmup heartbeats', 10_000, hb, 0)
await run('heartbeats', 200_000, hb, 0)
const data = new Uint8Array(1024)
const app = (n: number) => (i: number): Message => ({ type: 'append', from: A, to: B, term: 5, prevIndex: i * n + 1, prevTerm: 5, commit: 0, entries: Array.from({ length: n }, (_, k) => ({ term: 5, index: i * n + 2 + k, type: 'normal' as const, data })) })
await run('appends 1 x 1 KiB', 100_000, app(1), 1024)
await run('appends 64 x 1 KiB', 5_000, app(64), 64 * 1024)
const big = new Uint8Array(64 * 1024 * 1024).fill(3)
const snap: Message = { type: 'snapshot', from: A, to: B, term: 5, snapshot: { meta: { index: 10, term: 5, conf: { voters: [A, B], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data: big } }
await run('snapshot 64 MiB', 1, () => snap, big.byteLength)
await run('snapshot 64 MiB', 1, () => snap, big.byteLength)
// codec alone
for (const [name, m] of [['heartbeat', hb(1)], ['append 64 x 1 KiB', app(64)(1)]] as const) {
  const bytes = encodeMessage(m); const n = name === 'heartbeat' ? 200_000 : 5000
  let t0 = performance.now(); for (let i = 0; i < n; i++) encodeMessage(m); const e = (performance.now() - t0) * 1000 / n
  t0 = performance.now(); for (let i = 0; i < n; i++) decodeMessage(bytes); const d = (performance.now() - t0) * 1000 / n
  console.log(`codec ${name} (${bytes.byteLength} B): encode ${e.toFixed(2)} us, decode ${d.toFixed(2)} us`)
}
console.log(JSON.stringify({ a: { ...ta.stats(), peers: undefined }, b: tb.stats().framesRejected }))
await ta.stop(); await tb.stop(); await a.stop(); await b.stop()
