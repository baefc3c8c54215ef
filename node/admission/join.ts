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
 *
 * Once the member admits with the cluster's DKG group key, the token is
 * not enough: the certificate it answers with is signed by the group, in a
 * signing round where each member gives its partial only for a peer its
 * operator approved (Admission.mayCertify), so t members must agree. The
 * answer then carries the group key (`gk`) too.
 *
 * With `joinPowBits` set, a request must carry a proof of work bound to
 * the joiner's peer id and the cluster (`pow: {bits, nonce}`,
 * identity/proof-of-work.ts), checked first, before the token's signature
 * or anything else costs the member work; one without gets
 * `{ok: false, reason: "proof of work needed", powBits}` and the joiner
 * solves it and asks again.
 */
import { privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { encode } from 'cborg'
import { G1_BYTES } from '../../identity/bls.ts'
import { clusterPublicKey, issueCertificate, JOIN_TOKEN_CHARS_MAX, parseJoinToken, verifyCertificate, verifyJoinToken } from '../../identity/cluster-credentials.ts'
import { verifyGroupCertificate } from '../../identity/group-certificate.ts'
import { isPowBits, POW_BITS_MAX, solveProofOfWork, verifyProofOfWork } from '../../identity/proof-of-work.ts'
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
const REQUEST_BYTES_MAX = JOIN_TOKEN_CHARS_MAX + 128
/** What a joiner is told when its request lacks the proof of work asked for. */
export const POW_NEEDED = 'proof of work needed'
/** Nonces tried between two yields to the event loop while a joiner solves a proof of work. */
const POW_SLICE = 4096
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
  const refuse = async (lp: ReturnType<typeof lpStream<Stream>>, peer: string, label: 'malformed' | 'not-ready' | 'revoked' | 'bad-token' | 'no-pow' | 'not-certified', signal: AbortSignal, reason: string = label, extra: Record<string, unknown> = {}): Promise<void> => {
    refusals.refuse(peer, JOIN_PROTOCOL, label, label === reason ? {} : { detail: reason })
    await lp.write(encode({ ok: false, reason, ...extra }), { signal })
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
      const request = decodeBoundedCbor((await lp.read({ signal })).subarray()) as { v?: unknown, token?: unknown, pow?: { bits?: unknown, nonce?: unknown } }
      const credentials = admission.credentials
      const powBits = admission.joinPowBits
      if (request?.v !== 1 || typeof request.token !== 'string') {
        await refuse(lp, peer, 'malformed', signal)
      } else if (powBits > 0 && !(isPowBits(request.pow?.bits) && request.pow.bits >= powBits && verifyProofOfWork({ cluster: options.cluster, peer }, request.pow.bits, request.pow.nonce))) {
        // one hash, before the token's signature or anything else is checked
        await refuse(lp, peer, 'no-pow', signal, POW_NEEDED, { powBits })
      } else if (credentials == null) {
        await refuse(lp, peer, 'not-ready', signal)
      } else if (admission.isRevoked(peer)) {
        await refuse(lp, peer, 'revoked', signal)
      } else {
        const token = await verifyJoinToken(request.token, { cluster: options.cluster, clusterKey: credentials.clusterPublicKey, nowMs: now() })
        if (typeof token === 'string') {
          await refuse(lp, peer, 'bad-token', signal, token)
        } else if (credentials.groupKey != null) {
          // the group signs, or nobody: t members' operators must have approved this peer
          let certificate: Uint8Array | null = null
          let why = ''
          try {
            certificate = await admission.groupCertificateFor(peer, { signal })
          } catch (err) {
            why = (err as Error).message
          }
          if (certificate == null) {
            options.log.warn({ peer, reason: why }, 'refused a join: the group did not certify the peer')
            await refuse(lp, peer, 'not-certified', signal, `the group did not certify this peer (t members' operators must approve it with "accord admission approve"): ${why}`)
          } else {
            await lp.write(encode({ ok: true, cert: certificate, key: privateKeyToProtobuf(credentials.clusterKey), gk: credentials.groupKey }), { signal })
            options.log.info({ peer }, 'admitted a new member with a join token and a group-signed certificate')
          }
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

type JoinAnswer = { ok?: unknown, reason?: unknown, cert?: unknown, key?: unknown, gk?: unknown, powBits?: unknown } | undefined

async function ask (host: AccordHost, target: string, request: Record<string, unknown>): Promise<JoinAnswer> {
  const signal = AbortSignal.timeout(JOIN_TIMEOUT_MS)
  const stream = await host.dialProtocol(target.startsWith('/') ? multiaddr(target) : peerIdFromString(target), JOIN_PROTOCOL, { signal })
  try {
    const lp = lpStream(stream, { maxDataLength: ANSWER_BYTES_MAX, lengthDecoder: boundedLengthDecoder(ANSWER_BYTES_MAX) })
    await lp.write(encode(request), { signal })
    const answer = decodeBoundedCbor((await lp.read({ signal })).subarray()) as JoinAnswer
    await stream.close({ signal })
    return answer
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

/** A proof of work of `bits` for this peer and cluster, solved in slices with a yield to the event loop between them. */
export async function solveJoinProofOfWork (cluster: string, peer: string, bits: number): Promise<{ bits: number, nonce: Uint8Array }> {
  for (let start = 0; ; start += POW_SLICE) {
    const nonce = solveProofOfWork({ cluster, peer }, bits, start, POW_SLICE)
    if (nonce !== null) { return { bits, nonce } }
    await new Promise(resolve => setImmediate(resolve))
  }
}

/** Ask `target` to trade the token; when it asks for a proof of work, solve it and ask again. */
async function askWithProof (host: AccordHost, cluster: string, target: string, token: string): Promise<JoinAnswer> {
  const answer = await ask(host, target, { v: 1, token })
  if (answer?.ok === true || answer?.reason !== POW_NEEDED) { return answer }
  const bits = answer.powBits
  if (!isPowBits(bits)) { throw new Error(`the member asks for a proof of work of ${String(bits).slice(0, 20)} bits (at most ${POW_BITS_MAX})`) }
  return ask(host, target, { v: 1, token, pow: await solveJoinProofOfWork(cluster, host.peerId.toString(), bits) })
}

async function joinThrough (host: AccordHost, cluster: string, target: string, token: string, clusterKey: Uint8Array): Promise<ClusterCredentials> {
  const answer = await askWithProof(host, cluster, target, token)
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
  if (answer.gk !== undefined) {
    if (!(answer.gk instanceof Uint8Array) || answer.gk.byteLength !== G1_BYTES) { throw new Error('malformed answer: group key') }
    const checkedGroup = verifyGroupCertificate(answer.cert, { cluster, groupKey: answer.gk, peer: host.peerId.toString(), nowMs: Date.now() })
    if (typeof checkedGroup === 'string') { throw new Error(`the member sent a group certificate that does not admit us: ${checkedGroup}`) }
    return { cluster, clusterKey: key, clusterPublicKey: clusterKey, certificate: answer.cert, groupKey: answer.gk }
  }
  const checked = await verifyCertificate(answer.cert, { cluster, clusterKey, peer: host.peerId.toString() })
  if (typeof checked === 'string') { throw new Error(`the member sent a certificate that does not admit us: ${checked}`) }
  return { cluster, clusterKey: key, clusterPublicKey: clusterKey, certificate: answer.cert }
}

function equal (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i])
}
