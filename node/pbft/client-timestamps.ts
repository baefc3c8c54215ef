/**
 * The timestamps of this node's PBFT client, and the opening of its KV
 * session.
 *
 * Timestamps must grow over the client's whole life (replicas drop a
 * request whose timestamp is not above the client's last one, and the KV
 * session uses them as sequences). They are reserved on disk in blocks:
 * `<dataDir>/pbft/client.json` holds the first timestamp a restarted
 * client may use, written (atomically, fsynced) before any timestamp below
 * it is used. A restart skips the rest of a block, which a KV session
 * allows (a sequence may jump ahead).
 *
 * A KV session must start at sequence 1, but reads take timestamps too: a
 * client whose first operation is a read would find its first write refused
 * ('session-expired'). So a new client's first request, timestamp 1, is
 * always a KV command that opens the session (the service sends it before
 * anything else), and the file records once it executed. A client that
 * crashed before that starts at 1 again: nothing but that request was sent.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../config.ts'
import { PbftStorageCorruptionError } from './storage.ts'

const CLIENT_FILE = 'client.json'
/** Timestamps reserved per write. */
export const CLIENT_TIMESTAMP_BLOCK = 1_000_000

export class ClientTimestamps {
  readonly #dir: string
  readonly #block: number
  /** The first timestamp of this run. */
  readonly first: number
  #opened: boolean
  /** Timestamps below this are reserved on disk. */
  #reservedUpTo: number
  #writing: Promise<void> = Promise.resolve()

  private constructor (dir: string, first: number, opened: boolean, block: number) {
    this.#dir = dir
    this.#block = block
    this.first = first
    this.#opened = opened
    this.#reservedUpTo = first
  }

  /** Reads the reservation in `dir` and reserves the first block of this run. */
  static async open (dir: string, block = CLIENT_TIMESTAMP_BLOCK): Promise<ClientTimestamps> {
    const path = join(dir, CLIENT_FILE)
    const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') { return null } throw err })
    let first = 1
    let opened = false
    if (text !== null) {
      let saved: { next?: unknown, opened?: unknown } | null = null
      try { saved = JSON.parse(text) } catch { /* not JSON: refused below */ }
      const next = saved?.next
      if (typeof next !== 'number' || !Number.isSafeInteger(next) || next < 1 || typeof saved?.opened !== 'boolean') {
        throw new PbftStorageCorruptionError(dir, `${CLIENT_FILE} holds no valid {"next", "opened"}`)
      }
      opened = saved.opened
      if (opened) { first = next }
    }
    const timestamps = new ClientTimestamps(dir, first, opened, block)
    await timestamps.reserve(first)
    return timestamps
  }

  /** Whether the client's KV session was opened (its first request executed). */
  get opened (): boolean { return this.#opened }

  /** Records that the session-opening request executed. */
  async markOpened (): Promise<void> {
    this.#opened = true
    await this.#write(this.#reservedUpTo)
  }

  /** Makes sure timestamps up to `upTo` (and half a block beyond) are reserved on disk before they are used. */
  async reserve (upTo: number): Promise<void> {
    while (upTo + this.#block / 2 >= this.#reservedUpTo) {
      await this.#write(Math.max(this.#reservedUpTo, upTo) + this.#block)
    }
  }

  /** Writes one at a time, so a slower write never overwrites a newer one. */
  async #write (next: number): Promise<void> {
    const write = this.#writing.then(async () => {
      const upTo = Math.max(this.#reservedUpTo, next)
      await writeFileAtomic(join(this.#dir, CLIENT_FILE), JSON.stringify({ next: upTo, opened: this.#opened }) + '\n')
      this.#reservedUpTo = upTo
    })
    this.#writing = write.catch(() => {})
    await write
  }
}
