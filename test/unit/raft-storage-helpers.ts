/**
 * Shared pieces of the raft storage tests: deterministic entries and
 * snapshots, a logger that records warnings, temporary directories, and raw
 * access to the files for planting damage.
 */
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Format1Reader } from '../../node/raft/storage/format1.ts'
import { RaftStorage } from '../../node/raft/storage/index.ts'
import { FRAME_HEADER_BYTES, readFrames } from '../../node/storage-frames.ts'
import type { StorageLogger } from '../../node/raft/storage/index.ts'
import type { ConfState, Entry, HardState, RestoredState, Snapshot } from '../../protocols/raft/index.ts'

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

/**
 * The store's files (the storage must be closed), shortened: `wal/<seq>`
 * for a segment, `snap/<index>` for a snapshot, other names as they are.
 */
export async function listFiles (dir: string): Promise<string[]> {
  const files: string[] = []
  for (const sub of ['wal', 'snap']) {
    for (const name of await readdir(join(dir, sub)).catch(() => [])) {
      const match = /^([0-9a-f]{16})\.(wal|snap)$/.exec(name)
      files.push(`${sub}/${match === null ? name : Number.parseInt(match[1], 16)}`)
    }
  }
  for (const name of await readdir(dir)) {
    if (name !== 'wal' && name !== 'snap') { files.push(name) }
  }
  return files.sort()
}

export function segmentFile (dir: string, seq: number): string {
  return join(dir, 'wal', `${seq.toString(16).padStart(16, '0')}.wal`)
}

export function snapshotFile (dir: string, index: number): string {
  return join(dir, 'snap', `${index.toString(16).padStart(16, '0')}.snap`)
}

/** The frames of segment `seq`: the file, where each frame starts, and where the last whole one ends. */
export async function segmentFrames (dir: string, seq: number): Promise<{ bytes: Uint8Array, frames: number[], end: number }> {
  const bytes = await readFile(segmentFile(dir, seq))
  const read = readFrames(bytes, 1 << 30)
  if (!read.ok) { throw new Error(`segment ${seq}: ${read.error}`) }
  return { bytes, frames: read.offsets.map(o => o - FRAME_HEADER_BYTES), end: read.wholeBytes }
}

/** Flips a bit of byte `offset` of `file`. */
export async function flipByte (file: string, offset: number): Promise<void> {
  const bytes = await readFile(file)
  bytes[offset] ^= 0x40
  await writeFile(file, bytes)
}

/** Stores written by the format-1 storage itself (test/fixtures/raft-format1/README.md). */
export const FORMAT1_FIXTURES = fileURLToPath(new URL('../fixtures/raft-format1/', import.meta.url))
export type Format1Fixture = 'empty' | 'entries-only' | 'snapshot-and-entries' | 'snapshot-only'

/** Copies fixture `name` to `dir` (the fixtures stay untouched). */
export async function copyFormat1Fixture (name: Format1Fixture, dir: string): Promise<void> {
  await cp(join(FORMAT1_FIXTURES, name), dir, { recursive: true })
}

/** What the format-1 storage's load() returned for fixture `name`, in the shape of plain(). */
export async function expectedOf (name: Format1Fixture): Promise<unknown> {
  return JSON.parse(await readFile(join(FORMAT1_FIXTURES, `${name}.expected.json`), 'utf8'))
}

/** A restored state as the fixtures' JSON has it (data in base64). */
export function plain (r: RestoredState): unknown {
  return {
    hardState: r.hardState,
    snapshot: r.snapshot == null ? null : { meta: r.snapshot.meta, data: Buffer.from(r.snapshot.data).toString('base64') },
    entries: r.entries.map(e => ({ index: e.index, term: e.term, type: e.type, data: Buffer.from(e.data).toString('base64') }))
  }
}

/** Opens `dir` with the current storage (which migrates) and returns what it restores. */
export async function openAndLoad (dir: string, logger: StorageLogger): Promise<unknown> {
  const storage = await RaftStorage.open(dir, { logger })
  try {
    return plain(await storage.load())
  } finally {
    await storage.close()
  }
}

/** The hard state of the format-1 store in `dir`, read as migration reads it. */
export async function format1State (dir: string): Promise<unknown> {
  const reader = await Format1Reader.open(dir)
  try { return (await reader.readState()).hardState } finally { await reader.close() }
}
