/**
 * The CRDT service's files, under `<dataDir>/crdt/`:
 *
 * - `registry.json`: `{"version":1,"crdts":[{"name","type"}, ...]}`, every
 * CRDT this node holds;
 * - `<name>.state`: one CRDT's state, CBOR `{v:1, type, state, context}`
 * (`state` the core's canonical encoding, `context` the version vector's
 * causal context, see service.ts).
 *
 * Every file is written atomically (a temporary file, fsynced, renamed over
 * the old one: writeFileAtomic), so a crash leaves the previous or the new
 * version, never a mix. Names are checked by the service
 * (CRDT_NAME_PATTERN) before they become file names.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { encode } from 'cborg'
import { isCrdtTypeName } from '../../protocols/crdt/index.ts'
import { writeFileAtomic } from '../config.ts'
import { decodeBoundedCbor } from '../raft/codec.ts'
import type { CrdtTypeName } from '../../protocols/crdt/index.ts'

export const CRDT_DIR = 'crdt'
export const CRDT_REGISTRY_FILE = 'registry.json'
const STATE_SUFFIX = '.state'
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

export class CrdtStorage {
  readonly dir: string
  #ready: Promise<void> | undefined

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
