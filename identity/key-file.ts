/*
 * The on-disk format of a node's identity key, as pure functions over bytes.
 * node/ reads and writes the file; this module only encodes and decodes it.
 *
 * Plain:     {"version":1,"type":"Ed25519","key":"<base64 protobuf private key>"}
 * Encrypted: {"version":1,"type":"Ed25519","kdf":{"name":"scrypt",...},
 *             "cipher":{"name":"xchacha20-poly1305","nonce":"..."},"ciphertext":"..."}
 *
 * scrypt parameters follow the usual interactive-login cost (N = 2^15); the
 * cipher is authenticated, so a wrong passphrase is detected, not silently
 * turned into a different key.
 */
import { privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { scrypt } from '@noble/hashes/scrypt.js'
import type { PrivateKey } from '@libp2p/interface'

export const KEY_FILE_VERSION = 1
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, dkLen: 32 }
const SALT_BYTES = 16
const NONCE_BYTES = 24

export class KeyFileError extends Error {
  override name = 'KeyFileError'
}

interface KdfParams { name: 'scrypt', N: number, r: number, p: number, salt: string }
/** The encrypted part of a key file or keystore. */
export interface SealedJson {
  kdf?: KdfParams
  cipher?: { name: 'xchacha20-poly1305', nonce: string }
  ciphertext?: string
}
interface KeyFileJson extends SealedJson {
  version: number
  type: string
  key?: string
}

export const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64')
export const unb64 = (text: unknown, field: string): Uint8Array => {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new KeyFileError(`key file field "${field}" is not base64`)
  }
  return new Uint8Array(Buffer.from(text, 'base64'))
}

/**
 * Encode a private key as key-file bytes. `randomBytes` supplies salt and
 * nonce, so callers (and tests) decide where randomness comes from.
 */
export function encodeKeyFile (key: PrivateKey, options: { passphrase?: string, randomBytes(n: number): Uint8Array }): Uint8Array {
  const protobuf = privateKeyToProtobuf(key)
  let json: KeyFileJson
  if (options.passphrase == null || options.passphrase === '') {
    json = { version: KEY_FILE_VERSION, type: key.type, key: b64(protobuf) }
  } else {
    json = { version: KEY_FILE_VERSION, type: key.type, ...sealWithPassphrase(protobuf, options.passphrase, options.randomBytes) }
  }
  return new TextEncoder().encode(JSON.stringify(json, null, 2) + '\n')
}

/** Decode key-file bytes; throws KeyFileError with a one-line reason. */
export function decodeKeyFile (bytes: Uint8Array, passphrase?: string): PrivateKey {
  const json = parse(bytes)
  let protobuf: Uint8Array
  if (json.ciphertext == null) {
    protobuf = unb64(json.key, 'key')
  } else {
    protobuf = openWithPassphrase(json, passphrase)
  }
  try {
    return privateKeyFromProtobuf(protobuf)
  } catch (err) {
    throw new KeyFileError(`key file does not hold a valid private key: ${(err as Error).message}`)
  }
}

/**
 * Encrypt `plaintext` under a key derived from `passphrase` (scrypt), with
 * XChaCha20-Poly1305. `aad` is authenticated but not stored: it binds the
 * ciphertext to the format that holds it.
 */
export function sealWithPassphrase (plaintext: Uint8Array, passphrase: string, randomBytes: (n: number) => Uint8Array, aad?: Uint8Array): Required<SealedJson> {
  const salt = randomBytes(SALT_BYTES)
  const nonce = randomBytes(NONCE_BYTES)
  const derived = scrypt(passphrase, salt, SCRYPT)
  return {
    kdf: { name: 'scrypt', N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p, salt: b64(salt) },
    cipher: { name: 'xchacha20-poly1305', nonce: b64(nonce) },
    ciphertext: b64(xchacha20poly1305(derived, nonce, aad).encrypt(plaintext))
  }
}

/** Decrypt what sealWithPassphrase made; throws KeyFileError with a one-line reason. */
export function openWithPassphrase (json: SealedJson, passphrase: string | undefined, aad?: Uint8Array): Uint8Array {
  if (passphrase == null || passphrase === '') {
    throw new KeyFileError('the identity key is encrypted: a passphrase is required (set ACCORD_PASSPHRASE)')
  }
  const kdf = json.kdf
  if (kdf?.name !== 'scrypt' || !validScryptParams(kdf)) { throw new KeyFileError('key file has unsupported kdf parameters') }
  if (json.cipher?.name !== 'xchacha20-poly1305') { throw new KeyFileError('key file has an unsupported cipher') }
  const derived = scrypt(passphrase, unb64(kdf.salt, 'kdf.salt'), { N: kdf.N, r: kdf.r, p: kdf.p, dkLen: 32 })
  const nonce = unb64(json.cipher.nonce, 'cipher.nonce')
  if (nonce.length !== NONCE_BYTES) { throw new KeyFileError('key file nonce has the wrong length') }
  try {
    return xchacha20poly1305(derived, nonce, aad).decrypt(unb64(json.ciphertext, 'ciphertext'))
  } catch {
    throw new KeyFileError('wrong passphrase for the identity key (or the key file is corrupt)')
  }
}

function validScryptParams (kdf: KdfParams): boolean {
  // Bounded so a hostile file cannot make us allocate gigabytes.
  return Number.isInteger(kdf.N) && kdf.N >= 2 ** 10 && kdf.N <= 2 ** 20 && (kdf.N & (kdf.N - 1)) === 0 &&
    Number.isInteger(kdf.r) && kdf.r >= 1 && kdf.r <= 32 &&
    Number.isInteger(kdf.p) && kdf.p >= 1 && kdf.p <= 16
}

function parse (bytes: Uint8Array): KeyFileJson {
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw new KeyFileError('key file is not valid JSON')
  }
  if (typeof json !== 'object' || json == null) { throw new KeyFileError('key file is not a JSON object') }
  const file = json as KeyFileJson
  if (file.version !== KEY_FILE_VERSION) { throw new KeyFileError(`key file version ${String(file.version)} is not supported (expected ${KEY_FILE_VERSION})`) }
  if (file.key == null && file.ciphertext == null) { throw new KeyFileError('key file holds neither "key" nor "ciphertext"') }
  return file
}
