/**
 * `/accord/join/1.0.0`: a newcomer trades a join token for credentials.
 *
 * The newcomer sends `{v: 1, token}`; a member that finds the token signed
 * by the cluster key, for this cluster and unexpired, answers with a
 * membership certificate for the peer id Noise authenticated on this
 * connection and with the cluster key (members can admit others). The
 * newcomer checks both against the cluster key the token names before it
 * keeps them. This is the one accord protocol a stranger may use; it is
 * bounded (one stream per connection, joinsInFlightMax at once, small
 * frames, a deadline) and every refusal is counted.
 *
 * A token may be used by several newcomers until it expires (like a
 * kubeadm bootstrap token); a revoked peer id cannot join again.
 */
import { privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { encode } from 'cborg'
import { clusterPublicKey, issueCertificate, JOIN_TOKEN_CHARS_MAX, parseJoinToken, verifyCertificate, verifyJoinToken } from '../../identity/cluster-credentials.ts'
import { UserError } from '../errors.ts'
import { decodeBoundedCbor } from '../raft/codec.ts'
import { boundedLengthDecoder } from '../raft/transport.ts'
import type { Admission } from './admission.ts'
import type { ClusterCredentials } from './credentials.ts'
import type { AccordHost } from '../host.ts'
import type { Refusals } from '../refusals.ts'
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import type { Logger } from 'pino'

export const JOIN_PROTOCOL = '/accord/join/1.0.0'
const JOIN_TIMEOUT_MS = 10_000
/** Join requests served at once, across all peers. */
export const JOINS_IN_FLIGHT_MAX = 8
const REQUEST_BYTES_MAX = JOIN_TOKEN_CHARS_MAX + 64
const ANSWER_BYTES_MAX = 4096

export interface JoinServerOptions {
  host: AccordHost
  cluster: string
  admission: Admission
  refusals: Refusals
  log: Logger
  now?(): number
}

/** Serve join requests. Returns a function that unregisters the handler. */
export async function serveJoins (options: JoinServerOptions): Promise<() => Promise<void>> {
  const { host, admission, refusals } = options
  const now = options.now ?? Date.now
  let inFlight = 0
  /** Answer a refusal; `label` is the metric's fixed word, `reason` what the joiner is told. */
  const refuse = async (lp: ReturnType<typeof lpStream<Stream>>, peer: string, label: 'malformed' | 'not-ready' | 'revoked' | 'bad-token', signal: AbortSignal, reason: string = label): Promise<void> => {
    refusals.refuse(peer, JOIN_PROTOCOL, label, label === reason ? {} : { detail: reason })
    await lp.write(encode({ ok: false, reason }), { signal })
  }
  await host.handle(JOIN_PROTOCOL, async (stream: Stream, connection: Connection) => {
    const peer = connection.remotePeer.toString()
    const signal = AbortSignal.timeout(JOIN_TIMEOUT_MS)
    const lp = lpStream(stream, { maxDataLength: REQUEST_BYTES_MAX, lengthDecoder: boundedLengthDecoder(REQUEST_BYTES_MAX) })
    if (inFlight >= JOINS_IN_FLIGHT_MAX) {
      refusals.refuse(peer, JOIN_PROTOCOL, 'busy')
      stream.abort(new Error('too many joins in flight'))
      return
    }
    inFlight++
    try {
      const request = decodeBoundedCbor((await lp.read({ signal })).subarray()) as { v?: unknown, token?: unknown }
      const credentials = admission.credentials
      if (request?.v !== 1 || typeof request.token !== 'string') {
        await refuse(lp, peer, 'malformed', signal)
      } else if (credentials == null) {
        await refuse(lp, peer, 'not-ready', signal)
      } else if (admission.isRevoked(peer)) {
        await refuse(lp, peer, 'revoked', signal)
      } else {
        const token = await verifyJoinToken(request.token, { cluster: options.cluster, clusterKey: credentials.clusterPublicKey, nowMs: now() })
        if (typeof token === 'string') {
          await refuse(lp, peer, 'bad-token', signal, token)
        } else {
          const certificate = await issueCertificate(credentials.clusterKey, { cluster: options.cluster, peer, issuedAtMs: now() })
          await lp.write(encode({ ok: true, cert: certificate, key: privateKeyToProtobuf(credentials.clusterKey) }), { signal })
          options.log.info({ peer }, 'admitted a new member with a join token')
        }
      }
      await stream.close({ signal })
    } catch (err) {
      refusals.refuse(peer, JOIN_PROTOCOL, 'malformed', { detail: (err as Error).message })
      stream.abort(err as Error)
    } finally {
      inFlight--
    }
  }, { maxInboundStreams: 1, maxOutboundStreams: 1 })
  return async () => { await host.unhandle(JOIN_PROTOCOL).catch(() => {}) }
}

/** A join that found no member to accept the token gives up after this long. */
export const JOIN_DEADLINE_MS = 60_000
const JOIN_RETRY_MS = 500

/**
 * Trade `token` for credentials with the first member that accepts it.
 * `candidates()` names whom to ask (bootstrap multiaddrs with /p2p/; in
 * public mode, the members discovery finds through the rendezvous). A
 * refusal of the token itself ends the join at once; unreachable or
 * not-yet-found members are asked again until JOIN_DEADLINE_MS.
 */
export async function joinCluster (host: AccordHost, cluster: string, candidates: () => Promise<string[]>, token: string, deadlineMs = JOIN_DEADLINE_MS): Promise<ClusterCredentials> {
  const parsed = parseJoinToken(token)
  if (typeof parsed === 'string') { throw new UserError(`--join-token: ${parsed}`) }
  if (parsed.cluster !== cluster) { throw new UserError(`--join-token is for cluster "${parsed.cluster}", not "${cluster}"; start with --cluster ${parsed.cluster}`) }
  const giveUpAt = Date.now() + deadlineMs
  let failures: string[] = []
  while (true) {
    failures = []
    for (const target of await candidates()) {
      try {
        return await joinThrough(host, cluster, target, token, parsed.clusterKey)
      } catch (err) {
        if (err instanceof JoinRefusedError) { throw new UserError(`cluster "${cluster}" refused the join token: ${err.message}`) }
        failures.push(`${target}: ${(err as Error).message}`)
      }
    }
    if (Date.now() >= giveUpAt) { break }
    await new Promise(resolve => setTimeout(resolve, JOIN_RETRY_MS))
  }
  throw new UserError(`could not join cluster "${cluster}": ${failures.length > 0 ? failures.join('; ') : 'no member found'}`)
}

/** A member read the token and refused it (expired, forged, revoked): asking others would not help. */
class JoinRefusedError extends Error {}

async function joinThrough (host: AccordHost, cluster: string, target: string, token: string, clusterKey: Uint8Array): Promise<ClusterCredentials> {
  const signal = AbortSignal.timeout(JOIN_TIMEOUT_MS)
  const stream = await host.dialProtocol(target.startsWith('/') ? multiaddr(target) : peerIdFromString(target), JOIN_PROTOCOL, { signal })
  let answer: { ok?: unknown, reason?: unknown, cert?: unknown, key?: unknown }
  try {
    const lp = lpStream(stream, { maxDataLength: ANSWER_BYTES_MAX, lengthDecoder: boundedLengthDecoder(ANSWER_BYTES_MAX) })
    await lp.write(encode({ v: 1, token }), { signal })
    answer = decodeBoundedCbor((await lp.read({ signal })).subarray()) as typeof answer
    await stream.close({ signal })
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
  if (answer?.ok !== true) {
    const reason = typeof answer?.reason === 'string' ? answer.reason.slice(0, 200) : 'malformed answer'
    if (reason === 'busy' || reason === 'not-ready' || reason === 'malformed answer') { throw new Error(`refused: ${reason}`) }
    throw new JoinRefusedError(reason)
  }
  if (!(answer.cert instanceof Uint8Array) || !(answer.key instanceof Uint8Array)) { throw new Error('malformed answer') }
  let key: PrivateKey
  try {
    key = privateKeyFromProtobuf(answer.key)
  } catch {
    throw new Error('the answer holds no valid cluster key')
  }
  // the token named the cluster key: anything else is not that cluster
  if (key.type !== 'Ed25519' || !equal(clusterPublicKey(key), clusterKey)) { throw new Error('the member sent a cluster key other than the one the token names') }
  const checked = await verifyCertificate(answer.cert, { cluster, clusterKey, peer: host.peerId.toString() })
  if (typeof checked === 'string') { throw new Error(`the member sent a certificate that does not admit us: ${checked}`) }
  return { cluster, clusterKey: key, clusterPublicKey: clusterKey, certificate: answer.cert }
}

function equal (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i])
}
