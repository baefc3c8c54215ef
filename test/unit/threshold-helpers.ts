/**
 * Deterministic randomness for the threshold, ZK and DKG tests: SHA-256 in
 * counter mode over a seed, so every run (and every failure) replays.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import type { RandomBytes } from '../../identity/bls.ts'

export function seededRandomBytes (seed: string | number): RandomBytes {
  const prefix = new TextEncoder().encode(`accord-test-random:${seed}:`)
  let counter = 0
  return (length: number) => {
    const out = new Uint8Array(length)
    for (let filled = 0; filled < length; filled += 32) {
      const block = sha256(new Uint8Array([...prefix, ...new TextEncoder().encode(String(counter++))]))
      out.set(block.subarray(0, Math.min(32, length - filled)), filled)
    }
    return out
  }
}

export const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'))
export const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
