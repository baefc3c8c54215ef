/**
 * `accord raft force-new-cluster`: the explicit, never automatic, recovery
 * from a permanently lost quorum (see RaftNode.unsafeForceNewCluster for what
 * it does and why it is dangerous). Runs offline, on a stopped node.
 */
import { existsSync } from 'node:fs'
import { peerIdFromString } from '@libp2p/peer-id'
import { RaftNode } from '../../protocols/raft/index.ts'
import { UserError } from '../errors.ts'
import { loadOrCreateIdentity } from '../identity.ts'
import { RaftStorage, raftStorageDir } from '../raft/storage/index.ts'
import { parseFlags } from './args.ts'

export const FORCE_NEW_CLUSTER_HELP = `Usage: accord raft force-new-cluster --data-dir DIR [--voter PEER-ID]... --force

DANGER. Recover a Raft group whose quorum is permanently lost. Run it on the
ONE stopped survivor with the most up-to-date log. It rewrites that node's
Raft log so the group consists of the given voters (default: this node
alone), dropping uncommitted entries, without any quorum agreeing.

Afterwards: start this node; wipe the raft/ directory of every other
survivor before starting it again (it comes back empty and catches up); make
sure the lost nodes never return with their old data. Entries the lost
majority committed but this node never received, or never learned were
committed (a follower learns that from the leader's next message), are gone
for good: prefer the old leader's disk when it survived.

Without --force it only shows what it would do.
`

export async function forceNewClusterCommand (args: string[]): Promise<void> {
  const flags = parseFlags('raft force-new-cluster', args, {
    'data-dir': { type: 'string' },
    voter: { type: 'string', multiple: true },
    force: { type: 'boolean' }
  })
  const dataDir = flags['data-dir']
  if (dataDir === undefined) { throw new UserError('raft force-new-cluster: --data-dir is required') }
  const self = (await loadOrCreateIdentity(dataDir, { passphrase: process.env.ACCORD_PASSPHRASE, create: false })).peerId.toString()
  const voters = flags.voter ?? [self]
  for (const voter of voters) {
    try { peerIdFromString(voter) } catch { throw new UserError(`raft force-new-cluster: --voter ${voter} is not a peer id`) }
  }
  if (!existsSync(raftStorageDir(dataDir))) { throw new UserError(`raft force-new-cluster: ${dataDir} holds no Raft state`) }
  // the storage's lock makes this fail while the node runs
  const storage = await RaftStorage.open(raftStorageDir(dataDir))
  try {
    const restored = await storage.load()
    const lastIndex = restored.entries.at(-1)?.index ?? restored.snapshot?.meta.index ?? 0
    if (restored.hardState.term === 0 && lastIndex === 0) { throw new UserError(`raft force-new-cluster: ${dataDir} holds no Raft state`) }
    let forced: ReturnType<typeof RaftNode.unsafeForceNewCluster>
    try {
      forced = RaftNode.unsafeForceNewCluster(restored, { voters })
    } catch (err) {
      // a stored state the core refuses, or too many voters
      if (err instanceof RangeError) { throw new UserError(`raft force-new-cluster: ${dataDir}: ${err.message}`) }
      throw err
    }
    const forcedEntry = forced.entries[forced.entries.length - 1]
    const dropped = lastIndex - (forcedEntry.index - 1)
    process.stdout.write(`log: commit ${restored.hardState.commit}, last index ${lastIndex}, term ${restored.hardState.term}\n` +
      `will drop ${dropped} uncommitted entr${dropped === 1 ? 'y' : 'ies'} and force voters [${voters.join(', ')}] at index ${forcedEntry.index}, term ${forced.hardState.term}\n`)
    if (flags.force !== true) {
      process.stdout.write('nothing changed: add --force to do it\n')
      return
    }
    await storage.persist({ hardState: forced.hardState, entries: [forcedEntry] })
    process.stdout.write('done: start this node, then wipe and restart the other survivors\n')
  } finally {
    await storage.close()
  }
}
