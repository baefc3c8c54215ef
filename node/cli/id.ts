import { UserError } from '../errors.ts'
import { loadOrCreateIdentity } from '../identity.ts'
import { parseFlags } from './args.ts'

export const ID_HELP = `Usage: accord id --data-dir DIR

Print the node's PeerId, creating its identity key on first use.
Environment: ACCORD_PASSPHRASE for an encrypted key.
`

export async function idCommand (args: string[]): Promise<void> {
  const flags = parseFlags('id', args, { 'data-dir': { type: 'string' } })
  const dataDir = flags['data-dir']
  if (dataDir === undefined || dataDir === '') { throw new UserError('id: --data-dir is required') }
  const identity = await loadOrCreateIdentity(dataDir, { passphrase: process.env.ACCORD_PASSPHRASE })
  process.stdout.write(`${identity.peerId.toString()}\n`)
}
