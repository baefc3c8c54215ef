/**
 * Shared pieces of the raft storage tests: deterministic entries and
 * snapshots, a logger that records warnings, temporary directories, and raw
 * access to the database for planting damaged records.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import type { StorageLogger } from '../../node/raft/storage/index.ts'
import type { ConfState, Entry, HardState, Snapshot } from '../../protocols/raft/index.ts'

export const CONF: ConfState = { voters: ['n1', 'n2', 'n3'], votersOutgoing: [], learners: ['n4'], learnersNext: [], autoLeave: false }

export const hard = (term: number, commit: number, vote: string | null = 'n1'): HardState => ({ term, vote, commit })

/** Payload bytes that depend on (index, term, salt), so a stale or misplaced entry is visible. */
export function payload (index: number, term: number, size = 24, salt = 0): Uint8Array {
  const data = new Uint8Array(size)
  let x = (index * 2654435761 + term * 40503 + salt * 97 + 1) >>> 0
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    data[i] = x >>> 24
  }
  return data
}

export function entry (index: number, term: number, size = 24): Entry {
  return { index, term, type: index % 7 === 0 ? 'conf-change' : 'normal', data: payload(index, term, size) }
}

/** Entries from..to (inclusive), all of `term`. */
export function entries (from: number, to: number, term: number, size = 24): Entry[] {
  const out: Entry[] = []
  for (let i = from; i <= to; i++) { out.push(entry(i, term, size)) }
  return out
}

export function snapshot (index: number, term: number, bytes = 100): Snapshot {
  return { meta: { index, term, conf: CONF }, data: payload(index, term, bytes, 1) }
}

export class CaptureLogger implements StorageLogger {
  readonly warnings: Array<{ fields: Record<string, unknown>, message: string }> = []
  warn = (fields: Record<string, unknown>, message: string): void => { this.warnings.push({ fields, message }) }
}

export class TempDirs {
  private readonly dirs: string[] = []

  async make (): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'accord-raft-storage-'))
    this.dirs.push(dir)
    return join(dir, 'raft')
  }

  async removeAll (): Promise<void> {
    await Promise.all(this.dirs.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) }))
  }
}

/** Opens the store's LevelDB directly (the storage must be closed). */
export async function withRawDb (dir: string, fn: (db: ClassicLevel<Uint8Array, Uint8Array>) => Promise<void>): Promise<void> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' })
  await db.open()
  try {
    await fn(db)
  } finally {
    await db.close()
  }
}

/** Every key in the store, as readable strings (`E:12`, `S:5:0`, `H`, ...). */
export async function listKeys (dir: string): Promise<string[]> {
  const keys: string[] = []
  await withRawDb(dir, async db => {
    for await (const key of db.keys()) {
      const kind = String.fromCharCode(key[0])
      const view = new DataView(key.buffer, key.byteOffset, key.byteLength)
      const u64 = (offset: number): number => view.getUint32(offset) * 0x1_0000_0000 + view.getUint32(offset + 4)
      if (kind === 'E') {
        keys.push(`E:${u64(1)}`)
      } else if (kind === 'S') {
        keys.push(`S:${u64(1)}:${view.getUint32(9)}`)
      } else {
        keys.push(kind)
      }
    }
  })
  return keys
}
