/**
 * Cheap deterministic signatures for the simulator: a signature is
 * sha256(secret(signer) || payload), and verify recomputes it. Secrets
 * follow from the seed and the signer's id, so Twins (two nodes with one
 * id) share one key, and a forger without the secret cannot sign for
 * another. Nothing here is secure; everything is reproducible.
 */
import { createHash } from 'node:crypto'
import type { NodeId, PbftCrypto } from '../../../protocols/pbft/types.ts'

export class SimKeyring {
  private readonly seed: number
  private readonly secrets = new Map<NodeId, Buffer>()

  constructor (seed: number) {
    this.seed = seed
  }

  /** The crypto of `self`: signs with its secret, verifies anyone's. */
  cryptoFor (self: NodeId): PbftCrypto {
    return {
      sign: payload => this.signature(self, payload),
      verify: (signer, payload, signature) => equalBytes(this.signature(signer, payload), signature),
      digest: data => createHash('sha256').update(data).digest('hex')
    }
  }

  private signature (signer: NodeId, payload: Uint8Array): Uint8Array {
    return new Uint8Array(createHash('sha256').update(this.secret(signer)).update(payload).digest())
  }

  private secret (signer: NodeId): Buffer {
    let secret = this.secrets.get(signer)
    if (secret === undefined) {
      secret = createHash('sha256').update(`accord-pbft-sim ${this.seed} ${signer}`).digest()
      this.secrets.set(signer, secret)
    }
    return secret
  }
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i])
}
