#!/usr/bin/env node
/**
 * The `accord` command line. Every failure a person can cause (bad flags,
 * occupied ports, bad key files, unreachable peers, a data dir the node
 * cannot start from) ends as one line on stderr and a non-zero exit,
 * without a stack trace. An unexpected error (a bug) is one line too; its
 * stack trace follows only with ACCORD_DEBUG=1.
 */
import { admissionCommand, ADMISSION_HELP } from './cli/admission.ts'
import { bftCommand, BFT_HELP } from './cli/bft.ts'
import { crdtCommand, CRDT_HELP } from './cli/crdt.ts'
import { demoCommand, DEMO_HELP } from './cli/demo.ts'
import { idCommand, ID_HELP } from './cli/id.ts'
import { keysCommand, KEYS_HELP } from './cli/keys.ts'
import { kvCommand, KV_HELP } from './cli/kv.ts'
import { membersCommand, MEMBERS_HELP } from './cli/members.ts'
import { raftCommand, RAFT_HELP } from './cli/raft.ts'
import { startCommand, START_HELP } from './cli/start.ts'
import { statusCommand, STATUS_HELP } from './cli/status.ts'
import { tokenCommand, TOKEN_HELP } from './cli/token.ts'
import { topologyCommand, TOPOLOGY_HELP } from './cli/topology.ts'
import { UserError } from './errors.ts'
import { VERSION } from './version.ts'

const MAIN_HELP = `accord ${VERSION}: a peer-to-peer consensus toolkit on libp2p

Usage: accord <command> [flags]

Commands:
  start     run a node (daemon)
  demo      run a local cluster of node processes with a live view
  status    show a node's status
  members   show the cluster's members: alive, suspect, dead or left
  topology  show the overlay: who is connected to whom, DHT buckets, gossipsub mesh
  id        print a node's PeerId
  kv        put, get, delete and compare-and-swap keys of the replicated store
  raft      show and change the Raft group's members, transfer leadership
  bft       put, get, delete and compare-and-swap keys of the Byzantine-fault-tolerant store (PBFT)
  crdt      create, change and read the cluster's CRDTs (counters, sets, registers, maps)
  keys      make a threshold key by DKG, show it, sign with it
  token     make a join token for a new node
  admission approve peers for group-signed certificates, switch to the DKG group key

"accord <command> --help" describes a command's flags.
`

const COMMANDS: Record<string, { run(args: string[]): Promise<void>, help: string }> = {
  start: { run: startCommand, help: START_HELP },
  demo: { run: demoCommand, help: DEMO_HELP },
  status: { run: statusCommand, help: STATUS_HELP },
  id: { run: idCommand, help: ID_HELP },
  kv: { run: kvCommand, help: KV_HELP },
  members: { run: membersCommand, help: MEMBERS_HELP },
  topology: { run: topologyCommand, help: TOPOLOGY_HELP },
  raft: { run: raftCommand, help: RAFT_HELP },
  bft: { run: bftCommand, help: BFT_HELP },
  crdt: { run: crdtCommand, help: CRDT_HELP },
  keys: { run: keysCommand, help: KEYS_HELP },
  token: { run: tokenCommand, help: TOKEN_HELP },
  admission: { run: admissionCommand, help: ADMISSION_HELP }
}

async function main (argv: string[]): Promise<number> {
  const [name, ...args] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(MAIN_HELP)
    return name === undefined ? 2 : 0
  }
  if (name === '--version') {
    process.stdout.write(`${VERSION}\n`)
    return 0
  }
  const command = COMMANDS[name]
  if (command === undefined) { throw new UserError(`unknown command "${name}" (try accord --help)`) }
  // `accord raft force-new-cluster --help` and `accord raft migrate --help` have help texts of their own
  if ((args.includes('--help') || args.includes('-h')) && !(name === 'raft' && (args[0] === 'force-new-cluster' || args[0] === 'migrate'))) {
    process.stdout.write(command.help)
    return 0
  }
  await command.run(args)
  return 0
}

/** What stderr gets for an error that is not the user's: one line, plus the stack trace when debugging. */
function unexpectedError (err: unknown, debug: boolean): string {
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
  const line = `accord: unexpected error: ${message.replaceAll('\n', ' ')}`
  if (debug && err instanceof Error && err.stack != null) { return `${line}\n${err.stack}\n` }
  return `${line} (run with ACCORD_DEBUG=1 for the stack trace)\n`
}

main(process.argv.slice(2)).then(code => {
  process.exitCode = code
}, (err: unknown) => {
  const [message, code] = err instanceof UserError
    ? [`accord: ${err.message}\n`, 2]
    : [unexpectedError(err, process.env.ACCORD_DEBUG === '1'), 1]
  // exit once stderr has it: a start that failed half way may leave timers
  // behind (libp2p's services start some that its stop does not clear)
  process.stderr.write(message, () => process.exit(code))
})
