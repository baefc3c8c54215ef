/**
 * ChaCha20-Poly1305 for Noise's transport messages, passed to `noise({ crypto })`.
 *
 * Noise's default hands messages of 1,200 bytes and more to node:crypto in a
 * way that costs more than the cipher: every call builds a KeyObject from
 * the raw key (about 15 µs), and a message given as a list of buffers (a
 * yamux frame is a header plus its data) comes back as a list of buffers
 * plus the tag. `@libp2p/tcp` writes each buffer of a list with a syscall of
 * its own, so a Raft append of a batch left the leader in five writes.
 *
 * This one keeps the key objects of the keys in use (a bounded cache), and
 * always returns one contiguous buffer: every Noise message leaves in two writes
 * (its 2-byte length, then the ciphertext). Below 1,200 bytes it keeps
 * Noise's WebAssembly implementation, which is faster there. The bytes are
 * the same as the default's (a test checks it both ways), so peers that use
 * the default interoperate.
 */
import { createCipheriv, createDecipheriv, createSecretKey, timingSafeEqual } from 'node:crypto'
import { asCrypto, defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import type { KeyObject } from 'node:crypto'
import type { Uint8ArrayList } from 'uint8arraylist'

const CIPHER = 'chacha20-poly1305'
const TAG_BYTES = 16
/** Noise's own crossover between its WebAssembly and node:crypto paths. */
const WASM_BELOW_BYTES = 1200

/**
 * The key objects of the last few keys seen. A connection has one key per
 * direction, and a node encrypts for many connections in turn, so the cache
 * is keyed by the key's bytes, which are compared in full: a stale or
 * colliding entry can never encrypt with the wrong key.
 */
export class KeyObjectCache {
  readonly #entries = new Map<string, { raw: Uint8Array, key: KeyObject }>()
  readonly #max: number

  constructor (max: number) {
    this.#max = max
  }

  get size (): number {
    return this.#entries.size
  }

  get (raw: Uint8Array): KeyObject {
    // The first 8 bytes of a random key spread the entries well enough.
    const id = Buffer.from(raw.buffer, raw.byteOffset, 8).toString('hex')
    const entry = this.#entries.get(id)
    if (entry !== undefined && entry.raw.byteLength === raw.byteLength && timingSafeEqual(entry.raw, raw)) {
      return entry.key
    }
    if (this.#entries.size >= this.#max) {
      this.#entries.delete(this.#entries.keys().next().value as string)
    }
    const fresh = { raw: Uint8Array.from(raw), key: createSecretKey(raw) }
    this.#entries.set(id, fresh)
    return fresh.key
  }
}

export interface NoiseCryptoOptions {
  /** How many keys keep their key object (two per connection). */
  keyCacheSize?: number
}

export function accordNoiseCrypto (options: NoiseCryptoOptions = {}): ICryptoInterface {
  const keys = new KeyObjectCache(options.keyCacheSize ?? 1024)

  function encrypt (plaintext: Uint8Array | Uint8ArrayList, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Uint8Array {
    if (plaintext.byteLength < WASM_BELOW_BYTES) {
      return asCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) as Uint8Array
    }
    const cipher = createCipheriv(CIPHER, keys.get(k), nonce, { authTagLength: TAG_BYTES })
    cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
    const output = Buffer.allocUnsafe(plaintext.byteLength + TAG_BYTES)
    let at = 0
    for (const part of plaintext instanceof Uint8Array ? [plaintext] : plaintext) {
      at += cipher.update(part).copy(output, at)
    }
    at += cipher.final().copy(output, at)
    cipher.getAuthTag().copy(output, at)
    return output
  }

  function decrypt (ciphertext: Uint8Array | Uint8ArrayList, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array, dst?: Uint8Array): Uint8Array {
    if (ciphertext.byteLength < WASM_BELOW_BYTES) {
      return asCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) as Uint8Array
    }
    const whole = ciphertext instanceof Uint8Array ? ciphertext : ciphertext.subarray()
    const textBytes = whole.byteLength - TAG_BYTES
    const decipher = createDecipheriv(CIPHER, keys.get(k), nonce, { authTagLength: TAG_BYTES })
    decipher.setAAD(ad, { plaintextLength: textBytes })
    decipher.setAuthTag(whole.subarray(textBytes))
    const text = decipher.update(whole.subarray(0, textBytes))
    // final() throws when the tag does not match: the message was forged or damaged
    const rest = decipher.final()
    return rest.byteLength === 0 ? text : Buffer.concat([text, rest])
  }

  return { ...defaultCrypto, chaCha20Poly1305Encrypt: encrypt, chaCha20Poly1305Decrypt: decrypt }
}
