/**
 * The CRDT service's files, under `<dataDir>/crdt/`:
 *
 * - `registry.json`: `{"version":1,"crdts":[{"name","type"}, ...]}`, every
 * CRDT this node holds;
 * - `<name>.state`: one CRDT's state, CBOR `{v:1, type, state, context}`
 * (`state` the core's canonical encoding, `context` the version vector's
 * causal context, see service.ts).
 *
 * - `journal.log`: local ops not yet in a state file, appended as
 * checksummed frames (node/storage-frames.ts) of CBOR `{n: name, c:
 * counter, d: delta}` and fdatasynced before the op is answered; emptied
 * once the states holding them are written.
 *
 * States and the registry are written atomically (a temporary file,
 * fsynced, renamed over the old one: writeFileAtomic), so a crash leaves
 * the previous or the new version, never a mix. A crash tears at most the
 * journal's last append, which is cut off at the next start (those ops
 * were not answered); a bad frame before the end cannot come from a crash
 * and stops the start. Names are checked by the service
 * (CRDT_NAME_PATTERN) before they become file names.
 */
import { mkdir, open, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { encode } from 'cborg'
import { isCrdtTypeName } from '../../protocols/crdt/index.ts'
import { writeFileAtomic } from '../config.ts'
import { decodeBoundedCbor } from '../raft/codec.ts'
import { encodeFrame, readFrames } from '../storage-frames.ts'
import type { CrdtTypeName } from '../../protocols/crdt/index.ts'
import type { FileHandle } from 'node:fs/promises'

export const CRDT_DIR = 'crdt'
export const CRDT_REGISTRY_FILE = 'registry.json'
const STATE_SUFFIX = '.state'
export const CRDT_JOURNAL_FILE = 'journal.log'
/** Largest journal record (an op's delta and its framing). */
export const JOURNAL_RECORD_BYTES_MAX = 1024 * 1024
const FORMAT_VERSION = 1

export interface CrdtDescriptor {
  name: string
  type: CrdtTypeName
}

export interface StoredCrdt extends CrdtDescriptor {
  /** The state's encoding (protocols/crdt encodeState), or null when no state file was written yet. */
  state: Uint8Array | null
  /** The causal context (writeContext), or null with no state file. */
  context: Uint8Array | null
}

/** A local op in the journal: its CRDT, its counter (the dot `(this node, counter)`), its delta. */
export interface JournalRecord {
  name: string
  counter: number
  delta: Uint8Array
}

export class CrdtStorage {
  readonly dir: string
  #ready: Promise<void> | undefined
  #journal: FileHandle | null = null
  #journalBytes = 0

  constructor (dataDir: string) {
    this.dir = join(dataDir, CRDT_DIR)
  }

  /** Every CRDT the registry lists, with its state when one was saved. Throws on a damaged file. */
  async load (): Promise<StoredCrdt[]> {
    let text: string
    try {
      text = await readFile(join(this.dir, CRDT_REGISTRY_FILE), 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') { return [] }
      throw err
    }
    const parsed = JSON.parse(text) as { version?: unknown, crdts?: unknown }
    if (parsed.version !== FORMAT_VERSION || !Array.isArray(parsed.crdts)) { throw new Error(`${CRDT_REGISTRY_FILE}: unknown format`) }
    const found: StoredCrdt[] = []
    for (const item of parsed.crdts as Array<{ name?: unknown, type?: unknown }>) {
      if (typeof item?.name !== 'string' || !isCrdtTypeName(item.type)) { throw new Error(`${CRDT_REGISTRY_FILE}: bad entry ${JSON.stringify(item)}`) }
      found.push({ name: item.name, type: item.type, ...await this.#readState(item.name, item.type) })
    }
    return found
  }

  async writeRegistry (crdts: readonly CrdtDescriptor[]): Promise<void> {
    await this.#mkdir()
    const body = { version: FORMAT_VERSION, crdts: crdts.map(({ name, type }) => ({ name, type })) }
    await writeFileAtomic(join(this.dir, CRDT_REGISTRY_FILE), JSON.stringify(body, null, 2) + '\n')
  }

  async writeState (name: string, type: CrdtTypeName, state: Uint8Array, context: Uint8Array): Promise<void> {
    await this.#mkdir()
    await writeFileAtomic(this.#statePath(name), encode({ v: FORMAT_VERSION, type, state, context }))
  }

  /** Bytes in the journal. */
  get journalBytes (): number {
    return this.#journalBytes
  }

  /**
   * Opens the journal for appending and returns its records; a torn last
   * append is cut off. Throws on a damaged journal.
   */
  async openJournal (): Promise<JournalRecord[]> {
    await this.#mkdir()
    const path = join(this.dir, CRDT_JOURNAL_FILE)
    const handle = await open(path, 'a+', 0o600)
    try {
      const bytes = await handle.readFile()
      const read = readFrames(bytes, JOURNAL_RECORD_BYTES_MAX)
      if (!read.ok) { throw new Error(`${path}: damaged at byte ${read.offset} (${read.error}); the states are intact, the journal's ops are not`) }
      const records = read.payloads.map((payload, i) => {
        const record = decodeBoundedCbor(payload) as { n?: unknown, c?: unknown, d?: unknown } | null
        if (typeof record?.n !== 'string' || typeof record.c !== 'number' || !Number.isSafeInteger(record.c) || record.c < 1 || !(record.d instanceof Uint8Array)) {
          throw new Error(`${path}: record ${i} is not a journal record`)
        }
        return { name: record.n, counter: record.c, delta: record.d }
      })
      if (read.wholeBytes < bytes.byteLength) {
        await handle.truncate(read.wholeBytes)
        await handle.datasync()
      }
      this.#journal = handle
      this.#journalBytes = read.wholeBytes
      return records
    } catch (err) {
      await handle.close()
      throw err
    }
  }

  /** Appends `records` to the journal and fdatasyncs it. */
  async append (records: readonly JournalRecord[]): Promise<void> {
    const journal = this.#openJournal()
    const frames = records.map(r => encodeFrame(encode({ n: r.name, c: r.counter, d: r.delta })))
    await journal.writev(frames)
    await journal.datasync()
    this.#journalBytes += frames.reduce((n, f) => n + f.byteLength, 0)
  }

  /** Empties the journal: the states holding its ops are written. */
  async clearJournal (): Promise<void> {
    if (this.#journalBytes === 0) { return }
    const journal = this.#openJournal()
    await journal.truncate(0)
    await journal.datasync()
    this.#journalBytes = 0
  }

  async close (): Promise<void> {
    await this.#journal?.close()
    this.#journal = null
  }

  #openJournal (): FileHandle {
    if (this.#journal === null) { throw new Error(`${this.dir}: the journal is not open (openJournal first)`) }
    return this.#journal
  }

  async #readState (name: string, type: CrdtTypeName): Promise<{ state: Uint8Array | null, context: Uint8Array | null }> {
    let bytes: Uint8Array
    try {
      bytes = await readFile(this.#statePath(name))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') { return { state: null, context: null } }
      throw err
    }
    const decoded = decodeBoundedCbor(bytes) as { v?: unknown, type?: unknown, state?: unknown, context?: unknown } | null
    if (decoded?.v !== FORMAT_VERSION || decoded.type !== type || !(decoded.state instanceof Uint8Array) || !(decoded.context instanceof Uint8Array)) {
      throw new Error(`${name}${STATE_SUFFIX}: unknown format or a type other than ${type}`)
    }
    return { state: decoded.state, context: decoded.context }
  }

  #statePath (name: string): string {
    return join(this.dir, `${name}${STATE_SUFFIX}`)
  }

  async #mkdir (): Promise<void> {
    this.#ready ??= mkdir(this.dir, { recursive: true, mode: 0o700 }).then(() => {})
    await this.#ready
  }
}
