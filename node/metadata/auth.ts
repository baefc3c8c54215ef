/**
 * Entries of the cluster-metadata store are signed by the node that owns
 * them, with its libp2p Ed25519 key, and verified against the public key
 * that the owner's peer id embeds: an entry is self-certifying, so a
 * member that relays another's entries cannot change them.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { ed25519 } from '@noble/curves/ed25519.js'
import type { EntryAuth } from '../../protocols/gossip/index.ts'
import type { PrivateKey } from '@libp2p/interface'

/** Public keys of owners seen, at most (each a peer id parse saved; an entry from an unknown node parses again). */
const PUBLIC_KEYS_CACHED_MAX = 4096

export function peerEntryAuth (privateKey: PrivateKey): EntryAuth {
  if (privateKey.type !== 'Ed25519') { throw new Error(`the cluster-metadata store signs with Ed25519 peer keys, not ${privateKey.type}`) }
  // libp2p's raw Ed25519 private key is the 32-byte seed followed by the public key
  const secret = privateKey.raw.subarray(0, 32)
  const publicKeys = new Map<string, Uint8Array | null>()
  const publicKeyOf = (node: string): Uint8Array | null => {
    let key = publicKeys.get(node)
    if (key !== undefined) { return key }
    try {
      const peerId = peerIdFromString(node)
      key = peerId.type === 'Ed25519' && peerId.publicKey != null ? peerId.publicKey.raw : null
    } catch {
      key = null
    }
    if (publicKeys.size >= PUBLIC_KEYS_CACHED_MAX) { publicKeys.clear() }
    publicKeys.set(node, key)
    return key
  }
  return {
    sign: (payload) => ed25519.sign(payload, secret),
    verify: (node, payload, signature) => {
      const key = publicKeyOf(node)
      if (key == null || signature.byteLength !== 64) { return false }
      try {
        return ed25519.verify(signature, payload, key)
      } catch {
        return false
      }
    }
  }
}
