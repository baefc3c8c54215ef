/**
 * A small, fast, seeded pseudo-random generator (xoshiro128**). Cores take one
 * of these instead of reading Math.random(), so a simulator run replays
 * exactly from its seed.
 */
export interface Rng {
  /** A uniformly distributed 32-bit unsigned integer. */
  nextUint32(): number
  /** An integer in [min, max] inclusive. */
  intBetween(min: number, max: number): number
  /** A float in [0, 1). */
  nextFloat(): number
  /** true with the given probability in [0, 1]. */
  chance(probability: number): boolean
  /** A new independent generator derived from this one. */
  fork(): Rng
}

function splitMix32 (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x9e3779b9) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

export function createRng (seed: number): Rng {
  const init = splitMix32(seed)
  const s = new Uint32Array([init(), init(), init(), init()])
  if ((s[0] | s[1] | s[2] | s[3]) === 0) { s[0] = 1 }

  const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0

  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0
    const t = (s[1] << 9) >>> 0
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = rotl(s[3], 11)
    return result
  }

  const nextFloat = (): number => nextUint32() / 0x100000000

  return {
    nextUint32,
    nextFloat,
    intBetween: (min, max) => {
      if (!Number.isInteger(min) || !Number.isInteger(max) || max < min) {
        throw new RangeError(`intBetween: bad range [${min}, ${max}]`)
      }
      return min + Math.floor(nextFloat() * (max - min + 1))
    },
    chance: (probability) => nextFloat() < probability,
    fork: () => createRng(nextUint32())
  }
}
