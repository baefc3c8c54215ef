import { ed25519 } from '@noble/curves/ed25519.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { expect } from 'aegir/chai'
import { bytesToDigest } from '../../protocols/pbft/encoding.ts'
import { checkEvidence, signRequest, signingPayload } from '../../protocols/pbft/index.ts'
import { Cluster } from './pbft-harness.ts'
import type { NodeId, PbftCrypto, Prepare } from '../../protocols/pbft/index.ts'

/** Real Ed25519 keys, one per id (seeded from the id so the test is deterministic). */
const secretKeys = new Map<NodeId, Uint8Array>()
const publicKeys = new Map<NodeId, Uint8Array>()

function keyOf (id: NodeId): Uint8Array {
  let key = secretKeys.get(id)
  if (key === undefined) {
    key = sha256(new TextEncoder().encode(`ed25519 seed ${id}`))
    secretKeys.set(id, key)
    publicKeys.set(id, ed25519.getPublicKey(key))
  }
  return key
}

function ed25519Crypto (self: NodeId): PbftCrypto {
  const secret = keyOf(self)
  return {
    sign: payload => ed25519.sign(payload, secret),
    verify: (signer, payload, signature) => {
      keyOf(signer)
      const publicKey = publicKeys.get(signer)
      if (publicKey === undefined || signature.length !== 64) { return false }
      return ed25519.verify(signature, payload, publicKey)
    },
    digest: data => bytesToDigest(sha256(data))
  }
}

function request (client: NodeId, timestamp: number): ReturnType<typeof signRequest> {
  return signRequest({ client, timestamp, operation: new TextEncoder().encode(`op ${timestamp}`), readOnly: false }, ed25519Crypto(client))
}

describe('pbft with Ed25519 keys', () => {
  it('orders requests end to end, checkpoints included', () => {
    const cluster = new Cluster(4, { checkpointInterval: 2, watermarkWindow: 4, batchRequestsMax: 1, pipelineMax: 4 }, ed25519Crypto)
    for (let t = 1; t <= 3; t++) {
      expect(cluster.submit('r0', request('c1', t)).ok).to.equal(true)
      cluster.drain()
    }
    for (const id of cluster.ids) {
      expect(cluster.state(id).executed, id).to.deep.equal(['c1@1', 'c1@2', 'c1@3'])
      expect(cluster.replica(id).status().stableCheckpoint).to.equal(2)
    }
  })

  it('refuses a request signed by another key, and isolates a replica whose prepare does not verify', () => {
    const cluster = new Cluster(4, {}, ed25519Crypto)
    const forged = signRequest({ client: 'c1', timestamp: 1, operation: new Uint8Array(1), readOnly: false }, ed25519Crypto('c2'))
    expect(cluster.submit('r0', forged)).to.deep.include({ ok: false, reason: 'bad-signature' })
    const unsigned = { type: 'prepare' as const, replica: 'r2', view: 0, seq: 1, digest: 'a'.repeat(64), signature: new Uint8Array(0) }
    const signedByR3: Prepare = { ...unsigned, signature: ed25519Crypto('r3').sign(signingPayload(unsigned)) }
    expect(cluster.inject('r2', 'r1', signedByR3)).to.deep.include({ ok: false, reason: 'bad-signature' })
    expect(cluster.replica('r1').status().isolated).to.deep.equal([{ peer: 'r2', reason: 'invalid-signature' }])
  })

  it('equivocation evidence made with real keys checks out for any verifier', () => {
    const prepare = (digest: string): Prepare => {
      const unsigned = { type: 'prepare' as const, replica: 'r2', view: 0, seq: 1, digest, signature: new Uint8Array(0) }
      return { ...unsigned, signature: ed25519Crypto('r2').sign(signingPayload(unsigned)) }
    }
    const evidence = { kind: 'equivocation' as const, offender: 'r2', first: prepare('a'.repeat(64)), second: prepare('b'.repeat(64)) }
    expect(checkEvidence(evidence, ['r0', 'r1', 'r2', 'r3'], ed25519Crypto('r0'))).to.deep.equal({ ok: true })
    expect(checkEvidence({ ...evidence, offender: 'r3', first: { ...evidence.first, replica: 'r3' }, second: { ...evidence.second, replica: 'r3' } }, ['r0', 'r1', 'r2', 'r3'], ed25519Crypto('r0')).ok).to.equal(false)
  })
})
