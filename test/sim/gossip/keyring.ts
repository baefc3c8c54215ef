/**
 * A stand-in for Ed25519 in tests and the simulator: every node has a
 * secret derived from the keyring's seed and its id; a node signs with its
 * own secret (HMAC-SHA-256), and anyone verifies with the keyring, as
 * anyone verifies an Ed25519 signature with the public key a peer id
 * embeds. A lying node is given only its own signer, so it cannot sign for
 * another node, exactly as with real keys.
 *
 * 'checksum' signatures (a keyed 32-bit hash, padded to Ed25519's 64 bytes
 * so that the byte counts match) are for the benchmark, where thousands of
 * cores verify millions of entries and only the simulated traffic is
 * measured.
 */
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesEqual } from '../../../protocols/membership/membership-node.ts'
import type { EntryAuth, NodeId } from '../../../protocols/gossip/index.ts'

export type SignatureKind = 'hmac' | 'checksum'

const SIGNATURE_BYTES = 64

export class Keyring {
  private readonly seed: number
  private readonly kind: SignatureKind
  private readonly signers = new Map<NodeId, (payload: Uint8Array) => Uint8Array>()

  constructor (seed: number, kind: SignatureKind = 'hmac') {
    this.seed = seed
    this.kind = kind
  }

  /** The auth a node is given: it signs as `node`, and verifies anyone. */
  authFor (node: NodeId): EntryAuth {
    return { sign: this.signerOf(node), verify: (owner, payload, signature) => this.verify(owner, payload, signature) }
  }

  verify (owner: NodeId, payload: Uint8Array, signature: Uint8Array): boolean {
    return bytesEqual(this.signerOf(owner)(payload), signature)
  }

  private signerOf (node: NodeId): (payload: Uint8Array) => Uint8Array {
    let signer = this.signers.get(node)
    if (signer === undefined) {
      const secret = sha256(new TextEncoder().encode(`keyring ${this.seed} ${node}`))
      signer = this.kind === 'hmac' ? hmacSigner(secret) : checksumSigner(secret)
      this.signers.set(node, signer)
    }
    return signer
  }
}

function hmacSigner (secret: Uint8Array): (payload: Uint8Array) => Uint8Array {
  const keyed = hmac.create(sha256, secret)
  return payload => {
    const signature = new Uint8Array(SIGNATURE_BYTES)
    const mac = keyed.clone().update(payload).digest()
    signature.set(mac)
    signature.set(mac, mac.byteLength)
    return signature
  }
}

/** FNV-1a over the secret's first word and the payload: cheap, keyed, not cryptographic. */
function checksumSigner (secret: Uint8Array): (payload: Uint8Array) => Uint8Array {
  const start = (secret[0] | (secret[1] << 8) | (secret[2] << 16) | (secret[3] << 24)) >>> 0
  return payload => {
    let h = (0x811c9dc5 ^ start) >>> 0
    for (let i = 0; i < payload.byteLength; i++) { h = Math.imul(h ^ payload[i], 0x01000193) >>> 0 }
    const signature = new Uint8Array(SIGNATURE_BYTES)
    new DataView(signature.buffer).setUint32(0, h)
    return signature
  }
}
