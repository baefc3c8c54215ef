/**
 * Shared by the DKG service's unit specs: signing peers and the libp2p
 * components the service needs, with no network.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { envelopeSigner } from '../../node/dkg/envelope.ts'
import { silentLogger } from '../../node/logger.ts'
import { Refusals } from '../../node/refusals.ts'
import type { Envelope, EnvelopeKind } from '../../node/dkg/envelope.ts'
import type { DkgComponents } from '../../node/dkg/service.ts'
import type { PrivateKey } from '@libp2p/interface'

export interface Peer { id: string, sign(kind: EnvelopeKind, body: Uint8Array): Envelope }

export async function peer (): Promise<Peer> {
  const key = await generateKeyPair('Ed25519')
  const id = peerIdFromPrivateKey(key).toString()
  return { id, sign: envelopeSigner(key, id) }
}

export interface FakeAdmission {
  /** Peers admission treats as revoked. */
  revoked?: Set<string>
  /** Admission's certificate policy (default: refuses every certificate). */
  mayCertify?(message: Uint8Array, requester: string): string | null
}

/** What the service uses of libp2p, with no network: every send fails (no address) and is counted. */
export function fakeComponents (privateKey: PrivateKey, admission: FakeAdmission = {}): DkgComponents {
  return {
    peerId: peerIdFromPrivateKey(privateKey),
    privateKey,
    peerStore: { get: async () => { throw new Error('not found') } },
    registrar: { handle: async () => {}, unhandle: async () => {} },
    connectionManager: { getConnections: () => [], openStream: async () => { throw new Error('no network') } },
    addressManager: { getAddresses: () => [] },
    events: { addEventListener: () => {}, removeEventListener: () => {} },
    admission: {
      gate: (_: string, handler: unknown) => handler,
      refusals: new Refusals({ log: silentLogger() }),
      setGroupSigner: () => {},
      isRevoked: (p: string) => admission.revoked?.has(p) ?? false,
      mayCertify: admission.mayCertify ?? (() => 'no approvals in this test')
    },
    membership: { addressesOf: () => [] }
  } as unknown as DkgComponents
}

export const datagram = (env: Envelope, from: string, to: string): unknown => ({ type: env.kind, from, to, env })
