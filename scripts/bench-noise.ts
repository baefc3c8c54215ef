/* eslint-disable no-console */
/**
 * node scripts/bench-noise.ts [--millis 400]
 *
 * Noise's ChaCha20-Poly1305 per transport message: the default of
 * `@chainsafe/libp2p-noise` against accord's (node/noise-crypto.ts), in µs per
 * message, at sizes on both sides of the 1,200-byte switch to node:crypto.
 * The plaintext is given as a yamux frame is: a 12-byte header, then the
 * data. "buffers" is how many buffers the ciphertext comes in; with
 * `@libp2p/tcp` each is one write to the socket, plus one for the length.
 * Prints a table and writes JSON under bench/results/.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { accordNoiseCrypto } from '../node/noise-crypto.ts'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'

const { values } = parseArgs({ options: { millis: { type: 'string', default: '400' } } })
const runMs = Number(values.millis)
const SIZES = [200, 1100, 1300, 6000, 20_000, 65_000]

interface Result { implementation: string, bytes: number, encryptUs: number, decryptUs: number, buffers: number }

/** Mean µs per call of `fn`, run for about runMs after a warm-up. */
function timeIt (fn: () => void): number {
  for (let i = 0; i < 200; i++) { fn() }
  let calls = 0
  const start = performance.now()
  while (performance.now() - start < runMs) {
    for (let i = 0; i < 50; i++) { fn() }
    calls += 50
  }
  return (performance.now() - start) * 1000 / calls
}

const key = randomBytes(32)
const nonce = Buffer.alloc(12)
const ad = Buffer.alloc(0)
const implementations: Array<[string, ICryptoInterface]> = [['default', defaultCrypto], ['accord', accordNoiseCrypto()]]
const results: Result[] = []
for (const bytes of SIZES) {
  const data = randomBytes(bytes)
  const frame = new Uint8ArrayList(randomBytes(12), data)
  for (const [implementation, crypto] of implementations) {
    const sealed = crypto.chaCha20Poly1305Encrypt(frame, nonce, ad, key)
    const contiguous = sealed instanceof Uint8Array ? sealed : sealed.subarray()
    const encryptUs = timeIt(() => { crypto.chaCha20Poly1305Encrypt(frame, nonce, ad, key) })
    // decryption may reuse its input's memory (Noise passes dst), so each call gets a copy
    const decryptUs = timeIt(() => { const copy = Buffer.from(contiguous); crypto.chaCha20Poly1305Decrypt(copy, nonce, ad, key, copy.subarray(0, copy.byteLength - 16)) })
    results.push({ implementation, bytes, encryptUs, decryptUs, buffers: sealed instanceof Uint8Array ? 1 : [...sealed].length })
  }
}

console.log('| message bytes | implementation | encrypt µs | decrypt µs | ciphertext buffers |')
console.log('|---:|---|---:|---:|---:|')
for (const r of results) {
  console.log(`| ${r.bytes} | ${r.implementation} | ${r.encryptUs.toFixed(1)} | ${r.decryptUs.toFixed(1)} | ${r.buffers} |`)
}
await mkdir('bench/results', { recursive: true })
await writeFile('bench/results/noise.json', JSON.stringify({ date: new Date().toISOString(), runMs, results }, null, 2) + '\n')
