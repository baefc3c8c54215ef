/** Seeded byte-string generators for decoder fuzz tests. */
import type { Rng } from '../../protocols/common/rng.ts'

export function randomBytes (rng: Rng, length: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) { out[i] = rng.intBetween(0, 255) }
  return out
}

/** One random edit: bit flip, byte overwrite, insertion, deletion, truncation or splice with another input. */
export function mutate (rng: Rng, input: Uint8Array, donors: Uint8Array[]): Uint8Array {
  const bytesOut = [...input]
  const at = rng.intBetween(0, Math.max(0, bytesOut.length - 1))
  switch (rng.intBetween(0, 5)) {
    case 0: if (bytesOut.length > 0) { bytesOut[at] ^= 1 << rng.intBetween(0, 7) } break
    case 1: if (bytesOut.length > 0) { bytesOut[at] = rng.intBetween(0, 255) } break
    case 2: bytesOut.splice(at, 0, rng.intBetween(0, 255)); break
    case 3: bytesOut.splice(at, rng.intBetween(1, 3)); break
    case 4: bytesOut.length = rng.intBetween(0, bytesOut.length); break
    default: {
      const donor = donors[rng.intBetween(0, donors.length - 1)]
      bytesOut.splice(at, bytesOut.length, ...donor.subarray(rng.intBetween(0, donor.length)))
      break
    }
  }
  return Uint8Array.from(bytesOut)
}

/** An unsigned LEB128 varint (a length prefix), for hand-made frames. */
export function varint (value: number): Uint8Array {
  const out: number[] = []
  for (; value >= 0x80; value = Math.floor(value / 0x80)) { out.push((value % 0x80) | 0x80) }
  return Uint8Array.from([...out, value])
}
