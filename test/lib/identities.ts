import { loadOrCreateIdentity } from '../../node/identity.ts'

/** Create a node identity in `dataDir` ahead of starting the node, to know its PeerId. */
export async function identityFor (dataDir: string): Promise<{ dataDir: string, peerId: string }> {
  const identity = await loadOrCreateIdentity(dataDir)
  return { dataDir, peerId: identity.peerId.toString() }
}
