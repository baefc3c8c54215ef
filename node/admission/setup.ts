/*
 * How a node comes by its cluster credentials when it starts:
 *
 * - it has them (a restart): it uses them;
 * - it has none and no join token, and no bootstrap peer (or --raft-init,
 *   or public mode, where bootstrap peers are the public DHT's): it founds
 *   the cluster, making the cluster key and its own certificate;
 * - it has none and a join token: it trades the token with a member once
 *   libp2p runs (joinWithToken);
 * - it has none, no token, and bootstrap peers: it cannot start, and says
 *   what to do.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { parseJoinToken } from '../../identity/cluster-credentials.ts'
import { clusterProtocol } from '../constants.ts'
import { UserError } from '../errors.ts'
import { foundCluster, loadCredentials, saveCredentials } from './credentials.ts'
import { joinCluster } from './join.ts'
import type { Admission } from './admission.ts'
import type { ClusterCredentials } from './credentials.ts'
import type { AccordConfig } from '../config.ts'
import type { AccordLibp2p } from '../libp2p.ts'
import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'

export interface CredentialOptions {
  passphrase?: string
  joinToken?: string
  joinDeadlineMs?: number
}

/** The credentials to start with: loaded, made by founding, or null when the node joins with its token. Throws UserError. */
export async function startingCredentials (config: AccordConfig, self: PeerId, options: CredentialOptions, log: Logger): Promise<ClusterCredentials | null> {
  const loaded = await loadCredentials(config.dataDir, config.cluster, self, options.passphrase)
  if (loaded != null) { return loaded }
  if (options.joinToken != null) {
    const problem = joinTokenProblem(options.joinToken, config)
    if (problem != null) { throw new UserError(problem) }
    return null
  }
  if (config.bootstrap.length > 0 && !config.raftInit && !config.public) {
    throw new UserError(`joining cluster "${config.cluster}" needs a join token: run "accord token create" on a member and start with --join-token TOKEN`)
  }
  const founded = await foundCluster(config.cluster, self, Date.now())
  await saveCredentials(config.dataDir, founded, options.passphrase)
  log.info({ cluster: config.cluster }, 'founded a new cluster: made its cluster key and this node\'s certificate')
  return founded
}

/**
 * Trade the join token with a member (the bootstrap peers, then the members
 * discovery finds in public mode or by mDNS), keep the credentials, and
 * hand them to admission.
 */
export async function joinWithToken (libp2p: AccordLibp2p, config: AccordConfig, admission: Admission, options: CredentialOptions & { joinToken: string }, log: Logger): Promise<ClusterCredentials> {
  const bootstrap = config.public ? [] : config.bootstrap
  const protocol = clusterProtocol(config.cluster)
  const candidates = async (): Promise<string[]> => [...bootstrap, ...await clusterPeersConnected(libp2p, protocol)]
  const credentials = await joinCluster(libp2p, config.cluster, candidates, options.joinToken, options.joinDeadlineMs)
  await saveCredentials(config.dataDir, credentials, options.passphrase)
  admission.setCredentials(credentials)
  log.info({ cluster: config.cluster }, 'joined the cluster with a join token')
  return credentials
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
async function clusterPeersConnected (libp2p: AccordLibp2p, protocol: string): Promise<string[]> {
  const peers = [...new Set(libp2p.getConnections().map(c => c.remotePeer.toString()))]
  const found: string[] = []
  for (const id of peers) {
    const info = await libp2p.peerStore.get(peerIdFromString(id)).catch(() => null)
    if (info?.protocols.includes(protocol) === true) { found.push(id) }
  }
  return found
}
