/** Peer ids and reports for the topology unit tests. */
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { TopologyReport } from '../../node/topology/report.ts'

/** `count` distinct peer ids (Ed25519, from fixed seeds: the same every run). */
export async function peerIds (count: number, seedOffset = 0): Promise<string[]> {
  return Promise.all(Array.from({ length: count }, async (_, i) => {
    const seed = new Uint8Array(32)
    new DataView(seed.buffer).setUint32(0, i + seedOffset + 1)
    return peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', seed)).toString()
  }))
}

/** A report that `peers` are connected to (outbound to the first), in the DHT table and in one mesh. */
export function reportNaming (peers: string[], reportedAt = 1_700_000_000_000): TopologyReport {
  return {
    reportedAt,
    connections: peers.map((peer, i) => ({ peer, remoteAddr: `/ip4/127.0.0.1/tcp/${4001 + i}`, direction: i === 0 ? 'outbound' : 'inbound' })),
    dhtBuckets: [{ prefix: '0', peers: peers.slice(0, 1) }, { prefix: '1', peers: peers.slice(1) }].filter(b => b.peers.length > 0),
    mesh: [{ topic: 'accord/test/membership/1', peers }],
    truncated: []
  }
}
