/**
 * Plain js-libp2p peers for tests: strangers to an accord cluster (TCP,
 * Noise, yamux, identify, nothing of accord's), and a way to admit one as a
 * member would be.
 */
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { decode, encode } from 'cborg'
import { LevelDatastore } from 'datastore-level'
import { createLibp2p } from 'libp2p'
import { Registry } from 'prom-client'
import { issueCertificate } from '../../identity/cluster-credentials.ts'
import { ADMISSION_PROTOCOL } from '../../node/admission/admission.ts'
import { resolveConfig } from '../../node/config.ts'
import { buildLibp2p } from '../../node/libp2p.ts'
import { addressOf } from './nodes.ts'
import type { AdmissionComponents } from '../../node/admission/admission.ts'
import type { AccordConfig } from '../../node/config.ts'
import type { HostComponents } from '../../node/host.ts'
import type { AccordNode } from '../../node/index.ts'
import type { BaseServices, BuildOptions } from '../../node/libp2p.ts'
import type { ComponentLogger, Libp2p, PeerId, PrivateKey } from '@libp2p/interface'

/**
 * The components of a node made by createLibp2p (libp2p keeps them on the
 * node), to build an accord service outside `services` in a test.
 */
export function componentsOf (node: Libp2p): HostComponents & { logger: ComponentLogger } {
  return (node as unknown as { components: HostComponents & { logger: ComponentLogger } }).components
}

/** Show `node` a membership certificate from `peer`, as a member does on each connection it opens; the node's answer. */
export async function showCertificate (node: AccordNode, peer: Libp2p, cert: Uint8Array): Promise<{ ok?: boolean, reason?: string }> {
  const stream = await peer.dialProtocol(multiaddr(addressOf(node)), ADMISSION_PROTOCOL)
  const lp = lpStream(stream)
  await lp.write(encode({ v: 1, cert }))
  const answer = decode((await lp.read()).subarray())
  await stream.close().catch(() => {})
  return answer
}

/** Just what the Admission service uses of libp2p's components, with no network: for unit tests. */
export function fakeAdmissionComponents (peerId: PeerId): AdmissionComponents {
  return {
    peerId,
    registrar: { handle: async () => {}, unhandle: async () => {} },
    events: { addEventListener: () => {}, removeEventListener: () => {} },
    connectionManager: { getConnections: () => [] }
  } as unknown as AdmissionComponents
}

/**
 * A started libp2p node on loopback (listening on 127.0.0.1 unless `listen`
 * is false, or on the loopback address `listen` names: Linux routes all of
 * 127.0.0.0/8 to lo), with `privateKey` as its identity if given.
 */
export async function plainPeer (listen: boolean | string = true, privateKey?: PrivateKey): Promise<Libp2p> {
  const host = typeof listen === 'string' ? listen : '127.0.0.1'
  return createLibp2p({
    ...(privateKey != null ? { privateKey } : {}),
    addresses: { listen: listen !== false ? [`/ip4/${host}/tcp/0`] : [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  })
}

/**
 * A started node as buildLibp2p assembles it (no accord services), listening
 * on loopback, with its datastore in a fresh directory pushed on `dirs` for
 * the caller to remove.
 */
export async function builtPeer (dirs: string[], settings: Partial<AccordConfig>, options: Pick<BuildOptions<Record<string, never>>, 'connectionBudgets' | 'outboundQuota'> = {}): Promise<Libp2p<BaseServices>> {
  const dir = await mkdtemp(join(tmpdir(), 'accord-built-'))
  dirs.push(dir)
  const datastore = new LevelDatastore(join(dir, 'datastore'))
  await datastore.open()
  const node = await buildLibp2p({
    config: resolveConfig(dir, {}, { listen: ['/ip4/127.0.0.1/tcp/0'], ...settings }),
    privateKey: await generateKeyPair('Ed25519'),
    datastore,
    registry: new Registry(),
    version: 'test',
    ...options
  })
  await node.start()
  return node
}

/** Show `node` a membership certificate for `peer` signed with the node's cluster key, as a member does on each connection it opens. */
export async function presentCertificate (node: AccordNode, peer: Libp2p): Promise<void> {
  const credentials = node.admission.credentials
  if (credentials == null) { throw new Error('the node has no credentials') }
  const cert = await issueCertificate(credentials.clusterKey, { cluster: node.config.cluster, peer: peer.peerId.toString(), issuedAtMs: Date.now() })
  expect(await showCertificate(node, peer, cert)).to.include({ ok: true })
}
