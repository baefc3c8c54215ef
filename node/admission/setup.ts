/*
 * How a node comes by its cluster credentials when it starts:
 *
 * - it has them (a restart): it uses them;
 * - it has none and no join token, and no bootstrap peer (or --raft-init,
 *   or public mode, where bootstrap peers are the public DHT's): it founds
 *   the cluster, making the cluster key and its own certificate (the
 *   admission service does, as it starts);
 * - it has none and a join token: it trades the token with a member once
 *   libp2p runs (joinWithToken);
 * - it has none, no token, and bootstrap peers: it cannot start, and says
 *   what to do.
 */
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { parseJoinToken } from '../../identity/cluster-credentials.ts'
import { decodeHandover } from '../../identity/keystore-rotation.ts'
import { clusterProtocol } from '../constants.ts'
import { UserError } from '../errors.ts'
import { loadCredentials, loadPredecessorCertificate } from './credentials.ts'
import type { Admission, AdmissionInit } from './admission.ts'
import type { AccordConfig } from '../config.ts'
import type { AccordHost } from '../host.ts'
import type { PeerId } from '@libp2p/interface'

export interface CredentialOptions {
  passphrase?: string
  joinToken?: string
  joinDeadlineMs?: number
}

/**
 * What the admission service starts with: the saved credentials; or none
 * and `join` (the node joins with its token once libp2p runs); or neither,
 * and the service founds the cluster. Throws UserError.
 */
export async function startingCredentials (config: AccordConfig, self: PeerId, options: CredentialOptions & { handover?: Uint8Array }): Promise<Pick<AdmissionInit, 'credentials' | 'join' | 'handover'>> {
  const predecessor = options.handover === undefined ? undefined : predecessorOf(options.handover)
  const loaded = await loadCredentials(config.dataDir, config.cluster, self, options.passphrase, predecessor)
  if (loaded != null) {
    // a rotated key shows its hand-over with the certificate of the key it replaced
    const certificate = options.handover === undefined ? null : await loadPredecessorCertificate(config.dataDir)
    return { credentials: loaded, ...(certificate != null && options.handover !== undefined ? { handover: { statement: options.handover, certificate } } : {}) }
  }
  if (options.joinToken != null) {
    const problem = joinTokenProblem(options.joinToken, config)
    if (problem != null) { throw new UserError(problem) }
    return { join: true }
  }
  if (config.bootstrap.length > 0 && !config.raftInit && !config.public) {
    throw new UserError(`joining cluster "${config.cluster}" needs a join token: run "accord token create" on a member and start with --join-token TOKEN`)
  }
  return {}
}

/**
 * Trade the join token with a member: the bootstrap peers, then the
 * members discovery finds in public mode or by mDNS.
 */
export async function joinWithToken (host: AccordHost, config: AccordConfig, admission: Admission, options: CredentialOptions & { joinToken: string }): Promise<void> {
  const bootstrap = config.public ? [] : config.bootstrap
  const protocol = clusterProtocol(config.cluster)
  await admission.join(options.joinToken, async () => [...bootstrap, ...await clusterPeersConnected(host, protocol)], options.joinDeadlineMs)
}

/** The peer id a keystore's hand-over statement took over from (the keystore checked the statement when it loaded). */
function predecessorOf (handover: Uint8Array): string | undefined {
  const decoded = decodeHandover(handover)
  return typeof decoded === 'string' ? undefined : peerIdFromPublicKey(publicKeyFromRaw(decoded.statement.oldPublicKey)).toString()
}

/** Why a join token cannot be used with this configuration, or null when it can. */
function joinTokenProblem (token: string, config: AccordConfig): string | null {
  const parsed = parseJoinToken(token)
  if (typeof parsed === 'string') { return `--join-token: ${parsed}` }
  if (parsed.cluster !== config.cluster) { return `--join-token is for cluster "${parsed.cluster}", not "${config.cluster}"; start with --cluster ${parsed.cluster}` }
  if (config.bootstrap.length === 0 && !config.public && !config.mdns) { return '--join-token needs --bootstrap (a member\'s address), or --mdns to find one on the LAN' }
  return null
}

/** Connected peers whose identify lists our cluster's protocol. */
async function clusterPeersConnected (host: AccordHost, protocol: string): Promise<string[]> {
  const peers = [...new Set(host.getConnections().map(c => c.remotePeer.toString()))]
  const found: string[] = []
  for (const id of peers) {
    const info = await host.peerStore.get(peerIdFromString(id)).catch(() => null)
    if (info?.protocols.includes(protocol) === true) { found.push(id) }
  }
  return found
}
