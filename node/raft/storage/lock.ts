/**
 * One process at a time per Raft store: an `accord.lock` file created exclusively,
 * holding the owner's pid. Node has no flock(); a lock left by a process
 * that died (kill -9) names a pid that no longer runs and is taken over. A
 * reused pid makes a stale lock look held: the error names the pid, and the
 * operator removes the file once sure no node runs there (the safe mistake).
 */
import { open, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { UserError } from '../../errors.ts'
import { LOCK_FILE } from './layout.ts'

function running (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it runs, as another user
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Takes the lock of the store in `dir`; resolves to its release. */
export async function lockStore (dir: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const file = await open(path, 'wx', 0o600)
      try { await file.writeFile(`${process.pid}\n`) } finally { await file.close() }
      return async () => { await unlink(path).catch(() => {}) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') { throw err }
    }
    const text = await readFile(path, 'utf8').catch(() => '')
    const pid = Number.parseInt(text, 10)
    if (Number.isSafeInteger(pid) && pid > 0 && running(pid)) {
      throw new UserError(`cannot open raft storage ${dir} (is another node using this data dir?): it is locked by process ${pid} ` +
        `(${path}; remove that file only if no accord process runs there)`)
    }
    // the owner died without releasing it (or crashed while writing it)
    await unlink(path).catch(() => {})
  }
  throw new UserError(`cannot open raft storage ${dir} (is another node using this data dir?): cannot take the lock ${path}`)
}
