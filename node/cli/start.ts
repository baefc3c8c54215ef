import { readFile } from 'node:fs/promises'
import { POW_BITS_DEFAULT, POW_BITS_MAX } from '../../identity/proof-of-work.ts'
import { createAccordNode } from '../accord-node.ts'
import { LOG_LEVELS, parseEncrypters, parseInitialCluster } from '../config.ts'
import { UserError } from '../errors.ts'
import { removeRuntimeInfo, writeRuntimeInfo } from '../runtime-file.ts'
import { parseFlags, parseIntegerFlag } from './args.ts'
import type { AccordConfig, LogLevel } from '../config.ts'
import type { SignPolicy } from '../dkg/approvals.ts'

export const START_HELP = `Usage: accord start --data-dir DIR [flags]

Run a node in the foreground until SIGINT or SIGTERM. Settings given here are
saved in DIR/accord.json; "accord start --data-dir DIR" alone restarts the
node with the same identity, addresses and peers.

  --data-dir DIR          where identity, settings and data live (required)
  --listen MA             libp2p listen multiaddr, repeatable
                          (default /ip4/127.0.0.1/tcp/4001)
  --bootstrap MA          a peer to join through (/ip4/../tcp/../p2p/<id>), repeatable
  --join-token TOKEN      first start of a node that joins: a token from
                          "accord token create" on a member (or ACCORD_JOIN_TOKEN)
  --cluster NAME          cluster name (default "accord")
  --api HOST:PORT|off     HTTP API address (default 127.0.0.1:7070); off disables it.
                          A non-loopback address requires the bearer token in DIR/api.token
  --public                use the public Amino DHT and rendezvous by cluster name
  --mdns                  also discover peers on the LAN by multicast DNS
  --pnet-key FILE         private-network pre-shared key (swarm.key format)
  --encrypters LIST       connection encryption offered and accepted, in order of
                          preference: noise,tls (default), noise or tls (TLS 1.3).
                          There is no plaintext option
  --max-connections N     connection limit (default 300)
  --subnet-peers-max N    strangers (peers not yet members) connected inbound at once
                          from one subnet; members are not counted (default 16)
  --subnet-ipv4-prefix BITS  the IPv4 subnet for --subnet-peers-max (default 24)
  --subnet-ipv6-prefix BITS  the IPv6 subnet for --subnet-peers-max (default 48)
  --outbound-peers-min N  keep connections to N peers of this node's choosing (members,
                          then DHT routing-table peers), closed last when over
                          --max-connections; 0 turns it off (default 4)
  --join-pow              joins must carry a proof of work bound to the joiner's peer id
                          and the cluster: ${POW_BITS_DEFAULT} bits, about a million SHA-256
                          hashes (a second or two of one core) per new peer id (default off)
  --join-pow-bits N       the same with N bits (1..${POW_BITS_MAX}; each bit doubles the work);
                          0 turns it off
  --allow-peer ID         only accept these peers, repeatable
  --deny-peer ID          never accept these peers, repeatable
  --log-level LEVEL       ${LOG_LEVELS.join('|')} (default info)
  --raft on|off           run the Raft group and KV store (default on)
  --raft-init             found a new Raft group even though --bootstrap is given
                          (without --bootstrap a fresh node always founds one;
                          with it, a fresh node joins as a learner)
  --initial-cluster N|ID,ID,...  first start only: form the Raft group with N voters at once
                          (the node without --bootstrap founds it once N members are
                          connected; writes get 503 until then), or with these peer ids
                          (every listed node bootstraps the same group). Not saved.
  --raft-tick-ms N        Raft tick and heartbeat (default 50; elections after 6-11 ticks
                          of silence, 1-3 ticks after the leader's connections close)
  --raft-lease-reads      allow consistency=lease reads (trusts bounded clock drift)
  --raft-snapshot-entries N  snapshot and compact after N applied entries, once they also
                             hold as many bytes as the last snapshot, or 256 MiB (default 100000)
  --bft-replicas ID,ID,...   the PBFT replica set (peer ids), identical on every node; this
                             node is a replica if listed, else a PBFT client (saved)
  --bft-genesis FILE      the PBFT replica set from a JSON file {"replicas": [ID, ...]}
  --bft-learner           outside the replica set, follow the replicas' log (a node that a
                          reconfiguration will add: accord bft reconfigure)
  --crdt-writers ID,ID,...   only these peers' CRDT writes count: others' deltas and states
                             are ignored (and counted); "" allows every member again (saved)
  --crdt-sync-interval-ms N  CRDT anti-entropy: a round with a random member every N ms
                             (default 5000, saved)
  --keys-sign-policy open|approve  which messages this node signs with its DKG share when
                          a member asks: any (open, the default), or only those its
                          operator approved with accord keys approve (saved)
  --byzantine             DELIBERATELY FAULTY PBFT replica (equivocates): demos and tests
                          only; honest replicas detect and isolate it. Not saved.

A node started without --bootstrap founds a new cluster: it makes the cluster
key (DIR/admission/cluster.key) and serves only peers that show a certificate
signed by it. Every other node joins once with --join-token.

Environment: ACCORD_PASSPHRASE decrypts (and, on first start, encrypts) the identity
and cluster keys; ACCORD_JOIN_TOKEN is read when --join-token is not given.
`

/** The PBFT replica set from --bft-replicas (comma-separated) or --bft-genesis (a JSON file), or undefined for neither. */
async function bftReplicasFlag (list: string | undefined, genesis: string | undefined): Promise<string[] | undefined> {
  if (list !== undefined && genesis !== undefined) { throw new UserError('start: give --bft-replicas or --bft-genesis, not both') }
  if (list !== undefined) { return list.split(',').map(id => id.trim()).filter(id => id !== '') }
  if (genesis === undefined) { return undefined }
  let parsed: unknown
  try {
    parsed = JSON.parse(await readFile(genesis, 'utf8'))
  } catch (err) {
    throw new UserError(`--bft-genesis ${genesis}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  const replicas = (parsed as { replicas?: unknown } | null)?.replicas
  if (!Array.isArray(replicas) || replicas.length === 0 || !replicas.every(r => typeof r === 'string')) {
    throw new UserError(`--bft-genesis ${genesis} must hold {"replicas": ["<peer id>", ...]}`)
  }
  return replicas
}

function onOff (value: string | undefined, flag: string): boolean | undefined {
  if (value === undefined) { return undefined }
  if (value !== 'on' && value !== 'off') { throw new UserError(`${flag} must be "on" or "off"`) }
  return value === 'on'
}

export async function startCommand (args: string[]): Promise<void> {
  const flags = parseFlags('start', args, {
    'data-dir': { type: 'string' },
    listen: { type: 'string', multiple: true },
    bootstrap: { type: 'string', multiple: true },
    'join-token': { type: 'string' },
    cluster: { type: 'string' },
    api: { type: 'string' },
    public: { type: 'boolean' },
    mdns: { type: 'boolean' },
    'pnet-key': { type: 'string' },
    encrypters: { type: 'string' },
    'max-connections': { type: 'string' },
    'subnet-peers-max': { type: 'string' },
    'subnet-ipv4-prefix': { type: 'string' },
    'subnet-ipv6-prefix': { type: 'string' },
    'outbound-peers-min': { type: 'string' },
    'join-pow': { type: 'boolean' },
    'join-pow-bits': { type: 'string' },
    'allow-peer': { type: 'string', multiple: true },
    'deny-peer': { type: 'string', multiple: true },
    'log-level': { type: 'string' },
    raft: { type: 'string' },
    'raft-init': { type: 'boolean' },
    'initial-cluster': { type: 'string' },
    'raft-tick-ms': { type: 'string' },
    'raft-lease-reads': { type: 'boolean' },
    'raft-snapshot-entries': { type: 'string' },
    'bft-replicas': { type: 'string' },
    'bft-genesis': { type: 'string' },
    'bft-learner': { type: 'boolean' },
    byzantine: { type: 'boolean' },
    'crdt-writers': { type: 'string' },
    'crdt-sync-interval-ms': { type: 'string' },
    'keys-sign-policy': { type: 'string' }
  })
  const dataDir = flags['data-dir']
  if (dataDir === undefined || dataDir === '') { throw new UserError('start: --data-dir is required') }

  const overrides: Partial<AccordConfig> = {
    listen: flags.listen,
    bootstrap: flags.bootstrap,
    cluster: flags.cluster,
    api: flags.api === 'off' ? null : flags.api,
    public: flags.public,
    mdns: flags.mdns,
    pnetKeyFile: flags['pnet-key'],
    encrypters: parseEncrypters(flags.encrypters),
    maxConnections: parseIntegerFlag(flags['max-connections'], '--max-connections', 1, 100_000),
    subnetPeersMax: parseIntegerFlag(flags['subnet-peers-max'], '--subnet-peers-max', 1, 100_000),
    subnetIpv4PrefixBits: parseIntegerFlag(flags['subnet-ipv4-prefix'], '--subnet-ipv4-prefix', 1, 32),
    subnetIpv6PrefixBits: parseIntegerFlag(flags['subnet-ipv6-prefix'], '--subnet-ipv6-prefix', 1, 128),
    outboundPeersMin: parseIntegerFlag(flags['outbound-peers-min'], '--outbound-peers-min', 0, 1000),
    joinPowBits: parseIntegerFlag(flags['join-pow-bits'], '--join-pow-bits', 0, POW_BITS_MAX) ?? (flags['join-pow'] === true ? POW_BITS_DEFAULT : undefined),
    allowPeers: flags['allow-peer'],
    denyPeers: flags['deny-peer'],
    logLevel: flags['log-level'] as LogLevel | undefined,
    raft: onOff(flags.raft, '--raft'),
    raftInit: flags['raft-init'],
    raftInitialCluster: parseInitialCluster(flags['initial-cluster']),
    raftTickMs: parseIntegerFlag(flags['raft-tick-ms'], '--raft-tick-ms', 10, 10_000),
    raftLeaseReads: flags['raft-lease-reads'],
    raftSnapshotEntries: parseIntegerFlag(flags['raft-snapshot-entries'], '--raft-snapshot-entries', 10, 100_000_000),
    bftReplicas: await bftReplicasFlag(flags['bft-replicas'], flags['bft-genesis']),
    bftLearner: flags['bft-learner'],
    byzantine: flags.byzantine,
    crdtWriters: flags['crdt-writers']?.split(',').map(id => id.trim()).filter(id => id !== ''),
    crdtSyncIntervalMs: parseIntegerFlag(flags['crdt-sync-interval-ms'], '--crdt-sync-interval-ms', 100, 3_600_000),
    keysSignPolicy: flags['keys-sign-policy'] as SignPolicy | undefined
  }
  if (flags.byzantine === true) {
    process.stderr.write('WARNING: --byzantine: this node runs a DELIBERATELY FAULTY PBFT replica that equivocates.\n' +
      'WARNING: honest replicas will detect it, publish evidence and isolate it. Never use this outside demos and tests.\n')
  }

  const joinToken = flags['join-token'] ?? process.env.ACCORD_JOIN_TOKEN
  const node = await createAccordNode({ dataDir, ...overrides }, { passphrase: process.env.ACCORD_PASSPHRASE, joinToken: joinToken === '' ? undefined : joinToken })
  await writeRuntimeInfo(dataDir, {
    peerId: node.libp2p.peerId.toString(),
    multiaddrs: node.libp2p.getMultiaddrs().map(String),
    api: node.apiUrl,
    pid: process.pid,
    startedAt: new Date().toISOString()
  })
  process.stdout.write(`accord node ${node.libp2p.peerId.toString()} started\n` +
    node.libp2p.getMultiaddrs().map(ma => `  listening on ${ma.toString()}\n`).join('') +
    (node.apiUrl != null ? `  HTTP API on ${node.apiUrl}\n` : ''))

  await new Promise<void>(resolve => {
    const shutdown = (signal: string): void => {
      process.stdout.write(`received ${signal}, stopping\n`)
      // a second signal while stopping exits at once
      process.once('SIGINT', () => process.exit(130))
      process.once('SIGTERM', () => process.exit(143))
      resolve()
    }
    process.once('SIGINT', () => { shutdown('SIGINT') })
    process.once('SIGTERM', () => { shutdown('SIGTERM') })
  })
  await node.stop()
  await removeRuntimeInfo(dataDir)
}
